"""The live service after production (issue 13): real PostgreSQL, SMTP and worker, on the
time-skipping server, where years pass in seconds. What the key verification endpoint answers
is checked at each point (onboarding/store/keys.py `verify_key`, at the server's time)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle

from activities import platform_activities
from activities.records import Records
from onboarding.domain.admission import prepare_subscription
from onboarding.domain.keys import derive_key
from onboarding.domain.live_service import live_service_id
from onboarding.domain.models import (
    ApiRetirementDecision,
    ApplicationStatus,
    KeyValidity,
    LiveServicePolicy,
    SubscriptionApplication,
)
from onboarding.domain.record import Commit, Committed
from onboarding.store import keys as key_store
from onboarding.store.keys import KeyVerdict, verify_key
from onboarding.temporal import search_attributes as sa
from onboarding.temporal.live_services import start_missing
from onboarding.temporal.retirement import retire
from onboarding.temporal.codec import data_converter
from tests.support import drive, servers
from tests.support.data import (
    APPROVER,
    BANK_PROVIDER,
    PLATFORM,
    REVIEWER_AND_APPROVER,
    SALES,
    applicant,
    decision,
    new_application,
    subscription_form,
)
from tests.support.drive import PATH, approval
from tests.support.eventually import eventually
from tests.support.inbox import notice_id
from tests.support.records import audit, on_record

ORDINARY = ["account-balance"]
SLEEP_STEP = timedelta(days=20)
WITH_MARKET_DATA = ["stock-quotes", "account-balance"]


@pytest.fixture
async def time_skipping_server(plain_settings):
    """A time-skipping server for each test of this module: years pass here, and live services
    started as children of closed subscriptions, left by one test on a shared server, stalled
    the skipping of the tests after it (an RPC timeout or an h2 error on the sleep)."""
    env = await servers.start_time_skipping_server(data_converter(plain_settings))
    yield env
    await env.shutdown()


@pytest.fixture
async def own_time_skipping_server(plain_settings):
    """A server for one test alone: one whose service ends while children of other tests'
    closed subscriptions still live would stall time skipping (see the termination test)."""
    env = await servers.start_time_skipping_server(data_converter(plain_settings))
    yield env
    await env.shutdown()


def terms(number: str, today: date, days: int) -> dict[str, str]:
    return {"contract_number": number, "signed_on": today.isoformat(),
            "valid_from": today.isoformat(), "valid_until": (today + timedelta(days=days)).isoformat()}


class Service:
    """A subscription taken to production, and its live service."""

    def __init__(self, env, settings, pool, inbox, application: SubscriptionApplication) -> None:
        self.env, self.settings, self.pool, self.inbox = env, settings, pool, inbox
        self.application = application
        self.app_id = application.application_id
        self.handle: WorkflowHandle = env.client.get_workflow_handle(
            live_service_id(self.app_id), result_type=ApplicationStatus)

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    def key(self, environment: str = "production", generation: int = 0) -> str:
        issuance = f"{self.app_id}/key/{environment}" + (f"/{generation}" if generation else "")
        return derive_key(self.settings.key_issuance_secret.get_secret_value(), issuance,
                          environment)

    async def verify(self, environment: str = "production", generation: int = 0) -> KeyVerdict:
        return await verify_key(self.pool, self.key(environment, generation), await self.now())

    async def status(self) -> ApplicationStatus:
        return await self.handle.query("status", result_type=ApplicationStatus)

    async def until(self, holds, what: str) -> ApplicationStatus:
        async def check() -> ApplicationStatus:
            shown = await self.status()
            assert holds(shown), f"last status: {shown.live}"
            return shown
        return await eventually(check, what=what)

    async def sleep_until(self, at: datetime) -> None:
        """Time skipped in steps of at most SLEEP_STEP: one sleep over months makes the server
        run every timer and task on the way within one request, which a loaded machine can
        take longer to do than the request may last (and the skipping then goes on under the
        next test)."""
        while (left := at - await self.now()) > timedelta(0):
            await self.env.sleep(min(left, SLEEP_STEP))

    async def decide(self, name: str, payload: dict[str, Any]) -> ApplicationStatus:
        """A decision sent as the Web UI sends it (a signal); the status once it is recorded."""
        await self.handle.signal(name, payload)
        return await self.until(lambda s: any(d.decision_id == payload["decision_id"]
                                              for d in s.decisions), f"{name} recorded")

    def mail(self, part: str) -> list:
        return [m for m in self.inbox.messages
                if notice_id(m).startswith(f"{self.app_id}/live/") and part in notice_id(m)]


async def in_production(env, settings, pool, inbox, task_queue, apis=ORDINARY, *,
                        contract_days: int = 730, licence_days: int = 730,
                        policy: LiveServicePolicy | None = None,
                        validity: KeyValidity | None = None,
                        organisation: dict[str, Any] | None = None) -> Service:
    """A subscription driven to production with contracts valid `contract_days` (the licence
    `licence_days`) from the server's today; its live service running. Of `organisation`
    (another service's) when given: its licence on file, it signs none."""
    application = (prepare_subscription(subscription_form(apis, **organisation), settings)
                   if organisation else new_application(settings, apis)).model_copy(update={
        "live_service": policy or LiveServicePolicy(), "key_validity": validity or KeyValidity()})
    today = (await env.get_current_time()).date()
    handle = await drive.start(env.client, settings, task_queue, application)
    for step in PATH:
        if step == "market_data_licence" and ("stock-quotes" not in apis or organisation):
            continue
        name, payload = approval(step, application)
        for field in ("contract", "service_contract"):
            if field in payload:
                days = licence_days if step == "market_data_licence" else contract_days
                payload[field] = terms(f"{step}-{payload['decision_id'][:12]}", today, days)
        await drive.signal_at(handle, step, name, payload)
    assert (await drive.result(handle)).outcome == "in_production"
    service = Service(env, settings, pool, inbox, application)
    await service.until(lambda s: s.live is not None and s.takes, "the live service watching")
    return service


# --- the core: two years of keys -----------------------------------------------------------


async def test_two_years_of_renewals_with_overlap_and_continue_as_new(
        time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    """Reminders on their days, an automatic renewal with overlap (old key refused once it
    ends), runs continued as new every 90 days with the timeline intact."""
    env = time_skipping_server
    async with run_worker(env.client):
        s = await in_production(env, settings, pool, inbox, task_queue,
                                contract_days=1500, licence_days=1500)
        live_id = s.handle.id
        status = await s.status()
        assert status.process == "live_service" and status.live.state == "live"
        assert status.live.timeline[0].event == "live"
        production = next(k for k in status.keys if k.environment == "production")
        owners = await pool.fetch("SELECT DISTINCT owner_workflow_id FROM api_keys "
                                  "WHERE application_id = $1 AND status = 'active'", s.app_id)
        assert [r["owner_workflow_id"] for r in owners] == [live_id]
        assert (await s.verify()).valid

        # 30 days before expiry: the first reminder, and only it.
        await s.sleep_until(production.expires_at - timedelta(days=30, hours=-1))
        await eventually(lambda: s.mail(f"{production.key_id}/reminder/30"), what="reminder")
        assert not s.mail(f"{production.key_id}/reminder/7")

        # 14 days before: renewed automatically; both keys work during the overlap.
        await s.sleep_until(production.expires_at - timedelta(days=14, hours=-1))
        await eventually(lambda: s.mail(f"{production.key_id}/renewed"), what="renewal notice")
        assert (await s.verify()).valid and (await s.verify(generation=1)).valid
        await s.sleep_until(production.expires_at - timedelta(days=7, hours=2))
        assert (await s.verify()).valid

        # The overlap (7 days) over: the old key refused as revoked, the new one granted.
        await s.sleep_until(production.expires_at - timedelta(days=7, hours=-3))

        async def old_revoked() -> bool:
            assert (await s.verify()).reason == "revoked"
            return True
        await eventually(old_revoked, what="the old key revoked")
        renewed = await s.verify(generation=1)
        assert renewed.valid and renewed.apis == ORDINARY
        # The 7-day reminder is for keys not renewed: none was sent.
        assert not s.mail(f"{production.key_id}/reminder/7")

        # Two years in all: the run continued as new many times, the timeline whole.
        await s.sleep_until(production.expires_at + timedelta(days=1))
        final = await s.until(lambda st: st.run >= 8, "eight runs")
        events = [e.event for e in final.live.timeline]
        assert events[0] == "live" and "key_renewed" in events and "old_key_revoked" in events
        assert events.count("key_renewed") >= 4  # the sandbox key (180 days) renews too
        assert final.live.state == "live"
        keys = await pool.fetch("SELECT issuance_id, status FROM api_keys "
                                "WHERE application_id = $1 AND environment = 'production' "
                                "ORDER BY issued_at", s.app_id)
        assert [(r["issuance_id"].removeprefix(s.app_id), r["status"]) for r in keys] == [
            ("/key/production", "revoked"), ("/key/production/1", "active")]
        await s.handle.terminate("test over")


async def test_an_immediate_rotation_revokes_the_old_key_at_once(
        time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    env = time_skipping_server
    async with run_worker(env.client):
        s = await in_production(env, settings, pool, inbox, task_queue)
        refused = await s.decide("renew_key", decision(applicant(s.application),
                                                       environment="production", immediate=True))
        assert not refused.decisions[-1].applied
        assert "note: an immediate rotation needs a note" in refused.decisions[-1].reason
        await s.decide("renew_key", decision(applicant(s.application), environment="production",
                                             immediate=True, note="key leaked in a public repo"))

        async def rotated() -> bool:
            old, new = await s.verify(), await s.verify(generation=1)
            assert (old.reason, new.valid) == ("revoked", True), (old, new)
            return True
        await eventually(rotated, what="the rotation")
        await s.handle.terminate("test over")


class CrashAfterRenewal(Records):
    """write_record that fails once right after committing a renewal's key: Temporal retries
    the same commit, which must issue no second key."""

    crashed = False

    @activity.defn(name="write_record")
    async def write_record(self, commit: Commit) -> Committed:
        answer = await super().write_record(commit)
        if not CrashAfterRenewal.crashed and any(
                e.entry == "key" and e.generation for e in commit.entries):
            CrashAfterRenewal.crashed = True
            raise RuntimeError("worker lost after the commit")
        return answer


async def test_a_renewal_retried_after_a_crash_issues_one_key(
        time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    env = time_skipping_server
    activities = [a for a in platform_activities(pool, settings)
                  if a.__name__ != "write_record"] + [CrashAfterRenewal(pool, settings).write_record]
    async with run_worker(env.client, activities):
        s = await in_production(env, settings, pool, inbox, task_queue)
        await s.decide("renew_key", decision(applicant(s.application), environment="production"))
        await s.until(lambda st: sum(k.environment == "production" for k in st.keys) == 2,
                      "the renewal on record")
        assert CrashAfterRenewal.crashed
        rows = await pool.fetch("SELECT issuance_id FROM api_keys WHERE application_id = $1 "
                                "AND environment = 'production'", s.app_id)
        assert sorted(r["issuance_id"].removeprefix(s.app_id) for r in rows) == [
            "/key/production", "/key/production/1"]
        await eventually(lambda: len(s.inbox.with_notice(f"{s.app_id}/key/production/1/delivery"))
                         == 1, what="one delivery of the new key")
        await s.handle.terminate("test over")


# --- licences and contracts ----------------------------------------------------------------


async def test_a_lapsed_licence_suspends_market_data_on_every_key_of_the_organisation(
        time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    """The market-data APIs refused, the others granted; restored when the renewal is
    recorded."""
    env = time_skipping_server
    async with run_worker(env.client):
        s = await in_production(env, settings, pool, inbox, task_queue, WITH_MARKET_DATA,
                                licence_days=90)
        licence = next(c for c in (await s.status()).live.contracts
                       if c.contract_type == "market_data_licence")
        lapse = datetime.combine(licence.valid_until + timedelta(days=1), datetime.min.time(),
                                 (await s.now()).tzinfo)
        await s.sleep_until(lapse - timedelta(days=30, hours=-1))
        await eventually(lambda: len(s.mail("market_data_licence")) == 4,
                         what="the reminders (60 and 30 days) to sales and to the applicant")
        assert {notice_id(m).split("/reminder/")[1] for m in s.mail("market_data_licence")} \
            == {"60", "60/team", "30", "30/team"}
        assert (await s.verify()).apis == WITH_MARKET_DATA

        await s.sleep_until(lapse + timedelta(hours=1))

        async def partially_suspended() -> KeyVerdict:
            verdict = await s.verify()
            assert verdict.valid and verdict.apis == ["account-balance"]
            assert verdict.suspended_apis == ["stock-quotes"]
            return verdict
        await eventually(partially_suspended, what="market data suspended")
        sandbox = await s.verify("sandbox")
        assert sandbox.suspended_apis == ["stock-quotes"]  # every key of the organisation
        shown = await s.status()
        assert shown.live.suspensions == ["market_data_licence"] and shown.live.state == "live"

        today = (await s.now()).date()
        await s.decide("market_data_licence_renewed",
                       decision(SALES, contract=terms(f"L-{s.app_id[-12:]}", today, 365)))

        async def restored() -> bool:
            verdict = await s.verify()
            assert verdict.apis == WITH_MARKET_DATA and verdict.suspended_apis == []
            return True
        await eventually(restored, what="market data restored")
        assert (await s.status()).live.suspensions == []
        await s.handle.terminate("test over")


async def test_a_licence_renewed_through_one_service_lifts_the_lapse_in_every_services_status(
        own_time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    """Two live services of one organisation using market data, and one using none: the
    licence lapses for both; renewed through the first, the second hears of it (checked
    against the record), lifts the lapse in its status and tells its applicant; the third is
    not told. On a server of its own: three more children of closed subscriptions on the
    module's server made its time skipping stall in the whole module's run."""
    env = own_time_skipping_server
    async with run_worker(env.client):
        first = await in_production(env, settings, pool, inbox, task_queue, WITH_MARKET_DATA,
                                    licence_days=60)
        org = first.application.organisation.model_dump(mode="json")
        second = await in_production(env, settings, pool, inbox, task_queue, WITH_MARKET_DATA,
                                     organisation=org)
        ordinary = await in_production(env, settings, pool, inbox, task_queue, ORDINARY,
                                       organisation=org)
        licence = next(c for c in (await second.status()).live.contracts
                       if c.contract_type == "market_data_licence")
        # A renewal nobody recorded: refused on the second's record, nothing changes.
        forged = await second.decide("market_data_licence_renewal_heard", decision(
            first.handle.id, contract_number="NOT-ON-FILE"))
        assert not forged.decisions[-1].applied
        assert forged.decisions[-1].reason.endswith("[record]")
        assert "contract_number: no market-data licence" in forged.decisions[-1].reason

        lapse = datetime.combine(licence.valid_until + timedelta(days=1), datetime.min.time(),
                                 UTC)
        await first.sleep_until(lapse + timedelta(hours=1))
        for s in (first, second):
            await s.until(lambda st: st.live.suspensions == ["market_data_licence"],
                          "the lapse in the status")
        assert (await second.verify()).suspended_apis == ["stock-quotes"]

        today = (await first.now()).date()
        number = f"L-{first.app_id[-12:]}"
        await first.decide("market_data_licence_renewed",
                           decision(SALES, contract=terms(number, today, 365)))
        shown = await second.until(lambda st: st.live.suspensions == [], "the second told")
        assert next(c for c in shown.live.contracts
                    if c.contract_type == "market_data_licence").contract_number == number
        assert shown.live.state == "live"  # a licence's lapse suspends market data only
        assert shown.live.timeline[-1].event == "contract_renewed"
        assert first.handle.id in shown.live.timeline[-1].detail
        assert (await second.verify()).apis == WITH_MARKET_DATA
        await eventually(lambda: second.mail(f"market_data_licence/{number}/renewed"),
                         what="the second's applicant told")
        assert (await first.status()).live.suspensions == []
        told = [e for e in await audit(pool, first.app_id)
                if e["action"] == "market_data_licence_renewal_told"]
        assert [e["details"]["told"] for e in told] == [[second.handle.id]]
        heard = [e for e in await audit(pool, second.app_id, second.handle.id)
                 if e["action"] == "market_data_licence_on_file"]
        assert [(e["details"]["contract_number"], e["details"]["lapse_lifted"])
                for e in heard] == [(number, True)]
        assert not any(d.decision == "market_data_licence_renewal_heard"
                       for d in (await ordinary.status()).decisions)
        for s in (first, second, ordinary):
            await s.handle.terminate("test over")


async def test_a_lapsed_service_contract_suspends_the_keys(
        time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    env = time_skipping_server
    async with run_worker(env.client):
        s = await in_production(env, settings, pool, inbox, task_queue, contract_days=60)
        await s.sleep_until((await s.now()) + timedelta(days=62))

        async def suspended() -> bool:
            verdict = await s.verify()
            assert (verdict.valid, verdict.reason) == (False, "suspended")
            assert verdict.apis == [] and verdict.organisation is None
            return True
        await eventually(suspended, what="keys suspended")
        assert (await s.status()).live.state == "suspended"
        today = (await s.now()).date()
        await s.decide("service_contract_renewed",
                       decision(APPROVER, contract=terms(f"S-{s.app_id[-12:]}", today, 730)))
        await s.decide("platform_contract_renewed",
                       decision(PLATFORM, contract=terms(f"P-{s.app_id[-12:]}", today, 730)))

        async def working() -> bool:
            assert (await s.verify()).valid
            return True
        await eventually(working, what="keys working again")
        assert (await s.status()).live.state == "live"
        await s.handle.terminate("test over")


# --- suspension, change, termination ---------------------------------------------------------


async def test_suspension_and_four_eyes_reinstatement(
        time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    """The platform team suspends (with a reason), effective at the gateway at once; a final
    approver reinstates, never the one who suspended, even holding both roles."""
    env = time_skipping_server
    await pool.execute("INSERT INTO staff_roles VALUES ($1, 'platform_team') "
                       "ON CONFLICT DO NOTHING", REVIEWER_AND_APPROVER)
    try:
        async with run_worker(env.client):
            s = await in_production(env, settings, pool, inbox, task_queue)
            no_reason = await s.decide("suspend", decision(REVIEWER_AND_APPROVER))
            assert no_reason.decisions[-1].reason == "note: a suspension says why [required]"
            await s.decide("suspend", decision(REVIEWER_AND_APPROVER,
                                               note="security incident INC-7"))

            async def suspended() -> bool:
                assert (await s.verify()).reason == "suspended"
                assert (await s.verify("sandbox")).reason == "suspended"
                return True
            await eventually(suspended, what="the suspension at the gateway")
            await eventually(lambda: s.mail("suspended"), what="the applicant told")
            assert (await s.status()).live.state == "suspended"
            # What lists filter on: the state, and whom it now waits on.
            async def listed() -> bool:
                shown = (await s.handle.describe()).typed_search_attributes
                assert (shown.get(sa.LIVE_SERVICE_STATE), shown.get(sa.WAITING_ON)) == (
                    "suspended", "final_approver"), shown
                return True
            await eventually(listed, what="the search attributes")

            by_team = await s.decide("reinstate", decision(PLATFORM))
            assert by_team.decisions[-1].reason == \
                f"{PLATFORM} does not hold the role final_approver"
            same = await s.decide("reinstate", decision(REVIEWER_AND_APPROVER))
            assert "(four eyes)" in same.decisions[-1].reason
            assert (await s.verify()).reason == "suspended"

            await s.decide("reinstate", decision(APPROVER))

            async def working() -> bool:
                assert (await s.verify()).valid
                return True
            await eventually(working, what="reinstated")
            assert (await s.status()).live.state == "live"
            await eventually(lambda: s.mail("reinstated"), what="the applicant told")
            await s.handle.terminate("test over")
    finally:
        await pool.execute("DELETE FROM staff_roles WHERE staff_id = $1 AND role = "
                           "'platform_team'", REVIEWER_AND_APPROVER)


async def test_termination_on_its_date_revokes_every_key_and_ends_the_service(
        own_time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    env = own_time_skipping_server
    async with run_worker(env.client):
        s = await in_production(env, settings, pool, inbox, task_queue)
        # The time-skipping server cannot skip past a child workflow completing after its
        # parent closed (its sleep never returns; the dev server and production servers have no
        # such trouble: tests/histories/v2_live_service_*, recorded on the dev server, ends so).
        # So this service is one the migration started, which has no parent.
        await s.handle.terminate("restarted by the migration")
        await pool.execute("UPDATE api_keys SET owner_workflow_id = NULL WHERE application_id = $1",
                           s.app_id)
        await start_missing(env.client, pool, settings.model_copy(
            update={"temporal_task_queue": task_queue}))
        s.handle = env.client.get_workflow_handle(s.handle.id, result_type=ApplicationStatus)
        await s.until(lambda st: st.takes, "the live service watching")
        no_reason = await s.decide("terminate_service", decision(PLATFORM))
        assert no_reason.decisions[-1].reason == \
            "note: a termination by the platform says why [required]"
        on = (await s.now()).date() + timedelta(days=30)
        await s.decide("terminate", decision(applicant(s.application),
                                             effective_on=on.isoformat(), note="closing"))
        shown = await s.status()
        assert shown.live.terminating_on == on and shown.live.state == "live"
        assert await pool.fetchval("SELECT status FROM applications WHERE application_id = $1",
                                   s.app_id) == "in_production"
        await eventually(lambda: s.mail("termination"), what="the termination announced")
        assert (await s.verify()).valid

        await s.sleep_until(datetime.combine(on, datetime.min.time(), (await s.now()).tzinfo)
                            - timedelta(hours=1))
        assert (await s.verify()).valid
        await env.sleep(timedelta(hours=2))

        async def completed() -> bool:
            return (await s.handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        await eventually(completed, what="the live service ended")
        ended = await s.handle.result()
    assert (ended.outcome, ended.live.state) == ("terminated", "terminated")
    assert [e.event for e in ended.live.timeline][-2:] == ["termination_scheduled", "terminated"]
    assert ended.live.timeline[0].detail == "started by migration"
    assert (await s.verify()).reason == "revoked" and (await s.verify("sandbox")).reason == "revoked"
    assert s.mail("terminated")
    actions = [e["action"] for e in await audit(pool, s.app_id)]
    assert "live_service_terminated" in actions
    # The application's row ends with it (it said in_production while the service lived).
    assert await pool.fetchrow("SELECT status, current_step FROM applications "
                               "WHERE application_id = $1", s.app_id) == ("terminated", "terminated")


async def test_a_change_adding_apis_is_reviewed_removing_takes_effect_at_once(
        time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    env = time_skipping_server
    async with run_worker(env.client):
        s = await in_production(env, settings, pool, inbox, task_queue, WITH_MARKET_DATA,
                                licence_days=365)
        contact = applicant(s.application)
        unknown = await s.decide("change_apis", decision(contact, add=["no-such-api"]))
        assert unknown.decisions[-1].reason == "add: not in the catalogue: no-such-api [catalogue]"
        await s.decide("change_apis", decision(contact, add=["index-values"],
                                               remove=["stock-quotes"]))

        async def removed() -> bool:
            assert (await s.verify()).apis == ["account-balance"]
            return True
        await eventually(removed, what="stock-quotes removed at once")
        shown = await s.status()
        assert shown.live.pending_change == "add index-values"
        assert not (await s.decide("change_approval", decision(APPROVER, verdict="approve"))
                    ).decisions[-1].applied  # not reviewed yet
        await s.decide("change_review", decision(PLATFORM, verdict="approve"))
        await s.decide("change_approval", decision(APPROVER, verdict="approve"))

        async def added() -> bool:
            assert (await s.verify()).apis == ["account-balance", "index-values"]
            assert (await s.verify("sandbox")).apis == ["account-balance", "index-values"]
            return True
        await eventually(added, what="index-values granted")
        assert (await s.status()).live.pending_change == ""
        await s.handle.terminate("test over")


async def test_applications_in_production_before_the_live_service_get_theirs_once(
        time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    """The migration: an application in production whose keys no live service owns gets one;
    run again, it starts nothing."""
    env = time_skipping_server
    async with run_worker(env.client):
        s = await in_production(env, settings, pool, inbox, task_queue)
        # As an application in production before this change: no live service, keys unowned.
        await s.handle.terminate("as before the live service existed")
        await pool.execute("UPDATE api_keys SET owner_workflow_id = NULL WHERE application_id = $1",
                           s.app_id)
        ours = settings.model_copy(update={"temporal_task_queue": task_queue})
        first = await start_missing(env.client, pool, ours)
        # Started again under its id: Temporal allows it once the earlier run was terminated.
        assert s.handle.id in first
        migrated = s.env.client.get_workflow_handle(s.handle.id, result_type=ApplicationStatus)
        s.handle = migrated
        await s.until(lambda st: st.takes and st.live.timeline[0].detail == "started by migration",
                      "the migrated live service")
        owners = await pool.fetch("SELECT DISTINCT owner_workflow_id FROM api_keys "
                                  "WHERE application_id = $1 AND status = 'active'", s.app_id)
        assert [r["owner_workflow_id"] for r in owners] == [s.handle.id]
        assert s.handle.id not in await start_missing(env.client, pool, ours)
        for workflow_id in first:  # any other application the shared database left unwatched
            await env.client.get_workflow_handle(workflow_id).terminate("test over")


async def test_an_api_retired_by_its_provider_reaches_every_live_service_using_it(
        time_skipping_server, run_worker, settings, pool, task_queue, inbox):
    env = time_skipping_server
    api_id = f"ret-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        """INSERT INTO api_catalogue (api_id, name, category, is_market_data,
               provider_business_registration_number) VALUES ($1, 'Retiring', 'banking', false,
               '2208162517')""", api_id)
    async with run_worker(env.client):
        services = [await in_production(env, settings, pool, inbox, task_queue,
                                        [api_id, "account-balance"]) for _ in range(2)]
        ours = settings.model_copy(update={"temporal_task_queue": task_queue})
        # The start is a sealed decision: unsealed (a raw client typing the provider's
        # contact), or sealed for someone who is not one, it is refused on the record.
        unsealed = await env.client.start_workflow(
            "ApiRetirement", ApiRetirementDecision(
                application_id=f"api-retirement-{api_id}", decision="retire_api",
                decision_id="typed-1", decided_by=BANK_PROVIDER, api_id=api_id,
                retired_on=date.today(), attestation=None),
            id=f"api-retirement-{api_id}", task_queue=task_queue)
        with pytest.raises(WorkflowFailureError) as not_sealed:
            await asyncio.wait_for(unsealed.result(), drive.TIMEOUT)
        assert "retire_api refused: identity not verified" in str(not_sealed.value.cause)
        malformed = await env.client.start_workflow(
            "ApiRetirement", {"application_id": f"api-retirement-{api_id}",
                              "decision": "retire_api", "decision_id": "malformed-1",
                              "api_id": api_id, "attestation": None},
            id=f"api-retirement-{api_id}", task_queue=task_queue)
        with pytest.raises(WorkflowFailureError) as no_date:
            await asyncio.wait_for(malformed.result(), drive.TIMEOUT)
        assert str(no_date.value.cause) == \
            "retire_api refused: malformed retire_api: retired_on: Field required [missing]"
        with pytest.raises(WorkflowFailureError) as not_provider:  # only the provider retires it
            await asyncio.wait_for((await retire(env.client, ours, api_id, date.today(),
                                                 PLATFORM)).result(), drive.TIMEOUT)
        assert f"{PLATFORM} is not a registered contact of the API's provider" in str(
            not_provider.value.cause)
        on = (await services[0].now()).date() + timedelta(days=2)
        # Announced to a live service by anyone but a retirement taken on the record: refused.
        forged = await services[0].decide("api_retired", decision(
            f"api-retirement-{api_id}", api_id=api_id, retired_on=on.isoformat()))
        assert forged.decisions[-1].reason == (
            f"api_id: no retirement of {api_id} on {on.isoformat()} by its provider on record "
            f"for api-retirement-{api_id} [record]")
        assert forged.live.apis == [api_id, "account-balance"]
        handle = await retire(env.client, ours, api_id, on, BANK_PROVIDER, "replaced by v2")
        for s in services:
            await eventually(lambda s=s: s.mail(f"retirement/{api_id}"), what="told")
            assert (await s.verify()).apis == [api_id, "account-balance"]
        await services[0].sleep_until(datetime.combine(on, datetime.min.time(), UTC)
                                      - timedelta(hours=1))
        assert (await services[0].verify()).apis == [api_id, "account-balance"]
        await env.sleep(timedelta(hours=2))

        async def completed() -> bool:
            return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        await eventually(completed, what="the retirement done")
        done = await handle.result()
        assert sorted(done.told) == sorted(s.handle.id for s in services) and done.retired
        for s in services:
            async def gone(s=s) -> bool:
                assert (await s.verify()).apis == ["account-balance"]
                return True
            await eventually(gone, what="the API out of the keys' scopes")
            assert (await s.status()).live.apis == ["account-balance"]
            await s.handle.terminate("test over")
    assert await pool.fetchval("SELECT stage FROM api_catalogue WHERE api_id = $1",
                               api_id) == "withdrawn"
    starts = await pool.fetch(
        """SELECT actor, result, reason, details FROM audit_trail
           WHERE workflow_id = $1 AND action = 'retire_api' ORDER BY seq""",
        f"api-retirement-{api_id}")
    assert [(r["actor"], r["result"]) for r in starts] == [
        (f"{BANK_PROVIDER} (not verified)", "refused"), ("unknown (not verified)", "refused"),
        (PLATFORM, "refused"), (BANK_PROVIDER, "applied")]
    assert starts[0]["reason"] == "identity not verified"
    assert starts[3]["details"]["identity"]["email"] == BANK_PROVIDER
    assert starts[3]["details"]["retired_on"] == on.isoformat()


# --- the key cache hears of suspensions --------------------------------------------------------


async def test_a_suspension_notifies_the_key_cache_of_the_keys_it_covers(pool, settings):
    """Migration 0030's trigger: suspending and lifting notify api_key_changes with the hashes
    of the keys covered (THE RULE of migration 0020), so cached verdicts are forgotten."""
    async with pool.acquire() as conn:
        # Open, not in production: the migration must not take it for one left unwatched.
        app_id, brn = await on_record(conn, "subscription", ORDINARY, step="sandbox_testing")
        hashes = [secrets.token_bytes(32) for _ in range(2)]
        for n, digest in enumerate(hashes):
            await conn.execute(
                """INSERT INTO api_keys (key_id, issuance_id, application_id,
                       business_registration_number, environment, key_hash, display_prefix,
                       scopes, expires_at)
                   VALUES (gen_random_uuid(), $1, $2, $3, 'production', $4, 'cmpr_test', $5,
                           now() + interval '1 day')""",
                f"{app_id}/key/production/{n}", app_id, brn, digest, ORDINARY)
    heard: asyncio.Queue[str] = asyncio.Queue()

    def hear(*args: Any) -> None:
        heard.put_nowait(args[3])
    listener = await pool.acquire()
    try:
        await listener.add_listener("api_key_changes", hear)
        async with pool.acquire() as conn:
            await key_store.suspend(conn, suspension_id=f"{app_id}/suspension/t", cause="platform",
                                    business_registration_number=brn, application_id=app_id,
                                    scopes=None, reason="incident", suspended_by=PLATFORM)
        told = await asyncio.wait_for(heard.get(), 10)
        assert set(told.split(",")) == {h.hex() for h in hashes}
        async with pool.acquire() as conn:
            assert await key_store.lift(conn, business_registration_number=brn,
                                        application_id=app_id, cause="platform",
                                        lifted_by=APPROVER) == [f"{app_id}/suspension/t"]
        assert set((await asyncio.wait_for(heard.get(), 10)).split(",")) == {
            h.hex() for h in hashes}
    finally:
        await listener.remove_listener("api_key_changes", hear)
        await pool.release(listener)
