"""A published API retired by its provider: every live service using it told, then on the
retirement date the API leaves the catalogue (each live service takes it out of its keys'
scopes on that date itself: workflows/live_service.py).

A short process of its own (id `api-retirement-<api id>`), started by the provider's decision
(`python -m onboarding.temporal.retirement`): the publication that put the API in the
catalogue has ended by then, and the retirement must outlive no one but its date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.live_services import LiveServices, RetirementLookup, Retiring
    from onboarding.domain import decisions
    from onboarding.domain.models import ApiRetired, Model

from workflows.process import ACTIVITY, LOCAL


class ApiRetirementStart(Model):
    api_id: str
    retired_on: date
    decided_by: str  # a contact of the API's provider
    note: str = ""


class ApiRetirementDone(Model):
    told: list[str]
    retired: bool


@workflow.defn(name="ApiRetirement")
class ApiRetirementWorkflow:
    @workflow.run
    async def run(self, start: ApiRetirementStart) -> ApiRetirementDone:
        facts = await workflow.execute_local_activity_method(
            LiveServices.retirement_facts, RetirementLookup(api_id=start.api_id),
            summary="who provides the API, and who uses it", **LOCAL)
        if facts is None:
            raise ApplicationError(f"api_id: {start.api_id} is not in the catalogue [catalogue]",
                                   non_retryable=True)
        if start.decided_by.lower() not in facts.provider_contacts:
            raise ApplicationError(f"decided_by: {start.decided_by} is not a registered contact "
                                   "of the API's provider [provider]", non_retryable=True)
        me = workflow.info().workflow_id
        told = []
        for live in facts.live_services:
            try:
                await workflow.get_external_workflow_handle(live).signal(
                    decisions.API_RETIRED.name, ApiRetired(
                        decision_id=f"{me}/{start.retired_on.isoformat()}", decided_by=me,
                        api_id=start.api_id, retired_on=start.retired_on, note=start.note))
            except Exception:  # noqa: BLE001 - that live service has ended meanwhile
                continue
            told.append(live)
        on = datetime.combine(start.retired_on, time(), UTC)
        if on > workflow.now():
            await workflow.sleep(on - workflow.now(), summary=f"{start.api_id} retires")
        retired = await workflow.execute_activity_method(
            LiveServices.retire_api, Retiring(api_id=start.api_id, workflow_id=me,
                                              decided_by=start.decided_by),
            summary="out of the catalogue", **ACTIVITY)
        return ApiRetirementDone(told=told, retired=retired)
