"""A film's ledger in Redis: which of its pieces are done, how long each took, when it began.

One hash per (video, generation), `<prefix>transcoder:film:<id>:<generation>`: `started`
(epoch seconds), `audio` and `chunk:<n>:g<group>` (seconds the piece took; 0 when it was
found already written), `assemble:g<group>` once a group is assembled. Workers on any host
share it; HSET is idempotent, so a re-run piece is simply noted again. From it come the
video's progress, per-rung progress and ETA, and whether a group can be assembled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from videoflix_transcoder.chunks import FilmPlan
from videoflix_transcoder.settings import TranscoderSettings

LEDGER_TTL_SECONDS = 30 * 86400
DECODE_SHARE = 0.3  # a group's decode of the source, in units of the source's pixels


def chunk_part(chunk: int, group: int) -> str:
    return f"chunk:{chunk}:g{group}"


def assembly_part(group: int) -> str:
    return f"assemble:g{group}"


AUDIO_PART = "audio"


@dataclass(frozen=True)
class LedgerState:
    started: float | None
    done: dict[str, float]

    def group_ready(self, plan: FilmPlan, group: int) -> bool:
        """All chunks of `group` (and the audio, if any) are written."""
        if plan.has_audio and AUDIO_PART not in self.done:
            return False
        return all(chunk_part(c.index, group) in self.done for c in plan.chunks)

    def _group_weight(self, plan: FilmPlan, group: int) -> float:
        pixels = sum(r.width * r.height for r in plan.rungs(group))
        return pixels + DECODE_SHARE * plan.width * plan.height

    def _group_fraction(
        self, plan: FilmPlan, group: int, extra: tuple[int, float] | None = None
    ) -> float:
        if assembly_part(group) in self.done:
            return 1.0
        seconds = sum(
            c.seconds(plan.duration_seconds)
            for c in plan.chunks
            if chunk_part(c.index, group) in self.done
        )
        if extra is not None and extra[0] == group:
            seconds += extra[1]
        # The assembly is the last 2 % of a group.
        return min(0.98, 0.98 * seconds / plan.duration_seconds)

    def percent(self, plan: FilmPlan, extra: tuple[int, float] | None = None) -> float:
        """The film's progress; `extra`: (group, seconds) of a chunk being encoded now."""
        weights = [self._group_weight(plan, g) for g in range(len(plan.groups))]
        done = sum(w * self._group_fraction(plan, g, extra) for g, w in enumerate(weights))
        return round(min(99.9, 100 * done / sum(weights)), 1)

    def rung_percents(self, plan: FilmPlan) -> dict[str, float]:
        return {
            rung: round(100 * self._group_fraction(plan, group), 1)
            for group, rungs in enumerate(plan.groups)
            for rung in rungs
        }

    def eta_seconds(self, plan: FilmPlan, now: float | None = None) -> float | None:
        """Until every rung is ready, extrapolated from the progress so far."""
        fraction = self.percent(plan) / 100
        if self.started is None or fraction <= 0.01:
            return None
        elapsed = (now or time.time()) - self.started
        return round(elapsed * (1 - fraction) / fraction, 0)

    def chunk_seconds(self) -> dict[str, float]:
        """How long each chunk and the audio took (what the benchmark projects from)."""
        return {part: seconds for part, seconds in self.done.items() if seconds > 0}


class FilmLedger:
    def __init__(
        self, redis: Redis, settings: TranscoderSettings, video_id: int, generation: int
    ) -> None:
        self.redis = redis
        self.key = f"{settings.redis_key_prefix}transcoder:film:{video_id}:{generation}"

    # Pipelines: one round trip each, and redis-py types their results plainly.
    async def start(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hsetnx(self.key, "started", f"{time.time():.3f}")
            pipe.expire(self.key, LEDGER_TTL_SECONDS)
            await pipe.execute()

    async def note(self, part: str, seconds: float) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key, part, f"{seconds:.3f}")
            pipe.expire(self.key, LEDGER_TTL_SECONDS)
            await pipe.execute()

    async def read(self) -> LedgerState:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key)
            (raw,) = await pipe.execute()
        fields = {k.decode(): float(v) for k, v in raw.items()}
        started = fields.pop("started", None)
        return LedgerState(started=started, done=fields)

    async def forget(self) -> None:
        await self.redis.delete(self.key)
