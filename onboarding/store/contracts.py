"""Contracts as the teams that sign them record them: market-data licences, platform contracts,
service contracts. A licence on file satisfies later applications of the same organisation
while it is valid."""

from __future__ import annotations

from datetime import date
from typing import Literal

import asyncpg

from onboarding.domain.models import ContractTerms

Db = asyncpg.Pool | asyncpg.Connection
ContractType = Literal["market_data_licence", "platform", "service"]


async def licence_on_file(db: Db, business_registration_number: str,
                          on: date) -> ContractTerms | None:
    """The organisation's market-data licence valid on `on` (the longest-running), if any."""
    row = await db.fetchrow(
        """SELECT contract_number, signed_on, valid_from, valid_until FROM contracts
           WHERE contract_type = 'market_data_licence' AND business_registration_number = $1
             AND valid_from <= $2 AND valid_until >= $2
           ORDER BY valid_until DESC LIMIT 1""",
        business_registration_number, on,
    )
    return ContractTerms(**dict(row)) if row else None


async def holder(db: Db, contract_type: ContractType, contract_number: str) -> str | None:
    """The application the contract number is recorded for, if it is."""
    return await db.fetchval(
        "SELECT application_id FROM contracts WHERE contract_type = $1 AND contract_number = $2",
        contract_type, contract_number)


async def record(db: Db, *, contract_type: ContractType, terms: ContractTerms,
                 business_registration_number: str, application_id: str,
                 recorded_by: str) -> bool:
    """The contract on record; False when it already was (a retried write, or another
    application's: see `holder`)."""
    return bool(await db.fetchval(
        """INSERT INTO contracts (contract_type, contract_number, business_registration_number,
               application_id, signed_on, valid_from, valid_until, recorded_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (contract_type, contract_number) DO NOTHING RETURNING true""",
        contract_type, terms.contract_number, business_registration_number, application_id,
        terms.signed_on, terms.valid_from, terms.valid_until, recorded_by,
    ))
