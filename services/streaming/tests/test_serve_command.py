"""`videoflix-streaming serve` as deployed: two uvicorn processes behind one port, segments
sent from the in-memory body cache, or (cache off) read from disk per request."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from videoflix_testing.metrics import serving_with_workers

SEGMENT = "/api/video/1/480p/seg_00000.ts"


@pytest.fixture(scope="module", params=["128", "0"], ids=["body-cache", "from-disk"])
def served_url(request, streaming_env, tmp_path_factory) -> Iterator[str]:
    request.getfixturevalue("video")  # what the server is asked for
    env = {**streaming_env, "LOG_LEVEL": "WARNING", "STREAMING_BODY_CACHE_MB": request.param}
    command = ["videoflix-streaming", "serve", "--workers", "2"]
    with serving_with_workers(command, env, tmp_path_factory.mktemp("serve")) as server:
        yield server.url


def test_segment_is_sent_whole(served_url, auth, video):
    expected = video.file("480p/seg_00000.ts").read_bytes()
    response = httpx.get(served_url + SEGMENT, headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/MP2T"
    assert response.headers["content-length"] == str(len(expected))
    assert response.content == expected


def test_ranges_revalidation_and_errors(served_url, auth, video):
    expected = video.file("480p/seg_00000.ts").read_bytes()
    with httpx.Client(base_url=served_url, timeout=10) as client:
        ranged = client.get(SEGMENT, headers={**auth, "Range": "bytes=100-199"})
        assert ranged.status_code == 206
        assert ranged.content == expected[100:200]
        etag = ranged.headers["etag"]
        assert client.get(SEGMENT, headers={**auth, "If-None-Match": etag}).status_code == 304
        head = client.head(SEGMENT, headers=auth)
        assert head.headers["content-length"] == str(len(expected))
        assert head.content == b""
        assert client.get(SEGMENT).status_code == 401
        assert client.get("/api/video/1/480p/%2e%2e/master.m3u8", headers=auth).status_code == 404
        assert client.get("/api/video/1/thumbnail.jpg").headers["content-type"] == "image/jpeg"
        assert client.get("/api/video/1/master.m3u8", headers=auth).status_code == 200
        assert client.get("/healthz").json()["service"] == "streaming"
