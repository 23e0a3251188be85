"""The platform's messages, typed once and shared by workflows, activities, starter and tests.

Every workflow, signal, update, query and activity takes exactly one of these models, so a
field can be added (with a default) without breaking the histories of running applications.
Validators here check shape only. Eligibility rules (registration numbers, catalogue) are
checked at submission by `onboarding.domain.admission`, not on every decode: a rule that changes
later must not make an old history unreadable on replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, EmailStr, Field, model_validator

from onboarding.identity.models import IdentityRef

Language = Literal["ko", "en"]
Environment = Literal["sandbox", "production"]
Text = Annotated[str, Field(min_length=1, max_length=500)]
Note = Annotated[str, Field(max_length=2000)]
ApiId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]


# The sets of field names instances were given, one per distinct set (see Model).
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


class Model(BaseModel):
    # Unknown fields are refused with their name: a typo in a typed decision must not pass.
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _shared_fields_set(self) -> Any:
        # pydantic keeps on every instance the set of the fields it was given (what
        # `exclude_unset` leaves out): 200-700 bytes each, ~4 KiB of every waiting
        # application's models. A frozen model's is never changed (a copy gets a set of its
        # own), so instances given the same fields share one.
        if not self.model_config.get("frozen"):  # a subclass changed in place adds to its set
            return self
        given = self.__pydantic_fields_set__
        shared = _FIELDS_SETS.setdefault(frozenset(given), given)
        if shared is not given:
            object.__setattr__(self, "__pydantic_fields_set__", shared)
        return self


# --- who acts --------------------------------------------------------------------------------


class Role(StrEnum):
    """Who may take which decision (docs/domain.md, Roles)."""

    APPLICANT = "applicant"
    PRE_VERIFICATION_REVIEWER = "pre_verification_reviewer"
    MARKET_DATA_SALES = "market_data_sales"
    PLATFORM_TEAM = "platform_team"
    FINAL_APPROVER = "final_approver"
    # Receives escalations of steps left waiting too long.
    OPERATIONS_MANAGER = "operations_manager"
    # Another application's workflow (e.g. a subscription telling a publication that its
    # service launched): not a person; what it claims is checked against the record.
    PLATFORM_WORKFLOW = "platform_workflow"


# --- submission ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why an application is not admitted: the field, the rule it breaks (a machine id), and
    what is wrong (onboarding/domain/admission.py)."""

    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message} [{self.rule}]"



class Organisation(Model):
    legal_name: Text
    # Checked and normalised at submission (onboarding.domain.registration), digits only after that.
    business_registration_number: Annotated[str, Field(max_length=20)]
    corporate_registration_number: Annotated[str, Field(max_length=20)]
    representative: Text
    contact_emails: Annotated[list[EmailStr], Field(min_length=1, max_length=10)]
    language: Language = "ko"


class ServicePlan(Model):
    name: Text
    description: Annotated[str, Field(min_length=1, max_length=4000)]
    expected_launch: date


# The bounds an application's numbers are held to (docs/domain.md, "What an application may
# set"): whoever starts it, the workflow refuses numbers outside them (its admission).
MAX_REMIND_AFTER_DAYS = 60
MAX_ESCALATE_AFTER_DAYS = 120
MAX_LAPSE_AFTER_DAYS = 365
MAX_SANDBOX_KEY_DAYS = 366
MAX_PRODUCTION_KEY_DAYS = 1096


class DeadlinePolicy(Model):
    """How long a person may keep an application waiting (docs/decisions.md: deadlines)."""

    remind_after_days: int = Field(7, ge=1, le=MAX_REMIND_AFTER_DAYS)
    escalate_after_days: int = Field(21, ge=1, le=MAX_ESCALATE_AFTER_DAYS)
    lapse_after_days: int = Field(90, ge=1, le=MAX_LAPSE_AFTER_DAYS)

    @model_validator(mode="after")
    def _ordered(self) -> DeadlinePolicy:
        if not self.remind_after_days < self.escalate_after_days:
            raise ValueError("remind_after_days must be less than escalate_after_days")
        return self


class KeyValidity(Model):
    sandbox_days: int = Field(180, ge=1, le=MAX_SANDBOX_KEY_DAYS)
    production_days: int = Field(730, ge=1, le=MAX_PRODUCTION_KEY_DAYS)


class ProcessLimits(Model):
    """When a run of the application's workflow continues as new: well before any of
    Temporal's own limits (10,240 events warned, 51,200 terminated; 2,000 signals a run, as the
    platform configures it (onboarding/temporal/dynamic_config.py), and 2,000 updates; 50 MiB
    of history), whatever reaches it. The bounds: docs/domain.md."""

    events_per_run: int = Field(2_000, ge=200, le=8_000)
    bytes_per_run: int = Field(4 * 1024 * 1024, ge=2 * 1024 * 1024, le=16 * 1024 * 1024)
    signals_per_run: int = Field(1_000, ge=10, le=1_500)
    updates_per_run: int = Field(500, ge=10, le=1_500)


class SubscriptionForm(Model):
    """What an applicant (or the service acting for it) submits."""

    organisation: Organisation
    service: ServicePlan
    requested_apis: Annotated[list[ApiId], Field(min_length=1, max_length=50)]


MAX_NOTICE_DAYS = 365
MAX_OVERLAP_DAYS = 90


def _days_before(days: list[int]) -> list[int]:
    if len(set(days)) != len(days):
        raise ValueError("must not repeat a number of days")
    return sorted(days, reverse=True)


class LiveServicePolicy(Model):
    """How the live service looks after keys, licences and contracts once in production (README:
    the live service); fixed into the service's process when it starts."""

    # Notices to the applicant this many days before a key expires.
    key_reminder_days: Annotated[list[Annotated[int, Field(ge=1, le=MAX_NOTICE_DAYS)]],
                                 Field(max_length=5)] = [30, 7]
    # A key is renewed automatically this many days before it expires, unless the applicant
    # asked sooner; the old key keeps working `overlap_days` more, then is revoked.
    auto_renew_days: int = Field(14, ge=1, le=MAX_NOTICE_DAYS)
    overlap_days: int = Field(7, ge=1, le=MAX_OVERLAP_DAYS)
    # Reminders to the team that signs a licence or contract, and to the applicant.
    contract_reminder_days: Annotated[list[Annotated[int, Field(ge=1, le=MAX_NOTICE_DAYS)]],
                                      Field(max_length=5)] = [60, 30, 7]
    # A run of the service's process continues as new after this many days (its history stays
    # small whatever happens meanwhile).
    run_days: int = Field(90, ge=1, le=365)

    @model_validator(mode="after")
    def _sorted(self) -> LiveServicePolicy:
        object.__setattr__(self, "key_reminder_days", _days_before(self.key_reminder_days))
        object.__setattr__(self, "contract_reminder_days",
                           _days_before(self.contract_reminder_days))
        return self


class SubscriptionApplication(Model):
    """A fintech's application to use catalogue APIs: the subscription workflow's input."""

    application_id: Annotated[str, Field(pattern=r"^subscription-[0-9]{10}-[0-9a-f]{12}$")]
    organisation: Organisation
    service: ServicePlan
    requested_apis: Annotated[list[ApiId], Field(min_length=1, max_length=50)]
    deadlines: DeadlinePolicy = DeadlinePolicy()
    key_validity: KeyValidity = KeyValidity()
    limits: ProcessLimits = ProcessLimits()
    # For its live service, once in production.
    live_service: LiveServicePolicy = LiveServicePolicy()
    # Notes for the eligibility reviewer, found by admission (e.g. a foreign corporation):
    # recomputed by the workflow's admission, whatever the input says.
    reviewer_flags: list[str] = []

    @model_validator(mode="after")
    def _distinct_apis(self) -> SubscriptionApplication:
        if len(set(self.requested_apis)) != len(self.requested_apis):
            raise ValueError("requested_apis must not repeat an API")
        return self


IntegrationMethod = Literal["rest_over_internet", "dedicated_line", "vpn"]


class ApiProposal(Model):
    """The API a member company proposes to publish."""

    api_id: ApiId
    name: Text
    category: Annotated[str, Field(min_length=1, max_length=100)]
    is_market_data: bool
    integration_method: IntegrationMethod


class PublicationForm(Model):
    """What a provider submits: its organisation, the API, and the API's OpenAPI document."""

    organisation: Organisation
    api: ApiProposal
    specification: dict[str, Any]


class SpecificationSummary(Model):
    openapi_version: str
    title: str
    version: str
    operation_count: int
    sha256: str


class PublicationApplication(Model):
    """A member company's application to publish an API: the publication workflow's input."""

    application_id: Annotated[str, Field(pattern=r"^publication-[0-9]{10}-[a-z0-9._-]{2,64}$")]
    organisation: Organisation
    api: ApiProposal
    specification: dict[str, Any]
    specification_summary: SpecificationSummary  # recomputed by admission, like the flags
    deadlines: DeadlinePolicy = DeadlinePolicy()
    limits: ProcessLimits = ProcessLimits()
    reviewer_flags: list[str] = []


# --- decisions -------------------------------------------------------------------------------
# What each decision is for, who takes it and the rule it must meet: onboarding/domain/decisions.py.


class Decision(Model):
    """What every decision carries. `decision_id` makes a repeated delivery harmless.

    Who took it is who its `attestation` (the seal the codec server adds for the verified
    sender, onboarding.identity.attestation) says; the roster and the applicant's contacts are
    checked on that identity (activities/decisions.py, docs/identity.md). `decided_by` is
    optional and decides nothing: when present it must name the verified identity, or the
    decision is refused.
    """

    decision_id: Annotated[str, Field(min_length=1, max_length=100)]
    decided_by: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    note: Note = ""
    # What a seal binds (issue 12: the codec server's /encode sees no workflow id or signal
    # name), and the seal it adds for the verified sender (onboarding.identity.attestation).
    application_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    decision: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    attestation: Annotated[str, Field(max_length=8192)] | None = None


# A decision's verdict was called `outcome` before v2: still read under that name (the
# decisions in stop 8's histories, scripts written then), always written as `verdict`.
_VERDICT = AliasChoices("verdict", "outcome")


class PreVerificationCriteria(Model):
    related_to_capital_market_development: bool
    not_speculative_or_gambling: bool
    not_harmful_to_public_morals: bool

    def all_hold(self) -> bool:
        return all(self.model_dump().values())


class PreVerificationDecision(Decision):
    verdict: Literal["approve", "reject", "request_changes"] = Field(validation_alias=_VERDICT)
    criteria: PreVerificationCriteria | None = None


class Resubmission(Decision):
    """The applicant's amended details after a request for changes."""

    service: ServicePlan
    requested_apis: Annotated[list[ApiId], Field(min_length=1, max_length=50)]


class ContractTerms(Model):
    contract_number: Annotated[str, Field(min_length=1, max_length=100)]
    signed_on: date
    valid_from: date
    valid_until: date

    @model_validator(mode="after")
    def _period(self) -> ContractTerms:
        if self.valid_until < self.valid_from:
            raise ValueError("valid_until must not be before valid_from")
        return self


class MarketDataLicenceDecision(Decision):
    verdict: Literal["concluded", "reject"] = Field(validation_alias=_VERDICT)
    contract: ContractTerms | None = None


class PlatformContractDecision(Decision):
    verdict: Literal["signed", "reject"] = Field(validation_alias=_VERDICT)
    contract: ContractTerms | None = None
    # Corporate status confirmed by a person from the registry extract.
    eligibility_confirmed: bool = False


class FinalApprovalDecision(Decision):
    verdict: Literal["approve", "reject"] = Field(validation_alias=_VERDICT)


class SandboxTestReport(Decision):
    """The applicant reports its sandbox testing complete."""


class SandboxVerificationDecision(Decision):
    verdict: Literal["approve", "reject", "more_testing"] = Field(validation_alias=_VERDICT)


class ProductionSwitchDecision(Decision):
    verdict: Literal["approve", "reject"] = Field(validation_alias=_VERDICT)
    service_contract: ContractTerms | None = None


class Withdrawal(Decision):
    """The applicant withdraws; any key already issued is revoked."""


class PreReviewDecision(Decision):
    """Platform team: the integration method and the specification are agreed, or not."""

    verdict: Literal["approve", "reject", "request_changes"] = Field(validation_alias=_VERDICT)


class RevisedSpecification(Decision):
    """The provider's revised integration method and specification after a request."""

    integration_method: IntegrationMethod
    specification: dict[str, Any]


class ApiTestReport(Decision):
    """The provider reports its API test results."""

    results: Annotated[str, Field(min_length=1, max_length=4000)]


class ApiTestReviewDecision(Decision):
    verdict: Literal["approve", "reject", "more_testing"] = Field(validation_alias=_VERDICT)


class ServiceLaunched(Decision):
    """Sent by a subscription workflow whose service, using this API, reached production."""

    subscription_application_id: str
    api_id: str


class ApiWithdrawn(Decision):
    """Sent by a publication workflow to the subscriptions that requested its API."""

    api_id: str


# --- the live service's decisions (onboarding/domain/decisions.py, LIVE_SERVICE) ------------


class KeyRenewalRequest(Decision):
    """The applicant asks for a new key: the old one keeps working for the overlap, or is
    revoked at once (`immediate`: a leaked key)."""

    environment: Environment
    immediate: bool = False


class Suspension(Decision):
    """Platform team: every key of the live service suspended (the note says why)."""


class Reinstatement(Decision):
    """Final approver, not the one who suspended: the suspension lifted."""


class ContractRenewal(Decision):
    """The team that signs it: the renewed licence or contract."""

    contract: ContractTerms


class ApiChange(Decision):
    """The applicant adds APIs to its live service (after a short review) or removes them (at
    once)."""

    add: Annotated[list[ApiId], Field(max_length=50)] = []
    remove: Annotated[list[ApiId], Field(max_length=50)] = []


class ChangeReviewDecision(Decision):
    verdict: Literal["approve", "reject"]


class Termination(Decision):
    """The live service ends on `effective_on` (today when absent): every key revoked."""

    effective_on: date | None = None


class ApiRetired(Decision):
    """Sent by the platform for a provider retiring its API: it leaves the keys' scopes and the
    catalogue on `retired_on`."""

    api_id: str
    retired_on: date


class ApiRetirementDecision(Decision):
    """A provider retires its published API on `retired_on`: the input that starts the
    `ApiRetirement` process (workflow id `api-retirement-<api_id>`, what its seal binds),
    sealed by the codec server for a contact of the API's provider."""

    api_id: ApiId
    retired_on: date


class LicenceRenewalHeard(Decision):
    """Sent by a live service that recorded its organisation's renewed market-data licence, to
    the organisation's other live services using market data: each adopts the licence on file
    (checked against the record, not believed) and lifts its lapse from its status."""

    contract_number: Annotated[str, Field(min_length=1, max_length=100)]


class DecisionReceipt(Model):
    """The synchronous answer to a decision sent as an update."""

    decision_id: str
    applied: bool
    reason: str = ""
    step: str


# --- what the workflow reports ---------------------------------------------------------------


class DecisionRecord(Model):
    decision_id: str
    decision: str
    # Who took it, as the record names them: the verified identity's e-mail (a service's
    # client id) when its seal held; else what the decision claimed, marked "(not verified)".
    decided_by: str
    # The verified identity, issuer + subject (four eyes compares these); None when no seal
    # held, and for decisions taken before decisions were sealed.
    identity: IdentityRef | None = None
    note: str
    step: str
    received_at: datetime
    applied: bool
    reason: str = ""


class Deadline(Model):
    purpose: Literal["reminder", "escalation", "lapse"]
    due_at: datetime


class KeySummary(Model):
    """What may be said about an issued key anywhere: never the key itself."""

    key_id: str
    environment: Environment
    display_prefix: str
    scopes: list[str]
    expires_at: datetime
    status: Literal["active", "revoked"] = "active"


Process = Literal["subscription", "publication", "live_service"]


class TimelineEntry(Model):
    """What happened to a live service, when (its status keeps them across runs)."""

    at: datetime
    event: str
    detail: str = ""


class WatchedContract(Model):
    contract_type: Literal["market_data_licence", "platform", "service"]
    contract_number: str
    valid_until: date
    lapsed: bool = False


class LiveServiceStatus(Model):
    """A live service's own part of the status."""

    subscription_workflow_id: str
    state: Literal["live", "suspended", "terminated"]
    apis: list[str]
    contracts: list[WatchedContract]
    suspensions: list[str]  # in force: their causes
    next_due: str = ""  # what the process wakes for next, and when
    pending_change: str = ""
    terminating_on: date | None = None
    timeline: list[TimelineEntry] = []
    timeline_not_listed: int = 0


class ApplicationStatus(Model):
    application_id: str
    process: Process
    step: str
    waiting_on: str
    waiting_since: datetime
    deadlines: list[Deadline]
    decisions: list[DecisionRecord]
    keys: list[KeySummary]
    outcome: str = ""
    # Found at submission, for the eligibility reviewer (e.g. a foreign corporation).
    reviewer_flags: list[str] = []
    # Requested APIs whose provider withdrew them while this application was open.
    withdrawn_apis: list[str] = []
    # The decisions the current step takes (besides withdraw); empty while the platform works.
    takes: list[str] = []
    # Why admission refused the application (outcome `refused`): each field and rule.
    admission_refusals: list[Refusal] = []
    # Decisions received but no longer listed here (the audit log has every one): refusals
    # past the latest, and when a run had to carry less, the oldest applied ones.
    refused_not_listed: int = 0
    applied_not_listed: int = 0
    # Which run of the application's workflow answers: 1, one more at each continue-as-new.
    run: int = 1
    # A live service's keys, licences, contracts, suspensions and timeline.
    live: LiveServiceStatus | None = None
    # A decision received and being verified, by the commit that records it with what its step
    # does on it: its id. The rest of the status is the application as it was when it came.
    verifying: str = ""


# --- what activities look up -----------------------------------------------------------------


class ApiFacts(Model):
    api_id: str
    name: str
    is_market_data: bool
    provider_contact_emails: list[str]
    # The publication application that put it in the catalogue, if it came that way.
    publication_application_id: str | None = None


class CatalogueLookup(Model):
    api_ids: list[str]


class CatalogueFacts(Model):
    apis: list[ApiFacts]
    unknown: list[str]


class LicenceLookup(Model):
    business_registration_number: str
    on: date


class LaunchCheck(Model):
    subscription_application_id: str
    api_id: str


class SpecificationCheck(Model):
    specification: dict[str, Any]


class SpecificationVerdict(Model):
    summary: SpecificationSummary | None
    findings: list[str]


class Notice(Model):
    """A notice to named addresses, or to everyone on the staff holding `recipient_role`."""

    notice_id: str
    application_id: str
    template: str
    language: Language
    recipients: list[str] = []
    recipient_role: Role | None = None
    # Every member company providing an API in the catalogue.
    to_member_companies: bool = False
    context: dict[str, str] = {}


# --- the live service ------------------------------------------------------------------------


class LiveServiceStart(Model):
    """The live service's workflow input: which application's service, and its policy. What
    it watches (keys, licences, contracts, APIs) it reads from the record when it begins."""

    application_id: str  # the subscription's
    subscription_workflow_id: str
    organisation_id: str
    language: Language = "ko"
    policy: LiveServicePolicy = LiveServicePolicy()
    key_validity: KeyValidity = KeyValidity()
    # Started at production by the subscription, or by the one-off migration.
    started_by: Literal["production", "migration"] = "production"


class LiveServiceFacts(Model):
    """What the record says of an application in production, when its live service begins."""

    organisation_name: str
    contacts: list[str]
    service_name: str
    apis: list[ApiFacts]
    keys: list[KeySummary]  # active
    # The last generation of key issued for each environment (0: the first key).
    generations: dict[str, int] = {}
    contracts: list[WatchedContract]  # the latest of each type
