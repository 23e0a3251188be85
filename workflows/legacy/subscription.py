"""Stop 8 (e1bc065), frozen, for the applications it started: see workflows/legacy/__init__.py.

A fintech's subscription application, from submission to the production key.

The operator's procedure, step by step (docs/domain.md, The operator's procedure):

1. pre-verification of the service (with request-changes loops back to the applicant);
2. the market-data licence contract, only when a requested API is a market-data API and no
   valid licence is on file;
3. the platform contract and eligibility review;
4. final approval by someone other than the pre-verification reviewer: the sandbox key, and a
   notice to the member companies providing the APIs;
5. business-suitability verification in the sandbox;
6. production: the service contract, the production key, notices.

Every decision arrives as a signal (or, for a synchronous answer, an update of the same name)
and goes through `Procedure.decide`. The applicant may withdraw at any step; any step may end
in rejection; a step waiting on the applicant lapses when left idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from onboarding.domain.models import (
        CatalogueFacts,
        CatalogueLookup,
        ContractTerms,
        KeySummary,
        LicenceLookup,
        Role,
        SubscriptionApplication,
    )
    from workflows.legacy.models import (
        ApiWithdrawn,
        ApplicationRecord,
        ApplicationStatus,
        ContractRecord,
        Decision,
        DecisionOutcome,
        FinalApprovalDecision,
        KeyIssuance,
        KeyRevocation,
        MarketDataLicenceDecision,
        PlatformContractDecision,
        PreVerificationDecision,
        ProductionSwitchDecision,
        Resubmission,
        SandboxTestReport,
        SandboxVerificationDecision,
        ServiceLaunched,
        Withdrawal,
    )

from workflows import versions
from workflows.legacy.procedure import (
    ACTIVITY,
    ApplicationEnded,
    Procedure,
    always,
    needs_note_unless_approved,
)

# Key issuance waits (retrying) for SMTP and the database as long as it takes; a key is never
# lost and never issued twice (see onboarding/domain/keys.py).
KEY_ACTIVITY = dict(ACTIVITY, start_to_close_timeout=timedelta(minutes=2))


class Step:
    PRE_VERIFICATION = "pre_verification"
    CHANGES_REQUESTED = "changes_requested"
    MARKET_DATA_LICENCE = "market_data_licence"
    PLATFORM_CONTRACT = "platform_contract"
    FINAL_APPROVAL = "final_approval"
    SANDBOX_TESTING = "sandbox_testing"
    SANDBOX_VERIFICATION = "sandbox_verification"
    PRODUCTION_SWITCH = "production_switch"
    IN_PRODUCTION = "in_production"


# --- what each decision must carry to be applied (pure: also used by update validators) ---


def _pre_verification(d: PreVerificationDecision) -> str | None:
    if d.outcome == "approve" and not (d.criteria and d.criteria.all_hold()):
        return ("approval needs criteria, and all three must hold: related to capital-market "
                "development, not speculative or gambling-like, not harmful to public morals")
    if d.outcome != "approve" and not d.note:
        return f"{d.outcome} needs a note saying why"
    return None


def _licence(d: MarketDataLicenceDecision) -> str | None:
    if d.outcome == "concluded" and d.contract is None:
        return "a concluded licence needs its contract (number, signed date, validity)"
    if d.outcome == "reject" and not d.note:
        return "reject needs a note saying why"
    return None


def _platform_contract(d: PlatformContractDecision) -> str | None:
    if d.outcome == "signed":
        if d.contract is None:
            return "a signed platform contract needs its contract (number, signed date, validity)"
        if not d.eligibility_confirmed:
            return "the eligibility review must confirm corporate status before signing"
    if d.outcome == "reject" and not d.note:
        return "reject needs a note saying why"
    return None


def _production_switch(d: ProductionSwitchDecision) -> str | None:
    if d.outcome == "approve" and d.service_contract is None:
        return "the production switch needs the service contract (number, signed date, validity)"
    return needs_note_unless_approved(d)


@workflow.defn(name="SubscriptionApplication")
class SubscriptionWorkflow:
    @workflow.init
    def __init__(self, application: SubscriptionApplication) -> None:
        self.application = application
        self.procedure = Procedure.for_application("subscription", application)
        self.catalogue = CatalogueFacts(apis=[], unknown=[])
        # Everyone who took a pre-verification decision: none of them may approve (four eyes).
        self.pre_verifiers: set[str] = set()

    @workflow.run
    async def run(self, application: SubscriptionApplication) -> ApplicationStatus:
        p = self.procedure
        await self._record_application()
        await p.enter("submitted")
        await p.notify("received", "application_received",
                       {"service": application.service.name},
                       recipients=p.applicant_contacts)
        try:
            await self.pre_verification()
            await self.market_data_licence()
            await self.platform_contract()
            await self.final_approval()
            await self.sandbox_verification()
            await self.production()
        except ApplicationEnded as ended:
            await self.end(ended)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return p.status()

    # --- the six steps -----------------------------------------------------------------------

    async def pre_verification(self) -> None:
        p = self.procedure
        self.catalogue = await self._look_up(self.application.requested_apis)
        while True:
            d = await p.wait_for(Step.PRE_VERIFICATION, Role.PRE_VERIFICATION_REVIEWER,
                                    {"pre_verification": _pre_verification})
            assert isinstance(d, PreVerificationDecision)
            self.pre_verifiers.add(d.decided_by.lower())
            if d.outcome == "approve":
                return
            if d.outcome == "reject":
                raise ApplicationEnded("rejected", Step.PRE_VERIFICATION, d.decided_by, d.note)
            await p.notify(f"changes/{d.decision_id}", "changes_requested",
                           {"step": Step.PRE_VERIFICATION, "note": d.note},
                           recipients=p.applicant_contacts)
            r = await p.wait_for(Step.CHANGES_REQUESTED, Role.APPLICANT,
                                    {"resubmit": always})
            assert isinstance(r, Resubmission)
            self.application = self.application.model_copy(
                update={"service": r.service, "requested_apis": r.requested_apis}
            )
            await self._record_application()
            self.catalogue = await self._look_up(r.requested_apis)

    async def market_data_licence(self) -> None:
        p = self.procedure
        market_data = [a.api_id for a in self.catalogue.apis if a.is_market_data]
        if not market_data:
            await p.record("market_data_licence_not_needed", "succeeded")
            return
        on_file = await workflow.execute_activity(
            "find_market_data_licence", LicenceLookup(business_registration_number=p.organisation_id,
                          on=workflow.now().date()),
            result_type=ContractTerms | None, **ACTIVITY,
        )
        if on_file is not None:
            await p.record("market_data_licence_on_file", "succeeded",
                           details=on_file.model_dump(mode="json"))
            return
        d = await p.wait_for(Step.MARKET_DATA_LICENCE, Role.MARKET_DATA_SALES,
                                {"market_data_licence": _licence})
        assert isinstance(d, MarketDataLicenceDecision)
        if d.outcome == "reject":
            raise ApplicationEnded("rejected", Step.MARKET_DATA_LICENCE, d.decided_by, d.note)

    async def platform_contract(self) -> None:
        d = await self.procedure.wait_for(Step.PLATFORM_CONTRACT, Role.PLATFORM_TEAM,
                                             {"platform_contract": _platform_contract})
        assert isinstance(d, PlatformContractDecision)
        if d.outcome == "reject":
            raise ApplicationEnded("rejected", Step.PLATFORM_CONTRACT, d.decided_by, d.note)

    async def final_approval(self) -> None:
        p = self.procedure
        d = await p.wait_for(Step.FINAL_APPROVAL, Role.FINAL_APPROVER,
                                {"final_approval": needs_note_unless_approved})
        assert isinstance(d, FinalApprovalDecision)
        if d.outcome == "reject":
            raise ApplicationEnded("rejected", Step.FINAL_APPROVAL, d.decided_by, d.note)
        await self._issue_key("sandbox")
        apis = ", ".join(self.application.requested_apis)
        await p.notify("member-notice/final-approval", "member_notice_new_user", {"apis": apis},
                       recipients=self._providers())

    async def sandbox_verification(self) -> None:
        p = self.procedure
        while True:
            await p.wait_for(Step.SANDBOX_TESTING, Role.APPLICANT,
                             {"sandbox_testing_complete": always})
            d = await p.wait_for(Step.SANDBOX_VERIFICATION, Role.PLATFORM_TEAM,
                                    {"sandbox_verification": needs_note_unless_approved})
            assert isinstance(d, SandboxVerificationDecision)
            if d.outcome == "approve":
                return
            if d.outcome == "reject":
                raise ApplicationEnded("rejected", Step.SANDBOX_VERIFICATION, d.decided_by, d.note)
            await p.notify(f"more-testing/{d.decision_id}", "more_testing_requested",
                           {"note": d.note}, recipients=p.applicant_contacts)

    async def production(self) -> None:
        p = self.procedure
        d = await p.wait_for(Step.PRODUCTION_SWITCH, Role.FINAL_APPROVER,
                                {"production_switch": _production_switch})
        assert isinstance(d, ProductionSwitchDecision)
        if d.outcome == "reject":
            raise ApplicationEnded("rejected", Step.PRODUCTION_SWITCH, d.decided_by, d.note)
        await self._issue_key("production")
        # A withdrawal applied while the key was issued still ends the application.
        p.close("in_production")
        if workflow.patched(versions.TELL_PUBLICATIONS):
            await self._tell_publications()
        context = {"service": self.application.service.name,
                   "apis": ", ".join(self.application.requested_apis)}
        await p.notify("in-production", "application_in_production", context,
                       recipients=p.applicant_contacts)
        await p.notify("member-notice/production", "member_notice_production", context,
                       recipients=self._providers())
        await p.finish("in_production", Step.IN_PRODUCTION)

    async def end(self, ended: ApplicationEnded) -> None:
        p = self.procedure
        p.outcome = ended.how  # decisions arriving from now on are refused, not applied
        if p.keys:
            revoked = await workflow.execute_activity(
                "revoke_api_keys", KeyRevocation(application_id=p.application_id, reason=ended.how),
                result_type=list[KeySummary], **ACTIVITY,
            )
            p.keys = {k.environment: k for k in revoked}
        template = {"rejected": "application_rejected", "withdrawn": "application_withdrawn",
                    "lapsed": "application_lapsed"}[ended.how]
        await p.notify(ended.how, template,
                       {"step": ended.step, "note": ended.note,
                        "days": str(self.application.deadlines.lapse_after_days)},
                       recipients=p.applicant_contacts)
        await p.finish(ended.how, ended.how)

    # --- helpers -----------------------------------------------------------------------------

    async def _look_up(self, api_ids: list[str]) -> CatalogueFacts:
        return await workflow.execute_activity(
            "look_up_catalogue", CatalogueLookup(api_ids=api_ids), result_type=CatalogueFacts, **ACTIVITY
        )

    async def _record_application(self) -> None:
        await workflow.execute_activity(
            "record_application", ApplicationRecord(application=self.application,
                              workflow_id=workflow.info().workflow_id),
            **ACTIVITY,
        )

    async def _tell_publications(self) -> None:
        """A real service now uses these APIs: their publications may go to production."""
        p = self.procedure
        for api in self.catalogue.apis:
            if not api.publication_application_id:
                continue  # put in the catalogue by the operator, not by a publication
            # Each publication hears once from this subscription: the id need not name the API,
            # and with a long API id it would not fit a decision id (100 characters).
            decision_id = (f"{p.application_id}/launched"
                           if workflow.patched(versions.SHORT_LAUNCH_ID)
                           else f"{p.application_id}/launched/{api.api_id}")
            try:
                await workflow.get_external_workflow_handle(api.publication_application_id).signal(
                    "service_launched",
                    ServiceLaunched(decision_id=decision_id,
                                    decided_by=p.application_id,
                                    subscription_application_id=p.application_id,
                                    api_id=api.api_id),
                )
            except Exception as err:  # that publication has ended (e.g. already in production)
                await p.record("service_launch_not_delivered", "failed", reason=str(err),
                               details={"publication": api.publication_application_id})
            else:
                await p.record("service_launch_told", "succeeded",
                               details={"publication": api.publication_application_id})

    def _providers(self) -> list[str]:
        return sorted({e for a in self.catalogue.apis for e in a.provider_contact_emails})

    async def _issue_key(self, environment: str) -> None:
        p = self.procedure
        key = await workflow.execute_activity(
            "issue_api_key", KeyIssuance(
                issuance_id=f"{p.application_id}/key/{environment}",
                application_id=p.application_id,
                business_registration_number=p.organisation_id,
                environment=environment,  # type: ignore[arg-type]
                scopes=self.application.requested_apis,
                valid_days=(self.application.key_validity.sandbox_days if environment == "sandbox"
                            else self.application.key_validity.production_days),
                recipients=p.applicant_contacts,
                language=p.language,
            ),
            summary=f"issue {environment} key",
            result_type=KeySummary, **KEY_ACTIVITY,
        )
        p.keys[environment] = key

    # --- extra checks that need the world ----------------------------------------------------

    async def _four_eyes(self, d: Decision) -> str | None:
        if d.decided_by.lower() in self.pre_verifiers:
            return (f"{d.decided_by} took the pre-verification decision and may not also "
                    "approve (four eyes)")
        return None

    async def _apis_exist(self, d: Decision) -> str | None:
        assert isinstance(d, Resubmission)
        facts = await self._look_up(d.requested_apis)
        if facts.unknown:
            return f"requested_apis: not in the catalogue: {', '.join(facts.unknown)}"
        return None

    async def _record_contract(self, kind: str, contract_field: str, d: Decision) -> str | None:
        terms = getattr(d, contract_field)
        if terms is None or getattr(d, "outcome", "") == "reject":
            return None
        try:
            await workflow.execute_activity(
                "record_contract", ContractRecord(kind=kind, terms=terms,  # type: ignore[arg-type]
                               business_registration_number=self.procedure.organisation_id,
                               application_id=self.procedure.application_id,
                               recorded_by=d.decided_by),
                **ACTIVITY,
            )
        except ActivityError as err:
            return self.procedure.activity_failure(err)
        return None

    # --- signals and updates: one of each per decision, same name, same payload ---------------

    async def _decide(self, kind: str, d: Decision) -> DecisionOutcome:
        extra = {
            "final_approval": self._four_eyes,
            "production_switch": self._production_extra,
            "resubmit": self._apis_exist,
            "market_data_licence": lambda d: self._record_contract("market_data_licence",
                                                                   "contract", d),
            "platform_contract": lambda d: self._record_contract("platform", "contract", d),
        }.get(kind)
        return await self.procedure.decide(kind, d, _ROLES[kind], extra)

    async def _production_extra(self, d: Decision) -> str | None:
        return await self._four_eyes(d) or await self._record_contract(
            "service", "service_contract", d)

    @workflow.signal(name="pre_verification", description="Pre-verification reviewer: approve (with the three criteria), reject or request_changes.")
    async def pre_verification_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("pre_verification", PreVerificationDecision, payload):
            await self._decide("pre_verification", d)

    @workflow.update(name="pre_verification")
    async def pre_verification_update(self, d: PreVerificationDecision) -> DecisionOutcome:
        return await self._decide("pre_verification", d)

    @pre_verification_update.validator
    def _v_pre_verification(self, d: PreVerificationDecision) -> None:
        self.procedure.validate("pre_verification", d)

    @workflow.signal(name="resubmit", description="Applicant: amended service and APIs after a request for changes.")
    async def resubmit_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("resubmit", Resubmission, payload):
            await self._decide("resubmit", d)

    @workflow.update(name="resubmit")
    async def resubmit_update(self, d: Resubmission) -> DecisionOutcome:
        return await self._decide("resubmit", d)

    @resubmit_update.validator
    def _v_resubmit(self, d: Resubmission) -> None:
        self.procedure.validate("resubmit", d)

    @workflow.signal(name="market_data_licence", description="Market-information sales: the concluded market-data licence contract, or reject.")
    async def market_data_licence_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("market_data_licence", MarketDataLicenceDecision, payload):
            await self._decide("market_data_licence", d)

    @workflow.update(name="market_data_licence")
    async def market_data_licence_update(self, d: MarketDataLicenceDecision) -> DecisionOutcome:
        return await self._decide("market_data_licence", d)

    @market_data_licence_update.validator
    def _v_market_data_licence(self, d: MarketDataLicenceDecision) -> None:
        self.procedure.validate("market_data_licence", d)

    @workflow.signal(name="platform_contract", description="Platform team: the signed platform contract with eligibility confirmed, or reject.")
    async def platform_contract_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("platform_contract", PlatformContractDecision, payload):
            await self._decide("platform_contract", d)

    @workflow.update(name="platform_contract")
    async def platform_contract_update(self, d: PlatformContractDecision) -> DecisionOutcome:
        return await self._decide("platform_contract", d)

    @platform_contract_update.validator
    def _v_platform_contract(self, d: PlatformContractDecision) -> None:
        self.procedure.validate("platform_contract", d)

    @workflow.signal(name="final_approval", description="Final approver (not the pre-verification reviewer): approve, which issues the sandbox key, or reject.")
    async def final_approval_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("final_approval", FinalApprovalDecision, payload):
            await self._decide("final_approval", d)

    @workflow.update(name="final_approval")
    async def final_approval_update(self, d: FinalApprovalDecision) -> DecisionOutcome:
        return await self._decide("final_approval", d)

    @final_approval_update.validator
    def _v_final_approval(self, d: FinalApprovalDecision) -> None:
        self.procedure.validate("final_approval", d)

    @workflow.signal(name="sandbox_testing_complete", description="Applicant: sandbox testing is complete.")
    async def sandbox_testing_complete_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("sandbox_testing_complete", SandboxTestReport, payload):
            await self._decide("sandbox_testing_complete", d)

    @workflow.update(name="sandbox_testing_complete")
    async def sandbox_testing_complete_update(self, d: SandboxTestReport) -> DecisionOutcome:
        return await self._decide("sandbox_testing_complete", d)

    @sandbox_testing_complete_update.validator
    def _v_sandbox_testing_complete(self, d: SandboxTestReport) -> None:
        self.procedure.validate("sandbox_testing_complete", d)

    @workflow.signal(name="sandbox_verification", description="Platform team: business-suitability verification: approve, reject or more_testing.")
    async def sandbox_verification_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("sandbox_verification", SandboxVerificationDecision, payload):
            await self._decide("sandbox_verification", d)

    @workflow.update(name="sandbox_verification")
    async def sandbox_verification_update(self, d: SandboxVerificationDecision) -> DecisionOutcome:
        return await self._decide("sandbox_verification", d)

    @sandbox_verification_update.validator
    def _v_sandbox_verification(self, d: SandboxVerificationDecision) -> None:
        self.procedure.validate("sandbox_verification", d)

    @workflow.signal(name="production_switch", description="Final approver: the service contract; issues the production key.")
    async def production_switch_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("production_switch", ProductionSwitchDecision, payload):
            await self._decide("production_switch", d)

    @workflow.update(name="production_switch")
    async def production_switch_update(self, d: ProductionSwitchDecision) -> DecisionOutcome:
        return await self._decide("production_switch", d)

    @production_switch_update.validator
    def _v_production_switch(self, d: ProductionSwitchDecision) -> None:
        self.procedure.validate("production_switch", d)

    @workflow.signal(dynamic=True, description="Any other signal: not a decision of this process, refused on the record.")
    async def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        await self.procedure.refuse_unknown_signal(name, args)

    @workflow.signal(name="withdraw", description="Applicant: withdraw the application; issued keys are revoked.")
    async def withdraw_signal(self, payload: RawValue) -> None:
        if d := await self.procedure.parse("withdraw", Withdrawal, payload):
            await self._decide("withdraw", d)

    @workflow.update(name="withdraw")
    async def withdraw_update(self, d: Withdrawal) -> DecisionOutcome:
        return await self._decide("withdraw", d)

    @withdraw_update.validator
    def _v_withdraw(self, d: Withdrawal) -> None:
        self.procedure.validate("withdraw", d)

    @workflow.signal(name="api_withdrawn", description="Sent by a publication workflow: a requested API left the catalogue.")
    async def api_withdrawn_signal(self, payload: RawValue) -> None:
        if notice := await self.procedure.parse("api_withdrawn", ApiWithdrawn, payload):
            await self.procedure.note_api_withdrawn(notice)

    @workflow.query(name="status", description="Current step, whom it waits on and since when, deadlines, keys and every decision.")
    def status(self) -> ApplicationStatus:
        return self.procedure.status()


_ROLES: dict[str, Role] = {
    "pre_verification": Role.PRE_VERIFICATION_REVIEWER,
    "resubmit": Role.APPLICANT,
    "market_data_licence": Role.MARKET_DATA_SALES,
    "platform_contract": Role.PLATFORM_TEAM,
    "final_approval": Role.FINAL_APPROVER,
    "sandbox_testing_complete": Role.APPLICANT,
    "sandbox_verification": Role.PLATFORM_TEAM,
    "production_switch": Role.FINAL_APPROVER,
    "withdraw": Role.APPLICANT,
}
