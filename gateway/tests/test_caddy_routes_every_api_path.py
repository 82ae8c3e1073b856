"""Every public path of API.md reaches the service that owns it, through a running Caddy
configured from gateway/routes.toml (upstreams are stand-ins that say who they are)."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from gateway.generate import NOT_FOUND_PATH, load_routes, render_caddyfile
from videoflix_shared.processes import stop_process
from videoflix_testing.plugin import ServerThread

pytestmark = pytest.mark.skipif(
    shutil.which("caddy") is None, reason="caddy is not installed (make install)"
)

# (method, path as a client sends it, owning service, path the service receives)
API_PATHS = [
    ("POST", "/api/register/", "auth", "/api/register/"),
    ("POST", "/api/register", "auth", "/api/register"),
    ("GET", "/api/activate/MQ/abc-123/", "auth", "/api/activate/MQ/abc-123/"),
    ("POST", "/api/login/", "auth", "/api/login/"),
    ("POST", "/api/login", "auth", "/api/login"),
    ("POST", "/api/logout/", "auth", "/api/logout/"),
    ("POST", "/api/token/refresh/", "auth", "/api/token/refresh/"),
    ("POST", "/api/password_reset/", "auth", "/api/password_reset/"),
    ("POST", "/api/password_confirm/MQ/abc-123/", "auth", "/api/password_confirm/MQ/abc-123/"),
    ("GET", "/api/user/", "auth", "/api/user/"),
    ("GET", "/api/user", "auth", "/api/user"),
    ("GET", "/.well-known/jwks.json", "auth", "/.well-known/jwks.json"),
    ("GET", "/api/video/", "catalog", "/api/video/"),
    ("GET", "/api/video", "catalog", "/api/video"),
    ("GET", "/api/admin/videos/", "catalog", "/api/admin/videos/"),
    ("GET", "/api/admin/transcoding/jobs/", "catalog", "/api/admin/transcoding/jobs/"),
    ("GET", "/admin/", "catalog", "/admin/"),
    ("GET", "/admin", "catalog", "/admin"),
    ("GET", "/api/video/12/480p/index.m3u8", "streaming", "/api/video/12/480p/index.m3u8"),
    ("GET", "/api/video/12/720p/seg_00003.ts", "streaming", "/api/video/12/720p/seg_00003.ts"),
    ("GET", "/api/video/12/720p/seg_00003.ts/", "streaming", "/api/video/12/720p/seg_00003.ts/"),
    ("GET", "/api/video/12/master.m3u8", "streaming", "/api/video/12/master.m3u8"),
    ("GET", "/api/video/12/thumbnail.jpg", "streaming", "/api/video/12/thumbnail.jpg"),
    ("GET", "/svc/auth/healthz", "auth", "/healthz"),
    ("GET", "/svc/catalog/healthz", "catalog", "/healthz"),
    ("GET", "/svc/streaming/healthz", "streaming", "/healthz"),
    # the fallback answers JSON 404s on one path: nothing internal of it is reachable
    ("GET", "/no/such/path", "catalog", NOT_FOUND_PATH),
]

# Internal endpoints of every service, and tricks to reach them through a public prefix.
INTERNAL_PATHS = [
    *(
        f"{prefix}{endpoint}"
        for prefix in ("", "/svc/auth", "/svc/catalog", "/svc/streaming", "/svc/transcoder")
        # /jobs: the transcoder dispatcher's job list (its health port has no route at all)
        for endpoint in ("/metrics", "/readyz", "/docs", "/openapi.json", "/redoc", "/jobs")
    ),
    "/api/admin/../../metrics",
    "/api/admin/%2e%2e/%2e%2e/metrics",
    "/api/activate/../../openapi.json",
    "/api/video/1/../../../readyz",
    "//metrics",
]


def _free_block(size: int) -> int:
    for _ in range(200):
        base = random.randrange(20000, 60000, 10)
        sockets = []
        try:
            for offset in range(size):
                s = socket.socket()
                s.bind(("127.0.0.1", base + offset))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port block")


def _echo_app(service: str):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        received = 0  # read the whole body, as the services do, so the proxy's cap applies
        while True:
            message = await receive()
            received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        reply = {"service": service, "path": scope["path"]}
        if received:
            reply["received"] = received
        body = json.dumps(reply).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    table = load_routes()
    base = _free_block(4)
    servers = [
        ServerThread(_echo_app(name), port=base + int(cfg["port_offset"])).__enter__()
        for name, cfg in table.services.items()
    ]
    caddyfile = tmp_path_factory.mktemp("caddy") / "Caddyfile"
    caddyfile.write_text(render_caddyfile(table, port_base=base))
    proc = subprocess.Popen(
        ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{base}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/svc/auth/healthz", timeout=1)
            break
        except httpx.TransportError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
    yield url, servers, base
    stop_process(proc, timeout=10)
    for server in servers:
        server.__exit__(None, None, None)


@pytest.mark.parametrize(("method", "path", "service", "upstream_path"), API_PATHS)
def test_path_reaches_its_owning_service(gateway, method, path, service, upstream_path):
    url = gateway[0]
    r = httpx.request(method, url + path, timeout=5)
    assert r.status_code == 200, r.text
    assert r.json() == {"service": service, "path": upstream_path}


@pytest.mark.parametrize("path", INTERNAL_PATHS)
def test_internal_endpoints_are_not_reachable_through_the_gateway(gateway, path):
    url = gateway[0]
    with httpx.Client(base_url=url, timeout=5) as client:
        # send the path as written: no client-side normalisation of `..` or `//`
        request = client.build_request("GET", "/")
        request.url = request.url.copy_with(raw_path=path.encode())
        r = client.send(request)
    if r.status_code == 200:
        reached = r.json()["path"]
        assert reached == NOT_FOUND_PATH or not any(
            reached.rstrip("/").endswith(e)
            for e in ("/metrics", "/readyz", "/docs", "/openapi.json", "/redoc")
        ), (path, reached)
    else:
        assert r.status_code in (400, 404), (path, r.status_code, r.text)


def test_every_route_of_the_table_is_exercised():
    owners = {svc for _, _, svc, _ in API_PATHS}
    assert owners == set(load_routes().services)


def test_upstream_down_gives_json_502(tmp_path):
    table = load_routes()
    base = _free_block(4)  # nothing listens on the upstream ports
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(render_caddyfile(table, port_base=base))
    proc = subprocess.Popen(
        ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{base}/api/user/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 502
        assert r.headers["content-type"].startswith("application/json")
        assert "unavailable" in r.json()["detail"]
    finally:
        stop_process(proc, timeout=10)


def test_committed_caddyfile_matches_the_route_table():
    committed = (Path(__file__).parent.parent / "Caddyfile").read_text()
    assert committed == render_caddyfile(load_routes()), (
        "run `make routes` after editing routes.toml"
    )


# (path, body size, status): the caps of gateway/routes.toml, enforced by Caddy
BODY_LIMITS = [
    ("/api/login/", 1024 * 1024, 200),
    ("/api/login/", 1024 * 1024 + 1, 413),
    ("/api/admin/videos/", 1024 * 1024 + 1, 413),
    # a tus chunk of the admin page (50 MB) passes; a bigger one is refused
    ("/api/admin/uploads/0123abcd/", 50_000_000, 200),
    ("/api/admin/uploads/0123abcd/", 64 * 1024 * 1024 + 1, 413),
    # the single-request upload is capped by catalog (CATALOG_MAX_UPLOAD_BYTES), not here
    ("/api/admin/videos/upload/", 80 * 1024 * 1024, 200),
]


@pytest.mark.parametrize(("path", "size", "status"), BODY_LIMITS)
def test_request_bodies_are_capped_per_route(gateway, path, size, status):
    url = gateway[0]

    def body():
        sent = 0
        while sent < size:
            piece = min(1024 * 1024, size - sent)
            sent += piece
            yield b"x" * piece

    r = httpx.patch(url + path, content=body(), headers={"Content-Length": str(size)}, timeout=60)
    assert r.status_code == status, r.text[:200]
    assert r.headers["content-type"].startswith("application/json")
    if status == 200:
        assert r.json()["received"] == size
    else:
        assert "too large" in r.json()["detail"]
