"""What goes on the record: the journal a process keeps between two commits.

A process changes the world only through its journal (workflows/process.py). Each entry is
what one effect writes (an audit line, the application's row, a contract, a key, a revocation,
a catalogue change, a notice in the outbox), numbered in the process's order; one activity
(`write_record`, activities/records.py) writes a batch of them in one transaction and says
what the workflow needs back. An entry's number makes its audit line's id
(`<application>/<seq>`), so a commit retried after a crash writes nothing twice.
"""

from __future__ import annotations

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


class ContractRecorded(Entry):
    entry: Literal["contract"] = "contract"
    contract_type: ContractType
    terms: ContractTerms
    recorded_by: str


class KeyIssued(Entry):
    """A key issued, and its delivery to `recipients` put in the outbox (never the key)."""

    entry: Literal["key"] = "key"
    environment: Environment
    scopes: list[str]
    valid_days: int = Field(ge=1)
    recipients: list[str]
    language: Language


class KeysRevoked(Entry):
    entry: Literal["revocation"] = "revocation"
    reason: str


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
    | ApiWithdrawnFromCatalogue | NoticeQueued,
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


class Committed(Model):
    """What the workflow needs back from a commit."""

    # The application's keys, when the commit issued or revoked any.
    keys: list[KeySummary] | None = None
    # Why a publication could not be made (another provider's API holds the id).
    publication_refused: str = ""
    # The open subscriptions that requested an API just withdrawn from the catalogue.
    subscriptions_to_tell: list[str] = []
