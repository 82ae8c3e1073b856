"""Through the gateway: internal endpoints stay internal (issue 14, item 6) and text no
service can store is a 400 that changes nothing (item 5, text fields)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.helpers import (
    ADMIN_VIDEOS,
    Api,
    PublishedVideo,
    Stack,
    User,
    assert_error_body,
)

# /jobs: the transcoder dispatcher's job list, on its health port only (admins see it
# through catalog's /api/admin/transcoding/jobs/)
INTERNAL_ENDPOINTS = ("/metrics", "/readyz", "/docs", "/openapi.json", "/redoc", "/jobs")


TRANSCODING_JOBS = "/api/admin/transcoding/jobs/"


def _get_raw(stack: Stack, raw_path: str) -> httpx.Response:
    """GET the path exactly as written (no client-side `..` or `//` normalisation)."""
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        request = client.build_request("GET", "/")
        request.url = request.url.copy_with(raw_path=raw_path.encode())
        return client.send(request)


@pytest.mark.parametrize(
    "path",
    [
        *(
            f"{prefix}{endpoint}"
            for prefix in ("", "/svc/auth", "/svc/catalog", "/svc/streaming", "/api")
            for endpoint in INTERNAL_ENDPOINTS
        ),
        "/api/admin/../../metrics",
        "/api/admin/%2e%2e/%2e%2e/openapi.json",
        "/api/video/1/../../../readyz",
    ],
)
def test_internal_endpoints_are_not_served_through_the_gateway(stack: Stack, path: str) -> None:
    response = _get_raw(stack, path)
    assert response.status_code in (400, 404), (path, response.status_code)
    assert_error_body(response, response.status_code)
    assert "http_requests_total" not in response.text
    assert "openapi" not in response.text.lower()
    assert "checks" not in response.text


def test_public_liveness_checks_stay_reachable(stack: Stack) -> None:
    for service in ("auth", "catalog", "streaming"):
        response = httpx.get(f"{stack.base_url}/svc/{service}/healthz", timeout=10)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok", "service": service}


def test_the_transcode_job_list_reaches_admins_only_through_catalog(
    stack: Stack, admin_api: Api, api: Api, active_user: User
) -> None:
    listing = admin_api.get(TRANSCODING_JOBS)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["queue"].endswith("arq:queue")
    assert {"queued", "running", "failed", "generated_at"} <= set(body)
    assert_error_body(httpx.get(f"{stack.base_url}{TRANSCODING_JOBS}", timeout=10), 401)
    api.login_ok(active_user.email, active_user.password)
    assert_error_body(api.get(TRANSCODING_JOBS), 403)


UNSTORABLE = ["a\u0000b", "a\ud800b"]


@pytest.mark.parametrize("text", UNSTORABLE, ids=["NUL", "lone surrogate"])
def test_unstorable_category_names_and_titles_are_400_and_change_nothing(
    admin_api: Api, published_video: PublishedVideo, text: str
) -> None:
    categories = admin_api.get("/api/admin/categories/").json()
    created = admin_api.post(
        "/api/admin/categories/",
        content=json.dumps({"name": text}).encode(),
        headers={"Content-Type": "application/json", **admin_api.csrf_headers()},
    )
    assert assert_error_body(created, 400) == {"name": [created.json()["name"][0]]}
    assert admin_api.get("/api/admin/categories/").json() == categories

    before = admin_api.get(f"{ADMIN_VIDEOS}{published_video.id}/").json()
    for field in ("title", "description", "category"):
        edited = admin_api.patch(
            f"{ADMIN_VIDEOS}{published_video.id}/",
            content=json.dumps({field: text}).encode(),
            headers={"Content-Type": "application/json", **admin_api.csrf_headers()},
        )
        assert field in assert_error_body(edited, 400)
    after = admin_api.get(f"{ADMIN_VIDEOS}{published_video.id}/").json()
    assert {k: after[k] for k in ("title", "description", "category")} == {
        k: before[k] for k in ("title", "description", "category")
    }


@pytest.mark.parametrize("text", UNSTORABLE, ids=["NUL", "lone surrogate"])
def test_unstorable_text_in_auth_bodies_is_400(api: Api, text: str) -> None:
    register = api.post(
        "/api/register/",
        content=json.dumps(
            {"email": "x@example.com", "password": text * 8, "confirmed_password": text * 8}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert_error_body(register, 400)
    login = api.post(
        "/api/login/",
        content=json.dumps({"email": f"x{text}@example.com", "password": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert_error_body(login, 400)
