"""A film (a source longer than TRANSCODER_FILM_THRESHOLD_SECONDS, lowered for this suite in
helpers/stack.py) is transcoded chunk by chunk, lowest rung first: through the gateway
only, its 480p plays while 1080p is still being made, and 1080p appears when assembled."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import m3u8
import pytest

from tests.e2e.helpers import ADMIN_VIDEOS, Api, generate_clip, upload, wait_until_playable

pytestmark = pytest.mark.slow

FILM_SECONDS = 36  # above the suite's threshold (30 s): four chunks of whole 10 s segments


def poll(admin: Api, video_id: int, until: Any, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    video: dict = {}
    while time.monotonic() < deadline:
        video = admin.get(f"{ADMIN_VIDEOS}{video_id}/").json()
        assert video["status"] != "failed", video
        if until(video):
            return video
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not within {timeout}s; last seen {video}")


def test_a_film_plays_at_480p_before_1080p_is_done(admin_api: Api, tmp_path: Path) -> None:
    clip = generate_clip(tmp_path / "film.mp4", seconds=FILM_SECONDS, width=1920, height=1080)
    body = upload(
        admin_api, clip, {"title": f"E2E film {uuid.uuid4().hex[:6]}", "category": "Drama"}
    )
    vid = body["id"]

    video = poll(admin_api, vid, lambda v: v["status"] == "ready", 300, "480p ready")
    assert "1080p" not in video["renditions"], "480p is announced on its own, first"
    assert video["published"] is True
    # Streaming learns of the 480p from catalog's announcement moments later (access.py).
    wait_until_playable(admin_api.stack, vid)
    base = f"/api/video/{vid}/"
    master = m3u8.loads(admin_api.get(f"{base}master.m3u8").text)
    assert master.playlists[0].uri == "480p/index.m3u8"
    playlist = admin_api.get(f"{base}480p/index.m3u8")
    assert playlist.status_code == 200, playlist.text
    segments = m3u8.loads(playlist.text).segments
    assert abs(sum(s.duration for s in segments) - FILM_SECONDS) < 0.5
    last = admin_api.get(f"{base}480p/{segments[-1].uri}")
    assert last.status_code == 200
    segment = tmp_path / "last.ts"
    segment.write_bytes(last.content)
    decoded = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            str(segment),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert int(decoded.split()[0]) > 0
    done = poll(admin_api, vid, lambda v: "1080p" in v["renditions"], 600, "1080p ready")
    assert done["renditions"] == ["480p", "720p", "1080p"]
    master = m3u8.loads(admin_api.get(f"{base}master.m3u8").text)
    assert [p.uri for p in master.playlists] == [
        "480p/index.m3u8",
        "720p/index.m3u8",
        "1080p/index.m3u8",
    ]
    assert admin_api.get(f"{base}1080p/index.m3u8").status_code == 200
