"""The API catalogue and the staff roster: what applications may request, who provides it, and
who may decide what."""

from __future__ import annotations

import asyncpg

from onboarding.domain.models import ApiFacts, ApiProposal, CatalogueFacts, Role, SpecificationSummary
from onboarding.store.text import storable

Db = asyncpg.Pool | asyncpg.Connection


class ApiIdTaken(Exception):
    """The API id names another provider's API in the catalogue."""


# --- the catalogue ------------------------------------------------------------------------------


async def look_up(db: Db, api_ids: list[str]) -> CatalogueFacts:
    """The facts of the offered APIs among `api_ids`, in the order asked; the others unknown
    (never offered, or withdrawn)."""
    rows = await db.fetch(
        """SELECT c.api_id, c.name, c.is_market_data, c.publication_application_id,
                  coalesce(o.contact_emails, '{}') AS provider_contact_emails
           FROM api_catalogue c
           LEFT JOIN organisations o
             ON o.business_registration_number = c.provider_business_registration_number
           WHERE c.api_id = ANY($1::text[]) AND c.stage <> 'withdrawn'""",
        api_ids,
    )
    found = {r["api_id"]: r for r in rows}
    return CatalogueFacts(
        apis=[
            ApiFacts(
                api_id=r["api_id"],
                name=r["name"],
                is_market_data=r["is_market_data"],
                provider_contact_emails=list(r["provider_contact_emails"]),
                publication_application_id=r["publication_application_id"],
            )
            for api_id in api_ids
            if (r := found.get(api_id))
        ],
        unknown=[api_id for api_id in api_ids if api_id not in found],
    )


async def in_catalogue(db: Db, api_id: str) -> bool:
    """Whether the id names an API in the catalogue, at any stage (withdrawn ones too)."""
    return bool(await db.fetchval("SELECT 1 FROM api_catalogue WHERE api_id = $1", api_id))


async def publish(db: Db, *, application_id: str, api: ApiProposal, provider: str,
                  specification: dict, summary: SpecificationSummary, stage: str) -> bool:
    """The API in the catalogue of `stage` at the specification's version (kept by version);
    True when this version was not yet published at that stage. Raises ApiIdTaken when
    another provider's API holds the id. Run it in a transaction."""
    owner = await db.fetchrow(
        "SELECT publication_application_id FROM api_catalogue WHERE api_id = $1", api.api_id)
    if owner is not None and owner["publication_application_id"] != application_id:
        raise ApiIdTaken(f"api_id {api.api_id} is already in the catalogue for another provider")
    await db.execute(
        """INSERT INTO api_catalogue (api_id, name, category, is_market_data,
               provider_business_registration_number, stage, spec_version,
               integration_method, publication_application_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (api_id) DO UPDATE SET
               stage = excluded.stage, spec_version = excluded.spec_version,
               integration_method = excluded.integration_method, updated_at = now()""",
        api.api_id, api.name, api.category, api.is_market_data, provider, stage,
        summary.version, api.integration_method, application_id,
    )
    return bool(await db.fetchval(
        """INSERT INTO api_versions (api_id, spec_sha256, spec_version, specification, stage)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true""",
        api.api_id, summary.sha256, summary.version, specification, stage,
    ))


async def withdraw(db: Db, application_id: str, api_id: str) -> bool:
    """The publication's API out of the catalogue; True when it was in it until now."""
    return bool(await db.fetchval(
        """UPDATE api_catalogue SET stage = 'withdrawn', updated_at = now()
           WHERE api_id = $1 AND publication_application_id = $2 AND stage <> 'withdrawn'
           RETURNING true""", api_id, application_id))


async def member_company_contacts(db: Db) -> list[str]:
    """The contacts of every member company providing an API in the catalogue."""
    rows = await db.fetch(
        """SELECT DISTINCT unnest(o.contact_emails) AS contact
           FROM organisations o JOIN api_catalogue c
             ON c.provider_business_registration_number = o.business_registration_number
           WHERE c.stage <> 'withdrawn' ORDER BY contact""")
    return [r["contact"] for r in rows]


# --- the staff roster ---------------------------------------------------------------------------


async def staff_roles(db: Db, staff_id: str) -> list[Role]:
    """The roles a member of staff holds, whatever the case of the id given."""
    rows = await db.fetch(
        "SELECT role FROM staff_roles WHERE lower(staff_id) = lower($1) ORDER BY role",
        storable(staff_id),  # with a NUL, nobody's: no roles
    )
    return [Role(r["role"]) for r in rows]


async def staff_holding(db: Db, role: Role) -> list[str]:
    """Everyone holding `role` (a team's reminders go to all of them)."""
    rows = await db.fetch(
        "SELECT staff_id FROM staff_roles WHERE role = $1 ORDER BY staff_id", role.value)
    return [r["staff_id"] for r in rows]
