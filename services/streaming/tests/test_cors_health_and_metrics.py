"""What every service answers alike: CORS for the frontend origins, request ids, JSON errors,
`/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

import re
import uuid

import httpx

from videoflix_streaming.app import create_app
from videoflix_streaming.inline_middleware import REQUEST_ID_BATCH, REQUEST_IDS
from videoflix_streaming.settings import StreamingSettings
from videoflix_testing.plugin import ServerThread

FRONTEND = "http://127.0.0.1:5500"
SEGMENT = "/api/video/1/480p/seg_00000.ts"


def test_allowed_origin_is_echoed_with_credentials(client, auth):
    response = client.get(SEGMENT, headers={**auth, "Origin": FRONTEND})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["access-control-allow-credentials"] == "true"
    exposed = response.headers["access-control-expose-headers"]
    assert "Content-Range" in exposed
    assert "ETag" in exposed
    assert "Origin" in response.headers["vary"]


def test_errors_carry_cors_headers_too(client):
    response = client.get(SEGMENT, headers={"Origin": FRONTEND})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == FRONTEND


def test_other_origins_get_no_cors_grant(client, auth):
    response = client.get(SEGMENT, headers={**auth, "Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_preflight_for_a_range_request_is_allowed(client):
    response = client.options(
        SEGMENT,
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "range" in response.headers["access-control-allow-headers"].lower()


def test_request_id_is_echoed_or_generated(client, auth):
    given = str(uuid.uuid4())
    echoed = client.get(SEGMENT, headers={**auth, "X-Request-ID": given})
    assert echoed.headers["x-request-id"] == given
    generated = client.get(SEGMENT, headers={**auth, "X-Request-ID": "<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert uuid.UUID(generated.headers["x-request-id"]).version == 4


def test_unsupported_methods_are_json_405(client, auth):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = client.request(method, SEGMENT, headers=auth)
        assert response.status_code == 405, method
        assert response.json() == {"detail": "Method not allowed."}
        assert "GET" in response.headers["allow"]


def test_paths_outside_the_video_routes_are_json_404(client):
    for path in ("/", "/api/video/", "/api/video", "/api/login/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found."}


def test_health_and_readiness(client):
    health = client.get("/healthz")
    assert health.json() == {"status": "ok", "service": "streaming"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"jwks": "ok", "media": "ok", "access": "ok"},
    }


def test_metrics_count_hls_requests_by_route(client, auth):
    client.get(SEGMENT, headers=auth)
    metrics = client.get("/metrics").text
    assert re.search(
        r'http_requests_total\{method="GET",route="/api/video/\{id\}/\{resolution\}/\{segment\}",'
        r'service="streaming",status="200"\} [1-9]',
        metrics,
    ), metrics[:2000]


def test_fresh_install_without_media_yet_is_ready(streaming_env, tmp_path):
    media_root = tmp_path / "media-not-created-yet"
    settings = StreamingSettings(**{**streaming_env, "MEDIA_ROOT": str(media_root)})
    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/readyz").status_code == 200
        assert (media_root / "hls").is_dir()


def test_generated_request_ids_are_distinct_uuid4s_across_batches():
    ids = [REQUEST_IDS.new() for _ in range(3 * REQUEST_ID_BATCH)]
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(request_id).version for request_id in ids} == {4}
