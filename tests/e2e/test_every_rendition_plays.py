"""The frontend's resolution menu never dead-ends: in Chromium, hls.js loads each of the
three media playlists the contract names (as the frontend does, not the master playlist) of
a small-source video (640x360: the transcoder makes only its lowest rung) and of a portrait
video, and plays each."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import (
    Api,
    Stack,
    User,
    generate_clip,
    screenshot,
    upload,
    wait_for_status,
    wait_until_playable,
)
from tests.e2e.helpers import step as timed_step

pytestmark = [pytest.mark.slow, pytest.mark.browser]

RESOLUTIONS = ("480p", "720p", "1080p")
PLAY_TIMEOUT_MS = 60_000


def upload_with_defaults(admin_api: Api, clip: Path, title: str) -> dict:
    """Upload as the admin page does with its defaults: published once transcoded."""
    body = upload(admin_api, clip, {"title": title, "category": "Drama"})
    video = wait_for_status(admin_api, body["id"])
    assert video["published"] is True, "publish when ready is the default"
    wait_until_playable(admin_api.stack, video["id"])
    return video


@pytest.fixture(scope="module")
def small_and_portrait(admin_api: Api, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    directory = tmp_path_factory.mktemp("rendition-clips")
    run = uuid.uuid4().hex[:6]
    clips = {
        "phone 640x360": generate_clip(directory / "small.mp4", seconds=6, width=640, height=360),
        "portrait 720x1280": generate_clip(
            directory / "portrait.mp4", seconds=6, width=720, height=1280
        ),
    }
    return [
        upload_with_defaults(admin_api, clip, f"E2E {name} {run}") for name, clip in clips.items()
    ]


def test_each_resolution_plays_for_a_small_source_and_a_portrait_video(
    stack: Stack, frontend: str, browser: Any, active_user: User, small_and_portrait: list[dict]
) -> None:
    context = browser.new_context(viewport={"width": 900, "height": 700})
    page = context.new_page()
    try:
        page.goto(f"{frontend}/player.html")
        login = page.evaluate(
            "([api, email, password]) => window.player.login(api, email, password)",
            [stack.base_url, active_user.email, active_user.password],
        )
        assert login["status"] == 200, login
        for video in small_and_portrait:
            assert video["renditions"], video
            for resolution in RESOLUTIONS:
                with timed_step("renditions", f"{video['width']}x{video['height']} {resolution}"):
                    state = play_for_a_second(page, stack, video["id"], resolution)
                assert not state["fatalErrors"], state
                assert state["mediaError"] is None, state
                assert state["currentTime"] > 1.0, state
                served = {f.split("/api/video/")[1].split("/")[1] for f in state["fragments"]}
                assert served, (resolution, state["fragments"])
                assert served <= set(video["renditions"]), (resolution, served)
    finally:
        screenshot(page, "e2e-every-rendition")
        context.close()


def play_for_a_second(page: Any, stack: Stack, video_id: Any, resolution: str) -> dict:
    page.goto(page.url)  # a fresh player, position 0, the session cookies kept
    page.evaluate(
        "([api, id, res]) => window.player.play(api, id, res)",
        [stack.base_url, video_id, resolution],
    )
    page.wait_for_function(
        """() => {
            const s = window.player.state();
            return s.fatalErrors.length > 0 || (s.currentTime > 1.0 && s.fragments.length > 0);
        }""",
        timeout=PLAY_TIMEOUT_MS,
    )
    return page.evaluate("window.player.state()")
