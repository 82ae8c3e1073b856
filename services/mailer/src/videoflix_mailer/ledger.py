"""The delivery ledger in Redis that every mailer instance shares: which event ids were
sent, and which one an instance is sending right now.

One key per event id, `<prefix>mailer:delivery:<event_id>`:
- absent: never sent (or the last attempt failed and let go of it);
- `claim:<token>` with a TTL: an instance is sending it; others back off and look again;
- `sent` with a long TTL: sent, every further delivery of that event is acknowledged unsent.
A claim that outlives a crashed instance expires, so the email is never stuck.
"""

from __future__ import annotations

import enum
import secrets

from redis.asyncio import Redis

from videoflix_shared.redis import prefixed_key
from videoflix_shared.settings import CommonSettings

SENT = b"sent"

# Atomically: take the claim if nobody holds the key, otherwise say who does.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'claimed'
end
if current == 'sent' then return 'sent' end
return 'busy'
"""

# Let go of a claim only if it is still ours (it may have expired and passed to another).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ClaimResult(enum.Enum):
    CLAIMED = "claimed"  # this instance sends it now
    SENT = "sent"  # already sent: acknowledge, send nothing
    BUSY = "busy"  # another instance is sending it right now


class DeliveryLedger:
    def __init__(
        self,
        redis: Redis,
        settings: CommonSettings,
        *,
        claim_seconds: float,
        sent_ttl_seconds: int,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.claim_ms = int(claim_seconds * 1000)
        self.sent_ttl_seconds = sent_ttl_seconds
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    def _key(self, event_id: str) -> str:
        return prefixed_key(self.settings, "mailer", "delivery", event_id)

    async def claim(self, event_id: str) -> tuple[ClaimResult, str]:
        """Try to become the sender of `event_id`; returns the result and the claim token."""
        token = f"claim:{secrets.token_hex(8)}"
        result = await self._claim(keys=[self._key(event_id)], args=[token, self.claim_ms])
        return ClaimResult(result.decode() if isinstance(result, bytes) else result), token

    async def mark_sent(self, event_id: str) -> None:
        await self.redis.set(self._key(event_id), SENT, ex=self.sent_ttl_seconds)

    async def release(self, event_id: str, token: str) -> None:
        await self._release(keys=[self._key(event_id)], args=[token])

    async def was_sent(self, event_id: str) -> bool:
        value: bytes | None = await self.redis.get(self._key(event_id))
        return value == SENT
