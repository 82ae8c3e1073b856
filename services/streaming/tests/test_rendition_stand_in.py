"""Every rendition the contract names answers: a video without the one asked for (a small
source is never upscaled; higher rungs may still be encoding) gets the best one it has that
is not above it, with segment URIs that resolve, while the master lists only what exists."""

from __future__ import annotations

import shutil
from urllib.parse import urljoin

import m3u8
import pytest

from videoflix_streaming.service import RESOLUTIONS


def playlist_and_segments(client, auth, video_id: int, resolution: str) -> tuple[str, list]:
    url = f"/api/video/{video_id}/{resolution}/index.m3u8"
    response = client.get(url, headers=auth)
    assert response.status_code == 200, (resolution, response.text)
    assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
    segments = [
        client.get(urljoin(url, segment.uri), headers=auth)
        for segment in m3u8.loads(response.text).segments
    ]
    return response.text, segments


@pytest.fixture(scope="module")
def small_source(make_video):
    """What the transcoder writes for a 640x360 phone clip: 480p only."""
    video = make_video(9041)
    shutil.rmtree(video.file("720p"))
    video.file("master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=640x360\n480p/index.m3u8\n"
    )
    return video


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_every_rendition_of_a_small_source_plays_its_480p(client, auth, small_source, resolution):
    text, segments = playlist_and_segments(client, auth, small_source.video_id, resolution)
    expected = small_source.file("480p/seg_00000.ts").read_bytes()
    assert segments
    assert all(s.status_code == 200 for s in segments)
    assert segments[0].content == expected
    if resolution != "480p":
        assert "../480p/seg_00000.ts?v=" in text


def test_the_master_playlist_still_lists_only_what_exists(client, auth, small_source):
    response = client.get(f"/api/video/{small_source.video_id}/master.m3u8", headers=auth)
    assert [p.uri for p in m3u8.loads(response.text).playlists] == ["480p/index.m3u8"]


@pytest.fixture(scope="module")
def video_with_480p_and_720p(make_video):
    return make_video(9044)


def test_1080p_of_a_720p_video_is_its_720p_not_its_480p(client, auth, video_with_480p_and_720p):
    video = video_with_480p_and_720p
    text, segments = playlist_and_segments(client, auth, video.video_id, "1080p")
    assert "../720p/seg_00000.ts?v=" in text
    assert segments[0].content == video.file("720p/seg_00000.ts").read_bytes()


def test_while_only_a_higher_rung_exists_the_lowest_there_is_stands_in(client, auth, make_video):
    video = make_video(9042)
    shutil.rmtree(video.file("480p"))  # e.g. a film whose 480p rung is still being encoded
    text, segments = playlist_and_segments(client, auth, video.video_id, "480p")
    assert "../720p/seg_00000.ts?v=" in text
    assert all(s.status_code == 200 for s in segments)


def test_a_stand_in_has_its_own_validator(client, auth, video_with_480p_and_720p):
    video = video_with_480p_and_720p
    real = client.get(f"/api/video/{video.video_id}/720p/index.m3u8", headers=auth)
    stand_in = client.get(f"/api/video/{video.video_id}/1080p/index.m3u8", headers=auth)
    assert real.headers["etag"] != stand_in.headers["etag"]
    again = client.get(
        f"/api/video/{video.video_id}/1080p/index.m3u8",
        headers={**auth, "If-None-Match": stand_in.headers["etag"]},
    )
    assert again.status_code == 304


def test_a_rendition_that_exists_but_cannot_be_served_gets_no_stand_in(client, auth, make_video):
    video = make_video(9045)
    (video.directory / "1080p").symlink_to("/etc")  # planted, pointing out of the media root
    response = client.get(f"/api/video/{video.video_id}/1080p/index.m3u8", headers=auth)
    assert response.status_code == 404


def test_a_video_with_no_rendition_at_all_is_still_404(client, auth, make_video):
    video = make_video(9043)
    for resolution in ("480p", "720p"):
        shutil.rmtree(video.file(resolution))
    response = client.get(f"/api/video/{video.video_id}/1080p/index.m3u8", headers=auth)
    assert response.status_code == 404
