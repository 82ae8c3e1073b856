"""The dispatcher: catalog events in, arq jobs out.

A durable JetStream consumer ("transcoder-dispatcher") on the CATALOG stream. An upload
becomes one arq job whose id is deterministic per (video, generation), so a redelivered
event never queues a second job; the message is acknowledged only after Redis took the
job (or the deletion is done), so nothing is lost when Redis is down: NATS redelivers.

Its health port also serves the queue for operators: the queue's gauges on `/metrics`
(metrics.QueueCollector) and the read-only job list on `GET /jobs` (api.py).
"""

from __future__ import annotations

import asyncio
import logging

from arq.connections import ArqRedis
from fastapi import FastAPI
from nats.aio.msg import Msg
from prometheus_client import REGISTRY

from videoflix_shared.bus import EventBus, parse_or_drop
from videoflix_shared.events import CATALOG_STREAM, VideoDeleted, VideoUploaded
from videoflix_transcoder.connections import run_connected
from videoflix_transcoder.metrics import QueueCollector
from videoflix_transcoder.queue import (
    TRANSCODE_FUNCTION,
    VideoMarks,
    cancel_queued_jobs,
    enqueue,
    transcode_job_id,
)
from videoflix_transcoder.service import delete_video_media
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

DURABLE = "transcoder-dispatcher"
FILTER_SUBJECT = "catalog.video.>"


class CatalogEventHandler:
    def __init__(self, *, settings: TranscoderSettings, pool: ArqRedis) -> None:
        self.settings = settings
        self.pool = pool
        self.marks = VideoMarks(pool, settings)

    async def __call__(self, msg: Msg, subject: str) -> None:
        event = await parse_or_drop(msg, subject)
        if event is None:
            return
        if isinstance(event, VideoUploaded):
            await self.enqueue_transcode(event)
        elif isinstance(event, VideoDeleted):
            await delete_video_media(
                settings=self.settings, marks=self.marks, video_id=event.video_id
            )
            logger.info("removed the media of deleted video %s", event.video_id)
        await msg.ack()

    async def enqueue_transcode(self, event: VideoUploaded) -> None:
        await self.marks.note_generation(event.video_id, event.generation)
        job_id = transcode_job_id(self.settings, event.video_id, event.generation)
        # A video's first job leads to its lowest rung: it goes ahead of higher-rung work.
        queued = await enqueue(
            self.pool,
            self.settings,
            TRANSCODE_FUNCTION,
            job_id,
            first=True,
            video_id=event.video_id,
            generation=event.generation,
            source_path=event.source_path,
        )
        if queued:
            logger.info("queued %s", job_id)
        else:
            logger.info("job %s already queued, running or done: not queued again", job_id)
        dropped = await cancel_queued_jobs(
            self.pool, self.settings, event.video_id, below_generation=event.generation
        )
        if dropped:
            logger.info(
                "dropped %d waiting job(s) of older generations of %s", dropped, event.video_id
            )


async def run(app: FastAPI, stop: asyncio.Event) -> None:
    """`videoflix-transcoder dispatcher`: consume catalog events until SIGTERM."""
    settings: TranscoderSettings = app.state.settings

    async def dispatch(bus: EventBus, pool: ArqRedis) -> None:
        await bus.consume(
            stream=CATALOG_STREAM,
            durable=DURABLE,
            filter_subject=FILTER_SUBJECT,
            handler=CatalogEventHandler(settings=settings, pool=pool),
            stop=stop,
        )

    # The queue's gauges on this process's /metrics, read from Redis at scrape time.
    collector = QueueCollector(settings)
    REGISTRY.register(collector)
    try:
        await run_connected(app, stop, principal="transcoder-dispatcher", work=dispatch)
    finally:
        REGISTRY.unregister(collector)
