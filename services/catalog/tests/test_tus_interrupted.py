"""A resumable upload survives what breaks long uploads: the client aborting mid-chunk,
catalog killed with SIGKILL mid-chunk and started again, and the gateway restarted
mid-chunk. Real processes: `videoflix-catalog serve` (own database, NATS streams and media
volume) behind Caddy configured from gateway/routes.toml; the client speaks tus through the
gateway. After the three interruptions the upload completes: the stored file is
byte-identical (sha256) and exactly one video exists."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.generate import load_routes, render_caddyfile

from .test_tus import metadata_header, video_fields

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed"),
]

TUS = "/api/admin/uploads/"
V = {"Tus-Resumable": "1.0.0"}
CHUNK = 1024 * 1024
PIECE = 64 * 1024


def free_block(size: int) -> int:
    for base in range(21000, 40000, 10):
        with contextlib.ExitStack() as stack:
            try:
                for offset in range(size):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", base + offset))
            except OSError:
                continue
            return base
    raise RuntimeError("no free port block")


class Process:
    """A server process in its own session, its output in a log file."""

    def __init__(self, command: list[str], *, env: dict[str, str], log: Path) -> None:
        self.command, self.env, self.log = command, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig`; SIGKILL after 3 s (Caddy waits for in-flight requests on SIGTERM)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def wait_for(url: str, what: str, ok: Callable[[httpx.Response], bool], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if ok(httpx.get(url, timeout=2)):
                return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not come up; log:\n{log.read_text()[-3000:]}")


@pytest.fixture
def stack(fresh_catalog_env, token_issuer, tmp_path: Path) -> Iterator[dict]:
    base = free_block(4)
    env = {
        **os.environ,
        **fresh_catalog_env(f"catalog_tus_kill_{os.getpid()}"),
        "HTTP_PORT": str(base + 2),
        "CATALOG_WORKERS": "1",
        "CATALOG_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024),
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    catalog_bin = Path(sys.executable).with_name("videoflix-catalog")
    catalog = Process([str(catalog_bin), "serve"], env=env, log=tmp_path / "catalog.log")
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(render_caddyfile(load_routes(), port_base=base))
    gateway = Process(
        ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        env=dict(os.environ),
        log=tmp_path / "caddy.log",
    )
    url = f"http://127.0.0.1:{base}"

    def start_catalog() -> None:
        catalog.start()
        wait_for(
            f"{url}/svc/catalog/healthz", "catalog", lambda r: r.status_code == 200, catalog.log
        )

    def start_gateway() -> None:
        gateway.start()
        wait_for(
            f"{url}/svc/catalog/healthz",
            "caddy",
            lambda r: r.status_code in (200, 502),
            gateway.log,
        )

    start_gateway()
    start_catalog()
    token = token_issuer.token(user_id=1, email="admin@example.com", is_admin=True)
    try:
        yield {
            "url": url,
            "auth": {"Authorization": f"Bearer {token}"},
            "media": Path(env["MEDIA_ROOT"]),
            "catalog": catalog,
            "gateway": gateway,
            "start_catalog": start_catalog,
            "start_gateway": start_gateway,
        }
    finally:
        for process in (gateway, catalog):
            if process.process is not None and process.process.poll() is None:
                process.kill(signal.SIGTERM)


def film(path: Path, size: int) -> bytes:
    """An MPEG-TS clip repeated to `size` bytes or so: ffprobe reads it as the video it is."""
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-y"),
            *("-f", "lavfi", "-i", "testsrc=size=320x180:rate=25", "-t", "2"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mpegts"),
            str(path),
        ],
        check=True,
        timeout=60,
    )
    clip = path.read_bytes()
    return clip * (size // len(clip) + 1)


def chunk_body(data: bytes, *, after: int, interrupt: Callable[[], None]) -> Iterator[bytes]:
    """The chunk in small pieces; `interrupt()` runs once `after` bytes are sent."""
    sent = 0
    for start in range(0, len(data), PIECE):
        if sent >= after:
            interrupt()
            time.sleep(0.5)  # what breaks the transfer takes effect
        yield data[start : start + PIECE]
        sent += PIECE
        time.sleep(0.01)


class ClientAborts(Exception):
    pass


def server_offset(stack: dict, location: str) -> int:
    response = httpx.head(stack["url"] + location, headers={**V, **stack["auth"]}, timeout=10)
    assert response.status_code == 200, response.status_code
    return int(response.headers["Upload-Offset"])


def interrupted_patch(
    stack: dict, location: str, data: bytes, interrupt: Callable[[], None]
) -> None:
    offset = server_offset(stack, location)
    chunk = data[offset : offset + CHUNK]
    with contextlib.suppress(httpx.HTTPError, ClientAborts):
        response = httpx.patch(
            stack["url"] + location,
            content=chunk_body(chunk, after=CHUNK // 3, interrupt=interrupt),
            headers={
                **V,
                **stack["auth"],
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(len(chunk)),
            },
            timeout=30,
        )
        # the gateway may still answer (502: catalog is gone), but never with success
        assert response.status_code != 204, "the chunk went through uninterrupted"


def create_upload(stack: dict, data: bytes, title: str) -> str:
    created = httpx.post(
        stack["url"] + TUS,
        headers={
            **V,
            **stack["auth"],
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata_header(**video_fields(title, filename="film.ts")),
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return created.headers["Location"]


def send_chunks(stack: dict, location: str, data: bytes, offset: int) -> httpx.Response:
    """Whole chunks from `offset` to the end; the last answer."""
    response = None
    while offset < len(data):
        response = httpx.patch(
            stack["url"] + location,
            content=data[offset : offset + CHUNK],
            headers={
                **V,
                **stack["auth"],
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=60,
        )
        assert response.status_code == 204, response.text
        offset = int(response.headers["Upload-Offset"])
    assert response is not None
    return response


def test_upload_survives_client_abort_catalog_kill_and_gateway_restart(stack, tmp_path) -> None:
    data = film(tmp_path / "film.ts", 6 * CHUNK)
    title = f"Interrupted {tmp_path.name[-8:]}"
    location = create_upload(stack, data, title)
    assert send_chunks(stack, location, data[:CHUNK], 0).headers["Upload-Offset"] == str(CHUNK)
    offsets = [0, server_offset(stack, location)]

    def client_aborts() -> None:
        raise ClientAborts

    # 1. the client gives up mid-chunk: what arrived is kept
    interrupted_patch(stack, location, data, client_aborts)
    deadline = time.monotonic() + 15  # until catalog noticed the disconnect and saved
    while server_offset(stack, location) == offsets[-1] and time.monotonic() < deadline:
        time.sleep(0.1)
    offsets.append(server_offset(stack, location))
    assert offsets[-1] > offsets[-2], f"the received part of the chunk was kept: {offsets}"

    # 2. catalog is killed mid-chunk and started again: it resumes from its record
    interrupted_patch(stack, location, data, lambda: stack["catalog"].kill(signal.SIGKILL))
    stack["start_catalog"]()
    offsets.append(server_offset(stack, location))
    assert offsets[-1] >= offsets[-2]

    # 3. the gateway restarts mid-chunk
    interrupted_patch(stack, location, data, lambda: stack["gateway"].kill(signal.SIGTERM))
    stack["start_gateway"]()
    offsets.append(server_offset(stack, location))
    assert offsets[-1] >= offsets[-2]

    video_id = int(send_chunks(stack, location, data, offsets[-1]).headers["Video-Id"])
    source = stack["media"] / f"uploads/{video_id}/source.ts"
    assert hashlib.sha256(source.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    videos = httpx.get(stack["url"] + "/api/admin/videos/", headers=stack["auth"], timeout=10)
    assert [v["id"] for v in videos.json() if v["title"] == title] == [video_id]
    assert not any((stack["media"] / "uploads/.tus").glob("*.bin"))
    print("offsets after each interruption:", offsets)  # quoted in the report
