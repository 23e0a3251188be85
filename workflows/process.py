"""What every process shares: its steps run in turn, decisions, deadlines, and the record.

A workflow (workflows/subscription.py, workflows/publication.py) holds one `Process` over its
state (onboarding/domain/state.py) and its decision catalogue (onboarding/domain/decisions.py),
and writes its procedure as step methods, each returning the next step or an ending:

    d = await self.process.wait_for(Step.PLATFORM_CONTRACT, decisions.PLATFORM_CONTRACT)
    if d.verdict == "reject":
        return self.process.rejected(d)
    self.process.record_contract("platform", d.contract, d)
    return Step.FINAL_APPROVAL

- Decisions. A decision arrives as a signal (read raw, so that a malformed one is refused on
  the record, naming each field and rule) or as an update of the same name (its validator
  refuses, before anything is written, what cannot apply now). It is checked: does the step
  take it, is it a repeat, does it meet its rule (pure, no activity); may its sender take it
  (`verify_decision`, a local activity: one marker in the history, no extra workflow task),
  and in the same activity, whether the contract number it records is free;
  what the step's own check asks of the world (a local activity). Then applied or refused,
  and either way on the record. A decision that does not apply never raises into the workflow.
- Effects. Nothing changes in the world until a decision is applied, and then only through the
  journal: the step's `record_contract`, `issue_key`, `notify`, ... append to it, and ONE
  activity (`write_record`, activities/records.py) commits it in one transaction when the
  process is about to wait on a person, when it ends, or when a step must know the result
  (`await commit()`). The commit runs in the workflow task that makes it, a local activity
  (a regular one when it cannot finish within a minute: `_committed`). A refused decision
  writes nothing but its refusal.
- Deadlines. A step waiting on a person reminds the responsible team, escalates, and (when it
  waits on the applicant) lets the application lapse, after the application's numbers of days
  counted from when the step began.
- One at a time: applying a decision, a deadline passing, an ending all happen under one lock,
  so a decision being verified and a deadline never interleave; commits happen one at a time,
  in the journal's order, and decisions may be applied while one is being written.
- Search attributes are upserted once per step; the Web UI's summary of the application
  (`set_current_details`, which costs no command) whenever something changes.
- Admission. A run Temporal starts (not one continued as new) first checks its input by the
  rules of submission (`admit`, the local activity `admit_application`): refused, the
  application ends `refused` with every refusal on the record, nobody asked, no key.
- Refusals are cheap: a refused decision costs no activity; refusals are committed together
  (with the next commit, or within FLUSH_AFTER), and past a rate per sender they are counted,
  not journaled one by one (onboarding/domain/state.py).
- A bounded history. At a wait, before any of Temporal's limits, the run continues as new
  carrying its whole state (`_continue_as_new`): when Temporal suggests it, or at the
  application's ceilings of events, bytes, signals and updates per run. Not in the middle of
  a burst of messages (a run cannot end while signals keep arriving), and never before the
  handlers at work have finished; what they journal in the last moment is carried and
  committed by the next run, which resumes at the same step, its deadlines as they were.

Deterministic: it talks to the world only through activities.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from activities.admission import AdmissionCheck, Admissions, AdmissionVerdict
    from activities.contracts import ContractNumberCheck, Contracts
    from activities.decisions import DecisionCheck, Decisions, Verification
    from activities.records import DecisionCommit, DecisionCommitted, Records
    from activities.verification import DecisionChecks, Verifications
    from onboarding.domain.decisions import MAX_DECISION_BYTES, Catalogue, DecisionType
    from onboarding.domain.models import (
        ApiProposal,
        ApplicationStatus,
        ContractTerms,
        Deadline,
        Decision,
        DecisionReceipt,
        DecisionRecord,
        Environment,
        Model,
        Notice,
        LicenceLookup,
        Organisation,
        Refusal,
        Role,
        SpecificationSummary,
    )
    from onboarding.domain.record import (
        ApiPublished,
        ApiWithdrawnFromCatalogue,
        ApplicationOnRecord,
        Audited,
        Commit,
        Committed,
        ContractRecorded,
        ContractType,
        KeyIssued,
        KeysRevoked,
        NoticeQueued,
    )
    from onboarding.domain.runs import Ended, Ending, Next, Start, TakenBack, Unverified
    from onboarding.domain.state import ProcessState, Seen
    from onboarding.identity.models import SEAL_REFUSALS, decision_content
    from onboarding.temporal import search_attributes as sa

from workflows import versions
from workflows.deadlines import DeadlineClock

# The commit retries for as long as it takes (a database restart must not fail an
# application); each attempt is bounded. The worker heartbeats for every running attempt
# (activities/interceptors.py): an attempt on a worker that died is retried elsewhere after the
# heartbeat timeout. Two minutes: a commit issuing a key may wait on a slow database.
ACTIVITY = dict(
    start_to_close_timeout=timedelta(minutes=2),
    heartbeat_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
)
# Since versions.COMMITS_IN_TASK a commit runs in the workflow task that makes it, as a local
# activity: a decision costs one workflow task (its signal, its commit, the step it leads to
# shown) instead of two and an activity task. Bounded, so that a database away for long does not
# hold the task open (a task held past its timeout is heartbeated: three events each time): past
# a minute, the commit is made as a regular activity instead (`_committed`). Histories from
# before commit in regular activities.
COMMIT_IN_TASK = dict(
    start_to_close_timeout=timedelta(seconds=30),
    schedule_to_close_timeout=timedelta(minutes=1),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
)
# Local activities (lookups, verification) retry within the workflow task while the database is
# away; the interval is kept under the SDK's 60 s local-retry threshold, past which every retry
# would cost the history ~6 events (temporal-research.md §1).
LOCAL = dict(
    start_to_close_timeout=timedelta(seconds=15),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
)
# Refusals (and messages from other processes) journaled while the process waits are committed
# at most this long after the first of them, unless a commit comes sooner; the counts of
# refusals dropped past a sender's rate, at most COUNTS_AFTER.
FLUSH_AFTER = timedelta(seconds=2)
COUNTS_AFTER = timedelta(minutes=5)
# A run continues as new only once no message has arrived for this long: while signals keep
# arriving, Temporal refuses to end a run (it hands the run the new signals instead).
QUIET = timedelta(seconds=1)
# One commit writes at most about this much; more is written in several (each payload must stay
# well under Temporal's blob limit: docker-compose's dynamic config).
COMMIT_BYTES = 256 * 1024
# What a run carries of its journal (written by the next run); more is committed first.
CARRIED_JOURNAL_BYTES = 64 * 1024
# A refused decision's content goes on the record up to this size (its fields named, else).
REFUSED_DETAILS_BYTES = 2 * 1024

D = TypeVar("D", bound=Decision)
R = TypeVar("R")
Check = Callable[[Any], Awaitable[str | None]]
# The contract a decision records, if any: its number is checked with the decision's sender.
Claim = Callable[[Any], tuple[ContractType, ContractTerms | None]]
# Since versions.CHECKS_IN_VERIFICATION, what a decision's step needs of the record (its
# contract number free, the licence on file for the step it leads to) is looked up inside its
# verification: one local activity per decision; and a subscription's catalogue lookup is its
# admission's. Histories from before run a local activity for each. One patch for both: each
# patch a run meets costs its history a marker and an upsert of TemporalChangeVersion (and the
# server a visibility write), once per run.
# Since versions.VERIFIED_IN_COMMIT a decision a person takes at a step (one with no check of
# the step's own and no licence to look up for the step it leads to) is verified by the commit
# that follows it: applied at once, its step goes on, and the next commit (`commit_decision`)
# verifies it and writes it with everything its step did on it, or writes neither and answers
# why; the process then takes the decision back and decides on it again, verified
# (`take_back`). One regular activity per decision instead of a local one and a regular one.
# Histories from before verify each decision in a local activity of its own when it arrives.


def read_start(start: RawValue, model: type[Model]) -> Start:
    raw: Any = None
    with contextlib.suppress(Exception):  # not readable at all: admission says so
        raw = workflow.payload_converter().from_payload(start.payload)
    continued = raw.pop("continued", None) if isinstance(raw, dict) else None
    info = workflow.info()
    # Only the platform continues a run as new; a retry or a cron run would carry its input
    # as it was given, so neither is trusted with it.
    trusted = info.continued_run_id is not None and info.attempt == 1 and not info.cron_schedule
    application = None
    with contextlib.suppress(ValidationError):
        application = model.model_validate(raw)
    forged = continued is not None and not trusted
    if forged or not isinstance(continued, dict):
        continued = None
    return Start(raw, application, continued, forged)



def begin(start: RawValue, model: type[Model], state_model: type[Any], process: str,
          admission_step: str) -> tuple[Start, Any]:
    """A v2 run's input read, and its state: carried from the run it continues, at admission,
    or (a run begun before admission was the workflow's first step) at the first step."""
    read = read_start(start, model)
    application, continued = read.application, read.continued
    if continued is not None:  # continued as new: the step it carries goes on
        return read, state_model.model_validate({**continued, "application": application})
    if versions.patched(versions.ADMISSION):
        return read, (state_model.of(application, workflow.now(), admission_step)
                      if application is not None else ProcessState.unreadable(
                          process, read.raw,
                          workflow.info().workflow_id, workflow.now()))
    return read, state_model.of(application, workflow.now())  # begun before admission

class Process:
    def __init__(self, state: ProcessState, catalogue: Catalogue, *,
                 resumed: bool = False) -> None:
        self.state = state
        self.catalogue = catalogue
        # The step's decisions and their checks, and the decision that settled it.
        self._expected: dict[str, Check | None] = {}
        self._claims: dict[str, Claim] = {}
        self._licence: dict[str, Callable[[Any], bool]] = {}
        # The market-data licence on file, as the verification of the decision applied last
        # found it, when its step asked (`licence`); None: not looked up.
        self.licence_on_file: tuple[ContractTerms | None] | None = None
        self._settled: Decision | None = None
        self._ending: Ending | None = None
        self._lock = asyncio.Lock()
        self._clock = DeadlineClock()
        self._committing = asyncio.Lock()
        self._flush: asyncio.Task[None] | None = None
        self._flush_due: datetime | None = None
        # A run continued as new resumes the step it carries, without entering it again.
        self._resume_at: str | None = state.step if resumed else None
        # The ids of decisions received (the state's, as sets), and how many
        # refusals the status lists.
        self._seen = Seen(applied=set(state.applied_ids), refused=set(state.refused_ids))
        self._refusals_listed = sum(not d.applied for d in state.decisions)
        # Messages this run received (Temporal's per-run ceilings), and when the last came.
        self._signals = self._updates = 0
        self._last_message_at: datetime | None = None
        # Set when this run must continue as new at its next wait (an application moved from
        # stop 8's code: workflows/legacy/; a live service's run old enough).
        self.continue_at_next_wait = False
        # A process that takes its decisions at any time (a live service: `take`, `watch`):
        # how each is applied, as it comes, and whether one was since the last wait.
        self._appliers: dict[str, Callable[[Any], None]] = {}
        self._changed = False
        # A decision applied before its verification, until the commit that follows it.
        self._unverified: Unverified | None = None

    # --- the procedure ---------------------------------------------------------------------

    @classmethod
    def moved_from_stop_8(cls, state: ProcessState, catalogue: Catalogue) -> Process:
        """The process of an application stop 8 began, going on in v2 from its next event
        (workflows/legacy/): in this run until its next wait, then in a run of its own."""
        process = cls(state, catalogue, resumed=True)
        process.continue_at_next_wait = True
        process.record("moved_to_v2", details={"step": state.step})
        return process

    async def run(self, steps: Mapping[str, Callable[[], Awaitable[Next]]],
                  end_early: Callable[[Ending], Awaitable[None]]) -> ApplicationStatus:
        """Run the steps from the state's, each naming the next, until one ends the
        application; `end_early` undoes what must be undone when it ends before production."""
        step: Next = self.state.step
        self._describe()
        while True:
            try:
                while isinstance(step, str):
                    try:
                        step = await steps[step]()
                    except Ended as ended:
                        step = ended.ending
                ending = step
                self._resume_at = None  # never waiting again: decisions waiting are refused
                self.state.outcome = ending.outcome  # decisions from now on are refused
                self.state.takes, self.state.deadlines = [], []
                if ending.outcome != "in_production":
                    await end_early(ending)
                self.enter(ending.outcome)
                self.record("application_closed", details={"outcome": ending.outcome})
                await self.commit(status=ending.outcome)
                break
            except TakenBack as taken:  # the decision did not hold: back at its step
                self.take_back(taken.unverified)
                step = self.state.step
        # Handlers still at work (a decision being verified) journal their refusal: on record
        # before the run ends.
        await workflow.wait_condition(workflow.all_handlers_finished)
        while self.state.journal or self.state.refusals.dropped:
            await self.commit(status=ending.outcome)
        return self.state.status()

    def enter(self, step: str, waiting_on: Role | None = None, deadlines: bool = True) -> None:
        """`step` begins: on the record, in the search attributes, with its deadlines when it
        waits on a person."""
        s = self.state
        s.step, s.waiting_on, s.waiting_since = step, waiting_on.value if waiting_on else "", \
            workflow.now()
        s.deadlines = self._deadlines(waiting_on) if waiting_on and deadlines else []
        self.record("step_entered", details={"waiting_on": s.waiting_on})
        self._show_step()

    def _show_step(self) -> None:
        """The step and whom it waits on in the search attributes: one upsert, of what changed.
        Not before the decision that led there is verified (shown then, by `commit`)."""
        if self._unverified is not None:
            return
        s, step = self.state, self.state.step
        shown = workflow.info().typed_search_attributes
        wanted = [(sa.APPLICATION_STEP, step), (sa.WAITING_ON, s.waiting_on or "nobody")]
        if s.on_record:  # started without them (not by starter.py): what lists need
            wanted += [(key, value) for key, value in (
                (sa.APPLICATION_KIND, s.process), (sa.ORGANISATION_ID, s.organisation_id))
                if shown.get(key) is None]
        changed = [key.value_set(value) for key, value in wanted if shown.get(key) != value]
        if changed:  # one upsert per step, of what it changes
            workflow.upsert_search_attributes(changed)

    async def wait_for(self, step: str, decision: DecisionType[D], *, check: Check | None = None,
                       contract: Claim | None = None, licence: Callable[[D], bool] | None = None,
                       deadlines: bool = True) -> D:
        """Enter `step` and wait until a decision of `decision`'s type is applied; return it.

        `check` is what the step asks of the world before the decision may apply (a local
        activity): a reason to refuse it, or None. `contract` names the contract the decision
        records (type, terms): its number must not be another application's, checked with the
        decision's sender. `licence` says whether the decision leads to a step that needs the
        market-data licence on file: looked up with it (`licence_on_file`). Raises Ended when the application is
        withdrawn or lapses meanwhile. A run continued as new at this step resumes it: the
        step is not entered again, its deadlines stay as they were.
        """
        # The step takes its decision as soon as it is entered, before the commit's await; the
        # status says so (`takes`) once the record is written (the keys it issued on it).
        self._expected, self._settled = {decision.name: check}, None
        self._claims = {decision.name: contract} if contract else {}
        self._licence = {decision.name: licence} if licence else {}
        self.licence_on_file = None
        if self._resume_at != step:
            self.enter(step, decision.taken_by, deadlines)
        self._resume_at = None
        try:
            await self.commit()
            if self._settled is None and self._ending is None:
                self.state.takes = [decision.name]
                self._describe()
            while True:
                due = self.state.deadlines[0] if self.state.deadlines else None
                wanted = False
                if self._settled is None and self._ending is None:
                    wanted = self._continue_wanted()
                    if wanted and (self._quiet() or self.continue_at_next_wait):
                        await self._continue_as_new()  # returns when a decision came meanwhile
                        if self._ending is not None:
                            raise Ended(self._ending)
                        return self._settled  # type: ignore[return-value]
                    if due is not None and due.due_at <= workflow.now():  # overdue, carried
                        await self._deadline(step)
                        continue
                timeout = due.due_at - workflow.now() if due else None
                quiet_first = wanted and (timeout is None or timeout > QUIET)
                if quiet_first:  # look again once no message has come for a moment
                    timeout, summary = QUIET, "continue as new once quiet"
                else:
                    summary = f"{due.purpose} for {step}" if due else None
                try:
                    await self._wait(
                        lambda: self._settled is not None or self._ending is not None
                        or (not wanted and self._continue_wanted()),
                        None if quiet_first or due is None else due.due_at, timeout, summary)
                except asyncio.TimeoutError:
                    if not quiet_first:
                        await self._deadline(step)
                    continue
                if self._ending is not None:
                    raise Ended(self._ending)
                if self._settled is not None:
                    return self._settled  # type: ignore[return-value]
        finally:
            self._expected, self._claims, self._licence = {}, {}, {}
            self.state.takes, self.state.deadlines = [], []

    def take(self, decisions: Mapping[str, tuple[Check | None, Callable[[Any], None]]]) -> None:
        """From now on, take these decisions whenever they come (a live service): each checked
        as any decision is, then, under the lock, its `apply` journals what it does."""
        self._expected = {name: check for name, (check, _) in decisions.items()}
        self._appliers = {name: apply for name, (_, apply) in decisions.items()}
        self.state.takes = list(decisions)

    async def watch(self, until: datetime | None, summary: str | None = None) -> bool:
        """Wait (after committing the journal) until a decision is applied (False) or `until`
        passes (True): the one timer of a process that takes its decisions at any time. Like
        `wait_for`, continues as new meanwhile when the run should, carrying the state."""
        self._resume_at = None
        await self.commit()
        self._describe()
        while True:
            if self._changed:
                self._changed = False
                return False
            now = workflow.now()
            if until is not None and until <= now:
                return True
            wanted = self._continue_wanted()
            if wanted and (self._quiet() or self.continue_at_next_wait):
                await self._continue_as_new()  # a process taking decisions at any time
                continue  # never settles: the run ends here, carrying what was applied
            timeout = until - now if until is not None else None
            quiet_first = wanted and (timeout is None or timeout > QUIET)
            try:
                await self._wait(
                    lambda: self._changed or (not wanted and self._continue_wanted()),
                    None if quiet_first else until, QUIET if quiet_first else timeout,
                    "continue as new once quiet" if quiet_first else summary)
            except asyncio.TimeoutError:
                if not quiet_first:
                    return True

    async def _wait(self, condition: Callable[[], bool], due: datetime | None,
                    timeout: timedelta | None, summary: str | None) -> None:
        """Until `condition` holds, or (asyncio.TimeoutError) the deadline `due` or `timeout`
        passes. A deadline waits on the process's one kept timer (`DeadlineClock`)."""
        if due is not None and versions.patched(versions.DEADLINE_CLOCK):
            await self._clock.wait_condition(condition, due, summary or "deadline")
        else:
            await workflow.wait_condition(condition, timeout=timeout, timeout_summary=summary)

    @property
    def lock(self) -> asyncio.Lock:
        """The lock decisions are applied under: what falls due is handled under it too."""
        return self._lock

    async def _deadline(self, step: str) -> None:
        # Not while a decision is being applied (its handler holds the lock); and not in the
        # lock's queue, since the handler of a decision applied before its verification holds
        # it until the commit this coroutine is to make.
        if self._lock.locked():
            await workflow.wait_condition(
                lambda: not self._lock.locked() or self._unverified is not None)
        if self._unverified is None:  # else the step is decided: its commit comes next
            async with self._lock:  # free: taken without an await
                if self._settled is None and self._ending is None:
                    self._deadline_passed()
        await self.commit()

    def ends(self, outcome: str) -> Ending:
        """The application ends here with `outcome`: every decision from now on is refused.
        Raises Ended when a withdrawal was applied meanwhile (between two waits)."""
        if self._ending is not None:
            raise Ended(self._ending)
        self.state.outcome = outcome
        return Ending(outcome, self.state.step)

    def rejected(self, d: Decision) -> Ending:
        return Ending("rejected", self.state.step, d.decided_by or "", d.note)

    def ending(self, outcome: str, note: str = "") -> Ending:
        """An ending the platform itself decides (e.g. a publication that cannot be made)."""
        return Ending(outcome, self.state.step, "platform", note)

    @property
    def applicant(self) -> list[str]:
        return self.state.applicant_contacts

    def status(self) -> ApplicationStatus:
        """As on record: while a decision applied before its verification waits for its commit,
        the application as it was when the decision came."""
        if self._unverified is not None:
            return self._unverified.state.status().model_copy(
                update={"verifying": self._unverified.d.decision_id})
        return self.state.status()

    # --- admission -------------------------------------------------------------------------

    async def admit(self, start: Start, catalogue: bool = False) -> AdmissionVerdict | Ending:
        """The application's input checked by the rules of submission (a local activity, so
        that a rule changed later never changes how this history replays): what admission
        recomputed (with `catalogue`, what the catalogue says of the requested APIs), or the
        ending `refused` with every refusal on the record."""
        info = workflow.info()
        verdict = await workflow.execute_local_activity_method(
            Admissions.admit_application,
            AdmissionCheck(process=self.catalogue.process, application=start.raw,
                           workflow_id=info.workflow_id,
                           first_execution_run_id=info.first_execution_run_id,
                           cron_schedule=info.cron_schedule or "", catalogue=catalogue),
            summary="admission", **LOCAL)
        refusals = list(verdict.refusals)
        if start.forged:
            refusals.insert(0, Refusal(
                "continued", "not_continued_as_new",
                "only the platform's own continue-as-new carries an application's state: "
                "an application cannot be started at a later step"))
        if not refusals:
            return verdict
        s = self.state
        # Not anyone's on record (its id may be another run chain's): its lines are its run's.
        s.on_record, s.entry_prefix = False, f"{s.application_id}/refused/{info.run_id}"
        s.admission_refusals, s.applicant_contacts = refusals, verdict.contacts
        listed = "; ".join(str(r) for r in refusals)
        self.record("admission", "refused", reason=listed[:2000],
                    details={"refusals": [vars(r) for r in refusals]})
        return Ending("refused", "admission", "platform", listed[:2000])

    def refused(self) -> None:
        """The valid contacts of an application refused at admission told why."""
        refusals = "\n".join(f"- {r}" for r in self.state.admission_refusals)
        self.notify(f"refused/{workflow.info().run_id}", "application_refused",
                    {"refusals": refusals}, to=self.applicant)

    # --- deadlines -------------------------------------------------------------------------

    def _deadlines(self, waiting_on: Role) -> list[Deadline]:
        since, days = workflow.now(), self.state.deadline_policy
        due = [Deadline(purpose="reminder", due_at=since + timedelta(days=days.remind_after_days)),
               Deadline(purpose="escalation",
                        due_at=since + timedelta(days=days.escalate_after_days))]
        if waiting_on is Role.APPLICANT:
            due.append(Deadline(purpose="lapse",
                                due_at=since + timedelta(days=days.lapse_after_days)))
        return sorted(due, key=lambda d: d.due_at)

    def _deadline_passed(self) -> None:
        s = self.state
        deadline = s.deadlines.pop(0)
        context = {"step": s.step, "waiting_on": s.waiting_on,
                   "since": s.waiting_since.date().isoformat()}
        purpose = f"{s.step}/{s.waiting_since.isoformat()}/{deadline.purpose}"
        self.record(f"{deadline.purpose}_due", details=context)
        if deadline.purpose == "lapse":
            self._ending = Ending("lapsed", s.step, "platform",
                                  f"no response for {s.deadline_policy.lapse_after_days} days")
            return
        to_applicant = s.waiting_on == Role.APPLICANT.value
        self.notify(purpose, deadline.purpose, context,
                    to=self.applicant if to_applicant else (),
                    role=None if to_applicant else Role(s.waiting_on))
        if deadline.purpose == "escalation":
            self.notify(f"{purpose}/manager", "escalation", context,
                        role=Role.OPERATIONS_MANAGER)

    # --- continuing as new ---------------------------------------------------------------

    def _continue_wanted(self) -> bool:
        """Whether this run should end and its application go on in a new one: Temporal
        suggests it, or the run reached one of the application's ceilings."""
        if self.continue_at_next_wait:
            return True
        info, limits = workflow.info(), self.state.limits
        return (info.is_continue_as_new_suggested()
                or info.get_current_history_length() >= limits.events_per_run
                or info.get_current_history_size() >= limits.bytes_per_run
                or self._signals >= limits.signals_per_run
                or self._updates >= limits.updates_per_run)

    def _quiet(self) -> bool:
        """No message in this workflow task (Temporal would hand the run any arriving while it
        ends, and run it again)."""
        return self._last_message_at is None or self._last_message_at < workflow.now()

    async def _continue_as_new(self) -> None:
        """End this run, the application going on in a new one that carries its state; return
        instead when a decision settled the step or ended the application meanwhile."""
        while True:
            await self.commit()
            # Handlers at work (a decision being verified) finish in this run; one applied
            # before its verification settles the step (its commit is the step's to make).
            await workflow.wait_condition(
                lambda: workflow.all_handlers_finished() or self._settled is not None
                or self._ending is not None)
            if self._settled is not None or self._ending is not None:
                return
            # What arrived while committing is carried, when it is little; else written.
            if self._journal_bytes() <= CARRIED_JOURNAL_BYTES:
                break
        # Signals arriving in this very task make Temporal refuse the end of the run and hand
        # them to it: this code then runs again with them, and they are carried.
        workflow.continue_as_new(self.state.next_run_input())

    def _journal_bytes(self) -> int:
        return sum(len(e.model_dump_json().encode()) for e in self.state.journal)

    # --- decisions -------------------------------------------------------------------------

    def _received(self, update: bool = False) -> None:
        if update:
            self._updates += 1
        else:
            self._signals += 1
        self._last_message_at = workflow.now()

    async def receive(self, decision: DecisionType[Any], payload: RawValue) -> None:
        """A decision sent as a signal: read it, then decide on it. One that cannot be read is
        refused on the record, naming each field and rule."""
        self._received()
        read = self.read(decision.name, decision.model, payload, decision.max_payload_bytes)
        if isinstance(read, BaseModel):
            await self.decide(decision, read)
        else:
            async with self._lock:  # on the record in the order received, like every decision
                self._refuse_unread(decision.name, *read)

    def validate(self, decision: DecisionType[Any], d: Decision) -> None:
        """An update's validator: refuse, before anything is written, what cannot apply now.
        Pure (validators are not replayed): it reads the state, never changes it."""
        if self._resume_at is not None or self._unverified is not None:
            # A new run, not yet at the step it resumes; or a decision being verified, its step
            # maybe taken back: the handler checks the rest once that is known.
            if reason := self._repeat(d) or decision.rule(d):
                raise ValueError(reason)
        elif reason := self._refusal(decision, d):
            raise ValueError(reason)

    async def take_update(self, decision: DecisionType[Any], d: Decision) -> DecisionReceipt:
        """A decision sent as an update (its validator let it through)."""
        self._received(update=True)
        return await self.decide(decision, d)

    async def decide(self, decision: DecisionType[Any], d: Decision) -> DecisionReceipt:
        """Apply `d` if it fits the step and its sender may take it; on the record either way."""
        received_at, received = workflow.now(), d
        if self._resume_at is not None:  # a new run: once it waits at the step it resumes
            await workflow.wait_condition(lambda: self._resume_at is None)
        receipt = await self._decide(decision, d, received, received_at)
        if receipt.applied and decision.name in self._appliers:
            # Taken at any time (a live service): on record before the answer, so that an
            # update's caller knows it is in force (a suspension at the gateway, say).
            await self.commit()
        return receipt

    async def _decide(self, decision: DecisionType[Any], d: Decision, received: Decision,
                      received_at: datetime) -> DecisionReceipt:
        async with self._lock:
            step = self.state.step
            reason = self._refusal(decision, d)
            claim, licence = self._claims.get(decision.name), self._licence.get(decision.name)
            verified = None
            by_person = decision.taken_by is not Role.PLATFORM_WORKFLOW
            together = reason is None and by_person and (claim or licence) is not None \
                and versions.patched(versions.CHECKS_IN_VERIFICATION)
            if reason is None and by_person:
                if self._verified_by_commit(decision, d, licence):
                    verified = await self._apply_unverified(
                        decision, d, received, received_at, claim(d) if claim else None)
                    if verified is None:  # it held: on record, with what its step did on it
                        return DecisionReceipt(decision_id=d.decision_id, applied=True,
                                               step=step)
                else:
                    verified = await self._verify(
                        decision, d, received_at, claim(d) if together and claim else None,
                        bool(together and licence and licence(d)))
                reason = verified.reason or None
                if reason is None:  # from here on, the decision is its sealer's
                    d = d.model_copy(update={"decided_by": verified.person or d.decided_by})
            if reason is None and (check := self._expected.get(decision.name)):
                reason = await check(d)
            if reason is None and claim is not None and not together:
                reason = await self.contract_unclaimed(*claim(d))
            if reason is None:  # the state may have moved while we awaited
                reason = self._refusal(decision, d)
            journaled = self._record_decision(decision, received, step, received_at, reason,
                                              verified)
            if reason is None:
                if decision.ends_application:
                    self._ending = Ending("withdrawn", step, d.decided_by or "", d.note)
                elif (apply := self._appliers.get(decision.name)) is not None:
                    apply(d)
                    self._changed = True
                else:
                    self._settled, self.state.takes = d, []
            elif journaled:  # past its sender's rate, a refusal is only counted: no line either
                workflow.logger.info("decision refused", extra={
                    "decision_id": d.decision_id, "decision": decision.name, "reason": reason})
        return DecisionReceipt(decision_id=d.decision_id, applied=reason is None,
                               reason=reason or "", step=step)

    def _refusal(self, decision: DecisionType[Any], d: Decision) -> str | None:
        """Why `d` cannot apply now, from the state and its rule alone; None if it can."""
        s = self.state
        if reason := self._repeat(d):
            return reason
        if self._ending is not None or s.outcome:
            return f"the application has ended ({s.outcome or self._ending.outcome})"
        if not decision.ends_application:
            if decision.name not in self._expected:
                takes = ", ".join(self._expected) or "no decision"
                return (f"the application is at step {s.step}, which takes {takes}, not "
                        f"{decision.name}")
            if self._settled is not None:
                return f"step {s.step} has already been decided"
        return decision.rule(d)

    def _repeat(self, d: Decision) -> str | None:
        if d.decision_id in self._seen.applied or d.decision_id in self._seen.refused:
            return f"decision {d.decision_id} was already received"
        return None

    def _verified_by_commit(self, decision: DecisionType[Any], d: Decision,
                            licence: Callable[[Any], bool] | None) -> bool:
        """Whether `d` (a person's, through its rule) is applied before its verification, which
        the commit after it makes (VERIFIED_IN_COMMIT): a decision that settles a step, with no
        check of the step's own and no licence to look up for the step it leads to."""
        return (d.attestation is not None  # unsealed: refused by its verification, no commit
                and not decision.ends_application and decision.name not in self._appliers
                and self._expected.get(decision.name) is None
                and not (licence is not None and licence(d))
                and versions.patched(versions.VERIFIED_IN_COMMIT))

    async def _apply_unverified(self, decision: DecisionType[Any], d: Decision,
                                received: Decision, received_at: datetime,
                                claim: tuple[ContractType, ContractTerms | None] | None,
                                ) -> Verification | None:
        """Apply `d` now, under the name it claims, and wait (holding the lock) for the commit
        that verifies it: None when it held (on record, with everything its step did on it);
        else its verification, the process back at its step as when `d` came (`take_back`)."""
        s = self.state
        terms = claim[1] if claim else None
        contract = None if claim is None or terms is None else ContractNumberCheck(
            contract_type=claim[0], contract_number=terms.contract_number,
            application_id=s.application_id)
        unverified = Unverified(
            decision=decision, d=d, seq=s.seq, state=s.model_copy(deep=True),
            checks=DecisionChecks(decision=self._check(decision, d, received_at),
                                  contract=contract))
        self._unverified = unverified  # from here the status shows the state it keeps
        self._record_decision(decision, received, s.step, received_at, None, None, claimed=True)
        self._settled, s.takes = d, []
        await workflow.wait_condition(
            lambda: unverified.answer is not None and self._resume_at is None)
        answer: DecisionCommitted = unverified.answer
        if not answer.written:
            return answer.verification
        identity = answer.verification.identity
        assert identity is not None, "a decision holds only sealed"
        s.decisions = [r.model_copy(update={"identity": identity.ref()})
                       if r.decision_id == d.decision_id and r.applied else r
                       for r in s.decisions]
        return None

    def take_back(self, unverified: Unverified) -> None:
        """The decision applied before its verification did not hold: the process as it was
        when the decision came, back at its step (the run resumes it without entering it
        again; its deadlines as they were), the decision's handler to decide on it again, with
        the verification its commit answered. What came before the decision is written."""
        s, answer = self.state, unverified.answer
        s.__dict__.update(unverified.state.__dict__)
        s.journal = [e for e in s.journal if e.seq >= unverified.seq]
        if answer.keys is not None:
            s.keys = answer.keys
        self._seen.applied.discard(unverified.d.decision_id)
        self._settled, self._resume_at, self.licence_on_file = None, s.step, None
        self._show_step()
        self._describe()

    def _check(self, decision: DecisionType[Any], d: Decision,
               received_at: datetime) -> DecisionCheck:
        s = self.state
        # Four eyes: whoever took the decision this one must not share a taker with (the
        # state keeps their records across runs: onboarding/domain/state.py, `_fit`).
        earlier = s.takers(decision.four_eyes) if decision.four_eyes else []
        return DecisionCheck(application_id=s.sealed_as, organisation=s.organisation_id,
                             decision=decision.name, decision_id=d.decision_id,
                             content=decision_content(d), attestation=d.attestation,
                             role=decision.taken_by.value,
                             not_by=list(dict.fromkeys(r.identity for r in earlier
                                                       if r.identity)),
                             # Taken before decisions were sealed: by a typed staff id.
                             not_by_staff=sorted({r.decided_by.lower() for r in earlier
                                                  if not r.identity}),
                             applicant_contacts=s.applicant_contacts, received_at=received_at,
                             decided_by=d.decided_by)

    async def _verify(self, decision: DecisionType[Any], d: Decision, received_at: datetime,
                      claim: tuple[ContractType, ContractTerms | None] | None = None,
                      licence: bool = False) -> Verification:
        """Who sealed `d`, and whether they may take it (docs/identity.md); with `claim`, whether
        the contract number it records is free, and with `licence`, the market-data licence on
        file (`licence_on_file`), in the same local activity."""
        s, check = self.state, self._check(decision, d, received_at)
        if claim is None and not licence:
            return await workflow.execute_local_activity_method(
                Decisions.verify_decision, check, summary=f"verify {decision.name}", **LOCAL)
        terms = claim[1] if claim else None
        contract = None if claim is None or terms is None else ContractNumberCheck(
            contract_type=claim[0], contract_number=terms.contract_number,
            application_id=s.application_id)
        lookup = LicenceLookup(business_registration_number=s.organisation_id,
                               on=workflow.now().date()) if licence else None
        checked = await workflow.execute_local_activity_method(
            Verifications.verify_and_check_decision,
            DecisionChecks(decision=check, contract=contract, licence=lookup),
            summary=f"verify {decision.name}" + (" and its contract number" if contract else "")
            + (" and the licence on file" if lookup else ""), **LOCAL)
        if lookup is not None and not checked.reason:
            self.licence_on_file = (checked.licence,)
        return checked

    def _record_decision(self, decision: DecisionType[Any], d: Decision, step: str,
                         received_at: datetime, reason: str | None,
                         verified: Verification | None, claimed: bool = False) -> bool:
        """`d` as received on the record, applied or refused, under the name of who sealed it;
        a name it only claims (no seal that held) is marked as such, unless the commit that
        writes it verifies it first (`claimed`: applied before its verification). Another
        process's claim is checked against the record instead (the step's check). Whether it
        was journaled."""
        by = d.decided_by or ""
        if verified is not None and verified.person:
            by = verified.person
        elif by and decision.taken_by is not Role.PLATFORM_WORKFLOW and not claimed:
            by = f"{by[:180]} (not verified)"
        identity = verified.identity if verified is not None else None

        def details() -> dict[str, Any]:
            content = d.model_dump(mode="json")
            if identity is not None:
                content["sealed_for"] = identity.model_dump(mode="json")
            return content

        return self._on_record(
            decision.name, DecisionRecord(
                decision_id=d.decision_id, decision=decision.name, decided_by=by,
                identity=identity.ref() if identity else None, note=d.note, step=step,
                received_at=received_at, applied=reason is None, reason=reason or ""),
            details,
            # A decision refused for its seal was sent by nobody known: its id stays free for
            # the decision it names (a forged or altered copy arriving first does not use it
            # up). Verdicts from before seals never gave these reasons: their replay is as was.
            remember=verified is None or verified.reason not in SEAL_REFUSALS)

    def _on_record(self, name: str, record: DecisionRecord,
                   details: Callable[[], dict[str, Any]], *, remember: bool = True) -> bool:
        """A decision received, in the status and on the audit log: every applied one; a
        refused one unless its sender is past its rate (then counted: REFUSALS_PER_SENDER...
        in onboarding/domain/state.py), its content only up to REFUSED_DETAILS_BYTES. Whether
        it was journaled. Cheap when only counted: a flood's cost is in these few lines.

        The sender a rate counts is the verified identity (issuer + subject) when a seal held,
        else the name the decision claims, as the record shows it ("x (not verified)"): typing
        someone's address uses up the claim's allowance, never theirs (docs/identity.md)."""
        s = self.state
        self._refusals_listed = s.saw(record, self._seen, self._refusals_listed,
                                      remember=remember)
        actor = record.decided_by or "unknown"
        if record.applied:
            self.record(name, "applied", actor=actor, details=details())
            return True
        sender = str(record.identity) if record.identity is not None else actor.lower()
        if not s.refusals.journals(sender, record.received_at):
            self._flush_soon(COUNTS_AFTER)
            return False
        content = details()
        shown = len(json.dumps(content, default=str))
        self.record(name, "refused", actor=actor, reason=record.reason,
                    details=content if shown <= REFUSED_DETAILS_BYTES else {
                        "omitted": f"{shown} bytes", "fields": sorted(content)[:20]})
        self._flush_soon(FLUSH_AFTER)
        return True

    def read(self, name: str, model: type[D], payload: RawValue,
             max_bytes: int) -> D | tuple[Any, str]:
        """The message in a signal's payload, or (what could be read of it, the refusal)."""
        data: Any = None
        metadata = payload.payload.metadata
        try:
            if len(payload.payload.data) > max_bytes:
                raise ValueError(f"{len(payload.payload.data)} bytes; a {name} may have at "
                                 f"most {max_bytes} [too_large]")
            if metadata.get("encoding") == b"binary/encrypted":  # the worker could not decrypt
                key_id = metadata.get("encryption-key-id", b"").decode(errors="replace")[:40]
                raise ValueError(f"encrypted under key id {key_id!r}, which the platform "
                                 "cannot decrypt (another key, or altered)")
            data = workflow.payload_converter().from_payload(payload.payload)
            return model.model_validate(data)
        except ValidationError as err:
            problem = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']} [{e['type']}]"
                for e in err.errors())
        except Exception as err:  # noqa: BLE001 - not decodable at all
            problem = f"(payload): cannot be read: {err}"
        return data, f"malformed {name}: {problem}"

    async def refuse_unknown(self, name: str, args: Sequence[RawValue]) -> None:
        """A signal no handler takes (a misspelt decision, say) is refused on the record, so
        that whoever sent it sees it was not applied."""
        self._received()
        data: Any = None
        with contextlib.suppress(Exception):
            if args and len(args[0].payload.data) <= MAX_DECISION_BYTES:
                data = workflow.payload_converter().from_payload(args[0].payload)
        takes = ", ".join(self._expected) or "no decision now"
        async with self._lock:
            self._refuse_unread(
                name[:100], data,
                f"{name[:100]} is not a decision of a {self.catalogue.process} application "
                f"(this step takes {takes}; see the signal names in the UI or "
                "`openapi-onboarding --help`)")

    async def hear(self, name: str, model: type[D], payload: RawValue,
                   apply: Callable[[D], None]) -> None:
        """A message another process sends (not a decision): read it, and unless it is a
        repeat, `apply` it (journaling what it changes) under the lock."""
        self._received()
        read = self.read(name, model, payload, MAX_DECISION_BYTES)
        async with self._lock:
            if not isinstance(read, BaseModel):
                self._refuse_unread(name, *read)
            elif read.decision_id not in self._seen.applied \
                    and read.decision_id not in self._seen.refused:
                self.state.applied(read.decision_id, self._seen)
                apply(read)
                self._flush_soon(FLUSH_AFTER)

    def _refuse_unread(self, name: str, data: Any, reason: str) -> None:
        fields = data if isinstance(data, dict) else {}
        self._on_record(name, DecisionRecord(
            decision_id=str(fields.get("decision_id", ""))[:100], decision=name,
            decided_by=str(fields.get("decided_by", "") or "")[:200], note="",
            step=self.state.step, received_at=workflow.now(), applied=False,
            reason=reason[:2000]), dict)

    # --- checks a step asks of the world ---------------------------------------------------

    async def contract_unclaimed(self, contract_type: ContractType,
                                 terms: ContractTerms | None) -> str | None:
        """Why the contract cannot be recorded for this application (its number is another
        application's), or None: in a local activity of its own, as histories from before
        CHECKS_IN_VERIFICATION have it."""
        if terms is None:
            return None
        reason = await workflow.execute_local_activity_method(
            Contracts.check_contract_number,
            ContractNumberCheck(contract_type=contract_type,
                                contract_number=terms.contract_number,
                                application_id=self.state.application_id),
            summary=f"{contract_type} contract number", **LOCAL)
        return reason or None

    # --- the journal ----------------------------------------------------------------------

    def _journal(self, entry_type: type, **fields: Any) -> None:
        self.state.journal.append(entry_type(seq=self.state.seq, **fields))
        self.state.seq += 1
        self._describe()

    def record(self, action: str, result: str = "succeeded", *, actor: str = "platform",
               reason: str = "", details: dict[str, Any] | None = None) -> None:
        """A line on the audit log."""
        self._journal(Audited, action=action, result=result, actor=actor, reason=reason,
                      details=details or {})

    def notify(self, purpose: str, template: str, context: dict[str, str], *,
               to: Sequence[str] = (), role: Role | None = None, members: bool = False) -> None:
        """A notice, sent once: `purpose` names it uniquely within the application; to the
        addresses `to`, everyone holding `role`, every member company."""
        s = self.state
        self._journal(NoticeQueued, notice=Notice(
            notice_id=f"{s.application_id}/{purpose}", application_id=s.application_id,
            template=template, language=s.language, recipients=list(to), recipient_role=role,
            to_member_companies=members,
            context={"application_id": s.application_id, "organisation": s.organisation_name,
                     **context}))

    def record_application(self, organisation: Organisation, requested_apis: list[str]) -> None:
        self._journal(ApplicationOnRecord, process=self.catalogue.process,
                      organisation=organisation, requested_apis=requested_apis,
                      first_execution_run_id=workflow.info().first_execution_run_id)

    def record_contract(self, contract_type: ContractType, terms: ContractTerms | None,
                        d: Decision) -> None:
        assert terms is not None, "the decision's rule requires the contract"
        self._journal(ContractRecorded, contract_type=contract_type, terms=terms,
                      recorded_by=d.decided_by or "")

    def issue_key(self, environment: Environment, scopes: list[str], valid_days: int,
                  **renewal: Any) -> None:
        """A key for `environment`, once; its delivery to the applicant's contacts. A live
        service's renewal gives its `generation`, `expires_at` and `owner_workflow_id`."""
        self._journal(KeyIssued, environment=environment, scopes=scopes, valid_days=valid_days,
                      recipients=self.applicant, language=self.state.language, **renewal)

    def revoke_keys(self, reason: str, key_ids: list[str] | None = None) -> None:
        if key_ids is None:
            self._journal(KeysRevoked, reason=reason)
        else:
            self._journal(KeysRevoked, reason=reason, key_ids=key_ids)

    def write(self, entry_type: type, **fields: Any) -> None:
        """Any other entry of the journal (onboarding/domain/record.py)."""
        self._journal(entry_type, **fields)

    def publish_api(self, api: ApiProposal, specification: dict[str, Any],
                    summary: SpecificationSummary, stage: str) -> None:
        self._journal(ApiPublished, api=api, specification=specification, summary=summary,
                      stage=stage)

    def withdraw_api(self, api_id: str) -> None:
        self._journal(ApiWithdrawnFromCatalogue, api_id=api_id)

    def _journal_dropped(self) -> None:
        """The refusals counted past their senders' rate since the last commit: one line a
        sender, "N refusals from X dropped since T"."""
        counts = self.state.refusals
        for sender, dropped in sorted(counts.dropped.items()):
            self.record("refusals_dropped", "refused", actor=sender,
                        reason=f"{dropped.count} refusals from {sender} dropped since "
                               f"{dropped.since.isoformat()}",
                        details={"count": dropped.count, "since": dropped.since.isoformat()})
        counts.dropped = {}

    async def commit(self, status: str | None = None, *, later: bool = False) -> Committed:
        """Write the journal (one transaction, or a few when it is large); what the workflow
        needs back. The commit after a decision applied before its verification verifies it
        (`commit_decision`), and raises TakenBack when it did not hold; a commit made `later`
        (refusals, while the process waits) leaves that to the procedure's own next commit."""
        async with self._committing:
            unverified = self._unverified
            if unverified is not None and later:
                return Committed()
            self._journal_dropped()
            entries = list(self.state.journal)
            if not entries:
                return Committed()
            written: dict[str, Any] = {"subscriptions_to_tell": []}
            s = self.state
            for batch in _batches(entries):
                last = batch[-1] is entries[-1]
                commit = dict(application_id=s.application_id,
                              workflow_id=workflow.info().workflow_id,
                              business_registration_number=s.organisation_id, step=s.step,
                              status=status if last else None, entries=batch,
                              entry_prefix=s.entry_prefix, on_record=s.on_record)
                if unverified is not None and batch[-1].seq >= unverified.seq:
                    answer = await _committed(
                        Records.commit_decision,
                        DecisionCommit(**commit, checks=unverified.checks,
                                       decision_seq=unverified.seq,
                                       decision_step=unverified.state.step),
                        f"verify {unverified.decision.name}, record {len(batch)} entries")
                    self._unverified, unverified.answer = None, answer
                    if not answer.written:
                        raise TakenBack(unverified)
                    unverified = None
                    self._show_step()
                else:
                    answer = await _committed(Records.write_record, Commit(**commit),
                                              f"record {len(batch)} entries")
                del s.journal[:len(batch)]
                if answer.keys is not None:
                    s.keys = written["keys"] = answer.keys
                if answer.publication_refused:
                    written["publication_refused"] = answer.publication_refused
                written["subscriptions_to_tell"] += answer.subscriptions_to_tell
            if not s.journal and self._flush is not None:
                self._flush.cancel()
                self._flush = None
            self._describe()
            return Committed(**written)

    def _flush_soon(self, within: timedelta) -> None:
        """What was journaled while the process waits (a refusal) is committed within
        `within`, unless a commit comes first."""
        due = workflow.now() + within
        if self._flush is not None:
            if self._flush_due is not None and self._flush_due <= due:
                return
            self._flush.cancel()
        self._flush_due = due
        self._flush = asyncio.create_task(self._flush_later(within))

    async def _flush_later(self, within: timedelta) -> None:
        await workflow.sleep(within, summary="record refusals")
        self._flush = None
        await self.commit(later=True)

    # --- the Web UI's summary -------------------------------------------------------------

    def _describe(self) -> None:
        """The summary the Temporal UI shows on the application's page ("current details").

        Refreshed whenever something changes (a decision applied before its verification, once
        its commit verified it). It issues no command, so it is safe to change without
        versioning; it is a payload, so the codec encrypts it like the rest.
        """
        if self._unverified is not None:
            return
        s = self.state
        title = ("Live service" if s.process == "live_service"
                 else f"{s.process.capitalize()} application")
        lines = [f"**{title} of {s.organisation_name}** ({s.organisation_id})", ""]
        if s.outcome:
            lines.append(f"Outcome: **{s.outcome.replace('_', ' ')}**")
        else:
            waiting = s.waiting_on.replace("_", " ") if s.waiting_on else "the platform"
            lines.append(f"Step: **{s.step.replace('_', ' ')}**, waiting on {waiting} "
                         f"since {s.waiting_since:%Y-%m-%d %H:%M} UTC")
        if s.takes:
            lines.append("Takes the decision " + " or ".join(f"`{t}`" for t in s.takes)
                         + " (a signal or update of that name)")
        if s.deadlines:
            lines.append(f"Next deadline: {s.deadlines[0].purpose} on "
                         f"{s.deadlines[0].due_at:%Y-%m-%d}")
        if s.admission_refusals:
            lines.append("Refused at admission: " + "; ".join(
                str(r) for r in s.admission_refusals[:5])[:600])
        if s.decisions:
            last = s.decisions[-1]
            verdict = "applied" if last.applied else f"refused: {last.reason[:200]}"
            lines.append(f"Last decision: {last.decision} by {last.decided_by or 'unknown'} "
                         f"({verdict})")
        if s.run > 1 or s.refused_not_listed or s.applied_not_listed:
            applied = sum(d.applied for d in s.decisions) + s.applied_not_listed
            refused = len(s.decisions) - applied + s.applied_not_listed + s.refused_not_listed
            lines.append(f"Timeline: {applied} decisions applied, {refused} refused (the "
                         "status lists the latest; the audit log has every one); run "
                         f"{s.run} of this application")
        for key in s.keys:
            lines.append(f"{key.environment.capitalize()} key {key.display_prefix}…, "
                         f"{key.status}, valid until {key.expires_at:%Y-%m-%d}")
        workflow.set_current_details("\n".join(lines))


async def _committed(method: Callable[[Any, Any], Awaitable[R]], commit: Any,
                     summary: str) -> R:
    """One commit (COMMITS_IN_TASK): in the workflow task that made it, as a local activity;
    when it cannot be written within COMMIT_IN_TASK's minute (the database away, say), as a
    regular activity, which Temporal retries for as long as it takes. Either way the same
    transaction, which writes once however often it runs (activities/records.py)."""
    if versions.patched(versions.COMMITS_IN_TASK):
        try:
            return await workflow.execute_local_activity_method(
                method, commit, summary=summary, **COMMIT_IN_TASK)
        except FailureError as err:  # timed out, or failed (the local attempt's error as is)
            if isinstance(err, CancelledError):
                raise
            workflow.logger.warning("commit goes on as a regular activity",
                                    extra={"summary": summary, "error": str(err.cause or err)})
    return await workflow.execute_activity_method(method, commit, summary=summary, **ACTIVITY)


def _batches(entries: list[Any]) -> list[list[Any]]:
    """The journal in commits of about COMMIT_BYTES (an entry larger goes alone)."""
    batches: list[list[Any]] = []
    size = COMMIT_BYTES
    for entry in entries:
        length = len(entry.model_dump_json().encode())
        if size + length > COMMIT_BYTES and (not batches or batches[-1]):
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += length
    return [b for b in batches if b]
