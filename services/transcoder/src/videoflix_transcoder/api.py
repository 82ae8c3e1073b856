"""The dispatcher's internal routes, served on its health port beside `/healthz`,
`/readyz` and `/metrics` (never through the gateway: gateway/routes.toml has no route to
the transcoder): `GET /jobs`, the read-only job list (jobs.py) that catalog's admin API
passes on to the admin page's "Transcoding" panel (docs/QUEUE.md)."""

from __future__ import annotations

from typing import Annotated

from arq.connections import ArqRedis
from fastapi import APIRouter, Depends, Request
from redis.exceptions import RedisError

from videoflix_shared.errors import Unavailable
from videoflix_shared.transcode_jobs import TranscodeJobs
from videoflix_transcoder.jobs import list_jobs
from videoflix_transcoder.settings import TranscoderSettings

JOBS_PATH = "/jobs"


async def get_settings(request: Request) -> TranscoderSettings:
    settings: TranscoderSettings = request.app.state.settings
    return settings


async def get_queue(request: Request) -> ArqRedis:
    """The dispatcher's Redis pool, once connections.run_connected has it."""
    pool: ArqRedis | None = getattr(request.app.state, "redis", None)
    if pool is None:
        raise Unavailable("The transcoder is not connected to Redis yet.", retry_after=5)
    return pool


Settings = Annotated[TranscoderSettings, Depends(get_settings)]
Queue = Annotated[ArqRedis, Depends(get_queue)]

router = APIRouter(include_in_schema=False)


@router.get(JOBS_PATH, response_model=TranscodeJobs)
async def transcode_jobs(settings: Settings, queue: Queue) -> TranscodeJobs:
    try:
        return await list_jobs(queue, settings)
    except RedisError as exc:
        raise Unavailable(f"The transcode queue is not readable: {exc}", retry_after=5) from exc
