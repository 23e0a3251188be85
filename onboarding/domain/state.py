"""An application's process state: one model per process, the generic part (where it is,
whom it waits on, its deadlines, decisions, keys, the journal not yet committed) and the
process's own facts. The status query is built from it; everything a run knows that the next
one must know is in it, so that a run can continue as new carrying it (issue 11).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from onboarding.domain.models import (
    ApplicationStatus,
    CatalogueFacts,
    Deadline,
    DeadlinePolicy,
    DecisionRecord,
    KeySummary,
    Language,
    Process,
    PublicationApplication,
    SubscriptionApplication,
)
from onboarding.domain.record import JournalEntry


class ProcessState(BaseModel):
    # Changed in place by the workflow, and only by it (workflows/process.py).
    model_config = ConfigDict(extra="forbid")

    process: Process
    application_id: str
    organisation_id: str  # the business registration number
    organisation_name: str
    applicant_contacts: list[str]  # lower case
    language: Language
    deadline_policy: DeadlinePolicy
    reviewer_flags: list[str] = []

    step: str = "submitted"
    waiting_on: str = ""
    waiting_since: datetime
    deadlines: list[Deadline] = []  # still ahead, soonest first
    takes: list[str] = []  # the decisions the step takes now (withdraw aside)
    decisions: list[DecisionRecord] = []
    seen: set[str] = set()  # ids of the decisions received, applied or refused
    keys: list[KeySummary] = []
    outcome: str = ""

    seq: int = 0  # the journal's next entry number, across runs
    journal: list[JournalEntry] = []  # entries not yet committed

    def status(self) -> ApplicationStatus:
        return ApplicationStatus(
            application_id=self.application_id, process=self.process, step=self.step,
            waiting_on=self.waiting_on, waiting_since=self.waiting_since,
            deadlines=list(self.deadlines), decisions=list(self.decisions),
            keys=list(self.keys), outcome=self.outcome, reviewer_flags=list(self.reviewer_flags),
            takes=list(self.takes))


class SubscriptionState(ProcessState):
    application: SubscriptionApplication
    # The catalogue's facts of the requested APIs, as of submission (or resubmission).
    catalogue: CatalogueFacts = CatalogueFacts(apis=[], unknown=[])
    # Requested APIs whose provider withdrew them while the application was open.
    withdrawn_apis: list[str] = []

    @classmethod
    def of(cls, application: SubscriptionApplication, now: datetime) -> SubscriptionState:
        return cls(process="subscription", application=application, waiting_since=now,
                   **_generic(application))

    def status(self) -> ApplicationStatus:
        return super().status().model_copy(update={"withdrawn_apis": list(self.withdrawn_apis)})


class PublicationState(ProcessState):
    application: PublicationApplication
    in_catalogue: bool = False

    @classmethod
    def of(cls, application: PublicationApplication, now: datetime) -> PublicationState:
        return cls(process="publication", application=application, waiting_since=now,
                   **_generic(application))


def _generic(application: SubscriptionApplication | PublicationApplication) -> dict:
    org = application.organisation
    return {"application_id": application.application_id,
            "organisation_id": org.business_registration_number,
            "organisation_name": org.legal_name,
            "applicant_contacts": [str(e).lower() for e in org.contact_emails],
            "language": org.language, "deadline_policy": application.deadlines,
            "reviewer_flags": list(application.reviewer_flags)}
