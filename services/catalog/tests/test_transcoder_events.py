"""The transcoder's progress / completed / failed events, consumed from JetStream with the
durable consumer `catalog`: applied once, in order of generations, never moving back."""

from __future__ import annotations

import uuid

from videoflix_shared.events import TranscodeFailed, TranscodeProgress
from videoflix_testing.plugin import wait_until_async


async def test_progress_then_completion_make_a_video_ready(catalog) -> None:
    video = await catalog.upload_ok()
    vid = video["id"]
    await catalog.bus.publish(TranscodeProgress(video_id=vid, generation=1, percent=42.5))
    state = await catalog.wait_for(vid, lambda v: v["status"] == "processing", "processing")
    assert state["progress"] == 42.5
    event = catalog.completed_event(vid).model_copy(
        update={
            "duration_seconds": 12.5,
            "width": 1920,
            "height": 1080,
            "renditions": ["480p", "720p", "1080p"],
        }
    )
    await catalog.bus.publish(event)
    state = await catalog.wait_for(vid, lambda v: v["status"] == "ready", "ready")
    assert state["progress"] == 100
    assert state["duration_seconds"] == 12.5
    assert (state["width"], state["height"]) == (1920, 1080)
    assert state["renditions"] == ["480p", "720p", "1080p"]
    assert state["thumbnail_url"] == f"http://testserver/api/video/{vid}/thumbnail.jpg?v=1"


async def test_failure_records_the_reason(catalog) -> None:
    video = await catalog.upload_ok()
    await catalog.bus.publish(
        TranscodeFailed(
            video_id=video["id"], generation=1, reason="ffmpeg exited with 1: moov atom not found"
        )
    )
    state = await catalog.wait_for(video["id"], lambda v: v["status"] == "failed", "failed")
    assert state["failure_reason"] == "ffmpeg exited with 1: moov atom not found"


async def test_redelivered_and_late_events_never_move_a_video_back(catalog) -> None:
    video = await catalog.upload_ok()
    vid = video["id"]
    completed = catalog.completed_event(vid)
    await catalog.bus.publish(completed)
    await catalog.wait_for(vid, lambda v: v["status"] == "ready", "ready")
    before = await catalog.state(vid)
    # The same completion again (a redelivery under a new message id), a late progress
    # report and a late failure of the same generation: all ignored.
    await catalog.bus.publish(completed.model_copy(update={"event_id": uuid.uuid4()}))
    await catalog.bus.publish(TranscodeProgress(video_id=vid, generation=1, percent=10))
    await catalog.bus.publish(TranscodeFailed(video_id=vid, generation=1, reason="late"))
    marker = await catalog.upload_ok()  # events are consumed in order: wait for a later one
    await catalog.bus.publish(TranscodeProgress(video_id=marker["id"], generation=1, percent=1))
    await catalog.wait_for(marker["id"], lambda v: v["status"] == "processing", "marker")
    assert await catalog.state(vid) == before


async def test_progress_never_decreases_within_a_generation(catalog) -> None:
    video = await catalog.upload_ok()
    vid = video["id"]
    for percent in (30, 60, 45):
        await catalog.bus.publish(TranscodeProgress(video_id=vid, generation=1, percent=percent))
    marker = await catalog.upload_ok()
    await catalog.bus.publish(TranscodeProgress(video_id=marker["id"], generation=1, percent=1))
    await catalog.wait_for(marker["id"], lambda v: v["status"] == "processing", "marker")
    assert (await catalog.state(vid))["progress"] == 60


async def test_events_of_an_older_generation_are_ignored(catalog) -> None:
    video = await catalog.upload_ok()
    vid = video["id"]
    response = await catalog.admin.post(f"/api/admin/videos/{vid}/retranscode/")
    assert response.json()["generation"] == 2
    await catalog.bus.publish(catalog.completed_event(vid, generation=1))
    await catalog.bus.publish(TranscodeFailed(video_id=vid, generation=1, reason="old attempt"))
    await catalog.bus.publish(TranscodeProgress(video_id=vid, generation=2, percent=5))
    state = await catalog.wait_for(vid, lambda v: v["status"] == "processing", "processing")
    assert state["generation"] == 2
    assert state["failure_reason"] is None
    assert state["progress"] == 5


async def test_unreadable_and_unknown_video_events_do_not_block_the_consumer(catalog) -> None:
    await catalog.bus.publish_raw(
        "transcoder.video.progress", b"{not json", msg_id=uuid.uuid4().hex
    )
    await catalog.bus.publish_raw(
        "transcoder.video.progress", b'{"video_id": "x"}', msg_id=uuid.uuid4().hex
    )
    await catalog.bus.publish(TranscodeProgress(video_id=987654321, generation=1, percent=50))
    video = await catalog.upload_ok()
    await catalog.bus.publish(TranscodeProgress(video_id=video["id"], generation=1, percent=7))
    await catalog.wait_for(video["id"], lambda v: v["status"] == "processing", "processing")

    js = catalog.bus.js
    stream = catalog.bus.stream("TRANSCODER")

    async def settled() -> bool:
        info = await js.consumer_info(stream, "catalog")
        return info.num_ack_pending == 0 and info.num_pending == 0

    # Nothing is left waiting for redelivery: the bad messages were terminated.
    await wait_until_async(settled, timeout=10, what="consumer settled")
