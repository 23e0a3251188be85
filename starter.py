"""Submit an application: checks it, then starts its workflow.

    python starter.py subscription application.json
    python starter.py publication api.json
    echo '{...}' | python starter.py subscription -

Prints the workflow id and how to follow it. A refused submission prints each field and the
rule it breaks, exits with status 2, and starts nothing. A second submission of the same
application (same organisation and service, or same provider and API) is refused, not
duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from onboarding.core.config import Settings, get_settings
from onboarding.core.db import create_pool
from onboarding.domain.admission import (
    Refusal,
    SubmissionRefused,
    prepare_publication,
    prepare_subscription,
)
from onboarding.domain.models import PublicationApplication, SubscriptionApplication
from onboarding.store import catalogue
from onboarding.temporal import search_attributes as sa
from onboarding.temporal.client import connect
from workflows.publication import PublicationWorkflow
from workflows.subscription import SubscriptionWorkflow


class AlreadySubmitted(Exception):
    pass


Application = SubscriptionApplication | PublicationApplication


async def start_application(
    client: Client, settings: Settings, application: Application
) -> WorkflowHandle:
    if isinstance(application, SubscriptionApplication):
        run, kind, summary = SubscriptionWorkflow.run, "subscription", application.service.name
    else:
        run, kind, summary = PublicationWorkflow.run, "publication", application.api.name
    try:
        return await client.start_workflow(
            run,  # type: ignore[arg-type]
            application,
            id=application.application_id,
            task_queue=settings.temporal_task_queue,
            # Never a second workflow for the same application, even after the first ended.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.APPLICATION_KIND, kind),
                    SearchAttributePair(sa.APPLICATION_STEP, "submitted"),
                    SearchAttributePair(sa.WAITING_ON, "nobody"),
                    SearchAttributePair(sa.ORGANISATION_ID,
                                        application.organisation.business_registration_number),
                ]
            ),
            static_summary=f"{kind.capitalize()}: {summary}",
        )
    except WorkflowAlreadyStartedError:
        raise AlreadySubmitted(
            f"application {application.application_id} was already submitted"
        ) from None


async def check_api_id_free(pool: asyncpg.Pool, application: PublicationApplication) -> None:
    """An API id names one API in the catalogue, whoever provides it."""
    if await catalogue.in_catalogue(pool, application.api.api_id):
        raise SubmissionRefused(
            [Refusal("api.api_id", "api_id_taken",
                     f"{application.api.api_id} is already in the API catalogue")]
        )


async def check_catalogue(pool: asyncpg.Pool, application: SubscriptionApplication) -> None:
    """Refuse APIs the catalogue does not offer, naming each."""
    unknown = (await catalogue.look_up(pool, application.requested_apis)).unknown
    if unknown:
        raise SubmissionRefused(
            [Refusal("requested_apis", "not_in_catalogue",
                     f"not in the API catalogue: {', '.join(unknown)}")]
        )


async def submit(kind: str, raw: dict, settings: Settings) -> str:
    application: Application
    if kind == "subscription":
        application = prepare_subscription(raw, settings)
    else:
        application = prepare_publication(raw, settings)
    pool = await create_pool(settings)
    try:
        if isinstance(application, SubscriptionApplication):
            await check_catalogue(pool, application)
        else:
            await check_api_id_free(pool, application)
    finally:
        await pool.close()
    client = await connect(settings)
    handle = await start_application(client, settings, application)
    return handle.id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("kind", choices=["subscription", "publication"],
                        help="subscription: a fintech uses APIs; publication: a member company "
                             "publishes its API")
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
        workflow_id = asyncio.run(submit(args.kind, raw, settings))
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
