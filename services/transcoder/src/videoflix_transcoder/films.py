"""Films: the chunk-parallel path of a source longer than TRANSCODER_FILM_THRESHOLD_SECONDS
(the plan, file layout and ffmpeg commands are in chunks.py).

1. The video's first job (`service.transcode_video`) probes the source; for a film it calls
   `start_film`: thumbnail, content check and `plan.json` in `hls/.film-<id>-<gen>/`, then
   queues the audio job and one job per (chunk, rung group), the lowest rung's with
   priority (queue.py).
2. `encode_film_audio` / `encode_film_chunk` write their file under a temporary name and
   rename it, then note it in the film's ledger in Redis. A chunk whose file is already
   there (its worker died after the rename) is only noted; a killed worker costs one chunk.
3. Whoever notes the last piece a group waits for (its chunks and the audio) queues that
   group's assembly. `assemble_film_group` joins the chunks by stream copy into each rung's
   HLS directory and rewrites the master playlist: the lowest rung's assembly swaps a new
   `hls/<id>` into place (thumbnail, 480p, master) and announces the video playable
   (`transcoder.video.rendition_ready`); each further rung is renamed into it. After the
   last rung comes `transcoder.video.completed` and the work directory goes.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from arq.connections import ArqRedis

from videoflix_shared.bus import EventBus
from videoflix_transcoder.chunks import (
    FilmFiles,
    FilmPlan,
    assemble_command,
    audio_command,
    chunk_command,
    master_playlist,
    plan_chunks,
    rung_groups,
    stream_inf_line,
)
from videoflix_transcoder.errors import TranscodeError, transient
from videoflix_transcoder.events import (
    ProgressReporter,
    completed_event,
    progress_event,
    rendition_ready_event,
)
from videoflix_transcoder.ffmpeg import FfmpegFailed, ProgressCallback, run_ffmpeg
from videoflix_transcoder.ladder import plan_renditions
from videoflix_transcoder.ledger import (
    AUDIO_PART,
    FilmLedger,
    LedgerState,
    assembly_part,
    chunk_part,
)
from videoflix_transcoder.outcomes import publish_or_retry, replace_directory
from videoflix_transcoder.pipeline import (
    MASTER_PLAYLIST,
    THUMBNAIL,
    EncodeResult,
    check_complete,
    classify_ffmpeg_failure,
    encode_timeout,
    make_thumbnail,
)
from videoflix_transcoder.playlists import (
    VariantRate,
    correct_master_bandwidth,
    renditions_bitrate,
    variant_rate,
)
from videoflix_transcoder.probe import SourceInfo, video_start_time
from videoflix_transcoder.queue import enqueue_film_job
from videoflix_transcoder.ratecontrol import plan_content
from videoflix_transcoder.settings import TranscoderSettings

logger = logging.getLogger(__name__)

ASSEMBLY_WAIT_SECONDS = 2.0


def is_film(info: SourceInfo, settings: TranscoderSettings) -> bool:
    return info.duration_seconds > settings.film_threshold_seconds


@dataclass(frozen=True)
class FilmJob:
    """What every film job gets from the worker."""

    settings: TranscoderSettings
    bus: EventBus
    pool: ArqRedis
    video_id: int
    generation: int
    attempt: int = 1  # arq's try of this piece

    def check_attempts(self) -> None:
        """Before real work: a piece whose worker died too often fails the video. (Not at
        the start of the job: a try that only publishes again must not count.)"""
        if self.attempt > self.settings.max_attempts:
            raise TranscodeError(
                f"the worker stopped {self.attempt - 1} times in the middle of this part of "
                "the film (killed, restarted or out of memory); giving up",
                permanent=True,
            )

    @property
    def files(self) -> FilmFiles:
        return FilmFiles.of(self.settings.media_root, self.video_id, self.generation)

    @property
    def ledger(self) -> FilmLedger:
        return FilmLedger(self.pool, self.settings, self.video_id, self.generation)

    def load_plan(self) -> FilmPlan:
        plan = FilmPlan.load(self.files.plan)
        if plan is None:
            # Its work directory is gone: the video was deleted or superseded meanwhile.
            raise transient("the film's plan is missing (deleted or re-transcoded meanwhile)")
        return plan


# -- 1. plan --------------------------------------------------------------------------


async def start_film(job: FilmJob, *, source: Path, source_path: str, info: SourceInfo) -> str:
    """Plan the film (once) and queue its jobs (deterministic ids: queuing twice is harmless)."""
    settings, files = job.settings, job.files
    plan = FilmPlan.load(files.plan)
    if plan is None:
        files.root.mkdir(parents=True, exist_ok=True)
        await make_thumbnail(
            source=source, info=info, target=files.root / THUMBNAIL, settings=settings
        )
        # Rate control is decided here, once: every chunk of a rung encodes at its CRF.
        content = await plan_content(
            source=source, info=info, renditions=plan_renditions(info), settings=settings
        )
        renditions = content.renditions
        plan = FilmPlan(
            video_id=job.video_id,
            generation=job.generation,
            source_path=source_path,
            duration_seconds=info.duration_seconds,
            width=info.width,
            height=info.height,
            has_audio=info.has_audio,
            frame_rate=info.frame_rate,
            start_time=await video_start_time(source, ffprobe_bin=settings.ffprobe_bin),
            detailed=content.detailed,
            renditions=renditions,
            chunks=plan_chunks(
                info.duration_seconds,
                segment_seconds=settings.segment_seconds,
                chunk_seconds=settings.chunk_seconds,
            ),
            groups=rung_groups(renditions),
        )
        plan.save(files.plan)
    await job.ledger.start()
    if plan.has_audio:
        await enqueue_film_job(
            job.pool, settings, "film_audio", job.video_id, job.generation, AUDIO_PART, first=True
        )
    for group in range(len(plan.groups)):
        for chunk in plan.chunks:
            await enqueue_film_job(
                job.pool,
                settings,
                "film_chunk",
                job.video_id,
                job.generation,
                chunk_part(chunk.index, group),
                first=group == 0,
                chunk=chunk.index,
                group=group,
            )
    await _publish_progress(job, plan, await job.ledger.read())
    return f"film: {len(plan.chunks)} chunks x {len(plan.groups)} rung groups queued"


# -- 2. pieces ------------------------------------------------------------------------


async def encode_film_chunk(job: FilmJob, *, chunk_index: int, group: int) -> str:
    plan = job.load_plan()
    chunk = plan.chunks[chunk_index]
    rungs = plan.rungs(group)
    outputs = [job.files.chunk(r.name, chunk.index) for r in rungs]
    if not all(path.is_file() for path in outputs):
        job.check_attempts()
        started = time.monotonic()
        temporary = [path.with_name(f".{path.stem}-{secrets.token_hex(4)}.mp4") for path in outputs]
        for path in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
        settings = job.settings
        command = chunk_command(
            ffmpeg_bin=settings.ffmpeg_bin,
            source=settings.media_root / plan.source_path,
            plan=plan,
            chunk=chunk,
            rungs=rungs,
            presets=[settings.preset_for(r.name, detailed=plan.detailed) for r in rungs],
            outputs=temporary,
            x264_params=settings.x264_params_for(
                detailed=plan.detailed, content_aware=rungs[0].crf is not None
            ),
            keyframe_seconds=settings.keyframe_interval,
            threads=settings.ffmpeg_threads,
        )
        seconds = chunk.seconds(plan.duration_seconds)
        ledger = await job.ledger.read()
        reporter = _reporter(job)
        try:
            await _run(
                command,
                timeout=encode_timeout(settings, seconds),
                step=f"chunk {chunk.index}",
                on_progress=lambda done: reporter(
                    ledger.percent(plan, extra=(group, min(done, seconds)))
                ),
            )
            for tmp, path in zip(temporary, outputs, strict=True):
                tmp.replace(path)
        finally:
            await reporter.close()
            for tmp in temporary:
                tmp.unlink(missing_ok=True)
        took = time.monotonic() - started
    else:
        took = 0.0
    await job.ledger.note(chunk_part(chunk.index, group), took)
    await _after_piece(job, plan)
    return f"chunk {chunk.index} of group {group} done in {took:.1f}s"


async def encode_film_audio(job: FilmJob) -> str:
    plan = job.load_plan()
    target = job.files.audio
    started = time.monotonic()
    if not target.is_file():
        job.check_attempts()
        settings = job.settings
        temporary = target.with_name(f".audio-{secrets.token_hex(4)}.m4a")
        try:
            await _run(
                audio_command(
                    ffmpeg_bin=settings.ffmpeg_bin,
                    source=settings.media_root / plan.source_path,
                    target=temporary,
                    bitrate=settings.audio_bitrate,
                ),
                timeout=encode_timeout(settings, plan.duration_seconds / 10),
                step="the audio",
            )
            temporary.replace(target)
        finally:
            temporary.unlink(missing_ok=True)
    took = time.monotonic() - started
    await job.ledger.note(AUDIO_PART, took)
    await _after_piece(job, plan)
    return f"audio done in {took:.1f}s"


async def _after_piece(job: FilmJob, plan: FilmPlan) -> None:
    await _queue_ready_assemblies(job, plan, await job.ledger.read())


async def _queue_ready_assemblies(job: FilmJob, plan: FilmPlan, ledger: LedgerState) -> None:
    """Queue the assembly of every group whose pieces are all there (a higher group's only
    once the lowest rung is assembled: it adds to that output); publish progress."""
    for group in range(len(plan.groups)):
        if not ledger.group_ready(plan, group) or assembly_part(group) in ledger.done:
            continue
        if group > 0 and assembly_part(0) not in ledger.done:
            continue  # queued by the lowest rung's assembly when it is done
        await enqueue_film_job(
            job.pool,
            job.settings,
            "film_assemble",
            job.video_id,
            job.generation,
            assembly_part(group),
            first=group == 0,
            group=group,
        )
    await _publish_progress(job, plan, ledger)


# -- 3. assembly ----------------------------------------------------------------------


class WaitForLowerRung(Exception):
    """A higher group's assembly found the lowest rung not yet in place: try again soon."""


async def assemble_film_group(job: FilmJob, *, group: int) -> str:
    """Join the group's chunks into its rungs' HLS directories, atomically, and publish."""
    plan = job.load_plan()
    started = time.monotonic()
    final_dir = job.settings.media_root / "hls" / str(job.video_id)
    record = EncodeResult.load(final_dir)
    if group > 0 and (record is None or record.generation != job.generation):
        raise WaitForLowerRung
    for rendition in plan.rungs(group):
        record = EncodeResult.load(final_dir)
        # Already in place: assembled by an earlier try whose events did not go out.
        if (
            record is None
            or record.generation != job.generation
            or (rendition.name not in record.renditions)
        ):
            rung_dir = await _assemble_rung(job, plan, rendition.name)
            if group == 0:
                _swap_in_first_rung(job, plan, rung_dir, final_dir)
            else:
                _add_rung(plan, rung_dir, final_dir, rendition.name, job.settings.segment_seconds)
            record = EncodeResult.load(final_dir)
        assert record is not None
        ready = rendition_ready_event(
            video_id=job.video_id, result=record, rendition=rendition.name
        )
        await publish_or_retry(job.bus, ready, 1, job.settings)
    await job.ledger.note(assembly_part(group), time.monotonic() - started)
    assert record is not None
    if not record.complete:
        await _queue_ready_assemblies(job, plan, await job.ledger.read())
    if record.complete:
        await publish_or_retry(
            job.bus, completed_event(video_id=job.video_id, result=record), 1, job.settings
        )
        shutil.rmtree(job.files.root, ignore_errors=True)
    return f"assembled {', '.join(plan.groups[group])}"


async def _assemble_rung(job: FilmJob, plan: FilmPlan, rung: str) -> Path:
    job.check_attempts()
    files = job.files
    output = files.root / f".{rung}-{secrets.token_hex(4)}"
    output.mkdir()
    command = assemble_command(
        ffmpeg_bin=job.settings.ffmpeg_bin,
        concat_list=files.concat_list(rung, plan.chunks),
        audio=files.audio if plan.has_audio else None,
        output_dir=output,
        segment_seconds=job.settings.segment_seconds,
    )
    try:
        await _run(
            command,
            timeout=encode_timeout(job.settings, plan.duration_seconds / 20),
            step=f"joining {rung}",
        )
        check_complete(output / "index.m3u8", _as_info(plan))
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)
        raise
    return output


def _swap_in_first_rung(job: FilmJob, plan: FilmPlan, rung_dir: Path, final_dir: Path) -> None:
    """A new `hls/<id>` with thumbnail, the lowest rung and the master playlist, swapped in
    (the previous generation's output, if any, stays playable until this moment)."""
    rung = plan.groups[0][0]
    work = final_dir.with_name(f".tmp-{job.video_id}-{job.generation}-{secrets.token_hex(4)}")
    work.mkdir()
    try:
        rung_dir.rename(work / rung)
        shutil.copyfile(job.files.root / THUMBNAIL, work / THUMBNAIL)
        _write_master(work, [rung], job.settings.segment_seconds)
        _record(plan, [rung], work, job.settings.segment_seconds).save(work)
        replace_directory(work, final_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _add_rung(
    plan: FilmPlan, rung_dir: Path, final_dir: Path, rung: str, segment_seconds: int
) -> None:
    target = final_dir / rung
    if target.exists():  # left by a try that died before the master was rewritten
        replace_directory(rung_dir, target)
        shutil.rmtree(rung_dir, ignore_errors=True)
    else:
        rung_dir.rename(target)
    record = EncodeResult.load(final_dir)
    done = [
        r.name
        for r in plan.renditions
        if r.name == rung or (record and r.name in record.renditions)
    ]
    _write_master(final_dir, done, segment_seconds)
    _record(plan, done, final_dir, segment_seconds).save(final_dir)


def _write_master(directory: Path, rungs: list[str], segment_seconds: int) -> None:
    """Write the master playlist listing `rungs` (temporary name + rename: atomic)."""
    variants = {rung: stream_inf_line(directory / rung / "variant.m3u8") for rung in rungs}
    temporary = directory / f".{MASTER_PLAYLIST}.tmp"
    temporary.write_text(master_playlist(variants))
    correct_master_bandwidth(temporary, segment_seconds)
    temporary.replace(directory / MASTER_PLAYLIST)


def _record(
    plan: FilmPlan, rungs: list[str], directory: Path, segment_seconds: int
) -> EncodeResult:
    rates: dict[str, VariantRate] = {
        f"{rung}/index.m3u8": variant_rate(directory / rung / "index.m3u8", segment_seconds)
        for rung in rungs
    }
    return EncodeResult(
        generation=plan.generation,
        duration_seconds=round(plan.duration_seconds, 3),
        width=plan.width,
        height=plan.height,
        renditions=rungs,
        complete=len(rungs) == len(plan.renditions),
        renditions_bitrate=renditions_bitrate(
            rates, {r.name: r.crf for r in plan.renditions if r.name in rungs}
        ),
    )


def _as_info(plan: FilmPlan) -> SourceInfo:
    return SourceInfo(
        duration_seconds=plan.duration_seconds,
        width=plan.width,
        height=plan.height,
        rotation=0,
        frame_rate=plan.frame_rate,
        pixel_format="",
        has_audio=plan.has_audio,
        audio_channels=2 if plan.has_audio else 0,
    )


# -- helpers --------------------------------------------------------------------------


async def _run(
    command: list[str],
    *,
    timeout: float,
    step: str,
    on_progress: ProgressCallback | None = None,
) -> None:
    try:
        await run_ffmpeg(command, timeout=timeout, on_progress=on_progress)
    except TimeoutError:
        raise transient(f"{step} took longer than {timeout:.0f}s; workers overloaded?") from None
    except FfmpegFailed as exc:
        raise classify_ffmpeg_failure(exc, step=step) from None


def _reporter(job: FilmJob) -> ProgressReporter:
    return ProgressReporter(
        job.bus,
        video_id=job.video_id,
        generation=job.generation,
        step_percent=job.settings.progress_step_percent,
        interval_seconds=job.settings.progress_interval_seconds,
    )


async def _publish_progress(job: FilmJob, plan: FilmPlan, ledger: LedgerState) -> None:
    event = progress_event(
        video_id=job.video_id,
        generation=job.generation,
        percent=ledger.percent(plan),
        renditions_percent=ledger.rung_percents(plan),
        eta_seconds=ledger.eta_seconds(plan),
    )
    try:
        await job.bus.publish(event, timeout=2.0)
    except Exception as exc:  # progress is best effort; the next one supersedes it
        logger.info("film progress event dropped (%s)", exc)
