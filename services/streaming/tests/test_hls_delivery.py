"""Playlists, segments and the thumbnail: bodies, content types, lengths, cache headers."""

from __future__ import annotations

import os
import re
import shutil

import m3u8
import pytest

from videoflix_testing.plugin import wait_until

SEGMENT_URI = re.compile(r"^seg_[0-9]{5}\.ts\?v=[0-9a-f]{12}$")


def test_segment_is_served_whole_as_mpeg_ts(client, auth, video):
    expected = video.file("480p/seg_00000.ts").read_bytes()
    response = client.get("/api/video/1/480p/seg_00000.ts", headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/MP2T"
    assert response.headers["content-length"] == str(len(expected))
    assert response.content == expected
    assert response.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"].startswith('"')
    assert response.headers["last-modified"].endswith(" GMT")


def test_segment_path_with_trailing_slash_is_served(client, auth, video):
    response = client.get("/api/video/1/720p/seg_00001.ts/", headers=auth)
    assert response.status_code == 200
    assert response.content == video.file("720p/seg_00001.ts").read_bytes()


def test_media_playlist_versions_segment_uris_and_stays_relative(client, auth):
    response = client.get("/api/video/1/480p/index.m3u8", headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["content-length"] == str(len(response.content))
    playlist = m3u8.loads(response.text)
    uris = [segment.uri for segment in playlist.segments]
    assert len(uris) == 2
    assert all(SEGMENT_URI.match(uri) for uri in uris), uris
    # The versioned URI resolves against the playlist and serves the segment.
    segment = client.get(f"/api/video/1/480p/{uris[0]}", headers=auth)
    assert segment.status_code == 200
    assert segment.headers["content-type"] == "video/MP2T"


def test_master_playlist_lists_the_renditions(client, auth):
    response = client.get("/api/video/1/master.m3u8", headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert response.headers["cache-control"] == "private, no-cache"
    playlist = m3u8.loads(response.text)
    assert [p.uri for p in playlist.playlists] == ["480p/index.m3u8", "720p/index.m3u8"]


def test_published_videos_thumbnail_is_public_and_cacheable(client, video):
    response = client.get("/api/video/1/thumbnail.jpg")  # no cookie
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.content == video.file("thumbnail.jpg").read_bytes()
    assert response.content[:2] == b"\xff\xd8"  # a real JPEG from ffmpeg


def test_head_answers_headers_without_body(client, auth, video):
    response = client.head("/api/video/1/480p/seg_00000.ts", headers=auth)
    assert response.status_code == 200
    size = video.file("480p/seg_00000.ts").stat().st_size
    assert response.headers["content-length"] == str(size)
    assert response.content == b""


@pytest.mark.usefixtures("video")
def test_unknown_video_rendition_or_segment_is_json_404(client, auth):
    for path in (
        "/api/video/999/480p/index.m3u8",  # no such video
        "/api/video/1/1080p/seg_00000.ts",  # segment of a rendition not produced
        "/api/video/1/480p/seg_00099.ts",  # no such segment
        "/api/video/999/thumbnail.jpg",
    ):
        response = client.get(path, headers=auth)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found."}


def test_retranscoded_video_gets_new_validators_and_segment_versions(
    client, auth, make_video, hls_tree_writer, tmp_path
):
    video = make_video(41)
    before = client.get("/api/video/41/480p/index.m3u8", headers=auth)
    segment_before = client.get("/api/video/41/480p/seg_00000.ts", headers=auth)
    # The transcoder renames a complete new tree into place.
    staging = tmp_path / "new"
    hls_tree_writer(staging)
    new_segment = staging / "480p" / "seg_00000.ts"
    new_segment.write_bytes(new_segment.read_bytes() + b"\xff" * 188)  # other bytes, other size
    retired = video.directory.with_name("41.old")
    os.rename(video.directory, retired)
    shutil.copytree(staging, video.directory)
    shutil.rmtree(retired)

    def changed() -> bool:
        after = client.get("/api/video/41/480p/index.m3u8", headers=auth)
        return after.headers["etag"] != before.headers["etag"]

    wait_until(changed, timeout=5, what="the new playlist to be served")
    after = client.get("/api/video/41/480p/index.m3u8", headers=auth)
    assert m3u8.loads(after.text).segments[0].uri != m3u8.loads(before.text).segments[0].uri
    wait_until(
        lambda: (
            client.get("/api/video/41/480p/seg_00000.ts", headers=auth).headers["etag"]
            != segment_before.headers["etag"]
        ),
        timeout=5,
        what="the new segment's ETag",
    )
    served = client.get("/api/video/41/480p/seg_00000.ts", headers=auth)
    assert served.content == video.file("480p/seg_00000.ts").read_bytes()
    assert served.content != segment_before.content


def test_deleted_video_stops_being_served(client, auth, make_video):
    video = make_video(42)
    assert client.get("/api/video/42/480p/index.m3u8", headers=auth).status_code == 200
    shutil.rmtree(video.directory)
    wait_until(
        lambda: (
            client.get("/api/video/42/480p/seg_00000.ts", headers=auth).status_code == 404
            and client.get("/api/video/42/480p/index.m3u8", headers=auth).status_code == 404
        ),
        timeout=5,
        what="the deleted video to 404",
    )
