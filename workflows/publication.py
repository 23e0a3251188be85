"""A member company's publication application: its API from pre-review to production.

The operator's procedure for providers (docs/domain.md, The operator's procedure), one step
method each:

1. pre-review: the platform team agrees the integration method and the API specification
   (with request-changes loops: the provider sends a revised specification);
2. API testing: the provider reports its test results, the platform team reviews them and
   approves, rejects or asks for more testing;
3. sandbox publication: the API enters the sandbox catalogue at its specification's version,
   member companies are told, and subscriptions may request it from then on;
4. production: the API waits in the sandbox, for months if need be, until a subscription
   that uses it reaches production; that subscription's workflow tells this one, the claim is
   checked against the record, and the API is published to production.

The provider may withdraw before production: the API leaves the catalogue and the open
subscriptions that requested it are told. Decisions, deadlines and the record are the
process's (workflows/process.py).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from activities.catalogue import Catalogue
    from onboarding.domain import decisions
    from onboarding.domain.models import (
        ApiWithdrawn,
        ApplicationStatus,
        LaunchCheck,
        PublicationApplication,
        RevisedSpecification,
        ServiceLaunched,
        SpecificationCheck,
        SpecificationSummary,
    )
    from onboarding.domain.runs import Start
    from onboarding.domain.state import ProcessState, PublicationState
    # Stop 8's frozen code: it ran sandboxed for stop 8 and never changes; loaded once, not
    # for every run.
    from workflows.legacy import Legacy
    from workflows.legacy.publication import PublicationWorkflow as Stop8

from workflows import versions
from workflows.handlers import takes_decisions
from workflows.process import LOCAL, Ending, Next, Process, begin


class Step:
    ADMISSION = "admission"
    SUBMITTED = "submitted"
    PRE_REVIEW = "pre_review"
    CHANGES_REQUESTED = "specification_changes_requested"
    API_TESTING = "api_testing"
    API_TEST_REVIEW = "api_test_review"
    SANDBOX_PUBLICATION = "sandbox_publication"
    WAITING_FOR_SERVICE = "in_sandbox_waiting_for_service"


ENDING_NOTICE = {"rejected": "application_rejected", "withdrawn": "publication_withdrawn",
                 "lapsed": "publication_lapsed"}


@workflow.defn(name="PublicationApplication")
@takes_decisions(decisions.PUBLICATION)
class PublicationWorkflow:
    @workflow.init
    def __init__(self, start: RawValue) -> None:
        # Taken raw, as the subscription's (workflows/subscription.py).
        self.legacy = None
        if not versions.patched(versions.PROCESS_V2):  # begun by stop 8: its code goes on
            self.legacy = Legacy(Stop8, workflow.payload_converter().from_payload(
                start.payload, PublicationApplication), self.moved)
            return
        self.state: ProcessState
        read, self.state = begin(start, PublicationApplication, PublicationState,
                                 "publication", Step.ADMISSION)
        self.process = Process(self.state, decisions.PUBLICATION,
                               resumed=read.continued is not None)
        # The input as it came is admission's alone, and a run continued as new is not
        # admitted: not kept for the weeks the application waits (`admission` drops it).
        self.start: Start | None = read if read.continued is None else None
        # A revised specification's summary, by decision id (its check found it valid).
        self.validated: dict[str, SpecificationSummary] = {}

    @workflow.run
    async def run(self, start: RawValue) -> ApplicationStatus:
        if self.legacy is not None and (ended := await self.legacy.run()) is not None:
            return ended
        return await self.process.run({
            Step.ADMISSION: self.admission,
            Step.SUBMITTED: self.submitted,
            Step.PRE_REVIEW: self.pre_review,
            Step.CHANGES_REQUESTED: self.changes_requested,
            Step.API_TESTING: self.api_testing,
            Step.API_TEST_REVIEW: self.api_test_review,
            Step.SANDBOX_PUBLICATION: self.sandbox_publication,
            Step.WAITING_FOR_SERVICE: self.waiting_for_service,
        }, end_early=self.end_early)

    def moved(self, carried: dict) -> None:
        """An application stop 8 began goes on in v2 (Process.moved_from_stop_8)."""
        self.state = PublicationState.model_validate(carried)
        self.process = Process.moved_from_stop_8(self.state, decisions.PUBLICATION)
        self.legacy = None

    # --- the procedure -------------------------------------------------------------------

    async def admission(self) -> Next:
        """0. Admission: the rules of submission (the document validates, among them),
        whoever started the workflow."""
        start, self.start = self.start, None
        assert start is not None
        admitted = await self.process.admit(start)
        if isinstance(admitted, Ending):
            return admitted
        assert isinstance(self.state, PublicationState) and admitted.organisation
        self.state.admitted(admitted.organisation, admitted.reviewer_flags,
                            admitted.specification_summary)
        return Step.SUBMITTED

    async def submitted(self) -> Next:
        """The application on record and its provider told."""
        p, application = self.process, self.state.application
        p.record_application(application.organisation, [application.api.api_id])
        p.enter(Step.SUBMITTED)
        p.notify("received", "publication_received", self.context(), to=p.applicant)
        return Step.PRE_REVIEW

    async def pre_review(self) -> Next:
        """1. Pre-review: the platform team and the provider agree the integration method and
        the specification; the team may ask for a revised one."""
        p = self.process
        d = await p.wait_for(Step.PRE_REVIEW, decisions.PRE_REVIEW)
        if d.verdict == "reject":
            return p.rejected(d)
        if d.verdict == "request_changes":
            p.notify(f"changes/{d.decision_id}", "changes_requested",
                     {"step": Step.PRE_REVIEW, "note": d.note}, to=p.applicant)
            return Step.CHANGES_REQUESTED
        return Step.API_TESTING

    async def changes_requested(self) -> Next:
        """The provider revises the integration method and the specification (which must
        validate); then pre-review again."""
        r = await self.process.wait_for(Step.CHANGES_REQUESTED, decisions.REVISE_SPECIFICATION,
                                        check=self.specification_validates)
        application = self.state.application
        self.state.application = application.model_copy(update={
            "api": application.api.model_copy(update={"integration_method": r.integration_method}),
            "specification": r.specification,
            "specification_summary": self.validated.pop(r.decision_id),
        })
        return Step.PRE_REVIEW

    async def api_testing(self) -> Next:
        """2. API testing: the provider reports its test results..."""
        await self.process.wait_for(Step.API_TESTING, decisions.API_TEST_REPORT)
        return Step.API_TEST_REVIEW

    async def api_test_review(self) -> Next:
        """... and the platform team reviews them, or asks for more testing."""
        p = self.process
        d = await p.wait_for(Step.API_TEST_REVIEW, decisions.API_TEST_REVIEW)
        if d.verdict == "reject":
            return p.rejected(d)
        if d.verdict == "more_testing":
            p.notify(f"more-testing/{d.decision_id}", "api_more_testing_requested",
                     {"note": d.note}, to=p.applicant)
            return Step.API_TESTING
        return Step.SANDBOX_PUBLICATION

    async def sandbox_publication(self) -> Next:
        """3. The API in the sandbox catalogue at its specification's version, and the member
        companies told. Another provider's API may have taken the id since submission: the
        application then ends on the record, rejected, rather than fail."""
        refused = await self.publish("sandbox")
        if refused:
            return self.process.ending("rejected", refused)
        return Step.WAITING_FOR_SERVICE

    async def waiting_for_service(self) -> Next:
        """4. In the sandbox until a subscription using the API reaches production: months, if
        need be, with no reminders and nobody to chase. Then the API goes to production."""
        p = self.process
        await p.wait_for(Step.WAITING_FOR_SERVICE, decisions.SERVICE_LAUNCHED,
                         check=self.launch_on_record, deadlines=False)
        # From here a real service depends on the API: a withdrawal comes too late.
        in_production = p.ends("in_production")
        await self.publish("production")
        return in_production

    async def end_early(self, ending: Ending) -> None:
        """Rejected, withdrawn or lapsed: the API out of the catalogue (the open subscriptions
        that requested it told), the provider told. Refused at admission: the contacts it
        names told why."""
        p = self.process
        if ending.outcome == "refused":
            p.refused()
            return
        if self.state.in_catalogue:
            p.withdraw_api(self.state.application.api.api_id)
            for workflow_id in (await p.commit()).subscriptions_to_tell:
                await self.tell_subscription(workflow_id)
        p.notify(ending.outcome, ENDING_NOTICE[ending.outcome],
                 {**self.context(), "step": ending.step, "note": ending.note,
                  "days": str(self.state.deadline_policy.lapse_after_days)},
                 to=p.applicant)

    # --- what the steps need -------------------------------------------------------------

    def context(self) -> dict[str, str]:
        application = self.state.application
        return {"api": application.api.name, "service": application.api.name,
                "version": application.specification_summary.version}

    async def publish(self, stage: str) -> str | None:
        """The API in the catalogue of `stage` (on record at once), the provider and the member
        companies told; why not, if another provider's API holds its id."""
        p, application = self.process, self.state.application
        p.publish_api(application.api, application.specification,
                      application.specification_summary, stage)
        refused = (await p.commit()).publication_refused
        if refused:
            return refused
        self.state.in_catalogue = True
        context = {**self.context(), "stage": stage}
        p.notify(f"published/{stage}", "api_published", context, to=p.applicant)
        p.notify(f"member-notice/{stage}", "member_notice_api_published", context,
                 members=True)
        return None

    async def specification_validates(self, r: RevisedSpecification) -> str | None:
        """A revision's check: the document validates, within the submission's limits."""
        verdict = await workflow.execute_local_activity_method(
            Catalogue.check_specification, SpecificationCheck(specification=r.specification),
            summary="check the revised specification", **LOCAL)
        if verdict.summary is None:
            return "the specification does not validate: " + "; ".join(verdict.findings)
        self.validated[r.decision_id] = verdict.summary
        return None

    async def launch_on_record(self, d: ServiceLaunched) -> str | None:
        """A launch's check: the claimed subscription uses this API and is live, on record."""
        if d.api_id != self.state.application.api.api_id:
            return f"this application publishes {self.state.application.api.api_id}, not {d.api_id}"
        reason = await workflow.execute_local_activity_method(
            Catalogue.check_service_launch,
            LaunchCheck(subscription_application_id=d.subscription_application_id,
                        api_id=d.api_id),
            summary="the launch on record", **LOCAL)
        return reason or None

    async def tell_subscription(self, workflow_id: str) -> None:
        p, app_id = self.process, self.state.application_id
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal(
                "api_withdrawn",
                ApiWithdrawn(decision_id=f"{app_id}/withdrawn", decided_by=app_id,
                             api_id=self.state.application.api.api_id))
        except Exception as err:  # noqa: BLE001 - it may have ended meanwhile: nothing to tell
            p.record("api_withdrawal_not_delivered", "failed", reason=str(err),
                     details={"subscription": workflow_id})
        else:
            p.record("api_withdrawal_told", details={"subscription": workflow_id})
