"""Admin upload: streamed into the media volume, recorded with its event in one
transaction, and every kind of bad input refused with a 4xx that leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from videoflix_catalog.uploads import INCOMING_DIR
from videoflix_shared.events import VideoUploaded

from .conftest import MAX_UPLOAD_BYTES, make_clip


async def test_upload_stores_source_and_publishes_uploaded_event(catalog) -> None:
    title = catalog.unique_title("Upload")
    response = await catalog.upload(title=title, category="documentary", filename="My Clip.MP4")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "uploaded"
    assert body["id"] == body["video"]["id"]
    video = body["video"]
    assert video["title"] == title
    assert video["category"] == "Documentary"
    assert (video["width"], video["height"]) == (160, 90)
    assert video["published"] is False
    assert video["generation"] == 1
    assert video["progress"] == 0

    source = catalog.settings.media_root / f"uploads/{video['id']}/source.mp4"
    assert source.read_bytes() == catalog.clip.read_bytes()
    assert video["source_size"] == catalog.clip.stat().st_size
    assert not list((catalog.settings.media_root / INCOMING_DIR).iterdir())

    event = await catalog.wait_for_event(VideoUploaded.subject, lambda e: e.video_id == video["id"])
    assert event.generation == 1
    assert event.source_path == f"uploads/{video['id']}/source.mp4"


async def test_upload_accepts_category_by_id_and_fields_after_the_file(catalog) -> None:
    categories = (await catalog.admin.get("/api/admin/categories/")).json()
    action = next(c for c in categories if c["name"] == "Action")
    response = await catalog.admin.post(
        "/api/admin/videos/upload/",
        files=[
            ("file", ("late.mkv", catalog.clip.read_bytes(), "video/x-matroska")),
            ("title", (None, "Fields last")),
            ("category", (None, str(action["id"]))),
        ],
    )
    assert response.status_code == 202, response.text
    video = response.json()["video"]
    assert video["category"] == "Action"
    assert video["description"] == ""
    assert (catalog.settings.media_root / f"uploads/{video['id']}/source.mkv").is_file()


async def test_whole_body_in_one_chunk_with_fields_after_the_file(catalog) -> None:
    """The file part ends and the next parts begin inside the same received chunk."""
    boundary = "one-chunk"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="tiny.mov"\r\n'
            "Content-Type: video/quicktime\r\n\r\n"
        ).encode()
        + catalog.clip.read_bytes()
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nOne chunk'
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="category"\r\n\r\nDrama'
            f"\r\n--{boundary}--\r\n"
        ).encode()
    )

    async def one_chunk():
        yield body

    response = await catalog.admin.post(
        "/api/admin/videos/upload/",
        content=one_chunk(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 202, response.text
    video = response.json()["video"]
    stored = catalog.settings.media_root / f"uploads/{video['id']}/source.mov"
    assert stored.read_bytes() == catalog.clip.read_bytes()


async def test_upload_streams_a_multi_megabyte_body_in_chunks(catalog, tmp_path: Path) -> None:
    """A body arriving in many small chunks (as from a socket) is reassembled exactly."""
    clip = make_clip(tmp_path / "long.ts", seconds=6, size="320x180")
    data = clip.read_bytes()
    boundary = "catalog-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nChunked\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="category"\r\n\r\nDrama\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="long.ts"\r\n'
        "Content-Type: video/mp2t\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    body = head + data + tail

    async def chunks():
        for start in range(0, len(body), 7919):  # odd size: boundaries split across chunks
            yield body[start : start + 7919]

    response = await catalog.admin.post(
        "/api/admin/videos/upload/",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 202, response.text
    video = response.json()["video"]
    stored = catalog.settings.media_root / f"uploads/{video['id']}/source.ts"
    assert stored.read_bytes() == data
    assert (video["width"], video["height"]) == (320, 180)


BAD_UPLOADS = {
    "unknown category": (
        dict(category="Western"),
        400,
        {"category": ["Unknown category."]},
    ),
    "over-long title": (dict(title="x" * 201), 400, "title"),
    "blank title": (dict(title="   "), 400, "title"),
    "empty file": (dict(source=b""), 400, {"file": ["The uploaded file is empty."]}),
    "text pretending to be video": (
        dict(source=b"just some text, not a video\n" * 100),
        415,
        {"file": ["The file is not a video that can be processed (no readable video stream)."]},
    ),
    "random bytes": (dict(source=os.urandom(64 * 1024)), 415, "file"),
    "oversized file": (
        dict(source=b"\0" * (MAX_UPLOAD_BYTES + 1)),
        413,
        {"detail": f"The file is larger than the maximum upload size of {MAX_UPLOAD_BYTES} bytes."},
    ),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
async def test_bad_upload_is_refused_and_changes_nothing(catalog, case: str) -> None:
    kwargs, status, expected = BAD_UPLOADS[case]
    before = await catalog.snapshot()
    response = await catalog.upload(**kwargs)
    assert response.status_code == status, response.text
    if isinstance(expected, dict):
        assert response.json() == expected
    else:
        assert set(response.json()) == {expected}
    assert await catalog.snapshot() == before


async def test_still_image_is_refused_as_not_a_video(catalog, still_image: Path) -> None:
    before = await catalog.snapshot()
    response = await catalog.upload(still_image, filename="poster.png")
    assert response.status_code == 415
    assert response.json() == {"file": ["The file is a still image, not a video."]}
    assert await catalog.snapshot() == before


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"title": (None, "t"), "category": (None, "Drama")}, {"file": ["No file was uploaded."]}),
        (
            {"file": ("a.mp4", b"x", "video/mp4")},
            {"title": ["This field is required."], "category": ["This field is required."]},
        ),
        (
            {"file": ("a.mp4", b"x", "video/mp4"), "title": (None, "t"), "bogus": (None, "1")},
            {
                "category": ["This field is required."],
                "detail": ["Unexpected form field(s): bogus."],
            },
        ),
        *(
            (
                {
                    "video_file": ("a.mp4", b"x" * size, "video/mp4"),
                    "title": (None, "t"),
                    "category": (None, "Drama"),
                },
                {"video_file": ["Send the video in the field 'file'."]},
            )
            for size in (10, 100_000)
        ),
    ],
    ids=[
        "missing file",
        "missing title and category",
        "unexpected field",
        "small file in another field",
        "large file in another field",
    ],
)
async def test_incomplete_form_is_refused_with_field_errors(catalog, files, expected) -> None:
    before = await catalog.snapshot()
    response = await catalog.admin.post("/api/admin/videos/upload/", files=files)
    assert response.status_code == 400, response.text
    assert response.json() == expected
    assert await catalog.snapshot() == before


async def test_non_multipart_and_truncated_bodies_are_refused(catalog) -> None:
    before = await catalog.snapshot()
    as_json = await catalog.admin.post("/api/admin/videos/upload/", json={"title": "x"})
    assert as_json.status_code == 415
    assert as_json.json() == {"detail": "Send the upload as multipart/form-data."}
    truncated = await catalog.admin.post(
        "/api/admin/videos/upload/",
        content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
        + catalog.clip.read_bytes(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert truncated.status_code == 400
    assert truncated.json() == {
        "detail": "The upload ended before the multipart body was complete."
    }
    assert await catalog.snapshot() == before


async def test_declared_oversized_body_is_refused_before_reading(catalog) -> None:
    before = await catalog.snapshot()
    response = await catalog.admin.post(
        "/api/admin/videos/upload/",
        content=b"",
        headers={
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(10 * MAX_UPLOAD_BYTES),
        },
    )
    assert response.status_code == 413
    assert await catalog.snapshot() == before


async def test_upload_needs_an_admin_and_the_csrf_header(
    catalog, viewer: httpx.AsyncClient, anonymous: httpx.AsyncClient, token_issuer
) -> None:
    before = await catalog.snapshot()
    assert (await catalog.upload(client=viewer)).status_code == 403
    assert (await catalog.upload(client=anonymous)).status_code == 401
    no_csrf = await catalog.admin.post(
        "/api/admin/videos/upload/",
        data={"title": "t", "category": "Drama"},
        files={"file": ("a.mp4", catalog.clip.read_bytes(), "video/mp4")},
        headers={"X-CSRFToken": ""},
    )
    assert no_csrf.status_code == 403
    assert no_csrf.json() == {"detail": "CSRF token missing or incorrect."}
    assert await catalog.snapshot() == before
    # An API client with a Bearer token needs no CSRF header.
    bearer = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=catalog.app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token_issuer.token(user_id=9, is_admin=True)}"},
    )
    async with bearer:
        assert (await catalog.upload(client=bearer)).status_code == 202
