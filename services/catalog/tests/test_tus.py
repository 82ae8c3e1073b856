"""Resumable uploads (tus 1.0): a file in chunks becomes one video with its event only once
complete and probed; every bad input gets a clear error and leaves nothing behind; expired
uploads and crashed uploads' leftovers are swept; only admins get in."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from datetime import timedelta

import httpx
import pytest

from videoflix_catalog.tus_store import (
    TusStore,
    run_upload_sweeper,
    sweep_abandoned_uploads,
)
from videoflix_catalog.uploads import INCOMING_DIR
from videoflix_shared.events import VideoUploaded
from videoflix_testing.plugin import wait_until_async

from .conftest import MAX_UPLOAD_BYTES

TUS = "/api/admin/uploads/"
V = {"Tus-Resumable": "1.0.0"}


def metadata_header(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def video_fields(default_title: str, **overrides: str | None) -> dict[str, str]:
    fields: dict[str, str | None] = {
        "title": default_title,
        "description": "Sent in chunks.",
        "category": "Drama",
        "publish_when_ready": "false",
        "filename": "chunked.mp4",
        "filetype": "video/mp4",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


async def create(
    client: httpx.AsyncClient, length: int, *, metadata: str | None = None, **headers: str
) -> httpx.Response:
    sent = {**V, "Upload-Length": str(length), **headers}
    if metadata is not None:
        sent["Upload-Metadata"] = metadata
    return await client.post(TUS, headers=sent)


async def patch(
    client: httpx.AsyncClient, url: str, offset: int, chunk: bytes, **headers: str
) -> httpx.Response:
    return await client.patch(
        url,
        content=chunk,
        headers={
            **V,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            **headers,
        },
    )


async def upload_in_chunks(
    client: httpx.AsyncClient, data: bytes, title: str, *, chunk_size: int = 1000, **fields: str
) -> tuple[str, httpx.Response]:
    created = await create(
        client, len(data), metadata=metadata_header(**video_fields(title, **fields))
    )
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    offset = 0
    response = created
    while offset < len(data):
        response = await patch(client, url, offset, data[offset : offset + chunk_size])
        if response.status_code != 204:
            return url, response
        offset = int(response.headers["Upload-Offset"])
    return url, response


async def new_upload(catalog, length: int, title: str | None = None) -> str:
    """A created upload's URL (nothing sent yet)."""
    metadata = metadata_header(**video_fields(title or catalog.unique_title()))
    created = await create(catalog.admin, length, metadata=metadata)
    assert created.status_code == 201, created.text
    return created.headers["Location"]


def store(catalog) -> TusStore:
    return catalog.app.state.tus_store


# -- the happy path ------------------------------------------------------------------------


async def test_options_says_what_the_server_supports(catalog) -> None:
    response = await catalog.admin.options(TUS)
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {
        "creation",
        "expiration",
        "termination",
        "checksum",
    }
    assert response.headers["Tus-Max-Size"] == str(MAX_UPLOAD_BYTES)
    assert "sha1" in response.headers["Tus-Checksum-Algorithm"].split(",")


async def test_chunked_upload_becomes_one_video_with_its_event_once_complete(catalog) -> None:
    data = catalog.clip.read_bytes()
    title = catalog.unique_title("Tus")
    created = await create(
        catalog.admin, len(data), metadata=metadata_header(**video_fields(title))
    )
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    assert url.startswith(TUS)
    assert created.headers["Tus-Resumable"] == "1.0.0"
    assert created.headers["Upload-Expires"].endswith("GMT")

    before = await catalog.snapshot()
    first = await patch(catalog.admin, url, 0, data[:1000])
    assert first.status_code == 204, first.text
    assert first.headers["Upload-Offset"] == "1000"
    assert "Video-Id" not in first.headers
    head = await catalog.admin.head(url, headers=V)
    assert (head.status_code, head.headers["Upload-Offset"]) == (200, "1000")
    assert head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Cache-Control"] == "no-store"
    assert (await catalog.snapshot()).videos == before.videos  # no video before the last byte
    listed = (await catalog.admin.get(TUS)).json()
    assert [u["offset"] for u in listed if u["location"] == url] == [1000]

    last = await patch(catalog.admin, url, 1000, data[1000:])
    assert last.status_code == 204, last.text
    assert last.headers["Upload-Offset"] == str(len(data))
    video_id = int(last.headers["Video-Id"])
    video = await catalog.state(video_id)
    assert (video["title"], video["category"], video["published"]) == (title, "Drama", False)
    assert video["publish_when_ready"] is False
    assert video["source_size"] == len(data)
    source = catalog.settings.media_root / f"uploads/{video_id}/source.mp4"
    assert hashlib.sha256(source.read_bytes()).digest() == hashlib.sha256(data).digest()
    event = await catalog.wait_for_event(VideoUploaded.subject, lambda e: e.video_id == video_id)
    assert event.source_path == f"uploads/{video_id}/source.mp4"

    # A client resuming late learns that it is done, and which video it became.
    head = await catalog.admin.head(url, headers=V)
    assert head.headers["Upload-Offset"] == str(len(data))
    assert head.headers["Video-Id"] == str(video_id)
    assert url not in [u["location"] for u in (await catalog.admin.get(TUS)).json()]
    assert not store(catalog).data_path(url.rstrip("/").rsplit("/", 1)[1]).exists()


async def test_upload_with_checksums_and_resume_after_head(catalog) -> None:
    data = catalog.clip.read_bytes()
    title = catalog.unique_title("Checksum")
    url = await new_upload(catalog, len(data), title)
    half = len(data) // 2
    digest = base64.b64encode(hashlib.sha1(data[:half], usedforsecurity=False).digest()).decode()
    ok = await patch(catalog.admin, url, 0, data[:half], **{"Upload-Checksum": f"sha1 {digest}"})
    assert ok.status_code == 204, ok.text
    offset = int((await catalog.admin.head(url, headers=V)).headers["Upload-Offset"])
    assert offset == half
    digest = base64.b64encode(hashlib.sha256(data[half:]).digest()).decode()
    done = await patch(
        catalog.admin, url, offset, data[half:], **{"Upload-Checksum": f"sha256 {digest}"}
    )
    assert done.status_code == 204, done.text
    assert (await catalog.state(int(done.headers["Video-Id"])))["title"] == title


async def test_head_finishes_an_upload_whose_bytes_all_arrived_before_a_crash(catalog) -> None:
    """catalog died after storing the last byte but before the video existed."""
    data = catalog.clip.read_bytes()
    title = catalog.unique_title("Crashed")
    url = await new_upload(catalog, len(data), title)
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    tus = store(catalog)
    tus.data_path(upload_id).write_bytes(data)
    upload = tus.load(upload_id)
    upload.offset = len(data)
    tus.save(upload)

    head = await catalog.admin.head(url, headers=V)
    assert head.status_code == 200
    assert (await catalog.state(int(head.headers["Video-Id"])))["title"] == title


# -- bad input: a clear error, nothing left behind -----------------------------------------


@pytest.mark.parametrize(
    ("fields", "status", "key"),
    [
        ({"title": None}, 400, "title"),
        ({"title": "   "}, 400, "title"),
        ({"title": "x" * 201}, 400, "title"),
        ({"category": "No such category"}, 400, "category"),
        ({"publish_when_ready": "perhaps"}, 400, "publish_when_ready"),
        ({"rating": "PG"}, 400, "detail"),
        ({"description": "bad\x00text"}, 400, "description"),
    ],
)
async def test_bad_metadata_is_refused_before_any_byte(catalog, fields, status, key) -> None:
    before = await catalog.snapshot()
    listed = len((await catalog.admin.get(TUS)).json())
    metadata = metadata_header(**video_fields(catalog.unique_title(), **fields))
    response = await create(catalog.admin, 1000, metadata=metadata)
    assert response.status_code == status, response.text
    assert key in response.json()
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert await catalog.snapshot() == before
    assert len((await catalog.admin.get(TUS)).json()) == listed


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Upload-Metadata": "title not-base64!"}, 400),
        ({"Upload-Metadata": "title a b c"}, 400),
        ({"Upload-Metadata": "title dGl0bGU=,title dGl0bGU="}, 400),
        ({"Upload-Length": "0"}, 400),
        ({"Upload-Length": "-5"}, 400),
        ({"Upload-Length": str(MAX_UPLOAD_BYTES + 1)}, 413),
        ({"Upload-Defer-Length": "1"}, 400),
        ({"Tus-Resumable": "0.2.2"}, 412),
    ],
)
async def test_bad_creation_headers_are_refused(catalog, headers, status) -> None:
    before = await catalog.snapshot()
    sent = {
        **V,
        "Upload-Length": "1000",
        "Upload-Metadata": metadata_header(**video_fields(catalog.unique_title())),
        **headers,
    }
    response = await catalog.admin.post(TUS, headers=sent)
    assert response.status_code == status, response.text
    assert response.json(), "a JSON body says what is wrong"
    assert await catalog.snapshot() == before


async def test_wrong_offset_is_a_conflict_that_changes_nothing(catalog) -> None:
    data = catalog.clip.read_bytes()
    created = await create(
        catalog.admin, len(data), metadata=metadata_header(**video_fields(catalog.unique_title()))
    )
    url = created.headers["Location"]
    assert (await patch(catalog.admin, url, 0, data[:500])).status_code == 204
    for offset in (0, 499, 501):
        response = await patch(catalog.admin, url, offset, data[offset : offset + 100])
        assert response.status_code == 409, response.text
        assert response.headers["Upload-Offset"] == "500"
        assert "offset" in response.json()["detail"]
    assert (await catalog.admin.head(url, headers=V)).headers["Upload-Offset"] == "500"
    assert (await catalog.admin.delete(url, headers=V)).status_code == 204


async def test_checksum_mismatch_is_460_and_the_chunk_is_dropped(catalog) -> None:
    data = catalog.clip.read_bytes()
    created = await create(
        catalog.admin, len(data), metadata=metadata_header(**video_fields(catalog.unique_title()))
    )
    url = created.headers["Location"]
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    wrong = base64.b64encode(hashlib.sha1(b"other bytes", usedforsecurity=False).digest()).decode()
    response = await patch(
        catalog.admin, url, 0, data[:800], **{"Upload-Checksum": f"sha1 {wrong}"}
    )
    assert response.status_code == 460, response.text
    assert "checksum" in response.json()["detail"]
    assert (await catalog.admin.head(url, headers=V)).headers["Upload-Offset"] == "0"
    assert store(catalog).data_path(upload_id).stat().st_size == 0
    unknown = await patch(catalog.admin, url, 0, data[:800], **{"Upload-Checksum": "crc32 AAAA"})
    assert unknown.status_code == 400
    assert "sha1" in unknown.headers["Tus-Checksum-Algorithm"]
    assert (await catalog.admin.delete(url, headers=V)).status_code == 204


async def test_chunk_past_the_declared_length_is_refused(catalog) -> None:
    url = await new_upload(catalog, 100)
    response = await patch(catalog.admin, url, 0, b"x" * 101)
    assert response.status_code == 413, response.text
    assert (await catalog.admin.head(url, headers=V)).headers["Upload-Offset"] == "0"
    assert (await catalog.admin.delete(url, headers=V)).status_code == 204


async def test_patch_needs_the_offset_content_type_and_version(catalog) -> None:
    url = await new_upload(catalog, 100)
    wrong_type = await patch(catalog.admin, url, 0, b"x", **{"Content-Type": "video/mp4"})
    assert wrong_type.status_code == 415
    no_version = await catalog.admin.patch(
        url,
        content=b"x",
        headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert no_version.status_code == 412
    assert no_version.headers["Tus-Version"] == "1.0.0"
    no_offset = await patch(catalog.admin, url, 0, b"x", **{"Upload-Offset": ""})
    assert no_offset.status_code == 400
    assert (await catalog.admin.delete(url, headers=V)).status_code == 204


async def test_a_file_that_is_no_video_is_refused_at_completion_and_removed(catalog) -> None:
    before = await catalog.snapshot()
    data = os.urandom(5000)
    url, response = await upload_in_chunks(catalog.admin, data, catalog.unique_title("Noise"))
    assert response.status_code == 415, response.text
    assert "file" in response.json()
    assert (await catalog.admin.head(url, headers=V)).status_code == 404
    assert await catalog.snapshot() == before


async def test_still_image_is_refused_at_completion(catalog, still_image) -> None:
    before = await catalog.snapshot()
    _, response = await upload_in_chunks(
        catalog.admin, still_image.read_bytes(), catalog.unique_title("Poster")
    )
    assert response.status_code == 415, response.text
    assert "still image" in response.json()["file"][0]
    assert await catalog.snapshot() == before


async def test_unknown_upload_is_404(catalog) -> None:
    for url in (f"{TUS}{'0' * 32}/", f"{TUS}../../etc/", f"{TUS}not-an-id/"):
        assert (await catalog.admin.head(url, headers=V)).status_code == 404
        assert (await patch(catalog.admin, url, 0, b"x")).status_code == 404
        assert (await catalog.admin.delete(url, headers=V)).status_code == 404


async def test_second_writer_is_told_to_retry(catalog) -> None:
    url = await new_upload(catalog, 100)
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    with store(catalog).writer(upload_id):
        assert (await patch(catalog.admin, url, 0, b"x" * 10)).status_code == 423
        assert (await catalog.admin.delete(url, headers=V)).status_code == 423
    assert (await catalog.admin.delete(url, headers=V)).status_code == 204


# -- discard, expiry, leftovers ------------------------------------------------------------


async def test_discard_deletes_the_bytes_and_the_listing_row(catalog) -> None:
    url = await new_upload(catalog, 5000)
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    await patch(catalog.admin, url, 0, b"x" * 1000)
    assert url in [u["location"] for u in (await catalog.admin.get(TUS)).json()]
    response = await catalog.admin.delete(url, headers=V)
    assert response.status_code == 204
    assert (await catalog.admin.head(url, headers=V)).status_code == 404
    assert not store(catalog).data_path(upload_id).exists()
    assert not store(catalog).record_path(upload_id).exists()
    assert url not in [u["location"] for u in (await catalog.admin.get(TUS)).json()]


async def test_expired_upload_is_gone_and_the_cleanup_loop_deletes_its_bytes(catalog) -> None:
    url = await new_upload(catalog, 5000)
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    await patch(catalog.admin, url, 0, b"x" * 1000)
    tus = store(catalog)
    upload = tus.load(upload_id)
    upload.expires_at -= timedelta(days=2)
    tus.save(upload)

    assert (await catalog.admin.head(url, headers=V)).status_code == 410
    assert (await patch(catalog.admin, url, 1000, b"x")).status_code == 410
    assert url not in [u["location"] for u in (await catalog.admin.get(TUS)).json()]

    stop = asyncio.Event()
    loop = asyncio.create_task(
        run_upload_sweeper(tus, interval_seconds=0.05, grace=timedelta(hours=1), stop=stop)
    )
    try:
        await wait_until_async(
            lambda: not tus.data_path(upload_id).exists(), timeout=10, what="the sweep"
        )
    finally:
        stop.set()
        await loop
    assert not tus.data_path(upload_id).exists()
    assert not tus.record_path(upload_id).exists()
    assert (await catalog.admin.head(url, headers=V)).status_code == 404


async def test_cleanup_removes_a_crashed_single_request_uploads_part_file(catalog) -> None:
    incoming = catalog.settings.media_root / INCOMING_DIR
    incoming.mkdir(parents=True, exist_ok=True)
    crashed = incoming / "0123456789abcdef0123456789abcdef.part"
    crashed.write_bytes(b"half a film")
    hour_ago = time.time() - 3700
    os.utime(crashed, (hour_ago, hour_ago))
    in_progress = incoming / "fedcba9876543210fedcba9876543210.part"
    in_progress.write_bytes(b"being written")
    try:
        result = await asyncio.to_thread(
            sweep_abandoned_uploads,
            store(catalog),
            grace=timedelta(hours=1),
        )
        assert not crashed.exists()
        assert in_progress.exists()
        assert f"{INCOMING_DIR}/{crashed.name}" in result.leftovers
    finally:
        in_progress.unlink(missing_ok=True)


# -- who may ---------------------------------------------------------------------------


def tus_requests(url: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    meta = metadata_header(title="t", category="Drama")
    return [
        ("OPTIONS", TUS, {}, b""),
        ("GET", TUS, {}, b""),
        ("POST", TUS, {**V, "Upload-Length": "10", "Upload-Metadata": meta}, b""),
        ("HEAD", url, V, b""),
        (
            "PATCH",
            url,
            {**V, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
            b"0123456789",
        ),
        ("DELETE", url, V, b""),
    ]


async def test_a_normal_user_gets_403_and_anonymous_401_on_every_tus_endpoint(
    catalog, viewer, anonymous
) -> None:
    url = await new_upload(catalog, 10)
    for method, path, headers, body in tus_requests(url):
        as_viewer = await viewer.request(method, path, headers=headers, content=body)
        assert as_viewer.status_code == 403, (method, as_viewer.text)
        as_nobody = await anonymous.request(method, path, headers=headers, content=body)
        assert as_nobody.status_code == 401, (method, as_nobody.text)
    assert (await catalog.admin.head(url, headers=V)).headers["Upload-Offset"] == "0"
    assert (await catalog.admin.delete(url, headers=V)).status_code == 204


async def test_cookie_admin_without_csrf_header_cannot_write(catalog) -> None:
    url = await new_upload(catalog, 10)
    cookies = dict(catalog.admin.cookies)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=catalog.app),
        base_url="http://testserver",
        cookies=cookies,
    ) as no_csrf:
        for method, path, headers, body in tus_requests(url):
            if method in ("POST", "PATCH", "DELETE"):
                response = await no_csrf.request(method, path, headers=headers, content=body)
                assert response.status_code == 403, (method, response.text)
    assert (await catalog.admin.delete(url, headers=V)).status_code == 204
