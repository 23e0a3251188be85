"""What the platform's own record (the audit log) says of an application."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from tests.support import data


async def audit(db: asyncpg.Pool | asyncpg.Connection, application_id: str,
                workflow_id: str | None = None) -> list[dict[str, Any]]:
    """The application's audit entries, in the order they were written (only those its
    workflow `workflow_id` wrote, when given: not its live service's, say)."""
    rows = await db.fetch(
        """SELECT actor, action, result, reason, details FROM audit_trail
           WHERE application_id = $1 AND ($2::text IS NULL OR workflow_id = $2) ORDER BY seq""",
        application_id, workflow_id,
    )
    return [dict(r) for r in rows]


def record_of_a_whole_run(licence: bool) -> list[tuple[str, str]]:
    """What the audit log says of a whole run: each step entered and whom it waited on, and
    each decision applied, in the order the workflow wrote them."""
    decided = {"pre_verification_reviewer": "pre_verification",
               "market_data_sales": "market_data_licence", "platform_team": "platform_contract",
               "final_approver": "final_approval"}
    entries = [("step_entered", "")]
    for role in ["pre_verification_reviewer", "market_data_sales", "platform_team",
                 "final_approver"]:
        if role != "market_data_sales" or licence:
            entries += [("step_entered", role), ("applied", decided[role])]
    return entries + [
        ("step_entered", "applicant"), ("applied", "sandbox_testing_complete"),
        ("step_entered", "platform_team"), ("applied", "sandbox_verification"),
        ("step_entered", "final_approver"), ("applied", "production_switch"),
        ("step_entered", "")]


async def steps_on_record(db: asyncpg.Pool | asyncpg.Connection,
                          application_id: str) -> list[tuple[str, str]]:
    """The steps entered and the decisions applied, as `record_of_a_whole_run` lists them (a
    line rewritten by a commit that superseded a discarded task's is `<seq>~<commit>`)."""
    rows = await db.fetch(
        """SELECT action, result, details->>'waiting_on' AS waiting_on FROM audit_trail
           WHERE application_id = $1 AND entry_id ~ '^[^/]+/[0-9]+(~[0-9a-f]+)?$'
             AND (action = 'step_entered' OR result = 'applied')
           ORDER BY substring(entry_id from '/([0-9]+)')::int""", application_id)
    return [("step_entered", r["waiting_on"]) if r["action"] == "step_entered"
            else ("applied", r["action"]) for r in rows]


async def on_record(conn: asyncpg.Connection, process: str, apis: list[str], *,
                    step: str, status: str = "open", api_id: str = "") -> tuple[str, str]:
    """An application as the record shows it, without running its workflow: its
    organisation's row and its own. Returns (application id, business registration number)."""
    brn = data.corporate_brn()
    app_id = (f"publication-{brn}-{api_id}" if process == "publication"
              else f"subscription-{brn}-{uuid.uuid4().hex[:12]}")
    await conn.execute(
        """INSERT INTO organisations VALUES ($1, '1101110062432', 'Organisation on record',
               'Representative', $2)""", brn, [f"dev-{brn}@on-record.example.com"])
    await conn.execute(
        """INSERT INTO applications (application_id, process, business_registration_number,
               workflow_id, status, current_step, requested_apis)
           VALUES ($1, $2, $3, $1, $4, $5, $6)""", app_id, process, brn, status, step, apis)
    return app_id, brn
