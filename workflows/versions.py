"""Which code a run follows where the workflows changed while applications were running.

A change to what a workflow does is guarded with a patch (`workflow.patched`): a run begun
before it replays the old way, a run begun after takes the new one. Each patch a run meets costs
its history a marker, an upsert of the `TemporalChangeVersion` search attribute, and the server
a visibility write: five of them in every new subscription, one per change since v2.

`patched` answers for every patch listed in BUNDLED with ONE marker, `stop-18` (the workflows
as of stop 18): a run that meets it (every run begun since) takes the new code of all of them; a
run begun before (its history has no such marker) is answered patch by patch, as it always was. The list is
closed: a patch made later is a patch of its own (or goes in a bundle of its own), since a run
recorded with this marker must never be read as having taken a change it did not know.

Replay-safe: `workflow.patched` is memoized per run, so the bundle's answer is the one the run
gave when it first met any patch of it; tests/test_replay.py replays histories from before
(each patch its own marker) and from since (one marker).
"""

from __future__ import annotations

from temporalio import workflow

BUNDLE = "stop-18"
BUNDLED = frozenset({
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


def patched(patch_id: str) -> bool:
    """`workflow.patched(patch_id)`, answered by the bundle's one marker when it is in it."""
    if patch_id in BUNDLED and workflow.patched(BUNDLE):
        return True
    return workflow.patched(patch_id)
