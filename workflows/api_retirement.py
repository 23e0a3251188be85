"""A published API retired by its provider: every live service using it told, then on the
retirement date the API leaves the catalogue (each live service takes it out of its keys'
scopes on that date itself: workflows/live_service.py).

A short process of its own (id `api-retirement-<api id>`), started by the provider's decision
(`python -m onboarding.temporal.retirement`): the publication that put the API in the
catalogue has ended by then, and the retirement must outlive no one but its date.

Its input is the decision `retire_api` (onboarding/domain/decisions.py, STARTS), sealed by the
codec server for whoever sent it, like every decision a person takes (docs/identity.md). The
workflow checks it as the application processes check theirs (the `verify_decision` local
activity: the seal, a typed `decided_by` naming the sealer, the sealer a contact of the API's
provider or a service the roster lists as acting for it) and puts the verdict on the audit
log: a refused start retires nothing and fails, naming the reason. Runs started before the
seal (no `api-retirement-sealed` marker) go on checking the typed contact, as they did.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, time
from typing import Any, NoReturn

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.decisions import Decisions
    from activities.live_services import (
        LiveServices,
        RetirementLookup,
        RetirementOnRecord,
        Retiring,
    )
    from onboarding.domain import decisions
    from onboarding.domain.models import ApiRetired, ApiRetirementDecision, Model
    from onboarding.identity.models import DecisionCheck, decision_content
    from onboarding.store.live_services import RetirementFacts

from workflows import versions
from workflows.process import ACTIVITY, LOCAL


class ApiRetirementStart(Model):
    """The input of retirements started before it was sealed (read by their replays)."""

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
    async def run(self, start: RawValue) -> ApiRetirementDone:
        raw: Any = None
        with contextlib.suppress(Exception):  # not readable at all: refused below
            raw = workflow.payload_converter().from_payload(start.payload)
        if versions.patched(versions.RETIREMENT_SEALED):
            api_id, retired_on, decided_by, note, facts = await self.verified(raw)
        else:
            old = ApiRetirementStart.model_validate(raw)
            api_id, retired_on, decided_by, note = (old.api_id, old.retired_on,
                                                    old.decided_by, old.note)
            facts = await self.facts(api_id)
            if decided_by.lower() not in facts.provider_contacts:
                raise ApplicationError(f"decided_by: {decided_by} is not a registered contact "
                                       "of the API's provider [provider]", non_retryable=True)
        me = workflow.info().workflow_id
        told = []
        for live in facts.live_services:
            try:
                await workflow.get_external_workflow_handle(live).signal(
                    decisions.API_RETIRED.name, ApiRetired(
                        decision_id=f"{me}/{retired_on.isoformat()}", decided_by=me,
                        api_id=api_id, retired_on=retired_on, note=note))
            except Exception:  # noqa: BLE001 - that live service has ended meanwhile
                continue
            told.append(live)
        on = datetime.combine(retired_on, time(), UTC)
        if on > workflow.now():
            await workflow.sleep(on - workflow.now(), summary=f"{api_id} retires")
        retired = await workflow.execute_activity_method(
            LiveServices.retire_api, Retiring(api_id=api_id, workflow_id=me,
                                              decided_by=decided_by),
            summary="out of the catalogue", **ACTIVITY)
        return ApiRetirementDone(told=told, retired=retired)

    async def facts(self, api_id: str) -> RetirementFacts:
        facts = await workflow.execute_local_activity_method(
            LiveServices.retirement_facts, RetirementLookup(api_id=api_id),
            summary="who provides the API, and who uses it", **LOCAL)
        if facts is None:
            raise ApplicationError(f"api_id: {api_id} is not in the catalogue [catalogue]",
                                   non_retryable=True)
        return facts

    async def verified(self, raw: Any) -> tuple[str, date, str, str, RetirementFacts]:
        """The sealed decision, checked; a refusal on the audit log, then the run fails."""
        me = workflow.info().workflow_id
        received_at = workflow.info().workflow_start_time  # when Temporal took the start
        claimed = str(raw.get("decided_by") or "") if isinstance(raw, dict) else ""
        api_id = str(raw.get("api_id") or "") if isinstance(raw, dict) else ""
        try:
            d = ApiRetirementDecision.model_validate(raw)
        except ValidationError as err:
            await self.refuse(api_id, claimed, "malformed retire_api: " + "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']} [{e['type']}]"
                for e in err.errors()))
        # One retirement per API: its id names it. The seal binds the id (the verification
        # below refuses one sealed for another), the decision its application_id.
        if d.application_id != f"api-retirement-{d.api_id}":
            await self.refuse(d.api_id, claimed, f"application_id: {d.application_id} is not "
                              f"api-retirement-{d.api_id}, the API's retirement [api_id]")
        facts = await workflow.execute_local_activity_method(
            LiveServices.retirement_facts, RetirementLookup(api_id=d.api_id),
            summary="who provides the API, and who uses it", **LOCAL)
        if facts is None:
            await self.refuse(d.api_id, claimed,
                              f"api_id: {d.api_id} is not in the catalogue [catalogue]")
        verdict = await workflow.execute_local_activity_method(
            Decisions.verify_decision, DecisionCheck(
                application_id=me, organisation=facts.provider,
                decision=decisions.RETIRE_API.name, decision_id=d.decision_id,
                content=decision_content(d), attestation=d.attestation,
                role=decisions.RETIRE_API.taken_by.value,
                applicant_contacts=facts.provider_contacts, received_at=received_at,
                decided_by=d.decided_by),
            summary="verify retire_api", **LOCAL)
        if verdict.reason:
            shown = verdict.person or f"{claimed or 'unknown'} (not verified)"
            await self.refuse(d.api_id, shown, verdict.reason.replace(
                "a registered contact of the applicant", "a registered contact of the API's "
                "provider"), identity=verdict.identity)
        person = verdict.person or ""
        await workflow.execute_activity_method(
            LiveServices.record_retirement, RetirementOnRecord(
                workflow_id=me, run_id=workflow.info().run_id, api_id=d.api_id, actor=person,
                result="applied", details={
                    "retired_on": d.retired_on.isoformat(), "note": d.note,
                    "decision_id": d.decision_id,
                    "identity": verdict.identity.model_dump(mode="json")
                    if verdict.identity else None}),
            summary="retire_api on the record", **ACTIVITY)
        return d.api_id, d.retired_on, person, d.note, facts

    async def refuse(self, api_id: str, actor: str, reason: str,
                     identity: Any = None) -> NoReturn:
        me = workflow.info().workflow_id
        await workflow.execute_activity_method(
            LiveServices.record_retirement, RetirementOnRecord(
                workflow_id=me, run_id=workflow.info().run_id, api_id=api_id,
                actor=actor or "unknown (not verified)", result="refused", reason=reason,
                details={"identity": identity.model_dump(mode="json") if identity else None}),
            summary="retire_api refused, on the record", **ACTIVITY)
        raise ApplicationError(f"retire_api refused: {reason}", non_retryable=True)
