"""A decision's verification together with what its step checks of the record, in ONE local
activity: may its sender take it (activities/decisions.py), and is the contract number it
records free (activities/contracts.py). One marker per decision instead of two; histories from
before (workflows/process.py, CHECKS_IN_VERIFICATION) run the two activities as they did.
Read only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from temporalio import activity

from activities.contracts import ContractNumberCheck, contract_number_refusal
from activities.decisions import DecisionCheck, Decisions, Verification
from onboarding.core.config import Settings
from onboarding.domain.models import Model


class DecisionChecks(Model):
    decision: DecisionCheck
    # The contract the decision records, when it records one: its number must be free.
    contract: ContractNumberCheck | None = None


async def verified_and_checked(verify: Callable[[DecisionCheck], Awaitable[Verification]],
                               contract_refusal: Callable[[ContractNumberCheck], Awaitable[str]],
                               checks: DecisionChecks) -> Verification:
    """The sender first; the contract number only for a decision its sender may take."""
    verified = await verify(checks.decision)
    if not verified.reason and checks.contract is not None:
        if reason := await contract_refusal(checks.contract):
            return verified.model_copy(update={"reason": reason})
    return verified


class Verifications:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.decisions = Decisions(pool, settings)

    @activity.defn
    async def verify_decision_and_contract(self, checks: DecisionChecks) -> Verification:
        return await verified_and_checked(
            self.decisions.verify_decision,
            lambda check: contract_number_refusal(self.pool, check), checks)
