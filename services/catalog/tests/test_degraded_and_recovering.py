"""Readiness means "can serve", and the bus heals itself. A real `videoflix-catalog serve`
(own database, media and streams) on a private nats-server that is not there at first:

- NATS away: `/readyz` answers 200 with "degraded" for nats, uploads are accepted, and
  `/metrics` shows `videoflix_nats_connected 0` and the outbox backlog and its lag;
- NATS back: connected 1, the backlog drains to 0, ready again, the consumer's gauges;
- an operator deletes the CATALOG and ACCESS streams and catalog's durable consumer on
  TRANSCODER (JetStream management API) while catalog runs: catalog re-creates both
  streams, announces every playback state again into ACCESS, re-creates its consumer, and
  events flow both ways again, without a restart.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from nats.js.errors import NotFoundError
from prometheus_client.parser import text_string_to_metric_families

from videoflix_shared.bus import EventBus
from videoflix_shared.events import (
    TranscodeFailed,
    VideoAccessChanged,
    VideoUploaded,
    parse_event,
)
from videoflix_testing.plugin import free_port, wait_until, wait_until_async
from videoflix_testing.tokens import TestTokenIssuer

from .conftest import CSRF, unique_title
from .test_resilience import nats_server_on

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def catalog_process(
    fresh_catalog_env: Callable[..., dict[str, str]], tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """`videoflix-catalog serve` (one worker) on NATS at a port nobody listens on yet;
    (its base URL, its environment)."""
    port, nats_port = free_port(), free_port()
    env = fresh_catalog_env(
        "catalog_degraded",
        NATS_URL=f"nats://127.0.0.1:{nats_port}",
        NATS_CHECK_INTERVAL_SECONDS="0.5",
        CATALOG_WORKERS="1",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
    )
    command = [str(Path(sys.executable).parent / "videoflix-catalog"), "serve"]
    log = tmp_path / "catalog.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base_url}/healthz"), timeout=120, what="catalog serving")
        yield base_url, env
    finally:
        process.terminate()
        process.wait(timeout=20)


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


def metric(base_url: str, name: str, **labels: str) -> float | None:
    """The value of one sample of catalog's `/metrics` (None when it is not exported)."""
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def readiness(base_url: str) -> tuple[int, dict]:
    response = httpx.get(f"{base_url}/readyz", timeout=10)
    return response.status_code, response.json()


@pytest.fixture
def clip_bytes(clip: Path) -> bytes:
    return clip.read_bytes()


async def upload(client: httpx.AsyncClient, clip: bytes) -> int:
    response = await client.post(
        "/api/admin/videos/upload/",
        data={"title": unique_title("Degraded"), "category": "Drama"},
        files={"file": ("clip.mp4", clip, "video/mp4")},
    )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


async def last_event(operator: EventBus, stream: str, subject: str):
    assert operator.js is not None
    try:
        message = await operator.js.get_last_msg(operator.stream(stream), operator.subject(subject))
    except NotFoundError:
        return None
    return parse_event(subject, message.data)


async def test_catalog_stays_ready_while_nats_is_away_and_heals_lost_streams(
    catalog_process, token_issuer: TestTokenIssuer, clip_bytes: bytes, tmp_path: Path
) -> None:
    base_url, env = catalog_process
    cookies = token_issuer.cookies(user_id=1, email="admin@example.com", is_admin=True)
    async with httpx.AsyncClient(
        base_url=base_url, cookies=cookies, headers={"X-CSRFToken": CSRF}, timeout=30
    ) as admin:
        # 1. NATS away: ready (degraded), uploads accepted, the backlog in the metrics.
        status, body = readiness(base_url)
        assert status == 200
        assert body["status"] == "degraded"
        assert body["checks"]["nats"].startswith("degraded")
        assert body["checks"]["database"] == "ok"
        assert metric(base_url, "videoflix_nats_connected", service="catalog") == 0
        video_id = await upload(admin, clip_bytes)
        pending = ("videoflix_outbox_pending_events", {"service": "catalog"})
        wait_until(lambda: metric(base_url, pending[0], **pending[1]) == 2, what="backlog of 2")
        wait_until(
            lambda: (
                (metric(base_url, "videoflix_outbox_relay_lag_seconds", service="catalog") or 0) > 1
            ),
            what="relay lag growing",
        )

        with nats_server_on(int(env["NATS_URL"].rsplit(":", 1)[1]), tmp_path / "jetstream"):
            operator = EventBus(
                url=env["NATS_URL"],
                subject_prefix=env["NATS_SUBJECT_PREFIX"],
                stream_prefix=env["NATS_STREAM_PREFIX"],
                check_interval=0,  # the operator re-creates nothing
            )
            await operator.connect()  # also provisions TRANSCODER, which catalog reads
            try:
                await recovers_from_the_outage(base_url, operator, video_id)
                await heals_lost_streams_and_consumer(
                    base_url, admin, operator, video_id, clip_bytes
                )
            finally:
                await operator.close()


async def recovers_from_the_outage(base_url: str, operator: EventBus, video_id: int) -> None:
    """2. NATS back: connected, the backlog drained, ready, the consumer's gauges."""
    wait_until(
        lambda: metric(base_url, "videoflix_nats_connected", service="catalog") == 1,
        timeout=30,
        what="connected again",
    )
    wait_until(
        lambda: metric(base_url, "videoflix_outbox_pending_events", service="catalog") == 0,
        timeout=30,
        what="backlog drained",
    )
    assert metric(base_url, "videoflix_outbox_relay_lag_seconds", service="catalog") == 0
    wait_until(lambda: readiness(base_url)[1]["status"] == "ready", timeout=15, what="ready")
    uploaded = await last_event(operator, "CATALOG", VideoUploaded.subject)
    assert isinstance(uploaded, VideoUploaded)
    assert uploaded.video_id == video_id
    transcoder = operator.stream("TRANSCODER")
    wait_until(
        lambda: (
            metric(
                base_url,
                "videoflix_jetstream_consumer_pending_messages",
                stream=transcoder,
                consumer="catalog",
            )
            == 0
        ),
        timeout=15,
        what="the catalog consumer's gauges",
    )


async def heals_lost_streams_and_consumer(
    base_url: str, admin: httpx.AsyncClient, operator: EventBus, video_id: int, clip: bytes
) -> None:
    """3. Streams and consumer deleted under catalog's feet: all back, events flow."""
    assert operator.js is not None
    await operator.js.delete_consumer(operator.stream("TRANSCODER"), "catalog")
    for stream in ("CATALOG", "ACCESS"):
        await operator.js.delete_stream(operator.stream(stream))

    access_subject = f"access.video.{video_id}"

    async def announced_again() -> bool:  # the new ACCESS stream has the video's state
        with contextlib.suppress(NotFoundError):
            event = await last_event(operator, "ACCESS", access_subject)
            return isinstance(event, VideoAccessChanged) and event.video_id == video_id
        return False

    await wait_until_async(announced_again, timeout=20, what="ACCESS re-created and refilled")

    # transcoder -> catalog: the re-created consumer applies a new event
    await operator.publish(TranscodeFailed(video_id=video_id, generation=1, reason="lost test"))

    async def failed() -> bool:
        state = (await admin.get(f"/api/admin/videos/{video_id}/")).json()
        return state["status"] == "failed"

    await wait_until_async(failed, timeout=20, what="catalog applied the transcoder's event")

    # catalog -> transcoder: an upload's event lands in the re-created CATALOG stream
    second = await upload(admin, clip)

    async def uploaded() -> bool:
        event = await last_event(operator, "CATALOG", VideoUploaded.subject)
        return isinstance(event, VideoUploaded) and event.video_id == second

    await wait_until_async(uploaded, timeout=20, what="upload event in the new CATALOG")
    assert readiness(base_url)[0] == 200
