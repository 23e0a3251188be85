"""Applications started before v2 go on with the code that started them.

An application is a workflow history: replaying it with different code breaks it. So stop 8's
workflow classes stay here as they were (procedure.py, subscription.py, publication.py, and
the messages of theirs that v2 changed, models.py), calling their activities by name
(activities/legacy.py registers them). They keep their `@workflow.defn` type names, so that a
worker of stop 8 can be run with them (tests/test_legacy.py).

The gate is in each v2 class's `@workflow.init` (workflows/subscription.py,
workflows/publication.py): `workflow.patched("process-v2")` is True for a run that v2 starts
(it writes the marker) and False for a history begun without it, for the whole run. There
the v2 class holds a `Legacy`: stop 8's workflow object, whose `run`, handlers and query the
v2 class's handlers call (workflows/handlers.py). Decided in `__init__`, not in `run`, because
handlers run before `run` in a run's first activation.

At this boundary, and only here, v2's words become stop 8's and back: the decision
`api_test_review` was `api_testing`; a decision's `verdict` was its `outcome`; the status and
an update's answer are given in v2's shapes. Payloads that need nothing translated (all of stop
8's own histories) pass through untouched, so their replay is exactly what stop 8 did.

Moving a legacy application to v2 at its next event is phase B2's work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from onboarding.domain.models import (
        ApplicationStatus,
        Deadline,
        DecisionReceipt,
        DecisionRecord,
        Model,
    )

# v2's name -> stop 8's, for the decisions v2 renamed.
STOP8_NAMES = {"api_test_review": "api_testing"}
V2_NAMES = {old: new for new, old in STOP8_NAMES.items()}


class Legacy:
    """A stop-8 application: its workflow object, and v2's handlers answered by its own."""

    def __init__(self, cls: type, application: Model) -> None:
        self.definition = workflow._Definition.must_from_class(cls)
        self.application = application
        self.instance = cls(application)

    async def run(self) -> ApplicationStatus:
        return _v2_status(await self.instance.run(self.application))

    def status(self) -> ApplicationStatus:
        return _v2_status(self.definition.queries["status"].fn(self.instance))

    async def signal(self, name: str, payload: RawValue) -> None:
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
        own = self._update(name)
        if own.validator:
            own.validator(self.instance, self._stop8_decision(own, decision.model_dump(
                mode="json", exclude_none=True)))

    async def update(self, name: str, decision: Model) -> DecisionReceipt:
        own = self._update(name)
        answer = await own.fn(self.instance, self._stop8_decision(own, decision.model_dump(
            mode="json", exclude_none=True)))
        return DecisionReceipt(**answer.model_dump())

    def validate_other(self, name: str, args: Sequence[RawValue]) -> None:
        own = self._update(name)
        if own.validator:
            own.validator(self.instance, self._stop8_decision(own, _read(args)))

    async def other_update(self, name: str, args: Sequence[RawValue]) -> DecisionReceipt:
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


def _stop8_fields(fields: Any) -> Any:
    """A decision's fields as stop 8 named them."""
    if isinstance(fields, dict) and "verdict" in fields and "outcome" not in fields:
        fields = {("outcome" if k == "verdict" else k): v for k, v in fields.items()}
    return fields


def _read(args: Sequence[RawValue]) -> Any:
    if not args:
        raise ValueError("(payload): a decision is required")
    return workflow.payload_converter().from_payload(args[0].payload)


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
