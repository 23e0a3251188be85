"""Each catalogue decision's signal, update and validator, made once for every process.

    @workflow.defn(name="SubscriptionApplication")
    @takes_decisions(decisions.SUBSCRIPTION)
    class SubscriptionWorkflow: ...

For every decision of the catalogue (onboarding/domain/decisions.py) the class gets a signal
and an update of the decision's name, both described by the catalogue (the Web UI lists them
with their descriptions), and the update's validator; then a dynamic signal refusing on the
record what no process takes (a misspelt decision), a dynamic update for the decisions of
applications started before v2 under their old names, and the `status` query.

The SDK's decorators only attach a definition to a function, and `@workflow.defn` (applied
after this one) collects them from the class: so the functions are made here, their argument
type on their annotations before they are decorated. A signal takes its payload raw, so that a
malformed one is refused on the record (workflows/process.py) rather than dropped by the SDK
with only a log line; an update takes the decision's model, so that a caller gets a typed
answer. The workflow class provides `process` (its Process) and `legacy` (a Legacy for an
application started before v2, else None: workflows/legacy/); a handler passes to one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from onboarding.domain.decisions import Catalogue, DecisionType
    from onboarding.domain.models import ApplicationStatus, DecisionReceipt

UNKNOWN_SIGNAL = "Any other signal: not a decision of this process, refused on the record."
UNKNOWN_UPDATE = ("Any other update: refused; applications started before v2 take their "
                  "decisions' former names too.")
STATUS = ("Current step, whom it waits on and since when, the decisions it takes, deadlines, "
          "keys (by display prefix) and every decision received.")


def takes_decisions(catalogue: Catalogue) -> Any:
    """A class decorator, under `@workflow.defn`: the catalogue's handlers on the class."""

    def attach(cls: type) -> type:
        for decision in catalogue.values():
            setattr(cls, f"{decision.name}_signal", _signal(decision))
            setattr(cls, f"{decision.name}_update", _update(decision))
        setattr(cls, "other_signal", _other_signal(catalogue))
        setattr(cls, "other_update", _other_update(catalogue))
        setattr(cls, "status_query", _status())
        return cls

    return attach


def _named(fn: Any, name: str, annotations: dict[str, Any]) -> Any:
    fn.__name__ = fn.__qualname__ = name
    fn.__annotations__ = annotations
    return fn


def _signal(decision: DecisionType[Any]) -> Any:
    async def signal(self: Any, payload: RawValue) -> None:
        if self.legacy is not None:
            await self.legacy.signal(decision.name, payload)
        else:
            await self.process.receive(decision, payload)

    _named(signal, f"{decision.name}_signal", {"payload": RawValue, "return": None})
    return workflow.signal(name=decision.name, description=decision.description)(signal)


def _update(decision: DecisionType[Any]) -> Any:
    async def update(self: Any, d: Any) -> DecisionReceipt:
        if self.legacy is not None:
            return await self.legacy.update(decision.name, d)
        return await self.process.decide(decision, d)

    def validate(self: Any, d: Any) -> None:
        if self.legacy is not None:
            self.legacy.validate(decision.name, d)
        else:
            self.process.validate(decision, d)

    _named(update, f"{decision.name}_update", {"d": decision.model, "return": DecisionReceipt})
    _named(validate, f"validate_{decision.name}", {"d": decision.model, "return": None})
    handler = workflow.update(name=decision.name, description=decision.description)(update)
    handler.validator(validate)
    return handler


def _other_signal(catalogue: Catalogue) -> Any:
    async def other_signal(self: Any, name: str, args: Sequence[RawValue]) -> None:
        if self.legacy is not None:
            await self.legacy.other_signal(name, args)
        else:
            await self.process.refuse_unknown(name, args)

    _named(other_signal, "other_signal",
           {"name": str, "args": Sequence[RawValue], "return": None})
    return workflow.signal(dynamic=True, description=UNKNOWN_SIGNAL)(other_signal)


def _other_update(catalogue: Catalogue) -> Any:
    async def other_update(self: Any, name: str, args: Sequence[RawValue]) -> DecisionReceipt:
        assert self.legacy is not None, "the validator refuses it otherwise"
        return await self.legacy.other_update(name, args)

    def validate_other(self: Any, name: str, args: Sequence[RawValue]) -> None:
        if self.legacy is None:
            raise ValueError(f"{name} is not a decision of a {catalogue.process} application; "
                             f"it takes {', '.join(catalogue)}")
        self.legacy.validate_other(name, args)

    annotations = {"name": str, "args": Sequence[RawValue]}
    _named(other_update, "other_update", {**annotations, "return": DecisionReceipt})
    _named(validate_other, "validate_other", {**annotations, "return": None})
    handler = workflow.update(dynamic=True, description=UNKNOWN_UPDATE)(other_update)
    handler.validator(validate_other)
    return handler


def _status() -> Any:
    def status(self: Any) -> ApplicationStatus:
        return self.legacy.status() if self.legacy is not None else self.process.status()

    _named(status, "status_query", {"return": ApplicationStatus})
    return workflow.query(name="status", description=STATUS)(status)
