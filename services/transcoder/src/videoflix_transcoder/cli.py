"""`videoflix-transcoder dispatcher | worker`, each with its health port (HTTP_PORT), and
`videoflix-transcoder jobs [--json] | jobs retry <job id> | jobs cancel <job id>`: the
queue for operators (jobs.py lists, job_control.py retries and cancels; docs/QUEUE.md).
`jobs` talks to Redis with the process's settings (REDIS_URL, REDIS_KEY_PREFIX)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.exceptions import RedisError

from videoflix_shared.errors import DomainError
from videoflix_shared.transcode_jobs import TranscodeJob, TranscodeJobs
from videoflix_transcoder.job_control import cancel_job, retry_job
from videoflix_transcoder.jobs import list_jobs
from videoflix_transcoder.settings import TranscoderSettings

COLUMNS = ("STATE", "JOB", "VIDEO", "GEN", "PART", "TRY", "AGE", "WORKER", "NOTE")
NOTE_MAX_CHARS = 80


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="videoflix-transcoder")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dispatcher", help="turn catalog events into transcode jobs")
    commands.add_parser("worker", help="run transcode jobs")
    jobs = commands.add_parser("jobs", help="list queued, running and recently failed jobs")
    jobs.add_argument("--json", action="store_true", help="print the list as JSON")
    verbs = jobs.add_subparsers(dest="verb")
    for verb, text in (
        ("retry", "run a failed or cancelled job's video again, or a held-back job now"),
        ("cancel", "cancel a queued or running job: its video generation fails"),
    ):
        verbs.add_parser(verb, help=text).add_argument("job_id", help="as `jobs` lists it")
    args = parser.parse_args(argv)
    settings = TranscoderSettings()
    if args.command == "jobs":
        sys.exit(asyncio.run(_jobs_command(settings, args)))
    _serve(args.command, settings)


def _serve(command: str, settings: TranscoderSettings) -> None:
    # Imported here: an operator's `jobs` starts in a fraction of the time without the
    # web framework, NATS and the encoders.
    from videoflix_shared.app import run_worker
    from videoflix_transcoder import api, dispatcher, worker

    if command == "dispatcher":
        run_worker(
            service="transcoder-dispatcher",
            settings=settings,
            work=dispatcher.run,
            routers=[api.router],
        )
    else:
        run_worker(service="transcoder-worker", settings=settings, work=worker.run)


async def _jobs_command(settings: TranscoderSettings, args: argparse.Namespace) -> int:
    async def show(pool: ArqRedis) -> str:
        listing = await list_jobs(pool, settings)
        return listing.model_dump_json(indent=2) if args.json else render_table(listing)

    actions: dict[str | None, Callable[[ArqRedis], Awaitable[str]]] = {
        None: show,
        "retry": lambda pool: retry_job(pool, settings, args.job_id),
        "cancel": lambda pool: cancel_job(pool, settings, args.job_id),
    }
    redis_settings = dataclasses.replace(
        RedisSettings.from_dsn(settings.redis_url), conn_retries=0, conn_timeout=3
    )
    try:
        pool = await create_pool(redis_settings, default_queue_name=settings.queue_name)
    except (OSError, RedisError) as exc:
        print(f"videoflix-transcoder jobs: Redis is not reachable ({exc})", file=sys.stderr)
        return 1
    try:
        print(await actions[args.verb](pool))
        return 0
    except DomainError as exc:
        print(f"videoflix-transcoder jobs: {exc.message}", file=sys.stderr)
        return 2
    except (OSError, RedisError) as exc:
        print(f"videoflix-transcoder jobs: Redis failed ({exc})", file=sys.stderr)
        return 1
    finally:
        await pool.aclose()


# -- the table --------------------------------------------------------------------------


def render_table(listing: TranscodeJobs) -> str:
    jobs = [*listing.running, *listing.queued, *listing.failed]
    summary = (
        f"{len(listing.queued)} queued, {len(listing.running)} running, "
        f"{len(listing.failed)} recently failed ({listing.queue})"
    )
    if not jobs:
        return summary
    now = listing.generated_at
    rows = [COLUMNS, *(_row(job, now) for job in jobs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)] + [0]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join([*lines, "", summary])


def _row(job: TranscodeJob, now: datetime) -> tuple[str, ...]:
    part = job.part or "-"
    if job.rungs:
        part += f" ({', '.join(job.rungs)})"
    return (
        job.state,
        job.job_id,
        str(job.video_id),
        str(job.generation),
        part,
        str(job.attempt),
        format_seconds(job.age_seconds),
        job.worker or "-",
        _note(job, now),
    )


def _note(job: TranscodeJob, now: datetime) -> str:
    if job.state == "running":
        since = job.started_at
        note = f"running {format_seconds((now - since).total_seconds())}" if since else "running"
    elif job.state == "queued":
        note = "plays first" if job.priority == "first" else ""
        if job.due_in_seconds is not None:
            note = f"retry in {format_seconds(job.due_in_seconds)}"
    else:
        failed = job.failed_at or now
        ago = format_seconds((now - failed.astimezone(UTC)).total_seconds())
        note = f"failed {ago} ago: {job.reason or 'no reason recorded'}"
    return note if len(note) <= NOTE_MAX_CHARS else note[: NOTE_MAX_CHARS - 1] + "…"


def format_seconds(seconds: float) -> str:
    """45s, 3m05s, 2h10m, 3d04h."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
