"""Applications and the organisations behind them: the rows other systems list (reporting, the
API gateway's operators) without asking Temporal."""

from __future__ import annotations

from typing import Literal

import asyncpg

from onboarding.domain.models import Organisation
from onboarding.store.text import storable

Db = asyncpg.Pool | asyncpg.Connection


async def upsert_organisation(db: Db, org: Organisation) -> None:
    await db.execute(
        """INSERT INTO organisations (business_registration_number,
               corporate_registration_number, legal_name, representative, contact_emails)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (business_registration_number) DO UPDATE SET
               corporate_registration_number = excluded.corporate_registration_number,
               legal_name = excluded.legal_name,
               representative = excluded.representative,
               contact_emails = excluded.contact_emails,
               updated_at = now()""",
        org.business_registration_number, org.corporate_registration_number,
        storable(org.legal_name), storable(org.representative),
        [str(e) for e in org.contact_emails],
    )


async def record(db: Db, *, application_id: str, process: Literal["subscription", "publication"],
                 organisation: Organisation, workflow_id: str, requested_apis: list[str],
                 first_execution_run_id: str | None = None) -> None:
    """The application's row (and its organisation's), written once; a resubmission's APIs
    replace those on record. `first_execution_run_id`: the run that began its workflow."""
    await upsert_organisation(db, organisation)
    await db.execute(
        """INSERT INTO applications (application_id, process, business_registration_number,
               workflow_id, status, current_step, requested_apis, first_execution_run_id)
           VALUES ($1, $2, $3, $4, 'open', 'submitted', $5, $6)
           ON CONFLICT (application_id) DO UPDATE SET
               requested_apis = excluded.requested_apis, updated_at = now()
           WHERE applications.requested_apis <> excluded.requested_apis""",
        application_id, process, organisation.business_registration_number, workflow_id,
        requested_apis, first_execution_run_id,
    )


async def move(db: Db, application_id: str, step: str, status: str | None = None) -> None:
    """The application's current step, and its status when it changes (its end)."""
    await db.execute(
        """UPDATE applications SET current_step = $2, status = coalesce($3, status),
               updated_at = now()
           WHERE application_id = $1""", application_id, step, status)


async def standing(db: Db, application_id: str) -> tuple[str, str] | None:
    """The application's status and current step on record (None when it has no row): what
    its process wrote last, its live service's termination included."""
    row = await db.fetchrow(
        "SELECT status, current_step FROM applications WHERE application_id = $1",
        application_id)
    return (row["status"], row["current_step"]) if row else None


async def open_subscriptions_requesting(db: Db, api_id: str) -> list[str]:
    """The workflow ids of the open subscriptions that requested `api_id`."""
    rows = await db.fetch(
        """SELECT workflow_id FROM applications
           WHERE process = 'subscription' AND status = 'open' AND $1 = ANY(requested_apis)
           ORDER BY workflow_id""", api_id)
    return [r["workflow_id"] for r in rows]


async def launch_not_on_record(db: Db, subscription_application_id: str, api_id: str) -> str:
    """Why the record does not show that subscription live with `api_id` ('' when it does):
    it requested the API and holds an active production key."""
    row = await db.fetchrow(
        """SELECT a.requested_apis, EXISTS (
               SELECT 1 FROM api_keys k WHERE k.application_id = a.application_id
                 AND k.environment = 'production' AND k.status = 'active') AS in_production
           FROM applications a WHERE a.application_id = $1 AND a.process = 'subscription'""",
        subscription_application_id,
    )
    if row is None:
        return f"no subscription application {subscription_application_id}"
    if api_id not in row["requested_apis"]:
        return f"{subscription_application_id} does not use {api_id}"
    if not row["in_production"]:
        return f"{subscription_application_id} has no production key"
    return ""


async def organisation_names(db: Db, numbers: list[str]) -> dict[str, str]:
    """Legal names by business registration number."""
    rows = await db.fetch(
        """SELECT business_registration_number AS n, legal_name FROM organisations
           WHERE business_registration_number = ANY($1::text[])""", numbers)
    return {r["n"].strip(): r["legal_name"] for r in rows}
