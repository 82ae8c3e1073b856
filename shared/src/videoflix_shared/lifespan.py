"""Opening and closing what a service's lifespan (or a worker's run) holds: `LifespanStack`.

Each resource is registered as soon as it exists, with what closes it; on the way out
everything is closed in reverse order, each step even when one before it failed
(`contextlib.AsyncExitStack`). Background tasks share one `stop` event, set first thing on
the way out so every loop winds down while the rest closes; `unless_stopped` awaits a
piece of work only until a stop event is set (connecting while the servers are down).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


class LifespanStack(contextlib.AsyncExitStack):
    """`async with LifespanStack() as resources:` then, per resource,
    `resources.push_async_callback(engine.dispose)` right after creating it, and
    `resources.start_task(...)` for what runs in the background until the way out."""

    def __init__(self, stop: asyncio.Event | None = None) -> None:
        super().__init__()
        self.stop = stop if stop is not None else asyncio.Event()
        self._tasks: list[tuple[asyncio.Task[Any], bool]] = []

    def start_task(
        self, work: Coroutine[Any, Any, T], *, name: str, cancel_on_exit: bool = True
    ) -> asyncio.Task[T]:
        """Run `work` in the background; on the way out it is cancelled, or, with
        `cancel_on_exit=False` (a loop that ends by itself once `stop` is set, finishing the
        step it is in), awaited. Tasks end at the point of the stack where the first was
        started: after what is registered later, before what was registered earlier."""
        if not self._tasks:
            self.push_async_callback(self._end_tasks)
        task = asyncio.create_task(work, name=name)
        self._tasks.append((task, cancel_on_exit))
        return task

    async def _end_tasks(self) -> None:
        for task, cancel in self._tasks:
            if cancel:
                task.cancel()
        await asyncio.gather(*(task for task, _ in self._tasks), return_exceptions=True)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self.stop.set()
        return await super().__aexit__(exc_type, exc, traceback)


async def unless_stopped(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> bool:
    """Await `work` unless `stop` is set first, which cancels it. True when `work` finished
    (its exception, if it raised, propagates), False when it was stopped."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # let it unwind; raises nothing of the task's
    if task.cancelled():
        return False
    task.result()  # its exception, if it raised one
    return True
