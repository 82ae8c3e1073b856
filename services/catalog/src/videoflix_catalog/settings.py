"""Catalog service settings (shared ones come from CommonSettings)."""

from __future__ import annotations

from pydantic import Field

from videoflix_shared.settings import CommonSettings


class CatalogSettings(CommonSettings):
    http_port: int = Field(8002, alias="HTTP_PORT")
    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/videoflix_catalog",
        alias="CATALOG_DATABASE_URL",
    )
    # uvicorn worker processes of `videoflix-catalog serve` (the list endpoint scales with it).
    workers: int = Field(2, ge=1, alias="CATALOG_WORKERS")
    max_upload_bytes: int = Field(5 * 1024**3, ge=1, alias="CATALOG_MAX_UPLOAD_BYTES")
    ffprobe_bin: str = Field("ffprobe", alias="CATALOG_FFPROBE")
    ffprobe_timeout_seconds: float = Field(30.0, gt=0, alias="CATALOG_FFPROBE_TIMEOUT_SECONDS")
    # The public list's cached JSON lives at most this long even without a change.
    list_cache_ttl_seconds: int = Field(300, ge=1, alias="CATALOG_LIST_CACHE_TTL_SECONDS")
    # Stuck-job sweeper: a video in uploaded/processing with no progress for this long gets
    # its upload event published again (new generation), at most `max_retries` times, then
    # becomes failed.
    stuck_after_seconds: float = Field(900.0, gt=0, alias="CATALOG_STUCK_AFTER_SECONDS")
    stuck_max_retries: int = Field(2, ge=0, alias="CATALOG_STUCK_MAX_RETRIES")
    # ...but only while the transcoder is heard: it announces its queue every 30 s
    # (TRANSCODER_QUEUE_STATE_INTERVAL_SECONDS); silent for longer than this (NATS down,
    # no worker running), nothing is swept, since a silent video proves nothing then.
    transcoder_silent_after_seconds: float = Field(
        120.0, gt=0, alias="CATALOG_TRANSCODER_SILENT_AFTER_SECONDS"
    )
    sweep_interval_seconds: float = Field(60.0, gt=0, alias="CATALOG_SWEEP_INTERVAL_SECONDS")
    # Resumable (tus) uploads: an unfinished one is deleted this long after its last chunk.
    tus_expiry_seconds: float = Field(24 * 3600.0, gt=0, alias="CATALOG_TUS_EXPIRY_SECONDS")
    # The upload cleanup loop: how often it runs, and how long a temporary upload file
    # (a crashed single-request upload's .incoming/*.part) stays unwritten before it goes.
    upload_sweep_interval_seconds: float = Field(
        300.0, gt=0, alias="CATALOG_UPLOAD_SWEEP_INTERVAL_SECONDS"
    )
    upload_leftover_grace_seconds: float = Field(
        3600.0, gt=0, alias="CATALOG_UPLOAD_LEFTOVER_GRACE_SECONDS"
    )
    # The admin page's "Transcoding" panel: the job list the transcoder's dispatcher serves
    # on its internal health port (transcoder_jobs.py); it is never on the gateway.
    transcoder_jobs_url: str = Field(
        "http://127.0.0.1:8004/jobs", alias="CATALOG_TRANSCODER_JOBS_URL"
    )
