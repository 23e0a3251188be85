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

# Every patch id of the workflows, each named once here and used by its name where it guards
# the change; the string is what histories carry, so it never changes.

# In stop-18 (answered by its one marker, see RELEASES).
PROCESS_V2 = "process-v2"  # subscription.py, publication.py: v2, not stop 8's code (legacy/)
ADMISSION = "admission"  # process.py: a run checks its input first
CHECKS_IN_VERIFICATION = "fewer-local-activities"  # process.py: lookups in the verification
LIVE_SERVICE = "live-service"  # subscription.py: in production, it hands over to its live service
VERIFIED_IN_COMMIT = "verification-in-commit"  # process.py: a decision verified by its commit
# live_service.py: the application's row put on record as terminated when the service ends
TERMINATION_ON_RECORD = "live-service-termination-on-record"
# live_service.py: a licence renewed told to the organisation's other market-data services
LICENCE_RENEWAL_TOLD = "live-service-licence-renewal-told"
# live_service.py: an API's retirement (unsealed) taken only when its sealed start is on record
RETIREMENT_ON_RECORD = "live-service-retirement-on-record"
# api_retirement.py: the start a sealed decision, verified (before: a typed contact, trusted)
RETIREMENT_SEALED = "api-retirement-sealed"
COMMITS_IN_TASK = "commits-in-workflow-task"  # process.py: commits as local activities

# Stop 8's own (workflows/legacy/), and the move of its runs to v2: never bundled.
TELL_PUBLICATIONS = "tell-publications"  # legacy/subscription.py: publications told of production
SHORT_LAUNCH_ID = "short-launch-id"  # legacy/subscription.py: the launch's decision id shortened
REFUSE_UNKNOWN_SIGNALS = "refuse-unknown-signals"  # legacy/procedure.py: refused on the record
# legacy/__init__.py, one id per event at which a run may move (`<prefix>/<n>`):
MIGRATE_TO_V2 = "migrate-to-v2"  # a stop-8 run waiting on a person moves to v2
LEGACY_UNSEALED_REFUSED = "legacy-unsealed-refused"  # a stop-8 run refuses unsealed decisions

STOP_18 = frozenset({
    PROCESS_V2, ADMISSION, CHECKS_IN_VERIFICATION, LIVE_SERVICE, VERIFIED_IN_COMMIT,
    TERMINATION_ON_RECORD, LICENCE_RENEWAL_TOLD, RETIREMENT_ON_RECORD, RETIREMENT_SEALED,
    COMMITS_IN_TASK,  # new with the bundle
})
# Deadlines wait on one timer kept from step to step (workflows/deadlines.py), not a timer
# started and cancelled per step.
DEADLINE_CLOCK = "deadline-clock"  # deadlines.py, process.py
STOP_19 = STOP_18 | {DEADLINE_CLOCK}

RELEASES = (("stop-19", STOP_19), ("stop-18", STOP_18))  # newest first
BUNDLE = RELEASES[0][0]  # the one marker a run begun now records


def patched(patch_id: str) -> bool:
    """`workflow.patched(patch_id)`, answered by the marker of the first release that has it."""
    for marker, patches in RELEASES:
        if patch_id in patches and workflow.patched(marker):
            return True
    return workflow.patched(patch_id)
