"""The decision catalogue: one declaration per decision, for each process.

A declaration says what the decision is called (its signal's and its update's name), what it
carries (its model), who takes it, the rule it must meet as sent, and what it is for. From it
come the workflows' signals, updates and validators (workflows/handlers.py), the reviewer CLI's
table and help, and docs/decisions.md's tables are checked against it (tests/test_decisions.py).
Nothing else lists decisions. What a decision does once applied is written in the step that
waits for it (workflows/subscription.py, workflows/publication.py).

Pure: rules read the decision only. What needs the world (a role in the roster, a contract
number no other application holds, a revised specification that validates) is checked when
the decision arrives, by the process (workflows/process.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from onboarding.domain.admission import MAX_SPECIFICATION_BYTES
from onboarding.domain.models import (
    ApiChange,
    ApiRetired,
    ApiRetirementDecision,
    ApiTestReport,
    ChangeReviewDecision,
    ContractRenewal,
    KeyRenewalRequest,
    LicenceRenewalHeard,
    Reinstatement,
    Suspension,
    Termination,
    ApiTestReviewDecision,
    Decision,
    FinalApprovalDecision,
    MarketDataLicenceDecision,
    PlatformContractDecision,
    PreReviewDecision,
    PreVerificationDecision,
    Process,
    ProductionSwitchDecision,
    Resubmission,
    RevisedSpecification,
    Role,
    SandboxTestReport,
    SandboxVerificationDecision,
    ServiceLaunched,
    Withdrawal,
)

D = TypeVar("D", bound=Decision)

# A decision's payload larger than this is refused without being read (issue 11): decisions
# are a few hundred bytes; a revised specification is the exception.
MAX_DECISION_BYTES = 32 * 1024


def always(_: Decision) -> str | None:
    return None


def needs_note_unless_approved(d: Any) -> str | None:
    if d.verdict != "approve" and not d.note:
        return f"{d.verdict} needs a note saying why"
    return None


@dataclass(frozen=True)
class DecisionType(Generic[D]):
    name: str  # the signal's and the update's name
    model: type[D]  # its payload
    taken_by: Role  # who may take it: a staff role, the applicant, another process
    rule: Callable[[D], str | None]  # pure: why it cannot apply as sent, or None
    description: str  # shown in the Web UI (signal and update), the CLI's help
    # Not by anyone who took a decision of this name in the application (four eyes).
    four_eyes: str | None = None
    # Taken at any step (not only when a step waits for it); applied, it ends the application.
    ends_application: bool = False
    max_payload_bytes: int = MAX_DECISION_BYTES


class Catalogue(Mapping[str, DecisionType[Any]]):
    """A process's decisions, in the order of its procedure."""

    def __init__(self, process: Process, *decisions: DecisionType[Any]) -> None:
        self.process = process
        self._by_name = {d.name: d for d in decisions}
        assert len(self._by_name) == len(decisions), f"a decision declared twice in {process}"

    def __getitem__(self, name: str) -> DecisionType[Any]:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


# --- the rules ---------------------------------------------------------------------------------


def _pre_verification(d: PreVerificationDecision) -> str | None:
    if d.verdict == "approve" and not (d.criteria and d.criteria.all_hold()):
        return ("approval needs criteria, and all three must hold: related to capital-market "
                "development, not speculative or gambling-like, not harmful to public morals")
    if d.verdict != "approve" and not d.note:
        return f"{d.verdict} needs a note saying why"
    return None


def _licence(d: MarketDataLicenceDecision) -> str | None:
    if d.verdict == "concluded" and d.contract is None:
        return "a concluded licence needs its contract (number, signed date, validity)"
    if d.verdict == "reject" and not d.note:
        return "reject needs a note saying why"
    return None


def _platform_contract(d: PlatformContractDecision) -> str | None:
    if d.verdict == "signed":
        if d.contract is None:
            return "a signed platform contract needs its contract (number, signed date, validity)"
        if not d.eligibility_confirmed:
            return "the eligibility review must confirm corporate status before signing"
    if d.verdict == "reject" and not d.note:
        return "reject needs a note saying why"
    return None


def _production_switch(d: ProductionSwitchDecision) -> str | None:
    if d.verdict == "approve" and d.service_contract is None:
        return "the production switch needs the service contract (number, signed date, validity)"
    return needs_note_unless_approved(d)


# --- subscription: a fintech uses the platform's APIs ----------------------------------------

PRE_VERIFICATION = DecisionType(
    "pre_verification", PreVerificationDecision, Role.PRE_VERIFICATION_REVIEWER,
    _pre_verification,
    "Pre-verification reviewer: approve (with the three criteria), reject or request_changes.")
RESUBMIT = DecisionType(
    "resubmit", Resubmission, Role.APPLICANT, always,
    "Applicant: amended service and APIs after a request for changes.")
MARKET_DATA_LICENCE = DecisionType(
    "market_data_licence", MarketDataLicenceDecision, Role.MARKET_DATA_SALES, _licence,
    "Market-information sales: the concluded market-data licence contract, or reject.")
PLATFORM_CONTRACT = DecisionType(
    "platform_contract", PlatformContractDecision, Role.PLATFORM_TEAM, _platform_contract,
    "Platform team: the signed platform contract with eligibility confirmed, or reject.")
FINAL_APPROVAL = DecisionType(
    "final_approval", FinalApprovalDecision, Role.FINAL_APPROVER, needs_note_unless_approved,
    "Final approver (not the pre-verification reviewer): approve, which issues the sandbox "
    "key and tells the member companies, or reject.",
    four_eyes=PRE_VERIFICATION.name)
SANDBOX_TESTING_COMPLETE = DecisionType(
    "sandbox_testing_complete", SandboxTestReport, Role.APPLICANT, always,
    "Applicant: sandbox testing is complete.")
SANDBOX_VERIFICATION = DecisionType(
    "sandbox_verification", SandboxVerificationDecision, Role.PLATFORM_TEAM,
    needs_note_unless_approved,
    "Platform team: business-suitability verification: approve, reject or more_testing.")
PRODUCTION_SWITCH = DecisionType(
    "production_switch", ProductionSwitchDecision, Role.FINAL_APPROVER, _production_switch,
    "Final approver (not the pre-verification reviewer): the service contract; issues the "
    "production key.",
    four_eyes=PRE_VERIFICATION.name)
WITHDRAW_SUBSCRIPTION = DecisionType(
    "withdraw", Withdrawal, Role.APPLICANT, always,
    "Applicant: withdraw the application, at any step; issued keys are revoked.",
    ends_application=True)

SUBSCRIPTION = Catalogue(
    "subscription", PRE_VERIFICATION, RESUBMIT, MARKET_DATA_LICENCE, PLATFORM_CONTRACT,
    FINAL_APPROVAL, SANDBOX_TESTING_COMPLETE, SANDBOX_VERIFICATION, PRODUCTION_SWITCH,
    WITHDRAW_SUBSCRIPTION)

# --- publication: a member company publishes its API -----------------------------------------

PRE_REVIEW = DecisionType(
    "pre_review", PreReviewDecision, Role.PLATFORM_TEAM, needs_note_unless_approved,
    "Platform team: integration method and specification agreed (approve), reject, or "
    "request_changes.")
REVISE_SPECIFICATION = DecisionType(
    "revise_specification", RevisedSpecification, Role.APPLICANT, always,
    "Provider: the revised integration method and OpenAPI specification, after a request "
    "for changes.",
    # The specification travels in the decision: held to the submission's size.
    max_payload_bytes=MAX_SPECIFICATION_BYTES + MAX_DECISION_BYTES)
API_TEST_REPORT = DecisionType(
    "api_test_report", ApiTestReport, Role.APPLICANT, always,
    "Provider: the API's test results.")
API_TEST_REVIEW = DecisionType(
    "api_test_review", ApiTestReviewDecision, Role.PLATFORM_TEAM, needs_note_unless_approved,
    "Platform team: the review of the API's test results: approve (the API enters the "
    "sandbox catalogue), reject or more_testing.")
SERVICE_LAUNCHED = DecisionType(
    "service_launched", ServiceLaunched, Role.PLATFORM_WORKFLOW, always,
    "Sent by a subscription workflow that reached production using this API: the API goes "
    "to production once the record shows it.")
WITHDRAW_PUBLICATION = DecisionType(
    "withdraw", Withdrawal, Role.APPLICANT, always,
    "Provider: withdraw the API before production; it leaves the catalogue.",
    ends_application=True)

PUBLICATION = Catalogue(
    "publication", PRE_REVIEW, REVISE_SPECIFICATION, API_TEST_REPORT, API_TEST_REVIEW,
    SERVICE_LAUNCHED, WITHDRAW_PUBLICATION)

# --- live service: the service after production (workflows/live_service.py) ------------------


def needs_note(what: str) -> Callable[[Decision], str | None]:
    def rule(d: Decision) -> str | None:
        return None if d.note.strip() else f"note: {what} [required]"
    return rule


def _renewal(d: KeyRenewalRequest) -> str | None:
    if d.immediate and not d.note.strip():
        return "note: an immediate rotation needs a note saying why (a leaked key?) [required]"
    return None


def _change(d: ApiChange) -> str | None:
    if not d.add and not d.remove:
        return "add, remove: a change adds or removes at least one API [required]"
    if both := sorted(set(d.add) & set(d.remove)):
        return f"add, remove: {', '.join(both)} both added and removed [distinct]"
    if len(set(d.add)) != len(d.add) or len(set(d.remove)) != len(d.remove):
        return "add, remove: an API named twice [distinct]"
    return None


RENEW_KEY = DecisionType(
    "renew_key", KeyRenewalRequest, Role.APPLICANT, _renewal,
    "Applicant: a new key for an environment now; the old one keeps working for the overlap, "
    "or is revoked at once with immediate (a leaked key: say why in the note).")
SUSPEND = DecisionType(
    "suspend", Suspension, Role.PLATFORM_TEAM, needs_note("a suspension says why"),
    "Platform team: suspend every key of the live service at once, with the reason in the "
    "note (a security incident, say).")
REINSTATE = DecisionType(
    "reinstate", Reinstatement, Role.FINAL_APPROVER, always,
    "Final approver (not who suspended): lift the platform team's suspension.",
    four_eyes=SUSPEND.name)
MARKET_DATA_LICENCE_RENEWED = DecisionType(
    "market_data_licence_renewed", ContractRenewal, Role.MARKET_DATA_SALES, always,
    "Market-information sales: the organisation's renewed market-data licence; lifts a "
    "lapse's suspension of the market-data APIs on every key of the organisation.")
PLATFORM_CONTRACT_RENEWED = DecisionType(
    "platform_contract_renewed", ContractRenewal, Role.PLATFORM_TEAM, always,
    "Platform team: the renewed platform contract; lifts a lapse's suspension.")
SERVICE_CONTRACT_RENEWED = DecisionType(
    "service_contract_renewed", ContractRenewal, Role.FINAL_APPROVER, always,
    "Final approver: the renewed service contract; lifts a lapse's suspension.")
CHANGE_APIS = DecisionType(
    "change_apis", ApiChange, Role.APPLICANT, _change,
    "Applicant: add APIs to the live service (reviewed first) or remove some (at once).")
CHANGE_REVIEW = DecisionType(
    "change_review", ChangeReviewDecision, Role.PLATFORM_TEAM, needs_note_unless_approved,
    "Platform team: pre-verification of a change adding APIs: approve or reject.")
CHANGE_APPROVAL = DecisionType(
    "change_approval", ChangeReviewDecision, Role.FINAL_APPROVER, needs_note_unless_approved,
    "Final approver (not the change's reviewer): approve, and the keys grant the added APIs, "
    "or reject. A market-data API needs a valid market-data licence on file first.",
    four_eyes=CHANGE_REVIEW.name)
TERMINATE = DecisionType(
    "terminate", Termination, Role.APPLICANT, always,
    "Applicant: end the live service on effective_on (today when absent): every key revoked.")
TERMINATE_SERVICE = DecisionType(
    "terminate_service", Termination, Role.PLATFORM_TEAM,
    needs_note("a termination by the platform says why"),
    "Platform team: end the live service on effective_on, with the reason in the note.")
API_RETIRED = DecisionType(
    "api_retired", ApiRetired, Role.PLATFORM_WORKFLOW, always,
    "Sent by the platform when a provider retires an API: on retired_on it leaves the keys' "
    "scopes and the catalogue.")
MARKET_DATA_LICENCE_RENEWAL_HEARD = DecisionType(
    "market_data_licence_renewal_heard", LicenceRenewalHeard, Role.PLATFORM_WORKFLOW, always,
    "Sent by another live service of the organisation that recorded its renewed market-data "
    "licence: the licence on file is adopted and its lapse lifted from this service's status.")

LIVE_SERVICE = Catalogue(
    "live_service", RENEW_KEY, SUSPEND, REINSTATE, MARKET_DATA_LICENCE_RENEWED,
    PLATFORM_CONTRACT_RENEWED, SERVICE_CONTRACT_RENEWED, CHANGE_APIS, CHANGE_REVIEW,
    CHANGE_APPROVAL, TERMINATE, TERMINATE_SERVICE, API_RETIRED,
    MARKET_DATA_LICENCE_RENEWAL_HEARD)

# --- decisions that start a process of their own (its input, sealed like any other) -----------

RETIRE_API = DecisionType(
    "retire_api", ApiRetirementDecision, Role.APPLICANT, always,
    "Provider (a contact of the API's provider, or a service acting for it): retire the API on "
    "retired_on; every live service using it is told, and it leaves the catalogue that day.")
# By the workflow id's prefix (what the seal binds as the application id).
STARTS: dict[str, DecisionType[Any]] = {"api-retirement-": RETIRE_API}

CATALOGUES: dict[str, Catalogue] = {c.process: c for c in (SUBSCRIPTION, PUBLICATION,
                                                           LIVE_SERVICE)}


# The largest a decision of any process may be (a revised specification): what a client that
# does not know which decision a payload is (the codec server, encoding for the Web UI) may
# refuse above, before Temporal. Below Temporal's blob limit (onboarding/temporal/dynamic_config.py).
LARGEST_DECISION_BYTES = max(d.max_payload_bytes for d in [
    *(d for c in CATALOGUES.values() for d in c.values()), *STARTS.values()])


def too_large(decision: DecisionType[Any], size: int) -> str | None:
    """Why a payload of `size` bytes is refused as `decision`, before it is even read: a
    workflow refuses it on the record undecoded; a client should not send it at all (an
    oversized update would wedge the application: README, What the platform guarantees)."""
    if size > decision.max_payload_bytes:
        return (f"{size} bytes; a {decision.name} may have at most "
                f"{decision.max_payload_bytes} [too_large]")
    return None


def decision_type(application_id: str, name: str) -> DecisionType[Any] | None:
    """The decision `name` as people take it on this application (its id begins with its
    process's name: subscription-..., publication-...); None for any other name, and for
    what only another process sends (service_launched). A decision that starts a process
    (`retire_api` on api-retirement-...) is found by its workflow id's prefix (STARTS)."""
    for prefix, kind in STARTS.items():
        if application_id.startswith(prefix):
            return kind if kind.name == name else None
    for process, catalogue in CATALOGUES.items():
        # A live service's decisions bind its workflow id, live-service-...
        if application_id.startswith(f"{process.replace('_', '-')}-"):
            kind = catalogue.get(name)
            return kind if kind is not None and kind.taken_by is not Role.PLATFORM_WORKFLOW \
                else None
    return None
