"""The reviewer CLI (`openapi-onboarding`) against the real dev server, a real worker and
PostgreSQL: its settings come from the environment, pointed at the test servers.

The CLI runs asyncio.run inside, so each invocation runs in a thread (the test has a loop).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import typer
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError
from typer.testing import CliRunner, Result

from activities.records import Records
from onboarding.cli import app as cli
from onboarding.cli import login as signing_in
from onboarding.core.config import get_settings
from onboarding.domain.decisions import CATALOGUES
from onboarding.domain.live_service import live_service_id
from onboarding.domain.models import ApplicationStatus
from onboarding.domain.record import Commit, Committed
from onboarding.identity.attestation import AttestationVerifier, verification_keys
from tests.support import data, drive, identity
from tests.support.data import APPROVER, PLATFORM, REVIEWER, SALES
from tests.support.eventually import eventually
from tests.support.identity import TestIdentityProvider
from tests.support.stand_ins import with_stand_ins

runner = CliRunner()
# Set by cli_env: how a test's reviewer signs in before each decision.
_provider: TestIdentityProvider | None = None


async def run(*args: str) -> Result:
    """The CLI with these arguments. A decision `--by` someone is sent as they would send it:
    signed in as them first (their tokens where `login` keeps them)."""
    if args and args[0] in ("decide", "withdraw") and "--by" in args and _provider:
        await sign_in_as(args[list(args).index("--by") + 1])
    return await asyncio.to_thread(runner.invoke, cli.app, list(args))


async def sign_in_as(email: str) -> None:
    assert _provider is not None
    signing_in.save(get_settings(), await _provider.sign_in(email, identity.CLI_CLIENT))


@pytest.fixture
def cli_env(monkeypatch, dev_server, settings, roster, task_queue, identity_provider,
            codec_server, tmp_path):
    """The CLI's settings (get_settings) point at this test's servers and task queue, the
    identity provider and the codec server (which seals every decision)."""
    global _provider
    client = dev_server.client
    monkeypatch.setenv("TEMPORAL_ADDRESS", client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", client.namespace)
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", task_queue)
    monkeypatch.setenv("DATABASE_URL", settings.database_url.get_secret_value())
    monkeypatch.setenv("PAYLOAD_ENCRYPTION_KEYS",
                       settings.payload_encryption_keys.get_secret_value())
    monkeypatch.setenv("OIDC_ISSUER", identity_provider.issuer)
    monkeypatch.setenv("TEMPORAL_CODEC_ENDPOINT", codec_server)
    monkeypatch.setenv("CLI_TOKEN_FILE", str(tmp_path / "config" / "tokens.json"))
    get_settings.cache_clear()
    _provider = identity_provider
    yield
    _provider = None
    get_settings.cache_clear()


async def start(dev_server, settings, task_queue, apis=None):
    application = data.new_application(settings, apis)
    return application, await drive.start(dev_server.client, settings, task_queue, application)


async def listed(args: list[str], ids: list[str], timeout: float = 15) -> Result:
    """Run `queue` until it lists every one of `ids`: visibility is eventually consistent."""

    async def listing_all() -> Result:
        result = await run(*args)
        if result.exit_code != 0:
            pytest.fail(result.output)
        assert all(i in result.output for i in ids), f"it listed: {result.output}"
        return result

    return await eventually(listing_all, timeout, f"queue listing {ids}", interval=0.2)


async def test_queue_lists_what_waits_on_a_role_oldest_first(
    cli_env, dev_server, run_worker, settings, task_queue
):
    async with run_worker(dev_server.client):
        older, first = await start(dev_server, settings, task_queue)
        await drive.wait_for_step(first, "pre_verification")
        _, second = await start(dev_server, settings, task_queue)
        await drive.wait_for_step(second, "pre_verification")

        by_role = await listed(["queue", "--role", "pre_verification_reviewer"],
                               [first.id, second.id])
        mine = await listed(["queue", "--me", REVIEWER], [first.id, second.id])
        platform = await run("queue", "--role", "platform_team")
        publications = await run("queue", "--role", "pre_verification_reviewer",
                                 "--process", "publication")

    out = by_role.output
    assert out.index(first.id) < out.index(second.id)  # oldest first
    row = next(line for line in out.splitlines() if first.id in line)
    # process, organisation (its name from the database), step, age, next deadline
    for expected in ("subscription", older.organisation.legal_name, "pre_verification",
                     "today", "reminder"):
        assert expected in row, (expected, row)
    assert "holds: pre_verification_reviewer" in mine.output
    assert mine.output.index(first.id) < mine.output.index(second.id)
    assert "nothing waiting on platform_team" in platform.output
    assert first.id not in publications.output


async def test_decide_applies_a_pre_verification_approval(
    cli_env, dev_server, run_worker, settings, task_queue
):
    async with run_worker(dev_server.client):
        _, handle = await start(dev_server, settings, task_queue)
        await drive.wait_for_step(handle, "pre_verification")
        result = await run("decide", handle.id, "pre_verification", "--by", REVIEWER,
                           "--verdict", "approve", "--criteria-all", "--decision-id", "pv-cli-1",
                           "--note", "fits the platform")
        moved = await drive.wait_for_step(handle, "platform_contract")

    assert result.exit_code == 0, result.output
    assert "applied: pre_verification pv-cli-1 at step pre_verification" in result.output
    [d] = moved.decisions
    assert (d.decision_id, d.decision, d.decided_by, d.note, d.applied) == \
        ("pv-cli-1", "pre_verification", REVIEWER, "fits the platform", True)
    assert moved.waiting_on == "platform_team"


class SlowRecord(Records):
    """Writes the record of the licence step slowly, as a loaded database would: too slow for
    the workflow task (the commit goes on as a regular activity, workflows/process.py
    `_committed`), then 1.5 s."""

    @activity.defn(name="write_record")
    async def write_record(self, commit: Commit) -> Committed:
        if commit.step == "market_data_licence":
            if activity.info().is_local:
                raise ApplicationError("the database is slow", non_retryable=True)
            await asyncio.sleep(1.5)
        return await super().write_record(commit)


async def test_decisions_sent_back_to_back_each_meet_their_step(
    cli_env, dev_server, run_worker, settings, pool, task_queue
):
    """As when a reviewer pastes several commands at once: between two steps the platform
    works for a moment and takes no decision; `decide` waits that out instead of failing."""
    stand_in = SlowRecord(pool, settings)
    async with run_worker(dev_server.client, with_stand_ins(pool, settings, stand_in)):
        application, handle = await start(dev_server, settings, task_queue,
                                          ["stock-quotes", "account-balance"])
        await drive.wait_for_step(handle, "pre_verification")
        results = [
            await run("decide", handle.id, "pre_verification", "--by", REVIEWER,
                      "--verdict", "approve", "--criteria-all"),
            # Sent while the licence step's record is written.
            await run("decide", handle.id, "market_data_licence", "--by", SALES,
                      "--verdict", "concluded", "--contract-number", "MD-1",
                      "--signed-on", "2026-12-03", "--valid-from", "2026-12-03",
                      "--valid-until", "2028-12-02"),
            await run("decide", handle.id, "platform_contract", "--by", PLATFORM,
                      "--verdict", "signed", "--eligibility-confirmed",
                      "--contract-number", "OP-1", "--signed-on", "2026-12-03",
                      "--valid-from", "2026-12-03", "--valid-until", "2028-12-02"),
        ]
        moved = await drive.wait_for_step(handle, "final_approval")
        history = await handle.fetch_history()

    assert [r.exit_code for r in results] == [0, 0, 0], [r.output for r in results]
    # Every commit made in its workflow task but the licence step's, which went on as a
    # regular activity once its local attempt failed.
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name
                 for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert scheduled == ["write_record"], scheduled
    assert "the platform is still working on step market_data_licence" in results[1].stderr
    assert [d.applied for d in moved.decisions] == [True, True, True]
    assert moved.takes == ["final_approval"]


async def test_decide_refuses_a_malformed_decision_and_sends_nothing(
    cli_env, dev_server, run_worker, settings, task_queue, monkeypatch
):
    connections = []
    real_connect = cli.connect

    async def counting_connect(settings, **options):
        connections.append(settings)
        return await real_connect(settings, **options)

    monkeypatch.setattr(cli, "connect", counting_connect)
    async with run_worker(dev_server.client):
        _, handle = await start(dev_server, settings, task_queue)
        await drive.wait_for_step(handle, "pre_verification")
        attempts = {
            "verdict: Input should be 'approve', 'reject' or 'request_changes' [literal_error]":
                ["--verdict", "aprove", "--criteria-all"],
            "criteria.not_speculative_or_gambling: Field required [missing]":
                ["--verdict", "approve",
                 "--json", '{"criteria": {"related_to_capital_market_development": true}}'],
            "contract: Extra inputs are not permitted [extra_forbidden]":
                ["--verdict", "approve", "--criteria-all", "--contract-number", "C-1"],
            "--json: must be a JSON object": ["--verdict", "approve", "--json", "[1]"],
        }
        results = {expected: await run("decide", handle.id, "pre_verification",
                                       "--by", REVIEWER, *args)
                   for expected, args in attempts.items()}
        unknown = await run("decide", handle.id, "pre_review", "--by", REVIEWER)
        status = await drive.status(handle)

    for expected, result in results.items():
        assert result.exit_code == 2, result.output
        assert expected in result.output
    assert "not sent" in results[next(iter(attempts))].output
    assert unknown.exit_code == 2
    assert "pre_review: not a subscription decision; one of: pre_verification" in unknown.output
    assert connections == []  # never even connected
    assert (status.step, status.decisions) == ("pre_verification", [])


def test_a_decision_larger_than_the_catalogue_allows_is_not_sent(capsys):
    """The cap is the catalogue's: a revised specification has room for an OpenAPI document,
    not for more."""
    cap = CATALOGUES["publication"]["revise_specification"].max_payload_bytes
    application = "publication-1248100998-bond-yields"
    fits = {"integration_method": "vpn", "specification": {"openapi": "3.1.0",
                                                           "x-padding": "y" * (cap - 1000)}}
    too_big = {**fits, "specification": {"openapi": "3.1.0", "x-padding": "y" * cap}}

    assert cli.build_decision(application, "revise_specification", fits, {})
    with pytest.raises(typer.Exit) as refused:
        cli.build_decision(application, "revise_specification", too_big, {})
    assert refused.value.exit_code == 2
    assert re.search(rf"revise_specification not sent, the decision is too large: \d+ bytes; "
                     rf"a revise_specification may have at most {cap} \[too_large\]$",
                     capsys.readouterr().err.strip())


async def test_decide_for_another_step_is_rejected_by_the_validator(
    cli_env, dev_server, run_worker, settings, task_queue
):
    async with run_worker(dev_server.client):
        _, handle = await start(dev_server, settings, task_queue)
        await drive.wait_for_step(handle, "pre_verification")
        wrong_step = await run("decide", handle.id, "final_approval", "--by", APPROVER,
                               "--verdict", "approve")
        no_criteria = await run("decide", handle.id, "pre_verification", "--by", REVIEWER,
                                "--verdict", "approve")
        status = await drive.status(handle)

    assert wrong_step.exit_code == 2, wrong_step.output
    assert ("not applied (rejected by the workflow, not recorded): the application is at step "
            "pre_verification, which takes pre_verification, not final_approval"
            ) in wrong_step.output
    assert no_criteria.exit_code == 2, no_criteria.output
    assert "approval needs criteria" in no_criteria.output
    assert (status.step, status.decisions) == ("pre_verification", [])


async def test_show_prints_the_timeline_with_refused_decisions(
    cli_env, dev_server, run_worker, settings, task_queue
):
    async with run_worker(dev_server.client):
        application, handle = await start(dev_server, settings, task_queue)
        contact = str(application.organisation.contact_emails[0])
        await drive.wait_for_step(handle, "pre_verification")
        no_role = await run("decide", handle.id, "pre_verification", "--by", PLATFORM,
                            "--verdict", "approve", "--criteria-all")
        approved = await run("decide", handle.id, "pre_verification", "--by", REVIEWER,
                             "--verdict", "approve", "--criteria-all", "--note", "fits")
        await drive.wait_for_step(handle, "platform_contract")
        shown = await run("show", handle.id)
        withdrawn = await run("withdraw", handle.id, "--by", contact, "--note", "We pivot")
        ended = await drive.result(handle)
        after = await run("show", handle.id)

    assert no_role.exit_code == 1, no_role.output
    reason = f"{PLATFORM} does not hold the role pre_verification_reviewer"
    assert "refused at step pre_verification" in no_role.output and reason in no_role.output
    assert approved.exit_code == 0, approved.output
    assert shown.exit_code == 0, shown.output
    out = shown.output
    for expected in (handle.id, "platform_contract", "platform_team", "reminder", "escalation",
                     "today", "decisions"):
        assert expected in out, expected
    assert re.search(r"^run\s+1\s*$", out, re.M) and "not listed" not in out  # one run, all
    timeline = [line for line in out.splitlines() if "pre_verification" in line and "@" in line]
    assert len(timeline) == 2
    assert PLATFORM in timeline[0] and "refused" in timeline[0] and reason in timeline[0]
    assert REVIEWER in timeline[1] and "applied" in timeline[1] and "fits" in timeline[1]

    assert withdrawn.exit_code == 0, withdrawn.output
    assert "applied: withdraw" in withdrawn.output
    assert ended.outcome == "withdrawn"
    assert re.search(r"outcome\s+withdrawn", after.output)
    assert "We pivot" in after.output


async def test_one_subscription_from_submission_to_production_through_the_cli(
    cli_env, dev_server, run_worker, settings, pool, task_queue, tmp_path
):
    form = data.subscription_form(["stock-quotes", "account-balance"])
    contact = form["organisation"]["contact_emails"][0]
    path = tmp_path / "application.json"
    path.write_text(json.dumps(form))

    def contract(prefix: str) -> list[str]:
        return ["--contract-number", f"{prefix}-{uuid.uuid4().hex[:8]}", "--signed-on",
                "2026-12-01", "--valid-from", "2026-12-01", "--valid-until", "2028-11-30"]

    steps = [
        ("pre_verification", "pre_verification",
         ["--by", REVIEWER, "--verdict", "approve", "--criteria-all"]),
        ("market_data_licence", "market_data_licence",
         ["--by", SALES, "--verdict", "concluded", *contract("MD")]),
        ("platform_contract", "platform_contract",
         ["--by", PLATFORM, "--verdict", "signed", "--eligibility-confirmed", *contract("OP")]),
        ("final_approval", "final_approval", ["--by", APPROVER, "--verdict", "approve"]),
        ("sandbox_testing", "sandbox_testing_complete",
         ["--by", contact, "--note", "all scenarios pass"]),
        ("sandbox_verification", "sandbox_verification",
         ["--by", PLATFORM, "--verdict", "approve"]),
        ("production_switch", "production_switch",
         ["--by", APPROVER, "--verdict", "approve", *contract("SV")]),
    ]
    async with run_worker(dev_server.client):
        submitted = await run("submit", "subscription", str(path))
        assert submitted.exit_code == 0, submitted.output
        app_id = re.search(r"submitted: (\S+)", submitted.output)[1]
        again = await run("submit", "subscription", str(path))
        handle = dev_server.client.get_workflow_handle(app_id, result_type=ApplicationStatus)
        for step, decision, args in steps:
            await drive.wait_for_step(handle, step)
            result = await run("decide", app_id, decision, *args)
            assert result.exit_code == 0, (step, result.output)
            assert f"applied: {decision}" in result.output
        status = await drive.result(handle)
        shown = await run("show", app_id)
        # The service ends: its live service (the subscription's child, on this dev server)
        # puts the application on record as terminated; the subscription's outcome stays.
        live = dev_server.client.get_workflow_handle(live_service_id(app_id),
                                                     result_type=ApplicationStatus)
        watching = await drive.status_until(live, lambda s: s.takes, "the live service watching")
        live_shown = await run("show", live.id)
        terminating = await run("decide", live.id, "terminate", "--by", contact,
                                "--note", "closing the service")
        ended = await drive.result(live)
        terminated = await run("show", app_id)

    assert again.exit_code == 2 and "already submitted" in again.output
    assert (status.outcome, status.step) == ("in_production", "in_production")
    assert [d.decision for d in status.decisions] == [decision for _, decision, _ in steps]
    assert all(d.applied for d in status.decisions)
    assert sorted(k.environment for k in status.keys) == ["production", "sandbox"]
    assert re.search(r"outcome\s+in_production", shown.output)
    assert re.search(r"on record\s+in_production \(step in_production\), live service "
                     + re.escape(live_service_id(app_id)), shown.output)
    assert all(k.display_prefix in shown.output for k in status.keys)
    assert live_shown.exit_code == 0, live_shown.output
    assert re.search(r"live service\s+live", live_shown.output)
    assert re.search(r"subscription\s+" + re.escape(app_id), live_shown.output)
    assert re.search(r"APIs\s+" + re.escape(", ".join(watching.live.apis)), live_shown.output)
    assert re.search(r"platform\W+OP-", live_shown.output), live_shown.output
    assert terminating.exit_code == 0 and "applied: terminate" in terminating.output, \
        terminating.output
    assert ended.outcome == "terminated"
    assert re.search(r"outcome\s+in_production", terminated.output)
    assert re.search(r"on record\s+terminated \(step terminated\)", terminated.output)
    assert await pool.fetchrow("SELECT status, current_step FROM applications "
                               "WHERE application_id = $1", app_id) == ("terminated", "terminated")


def test_decide_refuses_a_decision_too_large_for_temporal_before_sending_it(tmp_path,
                                                                           monkeypatch):
    """An update larger than Temporal takes would wedge the application (the server does not
    size-check updates): the CLI refuses it, naming the limit, and never connects."""
    monkeypatch.setattr(cli, "connect", lambda settings: pytest.fail("connected"))
    # Signed in (the CLI seals nothing itself: the codec server would, were it sent).
    monkeypatch.setattr(cli, "_signed_in", lambda settings, by: ("token", by))
    spec = json.loads(json.dumps(data.PUBLICATION_EXAMPLE["specification"]))
    spec["info"]["description"] = "x" * (600 * 1024)
    payload = tmp_path / "revision.json"
    payload.write_text(json.dumps({"integration_method": "vpn", "specification": spec}))
    result = runner.invoke(cli.app, ["decide", "publication-1348672683-bond-yields",
                                     "revise_specification", "--by", "p@provider.example.com",
                                     "--file", str(payload)])
    assert result.exit_code == 2, result.output
    assert "not sent, the decision is too large" in result.output
    assert "a revise_specification may have at most 557056 [too_large]" in result.output


# --- signing in ----------------------------------------------------------------------------------


def browser_for(provider: TestIdentityProvider, email: str):
    """What the person does once `login` opens the browser: signs in at the provider's form,
    and the browser follows the redirect to the CLI's loopback address."""
    user = provider.person(email)

    def open_url(url: str) -> bool:
        back = identity.submit_sign_in_form(url, user.email, user.password)
        assert back.startswith("http://127.0.0.1:") and "/callback?" in back
        with urllib.request.urlopen(back, timeout=10) as page:
            assert b"return to the terminal" in page.read()
        return True

    return open_url


async def test_login_then_every_decision_is_sealed_for_the_signed_in_reviewer(
    cli_env, dev_server, run_worker, settings, task_queue, identity_provider, monkeypatch
):
    monkeypatch.setattr(signing_in.webbrowser, "open", browser_for(identity_provider, REVIEWER))
    token_file = signing_in.token_file(get_settings())
    async with run_worker(dev_server.client):
        _, handle = await start(dev_server, settings, task_queue)
        await drive.wait_for_step(handle, "pre_verification")
        logged_in = await asyncio.to_thread(runner.invoke, cli.app, ["login"])
        token = await asyncio.to_thread(runner.invoke, cli.app, ["token"])
        mode = stat.S_IMODE(os.stat(token_file).st_mode)
        not_me = await asyncio.to_thread(runner.invoke, cli.app, [
            "decide", handle.id, "pre_verification", "--by", APPROVER, "--verdict", "approve",
            "--criteria-all"])
        decided = await asyncio.to_thread(runner.invoke, cli.app, [
            "decide", handle.id, "pre_verification", "--verdict", "approve", "--criteria-all",
            "--decision-id", "pv-sealed"])
        await drive.wait_for_step(handle, "platform_contract")
        logged_out = await asyncio.to_thread(runner.invoke, cli.app, ["logout"])
        after = await asyncio.to_thread(runner.invoke, cli.app, [
            "decide", handle.id, "platform_contract", "--verdict", "reject", "--note", "no"])
        history = await handle.fetch_history()

    assert logged_in.exit_code == 0, logged_in.output
    assert f"signed in as {REVIEWER}" in logged_in.output
    assert identity_provider.subject(REVIEWER) in logged_in.output
    assert mode == 0o600
    assert token.exit_code == 0 and token.stdout.startswith("Bearer ey")
    assert not_me.exit_code == 2
    assert f"not signed in as {APPROVER}: run `openapi-onboarding login`" in not_me.output
    assert decided.exit_code == 0, decided.output
    assert logged_out.exit_code == 0 and not token_file.exists()
    assert after.exit_code == 2 and "not signed in: run `openapi-onboarding login`" in after.output

    # The decision as the workflow received it: sealed for the reviewer who signed in.
    [update] = [e.workflow_execution_update_accepted_event_attributes for e in history.events
                if e.HasField("workflow_execution_update_accepted_event_attributes")]
    payload, = await dev_server.client.data_converter.payload_codec.decode(
        list(update.accepted_request.input.args.payloads))
    sent = json.loads(payload.data)
    assert (sent["application_id"], sent["decision"], sent["decided_by"]) == \
        (handle.id, "pre_verification", REVIEWER)
    who = AttestationVerifier(verification_keys(settings.sealing_verification_keys)).check(
        sent["attestation"], handle.id, "pre_verification", "pv-sealed", sent, datetime.now(UTC))
    assert who.email == REVIEWER and who.subject == identity_provider.subject(REVIEWER)


async def test_an_api_retired_from_the_command_line_is_sealed_for_the_signed_in_provider(
        cli_env, dev_server, run_worker, pool, capsys):
    """`python -m onboarding.temporal.retirement` sends `retire_api` through the codec server
    with the sign-in: sealed for a reviewer (not a contact of the provider), refused on the
    record; for the provider's contact, taken, in their name."""
    from onboarding.temporal import retirement

    api_id = f"cli-ret-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        """INSERT INTO api_catalogue (api_id, name, category, is_market_data,
               provider_business_registration_number) VALUES ($1, 'Retiring', 'banking', false,
               '2208162517')""", api_id)
    on = datetime.now(UTC).date() + timedelta(days=365)
    async with run_worker(dev_server.client):
        await sign_in_as(REVIEWER)
        refused = await retirement.command([api_id, on.isoformat(), REVIEWER])
        refused_out = capsys.readouterr().out
        await sign_in_as(data.BANK_PROVIDER)
        taken = await retirement.command([api_id, on.isoformat(), data.BANK_PROVIDER,
                                          "replaced", "by", "v2"])
        taken_out = capsys.readouterr().out
        handle = dev_server.client.get_workflow_handle(f"api-retirement-{api_id}")
        await handle.terminate("test over: the date is a year away")
    assert refused == 1, refused_out
    assert f"refused: retire_api refused: {REVIEWER} is not a registered contact of the API's " \
           "provider" in refused_out
    assert taken == 0, taken_out
    assert f"retire_api applied: {api_id} retires on {on.isoformat()} (by {data.BANK_PROVIDER})" \
        in taken_out
    rows = await pool.fetch(
        """SELECT actor, result, details FROM audit_trail WHERE workflow_id = $1
             AND action = 'retire_api' ORDER BY seq""", f"api-retirement-{api_id}")
    assert [(r["actor"], r["result"]) for r in rows] == [(REVIEWER, "refused"),
                                                        (data.BANK_PROVIDER, "applied")]
    assert rows[1]["details"]["note"] == "replaced by v2"
    # Sealed by the codec server for the identity provider's user, not typed.
    assert rows[1]["details"]["identity"]["issuer"] == get_settings().oidc_issuer
