"""Redis clients: one connection pool per process, every key under `REDIS_KEY_PREFIX` so
several stacks (or test runs) can share one server without touching each other's keys."""

from __future__ import annotations

from redis.asyncio import Redis

from videoflix_shared.settings import CommonSettings


def create_redis(settings: CommonSettings) -> Redis:
    client: Redis = Redis.from_url(
        settings.redis_url,
        decode_responses=False,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )
    return client


def prefixed_key(settings: CommonSettings, *parts: object) -> str:
    """`REDIS_KEY_PREFIX` + the parts joined with ":" (e.g. `<prefix>mailer:delivery:<id>`)."""
    return settings.redis_key_prefix + ":".join(str(p) for p in parts)


async def check_redis(client: Redis) -> None:
    await client.ping()
