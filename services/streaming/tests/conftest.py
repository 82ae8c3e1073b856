"""Fixtures of the streaming tests: a real HLS tree cut by ffmpeg, the app on a real HTTP
server (uvicorn thread, JWKS from the shared `jwks_server`, playback states from the run's
NATS streams, announced by `access` the way catalog does), and a raw HTTP client for paths
an ordinary client would normalise (`..`, `%2e%2e`, `%2f`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from videoflix_shared.bus import EventBus
from videoflix_shared.events import VideoAccessChanged
from videoflix_streaming.access import AccessMap, Audience, audience_of
from videoflix_streaming.app import create_app
from videoflix_streaming.settings import StreamingSettings
from videoflix_testing.cleanup import delete_nats_streams
from videoflix_testing.plugin import NATS_URL, ServerThread, wait_until

VIDEO_ID = 1
MASTER_PLAYLIST = b"""#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=160x90
480p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=320x180
720p/index.m3u8
"""


@dataclass(frozen=True)
class HlsVideo:
    video_id: int
    directory: Path  # MEDIA_ROOT/hls/<id>

    def file(self, relative: str) -> Path:
        return self.directory / relative


def write_hls_tree(directory: Path) -> None:
    """What the transcoder writes: master, thumbnail, two renditions of 1 s segments."""
    rendition = directory / "480p"
    rendition.mkdir(parents=True)
    ffmpeg = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    subprocess.run(
        [
            *ffmpeg,
            *("-f", "lavfi", "-i", "testsrc=size=160x90:rate=10", "-t", "2"),
            *("-c:v", "libx264", "-preset", "ultrafast", "-g", "10"),
            *("-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"),
            *("-hls_segment_filename", str(rendition / "seg_%05d.ts")),
            str(rendition / "index.m3u8"),
        ],
        check=True,
        timeout=60,
    )
    subprocess.run(
        [
            *ffmpeg,
            *("-f", "lavfi", "-i", "testsrc=size=160x90", "-frames:v", "1"),
            str(directory / "thumbnail.jpg"),
        ],
        check=True,
        timeout=60,
    )
    shutil.copytree(rendition, directory / "720p")
    (directory / "master.m3u8").write_bytes(MASTER_PLAYLIST)


@pytest.fixture(scope="session")
def hls_tree_writer() -> Callable[[Path], None]:
    """`write_hls_tree` as a fixture (test modules cannot import conftest by name)."""
    return write_hls_tree


@pytest.fixture(scope="session")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our own media root: other services' tests in the same run write video ids too."""
    return tmp_path_factory.mktemp("streaming-media")


@pytest.fixture(scope="session")
def hls_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ffmpeg run per test session; videos are copies of it."""
    directory = tmp_path_factory.mktemp("hls-template") / "video"
    write_hls_tree(directory)
    return directory


class AccessAnnouncer:
    """Announces playback states on the run's ACCESS stream as catalog does, and waits until
    the servers it watches have applied them."""

    STATES = {
        Audience.EVERYONE: {"published": True, "ready": True},
        Audience.ADMINS: {"published": False, "ready": True},
        Audience.NOBODY: {"published": True, "ready": False},
    }

    def __init__(self, nats_names: dict[str, str]) -> None:
        self.nats_names = nats_names
        self.watched: list[AccessMap] = []

    def event(self, video_id: int, audience: Audience) -> VideoAccessChanged:
        return VideoAccessChanged(video_id=video_id, **self.STATES[audience])

    def __call__(self, video_id: int, audience: Audience = Audience.EVERYONE) -> None:
        self.publish(self.event(video_id, audience))

    def delete(self, video_id: int) -> None:
        self.publish(
            VideoAccessChanged(video_id=video_id, published=False, ready=False, deleted=True)
        )

    def publish(self, event: VideoAccessChanged) -> None:
        self.publish_raw(event.publish_subject, event.model_dump_json().encode())
        expected = audience_of(event)
        for access in self.watched:
            wait_until(
                lambda access=access: access.audience(event.video_id) is expected,
                timeout=10,
                interval=0.01,
                what=f"video {event.video_id} to become {expected}",
            )

    def publish_raw(self, subject: str, payload: bytes) -> None:
        async def publish() -> None:
            bus = EventBus(
                url=NATS_URL,
                subject_prefix=self.nats_names["NATS_SUBJECT_PREFIX"],
                stream_prefix=self.nats_names["NATS_STREAM_PREFIX"],
            )
            await bus.connect(wait=False)
            try:
                await bus.publish_raw(subject, payload, msg_id=uuid.uuid4().hex)
            finally:
                await bus.close()

        # In a thread of its own: async tests call this with their event loop running.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, publish()).result(timeout=30)


@pytest.fixture(scope="session")
def streaming_nats_names(nats_names: dict[str, str]) -> Iterator[dict[str, str]]:
    """NATS names of the streaming suite's own: in a run with catalog's suite, the video ids
    announced here must not meet those of catalog's database (nor its backfill)."""
    names = {
        "NATS_SUBJECT_PREFIX": f"{nats_names['NATS_SUBJECT_PREFIX']}streaming.",
        "NATS_STREAM_PREFIX": f"{nats_names['NATS_STREAM_PREFIX']}STREAMING_",
    }
    yield names
    delete_nats_streams(NATS_URL, names)


@pytest.fixture(scope="session")
def access(streaming_nats_names: dict[str, str]) -> AccessAnnouncer:
    return AccessAnnouncer(streaming_nats_names)


@pytest.fixture(scope="session")
def make_video(
    media_root: Path, hls_template: Path, access: AccessAnnouncer
) -> Callable[..., HlsVideo]:
    """Factory: the transcoder's files of a video, announced as `audience` (default: a
    published, ready video every signed-in user may play)."""

    def factory(video_id: int, audience: Audience = Audience.EVERYONE) -> HlsVideo:
        directory = media_root / "hls" / str(video_id)
        shutil.copytree(hls_template, directory)
        access(video_id, audience)
        return HlsVideo(video_id, directory)

    return factory


@pytest.fixture(scope="session")
def video(make_video: Callable[[int], HlsVideo]) -> HlsVideo:
    return make_video(VIDEO_ID)


@pytest.fixture(scope="session")
def streaming_env(
    common_env: dict[str, str], media_root: Path, streaming_nats_names: dict[str, str]
) -> dict[str, str]:
    return {
        **common_env,
        **streaming_nats_names,
        "MEDIA_ROOT": str(media_root),
        "STREAMING_FILE_CACHE_SECONDS": "0.5",
    }


@pytest.fixture(scope="session")
def streaming_server(
    request: pytest.FixtureRequest, streaming_env: dict[str, str], access: AccessAnnouncer
) -> Iterator[ServerThread]:
    request.getfixturevalue("video")  # the server starts with video 1 on disk and playable
    endpoint = create_app(StreamingSettings(**streaming_env))
    with ServerThread(endpoint) as server:
        access.watched.append(endpoint.access)
        yield server
        access.watched.remove(endpoint.access)


@pytest.fixture
def client(streaming_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=streaming_server.url, timeout=10) as http:
        yield http


@pytest.fixture
def auth(token_issuer) -> dict[str, str]:
    """Request headers of a logged-in browser: the access token cookie."""
    return {"Cookie": f"access_token={token_issuer.token()}"}


@pytest.fixture
def admin_auth(token_issuer) -> dict[str, str]:
    """Request headers of the admin page's browser."""
    return {"Cookie": f"access_token={token_issuer.token(user_id=99, is_admin=True)}"}


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_http_get(url: str, target: str, headers: dict[str, str] | None = None) -> RawResponse:
    """GET with the request target sent byte for byte (no dot-segment removal, no quoting)."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), parsed, body)


@pytest.fixture
def raw_get(streaming_server: ServerThread, auth: dict[str, str]):
    def get(target: str, *, authenticated: bool = True) -> RawResponse:
        return raw_http_get(streaming_server.url, target, auth if authenticated else None)

    return get
