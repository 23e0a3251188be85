"""A reviewer at the Temporal Web UI, in a real browser: headless Chromium (Debian's
`chromium`), driven by Playwright from PyPI with `executable_path` (Playwright's own browser
download is not used). For tests/test_web_ui.py and the README walkthrough.

The dev server's UI has no login of its own: the reviewer signs in at the codec server (its
/login, the identity provider's form), and the UI sends the codec server's session cookie with
its codec requests once its setting "include cross-origin credentials" is on (preset here in
the UI's localStorage, as its settings dialog writes it). Both must be on `localhost`: the same
site, so the cookie goes (127.0.0.1 would be another site).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Flags that keep Chromium from reaching out on its own (updates, sync, QUIC) in a container.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
WAIT_MS = 30_000


def browser_missing() -> str | None:
    if not shutil.which(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    return None


def require_browser() -> str:
    """Chromium's executable; else the test is skipped, saying what is missing (`make test` on
    a laptop), or fails under CI=true (.ci/run installs Chromium)."""
    missing = browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the real-browser test cannot run under CI: {missing}")
        pytest.skip(f"the real-browser test is skipped: {missing}")
    return CHROMIUM


def send_from_the_ui(chromium: str, ui: str, codec: str, workflow_id: str, name: str,
                     decision: dict, sign_in: tuple[str, str] | None) -> list[int]:
    """A reviewer in a browser of their own: signs in at the codec server (when `sign_in`
    names whom), opens the application in the UI and sends `decision` with "Send a Signal".
    Returns the codec server's answers to the UI's /encode requests. (Playwright's sync API,
    in a thread of its own: it runs an event loop of its own.)"""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            return _send(browser, ui, codec, workflow_id, name, decision, sign_in)
        finally:
            browser.close()


def _send(browser: Any, ui: str, codec: str, workflow_id: str, name: str, decision: dict,
          sign_in: tuple[str, str] | None) -> list[int]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        if sign_in:
            email, password = sign_in
            page.goto(f"{codec}/login")
            page.fill("input[name=username]", email)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.get_by_text(f"Signed in to the codec server as {email}").wait_for()
        # The UI's codec setting, as its dialog writes it: this endpoint, with credentials.
        settings = {"endpoint": json.dumps(codec), "overrideRemoteCodecConfiguration":
                    "true", "includeCredentials": "true", "passAccessToken": "false"}
        context.add_init_script(
            "(s => { for (const [k, v] of Object.entries(s)) localStorage.setItem(k, v); })(%s)"
            % json.dumps(settings))
        answers: list[int] = []
        page.on("response", lambda r: answers.append(r.status)
                if r.url.startswith(f"{codec}/encode") else None)
        page.goto(f"{ui}/namespaces/default/workflows/{workflow_id}")
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
