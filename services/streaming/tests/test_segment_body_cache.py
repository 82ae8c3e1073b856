"""Segment bytes kept in memory: bounded, least recently used evicted, never stale, and the
disk path still serving everything when the cache is off."""

from __future__ import annotations

import os

import httpx
import pytest

from videoflix_streaming.app import create_app
from videoflix_streaming.service import AssetKind, BodyCache, MediaLibrary, _read_if_unchanged
from videoflix_streaming.settings import StreamingSettings
from videoflix_testing.plugin import ServerThread

SEGMENT = "/api/video/1/480p/seg_00000.ts"


def test_body_cache_evicts_least_recently_used_to_stay_within_budget():
    cache = BodyCache(max_bytes=10, max_file_bytes=10)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # a is now the most recently used
    cache.put("c", b"cccc")
    assert cache.get("b") is None
    assert cache.get("a") == b"aaaa"
    assert cache.get("c") == b"cccc"
    assert cache.size == 8
    assert len(cache) == 2


def test_body_cache_refuses_files_over_the_per_file_limit_and_when_disabled():
    cache = BodyCache(max_bytes=100, max_file_bytes=5)
    cache.put("big", b"x" * 6)
    assert cache.get("big") is None
    assert not BodyCache(max_bytes=0, max_file_bytes=5).admits(1)


async def test_library_keeps_segment_bytes_until_the_file_is_replaced(media_root, video):
    library = MediaLibrary(media_root=media_root, cache_seconds=0, body_cache_bytes=1 << 20)
    media = await library.find(video_id=1, asset="480p/seg_00001.ts")
    assert media is not None
    assert media.kind is AssetKind.SEGMENT
    assert library.body(media) is None  # read by whoever sends it, not by the lookup
    segment = video.file("480p/seg_00001.ts").read_bytes()
    assert await library.load_body(media) == segment
    assert library.body(media) == segment


async def test_a_file_replaced_after_its_lookup_is_not_cached(media_root, make_video):
    replaced = make_video(61)
    library = MediaLibrary(media_root=media_root, cache_seconds=0, body_cache_bytes=1 << 20)
    media = await library.find(video_id=61, asset="480p/seg_00000.ts")
    assert media is not None
    path = replaced.file("480p/seg_00000.ts")
    fresh = path.with_name("fresh.ts")
    fresh.write_bytes(path.read_bytes() + b"\xff" * 188)
    os.replace(fresh, path)
    assert _read_if_unchanged(media) is None


async def test_a_segment_evicted_from_memory_is_read_again_and_kept(media_root, video):
    segment = video.file("720p/seg_00000.ts").read_bytes()
    library = MediaLibrary(media_root=media_root, cache_seconds=0, body_cache_bytes=1 << 20)
    media = await library.find(video_id=1, asset="720p/seg_00000.ts")
    assert media is not None
    assert await library.load_body(media) == segment
    library.bodies = BodyCache(max_bytes=1 << 20, max_file_bytes=1 << 20)  # evicted since
    assert library.body(media) is None
    assert await library.load_body(media) == segment
    assert library.body(media) == segment  # the next request is answered from memory


@pytest.fixture(scope="module")
def uncached_client(request, streaming_env):
    request.getfixturevalue("video")  # what the server is asked for
    settings = StreamingSettings(**{**streaming_env, "STREAMING_BODY_CACHE_MB": "0"})
    with (
        ServerThread(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield client


def test_segments_and_ranges_are_read_from_disk_when_the_cache_is_off(uncached_client, auth, video):
    expected = video.file("480p/seg_00000.ts").read_bytes()
    whole = uncached_client.get(SEGMENT, headers=auth)
    assert whole.status_code == 200
    assert whole.content == expected
    ranged = uncached_client.get(SEGMENT, headers={**auth, "Range": "bytes=-300"})
    assert ranged.status_code == 206
    assert ranged.content == expected[-300:]
    thumbnail = uncached_client.get("/api/video/1/thumbnail.jpg")
    assert thumbnail.content == video.file("thumbnail.jpg").read_bytes()
