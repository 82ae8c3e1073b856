"""Dead letters: mail events the mailer gave up on, kept in Redis where every instance and
the operator's CLI see them, until someone replays or deletes them.

`<prefix>mailer:dead-letters` is a sorted set of ids by time of failure;
`<prefix>mailer:dead-letter:<id>` a hash with the original subject and payload (byte for
byte, so a replay republishes exactly what was received), why it failed and when.
The id is derived from the stream position, so recording the same failed delivery twice
(e.g. when the final `term` was lost and JetStream delivered it again) keeps one entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import cast

from redis.asyncio import Redis

from videoflix_shared.redis import prefixed_key
from videoflix_shared.settings import CommonSettings


@dataclass(frozen=True)
class DeadLetter:
    id: str
    kind: str  # malformed (cannot be read) | rejected (5xx for it) | expired (retried too long)
    reason: str
    subject: str  # unprefixed, e.g. "auth.user.registered"
    payload: bytes
    event_id: str
    recipient: str
    deliveries: int
    stream_sequence: int
    failed_at: datetime

    @staticmethod
    def make_id(*, subject: str, stream_sequence: int, published_at: datetime) -> str:
        position = f"{subject}|{stream_sequence}|{published_at.isoformat()}"
        return hashlib.sha256(position.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["payload"] = self.payload.decode("utf-8", errors="replace")
        data["failed_at"] = self.failed_at.isoformat()
        return data


def _to_hash(letter: DeadLetter) -> dict[str, bytes | str | int]:
    return {
        "kind": letter.kind,
        "reason": letter.reason,
        "subject": letter.subject,
        "payload": letter.payload,
        "event_id": letter.event_id,
        "recipient": letter.recipient,
        "deliveries": letter.deliveries,
        "stream_sequence": letter.stream_sequence,
        "failed_at": letter.failed_at.isoformat(),
    }


def _from_hash(letter_id: str, fields: dict[bytes, bytes]) -> DeadLetter:
    text = {k.decode(): v.decode("utf-8", errors="replace") for k, v in fields.items()}
    return DeadLetter(
        id=letter_id,
        kind=text["kind"],
        reason=text["reason"],
        subject=text["subject"],
        payload=fields[b"payload"],
        event_id=text.get("event_id", ""),
        recipient=text.get("recipient", ""),
        deliveries=int(text.get("deliveries", 0)),
        stream_sequence=int(text.get("stream_sequence", 0)),
        failed_at=datetime.fromisoformat(text["failed_at"]),
    )


class DeadLetterStore:
    def __init__(self, redis: Redis, settings: CommonSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.index_key = prefixed_key(settings, "mailer", "dead-letters")

    def _letter_key(self, letter_id: str) -> str:
        return prefixed_key(self.settings, "mailer", "dead-letter", letter_id)

    async def add(self, letter: DeadLetter) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._letter_key(letter.id))
            pipe.hset(self._letter_key(letter.id), mapping=_to_hash(letter))
            pipe.zadd(self.index_key, {letter.id: letter.failed_at.timestamp()})
            await pipe.execute()

    async def list(self, *, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""
        ids = [i.decode() for i in await self.redis.zrevrange(self.index_key, 0, limit - 1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for letter_id in ids:
                pipe.hgetall(self._letter_key(letter_id))
            hashes = await pipe.execute()
        return [_from_hash(i, h) for i, h in zip(ids, hashes, strict=True) if h]

    async def get(self, letter_id: str) -> DeadLetter | None:
        # redis-py types its commands for the sync and the async client at once.
        pending = cast(
            Awaitable[dict[bytes, bytes]], self.redis.hgetall(self._letter_key(letter_id))
        )
        fields = await pending
        return _from_hash(letter_id, fields) if fields else None

    async def remove(self, letter_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._letter_key(letter_id))
            pipe.zrem(self.index_key, letter_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def count(self) -> int:
        return int(await self.redis.zcard(self.index_key))
