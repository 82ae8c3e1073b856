"""The app factory: JSON errors, CORS as API.md says, trailing slashes, body cap, health."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from videoflix_shared.app import create_service_app, register_readiness_check
from videoflix_shared.errors import InvalidInput
from videoflix_shared.settings import CommonSettings

FRONTEND = "http://127.0.0.1:5500"


class Credentials(BaseModel):
    email: str
    password: str


def make_app() -> FastAPI:
    router = APIRouter()

    @router.post("/api/login/")
    async def login(body: Credentials) -> dict:
        return {"email": body.email}

    @router.get("/api/boom/")
    async def boom() -> dict:
        raise RuntimeError("kaboom")

    @router.post("/api/rule/")
    async def rule() -> dict:
        raise InvalidInput.for_fields({"password": ["This password is too common."]})

    settings = CommonSettings(CORS_ALLOWED_ORIGINS=FRONTEND, MAX_JSON_BODY_BYTES=1024)
    return create_service_app(service="test", settings=settings, routers=[router])


@pytest.fixture
async def client():
    app = make_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_unknown_path_is_json_404(client):
    r = await client.get("/no/such/thing/")
    assert r.status_code == 404
    assert r.json() == {"detail": "Not found."}


async def test_wrong_method_is_json_405(client):
    r = await client.delete("/api/login/")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"detail": "Method not allowed."}


async def test_validation_error_is_400_with_field_lists(client):
    r = await client.post("/api/login/", json={"email": "a@b.c"})
    assert r.status_code == 400
    assert r.json() == {"password": ["This field is required."]}


async def test_malformed_json_is_400_detail(client):
    r = await client.post(
        "/api/login/", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json() == {"detail": "Malformed JSON body."}


async def test_non_object_body_is_400(client):
    r = await client.post("/api/login/", json=[1, 2])
    assert r.status_code == 400
    assert set(r.json()) == {"detail"}


async def test_unhandled_exception_is_json_500_without_traceback(client):
    r = await client.get("/api/boom/")
    assert r.status_code == 500
    assert r.json() == {"detail": "Internal server error."}
    assert "kaboom" not in r.text


async def test_field_errors_from_service_code(client):
    r = await client.post("/api/rule/")
    assert r.status_code == 400
    assert r.json() == {"password": ["This password is too common."]}


async def test_path_without_trailing_slash_is_served_not_redirected(client):
    r = await client.post("/api/login", json={"email": "a@b.c", "password": "x"})
    assert r.status_code == 200
    assert r.json() == {"email": "a@b.c"}


async def test_healthz_without_trailing_slash_and_with_it(client):
    assert (await client.get("/healthz")).json()["status"] == "ok"
    assert (await client.get("/healthz/")).status_code == 200


async def test_oversized_body_is_413_json(client):
    r = await client.post(
        "/api/login/", content=b"x" * 2048, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert "too large" in r.json()["detail"]


async def test_oversized_chunked_body_is_413(client):
    async def chunks():
        for _ in range(4):
            yield b"x" * 512

    r = await client.post(
        "/api/login/", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


async def test_cors_preflight_echoes_configured_origin_with_credentials(client):
    r = await client.options(
        "/api/login/",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-csrftoken",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == FRONTEND
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "x-csrftoken" in r.headers["access-control-allow-headers"].lower()


async def test_cors_simple_request_never_uses_wildcard(client):
    r = await client.get("/healthz", headers={"Origin": FRONTEND})
    assert r.headers["access-control-allow-origin"] == FRONTEND
    assert r.headers["access-control-allow-credentials"] == "true"


async def test_cors_preflight_from_unknown_origin_is_refused_with_json(client):
    r = await client.options(
        "/api/login/",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    assert "Disallowed CORS origin" in r.json()["detail"]


async def test_cors_unknown_origin_gets_no_allow_header(client):
    r = await client.get("/healthz", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_request_id_is_echoed_or_generated(client):
    r = await client.get("/healthz", headers={"X-Request-ID": "0123456789abcdef0123456789abcdef"})
    assert r.headers["x-request-id"] == "0123456789abcdef0123456789abcdef"
    generated = (await client.get("/healthz")).headers["x-request-id"]
    assert len(generated) == 32


async def test_metrics_exposes_request_counters(client):
    await client.get("/healthz")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert (
        'http_requests_total{method="GET",route="/healthz",service="test",status="200"}' in r.text
    )


async def test_readyz_reports_each_check_and_503_when_one_fails():
    app = make_app()

    async def ok() -> None:
        return None

    async def broken() -> None:
        raise ConnectionError("database down")

    register_readiness_check(app, "cache", ok)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/readyz")).status_code == 200
        register_readiness_check(app, "database", broken)
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["cache"] == "ok"
    assert "database down" in r.json()["checks"]["database"]


UNSTORABLE_BODIES = {
    "escaped NUL": b'{"email": "a\\u0000@example.com", "password": "x"}',
    "escaped lone surrogate": b'{"email": "a@example.com", "password": "\\ud800"}',
    "raw UTF-8 surrogate": b'{"email": "a@example.com", "password": "\xed\xa0\x80"}',
    "nested in a list": b'{"email": "a@example.com", "password": "x", "extra": [["\\udc00"]]}',
    "in a key": b'{"email": "a@example.com", "password": "x", "\\u0000": 1}',
}


@pytest.mark.parametrize("body", list(UNSTORABLE_BODIES.values()), ids=list(UNSTORABLE_BODIES))
async def test_unstorable_text_in_a_json_body_is_a_400_before_the_route(client, body) -> None:
    for content_type in ("application/json", "application/problem+json", None):
        headers = {"Content-Type": content_type} if content_type else {}
        r = await client.post("/api/login/", content=body, headers=headers)
        assert r.status_code == 400, (content_type, r.text)
        assert r.headers["content-type"] == "application/json"
        assert "NUL" in str(r.json())


async def test_unstorable_text_in_path_or_query_is_a_400(client) -> None:
    assert (await client.get("/api/boom/?q=%00")).status_code == 400
    assert (await client.get("/api/bo%00om/")).status_code == 400


async def test_ordinary_unicode_passes_the_text_check(client) -> None:
    body = '{"email": "zoë@example.com", "password": "🎬 パスワード \\ud83c\\udfac"}'.encode()
    r = await client.post("/api/login/", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json() == {"email": "zoë@example.com"}
