"""What the record says of an application in production, for its live service to watch (a
local activity, read only: workflows/live_service.py); an API's retirement by its provider
(workflows/api_retirement.py): who may retire it and whom to tell, then out of the catalogue."""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio import activity

from onboarding.core.config import Settings
from onboarding.domain.models import LiveServiceFacts, Model
from onboarding.store import audit, live_services
from onboarding.store.live_services import RetirementFacts


class LiveServiceLookup(Model):
    application_id: str


class RetirementLookup(Model):
    api_id: str


class Retiring(Model):
    api_id: str
    workflow_id: str
    decided_by: str


class OrganisationServices(Model):
    business_registration_number: str
    except_workflow_id: str


class RetirementOnRecord(Model):
    """A retirement's start on the audit log: applied (who sealed it) or refused (why)."""

    workflow_id: str
    run_id: str
    api_id: str
    actor: str
    result: str  # applied | refused
    reason: str = ""
    details: dict[str, Any] = {}


class RetirementCheck(Model):
    workflow_id: str  # the ApiRetirement process that says it retires the API
    api_id: str


class LiveServices:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool

    @activity.defn
    async def live_service_facts(self, lookup: LiveServiceLookup) -> LiveServiceFacts:
        return await live_services.facts(self.pool, lookup.application_id)

    @activity.defn
    async def market_data_services(self, lookup: OrganisationServices) -> list[str]:
        """The organisation's other live services using market data (to hear of its licence
        renewed)."""
        return await live_services.market_data_services(
            self.pool, lookup.business_registration_number, lookup.except_workflow_id)

    @activity.defn
    async def retirement_facts(self, lookup: RetirementLookup) -> RetirementFacts | None:
        return await live_services.retirement_facts(self.pool, lookup.api_id)

    @activity.defn
    async def retirement_on_record(self, check: RetirementCheck) -> str:
        """The date a retirement of the API took on the record ('' when none did)."""
        return await live_services.retirement_on_record(self.pool, check.workflow_id,
                                                        check.api_id)

    @activity.defn
    async def record_retirement(self, entry: RetirementOnRecord) -> None:
        """Once per run (a retry writes the same line)."""
        await audit.append(self.pool, [audit.Entry(
            entry_id=f"{entry.workflow_id}/{entry.run_id}/retire_api",
            application_id=None, workflow_id=entry.workflow_id,
            action="retire_api", result=entry.result,  # type: ignore[arg-type]
            actor=entry.actor, reason=entry.reason,
            details={"api_id": entry.api_id, **entry.details})])

    @activity.defn
    async def retire_api(self, retirement: Retiring) -> bool:
        """The API out of the catalogue, audited once (a retry finds it withdrawn)."""
        async with self.pool.acquire() as conn, conn.transaction():
            retired = await live_services.retire(conn, retirement.api_id)
            await audit.append(conn, [audit.Entry(
                entry_id=f"{retirement.workflow_id}/retired", application_id=None,
                workflow_id=retirement.workflow_id, action="api_retired_from_catalogue",
                result="succeeded", actor=retirement.decided_by,
                details={"api_id": retirement.api_id, "was_in_catalogue": retired})])
        return retired

