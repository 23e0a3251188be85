"""Live services on record: what an application in production holds (its keys, APIs, licence and
contracts), and which applications in production have no live service yet (the migration)."""

from __future__ import annotations

import asyncpg

from onboarding.domain.models import LiveServiceFacts, Model, WatchedContract
from onboarding.store import catalogue
from onboarding.store.keys import of_application

Db = asyncpg.Pool | asyncpg.Connection


async def facts(db: Db, application_id: str) -> LiveServiceFacts:
    app = await db.fetchrow(
        """SELECT a.business_registration_number AS brn, a.requested_apis, o.legal_name,
                  o.contact_emails,
                  coalesce((SELECT n.context->>'service' FROM notices n
                            WHERE n.application_id = a.application_id
                              AND n.context ? 'service'
                            ORDER BY n.created_at LIMIT 1), '') AS service_name
           FROM applications a
           JOIN organisations o USING (business_registration_number)
           WHERE a.application_id = $1""", application_id)
    if app is None:
        raise LookupError(f"application {application_id} is not on record")
    apis = await catalogue.look_up(db, list(app["requested_apis"]))
    # The latest of each: the application's platform and service contracts; the
    # organisation's market-data licence when the service uses market data.
    rows = await db.fetch(
        """SELECT DISTINCT ON (contract_type) contract_type, contract_number, valid_until
           FROM contracts
           WHERE (application_id = $1 AND contract_type IN ('platform', 'service'))
              OR (business_registration_number = $2 AND contract_type = 'market_data_licence'
                  AND $3)
           ORDER BY contract_type, valid_until DESC, contract_id DESC""",
        application_id, app["brn"], any(a.is_market_data for a in apis.apis))
    generations: dict[str, int] = {}
    for r in await db.fetch("SELECT environment, issuance_id FROM api_keys WHERE application_id = $1",
                            application_id):
        tail = r["issuance_id"].rsplit("/", 1)[-1]
        generation = int(tail) if tail.isdigit() else 0
        generations[r["environment"]] = max(generations.get(r["environment"], 0), generation)
    return LiveServiceFacts(
        generations=generations,
        organisation_name=app["legal_name"], contacts=[e.lower() for e in app["contact_emails"]],
        service_name=app["service_name"], apis=apis.apis,
        keys=[k for k in await of_application(db, application_id) if k.status == "active"],
        contracts=[WatchedContract(**dict(r)) for r in rows])


class InProduction(Model):
    application_id: str
    workflow_id: str
    business_registration_number: str
    language: str


async def unwatched_in_production(db: Db) -> list[InProduction]:
    """Every subscription in production holding an active key that no live service owns (the
    migration starts their live services), with the language of its notices."""
    rows = await db.fetch(
        """SELECT a.application_id, a.workflow_id, a.business_registration_number,
                  coalesce((SELECT n.language FROM notices n
                            WHERE n.application_id = a.application_id
                            ORDER BY n.created_at LIMIT 1), 'ko') AS language
           FROM applications a
           WHERE a.process = 'subscription' AND a.status = 'in_production'
             AND EXISTS (SELECT 1 FROM api_keys k
                         WHERE k.application_id = a.application_id AND k.status = 'active'
                           AND k.owner_workflow_id IS NULL)
           ORDER BY a.application_id""")
    return [InProduction(**dict(r)) for r in rows]


class RetirementFacts(Model):
    """Who provides an API, and the live services whose keys grant it."""

    provider_contacts: list[str]
    live_services: list[str]  # workflow ids
    # Its business registration number (a service acts for it where service_mandates says).
    provider: str = ""


async def retirement_facts(db: Db, api_id: str) -> RetirementFacts | None:
    """None when the API is not in the catalogue (or withdrawn already)."""
    row = await db.fetchrow(
        """SELECT o.contact_emails, o.business_registration_number FROM api_catalogue c
           JOIN organisations o
             ON o.business_registration_number = c.provider_business_registration_number
           WHERE c.api_id = $1 AND c.stage <> 'withdrawn'""", api_id)
    if row is None:
        return None
    contacts = row["contact_emails"]
    rows = await db.fetch(
        """SELECT DISTINCT owner_workflow_id FROM api_keys
           WHERE status = 'active' AND $1 = ANY(scopes) AND owner_workflow_id LIKE 'live-service-%'
           ORDER BY owner_workflow_id""", api_id)
    return RetirementFacts(provider_contacts=[c.lower() for c in contacts],
                           live_services=[r["owner_workflow_id"] for r in rows],
                           provider=row["business_registration_number"].strip())


async def retire(db: Db, api_id: str) -> bool:
    """The API out of the catalogue (retired by its provider); True when it was in it."""
    return bool(await db.fetchval(
        """UPDATE api_catalogue SET stage = 'withdrawn', updated_at = now()
           WHERE api_id = $1 AND stage <> 'withdrawn' RETURNING true""", api_id))


async def market_data_services(db: Db, business_registration_number: str,
                               except_workflow_id: str) -> list[str]:
    """The workflow ids of the organisation's live services (but `except_workflow_id`) whose
    active keys grant a market-data API: those a lapse of its licence suspended."""
    rows = await db.fetch(
        """SELECT DISTINCT k.owner_workflow_id FROM api_keys k
           WHERE k.business_registration_number = $1 AND k.status = 'active'
             AND k.owner_workflow_id LIKE 'live-service-%' AND k.owner_workflow_id <> $2
             AND k.scopes && ARRAY(SELECT api_id FROM api_catalogue WHERE is_market_data)
           ORDER BY k.owner_workflow_id""", business_registration_number, except_workflow_id)
    return [r["owner_workflow_id"] for r in rows]


async def retirement_on_record(db: Db, workflow_id: str, api_id: str) -> str:
    """The date (ISO) the retirement `workflow_id` took for `api_id` on the audit log, its
    provider's sealed `retire_api` applied ('' when there is none)."""
    return await db.fetchval(
        """SELECT details->>'retired_on' FROM audit_log
           WHERE application_id IS NULL AND workflow_id = $1 AND action = 'retire_api'
             AND result = 'applied' AND details->>'api_id' = $2
           ORDER BY seq DESC LIMIT 1""", workflow_id, api_id) or ""
