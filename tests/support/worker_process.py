"""A platform process (the worker, by default) of its own: started, killed and started again at
will, configured by its settings alone, all it writes kept. The fault tests kill it; the
benchmark measures it.

Everything here listens on, and talks to, the loopback interface only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

import worker
from onboarding.core.config import Settings
from tests.support.eventually import eventually

WORKER_SCRIPT = Path(worker.__file__).resolve()


def _env_value(value: Any) -> str:
    """A setting as pydantic-settings reads it back from the environment."""

    def plain(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return v.get_secret_value()
        if isinstance(v, BaseModel):
            return plain(v.model_dump())
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple | set | frozenset):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    value = plain(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)  # complex settings are read as JSON
    return str(value)


def worker_environment(settings: Settings) -> dict[str, str]:
    """The worker's environment: every setting that has a value, whatever settings exist.

    Built from `Settings.model_fields`, so a setting added later (payload encryption keys, ...)
    reaches the worker without this function knowing of it. Variables of the calling process
    that name a setting are left out: only `settings` speaks.
    """
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is not None:
            env[name.upper()] = _env_value(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def terminate(process: subprocess.Popen, timeout: float) -> bool:
    """SIGTERM, and wait for the process to exit; SIGKILL it if it has not after `timeout`
    seconds. True if SIGTERM was enough."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True


class WorkerProcess:
    """`python worker.py` (or `argv`) in a process of its own, started, killed and restarted at
    will, and stopped by its pid only; each start's output is kept in `log_dir`.

    Its environment is `worker_environment(settings)` as `settings` stands at each start, with
    `extra_env` on top (a None value removes the variable). It runs in `log_dir`, so that no
    `.env` of the checkout is read.
    """

    def __init__(self, settings: Settings, log_dir: Path, name: str = "worker", *,
                 argv: list[str] | None = None,
                 extra_env: dict[str, str | None] | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.name = name
        self.argv = argv or [sys.executable, str(WORKER_SCRIPT)]
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Killed from other threads too (the SMTP server's): start and kill one at a time.
        self._lock = threading.Lock()

    @property
    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob(f"{self.name}-*.log"))

    @property
    def log(self) -> Path:
        """The output of the latest start."""
        return self.log_dir / f"{self.name}-{self.starts:03d}.log"

    def environment(self) -> dict[str, str]:
        env = worker_environment(self.settings)
        for key, value in self.extra_env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def start(self) -> None:
        with self._lock:
            assert not self.running, f"the {self.name} is already running"
            self.starts += 1
            with open(self.log, "wb") as log:
                self.process = subprocess.Popen(
                    self.argv,
                    env=self.environment(),
                    cwd=self.log_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"the {self.name} was never started"
        return self.process.pid

    async def ready(self, marker: str, timeout: float = 90) -> None:
        """Until the latest start has written `marker` (a line its output shows once ready)."""

        def up() -> bool:
            if not self.running:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n"
                                   f"{self.tail()}")
            assert marker in self.log.read_text(errors="replace"), f"its output:\n{self.tail()}"
            return True

        await eventually(up, timeout, f"{self.name} ready ({marker})", interval=0.2)

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> bool:
        """SIGKILL, as the kernel's OOM killer or a lost machine would; True if it was running."""
        with self._lock:
            process = self.process
            if process is None or process.poll() is not None:
                return False
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return True

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
        if self.running:
            terminate(self.process, timeout)

    def logs(self) -> str:
        """Everything every start wrote."""
        return "".join(p.read_text(errors="replace") for p in self.log_files)
