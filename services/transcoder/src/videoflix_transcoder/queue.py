"""The transcode queue in Redis: arq job ids and what the dispatcher tells the workers.

arq keeps its job, result and in-progress keys under fixed names (`arq:job:<job id>`), so
the job id carries the stack's REDIS_KEY_PREFIX: `<prefix>transcode:<video_id>:<generation>`.
That keeps it deterministic per attempt (a redelivered VideoUploaded never makes a second
job) while two stacks or test runs on one Redis never share a job.

Beside the queue, two small facts per video let workers skip useless work: the newest
generation the dispatcher has seen, and that the video was deleted.
"""

from __future__ import annotations

from redis.asyncio import Redis

from videoflix_shared.redis import prefixed_key
from videoflix_transcoder.settings import TranscoderSettings

TRANSCODE_FUNCTION = "transcode_video"
MARK_TTL_SECONDS = 30 * 86400

# Raise the stored generation only when the new one is higher (events may come in any order).
_RAISE_GENERATION = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return tonumber(ARGV[1])
end
return current
"""


def transcode_job_id(settings: TranscoderSettings, video_id: int, generation: int) -> str:
    return f"{settings.redis_key_prefix}transcode:{video_id}:{generation}"


class VideoMarks:
    def __init__(self, redis: Redis, settings: TranscoderSettings) -> None:
        self.redis = redis
        self.settings = settings
        self._raise_generation = redis.register_script(_RAISE_GENERATION)  # no round trip

    def _key(self, video_id: int, what: str) -> str:
        return prefixed_key(self.settings, "transcoder", "video", video_id, what)

    async def note_generation(self, video_id: int, generation: int) -> int:
        """Remember `generation` if it is the newest; returns the newest known."""
        result = await self._raise_generation(
            keys=[self._key(video_id, "generation")], args=[generation, MARK_TTL_SECONDS]
        )
        return int(result)

    async def newest_generation(self, video_id: int) -> int:
        value = await self.redis.get(self._key(video_id, "generation"))
        return int(value) if value else 0

    async def mark_deleted(self, video_id: int) -> None:
        await self.redis.set(self._key(video_id, "deleted"), b"1", ex=MARK_TTL_SECONDS)

    async def is_deleted(self, video_id: int) -> bool:
        return bool(await self.redis.exists(self._key(video_id, "deleted")))

    async def save_failure(self, video_id: int, generation: int, reason: str) -> None:
        """Keep a failure until its event is out, so a retried publish says the same thing."""
        await self.redis.set(
            self._key(video_id, f"failed:{generation}"), reason.encode(), ex=MARK_TTL_SECONDS
        )

    async def saved_failure(self, video_id: int, generation: int) -> str | None:
        value = await self.redis.get(self._key(video_id, f"failed:{generation}"))
        return value.decode() if value else None
