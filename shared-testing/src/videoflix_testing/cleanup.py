"""Removing what a test run or benchmark created on the shared servers under its own names:
Redis keys under its prefix, NATS JetStream streams under its stream prefix.

Both swallow errors: cleaning up must never turn a passing run into a failing one (a server
that went away took the run's data with it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping


def delete_redis_keys(url: str, prefix: str) -> None:
    """Delete every key under `prefix` on the Redis at `url`."""
    import redis

    client = redis.Redis.from_url(url)
    with contextlib.suppress(Exception):
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()


def delete_nats_streams(url: str, names: Mapping[str, str]) -> None:
    """Delete the streams of the NATS at `url` that carry these names: a mapping with
    NATS_SUBJECT_PREFIX and NATS_STREAM_PREFIX (the run's `nats_names`, or an env holding
    them). Synchronous: call it from a fixture's teardown or a script, not inside a loop."""
    from videoflix_shared.bus import EventBus

    async def delete() -> None:
        bus = EventBus(
            url=url,
            subject_prefix=names["NATS_SUBJECT_PREFIX"],
            stream_prefix=names["NATS_STREAM_PREFIX"],
        )
        try:
            await bus.connect(wait=False)
            await bus.delete_streams()
        finally:
            await bus.close()

    with contextlib.suppress(Exception):
        asyncio.run(delete())
