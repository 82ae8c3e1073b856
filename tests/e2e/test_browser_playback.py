"""Real playback in Chromium: a page on the frontend's origin logs in through the gateway and
plays the journey video with hls.js (withCredentials), then switches to 720p."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.helpers import PublishedVideo, Stack, User, screenshot
from tests.e2e.helpers import step as timed_step

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PLAY_TIMEOUT_MS = 60_000


def wait_playing_past(page: Any, seconds: float, resolution: str) -> None:
    """Wait until the video has played past `seconds` with fragments of `resolution`."""
    page.wait_for_function(
        """([seconds, resolution]) => {
            const s = window.player.state();
            if (s.fatalErrors.length) return true;  // fail fast with the error, below
            return s.currentTime > seconds &&
                   s.fragments.some((url) => url.includes(`/${resolution}/`));
        }""",
        arg=[seconds, resolution],
        timeout=PLAY_TIMEOUT_MS,
    )
    state = page.evaluate("window.player.state()")
    assert not state["fatalErrors"], state


def test_video_plays_in_chromium_with_hlsjs_and_switches_to_720p(
    stack: Stack,
    frontend: str,
    browser: Any,
    active_user: User,
    published_video: PublishedVideo,
) -> None:
    context = browser.new_context(viewport={"width": 900, "height": 700})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        with timed_step("browser", "open the test page on the frontend origin"):
            page.goto(f"{frontend}/player.html")
            assert page.evaluate("typeof Hls !== 'undefined' && Hls.isSupported()")

        log_in_and_show_the_thumbnail(page, stack, active_user, published_video)

        with timed_step("browser", "play 480p for more than 2 s"):
            page.evaluate(
                "([api, id]) => window.player.play(api, id, '480p')",
                [stack.base_url, published_video.id],
            )
            wait_playing_past(page, 2.0, "480p")
            assert page.evaluate("window.player.state()")["videoHeight"] == 480

        with timed_step("browser", "switch to 720p, keep playing"):
            position = page.evaluate("window.player.state().currentTime")
            page.evaluate(
                "([api, id]) => window.player.play(api, id, '720p')",
                [stack.base_url, published_video.id],
            )
            wait_playing_past(page, position + 1.0, "720p")
            page.wait_for_function("document.getElementById('video').videoHeight === 720")

        state = page.evaluate("window.player.state()")
        assert not state["fatalErrors"], state
        assert state["mediaError"] is None, state
        assert state["currentTime"] > 2.0
    finally:
        shot = screenshot(page, "e2e-browser-playback")
        context.close()
    assert shot.stat().st_size > 0, console


def log_in_and_show_the_thumbnail(
    page: Any, stack: Stack, user: User, video: PublishedVideo
) -> None:
    with timed_step("browser", "login through the gateway (fetch, credentials)"):
        login = page.evaluate(
            "([api, email, password]) => window.player.login(api, email, password)",
            [stack.base_url, user.email, user.password],
        )
        assert login["status"] == 200, login
        assert "csrftoken=" in login["cookies"], "csrftoken is readable by the page"
        assert "access_token" not in login["cookies"], "the tokens are HttpOnly"

    with timed_step("browser", "list the videos, load the thumbnail in an <img>"):
        listed = page.evaluate("(api) => window.player.listVideos(api)", stack.base_url)
        assert listed["status"] == 200, listed
        entry = next(v for v in listed["body"] if str(v["id"]) == str(video.id))
        size = page.evaluate("(url) => window.player.showThumbnail(url)", entry["thumbnail_url"])
        assert size["width"] > 0
        assert size["height"] > 0
