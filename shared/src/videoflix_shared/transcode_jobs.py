"""The transcode queue as operators see it: one model for what the transcoder's dispatcher
serves on its internal health port (`GET /jobs`), what `videoflix-transcoder jobs --json`
prints and what catalog's admin API passes on to the admin page's "Transcoding" panel.

Services meet through HTTP and events only: the dispatcher builds these from its Redis
(videoflix_transcoder.jobs), catalog validates and serves them and never reads the
transcoder's keys. Additions are welcome; renames break the admin page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

JobState = Literal["queued", "running", "failed"]
JobPriority = Literal["first", "normal"]


class TranscodeJob(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str  # arq's job id (with the stack's key prefix): what `jobs retry|cancel` take
    state: JobState
    function: str  # transcode_video (a video's first job), film_audio, film_chunk, film_assemble
    video_id: int
    generation: int
    part: str | None = None  # None: the video's first job; "audio", "chunk 3", "assembly", ...
    chunk: int | None = None  # a film's chunk index
    rungs: list[str] = []  # the renditions a film piece encodes or assembles, when known
    priority: JobPriority = "normal"  # first: work that makes a video playable, runs first
    attempt: int = 1  # the try that runs (running), ran (failed) or comes next (queued)
    enqueued_at: datetime | None = None
    age_seconds: float = 0.0  # since it was queued
    due_in_seconds: float | None = None  # queued but held back (a retry's backoff)
    worker: str | None = None  # hostname:pid of the worker running it (or that ran it)
    started_at: datetime | None = None  # this try (running)
    failed_at: datetime | None = None
    reason: str | None = None  # why it failed, for an admin


class TranscodeJobs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    queue: str  # the arq queue's name
    generated_at: datetime
    queued: list[TranscodeJob]  # in the order they will start
    running: list[TranscodeJob]
    failed: list[TranscodeJob]  # the most recent first, a bounded number
