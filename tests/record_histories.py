"""Save histories of the subscription workflow as it is today, for the replay tests.

    .venv/bin/python -m tests.record_histories

Run it when a workflow change is released (never to make a failing replay pass: a replay
failure means the change would break applications already running; patch the workflow with
`workflow.patched` instead). Each scenario below leaves one history in tests/histories/.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import uuid
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.platform import PlatformActivities
from onboarding import search_attributes as sa
from onboarding.config import Settings
from onboarding.db import apply_migrations, create_pool
from onboarding.embedded import ensure_database, start_embedded_postgres, wheel_binary
from onboarding.mailsink import start_mail_sink
from onboarding.submission import prepare_subscription
from starter import start_application
from tests import drive, fixtures
from worker import build_worker

HERE = Path(__file__).parent / "histories"


async def production_with_market_data(handle, form) -> None:
    applicant = form["organisation"]["contact_emails"][0]
    d = fixtures.decision
    await drive.signal_at(handle, "pre_verification", "pre_verification",
                          d(fixtures.REVIEWER, outcome="request_changes", note="name the data used"))
    await drive.signal_at(handle, "changes_requested", "resubmit",
                          d(applicant, service=form["service"], requested_apis=form["requested_apis"]))
    await drive.signal_at(handle, "pre_verification", "pre_verification",
                          d(fixtures.REVIEWER, outcome="approve", criteria=fixtures.CRITERIA_HOLD))
    await drive.signal_at(handle, "market_data_licence", "market_data_licence",
                          d(fixtures.SALES, outcome="concluded", contract=fixtures.contract()))
    await handle.signal("final_approval", d(fixtures.APPROVER, outcome="approve"))  # wrong step
    await drive.signal_at(handle, "platform_contract", "platform_contract",
                          d(fixtures.PLATFORM, outcome="signed", eligibility_confirmed=True,
                            contract=fixtures.contract()))
    await drive.signal_at(handle, "final_approval", "final_approval",
                          d(fixtures.APPROVER, outcome="approve"))
    await drive.signal_at(handle, "sandbox_testing", "sandbox_testing_complete", d(applicant))
    await drive.signal_at(handle, "sandbox_verification", "sandbox_verification",
                          d(fixtures.PLATFORM, outcome="more_testing", note="test order errors"))
    await drive.signal_at(handle, "sandbox_testing", "sandbox_testing_complete", d(applicant))
    await drive.signal_at(handle, "sandbox_verification", "sandbox_verification",
                          d(fixtures.PLATFORM, outcome="approve"))
    await drive.signal_at(handle, "production_switch", "production_switch",
                          d(fixtures.APPROVER, outcome="approve",
                            service_contract=fixtures.contract()))


async def withdrawn_after_sandbox_key(handle, form) -> None:
    applicant = form["organisation"]["contact_emails"][0]
    d = fixtures.decision
    await drive.signal_at(handle, "pre_verification", "pre_verification",
                          d(fixtures.REVIEWER, outcome="approve", criteria=fixtures.CRITERIA_HOLD))
    await drive.signal_at(handle, "platform_contract", "platform_contract",
                          d(fixtures.PLATFORM, outcome="signed", eligibility_confirmed=True,
                            contract=fixtures.contract()))
    await drive.signal_at(handle, "final_approval", "final_approval",
                          d(fixtures.SALES, outcome="approve"))  # not entitled
    await handle.signal("final_approval", d(fixtures.APPROVER, outcome="approve"))
    await drive.signal_at(handle, "sandbox_testing", "withdraw", d(applicant, note="project stopped"))


SCENARIOS = {
    "subscription_production_with_market_data": (["stock-quotes", "account-balance"],
                                                 production_with_market_data),
    "subscription_withdrawn_after_sandbox_key": (["account-balance"], withdrawn_after_sandbox_key),
}


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_embedded_postgres(Path(tmp) / "pg")
        mail = start_mail_sink(Path(tmp) / "mail", port=fixtures_port())
        try:
            url = await ensure_database(server.get_uri(), "record")
            settings = Settings(_env_file=None, database_url=url,
                                key_issuance_secret=secrets.token_urlsafe(32),
                                smtp_host="127.0.0.1", smtp_port=mail.port, metrics_port=0,
                                temporal_task_queue=f"record-{uuid.uuid4().hex[:8]}")
            pool = await create_pool(settings)
            async with pool.acquire() as conn:
                await apply_migrations(conn)
                await fixtures.seed(conn)
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=wheel_binary("temporal"), search_attributes=sa.ALL,
                data_converter=pydantic_data_converter)
            async with env, build_worker(env.client, settings, PlatformActivities(pool, settings)):
                for name, (apis, drive_it) in SCENARIOS.items():
                    form = fixtures.subscription_form(apis=apis)
                    app = prepare_subscription(form, settings)
                    handle = await start_application(env.client, settings, app)
                    await drive_it(handle, form)
                    await drive.result(handle)
                    history = await handle.fetch_history()
                    (HERE / f"{name}.json").write_text(history.to_json())
                    print(f"saved {name}: {len(history.events)} events")
            await pool.close()
        finally:
            mail.stop()
            server.cleanup()


def fixtures_port() -> int:
    from tests.conftest import free_port

    return free_port()


if __name__ == "__main__":
    asyncio.run(main())
