"""The workflow sandbox the worker runs workflows in, and what it costs per workflow.

The SDK's sandbox imports the workflow modules (workflows/*.py: the processes, their step code
and the mechanism they share) afresh for every workflow run it starts or replays, so that no
run sees another's module state, and every module it imports comes in restricted
(`datetime.now`, `random`, `os`, ... refused at run time). It keeps those modules for as long
as the run stays in the worker's cache. What it does not need to do afresh is read and unmarshal
their bytecode: a code object is immutable, and every run's module executes it in globals of
its own. Unmarshalling it anew made about half of the memory each cached application held
(bench/README.md, "Worker memory"); `CachedWorkflowCode` keeps one code object per module for
the process's life, and everything else about the sandbox stays as the SDK makes it.

Also the code a worker runs stays the code it started with: a deploy replacing the files under a
running worker does not change what its new runs execute (a replay of old histories on new code
is what tests/test_replay.py and `workflow.patched` are for).

The passthrough list is for modules that are deterministic and hold no state of a run:
`onboarding.domain` (the models, rules and state the workflows use, pydantic included),
`onboarding.temporal.search_attributes`, stop 8's frozen code (workflows/legacy/), and the
libraries the models use. The workflow modules themselves are never passed through: code
passed through runs unrestricted (tests/test_sandbox.py shows a forbidden call caught in a
workflow module, and one passed through not caught).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import CodeType

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# Imported afresh into every run's sandbox (never passed through).
WORKFLOW_PACKAGE = "workflows"
PASSTHROUGH = (
    "onboarding.domain",
    "onboarding.temporal.search_attributes",
    "workflows.legacy",
    # Deterministic libraries the models use.
    "email_validator",
    "idna",
    "stdnum",
)


class _CachedCodeLoader(importlib.machinery.SourceFileLoader):
    code: dict[str, CodeType] = {}

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        found = self.code.get(path)
        if found is None:
            found = self.code[path] = super().get_code(fullname)  # type: ignore[assignment]
        return found  # type: ignore[return-value]


class CachedWorkflowCode(importlib.abc.MetaPathFinder):
    """Finds the workflow package's modules as Python would, with a loader that reads each
    one's bytecode once per process."""

    def find_spec(self, fullname: str, path, target=None):  # type: ignore[no-untyped-def]
        if fullname != WORKFLOW_PACKAGE and not fullname.startswith(WORKFLOW_PACKAGE + "."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = _CachedCodeLoader(fullname, spec.loader.path)
        return spec


def workflow_runner() -> SandboxedWorkflowRunner:
    if not any(isinstance(f, CachedWorkflowCode) for f in sys.meta_path):
        sys.meta_path.insert(0, CachedWorkflowCode())
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))
