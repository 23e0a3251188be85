"""Stop 8's messages that v2 renamed or no longer uses, frozen: applications started before
v2 replay and run with them (workflows/legacy/), and so do the activities they may still have
in flight (activities/legacy.py).

Never change a class here. The messages v2 kept as they were are imported from
onboarding.domain.models: one definition, held to the rule every message follows (a field is
only ever added, with a default), so that the histories of both versions stay readable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from onboarding.domain.models import (
    ApiId,
    ApiProposal,
    ContractTerms,
    Environment,
    IntegrationMethod,
    KeySummary,
    Language,
    Model,
    Note,
    PreVerificationCriteria,
    PublicationApplication,
    Role,
    ServicePlan,
    SpecificationSummary,
    SubscriptionApplication,
)

# --- decisions -------------------------------------------------------------------------------


class Decision(Model):
    """What every decision carries. `decision_id` makes a repeated delivery harmless."""

    decision_id: Annotated[str, Field(min_length=1, max_length=100)]
    decided_by: Annotated[str, Field(min_length=1, max_length=200)]
    note: Note = ""


class PreVerificationDecision(Decision):
    outcome: Literal["approve", "reject", "request_changes"]
    criteria: PreVerificationCriteria | None = None


class Resubmission(Decision):
    """The applicant's amended details after a request for changes."""

    service: ServicePlan
    requested_apis: Annotated[list[ApiId], Field(min_length=1, max_length=50)]


class MarketDataLicenceDecision(Decision):
    outcome: Literal["concluded", "reject"]
    contract: ContractTerms | None = None


class PlatformContractDecision(Decision):
    outcome: Literal["signed", "reject"]
    contract: ContractTerms | None = None
    # Corporate status confirmed by a person from the registry extract.
    eligibility_confirmed: bool = False


class FinalApprovalDecision(Decision):
    outcome: Literal["approve", "reject"]


class SandboxTestReport(Decision):
    """The applicant reports its sandbox testing complete."""


class SandboxVerificationDecision(Decision):
    outcome: Literal["approve", "reject", "more_testing"]


class ProductionSwitchDecision(Decision):
    outcome: Literal["approve", "reject"]
    service_contract: ContractTerms | None = None


class Withdrawal(Decision):
    """The applicant withdraws; any key already issued is revoked."""


class PreReviewDecision(Decision):
    """Platform team: the integration method and the specification are agreed, or not."""

    outcome: Literal["approve", "reject", "request_changes"]


class RevisedSpecification(Decision):
    """The provider's revised integration method and specification after a request."""

    integration_method: IntegrationMethod
    specification: dict[str, Any]


class ApiTestReport(Decision):
    """The provider reports its API test results."""

    results: Annotated[str, Field(min_length=1, max_length=4000)]


class ApiTestingDecision(Decision):
    outcome: Literal["approve", "reject", "more_testing"]


class ServiceLaunched(Decision):
    """Sent by a subscription workflow whose service, using this API, reached production."""

    subscription_application_id: str
    api_id: str


class ApiWithdrawn(Decision):
    """Sent by a publication workflow to the subscriptions that requested its API."""

    api_id: str


class DecisionOutcome(Model):
    """The synchronous answer to a decision sent as an update."""

    decision_id: str
    applied: bool
    reason: str = ""
    step: str


# --- what the workflow reports ---------------------------------------------------------------


class DecisionRecord(Model):
    decision_id: str
    kind: str
    decided_by: str
    note: str
    step: str
    received_at: datetime
    applied: bool
    reason: str = ""


class Deadline(Model):
    kind: Literal["reminder", "escalation", "lapse"]
    due_at: datetime


class ApplicationStatus(Model):
    application_id: str
    kind: Literal["subscription", "publication"]
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


# --- activity inputs and outputs -------------------------------------------------------------


class ApplicationRecord(Model):
    application: SubscriptionApplication
    workflow_id: str


class ProgressRecord(Model):
    """One line of the audit log, and optionally the application's new step."""

    entry_id: str
    application_id: str
    workflow_id: str
    actor: str
    action: str
    outcome: Literal["applied", "refused", "succeeded", "failed"]
    reason: str = ""
    details: dict[str, object] = {}
    step: str | None = None
    status: str | None = None


class ContractRecord(Model):
    kind: Literal["market_data_licence", "platform", "service"]
    terms: ContractTerms
    business_registration_number: str
    application_id: str
    recorded_by: str


class KeyIssuance(Model):
    issuance_id: str
    application_id: str
    business_registration_number: str
    environment: Environment
    scopes: list[str]
    valid_days: int = Field(ge=1)
    # The key goes to these addresses in the delivery notice, and nowhere else.
    recipients: list[str]
    language: Language


class KeyRevocation(Model):
    application_id: str
    reason: str


class StaffLookup(Model):
    staff_id: str


class StaffRoles(Model):
    roles: list[Role]


class PublicationRecord(Model):
    application: PublicationApplication
    workflow_id: str


class ApiPublication(Model):
    """Put an API (at one specification version) in the catalogue of `stage`."""

    application_id: str
    api: ApiProposal
    provider_business_registration_number: str
    specification: dict[str, Any]
    specification_summary: SpecificationSummary
    stage: Literal["sandbox", "production"]


class ApiWithdrawal(Model):
    application_id: str
    api_id: str


class OpenSubscriptions(Model):
    workflow_ids: list[str]
