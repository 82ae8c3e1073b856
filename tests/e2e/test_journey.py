"""The whole product as a user meets it, through the gateway: from registration to playback
and back out through logout and a password reset."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from datetime import datetime
from urllib.parse import urljoin, urlsplit

import httpx
import m3u8
import pytest

from tests.e2e.helpers import (
    REFRESH_GRACE_SECONDS,
    Api,
    Mailbox,
    PublishedVideo,
    Stack,
    cookie_deleted,
    link_params,
    new_email,
    set_cookies,
    strong_password,
)
from tests.e2e.helpers import step as timed_step

pytestmark = pytest.mark.slow

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_NAME = re.compile(r"^seg_[0-9]{5}\.ts$")
RENDITION_HEIGHTS = {"480p": 480, "720p": 720, "1080p": 1080}
TS_PACKET = 188


def step(name: str) -> contextlib.AbstractContextManager[None]:
    return timed_step("journey", name)


def assert_auth_cookies(response: httpx.Response) -> dict:
    cookies = set_cookies(response)
    for name in ("access_token", "refresh_token"):
        morsel = cookies[name]
        assert morsel.value, name
        assert morsel["httponly"], f"{name} must be HttpOnly"
        assert morsel["samesite"].lower() == "lax", name
        assert morsel["path"] == "/", name
        assert not morsel["secure"], f"{name} is Secure on plain-http localhost"
    csrf = cookies["csrftoken"]
    assert csrf.value, "csrftoken is set"
    assert not csrf["httponly"], "csrftoken must be readable by scripts"
    assert csrf["path"] == "/"
    return cookies


# Its setup starts the stack and its upload waits for a transcode: more than the default.
@pytest.mark.timeout(540)
def test_user_journey_from_registration_to_password_reset(
    stack: Stack, api_factory, mailbox: Mailbox, request: pytest.FixtureRequest
) -> None:
    email, password = new_email("journey"), strong_password()
    user = api_factory()
    register_and_activate(stack, user, mailbox, email, password)
    first_cookies = log_in_and_ask_who(user, email, password)

    with step("admin uploads a 1080p clip; transcoded"):
        video: PublishedVideo = request.getfixturevalue("published_video")

    with step("the list shows it, thumbnail loads"):
        check_list_and_thumbnail(stack, user, video)

    with step("master, rendition playlists and every segment"):
        check_playlists_and_segments(user, video)

    refresh_rotates_and_replay_revokes(stack, user, first_cookies)
    log_out(stack, user, email, password)
    reset_password(stack, user, api_factory(), mailbox, email, password)


def register_and_activate(
    stack: Stack, user: Api, mailbox: Mailbox, email: str, password: str
) -> None:
    with step("register"):
        seen = mailbox.ids(email)
        response = user.register(email, password)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["user"]["email"] == email
        assert isinstance(body["detail"], str)
        assert body["detail"]

    with step("activation email"):
        message = mailbox.wait_new(email, seen)
        link, query = link_params(message, "/pages/auth/activate.html")
        assert link.startswith(f"{stack.frontend_url}/pages/auth/activate.html?"), link
        assert "=" not in query["uid"], "uidb64 has no padding"

    with step("activate"):
        response = user.get(f"/api/activate/{query['uid']}/{query['token']}/")
        assert response.status_code == 200, response.text
        assert response.json() == {"message": "Account successfully activated."}


def log_in_and_ask_who(user: Api, email: str, password: str) -> dict:
    """Log in (cookies, no token in the body) and read /api/user/; the login's cookies."""
    with step("login"):
        response = user.login(email, password)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["detail"] == "Login successful"
        assert body["user"]["username"] == email
        assert body["user"]["id"]
        first_cookies = assert_auth_cookies(response)
        for name in ("access_token", "refresh_token"):
            assert first_cookies[name].value not in response.text, "tokens never go in a body"

    with step("/api/user/"):
        response = user.get("/api/user/")
        assert response.status_code == 200, response.text
        me = response.json()
        assert me["email"] == email
        assert me["is_admin"] is False
        assert str(me["id"]) == str(body["user"]["id"])
        datetime.fromisoformat(me["date_joined"].replace("Z", "+00:00"))
    return first_cookies


def refresh_rotates_and_replay_revokes(stack: Stack, user: Api, first_cookies: dict) -> None:
    with step("refresh rotates the tokens"):
        old_refresh = user.cookies.get("refresh_token")
        old_access = user.cookies.get("access_token")
        assert old_refresh == first_cookies["refresh_token"].value
        response = user.post("/api/token/refresh/")
        assert response.status_code == 200, response.text
        assert response.json() == {"detail": "Token refreshed"}
        rotated = set_cookies(response)
        assert rotated["access_token"].value not in ("", old_access)
        assert rotated["refresh_token"].value not in ("", old_refresh)
        # the refresh token never appears in a body
        assert old_refresh not in response.text
        assert rotated["refresh_token"].value not in response.text
        assert user.get("/api/user/").status_code == 200

    with step("the old refresh token again within the grace: a working pair, no logout"):
        # a second tab, or a parallel request after a 401, presenting what was just rotated
        retry = httpx.post(
            f"{stack.base_url}/api/token/refresh/", cookies={"refresh_token": old_refresh}
        )
        assert retry.status_code == 200, retry.text
        assert user.get("/api/user/").status_code == 200

    with step("replaying the old refresh token after the grace revokes the family"):
        time.sleep(REFRESH_GRACE_SECONDS + 0.5)
        replay = httpx.post(
            f"{stack.base_url}/api/token/refresh/", cookies={"refresh_token": old_refresh}
        )
        assert replay.status_code == 401, replay.text
        response = user.post("/api/token/refresh/")  # the rotated token died with its family
        assert response.status_code == 401, response.text


def log_out(stack: Stack, user: Api, email: str, password: str) -> None:
    with step("log in again, logout"):
        user.cookies.clear()
        user.login_ok(email, password)
        refresh_before_logout = user.cookies.get("refresh_token")
        response = user.post("/api/logout/", headers=user.csrf_headers())
        assert response.status_code == 200, response.text
        assert response.json() == {
            "detail": "Logout successful! All tokens will be deleted. Refresh token is now invalid."
        }
        deleted = set_cookies(response)
        for name in ("access_token", "refresh_token"):
            assert cookie_deleted(deleted[name]), f"{name} not deleted: {deleted[name]}"
        revoked = httpx.post(
            f"{stack.base_url}/api/token/refresh/",
            cookies={"refresh_token": refresh_before_logout},
        )
        assert revoked.status_code == 401, "logout revokes the refresh token server side"

    with step("the list answers 401"):
        response = user.get("/api/video/")
        assert response.status_code == 401, response.text


def reset_password(
    stack: Stack, user: Api, other_session: Api, mailbox: Mailbox, email: str, password: str
) -> None:
    """The emailed reset link sets a new password and ends every other session."""
    with step("password reset through the emailed link"):
        other_session.login_ok(email, password)
        seen = mailbox.ids(email)
        response = user.post("/api/password_reset/", json={"email": email})
        assert response.status_code == 200, response.text
        assert response.json() == {"detail": "An email has been sent to reset your password."}
        link, query = link_params(
            mailbox.wait_new(email, seen), "/pages/auth/confirm_password.html"
        )
        assert link.startswith(f"{stack.frontend_url}/pages/auth/confirm_password.html?")
        new_password = strong_password()
        response = user.post(
            f"/api/password_confirm/{query['uid']}/{query['token']}/",
            json={"new_password": new_password, "confirm_password": new_password},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"detail": "Your Password has been successfully reset."}
        ended = other_session.post("/api/token/refresh/")
        assert ended.status_code == 401, "a reset ends every session of the user"

    with step("log in with the new password only"):
        user.cookies.clear()
        old = user.login(email, password)
        assert old.status_code == 400, old.text
        assert old.json() == {"detail": "Please check your input and try again."}
        user.login_ok(email, new_password)
        assert user.get("/api/user/").json()["email"] == email


def check_list_and_thumbnail(stack: Stack, user: Api, video: PublishedVideo) -> None:
    response = user.get("/api/video/")
    assert response.status_code == 200, response.text
    listed = response.json()
    assert isinstance(listed, list)
    entry = next((v for v in listed if str(v["id"]) == str(video.id)), None)
    assert entry is not None, f"video {video.id} missing from {listed}"
    assert set(entry) >= {"id", "created_at", "title", "description", "thumbnail_url", "category"}
    assert entry["title"] == video.title
    assert entry["category"] == "Documentary"
    datetime.fromisoformat(entry["created_at"].replace("Z", "+00:00"))
    created = [datetime.fromisoformat(v["created_at"].replace("Z", "+00:00")) for v in listed]
    assert created == sorted(created, reverse=True), "newest first"

    thumbnail_url = entry["thumbnail_url"]
    parts = urlsplit(thumbnail_url)
    assert parts.scheme in ("http", "https"), "thumbnail_url is absolute"
    assert parts.netloc, "thumbnail_url is absolute"
    assert thumbnail_url.startswith(stack.base_url), (thumbnail_url, stack.base_url)
    # An <img> on the frontend's origin: no Authorization header, cookies of the site only.
    thumbnail = httpx.get(thumbnail_url, headers={"Origin": stack.frontend_origin}, timeout=10)
    assert thumbnail.status_code == 200, thumbnail.text[:300]
    assert thumbnail.headers["content-type"].startswith("image/jpeg")
    assert thumbnail.content[:3] == b"\xff\xd8\xff", "a JPEG"


def check_playlists_and_segments(user: Api, video: PublishedVideo) -> None:
    base = f"/api/video/{video.id}/"
    master_response = user.get(f"{base}master.m3u8")
    assert master_response.status_code == 200, master_response.text
    assert master_response.headers["content-type"].startswith(PLAYLIST_TYPE)
    master = m3u8.loads(master_response.text)
    assert master.is_variant
    variants = {}
    for playlist in master.playlists:
        assert not urlsplit(playlist.uri).scheme, f"variant URIs are relative: {playlist.uri}"
        assert not playlist.uri.startswith("/"), f"variant URIs are relative: {playlist.uri}"
        resolution = playlist.uri.split("/")[0]
        assert urlsplit(playlist.uri).path == f"{resolution}/index.m3u8", playlist.uri
        assert playlist.stream_info.bandwidth > 0
        assert playlist.stream_info.resolution[1] == RENDITION_HEIGHTS[resolution]
        variants[resolution] = playlist
    assert set(variants) == set(RENDITION_HEIGHTS), "a 1080p source gets the whole ladder"
    # The admin API shows what the master playlist declares: each rendition's true peak
    # (BANDWIDTH) and average, and the CRF the content-aware ladder chose for it.
    bitrates = video.admin_view["renditions_bitrate"]
    for resolution, playlist in variants.items():
        assert bitrates[resolution]["peak_bitrate"] == playlist.stream_info.bandwidth
        assert bitrates[resolution]["average_bitrate"] == playlist.stream_info.average_bandwidth
        assert bitrates[resolution]["crf"] is not None, bitrates

    for resolution in RENDITION_HEIGHTS:
        check_rendition(user, f"{base}{resolution}/", resolution, video.clip.seconds)


def check_rendition(user: Api, rendition_path: str, resolution: str, clip_seconds: float) -> None:
    response = user.get(f"{rendition_path}index.m3u8")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(PLAYLIST_TYPE)
    playlist = m3u8.loads(response.text)
    assert not playlist.is_variant
    assert playlist.is_endlist
    assert playlist.target_duration
    assert playlist.segments
    total = 0.0
    for segment in playlist.segments:
        uri = urlsplit(segment.uri)  # a version query (?v=...) may follow the file name
        assert not uri.scheme, f"relative segment URI: {segment.uri}"
        assert not uri.netloc, f"relative segment URI: {segment.uri}"
        assert SEGMENT_NAME.match(uri.path), f"segment name: {segment.uri}"
        assert segment.duration <= playlist.target_duration + 0.5
        total += segment.duration
        media = user.get(urljoin(rendition_path, segment.uri))
        assert media.status_code == 200, (segment.uri, media.text[:200])
        assert media.headers["content-type"].lower().startswith("video/mp2t")
        assert_mpeg_ts(media.content, f"{resolution}/{segment.uri}")
    assert abs(total - clip_seconds) <= 1.0, f"{resolution}: segments add up to {total}s"

    first = urljoin(rendition_path, urlsplit(playlist.segments[0].uri).path)
    whole = user.get(first).content
    with_slash = user.get(first + "/", follow_redirects=True)
    assert with_slash.status_code == 200, "the segment path with a trailing / is served too"
    assert with_slash.headers["content-type"].lower().startswith("video/mp2t")
    assert with_slash.content == whole
    ranged = user.get(first, headers={"Range": f"bytes=0-{TS_PACKET - 1}"})
    assert ranged.status_code == 206
    assert ranged.content == whole[:TS_PACKET]
    assert probe_height(whole) == RENDITION_HEIGHTS[resolution]


def assert_mpeg_ts(data: bytes, name: str) -> None:
    assert data, f"{name}: empty"
    assert len(data) % TS_PACKET == 0, f"{name}: {len(data)} bytes"
    assert all(data[i] == 0x47 for i in range(0, len(data), TS_PACKET)), (
        f"{name}: sync byte 0x47 missing"
    )


def probe_height(segment: bytes) -> int:
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=height",
            "-of",
            "json",
            "-i",
            "pipe:0",
        ],
        input=segment,
        capture_output=True,
        check=True,
        timeout=30,
    )
    # MPEG-TS lists the stream under its program too; the top-level list has it once.
    return int(json.loads(result.stdout)["streams"][0]["height"])
