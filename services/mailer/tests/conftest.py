"""Fixtures for the mailer's tests: real NATS JetStream, Redis and SMTP servers (aiosmtpd).

Every test gets its own NATS subject/stream prefix and Redis key prefix (under the run's,
so the shared plugin cleans them up), hence its own durable "mailer" consumer and ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from videoflix_mailer.app import run_consumer
from videoflix_mailer.events import DURABLE
from videoflix_mailer.mailbox import Mailbox, StoredMessage
from videoflix_mailer.settings import MailerSettings
from videoflix_mailer.sink import MailboxHandler, start_smtp_server
from videoflix_shared.app import create_service_app
from videoflix_shared.bus import EventBus
from videoflix_shared.events import AUTH_STREAM, Event, UserRegistered, utcnow
from videoflix_shared.sealing import Sealer
from videoflix_testing.plugin import NATS_URL, free_port, wait_until_async

_test_numbers = itertools.count(1)


def user_registered(email: str, **overrides: Any) -> UserRegistered:
    now = utcnow()
    values: dict[str, Any] = {
        "user_id": 7,
        "email": email,
        "activation_url": f"http://127.0.0.1:5500/pages/auth/activate.html?uid=Nw&token={uuid.uuid4().hex}",
        "expires_at": now + timedelta(hours=24),
        "occurred_at": now,
    }
    return UserRegistered(**{**values, **overrides})


@pytest.fixture
def mail_env(common_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Environment of one test's mailer: own prefixes, fast retries, a free SMTP port."""
    n = next(_test_numbers)
    return {
        **common_env,
        "NATS_SUBJECT_PREFIX": f"{common_env['NATS_SUBJECT_PREFIX']}t{n}.",
        "NATS_STREAM_PREFIX": f"{common_env['NATS_STREAM_PREFIX']}T{n}_",
        "REDIS_KEY_PREFIX": f"{common_env['REDIS_KEY_PREFIX']}t{n}:",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(free_port()),
        "SMTP_TIMEOUT_SECONDS": "3",
        "SMTP_SENDER": "Videoflix <noreply@videoflix.example.com>",
        "MAILER_RETRY_BASE_SECONDS": "0.5",
        "MAILER_RETRY_MAX_SECONDS": "4",
        "MAILER_ACK_WAIT_SECONDS": "15",
        "MAIL_SINK_DIR": str(tmp_path / "mail"),
        "HTTP_PORT": str(free_port()),
    }


@pytest.fixture
def settings(mail_env: dict[str, str]) -> MailerSettings:
    return MailerSettings(**mail_env)


class SealingBus(EventBus):
    """Publishes events the way auth does: links sealed with the test's MAIL_TOKEN_KEY."""

    def __init__(self, *, sealer: Sealer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sealer = sealer

    def sealed_json(self, event: Event) -> bytes:
        return self.sealer.seal(event).model_dump_json().encode()

    async def publish(self, event: Event, *, timeout: float = 5) -> None:
        await self.publish_raw(
            event.subject, self.sealed_json(event), msg_id=str(event.event_id), timeout=timeout
        )


@pytest.fixture
async def bus(settings: MailerSettings) -> AsyncIterator[SealingBus]:
    """Publishes into this test's streams (sealed, like auth); deletes them afterwards."""
    event_bus = SealingBus(
        sealer=Sealer.from_text(settings.mail_token_key),
        url=NATS_URL,
        subject_prefix=settings.nats_subject_prefix,
        stream_prefix=settings.nats_stream_prefix,
    )
    await event_bus.connect(wait=False)
    yield event_bus
    with contextlib.suppress(Exception):
        await event_bus.delete_streams()
    await event_bus.close()


@pytest.fixture
def mailbox(settings: MailerSettings) -> Mailbox:
    return Mailbox(settings.mail_sink_dir)


@dataclass
class SmtpServers:
    """Starts SMTP servers on this test's SMTP_PORT (the mailer's target) when asked."""

    settings: MailerSettings
    mailbox: Mailbox
    servers: list[asyncio.Server] = field(default_factory=list)

    async def start(self, handler: Any = None) -> Any:
        handler = handler or MailboxHandler(self.mailbox)
        server = await start_smtp_server(
            handler=handler, host=self.settings.smtp_host, port=self.settings.smtp_port
        )
        self.servers.append(server)
        return handler


@pytest.fixture
async def smtp(settings: MailerSettings, mailbox: Mailbox) -> AsyncIterator[SmtpServers]:
    servers = SmtpServers(settings, mailbox)
    yield servers
    for server in servers.servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def start_mailer(
    settings: MailerSettings,
) -> AsyncIterator[Callable[..., asyncio.Task[None]]]:
    """Starts in-process mailer consumers (the production `run_consumer`) on this test's
    settings (or others given); each is stopped and awaited at the end."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(custom: MailerSettings | None = None) -> asyncio.Task[None]:
        stop = asyncio.Event()
        app = create_service_app(service="mailer-consume", settings=custom or settings)
        task = asyncio.create_task(run_consumer(app, stop))
        running.append((stop, task))
        return task

    yield start
    for stop, _ in running:
        stop.set()
    for _, task in running:
        await asyncio.wait_for(task, 15)


async def wait_for_messages(
    mailbox: Mailbox, to: str, count: int = 1, timeout: float = 20
) -> list[StoredMessage]:
    return await wait_until_async(
        lambda: (found := mailbox.list(to=to)) and len(found) >= count and found,
        timeout=timeout,
        what=f"{count} message(s) to {to}",
    )


async def wait_until_consumer_idle(bus: EventBus, timeout: float = 20) -> Any:
    """Until the durable consumer has every message acknowledged or terminated: nothing
    pending, nothing awaiting an ack (a nak'ed message awaits redelivery, so it counts)."""
    assert bus.js is not None

    async def idle() -> Any:
        info = await bus.js.consumer_info(bus.stream(AUTH_STREAM), DURABLE)
        return info if info.num_pending == 0 and info.num_ack_pending == 0 else None

    return await wait_until_async(idle, timeout=timeout, what="consumer idle")


class RefusingHandler(MailboxHandler):
    """An SMTP server that answers RCPT or DATA with a chosen reply while `refusal` is set."""

    def __init__(self, mailbox: Mailbox, *, rcpt: str | None = None, data: str | None = None):
        super().__init__(mailbox)
        self.rcpt_refusal = rcpt
        self.data_refusal = data
        self.refused_at: list[float] = []  # monotonic time of each refused DATA

    async def handle_RCPT(
        self,
        _server: SMTP,
        _session: Session,
        envelope: Envelope,
        address: str,
        _rcpt_options: list[str],
    ) -> str:
        if self.rcpt_refusal:
            return self.rcpt_refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_refusal:
            self.refused_at.append(time.monotonic())
            return self.data_refusal
        return await super().handle_DATA(server, session, envelope)
