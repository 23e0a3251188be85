"""What a process's steps hand each other: how an application ended, and how a run started.

Plain data with no workflow code: passed through the workflow sandbox (loaded once per worker,
not for every run: onboarding/temporal/sandbox.py); workflows/process.py uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ending:
    """How and where an application ended, and who ended it."""

    outcome: str  # in_production, rejected, withdrawn, lapsed, refused
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


@dataclass
class Start:
    """A workflow's input, read: the application as it came (JSON, what a run carries left
    out), the application if it parses, and what an earlier run carried (`continued`) when
    Temporal started this run by continuing that one as new."""

    raw: Any
    application: Any
    continued: dict[str, Any] | None
    forged: bool  # `continued` in the input of a run Temporal did not continue: refused


@dataclass
class Unverified:
    """A decision a person took at a step, applied before its verification: the commit that
    follows it verifies it and writes it with what its step did on it, or writes neither and
    answers why (activities/records.py, `commit_decision`). Until then the decision's handler
    holds the process's lock, and `state` is the process's state as it was when the decision
    came, to go back to (workflows/process.py, `Process.take_back`)."""

    decision: Any  # its DecisionType
    d: Any  # the decision, as applied
    checks: Any  # DecisionChecks: its verification, its contract number
    seq: int  # the journal entry of its own line
    state: Any  # a deep copy of the ProcessState
    answer: Any = None  # DecisionCommitted, once the commit ran


class TakenBack(Exception):
    """Raised out of the commit that found a decision applied before its verification does not
    hold (or holds under another name than the one it claimed); the process's run catches it,
    goes back to the decision's step, and its handler decides on it again, verified."""

    def __init__(self, unverified: Unverified) -> None:
        super().__init__(f"{unverified.decision.name} taken back")
        self.unverified = unverified
