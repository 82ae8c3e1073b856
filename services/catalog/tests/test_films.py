"""Films on the catalog side: playable at the lowest rung, higher rungs as they arrive,
queued work shown as queued (and never swept), a completion beating a sweeper failure."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from videoflix_catalog import service
from videoflix_catalog.events import run_sweeper
from videoflix_shared.events import (
    QueuedTranscode,
    RenditionBitrate,
    TranscodeProgress,
    TranscodeQueueState,
    TranscodeRenditionReady,
)

from .test_sweeper import age, sweep


def rendition_ready(catalog, video_id: int, renditions: list[str]) -> TranscodeRenditionReady:
    completed = catalog.completed_event(video_id)
    return TranscodeRenditionReady(
        video_id=video_id,
        generation=1,
        rendition=renditions[-1],
        renditions=renditions,
        duration_seconds=600.0,
        width=1920,
        height=1080,
        thumbnail_path=completed.thumbnail_path,
        master_playlist_path=completed.master_playlist_path,
    )


async def test_a_film_plays_at_its_lowest_rung_and_gains_the_others(catalog) -> None:
    vid = (await catalog.upload_ok(publish_when_ready=True))["id"]
    await catalog.bus.publish(
        TranscodeProgress(
            video_id=vid,
            generation=1,
            percent=20,
            renditions_percent={"480p": 80.0, "720p": 0.0, "1080p": 0.0},
            eta_seconds=300,
        )
    )
    state = await catalog.wait_for(vid, lambda v: v["eta_seconds"] == 300, "film progress")
    assert state["renditions_progress"] == {"480p": 80.0, "720p": 0.0, "1080p": 0.0}
    assert "about 5 minutes left" in state["waiting_for"]

    await catalog.bus.publish(rendition_ready(catalog, vid, ["480p"]))
    state = await catalog.wait_for(vid, lambda v: v["status"] == "ready", "ready at 480p")
    assert state["published"] is True  # publish_when_ready: viewers see it now
    assert state["renditions"] == ["480p"]
    assert state["renditions_progress"]["480p"] == 100.0
    assert state["progress"] < 100

    await catalog.bus.publish(
        TranscodeProgress(
            video_id=vid,
            generation=1,
            percent=70,
            renditions_percent={"480p": 100.0, "720p": 60.0, "1080p": 60.0},
            eta_seconds=100,
        )
    )
    state = await catalog.wait_for(vid, lambda v: v["progress"] == 70, "progress while ready")
    assert state["status"] == "ready"
    assert state["renditions_progress"]["720p"] == 60.0

    await catalog.bus.publish(rendition_ready(catalog, vid, ["480p", "720p", "1080p"]))
    completed = catalog.completed_event(vid).model_copy(
        update={"renditions": ["480p", "720p", "1080p"]}
    )
    await catalog.bus.publish(completed)
    state = await catalog.wait_for(vid, lambda v: v["progress"] == 100, "completed")
    assert state["renditions"] == ["480p", "720p", "1080p"]
    assert state["eta_seconds"] is None


async def test_admin_api_shows_each_renditions_average_and_peak_bitrate_and_crf(catalog) -> None:
    vid = (await catalog.upload_ok())["id"]
    low = RenditionBitrate(average_bitrate=900_000, peak_bitrate=1_300_000, crf=21.5)
    high = RenditionBitrate(average_bitrate=2_100_000, peak_bitrate=3_200_000, crf=22.0)
    first = rendition_ready(catalog, vid, ["480p"]).model_copy(
        update={"renditions_bitrate": {"480p": low}}
    )
    await catalog.bus.publish(first)
    state = await catalog.wait_for(vid, lambda v: v["status"] == "ready", "ready at 480p")
    assert state["renditions_bitrate"] == {
        "480p": {"average_bitrate": 900_000, "peak_bitrate": 1_300_000, "crf": 21.5}
    }

    completed = catalog.completed_event(vid).model_copy(
        update={
            "renditions": ["480p", "720p"],
            "renditions_bitrate": {
                "480p": low,
                "720p": high,
            },
        }
    )
    await catalog.bus.publish(completed)
    state = await catalog.wait_for(vid, lambda v: v["progress"] == 100, "completed")
    assert state["renditions_bitrate"]["720p"] == {
        "average_bitrate": 2_100_000,
        "peak_bitrate": 3_200_000,
        "crf": 22.0,
    }
    assert set(state["renditions_bitrate"]) == {"480p", "720p"}


async def test_a_fixed_ladder_rendition_shows_no_crf(catalog) -> None:
    vid = (await catalog.upload_ok())["id"]
    fixed = RenditionBitrate(average_bitrate=1_400_000, peak_bitrate=1_700_000)
    await catalog.bus.publish(
        catalog.completed_event(vid).model_copy(update={"renditions_bitrate": {"480p": fixed}})
    )
    state = await catalog.wait_for(vid, lambda v: v["status"] == "ready", "ready")
    assert state["renditions_bitrate"]["480p"]["crf"] is None
    assert state["renditions_bitrate"]["480p"]["peak_bitrate"] == 1_700_000


async def test_completed_of_the_current_generation_wins_over_a_sweeper_failure(catalog) -> None:
    vid = (await catalog.upload_ok(publish_when_ready=True))["id"]
    await age(catalog, vid, 20)
    assert vid in (await sweep(catalog, max_retries=0)).failed
    assert (await catalog.state(vid))["status"] == "failed"
    # The transcoder was only late (a NATS outage, a long backlog): its output is there.
    await catalog.bus.publish(catalog.completed_event(vid))
    state = await catalog.wait_for(vid, lambda v: v["status"] == "ready", "ready after all")
    assert state["failure_reason"] is None
    assert state["published"] is True


async def test_queued_work_is_shown_as_queued_and_never_swept(catalog) -> None:
    queued = (await catalog.upload_ok())["id"]
    lost = (await catalog.upload_ok())["id"]
    await age(catalog, queued, 60)
    await age(catalog, lost, 60)
    await catalog.bus.publish(
        TranscodeQueueState(
            videos=[QueuedTranscode(video_id=queued, generation=1, running=False, place=3)]
        )
    )
    state = await catalog.wait_for(queued, lambda v: v["queue_place"] == 3, "queue place")
    assert state["waiting_for"].startswith("Its turn in the transcode queue (place 3)")

    result = await sweep(catalog, max_retries=2)
    assert queued not in result.retried + result.failed  # waiting in the queue is not stuck
    assert lost in result.retried  # the transcoder does not know it: stuck


async def test_no_sweep_while_the_transcoder_is_not_heard(catalog) -> None:
    vid = (await catalog.upload_ok())["id"]
    await age(catalog, vid, 60)
    await catalog.execute(
        "INSERT INTO transcoder_heartbeat (id, seen_at) VALUES (1, now() - interval '1 hour') "
        "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at"
    )
    stop = asyncio.Event()
    sweeper = asyncio.create_task(
        run_sweeper(
            catalog.app.state.session_factory,
            catalog.app.state.list_cache,
            interval_seconds=0.1,
            stuck_after_seconds=60,
            max_retries=0,
            stop=stop,
            transcoder_silent_after_seconds=120,
        )
    )
    await asyncio.sleep(0.5)
    stop.set()
    await sweeper
    # A NATS outage or no worker at all: the video waits, it is not failed.
    assert (await catalog.state(vid))["status"] == "uploaded"
    async with catalog.app.state.session_factory() as session:
        heard = await service.transcoder_last_heard(session)
    assert heard is not None
    assert heard < service.utcnow() - timedelta(minutes=30)
