"""Every Range / If-Range / If-None-Match / If-Modified-Since value a client can send gets
206, 200 (an unsupported or unparseable range is ignored, as RFC 9110 allows) or 416 with
`Content-Range: bytes */<size>`, and never a 5xx: on segments, playlists and thumbnails."""

from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from videoflix_streaming.http_semantics import RangeNotSatisfiable, parse_byte_range

PATHS = {
    "segment": "/api/video/1/480p/seg_00000.ts",
    "media playlist": "/api/video/1/480p/index.m3u8",
    "master playlist": "/api/video/1/master.m3u8",
    "thumbnail": "/api/video/1/thumbnail.jpg",
}
# CTLs other than HTAB: not allowed in a field value (RFC 9110 5.5).
FORBIDDEN_IN_FIELDS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
HUGE = "9" * 5000
ZEROS = "0" * 5000

# (Range value, expected status, expected (first, last) with -1 meaning "size - 1").
RANGES = [
    # satisfiable single ranges
    ("bytes=0-0", 206, (0, 0)),
    ("bytes=0-", 206, (0, -1)),
    ("bytes=1-", 206, (1, -1)),
    ("bytes=-1", 206, (-1, -1)),
    ("bytes=0-9999999999999999999999", 206, (0, -1)),
    (f"bytes=0-{HUGE}", 206, (0, -1)),
    (f"bytes=-{HUGE}", 206, (0, -1)),  # suffix longer than the file: all of it
    (f"bytes={ZEROS}5-{ZEROS}9", 206, (5, 9)),  # leading zeros are still small numbers
    ("BYTES=0-3", 206, (0, 3)),  # the range unit is case-insensitive
    ("bytes = 2 - 3", 206, (2, 3)),
    ("bytes=0-3,", 206, (0, 3)),  # empty list elements are ignored (RFC 9110 5.6.1)
    ("bytes=,0-3", 206, (0, 3)),
    ("bytes=\t0-\t3", 206, (0, 3)),
    # unsatisfiable: 416
    (f"bytes={HUGE}-", 416, None),
    (f"bytes={HUGE}-{HUGE}", 416, None),
    ("bytes=99999999999999999999-", 416, None),
    ("bytes=-0", 416, None),
    (f"bytes=-{ZEROS}", 416, None),
    # malformed, unsupported or several ranges: ignored, 200 with the whole file
    (f"bytes={HUGE}", 200, None),
    ("bytes=5-1", 200, None),
    (f"bytes={HUGE}-1", 200, None),
    ("bytes=-", 200, None),
    ("bytes=", 200, None),
    ("bytes", 200, None),
    ("=0-1", 200, None),
    ("bytes=a-b", 200, None),
    ("bytes=1-2-3", 200, None),
    ("bytes=0-1,4-5", 200, None),
    ("bytes=0-1, 0-1, 0-1", 200, None),
    ("bytes=0-1," + ",".join(["5-6"] * 2000), 200, None),
    ("bytes=+1-2", 200, None),
    ("bytes=1--2", 200, None),
    ("bytes=1.0-2", 200, None),
    ("bytes=0x10-", 200, None),
    ("bytes=1_000-", 200, None),
    ("items=0-10", 200, None),
    ("bytes=\u0660-\u0663", 200, None),  # Arabic-Indic digits are not DIGIT
    ("bytes=\u00b2-", 200, None),  # superscript two: isdigit() but not DIGIT
    ("bytes=\u00e9-1", 200, None),
    ("\xff\xfe", 200, None),
]


def expected_slice(whole: bytes, bounds: tuple[int, int]) -> tuple[int, int]:
    size = len(whole)
    first, last = bounds
    first = size + first if first < 0 else first
    last = size - 1 if last == -1 else last
    return first, last


@pytest.mark.parametrize("kind", list(PATHS))
@pytest.mark.parametrize(("value", "status", "bounds"), RANGES, ids=lambda v: repr(v)[:40])
def test_every_range_form_gets_206_200_or_416_never_5xx(client, auth, kind, value, status, bounds):
    path = PATHS[kind]
    whole = client.get(path, headers=auth).content
    size = len(whole)
    response = client.get(path, headers={**auth, "Range": value.encode("latin-1", "replace")})
    assert response.status_code == status, (value[:60], response.status_code, response.text[:200])
    if status == 206:
        first, last = expected_slice(whole, bounds)
        assert response.content == whole[first : last + 1]
        assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert response.headers["content-length"] == str(last - first + 1)
    elif status == 416:
        assert response.headers["content-range"] == f"bytes */{size}"
        assert response.json() == {"detail": "Requested range not satisfiable."}
    else:
        assert response.content == whole
        assert "content-range" not in response.headers


@pytest.mark.parametrize("kind", list(PATHS))
@pytest.mark.parametrize(
    "header",
    [
        {"If-Range": HUGE},
        {"If-Range": "W/" + HUGE},
        {"If-Range": "\xff\xfe"},
        {"If-Range": "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"},
        {"If-None-Match": HUGE},
        {"If-None-Match": ",,,," * 1000},
        {"If-None-Match": 'W/"' + HUGE},
        {"If-None-Match": '\xff\u00e9"x'},
        {"If-Modified-Since": HUGE},
        {"If-Modified-Since": f"Mon, 01 Jan {HUGE} 00:00:00 GMT"},
        {"If-Modified-Since": "Mon, 01 Jan 0000 00:00:00 GMT"},
        {"If-Modified-Since": "Fri, 31 Dec 9999 23:59:59 -2359"},
        {"If-Modified-Since": "Mon, 99 Foo 2020 99:99:99 GMT"},
    ],
    ids=lambda h: repr(h)[:40],
)
def test_odd_conditional_headers_never_answer_5xx(client, auth, kind, header):
    path = PATHS[kind]
    encoded = {name: value.encode("latin-1", "replace") for name, value in header.items()}
    response = client.get(path, headers={**auth, "Range": "bytes=0-1", **encoded})
    assert response.status_code in (200, 206, 304), (header, response.status_code)


range_values = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda unit, parts: f"{unit}={','.join(parts)}",
        st.sampled_from(["bytes", "BYTES", "items", "", " bytes "]),
        st.lists(
            st.builds(
                lambda a, sep, b: f"{a}{sep}{b}",
                st.one_of(st.just(""), st.from_regex(r"[0-9]{1,40}", fullmatch=True)),
                st.sampled_from(["-", " - ", "--", "", "\t-"]),
                st.one_of(st.just(""), st.from_regex(r"[0-9 ]{1,40}", fullmatch=True)),
            ),
            max_size=4,
        ),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=range_values, size=st.integers(min_value=0, max_value=10**12))
def test_parse_byte_range_answers_a_slice_none_or_unsatisfiable_for_any_text(value, size):
    try:
        result = parse_byte_range(value, size)
    except RangeNotSatisfiable:
        return
    if result is not None:
        first, last = result
        assert 0 <= first <= last < size


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    value=range_values,
    kind=st.sampled_from(list(PATHS)),
    if_range=st.one_of(st.none(), st.text(max_size=40)),
)
def test_random_range_headers_over_http_never_answer_5xx(
    streaming_server, token_issuer, value, kind, if_range
):
    headers = {
        "Cookie": f"access_token={token_issuer.token()}",
        "Range": value.encode("utf-8", "surrogatepass"),
    }
    if if_range is not None:
        headers["If-Range"] = if_range.encode("utf-8", "surrogatepass")
    try:
        response = httpx.get(streaming_server.url + PATHS[kind], headers=headers, timeout=10)
    except httpx.LocalProtocolError:
        return  # a value (NUL, CR, LF) no HTTP client puts on the wire
    if FORBIDDEN_IN_FIELDS.search(value + (if_range or "")):
        # Control characters are not field content: the HTTP layer refuses them first.
        assert response.status_code == 400, (value[:80], response.status_code)
    else:
        assert response.status_code in (200, 206, 416), (value[:80], response.status_code)


@pytest.mark.parametrize("control", ["\x00", "\x01", "\x1f", "\x7f", "\r", "\n", "\x0b", "\x0c"])
def test_control_characters_in_a_range_are_never_a_range(control):
    for value in (f"bytes={control}0-1", f"bytes=0-1{control}", f"bytes=0{control}-1"):
        assert parse_byte_range(value, 10) is None, repr(value)
