"""Strict paths: only integer ids, known resolutions and segment names, files under the
HLS root; traversal by dots, encodings, absolute paths or symlinks answers a JSON 404."""

from __future__ import annotations

import json
import os

import pytest


@pytest.fixture(scope="module")
def secret_outside(tmp_path_factory) -> str:
    """A file outside the media root that a traversal would try to read."""
    path = tmp_path_factory.mktemp("outside") / "secret.ts"
    path.write_bytes(b"TOP SECRET")
    return str(path)


@pytest.mark.parametrize(
    "target",
    [
        "/api/video/1/480p/../../../../etc/passwd",
        "/api/video/1/../1/480p/seg_00000.ts",
        "/api/video/1/480p/%2e%2e/%2e%2e/master.m3u8",
        "/api/video/1/%2e%2e/1/master.m3u8",
        "/api/video/1/480p%2fseg_00000.ts",
        "/api/video/1/480p/seg_00000.ts%2f",
        "/api/video/1%2f480p/seg_00000.ts",
        "/api/video/%31/master.m3u8",  # an encoded digit is still not the canonical path
        "/api/video/1/480p/seg_0000%30.ts",
        "/api/video//etc/passwd",
        "/api/video/1//etc/passwd",
        "/api/video/1/480p//etc/passwd",
        "/api/video/1/480p/%2Fetc%2Fpasswd",
        "/api/video/1/480p/seg_00000.ts/../../../master.m3u8",
        "/api/video/1/480p/seg_00000.ts%00.jpg",
        "/api/video/1/480p/./seg_00000.ts",
        "/api/video/1/480p\\seg_00000.ts",
    ],
)
def test_traversal_attempts_answer_json_404(raw_get, target):
    response = raw_get(target)
    assert response.status == 404, target
    assert json.loads(response.body) == {"detail": "Not found."}
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "path",
    [
        "/api/video/abc/480p/index.m3u8",
        "/api/video/-1/480p/index.m3u8",
        "/api/video/0/480p/index.m3u8",
        "/api/video/01/480p/index.m3u8",
        "/api/video/1.0/480p/index.m3u8",
        "/api/video/99999999999999999999999/480p/index.m3u8",
        "/api/video/1/360p/index.m3u8",
        "/api/video/1/480P/index.m3u8",
        "/api/video/1/480p/seg_1.ts",
        "/api/video/1/480p/seg_000000.ts",
        "/api/video/1/480p/seg_00000.mp4",
        "/api/video/1/480p/SEG_00000.TS",
        "/api/video/1/480p/",
        "/api/video/1/480p",
        "/api/video/1/",
        "/api/video/1/source.mp4",
        "/api/video/1/480p/index.m3u8/extra",
    ],
)
def test_malformed_paths_answer_json_404(client, auth, path):
    response = client.get(path, headers=auth)
    assert response.status_code == 404, path
    assert response.json() == {"detail": "Not found."}


def test_symlinked_segment_leading_outside_is_404(client, auth, video, secret_outside):
    link = video.file("480p/seg_00090.ts")
    os.symlink(secret_outside, link)
    response = client.get("/api/video/1/480p/seg_00090.ts", headers=auth)
    assert response.status_code == 404
    assert b"TOP SECRET" not in response.content


def test_symlinked_video_directory_leading_outside_is_404(
    client, auth, media_root, hls_tree_writer, tmp_path, access
):
    outside = tmp_path / "elsewhere"
    hls_tree_writer(outside)
    os.symlink(outside, media_root / "hls" / "77")
    access(77)  # published: only the path check can refuse it
    for path in ("/api/video/77/master.m3u8", "/api/video/77/480p/seg_00000.ts"):
        assert client.get(path, headers=auth).status_code == 404, path
    assert client.get("/api/video/77/thumbnail.jpg").status_code == 404


def test_symlinked_playlist_leading_outside_is_404(client, auth, make_video, secret_outside):
    video = make_video(78)
    os.remove(video.file("720p/index.m3u8"))
    os.symlink(secret_outside, video.file("720p/index.m3u8"))
    assert client.get("/api/video/78/720p/index.m3u8", headers=auth).status_code == 404


def test_symlink_staying_inside_the_media_root_is_followed(client, auth, video, make_video):
    other = make_video(79)
    os.remove(other.file("480p/seg_00001.ts"))
    os.symlink(video.file("480p/seg_00000.ts"), other.file("480p/seg_00001.ts"))
    response = client.get("/api/video/79/480p/seg_00001.ts", headers=auth)
    assert response.status_code == 200
    assert response.content == video.file("480p/seg_00000.ts").read_bytes()


def test_directory_or_fifo_under_a_served_name_is_404(client, auth, video):
    os.mkdir(video.file("480p/seg_00091.ts"))
    os.mkfifo(video.file("480p/seg_00092.ts"))
    os.makedirs(video.file("1080p"), exist_ok=True)
    os.mkfifo(video.file("1080p/index.m3u8"))
    for path in (
        "/api/video/1/480p/seg_00091.ts",
        "/api/video/1/480p/seg_00092.ts",
        "/api/video/1/1080p/index.m3u8",  # a FIFO must not block the reader
    ):
        response = client.get(path, headers=auth)
        assert response.status_code == 404, path


def test_paths_are_checked_before_credentials_are_required(raw_get):
    assert raw_get("/api/video/1/480p/%2e%2e/master.m3u8", authenticated=False).status == 404
    assert raw_get("/api/video/1/480p/index.m3u8", authenticated=False).status == 401
