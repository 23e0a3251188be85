"""A decision's verification together with what its step needs of the record, in ONE local
activity: may its sender take it (activities/decisions.py); is the contract number it records
free, and which market-data licence is on file for the step it leads to
(activities/contracts.py). One marker per decision instead of two or three; histories from
before (workflows/process.py, CHECKS_IN_VERIFICATION) run those activities as they did.
Read only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from temporalio import activity

from activities.contracts import ContractNumberCheck, contract_number_refusal
from activities.decisions import DecisionCheck, Decisions, Verification
from onboarding.core.config import Settings
from onboarding.domain.models import ContractTerms, LicenceLookup, Model
from onboarding.store import contracts


class DecisionChecks(Model):
    decision: DecisionCheck
    # The contract the decision records, when it records one: its number must be free.
    contract: ContractNumberCheck | None = None
    # The licence on file the step it leads to looks for, when it leads to one.
    licence: LicenceLookup | None = None


class CheckedDecision(Verification):
    licence: ContractTerms | None = None  # on file, when asked and the decision verified


async def verified_and_checked(
        verify: Callable[[DecisionCheck], Awaitable[Verification]],
        contract_refusal: Callable[[ContractNumberCheck], Awaitable[str]],
        licence_on_file: Callable[[LicenceLookup], Awaitable[ContractTerms | None]],
        checks: DecisionChecks) -> CheckedDecision:
    """The sender first; the record only for a decision its sender may take."""
    verified = CheckedDecision.model_validate(
        (await verify(checks.decision)).model_dump(mode="json"))
    if verified.reason:
        return verified
    if checks.contract is not None and (reason := await contract_refusal(checks.contract)):
        return verified.model_copy(update={"reason": reason})
    if checks.licence is not None:
        return verified.model_copy(update={"licence": await licence_on_file(checks.licence)})
    return verified


class Verifications:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.decisions = Decisions(pool, settings)

    @activity.defn
    async def verify_and_check_decision(self, checks: DecisionChecks) -> CheckedDecision:
        return await verified_and_checked(
            self.decisions.verify_decision,
            lambda check: contract_number_refusal(self.pool, check),
            lambda lookup: contracts.licence_on_file(
                self.pool, lookup.business_registration_number, lookup.on), checks)
