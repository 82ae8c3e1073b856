"""The stuck-job sweeper: a video without transcoding progress for too long gets its upload
event published again as a new generation, a bounded number of times, then fails."""

from __future__ import annotations

from datetime import timedelta

from videoflix_catalog import service
from videoflix_catalog.app import create_app
from videoflix_shared.events import TranscodeQueueState, VideoUploaded
from videoflix_testing.plugin import wait_until_async

from .conftest import asgi_client, make_settings

STUCK_AFTER = timedelta(minutes=15)


async def age(catalog, video_id: int, minutes: int) -> None:
    await catalog.execute(
        "UPDATE video SET last_activity_at = now() - make_interval(mins => :m) WHERE id = :id",
        id=video_id,
        m=minutes,
    )


async def sweep(catalog, max_retries: int) -> service.SweepResult:
    async with catalog.app.state.session_factory() as session:
        return await service.sweep_stuck_videos(
            session, stuck_after=STUCK_AFTER, max_retries=max_retries
        )


async def test_stuck_video_is_retried_as_a_new_generation_then_failed(catalog) -> None:
    stuck = await catalog.upload_ok()
    fresh = await catalog.upload_ok()
    await age(catalog, stuck["id"], 20)

    first = await sweep(catalog, max_retries=1)
    assert stuck["id"] in first.retried
    assert fresh["id"] not in first.retried + first.failed
    state = await catalog.state(stuck["id"])
    assert (state["status"], state["generation"], state["failure_reason"]) == ("uploaded", 2, None)
    event = await catalog.wait_for_event(
        VideoUploaded.subject, lambda e: e.video_id == stuck["id"] and e.generation == 2
    )
    assert event.source_path == f"uploads/{stuck['id']}/source.mp4"

    # Not stuck again yet: nothing happens.
    assert stuck["id"] not in (await sweep(catalog, max_retries=1)).retried

    await age(catalog, stuck["id"], 20)
    second = await sweep(catalog, max_retries=1)
    assert stuck["id"] in second.failed
    state = await catalog.state(stuck["id"])
    assert state["status"] == "failed"
    assert state["failure_reason"].startswith("Transcoding made no progress for 15 minutes")
    assert state["generation"] == 2
    assert (await catalog.state(fresh["id"]))["status"] == "uploaded"


async def test_processing_video_that_stalls_is_swept_but_progress_keeps_it_alive(catalog) -> None:
    from videoflix_shared.events import TranscodeProgress

    video = await catalog.upload_ok()
    await catalog.bus.publish(TranscodeProgress(video_id=video["id"], generation=1, percent=20))
    await catalog.wait_for(video["id"], lambda v: v["status"] == "processing", "processing")
    await age(catalog, video["id"], 10)
    assert video["id"] not in (await sweep(catalog, max_retries=2)).retried
    await age(catalog, video["id"], 16)
    assert video["id"] in (await sweep(catalog, max_retries=2)).retried
    state = await catalog.state(video["id"])
    assert (state["status"], state["progress"], state["generation"]) == ("uploaded", 0, 2)


async def test_sweeper_runs_in_the_background(catalog, fresh_catalog_env) -> None:
    env = fresh_catalog_env(
        "catalog_sweeper",
        CATALOG_SWEEP_INTERVAL_SECONDS="0.2",
        CATALOG_STUCK_AFTER_SECONDS="0.5",
        CATALOG_STUCK_MAX_RETRIES="1",
        CATALOG_TRANSCODER_SILENT_AFTER_SECONDS="3600",
    )
    app = create_app(make_settings(env))
    async with (
        app.router.lifespan_context(app),
        asgi_client(
            app, cookies=catalog.admin.cookies, headers={"X-CSRFToken": "test-csrf-token"}
        ) as admin,
    ):
        response = await admin.post(
            "/api/admin/videos/upload/",
            data={"title": "Never transcoded", "category": "Drama"},
            files={"file": ("clip.mp4", catalog.clip.read_bytes(), "video/mp4")},
        )
        assert response.status_code == 202, response.text
        vid = response.json()["id"]
        # The transcoder is heard (its queue announcement), but it does not know the video.
        async with app.state.session_factory() as session:
            await service.record_queue_state(session, event=TranscodeQueueState(videos=[]))

        async def failed() -> dict | None:
            state = (await admin.get(f"/api/admin/videos/{vid}/")).json()
            return state if state["status"] == "failed" else None

        state = await wait_until_async(failed, timeout=15, what="swept to failed")
        assert state["generation"] == 2  # one retry, then given up
        assert "after 2 attempt(s)" in state["failure_reason"]
