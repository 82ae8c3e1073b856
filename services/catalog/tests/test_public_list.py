"""GET /api/video/: the contract's fields, who may see it, and the Redis cache that must
never serve a stale list after a change."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from videoflix_catalog.app import create_app
from videoflix_testing.tokens import TestTokenIssuer

CONTRACT_FIELDS = {"id", "created_at", "title", "description", "thumbnail_url", "category"}


async def listed(client: httpx.AsyncClient) -> list[dict]:
    response = await client.get("/api/video/")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


async def test_list_requires_authentication(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/api/video/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    bad = await anonymous.get("/api/video/", headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401
    assert bad.json() == {"detail": "Invalid or expired access token."}


async def test_list_shows_only_published_ready_videos_newest_first(catalog, viewer) -> None:
    older = await catalog.make_ready(title=catalog.unique_title("Older"))
    newer = await catalog.make_ready(title=catalog.unique_title("Newer"), category="Comedy")
    unpublished = await catalog.make_ready(publish=False)
    waiting = await catalog.upload_ok()
    await catalog.admin.patch(f"/api/admin/videos/{waiting['id']}/", json={"published": True})

    items = await listed(viewer)
    ids = [item["id"] for item in items]
    assert unpublished["id"] not in ids
    assert waiting["id"] not in ids
    assert ids.index(newer["id"]) < ids.index(older["id"])
    item = next(i for i in items if i["id"] == newer["id"])
    assert set(item) == CONTRACT_FIELDS
    assert item["title"] == newer["title"]
    assert item["description"] == "A generated test pattern."
    assert item["category"] == "Comedy"
    assert item["created_at"] == newer["created_at"].replace("Z", "+00:00")
    assert item["thumbnail_url"] == (
        f"http://testserver/api/video/{newer['id']}/thumbnail.jpg?v={newer['generation']}"
    )
    created = [i["created_at"] for i in items]
    assert created == sorted(created, reverse=True)


async def test_list_accepts_bearer_token_and_path_without_trailing_slash(
    catalog, anonymous, token_issuer: TestTokenIssuer
) -> None:
    video = await catalog.make_ready()
    headers = {"Authorization": f"Bearer {token_issuer.token(user_id=3)}"}
    response = await anonymous.get("/api/video", headers=headers)
    assert response.status_code == 200
    assert video["id"] in [i["id"] for i in response.json()]


async def test_publishing_is_visible_on_the_very_next_request(catalog, viewer) -> None:
    video = await catalog.make_ready(publish=False)
    assert video["id"] not in [i["id"] for i in await listed(viewer)]  # warms the cache
    await catalog.admin.patch(f"/api/admin/videos/{video['id']}/", json={"published": True})
    assert video["id"] in [i["id"] for i in await listed(viewer)]
    await catalog.admin.patch(f"/api/admin/videos/{video['id']}/", json={"title": "Renamed"})
    assert next(i for i in await listed(viewer) if i["id"] == video["id"])["title"] == "Renamed"
    await catalog.admin.patch(f"/api/admin/videos/{video['id']}/", json={"published": False})
    assert video["id"] not in [i["id"] for i in await listed(viewer)]


async def test_transcoding_completion_and_deletion_are_visible_on_the_next_request(
    catalog, viewer
) -> None:
    video = await catalog.upload_ok()
    await catalog.admin.patch(f"/api/admin/videos/{video['id']}/", json={"published": True})
    assert video["id"] not in [i["id"] for i in await listed(viewer)]
    await catalog.bus.publish(catalog.completed_event(video["id"]))
    await catalog.wait_for(video["id"], lambda v: v["status"] == "ready", "ready")
    assert video["id"] in [i["id"] for i in await listed(viewer)]
    assert (await catalog.admin.delete(f"/api/admin/videos/{video['id']}/")).status_code == 204
    assert video["id"] not in [i["id"] for i in await listed(viewer)]


async def test_category_rename_is_visible_on_the_next_request(catalog, viewer) -> None:
    name = catalog.unique_title("Genre")
    created = await catalog.admin.post("/api/admin/categories/", json={"name": name})
    assert created.status_code == 201, created.text
    video = await catalog.make_ready(category=name)
    assert next(i for i in await listed(viewer) if i["id"] == video["id"])["category"] == name
    category_id = created.json()["id"]
    renamed = await catalog.admin.patch(
        f"/api/admin/categories/{category_id}/", json={"name": name + " II"}
    )
    assert renamed.status_code == 200, renamed.text
    item = next(i for i in await listed(viewer) if i["id"] == video["id"])
    assert item["category"] == name + " II"


async def test_list_is_served_from_the_redis_cache_between_changes(catalog, viewer) -> None:
    video = await catalog.make_ready()
    first = await listed(viewer)
    assert video["id"] in [i["id"] for i in first]
    redis = catalog.app.state.redis
    assert await redis.exists(catalog.app.state.list_cache.data_key)
    # A change behind the service's back (no invalidation) is not seen: the cache answers...
    await catalog.execute("UPDATE video SET title = 'sneaky' WHERE id = :id", id=video["id"])
    assert await listed(viewer) == first
    # ...until any change through the service invalidates it.
    await catalog.admin.patch(f"/api/admin/videos/{video['id']}/", json={"description": "new"})
    item = next(i for i in await listed(viewer) if i["id"] == video["id"])
    assert (item["title"], item["description"]) == ("sneaky", "new")


async def test_list_is_built_from_the_database_while_redis_is_down(
    catalog, token_issuer: TestTokenIssuer
) -> None:
    video = await catalog.make_ready()
    settings = catalog.settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    app: FastAPI = create_app(settings)
    cookies = token_issuer.cookies(user_id=4)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", cookies=cookies
        ) as client:
            response = await client.get("/api/video/")
            assert response.status_code == 200, response.text
            assert video["id"] in [i["id"] for i in response.json()]
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["redis"].startswith("failing")
