"""ETag / Last-Modified revalidation (304) and byte ranges (206, 416)."""

from __future__ import annotations

import pytest

from videoflix_streaming.http_semantics import RangeNotSatisfiable, parse_byte_range

SEGMENT = "/api/video/1/480p/seg_00000.ts"
# Unicode digits, which str.isdigit() accepts and int() parses: not digits in a Range header.
ARABIC_INDIC_DIGITS = "bytes=\u0660-\u0663"


@pytest.fixture
def segment_bytes(video) -> bytes:
    return video.file("480p/seg_00000.ts").read_bytes()


def test_matching_etag_answers_304_without_body(client, auth):
    first = client.get(SEGMENT, headers=auth)
    etag = first.headers["etag"]
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = client.get(SEGMENT, headers={**auth, "If-None-Match": if_none_match})
        assert response.status_code == 304, if_none_match
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "private, max-age=31536000, immutable"


def test_stale_etag_answers_200_with_body(client, auth, segment_bytes):
    response = client.get(SEGMENT, headers={**auth, "If-None-Match": '"stale"'})
    assert response.status_code == 200
    assert response.content == segment_bytes


def test_if_modified_since_answers_304_until_the_file_changes(client, auth):
    last_modified = client.get(SEGMENT, headers=auth).headers["last-modified"]
    unchanged = client.get(SEGMENT, headers={**auth, "If-Modified-Since": last_modified})
    assert unchanged.status_code == 304
    older = "Mon, 01 Jan 2001 00:00:00 GMT"
    changed = client.get(SEGMENT, headers={**auth, "If-Modified-Since": older})
    assert changed.status_code == 200
    garbage = client.get(SEGMENT, headers={**auth, "If-Modified-Since": "yesterday-ish"})
    assert garbage.status_code == 200


def test_playlist_revalidates_with_304(client, auth):
    etag = client.get("/api/video/1/480p/index.m3u8", headers=auth).headers["etag"]
    response = client.get("/api/video/1/480p/index.m3u8", headers={**auth, "If-None-Match": etag})
    assert response.status_code == 304


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, None), ("bytes=-188", -188, None)],
)
def test_byte_range_answers_206_with_that_slice(
    client, auth, segment_bytes, range_header, first, last
):
    response = client.get(SEGMENT, headers={**auth, "Range": range_header})
    expected = segment_bytes[first : None if last is None else last + 1]
    size = len(segment_bytes)
    assert response.status_code == 206
    assert response.content == expected
    assert response.headers["content-length"] == str(len(expected))
    start = first if first >= 0 else size + first
    assert response.headers["content-range"] == f"bytes {start}-{start + len(expected) - 1}/{size}"
    assert response.headers["content-type"] == "video/MP2T"


def test_range_past_the_end_is_clamped(client, auth, segment_bytes):
    response = client.get(SEGMENT, headers={**auth, "Range": "bytes=10-99999999"})
    assert response.status_code == 206
    assert response.content == segment_bytes[10:]


def test_unsatisfiable_range_answers_416_json(client, auth, segment_bytes):
    size = len(segment_bytes)
    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
        response = client.get(SEGMENT, headers={**auth, "Range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{size}"
        assert response.json() == {"detail": "Requested range not satisfiable."}


def test_malformed_or_multiple_ranges_are_ignored(client, auth, segment_bytes):
    for header in (
        "bytes=abc",
        "items=0-10",
        "bytes=5-1",
        "bytes=0-1,4-5",
        ARABIC_INDIC_DIGITS.encode(),
    ):
        response = client.get(SEGMENT, headers={**auth, "Range": header})
        assert response.status_code == 200, header
        assert response.content == segment_bytes


def test_if_range_with_current_etag_honours_range_and_stale_one_sends_all(
    client, auth, segment_bytes
):
    etag = client.get(SEGMENT, headers=auth).headers["etag"]
    current = client.get(SEGMENT, headers={**auth, "Range": "bytes=0-9", "If-Range": etag})
    assert current.status_code == 206
    assert current.content == segment_bytes[:10]
    stale = client.get(SEGMENT, headers={**auth, "Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200
    assert stale.content == segment_bytes


def test_range_on_playlist_slices_the_served_body(client, auth):
    whole = client.get("/api/video/1/480p/index.m3u8", headers=auth).content
    response = client.get("/api/video/1/480p/index.m3u8", headers={**auth, "Range": "bytes=0-6"})
    assert response.status_code == 206
    assert response.content == whole[:7] == b"#EXTM3U"


def test_parse_byte_range_edge_cases():
    assert parse_byte_range("bytes=0-0", 10) == (0, 0)
    assert parse_byte_range("bytes=-20", 10) == (0, 9)
    assert parse_byte_range(" bytes = 2 - 3 ", 10) == (2, 3)
    assert parse_byte_range("bytes=-", 10) is None
    assert parse_byte_range("bytes=1-2-3", 10) is None
    assert parse_byte_range(ARABIC_INDIC_DIGITS, 10) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_byte_range("bytes=0-", 0)
    with pytest.raises(RangeNotSatisfiable):
        parse_byte_range("bytes=-5", 0)
