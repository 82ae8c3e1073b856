"""Per-video authorization through the gateway: only published, ready videos play for
ordinary accounts, an admin previews unpublished ones, unpublishing and deleting take
effect within seconds, and a draft's thumbnail is not public. Also: no Range header value
makes streaming answer 5xx."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import m3u8
import pytest

from tests.e2e.helpers import (
    ADMIN_VIDEOS,
    Api,
    Stack,
    User,
    assert_error_body,
    generate_clip,
    upload,
    wait_for_status,
)

pytestmark = pytest.mark.slow

# "Within a few seconds": catalog's outbox relay and streaming's feed are both push-driven.
TAKES_EFFECT_WITHIN = 5.0


@dataclass(frozen=True)
class VideoPaths:
    """Every kind of file streaming serves for one video."""

    video_id: int
    master: str
    playlist: str
    segment: str
    thumbnail: str

    @property
    def media(self) -> tuple[str, str, str]:
        return (self.master, self.playlist, self.segment)


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_clip(
        tmp_path_factory.mktemp("access-clips") / "small.mp4", seconds=2, width=320, height=180
    )


def upload_ready(admin: Api, clip: Path, title: str) -> dict[str, Any]:
    """The admin uploads `clip` as a draft and waits until it is transcoded (unpublished)."""
    form = {
        "title": title,
        "description": "Access test.",
        "category": "Drama",
        "publish_when_ready": "false",
    }
    return wait_for_status(admin, upload(admin, clip, form)["id"])


def set_published(admin: Api, video_id: int, published: bool) -> None:
    response = admin.patch(
        f"{ADMIN_VIDEOS}{video_id}/", json={"published": published}, headers=admin.csrf_headers()
    )
    assert response.status_code == 200, response.text
    assert response.json()["published"] is published


def paths_of(admin: Api, video: dict[str, Any]) -> VideoPaths:
    """The video's URLs, read as the admin (who may preview it) from its master playlist."""
    base = f"/api/video/{video['id']}/"
    master = admin.get(f"{base}master.m3u8")
    assert master.status_code == 200, master.text
    rendition = m3u8.loads(master.text).playlists[0].uri.split("/")[0]
    playlist = admin.get(f"{base}{rendition}/index.m3u8")
    assert playlist.status_code == 200, playlist.text
    segment = urlsplit(m3u8.loads(playlist.text).segments[0].uri).path
    return VideoPaths(
        video_id=video["id"],
        master=f"{base}master.m3u8",
        playlist=f"{base}{rendition}/index.m3u8",
        segment=f"{base}{rendition}/{segment}",
        thumbnail=urlsplit(video["thumbnail_url"]).path,
    )


def eventually(check: Callable[[], Any], what: str, timeout: float = TAKES_EFFECT_WITHIN) -> None:
    """Poll `check` (which asserts) until it passes; fail with its last error after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout}s: {what}: {exc}") from exc
        time.sleep(0.1)


def statuses(client: httpx.Client | Api, paths: tuple[str, ...]) -> dict[str, int]:
    return {path: client.get(path).status_code for path in paths}


def anonymous_thumbnail(stack: Stack, paths: VideoPaths) -> httpx.Response:
    """The thumbnail as an <img> on the frontend's origin loads it: no cookie, no token."""
    return httpx.get(
        f"{stack.base_url}{paths.thumbnail}", headers={"Origin": stack.frontend_origin}, timeout=10
    )


@pytest.fixture
def viewer(api_factory: Callable[[], Api], active_user: User) -> Api:
    """An ordinary signed-in account."""
    viewer = api_factory()
    viewer.login_ok(active_user.email, active_user.password)
    assert viewer.get("/api/user/").json()["is_admin"] is False
    return viewer


@pytest.mark.timeout(540)
def test_only_published_videos_play_for_users_and_unpublish_or_delete_takes_effect_in_seconds(
    stack: Stack, admin_api: Api, viewer: Api, small_clip: Path
) -> None:
    video = upload_ready(admin_api, small_clip, f"E2E access {uuid.uuid4().hex[:6]}")
    paths = paths_of(admin_api, video)  # the admin previews the draft
    every_path = (*paths.media, paths.thumbnail)

    # A ready draft: ids are sequential, so a user who guesses it must find nothing.
    for path, status in statuses(viewer, every_path).items():
        assert status == 404, (path, status)
    assert_error_body(viewer.get(paths.master), 404)
    assert anonymous_thumbnail(stack, paths).status_code == 404
    assert statuses(admin_api, every_path) == dict.fromkeys(every_path, 200)

    set_published(admin_api, paths.video_id, True)

    def plays_for_the_viewer() -> None:
        assert statuses(viewer, every_path) == dict.fromkeys(every_path, 200)
        assert anonymous_thumbnail(stack, paths).status_code == 200

    eventually(plays_for_the_viewer, "published video plays for an ordinary account")

    set_published(admin_api, paths.video_id, False)

    def hidden_from_the_viewer() -> None:
        assert statuses(viewer, every_path) == dict.fromkeys(every_path, 404)
        assert anonymous_thumbnail(stack, paths).status_code == 404

    eventually(hidden_from_the_viewer, "unpublished video stops playing")
    assert_error_body(viewer.get(paths.segment), 404)
    # The admin page still previews it, thumbnail included (its <img> carries the cookie).
    assert statuses(admin_api, every_path) == dict.fromkeys(every_path, 200)

    set_published(admin_api, paths.video_id, True)
    eventually(plays_for_the_viewer, "republished video plays again")
    deleted = admin_api.delete(f"{ADMIN_VIDEOS}{paths.video_id}/", headers=admin_api.csrf_headers())
    assert deleted.status_code == 204, deleted.text

    def gone_for_everyone() -> None:
        assert statuses(viewer, every_path) == dict.fromkeys(every_path, 404)
        assert statuses(admin_api, every_path) == dict.fromkeys(every_path, 404)
        assert anonymous_thumbnail(stack, paths).status_code == 404

    eventually(gone_for_everyone, "deleted video is gone")


@pytest.fixture(scope="module")
def published_small_video(admin_api: Api, small_clip: Path) -> VideoPaths:
    video = upload_ready(admin_api, small_clip, f"E2E ranges {uuid.uuid4().hex[:6]}")
    paths = paths_of(admin_api, video)
    set_published(admin_api, paths.video_id, True)
    return paths


@pytest.mark.timeout(540)
def test_huge_or_malformed_range_headers_never_answer_5xx(
    viewer: Api, published_small_video: VideoPaths
) -> None:
    paths = published_small_video
    eventually(lambda: statuses(viewer, paths.media) == dict.fromkeys(paths.media, 200), "plays")
    huge = "9" * 5000
    for path in (*paths.media, paths.thumbnail):
        size = len(viewer.get(path).content)
        beyond = viewer.get(path, headers={"Range": f"bytes={huge}-"})
        assert_error_body(beyond, 416)
        assert beyond.headers["content-range"] == f"bytes */{size}", path
        clamped = viewer.get(path, headers={"Range": f"bytes=0-{huge}"})
        assert clamped.status_code == 206, (path, clamped.status_code)
        assert clamped.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
        for odd in (f"bytes=-{huge}", f"bytes={huge}", "bytes=\u0661-", "items=0-1", "bytes=5-1"):
            response = viewer.get(path, headers={"Range": odd.encode("utf-8")})
            assert response.status_code in (200, 206, 416), (path, odd[:20], response.status_code)
        conditional = viewer.get(
            path, headers={"Range": "bytes=0-1", "If-Range": huge, "If-None-Match": huge}
        )
        assert conditional.status_code == 200, (path, conditional.status_code)
