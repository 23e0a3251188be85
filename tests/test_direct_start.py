"""An application started as another service would, with nothing but the `temporal` CLI (the dev
server's own binary, no starter.py, no codec: its input in the clear) or a bare client: the
workflow's admission refuses what breaks the rules. It ends `refused` with every refusal on the
record, its valid contacts are told, it holds no key and waits on nobody. The same rules'
quick tests: test_admission.py."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import uuid
from typing import Any

from temporalio.client import WorkflowHandle

from onboarding.devstack.embedded import wheel_binary
from onboarding.domain.admission import prepare_publication, prepare_subscription
from onboarding.domain.models import ApplicationStatus
from onboarding.temporal import search_attributes as sa
from tests.support import data, drive
from tests.support.eventually import eventually
from tests.support.inbox import envelope, notices


def temporal_start(address: str, workflow: str, task_queue: str, workflow_id: str,
                   raw: Any) -> None:
    done = subprocess.run(
        [wheel_binary("temporal"), "workflow", "start", "--address", address,
         "--type", workflow, "--task-queue", task_queue, "--workflow-id", workflow_id,
         "--input", json.dumps(raw)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr


def the_issues_subscription(settings) -> dict[str, Any]:
    """Issue 11's: a sole proprietor's number (type code 23, a wrong check digit), a corporate
    number of zeros, an API not in the catalogue; its contacts one valid address, one not."""
    raw = prepare_subscription(data.subscription_form(["account-balance"]),
                               settings).model_dump(mode="json")
    tag = uuid.uuid4().hex[:8]
    raw["organisation"].update(business_registration_number="123-23-45670",
                               corporate_registration_number="000000-0000000",
                               contact_emails=[f"ops-{tag}@fintech.example.com", "ops at fintech"])
    raw["requested_apis"] = ["api-that-does-not-exist"]
    raw["application_id"] = f"subscription-1232345670-{tag}0000"
    return raw


async def refused(pool, handle: WorkflowHandle) -> ApplicationStatus:
    status = await drive.result(handle)
    assert (status.outcome, status.step, status.keys, status.decisions) == (
        "refused", "refused", [], [])
    assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE application_id = $1",
                               handle.id) == 0
    assert await pool.fetchval("SELECT count(*) FROM applications WHERE application_id = $1",
                               handle.id) == 0
    shown = (await handle.describe()).typed_search_attributes
    assert shown.get(sa.WAITING_ON) == "nobody"
    return status


async def test_the_temporal_cli_starting_a_subscription_that_breaks_the_rules_gets_refused(
        dev_server, run_worker, settings, pool, task_queue, inbox):
    raw = the_issues_subscription(settings)
    workflow_id = raw["application_id"]
    address = dev_server.client.service_client.config.target_host
    async with run_worker(dev_server.client):
        await asyncio.to_thread(temporal_start, address, "SubscriptionApplication", task_queue,
                                workflow_id, raw)
        handle = dev_server.client.get_workflow_handle(workflow_id,
                                                       result_type=ApplicationStatus)
        status = await refused(pool, handle)
        told = f"refused/{(await handle.describe()).run_id}"
        await eventually(lambda: notices(inbox, workflow_id, told), what="the notice")

    assert {r.field: r.rule for r in status.admission_refusals} == {
        "organisation.business_registration_number": "check_digit",
        "organisation.corporate_registration_number": "format",
        "organisation.contact_emails.1": "value_error",
        "requested_apis": "not_in_catalogue"}
    lines = await pool.fetch(
        """SELECT action, result, reason FROM audit_trail WHERE application_id = $1
           ORDER BY seq""", workflow_id)
    assert [(r["action"], r["result"]) for r in lines] == [
        ("admission", "refused"), ("notice_queued", "succeeded"),
        ("step_entered", "succeeded"), ("application_closed", "succeeded"),
        ("notice_sent", "succeeded")]  # by the relay
    assert "api-that-does-not-exist" in lines[0]["reason"]
    mail = notices(inbox, workflow_id, told)
    assert len(mail) == 1 and envelope(mail[0]) == {raw["organisation"]["contact_emails"][0]}
    # Nothing waits on a reviewer.
    waiting = [w.id async for w in dev_server.client.list_workflows(
        'WaitingOn = "pre_verification_reviewer"')]
    assert workflow_id not in waiting


async def test_a_bare_client_starting_a_publication_whose_document_does_not_validate(
        dev_server, run_worker, settings, pool, task_queue, inbox):
    raw = prepare_publication(data.publication_form(f"api-{uuid.uuid4().hex[:8]}"),
                              settings).model_dump(mode="json")
    raw["specification"] = copy.deepcopy(raw["specification"])
    del raw["specification"]["info"]
    async with run_worker(dev_server.client):
        handle = await dev_server.client.start_workflow(
            "PublicationApplication", raw, id=raw["application_id"], task_queue=task_queue,
            result_type=ApplicationStatus)
        status = await refused(pool, handle)
    assert [(r.field, r.rule) for r in status.admission_refusals] == [
        ("specification", "openapi")]
    assert "info" in status.admission_refusals[0].message
    assert await pool.fetchval("SELECT count(*) FROM api_catalogue WHERE api_id = $1",
                               raw["api"]["api_id"]) == 0


async def test_the_temporal_cli_starting_a_proper_application_gets_it_admitted(
        dev_server, run_worker, settings, pool, task_queue):
    """What starter.py would start, started by the CLI: admitted, on record under its first
    run, and listed like any other (the workflow sets the search attributes a CLI start
    lacks)."""
    raw = prepare_subscription(data.subscription_form(["account-balance"]),
                               settings).model_dump(mode="json")
    workflow_id = raw["application_id"]
    address = dev_server.client.service_client.config.target_host
    async with run_worker(dev_server.client):
        await asyncio.to_thread(temporal_start, address, "SubscriptionApplication", task_queue,
                                workflow_id, raw)
        handle = dev_server.client.get_workflow_handle(workflow_id)
        await drive.wait_for_step(handle, "pre_verification")
        first_run = (await handle.describe()).run_id
        shown = (await handle.describe()).typed_search_attributes
        await handle.signal("withdraw", data.decision(raw["organisation"]["contact_emails"][0]))
        await drive.result(handle)
    assert (shown.get(sa.APPLICATION_KIND), shown.get(sa.WAITING_ON)) == (
        "subscription", "pre_verification_reviewer")
    assert await pool.fetchval(
        "SELECT first_execution_run_id FROM applications WHERE application_id = $1",
        workflow_id) == first_run
