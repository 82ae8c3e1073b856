"""Upload -> watchable without extra steps: uploads publish themselves once transcoded
unless the admin asks for a draft, and the admin API says what each video is waiting for."""

from __future__ import annotations

import httpx
import pytest

from videoflix_shared.events import TranscodeProgress


async def listed_ids(viewer: httpx.AsyncClient) -> list[int]:
    response = await viewer.get("/api/video/")
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()]


async def complete(catalog, video_id: int) -> dict:
    await catalog.bus.publish(catalog.completed_event(video_id))
    return await catalog.wait_for(video_id, lambda v: v["status"] == "ready", "ready")


async def test_an_upload_with_the_defaults_is_listed_once_ready(catalog, viewer) -> None:
    video = await catalog.upload_ok(publish_when_ready=None)  # the form field left out
    assert (video["published"], video["publish_when_ready"]) == (False, True)
    assert video["waiting_for"] == "A transcoder to start. It publishes itself when ready."
    assert video["id"] not in await listed_ids(viewer)

    await catalog.bus.publish(TranscodeProgress(video_id=video["id"], generation=1, percent=40))
    processing = await catalog.wait_for(video["id"], lambda v: v["progress"] == 40, "progress")
    assert processing["waiting_for"].startswith("Transcoding to finish (40%).")

    ready = await complete(catalog, video["id"])
    assert (ready["published"], ready["publish_when_ready"], ready["waiting_for"]) == (
        True,
        False,
        None,
    )
    assert video["id"] in await listed_ids(viewer)


async def test_a_draft_stays_unlisted_when_ready_and_says_so(catalog, viewer) -> None:
    video = await catalog.upload_ok(publish_when_ready=False)
    ready = await complete(catalog, video["id"])
    assert ready["published"] is False
    assert ready["waiting_for"] == "Publication: it is a draft. Publish it to show it to viewers."
    assert video["id"] not in await listed_ids(viewer)


async def test_unpublishing_before_ready_cancels_publishing_itself(catalog, viewer) -> None:
    video = await catalog.upload_ok(publish_when_ready=True)
    response = await catalog.admin.patch(
        f"/api/admin/videos/{video['id']}/", json={"published": False}
    )
    assert response.json()["publish_when_ready"] is False
    assert (await complete(catalog, video["id"]))["published"] is False
    assert video["id"] not in await listed_ids(viewer)


async def test_a_failed_video_says_it_needs_a_working_source(catalog) -> None:
    from videoflix_shared.events import TranscodeFailed

    video = await catalog.upload_ok()
    await catalog.bus.publish(
        TranscodeFailed(video_id=video["id"], generation=1, reason="no video stream")
    )
    failed = await catalog.wait_for(video["id"], lambda v: v["status"] == "failed", "failed")
    assert failed["waiting_for"].startswith("A working source")


@pytest.mark.parametrize("value", ["maybe", "", "2"])
async def test_a_bad_publish_when_ready_value_is_refused_and_changes_nothing(
    catalog, value: str
) -> None:
    before = await catalog.snapshot()
    response = await catalog.admin.post(
        "/api/admin/videos/upload/",
        data={"title": "x", "category": "Drama", "publish_when_ready": value},
        files={"file": ("clip.mp4", catalog.clip.read_bytes(), "video/mp4")},
    )
    assert response.status_code == 400, response.text
    assert "publish_when_ready" in response.json()
    assert await catalog.snapshot() == before
