"""Histories of applications recorded with earlier versions must replay on today's code.

A failure here means a change to a workflow would break applications already running in
production: guard the change with `workflow.patched(...)` rather than re-recording.

They replay through the worker's encrypting converter: the saved histories were recorded in the
clear, before payload encryption, and must still read (onboarding.temporal.codec passes them
through).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from onboarding.core.config import Settings
from onboarding.temporal.codec import data_converter, new_payload_key
from worker import WORKFLOW_RUNNER, WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_saved_histories_to_replay():
    assert len(HISTORIES) >= 2


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_saved_history_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    settings = Settings(_env_file=None, payload_encryption_keys=new_payload_key("replay"))
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter(settings),
                        workflow_runner=WORKFLOW_RUNNER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
