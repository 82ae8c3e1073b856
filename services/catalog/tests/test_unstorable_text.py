"""Text PostgreSQL cannot hold (NUL) or UTF-8 cannot encode (a lone surrogate) is refused
with a 400 naming the field, in every text input of the catalog, and changes nothing."""

from __future__ import annotations

import json

import pytest

from videoflix_shared.text import UNSTORABLE_TEXT

UNSTORABLE = {"NUL": "a\u0000b", "lone surrogate": "a\ud800b", "low surrogate": "\udfff"}


def raw_json(body: dict) -> bytes:
    """JSON with \\uXXXX escapes, as a client would send a lone surrogate."""
    return json.dumps(body, ensure_ascii=True).encode()


@pytest.mark.parametrize("text", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
async def test_category_names_that_cannot_be_stored_are_refused(catalog, text: str) -> None:
    before = (await catalog.admin.get("/api/admin/categories/")).json()
    created = await catalog.admin.post(
        "/api/admin/categories/",
        content=raw_json({"name": text}),
        headers={"Content-Type": "application/json"},
    )
    assert created.status_code == 400, created.text
    assert created.json() == {"name": [UNSTORABLE_TEXT]}
    renamed = await catalog.admin.patch(
        f"/api/admin/categories/{before[0]['id']}/",
        content=raw_json({"name": text}),
        headers={"Content-Type": "application/json"},
    )
    assert renamed.status_code == 400, renamed.text
    assert (await catalog.admin.get("/api/admin/categories/")).json() == before


@pytest.mark.parametrize("field", ["title", "description", "category"])
@pytest.mark.parametrize("text", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
async def test_video_edits_with_unstorable_text_are_refused(catalog, field: str, text: str) -> None:
    video = await catalog.upload_ok()
    response = await catalog.admin.patch(
        f"/api/admin/videos/{video['id']}/",
        content=raw_json({field: text}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json() == {field: [UNSTORABLE_TEXT]}
    after = await catalog.state(video["id"])
    assert after[field] == video[field]


async def test_raw_utf8_encoded_surrogate_in_a_json_body_is_refused(catalog) -> None:
    video = await catalog.upload_ok()
    response = await catalog.admin.patch(
        f"/api/admin/videos/{video['id']}/",
        content=b'{"title": "a\xed\xa0\x80b"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert (await catalog.state(video["id"]))["title"] == video["title"]


@pytest.mark.parametrize("field", ["title", "description", "category"])
async def test_upload_form_fields_with_nul_are_refused_and_change_nothing(
    catalog, field: str
) -> None:
    before = await catalog.snapshot()
    response = await catalog.upload(**{field: "bad\u0000text"})
    assert response.status_code == 400, response.text
    assert response.json() == {field: [UNSTORABLE_TEXT]}
    assert await catalog.snapshot() == before


async def test_nul_in_a_query_string_or_path_is_refused(catalog) -> None:
    listed = await catalog.admin.get("/api/admin/videos/", params={"q": "a\u0000"})
    assert listed.status_code == 400
    assert listed.json() == {"detail": UNSTORABLE_TEXT}
    path = await catalog.admin.get("/api/admin/videos/1%00/")
    assert path.status_code == 400
    assert path.json() == {"detail": UNSTORABLE_TEXT}
