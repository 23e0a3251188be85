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
  (`verify_decision`, a local activity: one marker in the history, no extra workflow task);
  what the step's own check asks of the world (a local activity). Then applied or refused,
  and either way on the record. A decision that does not apply never raises into the workflow.
- Effects. Nothing changes in the world until a decision is applied, and then only through the
  journal: the step's `record_contract`, `issue_key`, `notify`, ... append to it, and ONE
  regular activity (`write_record`, activities/records.py) commits it in one transaction when
  the process is about to wait on a person, when it ends, or when a step must know the result
  (`await commit()`). A refused decision writes nothing but its refusal.
- Deadlines. A step waiting on a person reminds the responsible team, escalates, and (when it
  waits on the applicant) lets the application lapse, after the application's numbers of days
  counted from when the step began.
- One at a time: applying a decision, a deadline passing, an ending all happen under one lock,
  so a decision being verified and a deadline never interleave; commits happen one at a time,
  in the journal's order, and decisions may be applied while one is being written.
- Search attributes are upserted once per step; the Web UI's summary of the application
  (`set_current_details`, which costs no command) whenever something changes.

Deterministic: it talks to the world only through activities.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from activities.contracts import ContractNumberCheck, Contracts
    from activities.decisions import DecisionCheck, Decisions
    from activities.records import Records
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
        Notice,
        Organisation,
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
    from onboarding.domain.state import ProcessState
    from onboarding.temporal import search_attributes as sa

# The commit retries for as long as it takes (a database restart must not fail an
# application); each attempt is bounded. The worker heartbeats for every running attempt
# (activities/interceptors.py): an attempt on a worker that died is retried elsewhere after the
# heartbeat timeout. Two minutes: a commit issuing a key may wait on a slow database.
ACTIVITY = dict(
    start_to_close_timeout=timedelta(minutes=2),
    heartbeat_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
)
# Local activities (lookups, verification) retry within the workflow task while the database is
# away; the interval is kept under the SDK's 60 s local-retry threshold, past which every retry
# would cost the history ~6 events (temporal-research.md §1).
LOCAL = dict(
    start_to_close_timeout=timedelta(seconds=15),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
)
# Refusals (and messages from other processes) journaled while the process waits are committed
# at most this long after the first of them, unless a commit comes sooner.
FLUSH_AFTER = timedelta(seconds=2)

D = TypeVar("D", bound=Decision)
Check = Callable[[Any], Awaitable[str | None]]


@dataclass(frozen=True)
class Ending:
    """How and where an application ended, and who ended it."""

    outcome: str  # in_production, rejected, withdrawn, lapsed
    step: str
    by: str = "platform"
    note: str = ""


Next = str | Ending


class Ended(Exception):
    """Raised out of a wait when the application ends before its step is decided (withdrawn,
    lapsed); the process's run catches it."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(f"{ending.outcome} at {ending.step}")
        self.ending = ending


class Process:
    def __init__(self, state: ProcessState, catalogue: Catalogue) -> None:
        self.state = state
        self.catalogue = catalogue
        # The step's decisions and their checks, and the decision that settled it.
        self._expected: dict[str, Check | None] = {}
        self._settled: Decision | None = None
        self._ending: Ending | None = None
        self._lock = asyncio.Lock()
        self._committing = asyncio.Lock()
        self._flush: asyncio.Task[None] | None = None

    # --- the procedure ---------------------------------------------------------------------

    async def run(self, steps: Mapping[str, Callable[[], Awaitable[Next]]],
                  end_early: Callable[[Ending], Awaitable[None]]) -> ApplicationStatus:
        """Run the steps from the state's, each naming the next, until one ends the
        application; `end_early` undoes what must be undone when it ends before production."""
        step: Next = self.state.step
        while isinstance(step, str):
            try:
                step = await steps[step]()
            except Ended as ended:
                step = ended.ending
        ending = step
        self.state.outcome = ending.outcome  # decisions from now on are refused
        self.state.takes, self.state.deadlines = [], []
        if ending.outcome != "in_production":
            await end_early(ending)
        self.enter(ending.outcome)
        self.record("application_closed", details={"outcome": ending.outcome})
        await self.commit(status=ending.outcome)
        # Handlers still at work (a decision being verified) journal their refusal: on record
        # before the run ends.
        await workflow.wait_condition(workflow.all_handlers_finished)
        while self.state.journal:
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
        shown = workflow.info().typed_search_attributes
        changed = [key.value_set(value) for key, value in (
            (sa.APPLICATION_STEP, step), (sa.WAITING_ON, s.waiting_on or "nobody"))
            if shown.get(key) != value]
        if changed:  # one upsert per step, of what it changes
            workflow.upsert_search_attributes(changed)

    async def wait_for(self, step: str, decision: DecisionType[D], *, check: Check | None = None,
                       deadlines: bool = True) -> D:
        """Enter `step` and wait until a decision of `decision`'s type is applied; return it.

        `check` is what the step asks of the world before the decision may apply (a local
        activity): a reason to refuse it, or None. Raises Ended when the application is
        withdrawn or lapses meanwhile.
        """
        # The step takes its decision as soon as it is entered, before the commit's await; the
        # status says so (`takes`) once the record is written (the keys it issued on it).
        self._expected, self._settled = {decision.name: check}, None
        self.enter(step, decision.taken_by, deadlines)
        try:
            await self.commit()
            if self._settled is None and self._ending is None:
                self.state.takes = [decision.name]
                self._describe()
            while True:
                due = self.state.deadlines[0] if self.state.deadlines else None
                try:
                    await workflow.wait_condition(
                        lambda: self._settled is not None or self._ending is not None,
                        timeout=due.due_at - workflow.now() if due else None,
                        timeout_summary=f"{due.purpose} for {step}" if due else None)
                except asyncio.TimeoutError:
                    async with self._lock:
                        if self._settled is None and self._ending is None:
                            self._deadline_passed()
                    await self.commit()
                    continue
                if self._ending is not None:
                    raise Ended(self._ending)
                assert self._settled is not None
                return self._settled  # type: ignore[return-value]
        finally:
            self._expected, self.state.takes, self.state.deadlines = {}, [], []

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
        return self.state.status()

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

    # --- decisions -------------------------------------------------------------------------

    async def receive(self, decision: DecisionType[Any], payload: RawValue) -> None:
        """A decision sent as a signal: read it, then decide on it. One that cannot be read is
        refused on the record, naming each field and rule."""
        read = self.read(decision.name, decision.model, payload, decision.max_payload_bytes)
        if isinstance(read, BaseModel):
            await self.decide(decision, read)
        else:
            async with self._lock:  # on the record in the order received, like every decision
                self._refuse_unread(decision.name, *read)

    def validate(self, decision: DecisionType[Any], d: Decision) -> None:
        """An update's validator: refuse, before anything is written, what cannot apply now.
        Pure (validators are not replayed): it reads the state, never changes it."""
        if reason := self._refusal(decision, d):
            raise ValueError(reason)

    async def decide(self, decision: DecisionType[Any], d: Decision) -> DecisionReceipt:
        """Apply `d` if it fits the step and its sender may take it; on the record either way."""
        received_at = workflow.now()
        async with self._lock:
            step = self.state.step
            reason = self._refusal(decision, d)
            if reason is None and decision.taken_by is not Role.PLATFORM_WORKFLOW:
                reason = await self._verify(decision, d, received_at)
            if reason is None and (check := self._expected.get(decision.name)):
                reason = await check(d)
            if reason is None:  # the state may have moved while we awaited
                reason = self._refusal(decision, d)
            self._record_decision(decision.name, d, step, received_at, reason)
            if reason is None:
                if decision.ends_application:
                    self._ending = Ending("withdrawn", step, d.decided_by or "", d.note)
                else:
                    self._settled, self.state.takes = d, []
            else:
                workflow.logger.info("decision refused", extra={
                    "decision_id": d.decision_id, "decision": decision.name, "reason": reason})
                self._flush_soon()
        return DecisionReceipt(decision_id=d.decision_id, applied=reason is None,
                               reason=reason or "", step=step)

    def _refusal(self, decision: DecisionType[Any], d: Decision) -> str | None:
        """Why `d` cannot apply now, from the state and its rule alone; None if it can."""
        s = self.state
        if d.decision_id in s.seen:
            return f"decision {d.decision_id} was already received"
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

    async def _verify(self, decision: DecisionType[Any], d: Decision,
                      received_at: datetime) -> str | None:
        s = self.state
        not_by = sorted({r.decided_by.lower() for r in s.decisions
                         if r.applied and r.decision == decision.four_eyes}) \
            if decision.four_eyes else []
        verified = await workflow.execute_local_activity_method(
            Decisions.verify_decision,
            DecisionCheck(application_id=s.application_id, organisation=s.organisation_id,
                          decision=decision.name, decision_id=d.decision_id,
                          content=d.model_dump(mode="json"), role=decision.taken_by,
                          not_by=not_by, applicant_contacts=s.applicant_contacts,
                          received_at=received_at, decided_by=d.decided_by),
            summary=f"verify {decision.name}", **LOCAL)
        return verified.reason or None

    def _record_decision(self, name: str, d: Decision, step: str, received_at: datetime,
                         reason: str | None) -> None:
        s = self.state
        s.seen.add(d.decision_id)
        s.decisions.append(DecisionRecord(
            decision_id=d.decision_id, decision=name, decided_by=d.decided_by or "",
            note=d.note, step=step, received_at=received_at, applied=reason is None,
            reason=reason or ""))
        self.record(name, "applied" if reason is None else "refused",
                    actor=d.decided_by or "unknown", reason=reason or "",
                    details=d.model_dump(mode="json"))

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
        data: Any = None
        with contextlib.suppress(Exception):
            data = workflow.payload_converter().from_payload(args[0].payload) if args else None
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
        read = self.read(name, model, payload, MAX_DECISION_BYTES)
        async with self._lock:
            if not isinstance(read, BaseModel):
                self._refuse_unread(name, *read)
            elif read.decision_id not in self.state.seen:
                self.state.seen.add(read.decision_id)
                apply(read)
                self._flush_soon()

    def _refuse_unread(self, name: str, data: Any, reason: str) -> None:
        fields = data if isinstance(data, dict) else {}
        reason = reason[:2000]
        self.state.decisions.append(DecisionRecord(
            decision_id=str(fields.get("decision_id", ""))[:100], decision=name,
            decided_by=str(fields.get("decided_by", "") or "")[:200], note="",
            step=self.state.step, received_at=workflow.now(), applied=False, reason=reason))
        self.record(name, "refused", actor=str(fields.get("decided_by") or "unknown")[:200],
                    reason=reason)
        self._flush_soon()

    # --- checks a step asks of the world ---------------------------------------------------

    async def contract_unclaimed(self, contract_type: ContractType,
                                 terms: ContractTerms | None) -> str | None:
        """Why the contract cannot be recorded for this application (its number is another
        application's), or None."""
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
                      organisation=organisation, requested_apis=requested_apis)

    def record_contract(self, contract_type: ContractType, terms: ContractTerms | None,
                        d: Decision) -> None:
        assert terms is not None, "the decision's rule requires the contract"
        self._journal(ContractRecorded, contract_type=contract_type, terms=terms,
                      recorded_by=d.decided_by or "")

    def issue_key(self, environment: Environment, scopes: list[str], valid_days: int) -> None:
        """A key for `environment`, once; its delivery to the applicant's contacts."""
        self._journal(KeyIssued, environment=environment, scopes=scopes, valid_days=valid_days,
                      recipients=self.applicant, language=self.state.language)

    def revoke_keys(self, reason: str) -> None:
        self._journal(KeysRevoked, reason=reason)

    def publish_api(self, api: ApiProposal, specification: dict[str, Any],
                    summary: SpecificationSummary, stage: str) -> None:
        self._journal(ApiPublished, api=api, specification=specification, summary=summary,
                      stage=stage)

    def withdraw_api(self, api_id: str) -> None:
        self._journal(ApiWithdrawnFromCatalogue, api_id=api_id)

    async def commit(self, status: str | None = None) -> Committed:
        """Write the journal (one transaction); what the workflow needs back."""
        async with self._committing:
            entries = list(self.state.journal)
            if not entries:
                return Committed()
            s = self.state
            written = await workflow.execute_activity_method(
                Records.write_record,
                Commit(application_id=s.application_id,
                       workflow_id=workflow.info().workflow_id,
                       business_registration_number=s.organisation_id, step=s.step,
                       status=status, entries=entries),
                summary=f"record {len(entries)} entries", **ACTIVITY)
            del s.journal[:len(entries)]
            if written.keys is not None:
                s.keys = written.keys
            if not s.journal and self._flush is not None:
                self._flush.cancel()
                self._flush = None
            self._describe()
            return written

    def _flush_soon(self) -> None:
        """What was journaled while the process waits (a refusal) is committed within
        FLUSH_AFTER, unless a commit comes first."""
        if self._flush is None:
            self._flush = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await workflow.sleep(FLUSH_AFTER, summary="record refusals")
        self._flush = None
        await self.commit()

    # --- the Web UI's summary -------------------------------------------------------------

    def _describe(self) -> None:
        """The summary the Temporal UI shows on the application's page ("current details").

        Refreshed whenever something changes. It issues no command, so it is safe to change
        without versioning; it is a payload, so the codec encrypts it like the rest.
        """
        s = self.state
        lines = [f"**{s.process.capitalize()} application of {s.organisation_name}** "
                 f"({s.organisation_id})", ""]
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
        if s.decisions:
            last = s.decisions[-1]
            verdict = "applied" if last.applied else f"refused: {last.reason[:200]}"
            lines.append(f"Last decision: {last.decision} by {last.decided_by or 'unknown'} "
                         f"({verdict})")
        for key in s.keys:
            lines.append(f"{key.environment.capitalize()} key {key.display_prefix}…, "
                         f"{key.status}, valid until {key.expires_at:%Y-%m-%d}")
        workflow.set_current_details("\n".join(lines))
