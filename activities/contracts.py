"""Contracts on record, looked up when an application needs them: a market-data licence on
file, a contract number already recorded for another application. Read only (contracts are
written by `write_record`, activities/records.py)."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from onboarding.core.config import Settings
from onboarding.domain.models import ContractTerms, LicenceLookup, Model
from onboarding.domain.record import ContractType
from onboarding.store import contracts


class ContractNumberCheck(Model):
    contract_type: ContractType
    contract_number: str
    application_id: str


class Contracts:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool

    @activity.defn
    async def find_market_data_licence(self, lookup: LicenceLookup) -> ContractTerms | None:
        return await contracts.licence_on_file(self.pool, lookup.business_registration_number,
                                               lookup.on)

    @activity.defn
    async def check_contract_number(self, check: ContractNumberCheck) -> str:
        """Why the contract cannot be recorded for this application ('' when it can). Since
        the check runs inside `verify_decision` (activities/decisions.py), only histories
        from before run this activity."""
        return await contract_number_refusal(self.pool, check)


async def contract_number_refusal(pool: asyncpg.Pool, check: ContractNumberCheck) -> str:
    if "\x00" in check.contract_number:  # an identifier: refused, not altered
        return "contract_number: contains a NUL character, which cannot be recorded"
    holder = await contracts.holder(pool, check.contract_type, check.contract_number)
    if holder is not None and holder != check.application_id:
        return (f"contract number {check.contract_number} is already recorded for another "
                "application")
    return ""
