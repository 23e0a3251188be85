"""A live service, from production for as long as it lives: one durable process per service.

Started by its subscription when it reaches production (a child workflow its parent abandons:
workflows/subscription.py), or for an application already in production by the one-off
migration (onboarding/temporal/live_services.py). It reads what the record says of the
service (its keys, APIs, licence and contracts), takes its keys over (key reconciliation asks
this process whether they may stay), and then, with one timer for the nearest thing due
(onboarding/domain/live_service.py):

- keys: reminders before a key expires; a new key on the applicant's request (`renew_key`)
  or automatically; the old one revoked when the overlap ends, or at once (a leaked key);
- the market-data licence, the platform contract and the service contract: reminders to the
  team that signs each and to the applicant; a renewal recorded as that team's decision; a
  lapse suspends (the licence: the market-data APIs on every key of the organisation; a
  contract: the keys) until a renewal is recorded;
- suspension by the platform team, reinstatement by a final approver who did not suspend;
- changes: APIs removed at once; added after review (platform team, then final approver);
- termination, on a date: every key revoked, the process ends;
- an API retired by its provider leaves the keys' scopes on its date.

Decisions are the catalogue's (onboarding/domain/decisions.py, LIVE_SERVICE), with the same
handlers, checks, audit and journal as the application processes (workflows/process.py); this
process takes them at any time (`Process.take`) rather than one step at a time. It continues
as new every `run_days`, carrying its whole state.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.catalogue import Catalogue
    from activities.contracts import Contracts
    from activities.live_services import (
        LiveServiceLookup,
        LiveServices,
        OrganisationServices,
        RetirementCheck,
    )
    from onboarding.domain import decisions
    from onboarding.domain.live_service import (
        LAPSE_CAUSE,
        SIGNED_BY,
        ContractWatch,
        Due,
        LiveServiceState,
        PendingChange,
        Retirement,
        WatchedKey,
        end_of,
    )
    from onboarding.domain.models import (
        ApiChange,
        ApiRetired,
        ApplicationStatus,
        CatalogueLookup,
        ChangeReviewDecision,
        ContractRenewal,
        DeadlinePolicy,
        KeyRenewalRequest,
        KeySummary,
        LicenceLookup,
        LicenceRenewalHeard,
        LiveServiceStart,
        Reinstatement,
        Role,
        Suspension,
        Termination,
        WatchedContract,
    )
    from onboarding.domain.record import (
        KeyScopesChanged,
        KeysSuspended,
        KeysTakenOver,
        SuspensionLifted,
    )
    from onboarding.temporal import search_attributes as sa

from workflows import versions
from workflows.handlers import takes_decisions
from workflows.process import LOCAL, Process, read_start


CONTRACT_NAMES = {"market_data_licence": "market-data licence",
                  "platform": "platform contract", "service": "service contract"}
RENEWAL_DECISION = {"market_data_licence": decisions.MARKET_DATA_LICENCE_RENEWED,
                    "platform": decisions.PLATFORM_CONTRACT_RENEWED,
                    "service": decisions.SERVICE_CONTRACT_RENEWED}


@workflow.defn(name="LiveService")
@takes_decisions(decisions.LIVE_SERVICE)
class LiveServiceWorkflow:
    @workflow.init
    def __init__(self, start: RawValue) -> None:
        self.legacy = None  # the handlers' hook for applications begun by stop 8: none here
        self.start = read_start(start, LiveServiceStart)
        service, continued = self.start.application, self.start.continued
        self.resumed = continued is not None
        self.state: LiveServiceState
        if service is None:  # only the platform starts a live service: run() fails it
            service = LiveServiceStart(application_id="unreadable", subscription_workflow_id="",
                                       organisation_id="")
        if continued is not None:
            self.state = LiveServiceState.model_validate({**continued, "application": service})
        else:
            self.state = LiveServiceState(
                process="live_service", application=service,
                application_id=service.application_id, organisation_id=service.organisation_id,
                organisation_name="", applicant_contacts=[], language=service.language,
                deadline_policy=DeadlinePolicy(), step="live", waiting_since=workflow.now(),
                # Not the application's row: its step and status stay the subscription's
                # until the service ends (versions.TERMINATION_ON_RECORD).
                on_record=False, entry_prefix=workflow.info().workflow_id)
        self.state.run_started = workflow.now()
        self.process = Process(self.state, decisions.LIVE_SERVICE, resumed=self.resumed)
        # What the catalogue said of a change's added APIs, by decision id (its check).
        self.offered: dict[str, Any] = {}

    @workflow.run
    async def run(self, start: RawValue) -> ApplicationStatus:
        if self.start.application is None or self.start.forged:
            raise ApplicationError("a live service's input is the platform's LiveServiceStart",
                                   non_retryable=True)
        p, s = self.process, self.state
        if not self.resumed:
            await self.begin()
        await p.commit()  # its keys taken over: on record, and watched, before any decision
        self.adopt_keys()
        p.take({
            decisions.RENEW_KEY.name: (self.can_renew, self.renew_key),
            decisions.SUSPEND.name: (self.can_suspend, self.suspend),
            decisions.REINSTATE.name: (self.can_reinstate, self.reinstate),
            decisions.MARKET_DATA_LICENCE_RENEWED.name: (
                self.renewal_check("market_data_licence"), self.renewed("market_data_licence")),
            decisions.PLATFORM_CONTRACT_RENEWED.name: (
                self.renewal_check("platform"), self.renewed("platform")),
            decisions.SERVICE_CONTRACT_RENEWED.name: (
                self.renewal_check("service"), self.renewed("service")),
            decisions.CHANGE_APIS.name: (self.can_change, self.change),
            decisions.CHANGE_REVIEW.name: (self.can_review, self.review),
            decisions.CHANGE_APPROVAL.name: (self.can_approve, self.approve),
            decisions.TERMINATE.name: (self.can_terminate, self.terminate),
            decisions.TERMINATE_SERVICE.name: (self.can_terminate, self.terminate),
            decisions.API_RETIRED.name: (self.can_retire, self.retired),
            decisions.MARKET_DATA_LICENCE_RENEWAL_HEARD.name: (
                self.can_hear_licence, self.heard_licence),
        })
        while s.service_state != "terminated":
            await p.commit()
            await self.tell_licence_renewed()
            self.adopt_keys()
            self.show()
            nearest = s.next_due()
            run_ends = s.run_started + timedelta(days=s.application.policy.run_days)
            if workflow.now() >= run_ends:  # this run is old enough: the next one goes on
                p.continue_at_next_wait = True
                run_ends = None
            until = min(nearest.at, run_ends) if nearest and run_ends else (
                nearest.at if nearest else run_ends)
            passed = await p.watch(until, summary=f"{nearest.what} {nearest.subject}".strip()
                                   if nearest and nearest.at == until else "next run")
            if passed:
                async with p.lock:
                    await self.fall_due()
        p.state.outcome = "terminated"
        p.state.takes = []
        if versions.patched(versions.TERMINATION_ON_RECORD):
            # The application's row says so too (it said in_production since its subscription
            # ended): written by this last commit, as a process's end is (Process.run).
            s.on_record, s.step = True, "terminated"
        await p.commit(status="terminated" if s.on_record else None)
        await workflow.wait_condition(workflow.all_handlers_finished)
        while s.journal or s.refusals.dropped:
            await p.commit()
        self.show()
        return s.status()

    # --- beginning ---------------------------------------------------------------------------

    async def begin(self) -> None:
        """What the record says of the service, its keys taken over, its watch set."""
        p, s = self.process, self.state
        facts = await workflow.execute_local_activity_method(
            LiveServices.live_service_facts,
            LiveServiceLookup(application_id=s.application_id),
            summary="what the live service holds", **LOCAL)
        s.organisation_name, s.applicant_contacts = facts.organisation_name, facts.contacts
        s.service_name, s.apis = facts.service_name, list(facts.apis)
        s.generations = dict(facts.generations)
        s.keys = list(facts.keys)
        s.contracts = [ContractWatch(contract=c, reminded=self.past_reminders(end_of(c.valid_until)))
                       for c in facts.contracts]
        p.write(KeysTakenOver, owner_workflow_id=workflow.info().workflow_id)
        p.record("live_service_started", details={
            "started_by": s.application.started_by,
            "keys": [k.key_id for k in facts.keys],
            "contracts": [c.model_dump(mode="json") for c in facts.contracts]})
        s.happened(workflow.now(), "live", f"started by {s.application.started_by}")
        p.notify("live/started", "live_service_started", {}, to=p.applicant)

    def past_reminders(self, at: datetime, days: list[int] | None = None) -> list[int]:
        """The reminders before `at` whose day has already gone (not sent late, all at once)."""
        days = self.state.application.policy.contract_reminder_days if days is None else days
        return [d for d in days if at - timedelta(days=d) <= workflow.now()]

    def adopt_keys(self) -> None:
        """The keys on record (the last commit's answer) watched: new ones added, revoked ones
        dropped."""
        s, policy, now = self.state, self.state.application.policy, workflow.now()
        active = {k.key_id: k for k in s.keys if k.status == "active"}
        s.watched_keys = [k for k in s.watched_keys if k.key_id in active]
        watched = {k.key_id for k in s.watched_keys}
        for key in sorted(active.values(), key=lambda k: k.expires_at):
            if key.key_id in watched:
                continue
            renew_at = max(key.expires_at - timedelta(days=policy.auto_renew_days),
                           now + (key.expires_at - now) / 2)
            s.watched_keys.append(WatchedKey(
                key_id=key.key_id, environment=key.environment,
                display_prefix=key.display_prefix,
                generation=s.generations.get(key.environment, 0), expires_at=key.expires_at,
                renew_at=renew_at,
                reminded=self.past_reminders(key.expires_at, policy.key_reminder_days)))
        # Two keys of one environment only during an overlap: the older is the renewed one.
        for environment in {k.environment for k in s.watched_keys}:
            same = [k for k in s.watched_keys if k.environment == environment]
            for older in same[:-1]:
                if not older.renewed:
                    older.renewed = True
                    older.revoke_at = older.revoke_at or min(
                        now + timedelta(days=policy.overlap_days), older.expires_at)

    # --- what falls due ----------------------------------------------------------------------

    async def fall_due(self) -> None:
        """Everything due by now, in order (under the lock: never while a decision is being
        applied)."""
        s = self.state
        while s.service_state != "terminated" and (d := s.next_due()) is not None \
                and d.at <= workflow.now():
            await self.handle(d)

    async def handle(self, d: Due) -> None:
        p, s = self.process, self.state
        if d.what == "reminder":
            key = s.key(d.subject)
            assert key is not None
            days = next(n for n in s.application.policy.key_reminder_days
                        if n not in key.reminded
                        and key.expires_at - timedelta(days=n) <= workflow.now())
            key.reminded.append(days)
            p.notify(f"live/key/{key.key_id}/reminder/{days}", "key_expiry_reminder",
                     {"environment": key.environment, "days": str(days),
                      "display_prefix": key.display_prefix,
                      "expires_on": key.expires_at.date().isoformat(),
                      "renews_on": key.renew_at.date().isoformat()}, to=p.applicant)
            p.record("key_expiry_reminder_due", details={"key_id": key.key_id, "days": days})
            s.happened(workflow.now(), "key_expiry_reminder",
                       f"{key.environment} key {key.display_prefix}… in {days} days")
        elif d.what == "renewal":
            key = s.key(d.subject)
            assert key is not None
            self.renew(key, "platform", immediate=False, note="automatic renewal")
        elif d.what == "overlap_end":
            key = s.key(d.subject)
            assert key is not None
            key.revoke_at = None
            p.revoke_keys("renewed: the overlap ended", [key.key_id])
            s.happened(workflow.now(), "old_key_revoked",
                       f"{key.environment} key {key.display_prefix}…")
        elif d.what == "contract_reminder":
            watch = s.contract(d.subject)
            assert watch is not None
            c = watch.contract
            days = next(n for n in s.application.policy.contract_reminder_days
                        if n not in watch.reminded
                        and end_of(c.valid_until) - timedelta(days=n) <= workflow.now())
            watch.reminded.append(days)
            context = self.contract_context(c) | {"days": str(days)}
            purpose = f"live/{c.contract_type}/{c.contract_number}/reminder/{days}"
            p.notify(purpose, "contract_expiry_reminder", context, to=p.applicant)
            p.notify(f"{purpose}/team", "contract_expiry_reminder", context,
                     role=Role(SIGNED_BY[c.contract_type]))
            p.record("contract_expiry_reminder_due",
                     details={"contract_type": c.contract_type, "days": days})
            s.happened(workflow.now(), "contract_expiry_reminder",
                       f"{CONTRACT_NAMES[c.contract_type]} in {days} days")
        elif d.what == "lapse":
            await self.lapse(d.subject)
        elif d.what == "termination":
            self.terminate_now()
        elif d.what == "retirement":
            retirement = next(r for r in s.retirements if r.api_id == d.subject)
            s.retirements.remove(retirement)
            s.apis = [a for a in s.apis if a.api_id != d.subject]
            p.write(KeyScopesChanged, scopes=s.scopes())
            p.record("api_retired_from_service", details={"api_id": d.subject})
            s.happened(workflow.now(), "api_retired", d.subject)

    def contract_context(self, c: WatchedContract) -> dict[str, str]:
        return {"contract": CONTRACT_NAMES[c.contract_type], "contract_number": c.contract_number,
                "valid_until": c.valid_until.isoformat(),
                "suspends": "market-data APIs" if c.contract_type == "market_data_licence"
                else "APIs"}

    async def lapse(self, contract_type: str) -> None:
        """A licence or contract past its validity suspends, unless a renewal is on file (the
        organisation's licence renewed through another of its live services)."""
        p, s = self.process, self.state
        watch = s.contract(contract_type)
        assert watch is not None
        c = watch.contract
        if contract_type == "market_data_licence":
            on_file = await workflow.execute_local_activity_method(
                Contracts.find_market_data_licence,
                LicenceLookup(business_registration_number=s.organisation_id,
                              on=workflow.now().date()),
                summary="a renewed market-data licence on file", **LOCAL)
            if on_file is not None and on_file.valid_until > c.valid_until:
                self.watch_contract(contract_type, on_file.contract_number, on_file.valid_until)
                p.record("market_data_licence_on_file", details=on_file.model_dump(mode="json"))
                s.happened(workflow.now(), "contract_renewed",
                           f"{CONTRACT_NAMES[contract_type]} on file until "
                           f"{on_file.valid_until.isoformat()}")
                return
        watch.contract = c.model_copy(update={"lapsed": True})
        licence = contract_type == "market_data_licence"
        suspension_id = (f"market_data_licence/{s.organisation_id}/{c.contract_number}"
                         if licence else f"{s.application_id}/{contract_type}/{c.contract_number}")
        p.write(KeysSuspended, suspension_id=suspension_id, cause=LAPSE_CAUSE[contract_type],
                reason=f"the {CONTRACT_NAMES[contract_type]} {c.contract_number} lapsed on "
                       f"{c.valid_until.isoformat()}",
                suspended_by="platform", organisation_wide=licence, market_data_only=licence)
        context = self.contract_context(c)
        purpose = f"live/{contract_type}/{c.contract_number}/lapsed"
        p.notify(purpose, "contract_lapsed", context, to=p.applicant)
        p.notify(f"{purpose}/team", "contract_lapsed", context,
                 role=Role(SIGNED_BY[contract_type]))
        s.happened(workflow.now(), "contract_lapsed", CONTRACT_NAMES[contract_type])
        self.settle_state()

    def watch_contract(self, contract_type: str, number: str, valid_until: date) -> None:
        s = self.state
        contract = WatchedContract(contract_type=contract_type,  # type: ignore[arg-type]
                                   contract_number=number, valid_until=valid_until)
        watch = ContractWatch(contract=contract, reminded=self.past_reminders(end_of(valid_until)))
        s.contracts = [w for w in s.contracts if w.contract.contract_type != contract_type]
        s.contracts.append(watch)

    def settle_state(self) -> None:
        """live, or suspended while a suspension of every API is in force."""
        s = self.state
        whole = s.suspended_by or any(w.contract.lapsed and w.contract.contract_type != 
                                      "market_data_licence" for w in s.contracts)
        new = "suspended" if whole else "live"
        if new != s.service_state:
            s.service_state = new
            s.happened(workflow.now(), new)

    # --- keys --------------------------------------------------------------------------------

    def renew(self, old: WatchedKey, by: str, *, immediate: bool, note: str) -> None:
        """One new key for `old`'s environment (its generation fixed here, so a retried commit
        issues no second); the old one revoked at once or when the overlap ends."""
        p, s, policy, now = self.process, self.state, self.state.application.policy, \
            workflow.now()
        environment = old.environment
        generation = s.generations.get(environment, 0) + 1
        s.generations[environment] = generation
        validity = s.application.key_validity
        days = validity.production_days if environment == "production" else validity.sandbox_days
        p.issue_key(environment, s.scopes(), days, generation=generation,
                    expires_at=now + timedelta(days=days),
                    owner_workflow_id=workflow.info().workflow_id)
        old.renewed = True
        if immediate:
            p.revoke_keys(f"rotated at once: {note}"[:500], [old.key_id])
            until = "now (revoked)"
        else:
            old.revoke_at = min(now + timedelta(days=policy.overlap_days), old.expires_at)
            until = old.revoke_at.date().isoformat()
        p.notify(f"live/key/{old.key_id}/renewed", "key_renewed",
                 {"environment": environment, "display_prefix": old.display_prefix,
                  "old_key_until": until}, to=p.applicant)
        p.record("api_key_renewal", actor=by, details={
            "old_key_id": old.key_id, "generation": generation, "immediate": immediate})
        s.happened(now, "key_rotated" if immediate else "key_renewed",
                   f"{environment} key {old.display_prefix}… → generation {generation}")

    async def can_renew(self, d: KeyRenewalRequest) -> str | None:
        if self.state.current_key(d.environment) is None:
            return f"environment: the live service holds no {d.environment} key [no_key]"
        return self.not_terminating()

    def renew_key(self, d: KeyRenewalRequest) -> None:
        key = self.state.current_key(d.environment)
        assert key is not None
        self.renew(key, d.decided_by or "", immediate=d.immediate, note=d.note)

    # --- suspension --------------------------------------------------------------------------

    async def can_suspend(self, d: Suspension) -> str | None:
        s = self.state
        if s.suspended_by:
            return f"the live service is already suspended (by {s.suspended_by})"
        return None

    def suspend(self, d: Suspension) -> None:
        p, s = self.process, self.state
        s.suspended_by, s.suspension_id = d.decided_by or "", f"{s.application_id}/suspension/" \
            f"{d.decision_id}"
        p.write(KeysSuspended, suspension_id=s.suspension_id, cause="platform", reason=d.note,
                suspended_by=s.suspended_by)
        p.notify(f"live/suspended/{d.decision_id}", "service_suspended", {"note": d.note},
                 to=p.applicant)
        s.happened(workflow.now(), "suspension", d.note)
        self.settle_state()

    async def can_reinstate(self, d: Reinstatement) -> str | None:
        if not self.state.suspended_by:
            return "the live service is not suspended by the platform team"
        return None

    def reinstate(self, d: Reinstatement) -> None:
        p, s = self.process, self.state
        p.write(SuspensionLifted, cause="platform", lifted_by=d.decided_by or "",
                suspension_id=s.suspension_id)
        p.notify(f"live/reinstated/{d.decision_id}", "service_reinstated", {}, to=p.applicant)
        s.suspended_by = s.suspension_id = ""
        s.happened(workflow.now(), "reinstatement", d.note)
        self.settle_state()

    # --- licences and contracts ---------------------------------------------------------------

    def renewal_check(self, contract_type: str):
        async def check(d: ContractRenewal) -> str | None:
            watch = self.state.contract(contract_type)
            if watch is not None and d.contract.valid_until <= watch.contract.valid_until:
                return (f"contract.valid_until: must be after the {CONTRACT_NAMES[contract_type]}"
                        f" on file ({watch.contract.valid_until.isoformat()}) [later]")
            return await self.process.contract_unclaimed(contract_type, d.contract)  # type: ignore[arg-type]
        return check

    def renewed(self, contract_type: str):
        def apply(d: ContractRenewal) -> None:
            p, s = self.process, self.state
            watch = s.contract(contract_type)
            lapsed = watch is not None and watch.contract.lapsed
            p.record_contract(contract_type, d.contract, d)  # type: ignore[arg-type]
            self.watch_contract(contract_type, d.contract.contract_number,
                                d.contract.valid_until)
            if lapsed:
                p.write(SuspensionLifted, cause=LAPSE_CAUSE[contract_type],
                        lifted_by=d.decided_by or "",
                        organisation_wide=contract_type == "market_data_licence")
            if contract_type == "market_data_licence":  # the organisation's: its others told
                s.licence_to_tell = d.contract.contract_number
            p.notify(f"live/{contract_type}/{d.contract.contract_number}/renewed",
                     "contract_renewed",
                     self.contract_context(s.contract(contract_type).contract), to=p.applicant)
            s.happened(workflow.now(), "contract_renewed",
                       f"{CONTRACT_NAMES[contract_type]} until "
                       f"{d.contract.valid_until.isoformat()}")
            self.settle_state()
        return apply

    async def tell_licence_renewed(self) -> None:
        """The licence renewed here (committed: on file, its suspension lifted) told to the
        organisation's other live services using market data, so that each lifts the lapse
        from its own status (the gateway already grants their market data again)."""
        p, s = self.process, self.state
        number = s.licence_to_tell
        if not number:
            return
        s.licence_to_tell = ""
        if not versions.patched(versions.LICENCE_RENEWAL_TOLD):
            return
        me = workflow.info().workflow_id
        others = await workflow.execute_local_activity_method(
            LiveServices.market_data_services,
            OrganisationServices(business_registration_number=s.organisation_id,
                                 except_workflow_id=me),
            summary="the organisation's other live services using market data", **LOCAL)
        decision_id = f"licence-renewed/{number}"
        if len(decision_id) > 100:
            decision_id = "licence-renewed/" + hashlib.sha256(number.encode()).hexdigest()
        told = []
        for other in others:
            try:
                await workflow.get_external_workflow_handle(other).signal(
                    decisions.MARKET_DATA_LICENCE_RENEWAL_HEARD.name, LicenceRenewalHeard(
                        decision_id=decision_id, decided_by=me, contract_number=number))
            except Exception:  # noqa: BLE001 - that live service has ended meanwhile
                continue
            told.append(other)
        p.record("market_data_licence_renewal_told",
                 details={"contract_number": number, "told": told})

    async def can_hear_licence(self, d: LicenceRenewalHeard) -> str | None:
        """Not believed: the renewed licence must be on file, later than the one watched."""
        s = self.state
        watch = s.contract("market_data_licence")
        if watch is None:
            return "the live service holds no market-data licence: it uses no market data [held]"
        # Valid on the later of today and the day after the watched one ends (a renewal
        # signed ahead, valid from then, counts too).
        on = max(workflow.now().date(), watch.contract.valid_until + timedelta(days=1))
        on_file = await workflow.execute_local_activity_method(
            Contracts.find_market_data_licence,
            LicenceLookup(business_registration_number=s.organisation_id, on=on),
            summary="the renewed market-data licence on file", **LOCAL)
        if on_file is None or on_file.valid_until <= watch.contract.valid_until:
            return (f"contract_number: no market-data licence of the organisation on file "
                    f"valid on {on.isoformat()}, after the one watched "
                    f"({watch.contract.contract_number}, until "
                    f"{watch.contract.valid_until.isoformat()}) [record]")
        self.offered[d.decision_id] = on_file
        return None

    def heard_licence(self, d: LicenceRenewalHeard) -> None:
        """The licence on file watched from now on; a lapse lifted (its suspension was lifted
        at the gateway by the service that recorded the renewal)."""
        p, s = self.process, self.state
        on_file = self.offered.pop(d.decision_id)
        lapsed = s.contract("market_data_licence").contract.lapsed  # type: ignore[union-attr]
        self.watch_contract("market_data_licence", on_file.contract_number,
                            on_file.valid_until)
        p.record("market_data_licence_on_file", actor=d.decided_by or "platform",
                 details={**on_file.model_dump(mode="json"), "lapse_lifted": lapsed,
                          "told_by": d.decided_by})
        if lapsed:
            p.notify(f"live/market_data_licence/{on_file.contract_number}/renewed",
                     "contract_renewed",
                     self.contract_context(s.contract("market_data_licence").contract),  # type: ignore[union-attr]
                     to=p.applicant)
        s.happened(workflow.now(), "contract_renewed",
                   f"{CONTRACT_NAMES['market_data_licence']} on file until "
                   f"{on_file.valid_until.isoformat()} (recorded by {d.decided_by})")
        self.settle_state()

    # --- changes -----------------------------------------------------------------------------

    async def can_change(self, d: ApiChange) -> str | None:
        s = self.state
        held = set(s.scopes())
        if missing := [a for a in d.remove if a not in held]:
            return f"remove: not APIs of this live service: {', '.join(missing)} [held]"
        if already := [a for a in d.add if a in held]:
            return f"add: already APIs of this live service: {', '.join(already)} [new]"
        if d.remove and not held - set(d.remove):
            return "remove: a live service keeps at least one API; to end it, terminate [last]"
        if d.add and s.pending_change is not None:
            return f"add: the change {s.pending_change.change_id} is under review [one_at_a_time]"
        if d.add:
            facts = await workflow.execute_local_activity_method(
                Catalogue.look_up_catalogue, CatalogueLookup(api_ids=d.add),
                summary="the added APIs in the catalogue", **LOCAL)
            if facts.unknown:
                return f"add: not in the catalogue: {', '.join(facts.unknown)} [catalogue]"
            self.offered[d.decision_id] = facts.apis
        return self.not_terminating()

    def change(self, d: ApiChange) -> None:
        p, s = self.process, self.state
        if d.remove:
            s.apis = [a for a in s.apis if a.api_id not in d.remove]
            p.write(KeyScopesChanged, scopes=s.scopes())
            s.happened(workflow.now(), "apis_removed", ", ".join(d.remove))
            p.notify(f"live/change/{d.decision_id}/removed", "live_service_change",
                     {"what": f"removed {', '.join(d.remove)}", "note": d.note}, to=p.applicant)
        if d.add:
            s.pending_change = PendingChange(change_id=d.decision_id, add=d.add,
                                             apis=self.offered.pop(d.decision_id))
            s.happened(workflow.now(), "change_requested", f"add {', '.join(d.add)}")
            p.notify(f"live/change/{d.decision_id}/review", "live_service_change",
                     {"what": f"review adding {', '.join(d.add)}", "note": d.note},
                     role=Role.PLATFORM_TEAM)

    async def can_review(self, d: ChangeReviewDecision) -> str | None:
        pending = self.state.pending_change
        if pending is None or pending.reviewed_by:
            return "no change waits for its review"
        return None

    def review(self, d: ChangeReviewDecision) -> None:
        s = self.state
        assert s.pending_change is not None
        if d.verdict == "reject":
            self.change_ended("rejected at review", d)
            return
        s.pending_change.reviewed_by = d.decided_by or ""
        s.happened(workflow.now(), "change_reviewed", f"add {', '.join(s.pending_change.add)}")

    async def can_approve(self, d: ChangeReviewDecision) -> str | None:
        s = self.state
        pending = s.pending_change
        if pending is None or not pending.reviewed_by:
            return "no reviewed change waits for approval"
        licence = s.contract("market_data_licence")
        if d.verdict == "approve" and any(a.is_market_data for a in pending.apis) and (
                licence is None or licence.contract.lapsed):
            return ("the change adds a market-data API: a valid market-data licence must be on "
                    "file first (market_data_licence_renewed) [licence]")
        return None

    def approve(self, d: ChangeReviewDecision) -> None:
        p, s = self.process, self.state
        pending = s.pending_change
        assert pending is not None
        if d.verdict == "reject":
            self.change_ended("rejected at approval", d)
            return
        s.apis = s.apis + pending.apis
        p.write(KeyScopesChanged, scopes=s.scopes())
        self.change_ended("applied", d)

    def change_ended(self, how: str, d: ChangeReviewDecision) -> None:
        p, s = self.process, self.state
        pending = s.pending_change
        assert pending is not None
        s.pending_change = None
        s.happened(workflow.now(), f"change_{how.split()[0]}", f"add {', '.join(pending.add)}")
        p.notify(f"live/change/{pending.change_id}/{how.split()[0]}", "live_service_change",
                 {"what": f"adding {', '.join(pending.add)} {how}", "note": d.note},
                 to=p.applicant)

    # --- termination and retirement ----------------------------------------------------------

    def not_terminating(self) -> str | None:
        s = self.state
        if s.terminate_at is not None and s.terminate_at <= workflow.now():
            return "the live service is ending"
        return None

    async def can_terminate(self, d: Termination) -> str | None:
        return self.not_terminating()

    def terminate(self, d: Termination) -> None:
        p, s, now = self.process, self.state, workflow.now()
        on = d.effective_on
        s.terminate_at = max(now, end_of(on - timedelta(days=1))) if on else now
        s.termination_by, s.termination_note = d.decided_by or "", d.note
        effective = s.terminate_at.date().isoformat()
        s.happened(now, "termination_scheduled", f"on {effective} by {s.termination_by}")
        if s.terminate_at > now:
            p.notify(f"live/termination/{d.decision_id}", "termination_scheduled",
                     {"effective_on": effective, "note": d.note}, to=p.applicant)

    def terminate_now(self) -> None:
        p, s = self.process, self.state
        p.revoke_keys(f"the live service ended: {s.termination_note}"[:500]
                      if s.termination_note else "the live service ended")
        s.service_state = "terminated"
        s.terminate_at = None
        p.notify("live/terminated", "service_terminated", {"note": s.termination_note},
                 to=p.applicant)
        p.notify("live/terminated/team", "service_terminated", {"note": s.termination_note},
                 role=Role.PLATFORM_TEAM)
        p.record("live_service_terminated", actor=s.termination_by or "platform",
                 reason=s.termination_note)
        s.happened(workflow.now(), "terminated", s.termination_note)

    async def can_retire(self, d: ApiRetired) -> str | None:
        if d.api_id not in self.state.scopes():
            return f"api_id: {d.api_id} is not an API of this live service [held]"
        if versions.patched(versions.RETIREMENT_ON_RECORD):
            # Not believed: anyone reaching Temporal can send it; the retirement's start, the
            # provider's sealed decision, is on the audit log with its date.
            on = await workflow.execute_local_activity_method(
                LiveServices.retirement_on_record,
                RetirementCheck(workflow_id=d.decided_by or "", api_id=d.api_id),
                summary="the retirement on record", **LOCAL)
            if on != d.retired_on.isoformat():
                return (f"api_id: no retirement of {d.api_id} on {d.retired_on.isoformat()} "
                        f"by its provider on record for {d.decided_by or 'an unnamed sender'}"
                        " [record]")
        return None

    def retired(self, d: ApiRetired) -> None:
        p, s = self.process, self.state
        s.retirements = [r for r in s.retirements if r.api_id != d.api_id] + [Retirement(
            api_id=d.api_id, retire_at=max(workflow.now(), end_of(d.retired_on - timedelta(days=1))))]
        p.notify(f"live/retirement/{d.api_id}", "api_retirement",
                 {"api_id": d.api_id, "retired_on": d.retired_on.isoformat()}, to=p.applicant)
        s.happened(workflow.now(), "api_retirement_announced",
                   f"{d.api_id} on {d.retired_on.isoformat()}")

    # --- what lists show -----------------------------------------------------------------------

    def show(self) -> None:
        """The search attributes (only what changed): the state, whom it waits on."""
        s = self.state
        pending = s.pending_change
        waiting = (Role.FINAL_APPROVER.value if (pending and pending.reviewed_by) or s.suspended_by
                   else Role.PLATFORM_TEAM.value if pending
                   else next((SIGNED_BY[w.contract.contract_type] for w in s.contracts
                              if w.contract.lapsed), ""))
        s.step, s.waiting_on = s.service_state, waiting
        shown = workflow.info().typed_search_attributes
        wanted = [(sa.LIVE_SERVICE_STATE, s.service_state), (sa.WAITING_ON, waiting or "nobody"),
                  (sa.APPLICATION_KIND, "live_service"), (sa.ORGANISATION_ID, s.organisation_id)]
        changed = [key.value_set(value) for key, value in wanted if shown.get(key) != value]
        if changed:
            workflow.upsert_search_attributes(changed)
