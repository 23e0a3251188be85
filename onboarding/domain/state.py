"""An application's process state: one model per process, the generic part (where it is,
whom it waits on, its deadlines, decisions, keys, the journal not yet committed) and the
process's own facts. The status query is built from it; everything a run knows that the next
one must know is in it, so that a run continues as new carrying it (workflows/process.py).

Bounded, so that what a run carries to the next stays well under Temporal's payload limit
whatever reaches the application (docs/architecture.md, "A history that stays bounded"):

- every decision applied, and the latest RECENT_REFUSALS refused ones, are listed in the
  status; earlier refusals are counted (the audit log has each);
- a decision id is recognised as a repeat if it was applied, or among the latest
  RECENT_REFUSED_IDS refused (when a run must carry less: the latest 100 refused, and the
  applied ones still listed);
- past REFUSALS_PER_SENDER_PER_HOUR refusals from one sender (or REFUSALS_PER_HOUR from all),
  refusals are counted rather than journaled one by one, and the counts go on the record
  ("N refusals from X dropped since T");
- a run carries at most CARRIED_BYTES (`carried`): beyond it, notes and reasons are
  shortened, then the oldest records dropped from the list (counted: the audit log has them),
  but for each person who took a decision four eyes depends on; then the oldest applied ids.
  What it cannot shorten is bounded: keys (2), deadlines (3), the catalogue's facts of at most
  50 APIs, the refusal counts (SENDERS_COUNTED senders), the journal not yet written (the
  continue-as-new commits first while it is over 64 KiB), and who pre-verified: people on the
  roster. tests/test_bounds.py builds the worst of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from onboarding.domain.admission import Refusal, valid_contacts
from onboarding.domain.decisions import CATALOGUES
from onboarding.domain.models import (
    ApplicationStatus,
    CatalogueFacts,
    Deadline,
    DeadlinePolicy,
    DecisionRecord,
    KeySummary,
    Language,
    Organisation,
    Process,
    ProcessLimits,
    PublicationApplication,
    SpecificationSummary,
    SubscriptionApplication,
)
from onboarding.domain.record import JournalEntry

RECENT_REFUSALS = 50
RECENT_REFUSED_IDS = 500
REFUSALS_PER_SENDER_PER_HOUR = 20
REFUSALS_PER_HOUR = 200
# Senders whose refusals are counted one by one within an hour; any further sender's count
# under OTHER_SENDERS.
SENDERS_COUNTED = 50
SENDER_KEPT = 80  # characters of a sender's name in the counts
OTHER_SENDERS = "(other senders)"
# What a run carries to the next besides the application itself (whose size admission bounds).
CARRIED_BYTES = 320 * 1024
NOTE_CARRIED = 200  # characters of an older decision's note or reason, when the budget is short


class Dropped(BaseModel):
    count: int = 0
    since: datetime


class RefusalCounts(BaseModel):
    """Refusals journaled this hour, by sender, and those dropped and not yet on the record."""

    window_start: datetime | None = None
    journaled: dict[str, int] = {}
    dropped: dict[str, Dropped] = {}

    def journals(self, sender: str, now: datetime) -> bool:
        """Whether a refusal from `sender` at `now` goes on the record one by one (counted
        either way)."""
        sender = sender[:SENDER_KEPT]
        if self.window_start is None or now - self.window_start >= timedelta(hours=1):
            self.window_start, self.journaled = now, {}
        if sender not in self.journaled and len(self.journaled) >= SENDERS_COUNTED:
            sender = OTHER_SENDERS
        if (self.journaled.get(sender, 0) < REFUSALS_PER_SENDER_PER_HOUR
                and sum(self.journaled.values()) < REFUSALS_PER_HOUR):
            self.journaled[sender] = self.journaled.get(sender, 0) + 1
            return True
        if sender not in self.dropped and len(self.dropped) >= SENDERS_COUNTED:
            sender = OTHER_SENDERS
        self.dropped.setdefault(sender, Dropped(since=now)).count += 1
        return False


@dataclass
class Seen:
    """The ids a process recognises as repeats, as sets (the state keeps them as lists)."""

    applied: set[str]
    refused: set[str]


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
    limits: ProcessLimits = ProcessLimits()
    reviewer_flags: list[str] = []
    # Why admission refused the application: then it is nobody's on record, and its audit
    # lines are its run's own (`entry_prefix`, onboarding/domain/record.py's Commit).
    admission_refusals: list[Refusal] = []
    on_record: bool = True
    entry_prefix: str = ""

    step: str = "submitted"
    waiting_on: str = ""
    waiting_since: datetime
    deadlines: list[Deadline] = []  # still ahead, soonest first
    takes: list[str] = []  # the decisions the step takes now (withdraw aside)
    decisions: list[DecisionRecord] = []  # applied ones, and the latest refused
    refused_not_listed: int = 0
    applied_not_listed: int = 0
    applied_ids: list[str] = []  # oldest first
    refused_ids: list[str] = []  # the latest, oldest first
    refusals: RefusalCounts = RefusalCounts()
    keys: list[KeySummary] = []
    outcome: str = ""

    run: int = 1  # this run of the application's workflow: 1, and one more at each continue-as-new
    seq: int = 0  # the journal's next entry number, across runs
    journal: list[JournalEntry] = []  # entries not yet committed

    @property
    def sealed_as(self) -> str:
        """What its decisions' seals name as their application (its workflow's id)."""
        return self.application_id

    @classmethod
    def unreadable(cls, process: Process, raw: Any, application_id: str,
                   now: datetime) -> ProcessState:
        """The state of an application whose input is not one (admission refuses it): what
        can be read of it, to put the refusal on the record and tell whom it names."""
        org = raw.get("organisation") if isinstance(raw, dict) else None
        org = org if isinstance(org, dict) else {}

        def text(value: Any, limit: int) -> str:
            return value[:limit] if isinstance(value, str) else ""

        return cls(process=process, application_id=application_id[:200],
                   organisation_id=text(org.get("business_registration_number"), 20),
                   organisation_name=text(org.get("legal_name"), 500),
                   applicant_contacts=valid_contacts(raw),
                   language="en" if org.get("language") == "en" else "ko",
                   deadline_policy=DeadlinePolicy(), step="admission", waiting_since=now)

    # --- decisions seen ------------------------------------------------------------------

    def saw(self, record: DecisionRecord, seen: Seen, listed: int, *,
            remember: bool = True) -> int:
        """A decision received: in the list, its id remembered (a refused one's among the
        latest; `seen` is the workflow's sets of them) unless `remember` is False (refused
        for its seal: sent by nobody known, it does not use up the id); the oldest refusal
        unlisted when more than RECENT_REFUSALS are (`listed`, how many are before this one;
        returned after). Kept cheap: a flood of refusals costs these few lines each."""
        self.decisions.append(record)
        if record.applied:
            self.applied(record.decision_id, seen)
            return listed
        if record.decision_id and remember:
            self.refused_ids.append(record.decision_id)
            seen.refused.add(record.decision_id)
            if len(self.refused_ids) > RECENT_REFUSED_IDS:
                seen.refused.discard(self.refused_ids.pop(0))
        listed += 1
        if listed > RECENT_REFUSALS:
            oldest = next(i for i, d in enumerate(self.decisions) if not d.applied)
            del self.decisions[oldest]
            self.refused_not_listed += 1
            listed -= 1
        return listed

    def applied(self, decision_id: str, seen: Seen) -> None:
        self.applied_ids.append(decision_id)
        seen.applied.add(decision_id)

    def takers(self, decision: str) -> list[DecisionRecord]:
        """The records of `decision` applied in this application: four eyes reads who took it
        (their verified identities; typed staff ids for those taken before decisions were
        sealed, and for those an application moved from stop 8 carries)."""
        return [d for d in self.decisions if d.applied and d.decision == decision]

    # --- what the status shows -----------------------------------------------------------

    def status(self) -> ApplicationStatus:
        return ApplicationStatus(
            application_id=self.application_id, process=self.process, step=self.step,
            waiting_on=self.waiting_on, waiting_since=self.waiting_since,
            deadlines=list(self.deadlines), decisions=list(self.decisions),
            keys=list(self.keys), outcome=self.outcome, reviewer_flags=list(self.reviewer_flags),
            takes=list(self.takes), admission_refusals=list(self.admission_refusals),
            refused_not_listed=self.refused_not_listed,
            applied_not_listed=self.applied_not_listed, run=self.run)

    # --- what a run carries to the next ------------------------------------------------------

    def carried(self) -> dict[str, Any]:
        """The state as the next run's `continued`, within CARRIED_BYTES (the application
        aside): the oldest notes shortened, then the oldest records unlisted, when need be."""
        carried = self.model_copy(deep=True)
        carried.run += 1
        carried._fit()
        return carried.model_dump(mode="json", exclude=self._application_fields())

    def _fit(self) -> None:
        total = _bytes(self.model_dump_json(exclude=self._application_fields()))
        if total <= CARRIED_BYTES:
            return
        self.decisions = [d.model_copy(update={"note": d.note[:NOTE_CARRIED],
                                               "reason": d.reason[:NOTE_CARRIED]})
                          for d in self.decisions]
        self.refused_ids = self.refused_ids[-RECENT_REFUSED_IDS // 5:]
        total = _bytes(self.model_dump_json(exclude=self._application_fields()))
        # Four eyes needs who took a decision others may then not take: each such person's
        # latest record stays listed (as many as took it: people on the roster), a person
        # being their verified identity, or the typed name of a decision taken before seals.
        latest = {(d.decision, _taker(d)): i for i, d in enumerate(self.decisions)
                  if d.applied and d.decision in FOUR_EYES_SOURCES}
        needed = set(latest.values())
        kept = []
        for i, d in enumerate(self.decisions):  # oldest first, while over the budget
            if total <= CARRIED_BYTES or i in needed:
                kept.append(d)
                continue
            total -= _bytes(d.model_dump_json()) + 1
            if d.applied:
                self.applied_not_listed += 1
            else:
                self.refused_not_listed += 1
        self.decisions = kept
        # Then the ids of applied decisions no longer listed, oldest first.
        listed = {d.decision_id for d in kept}
        ids = []
        for decision_id in self.applied_ids:
            if total <= CARRIED_BYTES or decision_id in listed:
                ids.append(decision_id)
            else:
                total -= _bytes(json.dumps(decision_id, ensure_ascii=False)) + 1
        self.applied_ids = ids

    @classmethod
    def _application_fields(cls) -> set[str]:
        return set()

    def next_run_input(self) -> dict[str, Any]:
        """The input of the run that goes on from this one: the application, as the workflow
        takes it, and what this run carries (`continued`)."""
        application = getattr(self, "application")
        return {**application.model_dump(mode="json"), "continued": self.carried()}


# The decisions whose deciders four eyes keeps from taking another (pre-verification).
FOUR_EYES_SOURCES = {d.four_eyes for c in CATALOGUES.values() for d in c.values() if d.four_eyes}


class SubscriptionState(ProcessState):
    application: SubscriptionApplication
    # The catalogue's facts of the requested APIs, as of submission (or resubmission).
    catalogue: CatalogueFacts = CatalogueFacts(apis=[], unknown=[])
    # Requested APIs whose provider withdrew them while the application was open.
    withdrawn_apis: list[str] = []

    @classmethod
    def of(cls, application: SubscriptionApplication, now: datetime,
           step: str = "submitted") -> SubscriptionState:
        return cls(process="subscription", application=application, waiting_since=now,
                   step=step, **_generic(application))

    def status(self) -> ApplicationStatus:
        return super().status().model_copy(update={"withdrawn_apis": list(self.withdrawn_apis)})

    def admitted(self, organisation: Organisation, reviewer_flags: list[str],
                 summary: SpecificationSummary | None = None) -> None:
        """What admission recomputed replaces what the input said."""
        self.application = self.application.model_copy(
            update={"organisation": organisation, "reviewer_flags": reviewer_flags})
        for name, value in _generic(self.application).items():
            setattr(self, name, value)

    @classmethod
    def _application_fields(cls) -> set[str]:
        return {"application"}


class PublicationState(ProcessState):
    application: PublicationApplication
    in_catalogue: bool = False

    @classmethod
    def of(cls, application: PublicationApplication, now: datetime,
           step: str = "submitted") -> PublicationState:
        return cls(process="publication", application=application, waiting_since=now,
                   step=step, **_generic(application))

    def admitted(self, organisation: Organisation, reviewer_flags: list[str],
                 summary: SpecificationSummary | None = None) -> None:
        """What admission recomputed replaces what the input said (the summary too)."""
        assert summary is not None, "admission summarises every publication's document"
        self.application = self.application.model_copy(update={
            "organisation": organisation, "reviewer_flags": reviewer_flags,
            "specification_summary": summary})
        for name, value in _generic(self.application).items():
            setattr(self, name, value)

    @classmethod
    def _application_fields(cls) -> set[str]:
        return {"application"}


def _taker(d: DecisionRecord) -> str:
    return str(d.identity) if d.identity is not None else d.decided_by.lower()


def _bytes(text: str) -> int:
    return len(text.encode())


def _generic(application: SubscriptionApplication | PublicationApplication) -> dict:
    org = application.organisation
    return {"application_id": application.application_id,
            "organisation_id": org.business_registration_number,
            "organisation_name": org.legal_name,
            "applicant_contacts": [str(e).lower() for e in org.contact_emails],
            "language": org.language, "deadline_policy": application.deadlines,
            "limits": application.limits, "reviewer_flags": list(application.reviewer_flags)}
