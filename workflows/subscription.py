"""A fintech's subscription application, from submission to the production key.

The operator's procedure, step by step (docs/domain.md, The operator's procedure); each step
method below is one of them, and says what its decision does once applied:

1. pre-verification of the service (with request-changes loops back to the applicant);
2. the market-data licence contract, only when a requested API is a market-data API and no
   valid licence is on file;
3. the platform contract and eligibility review;
4. final approval by someone other than the pre-verification reviewer: the sandbox key, and a
   notice to the member companies providing the APIs;
5. business-suitability verification in the sandbox;
6. production: the service contract, the production key, notices.

Decisions, deadlines and the record are the process's (workflows/process.py); the decisions
themselves are declared in onboarding/domain/decisions.py. The applicant may withdraw at any
step; any step may end in rejection; a step waiting on the applicant lapses when left idle.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.catalogue import Catalogue
    from activities.contracts import Contracts
    from onboarding.domain import decisions
    from onboarding.domain.live_service import live_service_id
    from onboarding.domain.models import (
        ApiFacts,
        ApiWithdrawn,
        ApplicationStatus,
        CatalogueFacts,
        CatalogueLookup,
        ContractTerms,
        LicenceLookup,
        LiveServiceStart,
        Resubmission,
        ServiceLaunched,
        SubscriptionApplication,
    )
    from onboarding.domain.runs import Start
    from onboarding.domain.state import ProcessState, SubscriptionState
    # Stop 8's frozen code: it ran sandboxed for stop 8 and never changes; loaded once, not
    # for every run.
    from workflows.legacy import Legacy
    from workflows.legacy.subscription import SubscriptionWorkflow as Stop8

from workflows import versions
from workflows.handlers import takes_decisions
from workflows.process import LOCAL, Ending, Next, Process, begin


class Step:
    ADMISSION = "admission"
    SUBMITTED = "submitted"
    PRE_VERIFICATION = "pre_verification"
    CHANGES_REQUESTED = "changes_requested"
    MARKET_DATA_LICENCE = "market_data_licence"
    PLATFORM_CONTRACT = "platform_contract"
    FINAL_APPROVAL = "final_approval"
    SANDBOX_TESTING = "sandbox_testing"
    SANDBOX_VERIFICATION = "sandbox_verification"
    PRODUCTION_SWITCH = "production_switch"


ENDING_NOTICE = {"rejected": "application_rejected", "withdrawn": "application_withdrawn",
                 "lapsed": "application_lapsed"}


@workflow.defn(name="SubscriptionApplication")
@takes_decisions(decisions.SUBSCRIPTION)
class SubscriptionWorkflow:
    @workflow.init
    def __init__(self, start: RawValue) -> None:
        # Taken raw: an input that is not an application is refused at admission, on the
        # record, rather than failing the workflow's task.
        self.legacy = None
        # What the catalogue said of the APIs requested, when admission looked them up; the
        # licence on file (in a 1-tuple: None is an answer), when the pre-verification
        # decision's verification looked it up.
        self.admitted_with: CatalogueFacts | None = None
        self.licence_on_file: tuple[ContractTerms | None] | None = None
        if not versions.patched(versions.PROCESS_V2):  # begun by stop 8: its code goes on
            self.legacy = Legacy(Stop8, workflow.payload_converter().from_payload(
                start.payload, SubscriptionApplication), self.moved)
            return
        self.state: ProcessState
        read, self.state = begin(start, SubscriptionApplication, SubscriptionState,
                                 "subscription", Step.ADMISSION)
        self.process = Process(self.state, decisions.SUBSCRIPTION,
                               resumed=read.continued is not None)
        # The input as it came is admission's alone, and a run continued as new is not
        # admitted: not kept for the weeks the application waits (`admission` drops it).
        self.start: Start | None = read if read.continued is None else None
        # What the catalogue said of a resubmission's APIs, by decision id (its check found it).
        self.offered: dict[str, CatalogueFacts] = {}

    @workflow.run
    async def run(self, start: RawValue) -> ApplicationStatus:
        if self.legacy is not None and (ended := await self.legacy.run()) is not None:
            return ended
        return await self.process.run({
            Step.ADMISSION: self.admission,
            Step.SUBMITTED: self.submitted,
            Step.PRE_VERIFICATION: self.pre_verification,
            Step.CHANGES_REQUESTED: self.changes_requested,
            Step.MARKET_DATA_LICENCE: self.market_data_licence,
            Step.PLATFORM_CONTRACT: self.platform_contract,
            Step.FINAL_APPROVAL: self.final_approval,
            Step.SANDBOX_TESTING: self.sandbox_testing,
            Step.SANDBOX_VERIFICATION: self.sandbox_verification,
            Step.PRODUCTION_SWITCH: self.production_switch,
        }, end_early=self.end_early)

    def moved(self, carried: dict) -> None:
        """An application stop 8 began goes on in v2 (Process.moved_from_stop_8)."""
        self.state = SubscriptionState.model_validate(carried)
        self.process = Process.moved_from_stop_8(self.state, decisions.SUBSCRIPTION)
        self.legacy = None

    # --- the procedure -------------------------------------------------------------------

    async def admission(self) -> Next:
        """0. Admission: the rules of submission, whoever started the workflow."""
        # Since this patch the catalogue lookup is admission's (one local activity, not two).
        start, self.start = self.start, None
        assert start is not None
        admitted = await self.process.admit(
            start, catalogue=versions.patched(versions.CHECKS_IN_VERIFICATION))
        if isinstance(admitted, Ending):
            return admitted
        assert isinstance(self.state, SubscriptionState) and admitted.organisation
        self.state.admitted(admitted.organisation, admitted.reviewer_flags)
        self.admitted_with = admitted.catalogue
        return Step.SUBMITTED

    async def submitted(self) -> Next:
        """The application on record and its applicant told; what the catalogue says of the
        APIs it requests."""
        p, application = self.process, self.state.application
        p.record_application(application.organisation, application.requested_apis)
        p.enter(Step.SUBMITTED)
        p.notify("received", "application_received", {"service": application.service.name},
                 to=p.applicant)
        self.state.catalogue = (self.admitted_with if self.admitted_with is not None
                                else await self.look_up(application.requested_apis))
        return Step.PRE_VERIFICATION

    async def pre_verification(self) -> Next:
        """1. Pre-verification: does the service serve the capital market, is it neither
        speculative nor harmful? The reviewer may ask the applicant for changes."""
        p = self.process
        d = await p.wait_for(
            Step.PRE_VERIFICATION, decisions.PRE_VERIFICATION,
            # Approved, it leads to the licence's step when a requested API is market data.
            licence=lambda d: d.verdict == "approve" and self.market_data_requested())
        self.licence_on_file = p.licence_on_file
        if d.verdict == "reject":
            return p.rejected(d)
        if d.verdict == "request_changes":
            p.notify(f"changes/{d.decision_id}", "changes_requested",
                     {"step": Step.PRE_VERIFICATION, "note": d.note}, to=p.applicant)
            return Step.CHANGES_REQUESTED
        return Step.MARKET_DATA_LICENCE

    async def changes_requested(self) -> Next:
        """The applicant amends the service and the APIs it requests (each in the catalogue);
        then pre-verification again."""
        p = self.process
        r = await p.wait_for(Step.CHANGES_REQUESTED, decisions.RESUBMIT,
                             check=self.apis_offered)
        self.state.application = self.state.application.model_copy(
            update={"service": r.service, "requested_apis": r.requested_apis})
        self.state.catalogue = self.offered.pop(r.decision_id)
        p.record_application(self.state.application.organisation, r.requested_apis)
        return Step.PRE_VERIFICATION

    async def market_data_licence(self) -> Next:
        """2. The market-data licence contract: needed for market-data APIs, unless a valid
        licence of the organisation is on file."""
        p = self.process
        if not self.market_data_requested():
            p.record("market_data_licence_not_needed")
            return Step.PLATFORM_CONTRACT
        if self.licence_on_file is not None:  # looked up with the pre-verification decision
            on_file = self.licence_on_file[0]
        else:
            on_file = await workflow.execute_local_activity_method(
                Contracts.find_market_data_licence,
                LicenceLookup(business_registration_number=self.state.organisation_id,
                              on=workflow.now().date()),
                summary="market-data licence on file", **LOCAL)
        if on_file is not None:
            p.record("market_data_licence_on_file", details=on_file.model_dump(mode="json"))
            return Step.PLATFORM_CONTRACT
        d = await p.wait_for(Step.MARKET_DATA_LICENCE, decisions.MARKET_DATA_LICENCE,
                             contract=lambda d: ("market_data_licence", d.contract))
        if d.verdict == "reject":
            return p.rejected(d)
        p.record_contract("market_data_licence", d.contract, d)
        return Step.PLATFORM_CONTRACT

    async def platform_contract(self) -> Next:
        """3. The platform contract, signed once the eligibility review confirms a corporation."""
        p = self.process
        d = await p.wait_for(Step.PLATFORM_CONTRACT, decisions.PLATFORM_CONTRACT,
                             contract=lambda d: ("platform", d.contract))
        if d.verdict == "reject":
            return p.rejected(d)
        p.record_contract("platform", d.contract, d)
        return Step.FINAL_APPROVAL

    async def final_approval(self) -> Next:
        """4. Final approval, by someone other than the pre-verification reviewer: the sandbox
        key, and the member companies providing the APIs told of their new user."""
        p = self.process
        d = await p.wait_for(Step.FINAL_APPROVAL, decisions.FINAL_APPROVAL)
        if d.verdict == "reject":
            return p.rejected(d)
        self.issue_key("sandbox")
        p.notify("member-notice/final-approval", "member_notice_new_user",
                 {"apis": ", ".join(self.state.application.requested_apis)},
                 to=self.providers())
        return Step.SANDBOX_TESTING

    async def sandbox_testing(self) -> Next:
        """5. Business-suitability verification, first the applicant's tests in the sandbox..."""
        await self.process.wait_for(Step.SANDBOX_TESTING, decisions.SANDBOX_TESTING_COMPLETE)
        return Step.SANDBOX_VERIFICATION

    async def sandbox_verification(self) -> Next:
        """... then the platform team's verdict on them, which may ask for more testing."""
        p = self.process
        d = await p.wait_for(Step.SANDBOX_VERIFICATION, decisions.SANDBOX_VERIFICATION)
        if d.verdict == "reject":
            return p.rejected(d)
        if d.verdict == "more_testing":
            p.notify(f"more-testing/{d.decision_id}", "more_testing_requested",
                     {"note": d.note}, to=p.applicant)
            return Step.SANDBOX_TESTING
        return Step.PRODUCTION_SWITCH

    async def production_switch(self) -> Next:
        """6. Production: the service contract and the production key; the publications of the
        APIs it uses, the applicant and the member companies told."""
        p = self.process
        d = await p.wait_for(Step.PRODUCTION_SWITCH, decisions.PRODUCTION_SWITCH,
                             contract=lambda d: ("service", d.service_contract))
        if d.verdict == "reject":
            return p.rejected(d)
        p.record_contract("service", d.service_contract, d)
        self.issue_key("production")
        publications = [api for api in self.state.catalogue.apis
                        if api.publication_application_id]
        # Applications reaching production since the live service exists hand their service
        # on to it (histories recorded before replay without).
        live = versions.patched(versions.LIVE_SERVICE)
        if publications or live:
            # The production key on record before the publications check the claim, and before
            # the live service reads what it holds.
            await p.commit()
        # A withdrawal applied meanwhile still ends the application; from here none applies.
        in_production = p.ends("in_production")
        for api in publications:
            await self.tell_publication(api)
        context = {"service": self.state.application.service.name,
                   "apis": ", ".join(self.state.application.requested_apis)}
        p.notify("in-production", "application_in_production", context, to=p.applicant)
        p.notify("member-notice/production", "member_notice_production", context,
                 to=self.providers())
        if live:
            await self.start_live_service()
        return in_production

    async def start_live_service(self) -> None:
        """The service goes on as its own process, for as long as it lives (a child this
        workflow abandons when it completes `in_production`)."""
        s = self.state
        workflow_id = live_service_id(s.application_id)
        try:
            await workflow.start_child_workflow(
                "LiveService", LiveServiceStart(
                    application_id=s.application_id,
                    subscription_workflow_id=workflow.info().workflow_id,
                    organisation_id=s.organisation_id, language=s.language,
                    policy=s.application.live_service, key_validity=s.application.key_validity),
                id=workflow_id, parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"Live service of {s.organisation_id}")
        except WorkflowAlreadyStartedError:  # the migration was first: one service either way
            self.process.record("live_service_handed_over",
                                details={"workflow_id": workflow_id, "already_running": True})
        else:
            self.process.record("live_service_handed_over", details={"workflow_id": workflow_id})

    async def end_early(self, ending: Ending) -> None:
        """Rejected, withdrawn or lapsed: every key issued revoked, the applicant told.
        Refused at admission: the contacts it names told why (it holds nothing)."""
        p = self.process
        if ending.outcome == "refused":
            p.refused()
            return
        p.revoke_keys(ending.outcome)
        p.notify(ending.outcome, ENDING_NOTICE[ending.outcome],
                 {"step": ending.step, "note": ending.note,
                  "days": str(self.state.deadline_policy.lapse_after_days)},
                 to=p.applicant)

    # --- what the steps need -------------------------------------------------------------

    async def look_up(self, api_ids: list[str]) -> CatalogueFacts:
        return await workflow.execute_local_activity_method(
            Catalogue.look_up_catalogue, CatalogueLookup(api_ids=api_ids),
            summary="the requested APIs in the catalogue", **LOCAL)

    async def apis_offered(self, r: Resubmission) -> str | None:
        """A resubmission's check: every API it requests is in the catalogue."""
        facts = await self.look_up(r.requested_apis)
        if facts.unknown:
            return f"requested_apis: not in the catalogue: {', '.join(facts.unknown)}"
        self.offered[r.decision_id] = facts
        return None

    def market_data_requested(self) -> bool:
        return any(api.is_market_data for api in self.state.catalogue.apis)

    def issue_key(self, environment: str) -> None:
        validity = self.state.application.key_validity
        days = validity.sandbox_days if environment == "sandbox" else validity.production_days
        # Its expiry by the process's clock: the one its live service counts by.
        self.process.issue_key(
            environment, self.state.application.requested_apis,  # type: ignore[arg-type]
            days, expires_at=workflow.now() + timedelta(days=days))

    def providers(self) -> list[str]:
        return sorted({e for api in self.state.catalogue.apis for e in api.provider_contact_emails})

    async def tell_publication(self, api: ApiFacts) -> None:
        """A real service now uses the API: its publication may go to production."""
        p, app_id = self.process, self.state.application_id
        assert api.publication_application_id
        try:
            # Each publication hears once from this subscription: the id need not name the API.
            await workflow.get_external_workflow_handle(api.publication_application_id).signal(
                decisions.SERVICE_LAUNCHED.name,
                ServiceLaunched(decision_id=f"{app_id}/launched", decided_by=app_id,
                                subscription_application_id=app_id, api_id=api.api_id))
        except Exception as err:  # noqa: BLE001 - that publication has ended meanwhile
            p.record("service_launch_not_delivered", "failed", reason=str(err),
                     details={"publication": api.publication_application_id})
        else:
            p.record("service_launch_told",
                     details={"publication": api.publication_application_id})

    # --- a message from another process -------------------------------------------------

    @workflow.signal(name="api_withdrawn",
                     description="Sent by a publication workflow: a requested API left the "
                                 "catalogue.")
    async def api_withdrawn(self, payload: RawValue) -> None:
        if self.legacy is not None:
            await self.legacy.signal("api_withdrawn", payload)
            return

        def noted(notice: ApiWithdrawn) -> None:
            if notice.api_id not in self.state.withdrawn_apis:
                self.state.withdrawn_apis.append(notice.api_id)
                self.process.record("requested_api_withdrawn", actor=notice.decided_by or "",
                                    details={"api_id": notice.api_id})

        await self.process.hear("api_withdrawn", ApiWithdrawn, payload, noted)
