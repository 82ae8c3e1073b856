"""`videoflix-streaming serve` as deployed: Granian processes, segments sent from the
in-memory body cache, or (cache off) by ASGI `http.response.pathsend`; the other tests run
on uvicorn, which has no pathsend."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from videoflix_shared.processes import stop_process
from videoflix_testing.plugin import free_port, wait_until

SEGMENT = "/api/video/1/480p/seg_00000.ts"


@pytest.fixture(scope="module", params=["128", "0"], ids=["body-cache", "pathsend"])
def granian_url(request, streaming_env, video) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        **streaming_env,
        "HTTP_PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "STREAMING_BODY_CACHE_MB": request.param,
    }
    process = subprocess.Popen(
        ["videoflix-streaming", "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/readyz", timeout=1).status_code == 200,
            timeout=30,
            what="videoflix-streaming serve",
        )
        yield url
    finally:
        stop_process(process, group=True)


def test_segment_is_sent_whole(granian_url, auth, video):
    expected = video.file("480p/seg_00000.ts").read_bytes()
    response = httpx.get(granian_url + SEGMENT, headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/MP2T"
    assert response.headers["content-length"] == str(len(expected))
    assert response.content == expected


def test_granian_serves_ranges_revalidation_and_errors(granian_url, auth, video):
    expected = video.file("480p/seg_00000.ts").read_bytes()
    with httpx.Client(base_url=granian_url, timeout=10) as client:
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
