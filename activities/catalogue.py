"""What the catalogue and the record say, looked up when an application needs it: the facts of
requested APIs, whether a revised specification validates, whether a claimed launch is on
record. Read only; the workflows run them as local activities (and stop 8's workflows, under
the same names and shapes, as regular ones)."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from onboarding.core.config import Settings
from onboarding.domain.admission import specification_too_large
from onboarding.domain.models import (
    CatalogueFacts,
    CatalogueLookup,
    LaunchCheck,
    SpecificationCheck,
    SpecificationSummary,
    SpecificationVerdict,
)
from onboarding.domain.openapi import SpecFindings, check_openapi
from onboarding.store import applications, catalogue


class Catalogue:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool

    @activity.defn
    async def look_up_catalogue(self, lookup: CatalogueLookup) -> CatalogueFacts:
        return await catalogue.look_up(self.pool, lookup.api_ids)

    @activity.defn
    async def check_specification(self, check: SpecificationCheck) -> SpecificationVerdict:
        # A revision is held to the submission's limits, the size included. An activity, not
        # workflow code: a rule changed later must not change how an old history replays.
        if too_large := specification_too_large(check.specification):
            return SpecificationVerdict(summary=None, findings=[f"specification: {too_large}"])
        try:
            # Findings name the decision's field, as at submission (`specification.paths...`).
            summary = check_openapi(check.specification, "specification")
        except SpecFindings as refused:
            return SpecificationVerdict(summary=None, findings=refused.findings)
        return SpecificationVerdict(
            summary=SpecificationSummary(
                openapi_version=summary.openapi_version, title=summary.title,
                version=summary.version, operation_count=summary.operation_count,
                sha256=summary.sha256,
            ),
            findings=[],
        )

    @activity.defn
    async def check_service_launch(self, check: LaunchCheck) -> str:
        """Why the claimed launch is not on record ('' when it is)."""
        return await applications.launch_not_on_record(
            self.pool, check.subscription_application_id, check.api_id)
