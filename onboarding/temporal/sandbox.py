"""The workflow sandbox the worker runs workflows in, and what it costs per workflow.

The SDK's sandbox imports the workflow modules (workflows/*.py: the processes, their step code
and the mechanism they share) afresh for every workflow run it starts or replays, so that no
run sees another's module state, and hands every run's modules restricted `datetime`, `random`,
`os`, `open`, ... (refused at run time). It keeps those modules for as long as the run stays in
the worker's cache: every cached application held its own copy of every function, class and
handler of the workflow modules, and of the SDK's workflow definition built from its own copy
of the class (bench/README.md, "Memory per waiting application").

Here the workflow modules are imported once per runner, inside the sandbox's restricted
environment, and every run uses those module objects (a "shared sandbox"):

- What a workflow module imports is what the sandbox gives it: `datetime`, `random`, `os`, ...
  are the SDK's restricted proxies, and so are the builtins (`open`) while a run executes. A
  proxy refuses a forbidden call when the restriction context it was made with says "at run
  time". The SDK gives each run a context of its own; here every run shares one whose "at run
  time" is kept per thread (`PerThreadRestrictionContext`): the thread running an activation
  (or creating a run's instance) is at run time, importing a module is not, and one run ending
  on one thread does not lift the restrictions of a run on another. tests/test_sandbox.py runs
  the forbidden calls (`datetime.now`, `random.random`, `os.getcwd`, `open`) through the shared
  modules, in runs after the first and in many runs at once, and all are refused.
- What it gives up is per-run isolation of module-level state: a run that changed a workflow
  module's global (or a class attribute, a module-level dict) would change it for every run in
  the worker, and replays could diverge. The workflow modules hold no mutable state of a run,
  and that is checked rather than assumed: `SharedSandboxRunner.changed_module_state()` compares
  each shared module's globals, classes and the containers they hold with what they were right
  after the module's import; the test session fails if any run changed them
  (tests/conftest.py), and tests/test_sandbox.py shows a change being caught.
- The workflow modules are never passed through: code passed through runs in the host's modules,
  with the real `datetime` (tests/test_sandbox.py shows a forbidden call caught in a workflow
  module, and one passed through not caught).

The payload converter is shared too: the SDK makes a new one for every run, and the pydantic
converter's instance holds nothing but its type adapters, cached by type hint (now the same
hints for every run: the shared modules' classes); one instance serves all runs
(`SHAREABLE_PAYLOAD_CONVERTERS`; a converter class not listed there still gets one per run).

The SDK's other per-run parts stay per run: the `_Instance` (its globals), the in-sandbox
instance, the workflow object and its event loop. This reaches into the SDK's private
`_Instance` and `Importer` (temporalio 1.35): tests/test_sandbox.py, test_replay.py and the
server tests fail if a new SDK version changes what this relies on.

What a waiting application still costs (bench/README.md): ~43 KiB of Python objects (the SDK's
instance, the run's own data: its input, state and pydantic models), and about twice as much
outside Python, in the SDK's core (Rust), which no runner setting reaches.

The code a worker runs stays the code it started with: a deploy replacing the files under a
running worker does not change what its runs execute (a replay of old histories on new code is
what tests/test_replay.py and `workflow.patched` are for).

The passthrough list is for modules that are deterministic and hold no state of a run:
`onboarding.domain` (the models, rules and state the workflows use, pydantic included),
`onboarding.temporal.search_attributes`, stop 8's frozen code (workflows/legacy/), and the
libraries the models use.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import threading
import types
from dataclasses import dataclass
from typing import Any

from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, DefaultPayloadConverter, PayloadConverter
from temporalio.bridge.proto.workflow_activation import InitializeWorkflow, WorkflowActivation
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker._workflow_instance import _WorkflowInstanceImpl
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox._importer import Importer, _thread_local_sys_modules
from temporalio.worker.workflow_sandbox._restrictions import RestrictionContext
from temporalio.worker.workflow_sandbox._runner import _Instance

from onboarding.temporal.codec import SharedPydanticPayloadConverter

# Imported once per runner, in the sandbox (never passed through).
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
# Payload converters whose instances hold nothing of a run (the pydantic one: a cache of type
# adapters by type hint), so that one instance can serve every run.
SHAREABLE_PAYLOAD_CONVERTERS = (PydanticPayloadConverter, SharedPydanticPayloadConverter,
                                DefaultPayloadConverter)

# The host's sys.modules.
_host_modules = _thread_local_sys_modules.orig


class PerThreadRestrictionContext(RestrictionContext):
    """The SDK's restriction context (`is_runtime`: a restricted call is refused;
    `in_activation`: a late import is warned of), each flag kept per thread."""

    def __init__(self) -> None:
        self._flags = threading.local()
        super().__init__()

    @property  # type: ignore[override]
    def is_runtime(self) -> bool:
        return getattr(self._flags, "is_runtime", False)

    @is_runtime.setter
    def is_runtime(self, value: bool) -> None:
        self._flags.is_runtime = value

    @property  # type: ignore[override]
    def in_activation(self) -> bool:
        return getattr(self._flags, "in_activation", False)

    @in_activation.setter
    def in_activation(self, value: bool) -> None:
        self._flags.in_activation = value


class LeanWorkflowInstance(_WorkflowInstanceImpl):
    """The SDK's workflow instance, without what a waiting run holds and does not use.

    - Its `random.Random` (`workflow.random()`, `workflow.uuid4()`; 2.5 KiB of Mersenne Twister
      state) is made when first asked for, from the seed the SDK's was made from: the SDK makes
      one per run and reseeds it on `update_random_seed` (`seed()` sets the whole state from
      the seed, whatever was drawn before), so a generator made from the run's current seed,
      not drawn from, is the SDK's, state for state. A run that never draws holds none (no
      workflow here draws); one asked for it during the instance's creation keeps the SDK's.
    - Its input and headers, which it keeps for as long as it lives (the run's arguments, the
      frames of its run), are copied out of the activation that starts the run into a message
      of their own: a protobuf message's part keeps its whole message in memory (its arena,
      outside Python's objects). Nothing else of that activation is kept (its info's parts:
      `detached`), so it is freed once applied: ~5.4 KiB per run for the copy of the whole
      activation the run kept before, ~1.7 KiB for the input alone.
    - The SDK keeps the deployment version of the latest activation (a part of it) until the
      next: every waiting run held its last activation, payloads as received and decoded. A
      copy of that part, equal to it, is kept instead.
    """

    _random_made: random.Random | None = None
    _random_asked = False

    def __init__(self, det: WorkflowInstanceDetails) -> None:
        super().__init__(det)
        if not self._random_asked:  # not drawn from: made again from the seed when asked
            self._random_made = None

    @property  # type: ignore[override]
    def _random(self) -> random.Random:
        self._random_asked = True
        made = self._random_made
        if made is None:
            made = self._random_made = random.Random(self._current_seed)
        return made

    @_random.setter
    def _random(self, value: random.Random) -> None:
        self._random_made = value

    def activate(self, act: WorkflowActivation) -> Any:
        try:
            return super().activate(act)
        finally:
            version = self._deployment_version_for_current_task
            if version is not None:
                self._deployment_version_for_current_task = detached_message(version)

    def _make_workflow_input(self, init_job: InitializeWorkflow) -> Any:
        kept = InitializeWorkflow()
        kept.arguments.extend(init_job.arguments)
        for name, header in init_job.headers.items():
            kept.headers[name].CopyFrom(header)
        return super()._make_workflow_input(kept)


class LeanWorkflowRunner(UnsandboxedWorkflowRunner):
    """The SDK's runner inside the sandbox, making `LeanWorkflowInstance`s. Like the SDK's
    own, it is host code, not imported again in the sandbox: the SDK's package is passed
    through, and so is this class (handed to the sandbox as it is, `_SharedInstance`)."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return LeanWorkflowInstance(det)  # type: ignore[abstract]


# The snippets _SharedInstance runs, compiled: a few per workflow class.
_COMPILED: dict[str, types.CodeType] = {}


class _SharedInstance(_Instance):
    """The SDK's sandboxed instance, with the runner's importer (its modules, its context)
    instead of one of its own."""

    def __init__(self, details: WorkflowInstanceDetails, runner_class: type[WorkflowRunner],
                 shared: _SharedModules) -> None:
        self.instance_details = details
        self.runner_class = runner_class
        self.importer = shared.importer
        self._current_thread_id = None
        self.globals_and_locals = {"__file__": "workflow_sandbox.py"}
        self._shared = shared
        self._create_instance()

    def _run_code(self, code: str, **extra_globals: Any) -> None:
        # The SDK's runs its few fixed snippets with `exec(code)`, compiling one again for
        # every activation and every payload's serialization context (~10 ms of worker CPU
        # per lifecycle); each is compiled once here, the same code run the same way.
        compiled = _COMPILED.get(code)
        if compiled is None:
            compiled = _COMPILED.setdefault(code, compile(code, "<string>", "exec"))
        super()._run_code(compiled, **extra_globals)  # type: ignore[arg-type]

    def activate(self, act: WorkflowActivation) -> Any:
        # The run keeps parts of the activation that starts it for as long as it lives (its
        # input, headers), and a part keeps its whole activation in memory. The lean instance
        # copies those parts out (`LeanWorkflowInstance`); another is given a copy of the
        # activation, holding only what it holds (not the payloads as received, encrypted).
        if self.runner_class is not LeanWorkflowRunner and any(
                job.HasField("initialize_workflow") for job in act.jobs):
            act = detached_message(act)
        return super().activate(act)

    def get_serialization_context(self, command_info: Any) -> Any:
        # Asked for every payload of an activation: the SDK's builds it in the sandbox (the
        # importer applied, a snippet run); it is the SDK's own code making a dataclass of the
        # run's info and its pending command (no workflow code, no import), called directly.
        return self.globals_and_locals["__temporal_in_sandbox"].get_serialization_context(
            command_info)

    def _create_instance(self) -> None:
        # As the SDK's, with the module state recorded between the import and the instance.
        cls = self.instance_details.defn.cls
        # The lean runner is handed in as it is (host code, as the SDK's passed-through runner
        # is); another is imported in the sandbox, as the SDK's sandbox does.
        runner = {"__temporal_runner_class": LeanWorkflowRunner} if (
            self.runner_class is LeanWorkflowRunner) else {}
        try:
            with self._shared.lock:
                self._run_code(
                    "with __temporal_importer.applied():\n"
                    f"  from {self._workflow_module_name()} import {cls.__name__} "
                    "as __temporal_workflow_class\n" + ("" if runner else
                    f"  from {self.runner_class.__module__} import "
                    f"{self.runner_class.__name__} as __temporal_runner_class\n"),
                    __temporal_importer=self.importer)
                self._shared.record_new_modules(self._workflow_module_name())
            self.importer.restriction_context.is_runtime = True
            self._run_code(
                "with __temporal_importer.applied():\n"
                "  from temporalio.worker.workflow_sandbox._in_sandbox import InSandbox\n"
                "  __temporal_in_sandbox = InSandbox(__temporal_instance_details, "
                "__temporal_runner_class, __temporal_workflow_class)\n",
                __temporal_importer=self.importer,
                __temporal_instance_details=self.instance_details, **runner)
        finally:
            self.importer.restriction_context.is_runtime = False


class _SharedModules:
    """One importer (its sys.modules, restricted proxies and builtins) for every run, and what
    the workflow modules' state was right after their import."""

    def __init__(self, restrictions: SandboxRestrictions) -> None:
        self.importer = Importer(restrictions, PerThreadRestrictionContext())
        self.lock = threading.Lock()
        self.recorded: dict[str, Any] = {}
        self.class_modules: set[str] = set()
        self._recorded_at = 0
        self._converters: dict[type, Any] = {}

    def payload_converter_factory(self, factory: Any) -> Any:
        """The factory of one payload converter for every run, when `factory` is a data
        converter's (the SDK's: a new instance of its payload converter class for each run)
        and that class is one holding nothing of a run; else `factory` itself."""
        converter = getattr(factory, "__self__", None)
        if (getattr(factory, "__func__", None) is not DataConverter._new_payload_converter
                or not isinstance(converter, DataConverter)
                or converter.payload_converter_class not in SHAREABLE_PAYLOAD_CONVERTERS):
            return factory
        cls = converter.payload_converter_class
        shared = self._converters.get(cls)
        if shared is None:
            with self.lock:
                if (shared := self._converters.get(cls)) is None:
                    one: PayloadConverter = factory()
                    shared = self._converters[cls] = lambda: one
        return shared

    def workflow_modules(self) -> dict[str, types.ModuleType]:
        """The modules executed in the sandbox (not the host's, passed through; not a restricted
        proxy of one) of the workflow package, and any other a workflow class came from (a
        test's)."""
        return {name: mod for name, mod in list(self.importer.new_modules.items())
                if (name == WORKFLOW_PACKAGE or name.startswith(WORKFLOW_PACKAGE + ".")
                    or name in self.class_modules)
                and type(mod) is types.ModuleType and _host_modules.get(name) is not mod}

    def record_new_modules(self, class_module: str) -> None:
        if class_module not in self.class_modules:
            self.class_modules.add(class_module)
        elif len(self.importer.new_modules) == self._recorded_at:
            return
        self._recorded_at = len(self.importer.new_modules)
        for name, mod in self.workflow_modules().items():
            if name not in self.recorded:
                self.recorded[name] = module_state(mod)

    def changed(self) -> list[str]:
        modules = self.workflow_modules()
        return sorted(name for name, state in self.recorded.items()
                      if module_state(modules[name]) != state)


def module_state(mod: types.ModuleType) -> Any:
    """What a run could change in a module: its globals (by identity), and inside the classes,
    functions and containers defined there, their attributes and items, to a few levels."""
    return {name: _state(value, mod.__name__, 4, set())
            for name, value in vars(mod).items()
            # A package's submodules appear on it as they are imported.
            if name != "__builtins__" and not (isinstance(value, types.ModuleType)
                                               and value.__name__ == f"{mod.__name__}.{name}")}


def _state(value: Any, module: str, depth: int, seen: set[int]) -> Any:
    if depth == 0 or id(value) in seen or isinstance(value, types.ModuleType):
        return id(value)
    seen = seen | {id(value)}
    if isinstance(value, dict):
        inner = {repr(k): _state(v, module, depth - 1, seen) for k, v in value.items()}
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        inner = [_state(v, module, depth - 1, seen) for v in items]
    elif isinstance(value, type) and value.__module__ == module:
        inner = {k: _state(v, module, depth - 1, seen) for k, v in vars(value).items()
                 if k not in ("__dict__", "__weakref__")}
    elif isinstance(value, types.FunctionType) and value.__module__ == module:
        inner = [_state(value.__defaults__, module, depth - 1, seen),
                 _state(value.__kwdefaults__, module, depth - 1, seen),
                 _state(value.__dict__, module, depth - 1, seen),
                 [id(c.cell_contents) for c in value.__closure__ or ()
                  if c.cell_contents is not None]]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        inner = {f.name: _state(getattr(value, f.name), module, depth - 1, seen)
                 for f in dataclasses.fields(value)}
    else:
        return id(value)
    return (id(value), inner)


@dataclass(frozen=True)
class SharedSandboxRunner(SandboxedWorkflowRunner):
    """The SDK's sandboxed runner, the workflow modules imported once for all its runs."""

    runner_class: type[WorkflowRunner] = LeanWorkflowRunner
    _shared: _SharedModules = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_shared", _SharedModules(self.restrictions))

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        det = dataclasses.replace(det, payload_converter_factory=self._shared
                                  .payload_converter_factory(det.payload_converter_factory))
        return _SharedInstance(detached(det), self.runner_class, self._shared)

    @property
    def shared_modules(self) -> dict[str, types.ModuleType]:
        """The workflow modules every run of this runner uses, by name."""
        return self._shared.workflow_modules()

    def changed_module_state(self) -> list[str]:
        """The shared modules whose state differs from what it was after their import."""
        return self._shared.changed()


def detached(det: WorkflowInstanceDetails) -> WorkflowInstanceDetails:
    """The run's details with their protobuf parts copied out of the activation that starts
    the run.

    The SDK hands a run parts of that activation (here its headers, memo, last completion
    result and failure; in the run, its input and headers), and a protobuf message's part
    keeps the whole message in memory (its arena, outside Python's objects: tracemalloc does
    not see it): every waiting workflow held its first activation as the worker received it,
    its payloads encrypted and decrypted, ~8-10 KiB, for as long as it stays cached. A copy
    holds only what it holds. The run is given a copy of that activation (`activate`)."""
    info = det.info
    return dataclasses.replace(
        det,
        info=dataclasses.replace(
            info, headers={k: detached_message(v) for k, v in info.headers.items()},
            raw_memo={k: detached_message(v) for k, v in info.raw_memo.items()}),
        last_completion_result=detached_message(det.last_completion_result),
        last_failure=detached_message(det.last_failure) if det.last_failure is not None else None)


def detached_message(message: Any) -> Any:
    """A protobuf message copied out of the message it is a part of."""
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def workflow_runner() -> SharedSandboxRunner:
    return SharedSandboxRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))
