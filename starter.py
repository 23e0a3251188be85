"""Submit an application: checks it, then starts its workflow.

    python starter.py subscription application.json
    echo '{...}' | python starter.py subscription -

Prints the workflow id and how to follow it. A refused submission prints each field and the
rule it breaks, exits with status 2, and starts nothing. A second submission of the same
application (same organisation, same service) is refused, not duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from onboarding import search_attributes as sa
from onboarding.config import Settings, get_settings
from onboarding.db import create_pool
from onboarding.models import SubscriptionApplication
from onboarding.submission import SubmissionRefused, check_catalogue, prepare_subscription
from onboarding.temporal_client import connect
from workflows.subscription import SubscriptionWorkflow


class AlreadySubmitted(Exception):
    pass


async def start_subscription(
    client: Client, settings: Settings, application: SubscriptionApplication
) -> WorkflowHandle:
    try:
        return await client.start_workflow(
            SubscriptionWorkflow.run,
            application,
            id=application.application_id,
            task_queue=settings.temporal_task_queue,
            # Never a second workflow for the same application, even after the first ended.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.APPLICATION_KIND, "subscription"),
                    SearchAttributePair(sa.APPLICATION_STEP, "submitted"),
                    SearchAttributePair(sa.WAITING_ON, "nobody"),
                    SearchAttributePair(sa.ORGANISATION_ID,
                                        application.organisation.business_registration_number),
                ]
            ),
            static_summary=f"Subscription: {application.service.name}",
        )
    except WorkflowAlreadyStartedError:
        raise AlreadySubmitted(
            f"application {application.application_id} was already submitted"
        ) from None


async def submit(raw: dict, settings: Settings) -> str:
    application = prepare_subscription(raw, settings)
    pool = await create_pool(settings)
    try:
        await check_catalogue(pool, application)
    finally:
        await pool.close()
    client = await connect(settings)
    handle = await start_subscription(client, settings, application)
    return handle.id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("kind", choices=["subscription"], help="the kind of application")
    parser.add_argument("file", help="the application as JSON ('-' reads standard input)")
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        print(f"submission refused: not valid JSON: {err}", file=sys.stderr)
        return 2
    settings = get_settings()
    try:
        workflow_id = asyncio.run(submit(raw, settings))
    except (SubmissionRefused, AlreadySubmitted) as err:
        print(err, file=sys.stderr)
        return 2
    print(f"submitted: {workflow_id}")
    print(f"  follow it:  temporal workflow query --workflow-id {workflow_id} --name status")
    print(f"  in the UI:  http://localhost:{settings.temporal_ui_port}/namespaces/"
          f"{settings.temporal_namespace}/workflows/{workflow_id}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the SDK's Rust runtime threads can abort it
    # ("PyGILState_Release ... finalizing", temporalio/sdk-python#300), turning a successful
    # submission into a crash for the calling service.
    os._exit(code)
