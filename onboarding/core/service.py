"""Running one of the platform's long-lived processes: the worker, the key verification
endpoint, the codec server."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from onboarding.core.config import Settings, get_settings
from onboarding.core.logs import configure_logging


def run_until_stopped(serve: Callable[[Settings, asyncio.Event], Awaitable[None]],
                      loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
    """Settings and logging from the environment, then `serve(settings, stop)`, on an event
    loop from `loop_factory` (asyncio's own by default); SIGTERM or SIGINT sets `stop`, and
    `serve` winds down and returns."""
    settings = get_settings()
    configure_logging(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
