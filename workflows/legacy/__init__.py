"""Applications started before v2 go on with the code that started them.

An application is a workflow history: replaying it with different code breaks it. So stop 8's
workflow classes stay here as they were (procedure.py, subscription.py, publication.py, and
the messages of theirs that v2 changed, models.py), calling their activities by name
(activities/legacy.py registers them). They keep their `@workflow.defn` type names, so that a
worker of stop 8 can be run with them (tests/test_legacy.py).

The gate is in each v2 class's `@workflow.init` (workflows/subscription.py,
workflows/publication.py): `versions.patched(versions.PROCESS_V2)` is True for a run that v2 starts
(it writes the marker) and False for a history begun without it, for the whole run. There
the v2 class holds a `Legacy`: stop 8's workflow object, whose `run`, handlers and query the
v2 class's handlers call (workflows/handlers.py). Decided in `__init__`, not in `run`, because
handlers run before `run` in a run's first activation.

At this boundary, and only here, v2's words become stop 8's and back: the decision
`api_test_review` was `api_testing`; a decision's `verdict` was its `outcome`; the status and
an update's answer are given in v2's shapes. Payloads that need nothing translated (all of stop
8's own histories) pass through untouched, so their replay is exactly what stop 8 did.

An application stop 8 began moves to v2 at its next event after deployment: a decision of
v2's catalogue (a signal or an update) or a deadline reaching it while it waits on a person.
Then its state (step, since when, deadlines, decisions, keys, four eyes, the catalogue's facts)
is carried into a v2 process (`carried`), which takes the decision by v2's rules, or lets the
deadline pass, in this same run, and continues as new at its next wait: the application goes on
in a run of v2's alone. The move is guarded by a patch id first asked at that event,
`migrate-to-v2/<n>` with n counting the events at which it could move (`patched` answers one
id the same for a whole run: the events replayed from before deployment answer False, this
one True; temporal-research.md §2). Stop 8's coroutine is told to stop by the exception it
already raises when an application ends (`Migrating` as its `_ended`).

Decisions are sealed (issue 12, docs/identity.md), and stop 8's code cannot check a seal (it
trusts the typed `decided_by`): so the decision that moves an application is taken by v2,
which checks its seal, the roster and four eyes (the carried decisions' typed names count as
staff ids there). A person's decision reaching stop 8's code without moving it (it waits on no
person, or is at work on an earlier decision) is refused on its own record, "identity not
verified"; only messages of other processes (checked against the record) still reach stop 8's
handlers. Patched per decision (`legacy-unsealed-refused/<n>`, n counting the person's
decisions met this run) for the same reason as the move. An update that will move the
application is not checked by stop 8's validator (its models know no seal and need a typed
`decided_by`), only for a repeat and by v2's rule; v2 checks the rest on the record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from onboarding.domain.decisions import CATALOGUES
    from onboarding.domain.models import (
        ApplicationStatus,
        Deadline,
        DecisionReceipt,
        DecisionRecord,
        Model,
        Role,
    )
    from onboarding.identity.models import NOT_VERIFIED

from workflows import versions

# v2's name -> stop 8's, for the decisions v2 renamed.
STOP8_NAMES = {"api_test_review": "api_testing"}
V2_NAMES = {old: new for new, old in STOP8_NAMES.items()}
# The decisions people take, under v2's names (the others are messages of other processes).
PEOPLE_DECIDE = {name for catalogue in CATALOGUES.values() for name, d in catalogue.items()
                 if d.taken_by is not Role.PLATFORM_WORKFLOW}
UNSEALED = (f"{NOT_VERIFIED}: an application started before v2 cannot check who sealed a "
            "decision, so it takes none from a person (docs/identity.md)")


class Migrating(Exception):
    """Raised out of stop 8's waiting: the application goes on in v2."""

    how = "moved to the v2 process"  # what stop 8 says of an ended application


class Legacy:
    """A stop-8 application: its workflow object, and v2's handlers answered by its own,
    until it moves to v2 (`moved` is given the state it carries there)."""

    def __init__(self, cls: type, application: Model,
                 moved: Callable[[dict[str, Any]], None]) -> None:
        self.definition = workflow._Definition.must_from_class(cls)
        self.application = application
        self.instance = cls(application)
        self.moved = moved
        self._chances = 0  # events at which it could have moved: the patch ids asked
        self._decisions_met = 0  # people's decisions stop 8 met since: the patch ids asked
        procedure = self.instance.procedure
        stop8_deadline = procedure._deadline_passed

        async def deadline_passed(deadline: Any, step: str, waiting_on: Any) -> None:
            if self._moves_now():
                self.moved(carried(self.instance, first=deadline))
                raise Migrating()
            await stop8_deadline(deadline, step, waiting_on)

        procedure._deadline_passed = deadline_passed

    async def run(self) -> ApplicationStatus | None:
        """Stop 8's run; None when the application moved to v2 meanwhile."""
        try:
            return _v2_status(await self.instance.run(self.application))
        except Migrating:
            return None

    def _waits_on_a_person(self) -> bool:
        """Stop 8 waits on a person and nothing of its own is at work: an event new since
        deployment moves the application now."""
        p = self.instance.procedure
        return not (not p._expected or p._settled is not None or p._ended is not None
                    or p.outcome or p._lock.locked())

    def _moves_now(self) -> bool:
        """Whether this event (a decision, a deadline) moves the application to v2: it waits on
        a person and nothing of stop 8's is at work; and the event is new since deployment."""
        if not self._waits_on_a_person():
            return False
        self._chances += 1
        return workflow.patched(f"{versions.MIGRATE_TO_V2}/{self._chances}")

    def _move(self) -> None:
        self.moved(carried(self.instance))
        self.instance.procedure._ended = Migrating()  # stop 8's wait ends, raising it

    def _refuses(self, name: str) -> bool:
        """Whether `name`, arriving now, is a person's decision this application refuses
        unread: every one met since sealing was deployed (see the module's docstring)."""
        if V2_NAMES.get(name, name) not in PEOPLE_DECIDE:
            return False
        self._decisions_met += 1
        return workflow.patched(
            f"{versions.LEGACY_UNSEALED_REFUSED}/{self._decisions_met}")

    async def _refuse(self, name: str, fields: Any) -> DecisionReceipt:
        """On stop 8's own record, as it refuses what it cannot read."""
        fields = dict(fields) if isinstance(fields, dict) else {}
        if fields.get("decided_by"):
            fields["decided_by"] = f"{str(fields['decided_by'])[:180]} (not verified)"
        procedure = self.instance.procedure
        await procedure._refuse_unread(STOP8_NAMES.get(name, name), fields, UNSEALED)
        return DecisionReceipt(decision_id=str(fields.get("decision_id", ""))[:100],
                               applied=False, reason=UNSEALED, step=procedure.step)

    def status(self) -> ApplicationStatus:
        return _v2_status(self.definition.queries["status"].fn(self.instance))

    async def decision(self, name: str, payload: RawValue) -> bool:
        """A decision of v2's catalogue sent as a signal: handled by stop 8, or False when it
        moves the application to v2 (which then takes it)."""
        if self._moves_now():
            self._move()
            return False
        await self.signal(name, payload)
        return True

    async def decision_update(self, name: str, decision: Model) -> DecisionReceipt | None:
        """The same, sent as an update: stop 8's answer, or None when it moves."""
        if self._moves_now():
            self._move()
            return None
        return await self.update(name, decision)

    async def signal(self, name: str, payload: RawValue) -> None:
        if self._refuses(name):
            await self._refuse(name, _readable(payload))
            return
        own = self.definition.signals.get(STOP8_NAMES.get(name, name))
        if own is None:  # not a signal of stop 8's: its dynamic handler records the refusal
            await self.definition.signals[None].fn(self.instance, name, [payload])
        else:
            await own.fn(self.instance, _stop8_payload(payload))

    async def other_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A signal v2 does not take by name (one of stop 8's names, or none at all)."""
        if name in self.definition.signals and args:
            await self.signal(name, args[0])
        else:
            await self.definition.signals[None].fn(self.instance, name, args)

    def validate(self, name: str, decision: Model) -> None:
        """An update's validator. Validators run only for updates new since deployment (never
        on replay): one arriving while stop 8 waits on a person moves the application, and v2
        takes it; its seal means nothing to stop 8's models, so only a repeat and v2's rule
        are refused here. Otherwise, stop 8's validator (seal fields left out: see
        `_stop8_fields`); a person's decision then goes on to be refused as unsealed."""
        p = self.instance.procedure
        if self._waits_on_a_person():
            if decision.decision_id in p._seen:
                raise ValueError(f"decision {decision.decision_id} was already received")
            kind = CATALOGUES[p.kind].get(name)
            if kind is not None and (reason := kind.rule(decision)):
                raise ValueError(reason)
            return
        if V2_NAMES.get(name, name) in PEOPLE_DECIDE:
            return  # refused on the record by the handler, "identity not verified"
        own = self._update(name)
        if own.validator:
            own.validator(self.instance, self._stop8_decision(own, decision.model_dump(
                mode="json", exclude_none=True)))

    async def update(self, name: str, decision: Model) -> DecisionReceipt:
        if self._refuses(name):
            return await self._refuse(name, decision.model_dump(mode="json", exclude_none=True))
        own = self._update(name)
        answer = await own.fn(self.instance, self._stop8_decision(own, decision.model_dump(
            mode="json", exclude_none=True)))
        return DecisionReceipt(**answer.model_dump())

    def validate_other(self, name: str, args: Sequence[RawValue]) -> None:
        own = self._update(name)
        if own.validator:
            own.validator(self.instance, self._stop8_decision(own, _read(args)))

    async def other_update(self, name: str, args: Sequence[RawValue]) -> DecisionReceipt:
        if self._refuses(name):
            return await self._refuse(name, _read(args))
        own = self._update(name)
        answer = await own.fn(self.instance, self._stop8_decision(own, _read(args)))
        return DecisionReceipt(**answer.model_dump())

    def _update(self, name: str) -> Any:
        own = self.definition.updates.get(STOP8_NAMES.get(name, name))
        if own is None:
            raise ValueError(f"{name} is not taken as an update by applications started before "
                             "v2: send it as a signal")
        return own

    @staticmethod
    def _stop8_decision(own: Any, fields: Any) -> Model:
        assert own.arg_types, "stop 8's updates are typed"
        return own.arg_types[0].model_validate(_stop8_fields(fields))


# What decisions carry since they are sealed, unknown to stop 8's models (which refuse fields
# they do not know): left out, so that stop 8's validators let the decision through to the
# refusal on the record.
SEALED_FIELDS = ("application_id", "decision", "attestation")


def _stop8_fields(fields: Any) -> Any:
    """A decision's fields as stop 8 named them."""
    if isinstance(fields, dict) and "verdict" in fields and "outcome" not in fields:
        fields = {("outcome" if k == "verdict" else k): v for k, v in fields.items()}
    if isinstance(fields, dict) and any(k in fields for k in SEALED_FIELDS):
        fields = {k: v for k, v in fields.items() if k not in SEALED_FIELDS}
    return fields


def _read(args: Sequence[RawValue]) -> Any:
    if not args:
        raise ValueError("(payload): a decision is required")
    return workflow.payload_converter().from_payload(args[0].payload)


def _readable(payload: RawValue) -> Any:
    try:
        return workflow.payload_converter().from_payload(payload.payload)
    except Exception:  # noqa: BLE001 - refused whatever it holds
        return None


def _stop8_payload(payload: RawValue) -> RawValue:
    """The payload, with v2's field names as stop 8's; untouched when there is nothing to
    translate (or nothing readable: stop 8's own handler refuses it as it always did)."""
    try:
        fields = workflow.payload_converter().from_payload(payload.payload)
    except Exception:  # noqa: BLE001
        return payload
    translated = _stop8_fields(fields)
    if translated is fields:
        return payload
    return RawValue(workflow.payload_converter().to_payload(translated))


def _v2_status(stop8: Any) -> ApplicationStatus:
    return ApplicationStatus(
        application_id=stop8.application_id, process=stop8.kind, step=stop8.step,
        waiting_on=stop8.waiting_on, waiting_since=stop8.waiting_since,
        deadlines=[Deadline(purpose=d.kind, due_at=d.due_at) for d in stop8.deadlines],
        decisions=[DecisionRecord(decision=V2_NAMES.get(d.kind, d.kind), decision_id=d.decision_id,
                                  decided_by=d.decided_by, note=d.note, step=d.step,
                                  received_at=d.received_at, applied=d.applied, reason=d.reason)
                   for d in stop8.decisions],
        keys=stop8.keys, outcome=stop8.outcome, reviewer_flags=stop8.reviewer_flags,
        withdrawn_apis=stop8.withdrawn_apis, takes=[V2_NAMES.get(t, t) for t in stop8.takes])


def carried(instance: Any, first: Any = None) -> dict[str, Any]:
    """What a stop-8 application carries into v2 (onboarding/domain/state.py's fields): where it
    waits and since when, its deadlines (`first`: one due now, that stop 8 had taken off),
    every decision (four eyes reads them), keys, the catalogue's facts. v2's journal starts
    at 0: its audit ids (`<application>/<seq>`) are of another shape than stop 8's, its notice
    ids the same (so nothing stop 8 sent is sent again)."""
    p = instance.procedure
    decisions = [DecisionRecord(decision=V2_NAMES.get(d.kind, d.kind), decision_id=d.decision_id,
                                decided_by=d.decided_by, note=d.note, step=d.step,
                                received_at=d.received_at, applied=d.applied, reason=d.reason)
                 for d in p.decisions]
    applied = [d.decision_id for d in decisions if d.applied]
    state: dict[str, Any] = {
        "process": p.kind, "application": instance.application,
        "application_id": p.application_id, "organisation_id": p.organisation_id,
        "organisation_name": p.organisation_name, "applicant_contacts": p.applicant_contacts,
        "language": p.language, "deadline_policy": p.deadlines,
        "reviewer_flags": list(p.reviewer_flags), "step": p.step, "waiting_on": p.waiting_on,
        "waiting_since": p.waiting_since,
        "deadlines": [Deadline(purpose=d.kind, due_at=d.due_at)
                      for d in ([first] if first is not None else []) + list(p.due)],
        "decisions": decisions, "applied_ids": applied,
        "refused_ids": sorted(i for i in p._seen if i not in applied)[-500:],
        "keys": list(p.keys.values())}
    if p.kind == "subscription":
        state.update(catalogue=instance.catalogue, withdrawn_apis=list(p.withdrawn_apis))
    else:
        state["in_catalogue"] = instance.in_catalogue
    return state
