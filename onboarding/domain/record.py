"""What goes on the record: the journal a process keeps between two commits.

A process changes the world only through its journal (workflows/process.py). Each entry is
what one effect writes (an audit line, the application's row, a contract, a key, a revocation,
a catalogue change, a notice in the outbox), numbered in the process's order; one activity
(`write_record`, activities/records.py) writes a batch of them in one transaction and says
what the workflow needs back. An entry's number makes its audit line's id
(`<application>/<seq>`), so a commit retried after a crash writes nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from onboarding.domain.models import (
    ApiProposal,
    ContractTerms,
    Environment,
    KeySummary,
    Language,
    Model,
    Notice,
    Organisation,
    Process,
    SpecificationSummary,
)

ContractType = Literal["market_data_licence", "platform", "service"]


class Entry(Model):
    seq: int


class Audited(Entry):
    """A line of the audit log: a decision applied or refused, a step entered, a deadline."""

    entry: Literal["audit"] = "audit"
    action: str
    result: Literal["applied", "refused", "succeeded", "failed"] = "succeeded"
    actor: str = "platform"
    reason: str = ""
    details: dict[str, Any] = {}


class ApplicationOnRecord(Entry):
    """The application's row and its organisation's; a resubmission's APIs replace the old."""

    entry: Literal["application"] = "application"
    process: Process
    organisation: Organisation
    requested_apis: list[str]
    # The run that began the application's workflow: a second run chain under the same
    # application id is refused by admission (onboarding/store/admission.py).
    first_execution_run_id: str | None = None


class ContractRecorded(Entry):
    entry: Literal["contract"] = "contract"
    contract_type: ContractType
    terms: ContractTerms
    recorded_by: str


class KeyIssued(Entry):
    """A key issued, and its delivery to `recipients` put in the outbox (never the key).

    A live service's renewal gives the key its generation (1, 2, ...: the issuance id
    `<application>/key/<environment>/<generation>`, fixed by the process, so that a retried
    renewal finds the key it issued), its expiry by the process's clock, and its owner."""

    entry: Literal["key"] = "key"
    environment: Environment
    scopes: list[str]
    valid_days: int = Field(ge=1)
    recipients: list[str]
    language: Language
    generation: int = Field(0, ge=0)
    expires_at: datetime | None = None
    owner_workflow_id: str | None = None

    def issuance_id(self, application_id: str) -> str:
        base = f"{application_id}/key/{self.environment}"
        return f"{base}/{self.generation}" if self.generation else base


class KeysRevoked(Entry):
    """Every active key of the application revoked, or only `key_ids` (a renewal's old key)."""

    entry: Literal["revocation"] = "revocation"
    reason: str
    key_ids: list[str] | None = None


class KeysTakenOver(Entry):
    """The application's active keys owned by its live service from now on."""

    entry: Literal["takeover"] = "takeover"
    owner_workflow_id: str


class KeyScopesChanged(Entry):
    """The APIs the application's active keys grant (a live service's change)."""

    entry: Literal["scopes"] = "scopes"
    scopes: list[str]


SuspensionCause = Literal["platform", "market_data_licence", "platform_contract",
                          "service_contract"]


class KeysSuspended(Entry):
    """A suspension in force: on every key of the organisation (`organisation_wide`) or of the
    application; of every API, or only the market-data ones (`market_data_only`)."""

    entry: Literal["suspension"] = "suspension"
    suspension_id: str
    cause: SuspensionCause
    reason: str
    suspended_by: str
    organisation_wide: bool = False
    market_data_only: bool = False


class SuspensionLifted(Entry):
    """The suspensions in force of `cause` lifted (where `KeysSuspended` put them), or only
    `suspension_id`."""

    entry: Literal["lift"] = "lift"
    cause: SuspensionCause
    lifted_by: str
    organisation_wide: bool = False
    suspension_id: str | None = None


class ApiPublished(Entry):
    """The API in the catalogue of `stage` at the specification's version."""

    entry: Literal["publication"] = "publication"
    api: ApiProposal
    specification: dict[str, Any]
    summary: SpecificationSummary
    stage: Literal["sandbox", "production"]


class ApiWithdrawnFromCatalogue(Entry):
    entry: Literal["withdrawal"] = "withdrawal"
    api_id: str


class NoticeQueued(Entry):
    entry: Literal["notice"] = "notice"
    notice: Notice


JournalEntry = Annotated[
    Audited | ApplicationOnRecord | ContractRecorded | KeyIssued | KeysRevoked | ApiPublished
    | ApiWithdrawnFromCatalogue | NoticeQueued | KeysTakenOver | KeyScopesChanged
    | KeysSuspended | SuspensionLifted,
    Field(discriminator="entry"),
]


class Commit(Model):
    """`write_record`'s input: the journal since the last commit, and where the application is."""

    application_id: str
    workflow_id: str
    business_registration_number: str
    step: str
    # Set once, when the application ends (its outcome).
    status: str | None = None
    entries: list[JournalEntry]
    # Audit lines are `<entry_prefix>/<seq>` (the application id when empty). An application
    # refused at admission is nobody's on record: its lines are its run's own, and its step
    # and status are not written on the application's row (`on_record`), which may be another
    # run chain's.
    entry_prefix: str = ""
    on_record: bool = True


class Committed(Model):
    """What the workflow needs back from a commit."""

    # The application's keys, when the commit issued or revoked any.
    keys: list[KeySummary] | None = None
    # Why a publication could not be made (another provider's API holds the id).
    publication_refused: str = ""
    # The open subscriptions that requested an API just withdrawn from the catalogue.
    subscriptions_to_tell: list[str] = []
