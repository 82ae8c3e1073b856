"""The public video list as serialized JSON bytes cached in Redis.

Correctness over staleness: every change that can affect the list bumps a version counter
(`INCR`) after it commits, and the cached bytes carry the version they were built under.
A read fetches both in one round trip (`MGET`) and serves the bytes only when the versions
match, so a change is visible on the very next request, and a rebuild that raced with a
change can never be served afterwards. When Redis is unreachable the list is built from
the database on every request (slower, still correct).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from videoflix_catalog.settings import CatalogSettings
from videoflix_shared.redis import key

logger = logging.getLogger(__name__)

ListBuilder = Callable[[], Awaitable[list[dict]]]


class ListCache:
    def __init__(self, redis: Redis, *, key_prefix: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.version_key = f"{key_prefix}catalog:video-list:version"
        self.data_key = f"{key_prefix}catalog:video-list:json"
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_settings(cls, redis: Redis, settings: CatalogSettings) -> ListCache:
        return cls(redis, key_prefix=key(settings, ""), ttl_seconds=settings.list_cache_ttl_seconds)

    async def get_or_build(self, build: ListBuilder) -> bytes:
        try:
            version, cached = await self.redis.mget(self.version_key, self.data_key)
        except RedisError as exc:
            logger.warning("video list cache unavailable (%s); building from the database", exc)
            return serialize(await build())
        version = version or b"0"
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
        try:
            await self.redis.incr(self.version_key)
        except RedisError as exc:
            # The cached copy expires after the TTL at the latest.
            logger.error("cannot invalidate the video list cache: %s", exc)


def serialize(items: list[dict]) -> bytes:
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False).encode()
