"""Stop 8 (e1bc065), frozen, for the applications it started: see workflows/legacy/__init__.py.

A member company's publication application: its API from pre-review to production.

The operator's procedure for providers (docs/domain.md, The operator's procedure):

1. pre-review: the platform team agrees the integration method and the API specification
   (with request-changes loops: the provider sends a revised specification);
2. API testing: the provider reports its test results, the platform team approves, rejects
   or asks for more testing;
3. sandbox publication: the API enters the sandbox catalogue at its specification's version,
   member companies are told, and subscriptions may request it from then on;
4. production: the API waits in the sandbox, for months if need be, until a subscription
   that uses it reaches production; that subscription's workflow tells this one, the claim is
   checked against the record, and the API is published to production.

The provider may withdraw before production: the API leaves the catalogue and the open
subscriptions that requested it are told. Decisions, deadlines and the record work as in the
subscription process (`workflows/procedure.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from onboarding.domain.models import (
        LaunchCheck,
        PublicationApplication,
        Role,
        SpecificationCheck,
        SpecificationVerdict,
    )
    from workflows.legacy.models import (
        ApiPublication,
        ApiTestReport,
        ApiTestingDecision,
        ApiWithdrawal,
        ApiWithdrawn,
        ApplicationStatus,
        Decision,
        DecisionOutcome,
        OpenSubscriptions,
        PreReviewDecision,
        PublicationRecord,
        RevisedSpecification,
        ServiceLaunched,
        Withdrawal,
    )

from workflows.legacy.procedure import (
    ACTIVITY,
    ApplicationEnded,
    Procedure,
    always,
    needs_note_unless_approved,
)


class Step:
    PRE_REVIEW = "pre_review"
    CHANGES_REQUESTED = "specification_changes_requested"
    API_TESTING = "api_testing"
    API_TEST_REVIEW = "api_test_review"
    SANDBOX_PUBLICATION = "sandbox_publication"
    WAITING_FOR_SERVICE = "in_sandbox_waiting_for_service"
    IN_PRODUCTION = "in_production"


@workflow.defn(name="PublicationApplication")
class PublicationWorkflow:
    @workflow.init
    def __init__(self, application: PublicationApplication) -> None:
        self.application = application
        self.procedure = Procedure.for_application("publication", application)
        self.in_catalogue = False
        # Set by _spec_is_valid for the revision it has just accepted.
        self._revised_summary = application.specification_summary

    @workflow.run
    async def run(self, application: PublicationApplication) -> ApplicationStatus:
        p = self.procedure
        await workflow.execute_activity(
            "record_publication", PublicationRecord(application=application, workflow_id=workflow.info().workflow_id),
            **ACTIVITY,
        )
        await p.enter("submitted")
        await p.notify("received", "publication_received", self._context(),
                       recipients=p.applicant_contacts)
        try:
            await self.pre_review()
            await self.api_testing()
            await self.sandbox_publication()
            await self.production()
        except ApplicationEnded as ended:
            await self.end(ended)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return p.status()

    # --- the four steps ----------------------------------------------------------------------

    async def pre_review(self) -> None:
        p = self.procedure
        while True:
            d = await p.wait_for(Step.PRE_REVIEW, Role.PLATFORM_TEAM,
                                    {"pre_review": needs_note_unless_approved})
            assert isinstance(d, PreReviewDecision)
            if d.outcome == "approve":
                return
            if d.outcome == "reject":
                raise ApplicationEnded("rejected", Step.PRE_REVIEW, d.decided_by, d.note)
            await p.notify(f"changes/{d.decision_id}", "changes_requested",
                           {"step": Step.PRE_REVIEW, "note": d.note},
                           recipients=p.applicant_contacts)
            r = await p.wait_for(Step.CHANGES_REQUESTED, Role.APPLICANT,
                                    {"revise_specification": always})
            assert isinstance(r, RevisedSpecification)
            # _spec_is_valid stored the revised document's summary when it checked it.
            self.application = self.application.model_copy(update={
                "api": self.application.api.model_copy(
                    update={"integration_method": r.integration_method}),
                "specification": r.specification,
                "specification_summary": self._revised_summary,
            })

    async def api_testing(self) -> None:
        p = self.procedure
        while True:
            await p.wait_for(Step.API_TESTING, Role.APPLICANT, {"api_test_report": always})
            d = await p.wait_for(Step.API_TEST_REVIEW, Role.PLATFORM_TEAM,
                                    {"api_testing": needs_note_unless_approved})
            assert isinstance(d, ApiTestingDecision)
            if d.outcome == "approve":
                return
            if d.outcome == "reject":
                raise ApplicationEnded("rejected", Step.API_TEST_REVIEW, d.decided_by, d.note)
            await p.notify(f"more-testing/{d.decision_id}", "api_more_testing_requested",
                           {"note": d.note}, recipients=p.applicant_contacts)

    async def sandbox_publication(self) -> None:
        try:
            await self._publish("sandbox")
        except ActivityError as err:
            # Another provider's API took the id since submission: the application cannot
            # go on, and must end on the record rather than fail.
            reason = Procedure.activity_failure(err)
            raise ApplicationEnded("rejected", Step.SANDBOX_PUBLICATION, "platform",
                                   reason) from None

    async def production(self) -> None:
        p = self.procedure
        # Months may pass: no reminders, nobody to chase; a subscription's launch ends the wait.
        d = await p.wait_for(Step.WAITING_FOR_SERVICE, Role.PLATFORM_WORKFLOW,
                                {"service_launched": always}, with_deadlines=False)
        assert isinstance(d, ServiceLaunched)
        # From here a real service depends on the API: a withdrawal comes too late.
        p.close("in_production")
        await self._publish("production")
        await p.finish("in_production", Step.IN_PRODUCTION)

    async def end(self, ended: ApplicationEnded) -> None:
        p = self.procedure
        p.outcome = ended.how  # decisions arriving from now on are refused, not applied
        api_id = self.application.api.api_id
        if self.in_catalogue:
            subscriptions = await workflow.execute_activity(
                "withdraw_api", ApiWithdrawal(application_id=p.application_id, api_id=api_id),
                result_type=OpenSubscriptions, **ACTIVITY,
            )
            for workflow_id in subscriptions.workflow_ids:
                await self._tell_subscription(workflow_id, api_id)
        template = {"rejected": "application_rejected", "withdrawn": "publication_withdrawn",
                    "lapsed": "publication_lapsed"}[ended.how]
        await p.notify(ended.how, template,
                       {**self._context(), "step": ended.step, "note": ended.note,
                        "days": str(self.application.deadlines.lapse_after_days)},
                       recipients=p.applicant_contacts)
        await p.finish(ended.how, ended.how)

    # --- helpers -----------------------------------------------------------------------------

    def _context(self) -> dict[str, str]:
        return {"api": self.application.api.name, "service": self.application.api.name,
                "version": self.application.specification_summary.version}

    async def _publish(self, stage: str) -> None:
        p = self.procedure
        await workflow.execute_activity(
            "publish_api", ApiPublication(
                application_id=p.application_id,
                api=self.application.api,
                provider_business_registration_number=p.organisation_id,
                specification=self.application.specification,
                specification_summary=self.application.specification_summary,
                stage=stage,  # type: ignore[arg-type]
            ),
            summary=f"publish to {stage}",
            **ACTIVITY,
        )
        self.in_catalogue = True
        context = {**self._context(), "stage": stage}
        await p.notify(f"published/{stage}", "api_published", context,
                       recipients=p.applicant_contacts)
        await p.notify(f"member-notice/{stage}", "member_notice_api_published", context,
                       to_member_companies=True)

    async def _tell_subscription(self, workflow_id: str, api_id: str) -> None:
        p = self.procedure
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal(
                "api_withdrawn",
                ApiWithdrawn(decision_id=f"{p.application_id}/withdrawn",
                             decided_by=p.application_id, api_id=api_id),
            )
        except Exception as err:  # it may have ended meanwhile: nothing to tell
            await p.record("api_withdrawal_not_delivered", "failed", reason=str(err),
                           details={"subscription": workflow_id})
        else:
            await p.record("api_withdrawal_told", "succeeded",
                           details={"subscription": workflow_id})

    # --- checks that need the world ----------------------------------------------------------

    async def _spec_is_valid(self, d: Decision) -> str | None:
        assert isinstance(d, RevisedSpecification)
        verdict = await workflow.execute_activity(
            "check_specification", SpecificationCheck(specification=d.specification),
            result_type=SpecificationVerdict, **ACTIVITY,
        )
        if verdict.summary is None:
            return "the specification does not validate: " + "; ".join(verdict.findings)
        self._revised_summary = verdict.summary
        return None

    async def _launch_on_record(self, d: Decision) -> str | None:
        assert isinstance(d, ServiceLaunched)
        if d.api_id != self.application.api.api_id:
            return f"this application publishes {self.application.api.api_id}, not {d.api_id}"
        reason = await workflow.execute_activity(
            "check_service_launch", LaunchCheck(subscription_application_id=d.subscription_application_id,
                        api_id=d.api_id),
            result_type=str, **ACTIVITY,
        )
        return reason or None

    # --- signals and updates: one of each per decision, same name, same payload ---------------

    async def _decide(self, kind: str, d: Decision) -> DecisionOutcome:
        extra = {"revise_specification": self._spec_is_valid,
                 "service_launched": self._launch_on_record}.get(kind)
        return await self.procedure.decide(kind, d, _ROLES[kind], extra)

    @workflow.signal(name="pre_review", description="Platform team: integration method and specification agreed (approve), reject, or request_changes.")
    async def pre_review_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("pre_review", PreReviewDecision, payload):
            await self._decide("pre_review", d)

    @workflow.update(name="pre_review")
    async def pre_review_update(self, d: PreReviewDecision) -> DecisionOutcome:
        return await self._decide("pre_review", d)

    @pre_review_update.validator
    def _v_pre_review(self, d: PreReviewDecision) -> None:
        self.procedure.validate("pre_review", d)

    @workflow.signal(name="revise_specification", description="Provider: the revised integration method and OpenAPI specification.")
    async def revise_specification_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("revise_specification", RevisedSpecification, payload):
            await self._decide("revise_specification", d)

    @workflow.update(name="revise_specification")
    async def revise_specification_update(self, d: RevisedSpecification) -> DecisionOutcome:
        return await self._decide("revise_specification", d)

    @revise_specification_update.validator
    def _v_revise_specification(self, d: RevisedSpecification) -> None:
        self.procedure.validate("revise_specification", d)

    @workflow.signal(name="api_test_report", description="Provider: API test results.")
    async def api_test_report_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("api_test_report", ApiTestReport, payload):
            await self._decide("api_test_report", d)

    @workflow.update(name="api_test_report")
    async def api_test_report_update(self, d: ApiTestReport) -> DecisionOutcome:
        return await self._decide("api_test_report", d)

    @api_test_report_update.validator
    def _v_api_test_report(self, d: ApiTestReport) -> None:
        self.procedure.validate("api_test_report", d)

    @workflow.signal(name="api_testing", description="Platform team: API test results approve, reject or more_testing.")
    async def api_testing_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("api_testing", ApiTestingDecision, payload):
            await self._decide("api_testing", d)

    @workflow.update(name="api_testing")
    async def api_testing_update(self, d: ApiTestingDecision) -> DecisionOutcome:
        return await self._decide("api_testing", d)

    @api_testing_update.validator
    def _v_api_testing(self, d: ApiTestingDecision) -> None:
        self.procedure.validate("api_testing", d)

    @workflow.signal(name="service_launched", description="Sent by a subscription workflow that reached production using this API.")
    async def service_launched_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("service_launched", ServiceLaunched, payload):
            await self._decide("service_launched", d)

    @workflow.signal(dynamic=True, description="Any other signal: not a decision of this process, refused on the record.")
    async def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        await self.procedure.refuse_unknown_signal(name, args)

    @workflow.signal(name="withdraw", description="Provider: withdraw the API before production; it leaves the catalogue.")
    async def withdraw_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("withdraw", Withdrawal, payload):
            await self._decide("withdraw", d)

    @workflow.update(name="withdraw")
    async def withdraw_update(self, d: Withdrawal) -> DecisionOutcome:
        return await self._decide("withdraw", d)

    @withdraw_update.validator
    def _v_withdraw(self, d: Withdrawal) -> None:
        self.procedure.validate("withdraw", d)

    @workflow.query(name="status", description="Current step, whom it waits on and since when, deadlines and every decision.")
    def status(self) -> ApplicationStatus:
        return self.procedure.status()


_ROLES: dict[str, Role] = {
    "pre_review": Role.PLATFORM_TEAM,
    "revise_specification": Role.APPLICANT,
    "api_test_report": Role.APPLICANT,
    "api_testing": Role.PLATFORM_TEAM,
    "service_launched": Role.PLATFORM_WORKFLOW,
    "withdraw": Role.APPLICANT,
}
