"""A provider retires its published API: every live service using it told, and on the date the
API leaves their keys' scopes and the catalogue (workflows/api_retirement.py).

    python -m onboarding.temporal.retirement API_ID RETIRED_ON PROVIDER_CONTACT [NOTE]
"""

from __future__ import annotations

import asyncio
import sys
from datetime import date

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from onboarding.core.config import Settings, get_settings
from onboarding.temporal.client import connect
from workflows.api_retirement import ApiRetirementDone, ApiRetirementStart


async def retire(client: Client, settings: Settings, api_id: str, retired_on: date,
                 decided_by: str, note: str = "") -> WorkflowHandle:
    """The retirement started (once per API: a second is refused while the first runs)."""
    return await client.start_workflow(
        "ApiRetirement", ApiRetirementStart(api_id=api_id, retired_on=retired_on,
                                            decided_by=decided_by, note=note),
        id=f"api-retirement-{api_id}", task_queue=settings.temporal_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        result_type=ApiRetirementDone)


async def main() -> None:
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    settings = get_settings()
    handle = await retire(await connect(settings), settings, sys.argv[1],
                          date.fromisoformat(sys.argv[2]), sys.argv[3], " ".join(sys.argv[4:]))
    print(f"retirement started: {handle.id}")


if __name__ == "__main__":
    asyncio.run(main())
