"""Catalog keeps working while NATS is away, and nothing is lost: uploads are accepted, the
upload event waits in the outbox and goes out once NATS is back; meanwhile it stays ready
(degraded). The metrics and the lost-stream side: test_degraded_and_recovering.py."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from videoflix_catalog.app import create_app
from videoflix_catalog.settings import CatalogSettings
from videoflix_shared.bus import EventBus
from videoflix_shared.events import VideoUploaded, parse_event
from videoflix_shared.outbox import OutboxMessage
from videoflix_testing.plugin import free_port, wait_until, wait_until_async

from .conftest import asgi_client, make_settings


@contextlib.contextmanager
def nats_server_on(port: int, store: Path) -> Iterator[None]:
    """A private NATS with JetStream on `port` (the one the service was told about)."""
    server = subprocess.Popen(
        [
            shutil.which("nats-server") or "nats-server",
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-sd",
            str(store),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        server.terminate()
        wait_until(lambda: server.poll() is not None, timeout=10, what="nats exit")


async def last_uploaded_event(port: int, settings: CatalogSettings) -> VideoUploaded:
    bus = EventBus(
        url=f"nats://127.0.0.1:{port}",
        subject_prefix=settings.nats_subject_prefix,
        stream_prefix=settings.nats_stream_prefix,
    )
    await bus.connect(wait=False)
    try:
        message = await bus.js.get_last_msg(
            bus.stream("CATALOG"), bus.subject(VideoUploaded.subject)
        )
    finally:
        await bus.close()
    event = parse_event(VideoUploaded.subject, message.data)
    assert isinstance(event, VideoUploaded)
    return event


async def test_service_serves_while_nats_is_down_and_delivers_the_event_later(
    catalog, fresh_catalog_env, tmp_path: Path
) -> None:
    port = free_port()
    env = fresh_catalog_env("catalog_no_nats", NATS_URL=f"nats://127.0.0.1:{port}")
    settings = make_settings(env)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        asgi_client(
            app, cookies=catalog.admin.cookies, headers={"X-CSRFToken": "test-csrf-token"}
        ) as admin,
    ):
        assert (await admin.get("/healthz")).status_code == 200
        ready = await admin.get("/readyz")
        assert ready.status_code == 200  # it can serve: the outbox absorbs the outage
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["nats"].startswith("degraded")
        assert ready.json()["checks"]["database"] == "ok"

        response = await admin.post(
            "/api/admin/videos/upload/",
            data={"title": "Uploaded during an outage", "category": "Drama"},
            files={"file": ("clip.mp4", catalog.clip.read_bytes(), "video/mp4")},
        )
        assert response.status_code == 202, response.text
        video_id = response.json()["id"]
        assert (await admin.get("/api/video/")).status_code == 200

        async def pending() -> list[OutboxMessage]:
            async with app.state.session_factory() as session:
                return list(await session.scalars(select(OutboxMessage)))

        rows = await pending()
        # The upload event and the video's playback state (not playable yet), both waiting.
        assert {r.subject for r in rows} == {f"access.video.{video_id}", VideoUploaded.subject}
        assert all(r.published_at is None for r in rows)

        with nats_server_on(port, tmp_path / "jetstream"):  # NATS comes back

            async def published() -> bool:
                return all(r.published_at is not None for r in await pending())

            await wait_until_async(published, timeout=30, what="outbox relayed")
            assert (await admin.get("/readyz")).status_code == 200
            event = await last_uploaded_event(port, settings)
            assert event.video_id == video_id
            assert event.generation == 1
