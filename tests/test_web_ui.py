"""The Temporal Web UI in a real browser: headless Chromium (Debian's `chromium`, driven by
Playwright from PyPI with `executable_path`; Playwright's own browser download is not used).

The dev server's own UI, as `make up` runs it, with `--ui-codec-endpoint` at the codec server.
The dev UI has no login of its own: the reviewer signs in at the codec server (its /login, the
identity provider's form), and the UI sends the codec server's session cookie with its codec
requests once its setting "include cross-origin credentials" is on (preset here in the UI's
localStorage, as the settings dialog would write it). A decision sent with "Send a Signal" is
then sealed for the person signed in; without a sign-in the codec server seals nothing.

Without Chromium or Playwright the test is skipped, saying so (`make test` on a laptop); under
CI=true it fails instead (.ci/run installs Chromium).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from onboarding.services.codec_server import start_codec_server
from onboarding.temporal import search_attributes as sa
from onboarding.temporal.codec import data_converter
from onboarding.devstack.embedded import wheel_binary
from tests.support import data, drive, identity
from tests.support.data import CRITERIA_HOLD, REVIEWER
from tests.support.net import free_port
from tests.support.sealing import SealAsTyped

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Flags that keep Chromium from reaching out on its own (updates, sync, QUIC) in a container.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
WAIT_MS = 30_000


def _browser_missing() -> str | None:
    if not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's executable, or the test skipped (failed under CI) saying what is missing."""
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the real-browser test cannot run under CI: {missing}")
        pytest.skip(f"the real-browser test is skipped: {missing}")
    return CHROMIUM


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


def send_from_the_ui(chromium: str, web_ui: WebUI, workflow_id: str, name: str,
                     decision: dict, sign_in: tuple[str, str] | None) -> list[int]:
    """A reviewer in a browser of their own: signs in at the codec server (when `sign_in`
    names whom), opens the application in the UI and sends `decision` with "Send a Signal".
    Returns the codec server's answers to the UI's /encode requests. (Playwright's sync API,
    in a thread of its own: it runs an event loop of its own.)"""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            return _send(browser, web_ui, workflow_id, name, decision, sign_in)
        finally:
            browser.close()


def _send(browser: Any, web_ui: WebUI, workflow_id: str, name: str, decision: dict,
          sign_in: tuple[str, str] | None) -> list[int]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        if sign_in:
            email, password = sign_in
            page.goto(f"{web_ui.codec}/login")
            page.fill("input[name=username]", email)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.get_by_text(f"Signed in to the codec server as {email}").wait_for()
        # The UI's codec setting, as its dialog writes it: this endpoint, with credentials.
        settings = {"endpoint": json.dumps(web_ui.codec), "overrideRemoteCodecConfiguration":
                    "true", "includeCredentials": "true", "passAccessToken": "false"}
        context.add_init_script(
            "(s => { for (const [k, v] of Object.entries(s)) localStorage.setItem(k, v); })(%s)"
            % json.dumps(settings))
        answers: list[int] = []
        page.on("response", lambda r: answers.append(r.status)
                if r.url.startswith(f"{web_ui.codec}/encode") else None)
        page.goto(f"{web_ui.ui}/namespaces/default/workflows/{workflow_id}")
        page.get_by_role("button", name="More Actions").click()
        page.get_by_role("menuitem", name="Send a Signal").click()
        modal = page.get_by_test_id("signal-confirmation-modal").nth(1)
        listed = modal.get_by_test_id("signal-select-button")
        typed = modal.locator("#signal-name")
        listed.or_(typed).first.wait_for()
        # The UI lists the signals when it can read the workflow's definitions (a query whose
        # answer it decodes through the codec server); else the name is typed.
        if listed.count():
            listed.click()
            # Each option shows the signal's name, then its description (the catalogue's).
            page.get_by_role("option").filter(
                has_text=re.compile(rf"^\s*{name}(?![a-z_])")).click()
        else:
            typed.fill(name)
        modal.get_by_role("textbox").nth(1).fill(json.dumps(decision))
        submit = modal.get_by_test_id("confirm-modal-button")
        submit.focus()
        submit.click()
        page.wait_for_timeout(2000)  # the UI's answer (a toast) is not what is asserted
        return answers
    finally:
        context.close()


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
        anonymous = await asyncio.to_thread(send_from_the_ui, chromium, web_ui, handle.id,
                                            "pre_verification", decision(), None)
        await asyncio.sleep(2)
        before = await drive.status(handle)
        signed_in = await asyncio.to_thread(
            send_from_the_ui, chromium, web_ui, handle.id, "pre_verification", decision(),
            (reviewer.email, reviewer.password))
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
