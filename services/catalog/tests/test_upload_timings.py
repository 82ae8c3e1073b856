"""How long uploads take to play and to be complete, as catalog measures them from the
events' timestamps: upload → the transcoder's event that first made a video playable, and
upload → its completion; once per video, and never for an admin's re-transcode."""

from __future__ import annotations

from datetime import datetime, timedelta

from videoflix_testing.metrics import Scrape

from .test_films import rendition_ready

PLAYABLE = "videoflix_upload_to_playable_seconds"
READY = "videoflix_upload_to_ready_seconds"


async def scrape(catalog) -> Scrape:
    return Scrape((await catalog.admin.get("/metrics")).text)


def observed(before: Scrape, after: Scrape, name: str) -> tuple[float, float]:
    """(observations, their sum) between two scrapes."""
    count = after.value(f"{name}_count") - before.value(f"{name}_count")
    return count, round(after.value(f"{name}_sum") - before.value(f"{name}_sum"), 3)


async def uploaded_at(catalog, video_id: int) -> datetime:
    return datetime.fromisoformat((await catalog.state(video_id))["created_at"])


async def test_a_clip_is_measured_from_upload_to_its_completion(catalog) -> None:
    before = await scrape(catalog)
    vid = (await catalog.upload_ok())["id"]
    at = await uploaded_at(catalog, vid)
    completed = catalog.completed_event(vid).model_copy(
        update={"occurred_at": at + timedelta(seconds=42)}
    )
    await catalog.bus.publish(completed)
    await catalog.wait_for(vid, lambda v: v["status"] == "ready", "ready")
    after = await scrape(catalog)
    assert observed(before, after, PLAYABLE) == (1, 42.0)
    assert observed(before, after, READY) == (1, 42.0)


async def test_a_film_is_playable_at_its_first_rung_and_ready_at_completion(catalog) -> None:
    before = await scrape(catalog)
    vid = (await catalog.upload_ok())["id"]
    at = await uploaded_at(catalog, vid)
    first = rendition_ready(catalog, vid, ["480p"])
    await catalog.bus.publish(first.model_copy(update={"occurred_at": at + timedelta(seconds=10)}))
    await catalog.wait_for(vid, lambda v: v["status"] == "ready", "playable")
    rest = rendition_ready(catalog, vid, ["480p", "720p"])
    await catalog.bus.publish(rest.model_copy(update={"occurred_at": at + timedelta(seconds=30)}))
    await catalog.wait_for(vid, lambda v: v["renditions"] == ["480p", "720p"], "second rung")
    completed = catalog.completed_event(vid).model_copy(
        update={"renditions": ["480p", "720p"], "occurred_at": at + timedelta(seconds=50)}
    )
    await catalog.bus.publish(completed)
    await catalog.wait_for(vid, lambda v: v["progress"] == 100, "completed")
    after = await scrape(catalog)
    assert observed(before, after, PLAYABLE) == (1, 10.0)
    assert observed(before, after, READY) == (1, 50.0)


async def test_an_admins_retranscode_is_no_upload_and_is_not_measured(catalog) -> None:
    video = await catalog.make_ready(publish=False)
    vid = video["id"]
    response = await catalog.admin.post(f"/api/admin/videos/{vid}/retranscode/")
    assert response.json()["generation"] == 2
    before = await scrape(catalog)
    await catalog.bus.publish(catalog.completed_event(vid, generation=2))
    await catalog.wait_for(vid, lambda v: v["status"] == "ready", "ready again")
    after = await scrape(catalog)
    assert observed(before, after, PLAYABLE) == (0, 0)
    assert observed(before, after, READY) == (0, 0)
