"""The public video list as serialized JSON bytes, cached in each process and in Redis.

Correctness over staleness: every change that can affect the list bumps a version counter
(`INCR`) after it commits and announces it on a Redis channel. The bytes in Redis carry the
version they were built under; a read that misses the process's own copy fetches both in
one round trip (`MGET`) and serves the bytes only when the versions match, so a rebuild
that raced with a change is never served afterwards.

The hot path touches no Redis at all: each process keeps the last bytes it served and drops
them when the channel announces a change (its own changes drop them at once, so the next
request of the same process sees them; other processes within the channel's delivery time,
well under a millisecond on one host). The process copy is only used while the subscription
is up, a notification that arrives during a rebuild keeps the rebuilt bytes out of it, and
it expires with the Redis copy's TTL in any case. When Redis is unreachable the list is
built from the database on every request (slower, still correct).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from videoflix_catalog.settings import CatalogSettings
from videoflix_shared.redis import prefixed_key

logger = logging.getLogger(__name__)

ListBuilder = Callable[[], Awaitable[Sequence[Mapping[str, object]]]]
RESUBSCRIBE_SECONDS = 1.0


class ListCache:
    def __init__(self, redis: Redis, *, key_prefix: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.version_key = f"{key_prefix}catalog:video-list:version"
        self.data_key = f"{key_prefix}catalog:video-list:json"
        self.channel = f"{key_prefix}catalog:video-list:changed"
        self.ttl_seconds = ttl_seconds
        self._local: bytes | None = None
        self._local_expires = 0.0
        self._changes_seen = 0  # bumped by every notification: guards a rebuild in flight
        self._subscribed = False

    @classmethod
    def from_settings(cls, redis: Redis, settings: CatalogSettings) -> ListCache:
        return cls(
            redis,
            key_prefix=prefixed_key(settings, ""),
            ttl_seconds=settings.list_cache_ttl_seconds,
        )

    async def get_or_build(self, build: ListBuilder) -> bytes:
        if self._local is not None and time.monotonic() < self._local_expires:
            return self._local
        changes_before = self._changes_seen
        body = await self._shared_or_build(build)
        if self._subscribed and self._changes_seen == changes_before:
            self._local = body
            self._local_expires = time.monotonic() + self.ttl_seconds
        return body

    async def _shared_or_build(self, build: ListBuilder) -> bytes:
        try:
            stored: list[bytes | None] = await self.redis.mget(self.version_key, self.data_key)
        except RedisError as exc:
            logger.warning("video list cache unavailable (%s); building from the database", exc)
            return serialize(await build())
        version, cached = stored[0] or b"0", stored[1]
        if cached is not None:
            cached_version, _, body = cached.partition(b"\n")
            if cached_version == version:
                return body
        body = serialize(await build())
        try:
            await self.redis.set(self.data_key, version + b"\n" + body, ex=self.ttl_seconds)
        except RedisError as exc:
            logger.warning("cannot store the video list in Redis: %s", exc)
        return body

    async def invalidate(self) -> None:
        """Call after a change that affects the list has committed."""
        self._forget_local()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(self.version_key)
                pipe.publish(self.channel, b"1")
                await pipe.execute()
        except RedisError as exc:
            # The cached copies expire after the TTL at the latest.
            logger.error("cannot invalidate the video list cache: %s", exc)

    def _forget_local(self) -> None:
        self._changes_seen += 1
        self._local = None

    async def follow_changes(self, stop: asyncio.Event) -> None:
        """Drop this process's copy whenever any process announces a change (until `stop`)."""
        while not stop.is_set():
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._forget_local()  # changes may have been missed while unsubscribed
                    self._subscribed = True
                    while not stop.is_set():
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None:
                            self._forget_local()
            except (RedisError, OSError) as exc:
                logger.warning("video list change notifications lost (%s); resubscribing", exc)
            finally:
                self._subscribed = False
                self._forget_local()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESUBSCRIBE_SECONDS)


def serialize(items: Sequence[Mapping[str, object]]) -> bytes:
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False).encode()
