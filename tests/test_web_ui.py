"""The Temporal Web UI in a real browser (tests/support/web_ui.py): the dev server's own UI,
as `make up` runs it, with `--ui-codec-endpoint` at the codec server. A decision sent with
"Send a Signal" is sealed for the person signed in at the codec server; without a sign-in the
codec server seals nothing.

Without Chromium or Playwright the test is skipped, saying so (`make test` on a laptop); under
CI=true it fails instead (.ci/run installs Chromium).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from onboarding.devstack.embedded import wheel_binary
from onboarding.services.codec_server import start_codec_server
from onboarding.temporal import search_attributes as sa
from onboarding.temporal.codec import data_converter
from tests.support import data, drive, identity
from tests.support.data import CRITERIA_HOLD, REVIEWER
from tests.support.net import free_port
from tests.support.sealing import SealAsTyped
from tests.support.web_ui import require_browser, send_from_the_ui


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_browser()


@dataclass
class WebUI:
    env: WorkflowEnvironment
    ui: str  # the UI's address, as the browser sees it
    codec: str


@pytest.fixture
async def web_ui(settings, roster, identity_provider) -> AsyncIterator[WebUI]:
    """The dev server with its UI, the codec server it names, signed in through the provider.
    Both on `localhost` (the same site: the cookie goes; 127.0.0.1 would be another)."""
    ui_port, codec_port = free_port(), free_port()
    ui, codec = f"http://localhost:{ui_port}", f"http://localhost:{codec_port}"
    identity_provider.register_codec_server(codec)
    runner = await start_codec_server(settings.model_copy(update={
        "codec_server_port": codec_port, "codec_public_url": codec,
        "codec_allowed_origins": ui, "oidc_issuer": identity_provider.issuer,
        "codec_oidc_client_secret": SecretStr(identity.CODEC_SECRET)}))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=wheel_binary("temporal"), search_attributes=sa.ALL,
        data_converter=data_converter(settings), interceptors=[SealAsTyped()],
        ui=True, ui_port=ui_port,
        dev_server_extra_args=["--ui-codec-endpoint", codec, "--ui-disable-news-fetch"])
    try:
        yield WebUI(env, ui, codec)
    finally:
        await env.shutdown()
        await runner.cleanup()


async def test_a_decision_sent_from_the_web_ui_is_sealed_for_whoever_signed_in(
        chromium, web_ui, run_worker, settings, task_queue, identity_provider):
    application = data.new_application(settings, ["account-balance"])
    reviewer = identity_provider.person(REVIEWER)

    def decision() -> dict:
        return {"application_id": application.application_id, "decision": "pre_verification",
                "decision_id": f"ui-{uuid.uuid4().hex[:8]}", "verdict": "approve",
                "criteria": CRITERIA_HOLD}

    async with run_worker(web_ui.env.client):
        handle = await drive.start(web_ui.env.client, settings, task_queue, application)
        await drive.wait_for_step(handle, "pre_verification")
        anonymous = await asyncio.to_thread(send_from_the_ui, chromium, web_ui.ui,
                                            web_ui.codec, handle.id, "pre_verification",
                                            decision(), None)
        await asyncio.sleep(2)
        before = await drive.status(handle)
        signed_in = await asyncio.to_thread(
            send_from_the_ui, chromium, web_ui.ui, web_ui.codec, handle.id, "pre_verification",
            decision(), (reviewer.email, reviewer.password))
        status = await drive.wait_for_step(handle, "platform_contract")

    # Without a sign-in, the codec server answered 401 and sealed nothing. (The UI of the dev
    # server, 2.54, then sends nothing at all; a UI that sent the decision unencoded would see
    # it refused on the record, "identity not verified".)
    assert anonymous == [401]
    assert before.step == "pre_verification"
    assert all((d.applied, d.reason) == (False, "identity not verified")
               for d in before.decisions), before.decisions
    # Signed in: sealed for the reviewer, applied in their name.
    assert 200 in signed_in
    applied, = [d for d in status.decisions if d.applied]
    assert applied.decided_by == REVIEWER
    assert applied.identity.subject == identity_provider.subject(REVIEWER)
    assert applied.identity.issuer == identity_provider.issuer
