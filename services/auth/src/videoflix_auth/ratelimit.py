"""Fixed-window rate limits in Redis (login and password-reset attempts).

Each attempt increments its counters first and is refused when any is over its limit, so
concurrent attempts cannot slip past a check-then-increment race (`RateLimited`: a 429
with Retry-After). Email addresses are
hashed into the key so Redis holds no addresses. When Redis is unreachable the limiter
lets requests through (logged): a Redis outage must not lock every user out.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from videoflix_auth.metrics import RATE_LIMIT_HITS
from videoflix_shared.errors import RateLimited
from videoflix_shared.redis import prefixed_key
from videoflix_shared.settings import CommonSettings

logger = logging.getLogger(__name__)

TOO_MANY_ATTEMPTS = "Too many attempts. Please try again later."

# The limits by name (what a refusal is counted under, videoflix_auth.metrics).
LOGIN_PER_IP = "login:ip"
LOGIN_PER_EMAIL = "login:email"
REGISTER_PER_IP = "register:ip"
RESET_PER_IP = "reset:ip"
RESET_PER_EMAIL = "reset:email"
EMAILS_PER_ADDRESS = "email:address"
LIMIT_NAMES = (
    LOGIN_PER_IP,
    LOGIN_PER_EMAIL,
    REGISTER_PER_IP,
    RESET_PER_IP,
    RESET_PER_EMAIL,
    EMAILS_PER_ADDRESS,
)
for _name in LIMIT_NAMES:  # every series from the start: a 0 rather than nothing
    RATE_LIMIT_HITS.labels(_name)


@dataclass(frozen=True)
class Limit:
    name: str  # one of LIMIT_NAMES
    subject: str  # the IP or the email address
    max_attempts: int
    window_seconds: int


class RateLimiter:
    def __init__(self, redis: Redis, settings: CommonSettings) -> None:
        self.redis = redis
        self.settings = settings

    def _key(self, limit: Limit) -> str:
        subject = hashlib.sha256(limit.subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return prefixed_key(self.settings, "auth", "ratelimit", limit.name, subject)

    async def hit(self, *limits: Limit) -> None:
        """Count one attempt against every limit; raise RateLimited if any is exceeded."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for limit in limits:
                    key = self._key(limit)
                    pipe.incr(key)
                    pipe.expire(key, limit.window_seconds, nx=True)
                    pipe.ttl(key)
                results = await pipe.execute()
        except RedisError as exc:
            logger.warning("rate limiter unavailable (%s); allowing the request", exc)
            return
        retry_after = 0
        for i, limit in enumerate(limits):
            count, _, ttl = results[3 * i : 3 * i + 3]
            if count > limit.max_attempts:
                retry_after = max(retry_after, ttl if ttl > 0 else limit.window_seconds)
                RATE_LIMIT_HITS.labels(limit.name).inc()
        if retry_after:
            raise RateLimited(TOO_MANY_ATTEMPTS, retry_after=retry_after)

    async def reset(self, *limits: Limit) -> None:
        try:
            await self.redis.delete(*(self._key(limit) for limit in limits))
        except RedisError as exc:
            logger.warning("rate limiter unavailable (%s); counters not reset", exc)
