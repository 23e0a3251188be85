"""The README's "What the platform guarantees whatever client reaches Temporal", tried as
docs/guarantees.md says: every command of its `sh` block, in order, against a fresh `make up`
stack (the README walkthrough's harness: tests/test_readme_walkthrough.py). Then what the
commands cannot show is read from the database: the refusals on the audit log (the first of a
sender's one by one, the rest counted), the terminated application's key revoked by the
reconciliation and audited, its contacts told, and the application refused at admission
holding nothing and told."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from onboarding.domain.state import REFUSALS_PER_SENDER_PER_HOUR
from onboarding.temporal.client import connect
from tests.support.eventually import eventually
from tests.test_readme_walkthrough import ROOT, Stack, mail_text, run_commands, section_commands

GUARANTEES = ROOT / "docs" / "guarantees.md"
SECTION = "## Trying them against `make up`"
REFUSED = "subscription-1232345672-00000000000b"
FLOODED = 30


def test_the_section_is_read_as_commands():
    lines = [c.line for c in section_commands(GUARANTEES.read_text(), SECTION)]
    assert lines[0].startswith("export TEMPORAL_CODEC_ENDPOINT=")
    assert any(line.startswith("temporal workflow start --type SubscriptionApplication")
               for line in lines)
    assert "temporal schedule trigger --schedule-id key-reconciliation" in lines
    assert any(line.startswith("temporal workflow terminate") for line in lines)
    assert any(f"$(seq {FLOODED})" in line for line in lines)


@pytest.mark.servers
async def test_the_readme_guarantees_hold_as_tried_by_hand(tmp_path):
    stack = Stack(tmp_path)
    await stack.start()
    try:
        settings = stack.settings()
        client = await connect(settings)
        env = await run_commands(stack, client, section_commands(GUARANTEES.read_text(), SECTION))
        flooded = env["G"]
        db = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            refused = await db.fetch(
                """SELECT action, details FROM audit_trail
                   WHERE application_id = $1 AND result = 'refused'""", flooded)
            by_action = {}
            for row in refused:
                by_action.setdefault(row["action"], []).append(row)
            assert len(by_action["final_approval"]) == REFUSALS_PER_SENDER_PER_HOUR
            assert sum(json.loads(r["details"])["count"] for r in by_action["refusals_dropped"]) == \
                FLOODED - REFUSALS_PER_SENDER_PER_HOUR
            assert len(by_action["pre_verification"]) == 1  # the 100 KB one; 2 MB never came
            revoked = await db.fetch(
                """SELECT actor, reason FROM audit_trail
                   WHERE application_id = $1 AND action = 'api_key_revoked'""", flooded)
            assert [(r["actor"], r["reason"]) for r in revoked] == [
                ("key-reconciliation", "its process ended without reaching production "
                 "(terminated)")]
            assert await db.fetchval(
                "SELECT count(*) FROM api_keys WHERE application_id = $1 AND status = 'active'",
                flooded) == 0
            assert await db.fetchval(
                "SELECT count(*) FROM api_keys WHERE application_id = $1", REFUSED) == 0
        finally:
            await db.close()

        def told(about: str) -> bool:
            mails = [mail_text(p) for p in (tmp_path / ".data" / "mail" / "new").iterdir()]
            return any(about in m for m in mails)

        await eventually(lambda: told("these API keys were revoked"), 30, "the applicant told")
        await eventually(lambda: told("corporations only"), 30, "the refused applicant told")
    finally:
        code = await asyncio.to_thread(stack.stop)
    assert code == 0, stack.output()
