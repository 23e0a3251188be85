"""Which code a run follows where the workflows changed while applications were running.

A change to what a workflow does is guarded with a patch (`workflow.patched`): a run begun
before it replays the old way, a run begun after takes the new one. Each patch a run meets costs
its history a marker, an upsert of the `TemporalChangeVersion` search attribute, and the server
a visibility write: one per change since v2.

`patched` answers with ONE marker per run, its release's: a release's marker stands for every
patch made up to it (RELEASES, newest first). A run that meets `stop-19` (every run begun since)
takes the new code of all of them; a run begun under stop 18 has the marker `stop-18` and is
answered by it for the patches it knew, and patch by patch for the later ones; a run begun
before stop 18 is answered patch by patch, as it always was. A release's list is closed once
it ships: a later patch goes in the next release, since a run recorded with a marker must never
be read as having taken a change it did not know.

Replay-safe: `workflow.patched` is memoized per run, and every patch asks the newest release
first, so a release's answer is the one the run gave when it first met any patch of it; a run
replaying history from before a release (no such marker) answers False and keeps answering
so. tests/test_replay.py replays histories from before stop 18 (each patch its own marker),
from stop 18 (its marker) and since (one marker, `stop-19`).
"""

from __future__ import annotations

from temporalio import workflow

STOP_18 = frozenset({
    "process-v2",               # workflows/subscription.py, publication.py: v2, not stop 8's code
    "admission",                # workflows/process.py: a run checks its input first
    "fewer-local-activities",   # CHECKS_IN_VERIFICATION
    "live-service",             # a subscription in production hands over to its live service
    "verification-in-commit",   # VERIFIED_IN_COMMIT
    "live-service-termination-on-record",
    "live-service-licence-renewal-told",
    "live-service-retirement-on-record",
    "api-retirement-sealed",
    "commits-in-workflow-task",  # COMMITS_IN_TASK (workflows/process.py), new with the bundle
})
# Deadlines wait on one timer kept from step to step (workflows/deadlines.py), not a timer
# started and cancelled per step.
DEADLINE_CLOCK = "deadline-clock"
STOP_19 = STOP_18 | {DEADLINE_CLOCK}

RELEASES = (("stop-19", STOP_19), ("stop-18", STOP_18))  # newest first
BUNDLE = RELEASES[0][0]  # the one marker a run begun now records


def patched(patch_id: str) -> bool:
    """`workflow.patched(patch_id)`, answered by the marker of the first release that has it."""
    for marker, patches in RELEASES:
        if patch_id in patches and workflow.patched(marker):
            return True
    return workflow.patched(patch_id)
