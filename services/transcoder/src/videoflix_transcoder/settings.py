"""Transcoder settings (shared ones come from CommonSettings).

Every variable is documented in the transcoder section of the root `.env.example`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from videoflix_shared.settings import CommonSettings


class TranscoderSettings(CommonSettings):
    http_port: int = Field(8004, alias="HTTP_PORT")  # health port

    ffmpeg_bin: str = Field("ffmpeg", alias="TRANSCODER_FFMPEG")
    ffprobe_bin: str = Field("ffprobe", alias="TRANSCODER_FFPROBE")
    ffmpeg_threads: int = Field(0, alias="TRANSCODER_FFMPEG_THREADS")  # 0: ffmpeg decides

    # x264 speed/quality. Before encoding, a trial encode of a few seconds measures how hard
    # the content is (bits per pixel at fixed quality, see ratecontrol.run_trial):
    # above TRANSCODER_DETAILED_CONTENT_BPP the detailed preset is used, which spends more
    # CPU where the ladder's bit rates are too low for the content (noise, grain, fine
    # detail) and the encoder's efficiency shows; ordinary content gets the fast preset,
    # where a slower one buys nothing visible. A per-rung preset overrides both.
    x264_preset: str = Field("veryfast", alias="TRANSCODER_X264_PRESET")
    x264_preset_detailed: str = Field("veryfast", alias="TRANSCODER_X264_PRESET_DETAILED")
    detailed_content_bpp: float = Field(0.35, ge=0, alias="TRANSCODER_DETAILED_CONTENT_BPP")
    x264_preset_480p: str = Field("", alias="TRANSCODER_X264_PRESET_480P")
    x264_preset_720p: str = Field("", alias="TRANSCODER_X264_PRESET_720P")
    x264_preset_1080p: str = Field("", alias="TRANSCODER_X264_PRESET_1080P")
    # Extra x264 options ("key=value:..."), for ordinary and for detailed content. aq-mode=2
    # helps both. For detailed content, what wins back most of what the fast preset loses
    # for little CPU: trellis=1, a longer mb-tree lookahead (30 frames; 10 is veryfast's)
    # and x264's grain-tune deblocking (-2,-2), which keeps the texture that noisy content
    # is made of. A slower subme or preset bought less per CPU second (README, Benchmark).
    # trellis costs ~6% CPU for nothing visible on ordinary content.
    x264_params: str = Field("aq-mode=2", alias="TRANSCODER_X264_PARAMS")
    x264_params_detailed: str = Field(
        "trellis=1:aq-mode=2:deblock=-2,-2:rc-lookahead=30",
        alias="TRANSCODER_X264_PARAMS_DETAILED",
    )
    # Rate control. "content" (content-aware ladder, ratecontrol.py): every rung gets a
    # capped CRF chosen per title from a trial encode of sampled windows, aiming the top rung
    # at TRANSCODER_VMAF_TARGET but never far below what the fixed bit rate would give, with
    # maxrate no higher than the rung's nominal rate. "fixed": the nominal bit rates
    # (480p 1500k, 720p 3500k, 1080p 6500k) whatever the content.
    rate_control: Literal["content", "fixed"] = Field("content", alias="TRANSCODER_RATE_CONTROL")
    vmaf_target: float = Field(94.0, ge=60, le=100, alias="TRANSCODER_VMAF_TARGET")
    crf_min: float = Field(18.0, ge=10, le=40, alias="TRANSCODER_CRF_MIN")
    crf_max: float = Field(28.0, ge=10, le=45, alias="TRANSCODER_CRF_MAX")
    # x264 options of ordinary content on the content-aware ladder (detailed content keeps
    # TRANSCODER_X264_PARAMS_DETAILED). trellis=1 there: at the same CRF it costs ~2.5 %
    # more bits for ~1 VMAF more (Big Buck Bunny, bikes), worth ~1.3 CRF steps, i.e. far
    # fewer bits for the same VMAF; the fixed ladder keeps today's options.
    x264_params_content: str = Field("aq-mode=2:trellis=1", alias="TRANSCODER_X264_PARAMS_CONTENT")
    audio_bitrate: str = Field("128k", alias="TRANSCODER_AUDIO_BITRATE")
    segment_seconds: int = Field(10, ge=1, alias="TRANSCODER_SEGMENT_SECONDS")
    # 0: one key frame per segment, all HLS needs to switch renditions; every extra one
    # costs bits at a fixed bit rate (measured: every 2 s instead of every 10 s lost 0.2 VMAF
    # on detailed content). Otherwise it must divide the segment length.
    keyframe_seconds: float = Field(0.0, ge=0, alias="TRANSCODER_KEYFRAME_SECONDS")

    # Jobs
    max_jobs: int = Field(1, ge=1, alias="TRANSCODER_MAX_JOBS")  # per worker process
    max_attempts: int = Field(3, ge=1, alias="TRANSCODER_MAX_ATTEMPTS")  # encodes per video
    max_tries: int = Field(20, ge=1, alias="TRANSCODER_MAX_TRIES")  # arq tries incl. publishing
    retry_backoff_seconds: float = Field(10.0, ge=0, alias="TRANSCODER_RETRY_BACKOFF_SECONDS")
    timeout_factor: float = Field(10.0, gt=0, alias="TRANSCODER_TIMEOUT_FACTOR")
    min_timeout_seconds: float = Field(300.0, gt=0, alias="TRANSCODER_MIN_TIMEOUT_SECONDS")
    max_job_seconds: float = Field(6 * 3600.0, gt=0, alias="TRANSCODER_MAX_JOB_SECONDS")
    job_lease_seconds: float = Field(30.0, gt=0, alias="TRANSCODER_JOB_LEASE_SECONDS")
    keep_result_seconds: int = Field(7 * 86400, ge=0, alias="TRANSCODER_KEEP_RESULT_SECONDS")
    # On SIGTERM a worker takes no new job and gives its running ones this long to finish;
    # then it hands them back to the queue (worker.py). The container's stop grace period
    # (compose stop_grace_period, Kubernetes terminationGracePeriodSeconds) must exceed it.
    shutdown_grace_seconds: float = Field(0.0, ge=0, alias="TRANSCODER_SHUTDOWN_GRACE_SECONDS")

    # Films: a source longer than this is cut into chunks of about TRANSCODER_CHUNK_SECONDS
    # (whole segments), each its own job per rung group (films.py); shorter ones take the
    # single pass. A chunk job may run TRANSCODER_CHUNK_JOB_SECONDS at most (arq's timeout;
    # a killed worker's chunk is taken over after TRANSCODER_JOB_LEASE_SECONDS anyway).
    film_threshold_seconds: float = Field(120.0, ge=0, alias="TRANSCODER_FILM_THRESHOLD_SECONDS")
    chunk_seconds: float = Field(60.0, gt=0, alias="TRANSCODER_CHUNK_SECONDS")
    chunk_job_seconds: float = Field(1800.0, gt=0, alias="TRANSCODER_CHUNK_JOB_SECONDS")
    # How often one worker publishes which videos wait in the queue and which run (the
    # catalog's sweeper tells "queued" from "stuck" by it).
    queue_state_interval_seconds: float = Field(
        30.0, gt=0, alias="TRANSCODER_QUEUE_STATE_INTERVAL_SECONDS"
    )

    progress_step_percent: float = Field(5.0, gt=0, alias="TRANSCODER_PROGRESS_STEP_PERCENT")
    progress_interval_seconds: float = Field(
        5.0, gt=0, alias="TRANSCODER_PROGRESS_INTERVAL_SECONDS"
    )

    @model_validator(mode="after")
    def _crf_bounds_in_order(self) -> TranscoderSettings:
        if self.crf_min > self.crf_max:
            raise ValueError("TRANSCODER_CRF_MIN must not be above TRANSCODER_CRF_MAX")
        return self

    @property
    def queue_name(self) -> str:
        """The arq queue, under the stack's Redis prefix so stacks and test runs never mix."""
        return f"{self.redis_key_prefix}arq:queue"

    @property
    def keyframe_interval(self) -> float:
        return self.keyframe_seconds or float(self.segment_seconds)

    def x264_params_for(self, *, detailed: bool, content_aware: bool = False) -> str:
        if detailed:
            return self.x264_params_detailed
        return self.x264_params_content if content_aware else self.x264_params

    def preset_for(self, rendition: str, *, detailed: bool = False) -> str:
        per_rung = {
            "480p": self.x264_preset_480p,
            "720p": self.x264_preset_720p,
            "1080p": self.x264_preset_1080p,
        }.get(rendition, "")
        return per_rung or (self.x264_preset_detailed if detailed else self.x264_preset)
