"""The one way the tests wait: ask again until the answer comes, or fail saying what never did."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

# Seconds: ample for anything a test waits on between two steps, short enough to fail a hung one.
TIMEOUT = 30

T = TypeVar("T")


async def eventually(check: Callable[[], T | Awaitable[T]], timeout: float = TIMEOUT,
                     what: str = "", *, interval: float = 0.1) -> T:
    """Call `check` (a function or a coroutine function) until it answers something truthy, and
    return that answer.

    A falsy answer, or an AssertionError raised by `check`, means "not yet": it is asked again
    after `interval` seconds. Any other exception is raised at once. After `timeout` seconds
    this fails with an AssertionError naming `what`, and the last "not yet" (the assertion's
    message, or the falsy answer).
    """
    last = ""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            while True:
                try:
                    answer = check()
                    if inspect.isawaitable(answer):
                        answer = await answer
                except AssertionError as err:
                    last = str(err)
                else:
                    if answer:
                        return answer
                    last = f"the last answer was {answer!r}"
                await asyncio.sleep(interval)
    except TimeoutError:
        if not deadline.expired():
            raise  # from `check` itself
        raise AssertionError(f"never happened within {timeout} s: {what or check}"
                             + (f"; {last}" if last else "")) from None
