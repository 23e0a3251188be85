"""Admission: the first thing an application's workflow does, whoever started it (a service with
the `temporal` CLI as much as starter.py). The same rules as at submission, in one
implementation (onboarding/domain/admission.py and onboarding/store/admission.py), run as a
local activity: the verdict is one marker in the history, so that a rule changed later never
changes how an old history replays. Read only. A subscription admitted also gets what the
catalogue says of the APIs it requests, in the same local activity (`catalogue`).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio import activity

from onboarding.core.config import Settings
from onboarding.domain import admission
from onboarding.domain.models import (
    CatalogueFacts,
    Model,
    Organisation,
    Process,
    Refusal,
    SpecificationSummary,
)
from onboarding.store import admission as on_record
from onboarding.store import catalogue


class AdmissionCheck(Model):
    process: Process
    application: Any  # the workflow's input as it came (JSON), what a run carries left out
    workflow_id: str
    first_execution_run_id: str
    cron_schedule: str = ""
    catalogue: bool = False  # admitted, look up the requested APIs in the catalogue too


class AdmissionVerdict(Model):
    """Every refusal (none: admitted), and what admission recomputed: the numbers normalised,
    the reviewer's flags, a publication's specification summary. `contacts`: the valid
    addresses of the input, whom to tell of a refusal."""

    refusals: list[Refusal]
    contacts: list[str] = []
    organisation: Organisation | None = None
    reviewer_flags: list[str] = []
    specification_summary: SpecificationSummary | None = None
    catalogue: CatalogueFacts | None = None  # when asked, and admitted


class Admissions:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool

    @activity.defn
    async def admit_application(self, check: AdmissionCheck) -> AdmissionVerdict:
        found = admission.admit(check.process, check.application, check.workflow_id)
        refusals = list(found.refusals)
        if check.cron_schedule:
            refusals.append(Refusal("(workflow)", "cron_schedule",
                                    "an application's workflow is not started on a cron schedule"))
        raw = check.application if isinstance(check.application, dict) else {}
        api = raw.get("api") if isinstance(raw.get("api"), dict) else {}
        requested = raw.get("requested_apis") if check.process == "subscription" else None
        refusals += await self.on_record(
            requested_apis=requested if isinstance(requested, list) else [],
            proposed_api=api.get("api_id") if isinstance(api.get("api_id"), str) else None,
            application_id=check.workflow_id,
            first_execution_run_id=check.first_execution_run_id)
        application = found.application
        if refusals or application is None:
            return AdmissionVerdict(refusals=refusals[:admission.MAX_REFUSALS],
                                    contacts=found.contacts)
        return AdmissionVerdict(
            refusals=[], contacts=found.contacts, organisation=application.organisation,
            reviewer_flags=application.reviewer_flags,
            specification_summary=getattr(application, "specification_summary", None),
            catalogue=await self.look_up(requested) if check.catalogue and requested else None)

    async def look_up(self, api_ids: list[str]) -> CatalogueFacts:
        return await catalogue.look_up(self.pool, api_ids)

    async def on_record(self, **what: Any) -> list[Refusal]:
        """What the record refuses (onboarding/store/admission.py)."""
        return await on_record.refusals(self.pool, **what)
