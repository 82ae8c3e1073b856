"""LifespanStack closes in reverse order, every step, and ends its background tasks;
unless_stopped gives up on its work when the stop event comes first."""

from __future__ import annotations

import asyncio

import pytest

from videoflix_shared.lifespan import LifespanStack, unless_stopped


async def test_everything_is_closed_in_reverse_order_even_after_a_failing_close() -> None:
    closed: list[str] = []

    async def close(name: str) -> None:
        closed.append(name)

    async def fail() -> None:
        closed.append("failing")
        raise ConnectionError("already gone")

    resources = LifespanStack()
    await resources.__aenter__()
    resources.push_async_callback(close, "engine")
    resources.push_async_callback(fail)
    resources.push_async_callback(close, "relay")
    with pytest.raises(ConnectionError, match="already gone"):
        await resources.__aexit__(None, None, None)
    assert closed == ["relay", "failing", "engine"]


async def test_tasks_end_between_what_came_before_and_after_them() -> None:
    events: list[str] = []

    async def connect() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("connect cancelled")
            raise

    async def loop(stop: asyncio.Event) -> None:
        await stop.wait()
        events.append("loop ended by stop")

    async def close(name: str) -> None:
        events.append(f"{name} closed")

    async with LifespanStack() as resources:
        resources.push_async_callback(close, "bus")
        resources.start_task(connect(), name="connect")
        resources.start_task(loop(resources.stop), name="loop", cancel_on_exit=False)
        resources.push_async_callback(close, "relay")
        await asyncio.sleep(0)
    assert events[0] == "relay closed"
    assert sorted(events[1:3]) == ["connect cancelled", "loop ended by stop"]
    assert events[3] == "bus closed"


async def test_a_stop_event_passed_in_is_set_on_the_way_out() -> None:
    stop = asyncio.Event()
    async with LifespanStack(stop) as resources:
        assert resources.stop is stop
        assert not stop.is_set()
    assert stop.is_set()


async def test_unless_stopped_reports_finished_work() -> None:
    done: list[bool] = []

    async def work() -> None:
        done.append(True)

    assert await unless_stopped(asyncio.Event(), work()) is True
    assert done == [True]


async def test_unless_stopped_cancels_work_that_outlasts_the_stop() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await unless_stopped(stop, forever()) is False
    assert cancelled.is_set()


async def test_unless_stopped_passes_on_the_failure_of_its_work() -> None:
    async def broken() -> None:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        await unless_stopped(asyncio.Event(), broken())
