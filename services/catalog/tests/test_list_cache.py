"""The list cache's process copy: no Redis on the hot path, yet a change made by any catalog
process reaches every process at once, and a rebuild racing a change is never kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from videoflix_catalog.list_cache import ListCache
from videoflix_testing.plugin import REDIS_URL, wait_until_async


class Builder:
    """Builds the list from a value the test changes, counting how often it is asked."""

    def __init__(self) -> None:
        self.title = "first"
        self.calls = 0
        self.during_build = None

    async def __call__(self) -> list[dict]:
        self.calls += 1
        title = self.title
        if self.during_build is not None:
            await self.during_build()
        return [{"title": title}]


@pytest.fixture
async def processes(redis_prefix: str) -> AsyncIterator[tuple[ListCache, ...]]:
    """Two catalog processes' caches on one Redis, each following change notifications."""
    stop = asyncio.Event()
    prefix = f"{redis_prefix}listcache:{id(stop)}:"
    clients = [Redis.from_url(REDIS_URL) for _ in range(2)]
    caches = tuple(ListCache(r, key_prefix=prefix, ttl_seconds=300) for r in clients)
    tasks = [asyncio.create_task(c.follow_changes(stop)) for c in caches]
    await wait_until_async(lambda: all(c._subscribed for c in caches), what="subscriptions")
    yield caches
    stop.set()
    await asyncio.gather(*tasks)
    for client in clients:
        await client.aclose()


async def test_hot_path_serves_the_process_copy_without_redis(processes) -> None:
    cache, _ = processes
    build = Builder()
    assert await cache.get_or_build(build) == b'[{"title":"first"}]'
    await cache.redis.delete(cache.data_key)  # behind the cache's back, no notification
    for _ in range(20):
        assert await cache.get_or_build(build) == b'[{"title":"first"}]'
    assert build.calls == 1
    assert not await cache.redis.exists(cache.data_key), "the hot path never went to Redis"


async def test_a_change_in_one_process_reaches_the_other_process_at_once(processes) -> None:
    one, other = processes
    build = Builder()
    await one.get_or_build(build)
    await other.get_or_build(build)
    build.title = "second"
    await one.invalidate()
    assert await one.get_or_build(build) == b'[{"title":"second"}]', "own change: next request"

    async def other_sees_it() -> bool:
        return await other.get_or_build(build) == b'[{"title":"second"}]'

    await wait_until_async(other_sees_it, timeout=2, interval=0.005, what="the other process")


async def test_a_change_during_a_rebuild_keeps_the_rebuilt_bytes_out(processes) -> None:
    one, other = processes
    build = Builder()

    async def change_elsewhere() -> None:
        build.during_build = None
        build.title = "after the change"
        await other.invalidate()
        await wait_until_async(lambda: one._changes_seen > seen, what="notification")

    seen = one._changes_seen
    build.during_build = change_elsewhere
    assert await one.get_or_build(build) == b'[{"title":"first"}]'  # built before the change
    assert await one.get_or_build(build) == b'[{"title":"after the change"}]'
    assert build.calls == 2


async def test_without_notifications_the_process_copy_is_not_used(redis_prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    cache = ListCache(client, key_prefix=f"{redis_prefix}listcache:unsubscribed:", ttl_seconds=300)
    build = Builder()
    await cache.get_or_build(build)
    build.title = "changed"
    await client.incr(cache.version_key)  # another process's change; this one is not listening
    assert await cache.get_or_build(build) == b'[{"title":"changed"}]'
    await client.aclose()
