"""A provider retires its published API: every live service using it told, and on the date the
API leaves their keys' scopes and the catalogue (workflows/api_retirement.py).

    openapi-onboarding login      # signed in as a contact of the API's provider
    python -m onboarding.temporal.retirement API_ID RETIRED_ON PROVIDER_CONTACT [NOTE]

The start is the decision `retire_api`, sent through the codec server (TEMPORAL_CODEC_ENDPOINT)
with PROVIDER_CONTACT's sign-in, which seals it for them; the workflow checks the seal and
that they are a contact of the API's provider, and refuses it on the record otherwise. It
waits for that verdict and prints it (exit 1 when refused).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import date

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from onboarding.core.config import Settings, get_settings
from onboarding.domain.decisions import RETIRE_API
from onboarding.domain.models import ApiRetirementDecision
from onboarding.temporal.client import connect
from onboarding.temporal.codec import CodecServerClient, data_converter
from workflows.api_retirement import ApiRetirementDone

VERDICT_WAIT = 30  # seconds the command waits for the workflow's verdict on the start


def workflow_id(api_id: str) -> str:
    return f"api-retirement-{api_id}"


async def retire(client: Client, settings: Settings, api_id: str, retired_on: date,
                 decided_by: str | None, note: str = "") -> WorkflowHandle:
    """The retirement started (once per API: a second is refused while the first runs) with
    the decision `retire_api` as its input: sealed on its way by the client's codec (the codec
    server, for the signed-in sender); `decided_by`, when given, must name that sender."""
    wid = workflow_id(api_id)
    return await client.start_workflow(
        "ApiRetirement", ApiRetirementDecision(
            application_id=wid, decision=RETIRE_API.name, decision_id=str(uuid.uuid4()),
            decided_by=decided_by, api_id=api_id, retired_on=retired_on, note=note),
        id=wid, task_queue=settings.temporal_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        result_type=ApiRetirementDone)


async def verdict(handle: WorkflowHandle, within: float = VERDICT_WAIT) -> str:
    """'' once the workflow has taken the start (it waits for the date, or is done), else why
    it refused it."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    while True:
        described = await handle.describe()
        if described.status == WorkflowExecutionStatus.FAILED:
            try:
                await handle.result()
            except WorkflowFailureError as err:
                return str(err.cause) if err.cause else str(err)
        if described.status != WorkflowExecutionStatus.RUNNING:
            return ""
        history = await handle.fetch_history()
        if any(e.HasField("timer_started_event_attributes") for e in history.events):
            return ""  # verified, the live services told: waiting for the date
        if loop.time() > give_up:
            return ""
        await asyncio.sleep(0.5)


async def command(argv: list[str]) -> int:
    """The command line's work: 0 when the retirement was taken, 1 when refused."""
    from onboarding.cli import login as signing_in

    if len(argv) < 3:
        raise SystemExit(__doc__)
    settings = get_settings()
    if not settings.temporal_codec_endpoint:
        raise SystemExit("retire_api is sealed for you by the codec server: set "
                         "TEMPORAL_CODEC_ENDPOINT (make up writes it into .data/dev.env)")
    api_id, on, by = argv[0], date.fromisoformat(argv[1]), argv[2]
    try:
        token, me = await signing_in.access_token(settings, by)
    except signing_in.NotSignedIn as err:
        raise SystemExit(str(err)) from None
    sealing = CodecServerClient(settings.temporal_codec_endpoint, token)
    client = await connect(settings, converter=data_converter(settings, codec=sealing))
    handle = await retire(client, settings, api_id, on, me, " ".join(argv[3:]))
    print(f"retirement started: {handle.id}")
    if refused := await verdict(handle):
        print(f"refused: {refused}")
        return 1
    print(f"retire_api applied: {api_id} retires on {on.isoformat()} (by {me})")
    return 0


def main() -> None:
    raise SystemExit(asyncio.run(command(sys.argv[1:])))


if __name__ == "__main__":
    main()
