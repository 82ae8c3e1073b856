"""NATS outages lose nothing: auth starts and serves without NATS, and events written to
the outbox during an outage reach JetStream once NATS is back.

Uses a private nats-server (own port and store directory) so the shared server is never
stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
from pathlib import Path

import pytest
from nats.js.errors import NotFoundError

from videoflix_shared.bus import EventBus
from videoflix_testing.plugin import free_port, wait_until, wait_until_async

NATS_SERVER = "/usr/sbin/nats-server"


class PrivateNats:
    def __init__(self, store_dir: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store_dir = store_dir
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                NATS_SERVER,
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(self.store_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._accepting, timeout=15, what="private nats-server")

    def _accepting(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def private_nats(tmp_path: Path):
    server = PrivateNats(tmp_path / "jetstream")
    yield server
    server.kill()


async def published_email(bus: EventBus, subject: str) -> str | None:
    """The address in the last message on `subject` in the private server's AUTH stream."""
    if not bus.is_connected:
        return None
    try:
        msg = await bus.js.get_last_msg(bus.stream("AUTH"), bus.subject(subject))
    except NotFoundError:
        return None
    return json.loads(msg.data)["email"]


async def register_while_nats_dies(api, db, private_nats, observer, subject: str) -> None:
    """A registration answered while NATS goes down; its event goes out once NATS is back
    (same port and store) and its outbox row is deleted then."""
    email = api.new_email("outage")
    registering = asyncio.create_task(api.register(email))
    private_nats.kill()
    assert (await registering).status_code == 201
    assert db.query(
        "SELECT published_at IS NULL FROM outbox WHERE payload->>'email' = %s", email
    ) == [(True,)]
    private_nats.start()
    await wait_until_async(
        lambda: _is(published_email(observer, subject), email),
        timeout=30,
        what="event published after NATS restart",
    )
    await wait_until_async(
        lambda: db.query("SELECT 1 FROM outbox WHERE payload->>'email' = %s", email) == [],
        timeout=10,
        what="outbox row deleted once published",
    )


async def test_registration_events_survive_nats_outages(
    start_app, private_nats, common_env, make_auth_database
):
    subject = "auth.user.registered"
    # Its own database: the outbox relay of any other auth app running in this test session
    # would otherwise publish these rows to the shared NATS server.
    db = make_auth_database("auth_outage")
    # 1. NATS is down from the start: auth must start and serve anyway.
    async with start_app(NATS_URL=private_nats.url, AUTH_DATABASE_URL=db.url) as (
        app,
        api,
    ):
        first = api.new_email("outage")
        assert (await api.register(first)).status_code == 201
        assert (await api.client.get("/healthz")).status_code == 200
        # Still ready: routing must not drop auth because NATS is away.
        ready = await api.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"  # and says why
        assert ready.json()["checks"]["nats"].startswith("degraded")
        assert not app.state.event_bus.is_connected
        assert db.query("SELECT published_at FROM outbox WHERE payload->>'email' = %s", first) == [
            (None,)
        ]

        private_nats.start()
        observer = EventBus(
            url=private_nats.url,
            subject_prefix=common_env["NATS_SUBJECT_PREFIX"],
            stream_prefix=common_env["NATS_STREAM_PREFIX"],
        )
        try:
            await wait_until_async(
                lambda: app.state.event_bus.is_connected, timeout=30, what="auth reconnecting"
            )
            await observer.connect(wait=False)
            await wait_until_async(
                lambda: _is(published_email(observer, subject), first),
                timeout=30,
                what="event published after NATS came up",
            )

            # 2. NATS dies during a registration and comes back on the same port and store.
            await register_while_nats_dies(api, db, private_nats, observer, subject)
        finally:
            with contextlib.suppress(Exception):
                await observer.close()


async def _is(value, expected) -> bool:
    return (await value) == expected
