"""The roster on verified identities (migration 0010): staff by issuer + subject, services by
the organisations they may act for. Applicant contacts are on the application itself, matched
by verified e-mail (onboarding.identity.decisions)."""

from __future__ import annotations

import asyncpg

from onboarding.identity.models import IdentityRef


async def staff_roles(conn: asyncpg.Connection | asyncpg.Pool, person: IdentityRef) -> list[str]:
    """The roles of the staff member enrolled with this identity; [] for anyone else."""
    rows = await conn.fetch(
        """SELECT r.role FROM staff_identities i
           JOIN staff_roles r ON lower(r.staff_id) = lower(i.staff_id)
           WHERE i.issuer = $1 AND i.subject = $2 ORDER BY r.role""",
        person.issuer, person.subject)
    return [r["role"] for r in rows]


async def staff_identity(conn: asyncpg.Connection | asyncpg.Pool, person: IdentityRef
                         ) -> str | None:
    """The staff id (e-mail address) of the staff member enrolled with this identity."""
    return await conn.fetchval(
        "SELECT staff_id FROM staff_identities WHERE issuer = $1 AND subject = $2",
        person.issuer, person.subject)


async def enrol_staff(conn: asyncpg.Connection | asyncpg.Pool, staff_id: str,
                      person: IdentityRef) -> None:
    """Tie a staff id to the provider's identity for them (idempotent)."""
    await conn.execute(
        """INSERT INTO staff_identities (staff_id, issuer, subject) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""", staff_id, person.issuer, person.subject)


async def acts_for(conn: asyncpg.Connection | asyncpg.Pool, issuer: str, client_id: str,
                   organisation: str) -> bool:
    return bool(await conn.fetchval(
        """SELECT 1 FROM service_mandates WHERE issuer = $1 AND client_id = $2
           AND business_registration_number = $3""", issuer, client_id, organisation))


async def grant_mandate(conn: asyncpg.Connection | asyncpg.Pool, issuer: str, client_id: str,
                        organisation: str) -> None:
    await conn.execute(
        """INSERT INTO service_mandates (issuer, client_id, business_registration_number)
           VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""", issuer, client_id, organisation)


class PoolRoster:
    """onboarding.identity.decisions.Roster on the platform's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def staff_roles(self, person: IdentityRef) -> list[str]:
        return await staff_roles(self._pool, person)

    async def acts_for(self, issuer: str, client_id: str, organisation: str) -> bool:
        return await acts_for(self._pool, issuer, client_id, organisation)

    async def staff_id(self, person: IdentityRef) -> str | None:
        return await staff_identity(self._pool, person)
