"""Who may play which video: published and ready videos play for every signed-in user,
ready unpublished ones only for admins, anything else for nobody (404, so a draft's
existence is not revealed), from catalog's announcements on the run's real NATS (no call
to catalog per request); changes apply within moments, and until the first replay is done
streaming serves no media at all (503)."""

from __future__ import annotations

import asyncio
import shutil
import time

import httpx
import pytest

from videoflix_shared.bus import EventBus
from videoflix_shared.events import VideoAccessChanged
from videoflix_streaming.access import Audience
from videoflix_streaming.app import create_app
from videoflix_streaming.settings import StreamingSettings
from videoflix_testing.plugin import NATS_URL, ServerThread, free_port, wait_until

MEDIA = ("master.m3u8", "480p/index.m3u8", "480p/seg_00000.ts")
EVERY_FILE = (*MEDIA, "thumbnail.jpg")


def statuses(client: httpx.Client, video_id: int, headers: dict[str, str] | None, files=EVERY_FILE):
    return {
        name: client.get(f"/api/video/{video_id}/{name}", headers=headers).status_code
        for name in files
    }


def test_published_ready_video_plays_for_users_and_its_thumbnail_is_public(
    client, auth, make_video
):
    make_video(201, Audience.EVERYONE)
    assert statuses(client, 201, auth) == dict.fromkeys(EVERY_FILE, 200)
    thumbnail = client.get("/api/video/201/thumbnail.jpg")  # an <img>: no credentials
    assert thumbnail.status_code == 200
    assert thumbnail.headers["cache-control"].startswith("public")


def test_unpublished_video_is_404_to_users_and_anonymous_but_previews_for_admins(
    client, auth, admin_auth, make_video
):
    make_video(202, Audience.ADMINS)
    assert statuses(client, 202, auth) == dict.fromkeys(EVERY_FILE, 404)
    assert client.get("/api/video/202/thumbnail.jpg").status_code == 404
    bad_token = {"Cookie": "access_token=forged"}
    assert client.get("/api/video/202/thumbnail.jpg", headers=bad_token).status_code == 404
    response = client.get("/api/video/202/master.m3u8", headers=auth)
    assert response.json() == {"detail": "Not found."}  # the same answer as an unknown id
    assert response.headers["cache-control"] == "no-store"

    assert statuses(client, 202, admin_auth) == dict.fromkeys(EVERY_FILE, 200)
    preview = client.get("/api/video/202/thumbnail.jpg", headers=admin_auth)
    assert preview.headers["cache-control"] == "private, no-cache", "never in a shared cache"


def test_admin_bearer_token_previews_too(client, token_issuer, make_video):
    make_video(203, Audience.ADMINS)
    admin = {"Authorization": f"Bearer {token_issuer.token(is_admin=True)}"}
    assert statuses(client, 203, admin) == dict.fromkeys(EVERY_FILE, 200)


def test_video_not_ready_or_never_announced_is_404_even_for_admins(
    client, auth, admin_auth, make_video, media_root, hls_template
):
    make_video(204, Audience.NOBODY)  # files on disk, but the video is (re)transcoding
    shutil.copytree(hls_template, media_root / "hls" / "205")  # never announced by catalog
    for video_id in (204, 205):
        assert statuses(client, video_id, admin_auth) == dict.fromkeys(EVERY_FILE, 404)
        assert statuses(client, video_id, auth) == dict.fromkeys(EVERY_FILE, 404)


def test_missing_or_bad_token_is_still_401_for_media_of_any_video(client, make_video):
    make_video(206, Audience.ADMINS)
    for video_id in (1, 206, 999_999):
        for name in MEDIA:
            assert client.get(f"/api/video/{video_id}/{name}").status_code == 401, name


def test_unpublish_publish_and_delete_take_effect_within_a_second(
    client, auth, admin_auth, make_video, access
):
    make_video(207, Audience.EVERYONE)
    assert statuses(client, 207, auth) == dict.fromkeys(EVERY_FILE, 200)

    started = time.monotonic()
    access(207, Audience.ADMINS)  # returns once the server applied it
    assert time.monotonic() - started < 1.0
    assert statuses(client, 207, auth) == dict.fromkeys(EVERY_FILE, 404)
    assert client.get("/api/video/207/thumbnail.jpg").status_code == 404
    assert statuses(client, 207, admin_auth) == dict.fromkeys(EVERY_FILE, 200)

    access(207, Audience.EVERYONE)
    assert statuses(client, 207, auth) == dict.fromkeys(EVERY_FILE, 200)

    access.delete(207)
    assert statuses(client, 207, admin_auth) == dict.fromkeys(EVERY_FILE, 404)
    assert statuses(client, 207, auth) == dict.fromkeys(EVERY_FILE, 404)


def test_revalidation_of_an_unpublished_playlist_is_404_not_304(client, auth, make_video, access):
    make_video(208, Audience.EVERYONE)
    etag = client.get("/api/video/208/480p/index.m3u8", headers=auth).headers["etag"]
    access(208, Audience.ADMINS)
    response = client.get("/api/video/208/480p/index.m3u8", headers={**auth, "If-None-Match": etag})
    assert response.status_code == 404


def test_a_restarted_process_replays_every_state_before_it_serves(
    streaming_env, auth, admin_auth, make_video, access
):
    make_video(209, Audience.EVERYONE)
    make_video(210, Audience.ADMINS)
    make_video(211, Audience.EVERYONE)
    access(211, Audience.ADMINS)  # only the last announcement counts
    access(211, Audience.EVERYONE)
    access.delete(211)
    with (
        ServerThread(create_app(StreamingSettings(**streaming_env))) as server,
        httpx.Client(base_url=server.url, timeout=10) as fresh,
    ):
        # The first requests after start already know every video: no 503, nothing stale.
        assert statuses(fresh, 209, auth) == dict.fromkeys(EVERY_FILE, 200)
        assert statuses(fresh, 210, auth) == dict.fromkeys(EVERY_FILE, 404)
        assert statuses(fresh, 210, admin_auth) == dict.fromkeys(EVERY_FILE, 200)
        assert statuses(fresh, 211, admin_auth) == dict.fromkeys(EVERY_FILE, 404)
        assert fresh.get("/readyz").json()["checks"]["access"] == "ok"


@pytest.mark.usefixtures("video")
def test_without_nats_nothing_is_served_and_readiness_says_why(streaming_env, auth):
    unreachable = f"nats://127.0.0.1:{free_port()}"
    settings = StreamingSettings(**{**streaming_env, "NATS_URL": unreachable})
    endpoint = create_app(settings)
    with (
        ServerThread(endpoint) as server,  # starts anyway, after a bounded wait
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        for name in EVERY_FILE:
            response = http.get(f"/api/video/1/{name}", headers=auth)
            assert response.status_code == 503, name
            assert response.headers["retry-after"].isdigit()
            assert response.json() == {"detail": "Playback is starting up; try again in a moment."}
        assert http.get("/api/video/1/thumbnail.jpg").status_code == 503
        assert http.get("/api/video/1/master.m3u8").status_code == 401  # 401 stays 401
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert "access" in ready.json()["checks"]
        assert http.get("/healthz").status_code == 200


async def test_feed_resumes_after_its_consumer_is_lost(
    streaming_server, auth, make_video, access, streaming_nats_names
):
    """NATS restarted (ephemeral consumers are gone): the feed recreates its consumer after
    the last sequence it applied, and later changes still arrive."""
    make_video(212, Audience.EVERYONE)
    bus = EventBus(
        url=NATS_URL,
        subject_prefix=streaming_nats_names["NATS_SUBJECT_PREFIX"],
        stream_prefix=streaming_nats_names["NATS_STREAM_PREFIX"],
    )
    await bus.connect(wait=False)
    try:
        stream = bus.stream("ACCESS")
        for consumer in await bus.js.consumers_info(stream):
            await bus.js.delete_consumer(stream, consumer.name)
    finally:
        await bus.close()
    await asyncio.to_thread(access, 212, Audience.ADMINS)  # waits until the server applied it
    async with httpx.AsyncClient(base_url=streaming_server.url) as client:
        response = await client.get("/api/video/212/master.m3u8", headers=auth)
    assert response.status_code == 404


def test_malformed_or_mismatched_announcements_are_ignored(client, auth, make_video, access):
    make_video(213, Audience.EVERYONE)
    access.publish_raw("access.video.213", b"{not json")
    # A payload about another video on 213's subject changes neither of them.
    other = VideoAccessChanged(video_id=214, published=False, ready=False, deleted=True)
    access.publish_raw("access.video.213", other.model_dump_json().encode())
    access(213, Audience.ADMINS)  # still following: a later valid one applies
    assert client.get("/api/video/213/master.m3u8", headers=auth).status_code == 404


def test_unknown_video_ids_are_found_by_nobody(client, admin_auth):
    wait_until(lambda: client.get("/readyz").status_code == 200, what="readiness")
    for video_id in (2, 3, 1000, 999_999_999_999_999_999):
        assert statuses(client, video_id, admin_auth) == dict.fromkeys(EVERY_FILE, 404)


@pytest.mark.parametrize("audience", list(Audience))
@pytest.mark.usefixtures("access")
def test_every_audience_answers_the_same_way_by_cookie_and_by_bearer(
    client, token_issuer, make_video, audience
):
    video_id = 220 + list(Audience).index(audience)
    make_video(video_id, audience)
    for is_admin in (False, True):
        token = token_issuer.token(is_admin=is_admin)
        by_cookie = statuses(client, video_id, {"Cookie": f"access_token={token}"})
        by_bearer = statuses(client, video_id, {"Authorization": f"Bearer {token}"})
        assert by_cookie == by_bearer
        plays = audience is Audience.EVERYONE or (audience is Audience.ADMINS and is_admin)
        assert by_cookie == dict.fromkeys(EVERY_FILE, 200 if plays else 404)


async def test_feed_follows_an_access_stream_deleted_and_recreated(
    streaming_server, auth, make_video, access, streaming_nats_names
):
    """An operator deleted the ACCESS stream; its owner re-created it (sequences start at 1
    again): the feed notices the new stream and applies its announcements from its start,
    keeping what it knew meanwhile."""
    make_video(215, Audience.EVERYONE)
    make_video(216, Audience.EVERYONE)
    bus = EventBus(
        url=NATS_URL,
        subject_prefix=streaming_nats_names["NATS_SUBJECT_PREFIX"],
        stream_prefix=streaming_nats_names["NATS_STREAM_PREFIX"],
        check_interval=0,
    )
    await bus.connect(wait=False)
    try:
        await bus.js.delete_stream(bus.stream("ACCESS"))
    finally:
        await bus.close()
    # the announcer's bus owns every stream: it re-creates ACCESS as catalog's would
    await asyncio.to_thread(access, 215, Audience.ADMINS)  # waits until the server applied it
    async with httpx.AsyncClient(base_url=streaming_server.url) as client:
        assert (await client.get("/api/video/215/master.m3u8", headers=auth)).status_code == 404
        assert (await client.get("/api/video/216/master.m3u8", headers=auth)).status_code == 200
    await asyncio.to_thread(access, 1)  # the session's video, for servers started later
