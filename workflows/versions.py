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

# Every patch id of the workflows, each named once here and used by its name where it guards
# the change; the string is what histories carry, so it never changes.

# Bundled in stop-18 (answered by its one marker, see BUNDLED).
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

BUNDLE = "stop-18"
BUNDLED = frozenset({
    PROCESS_V2, ADMISSION, CHECKS_IN_VERIFICATION, LIVE_SERVICE, VERIFIED_IN_COMMIT,
    TERMINATION_ON_RECORD, LICENCE_RENEWAL_TOLD, RETIREMENT_ON_RECORD, RETIREMENT_SEALED,
    COMMITS_IN_TASK,  # new with the bundle
})

def patched(patch_id: str) -> bool:
    """`workflow.patched(patch_id)`, answered by the bundle's one marker when it is in it."""
    if patch_id in BUNDLED and workflow.patched(BUNDLE):
        return True
    return workflow.patched(patch_id)
