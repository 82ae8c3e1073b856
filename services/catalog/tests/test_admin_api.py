"""Admin API: listing, reading, editing, deleting and re-transcoding videos, categories,
who may call it, and the OpenAPI document."""

from __future__ import annotations

import httpx
import pytest

from videoflix_shared.events import VideoDeleted, VideoUploaded


async def test_admin_lists_every_video_with_status_progress_and_reason(catalog) -> None:
    video = await catalog.upload_ok()
    response = await catalog.admin.get("/api/admin/videos/")
    assert response.status_code == 200
    row = next(v for v in response.json() if v["id"] == video["id"])
    assert row["status"] == "uploaded"
    assert row["progress"] == 0
    assert row["failure_reason"] is None
    assert row["thumbnail_url"] is None


async def test_unknown_video_is_404_json(catalog) -> None:
    for method in ("GET", "DELETE"):
        response = await catalog.admin.request(method, "/api/admin/videos/99999999/")
        assert response.status_code == 404
        assert response.json() == {"detail": "Video not found."}
    patched = await catalog.admin.patch("/api/admin/videos/99999999/", json={"title": "x"})
    assert patched.status_code == 404
    bad_id = await catalog.admin.get("/api/admin/videos/abc/")
    assert bad_id.status_code == 400


async def test_update_changes_metadata_and_publication(catalog) -> None:
    video = await catalog.upload_ok()
    response = await catalog.admin.patch(
        f"/api/admin/videos/{video['id']}/",
        json={"title": "  New title ", "description": "Longer text", "category": "Romance"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["description"], body["category"]) == (
        "New title",
        "Longer text",
        "Romance",
    )
    assert body["published"] is False
    published = await catalog.admin.patch(
        f"/api/admin/videos/{video['id']}/", json={"published": True}
    )
    assert published.json()["published"] is True
    assert published.json()["title"] == "New title"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": 123}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": ""}, "title"),
        ({"published": "maybe"}, "published"),
        ({"category": "Western"}, "category"),
        ({"category": 99999}, "category"),
        ({"description": ["a"]}, "description"),
        ({"views": 5}, "views"),
    ],
)
async def test_bad_update_is_refused_and_changes_nothing(catalog, body: dict, field: str) -> None:
    video = await catalog.upload_ok()
    response = await catalog.admin.patch(f"/api/admin/videos/{video['id']}/", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()
    after = await catalog.state(video["id"])
    assert {k: after[k] for k in ("title", "description", "category", "published")} == {
        k: video[k] for k in ("title", "description", "category", "published")
    }


async def test_malformed_json_body_is_a_400(catalog) -> None:
    video = await catalog.upload_ok()
    response = await catalog.admin.patch(
        f"/api/admin/videos/{video['id']}/",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Malformed JSON body."}


async def test_delete_removes_the_video_and_announces_it(catalog) -> None:
    video = await catalog.upload_ok()
    response = await catalog.admin.delete(f"/api/admin/videos/{video['id']}/")
    assert response.status_code == 204
    assert (await catalog.admin.get(f"/api/admin/videos/{video['id']}/")).status_code == 404
    await catalog.wait_for_event(VideoDeleted.subject, lambda e: e.video_id == video["id"])


async def test_retranscode_starts_a_new_generation(catalog) -> None:
    video = await catalog.make_ready()
    response = await catalog.admin.post(f"/api/admin/videos/{video['id']}/retranscode/")
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["status"], body["generation"], body["progress"]) == ("uploaded", 2, 0)
    event = await catalog.wait_for_event(
        VideoUploaded.subject, lambda e: e.video_id == video["id"] and e.generation == 2
    )
    assert event.source_path == f"uploads/{video['id']}/source.mp4"
    # The new generation completes like the first one did.
    await catalog.bus.publish(catalog.completed_event(video["id"], generation=2))
    await catalog.wait_for(video["id"], lambda v: v["status"] == "ready", "ready again")


async def test_retranscode_without_source_file_is_a_409(catalog) -> None:
    video = await catalog.upload_ok()
    (catalog.settings.media_root / f"uploads/{video['id']}/source.mp4").unlink()
    response = await catalog.admin.post(f"/api/admin/videos/{video['id']}/retranscode/")
    assert response.status_code == 409
    assert response.json() == {"detail": "The source file of this video is gone; upload it again."}
    assert (await catalog.state(video["id"]))["generation"] == 1


async def test_categories_are_seeded_and_managed(catalog) -> None:
    admin = catalog.admin
    names = {c["name"] for c in (await admin.get("/api/admin/categories/")).json()}
    assert {"Drama", "Action", "Comedy", "Documentary", "Romance"} <= names

    name = catalog.unique_title("Kids")
    created = await admin.post("/api/admin/categories/", json={"name": name})
    assert created.status_code == 201
    category = created.json()
    assert category["name"] == name
    assert category["video_count"] == 0

    duplicate = await admin.post("/api/admin/categories/", json={"name": name.upper()})
    assert duplicate.status_code == 400
    assert duplicate.json() == {"name": ["A category with this name already exists."]}
    too_long = await admin.post("/api/admin/categories/", json={"name": "x" * 61})
    assert too_long.status_code == 400
    assert "name" in too_long.json()

    video = await catalog.upload_ok(category=name)
    in_use = await admin.delete(f"/api/admin/categories/{category['id']}/")
    assert in_use.status_code == 409
    listed = {c["id"]: c for c in (await admin.get("/api/admin/categories/")).json()}
    assert listed[category["id"]]["video_count"] == 1

    await admin.delete(f"/api/admin/videos/{video['id']}/")
    assert (await admin.delete(f"/api/admin/categories/{category['id']}/")).status_code == 204
    assert (await admin.delete(f"/api/admin/categories/{category['id']}/")).status_code == 404
    missing = await admin.patch("/api/admin/categories/99999999/", json={"name": "Nope"})
    assert missing.status_code == 404


async def test_admin_api_refuses_non_admins_and_cookie_writes_without_csrf(
    catalog, viewer: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    video = await catalog.upload_ok()
    path = f"/api/admin/videos/{video['id']}/"
    for client, status in ((viewer, 403), (anonymous, 401)):
        assert (await client.get("/api/admin/videos/")).status_code == status
        assert (await client.patch(path, json={"published": True})).status_code == status
        assert (await client.delete(path)).status_code == status
        assert (await client.post("/api/admin/categories/", json={"name": "X"})).status_code == (
            status
        )
    assert (await viewer.get("/api/admin/videos/")).json() == {
        "detail": "Administrator rights required."
    }
    no_csrf = await catalog.admin.delete(path, headers={"X-CSRFToken": "wrong"})
    assert no_csrf.status_code == 403
    assert (await catalog.state(video["id"]))["published"] is False


async def test_every_catalog_endpoint_is_in_openapi(anonymous: httpx.AsyncClient) -> None:
    schema = (await anonymous.get("/openapi.json")).json()
    paths = schema["paths"]
    assert {
        "/api/video/",
        "/api/admin/videos/",
        "/api/admin/videos/upload/",
        "/api/admin/videos/{video_id}/",
        "/api/admin/videos/{video_id}/retranscode/",
        "/api/admin/categories/",
        "/api/admin/categories/{category_id}/",
        "/admin/",
    } <= set(paths)
    upload = paths["/api/admin/videos/upload/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"202", "413", "415"} <= set(upload["responses"])


async def test_admin_page_is_served_with_stable_element_ids(anonymous: httpx.AsyncClient) -> None:
    for path in ("/admin/", "/admin"):
        response = await anonymous.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
    html = response.text
    for element_id in ("login-email", "login-password", "upload-file", "upload-progress"):
        assert f'id="{element_id}"' in html
    script = await anonymous.get("/admin/static/admin.js")
    assert script.status_code == 200
    assert "X-CSRFToken" in script.text
