"""What the record says of an application in production, for its live service to watch (a
local activity, read only: workflows/live_service.py)."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from onboarding.core.config import Settings
from onboarding.domain.models import LiveServiceFacts, Model
from onboarding.store import live_services


class LiveServiceLookup(Model):
    application_id: str


class LiveServices:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool

    @activity.defn
    async def live_service_facts(self, lookup: LiveServiceLookup) -> LiveServiceFacts:
        return await live_services.facts(self.pool, lookup.application_id)
