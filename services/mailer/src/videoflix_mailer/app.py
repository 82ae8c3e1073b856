"""The mailer's two long-running processes, each run by `run_worker` with a health port:

- `run_consumer`: the mail event consumer (NATS + Redis + SMTP), `videoflix-mailer consume`;
- `run_sink`: the development SMTP sink with its HTTP listing, `videoflix-mailer sink`.
Resources are created here, stored on `app.state`, and closed when `stop` is set.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from redis.asyncio import Redis

from videoflix_mailer.api import router as sink_router
from videoflix_mailer.dead_letters import DeadLetterStore
from videoflix_mailer.emails import EmailRenderer
from videoflix_mailer.events import consume_mail_events
from videoflix_mailer.ledger import DeliveryLedger
from videoflix_mailer.mailbox import Mailbox
from videoflix_mailer.metrics import DEAD_LETTERS
from videoflix_mailer.service import Mailer, RetryPolicy
from videoflix_mailer.settings import MailerSettings
from videoflix_mailer.sink import MailboxHandler, start_smtp_server
from videoflix_mailer.smtp import SmtpSender
from videoflix_shared.app import register_metrics_refresh, register_readiness_check
from videoflix_shared.bus import EventBus
from videoflix_shared.lifespan import LifespanStack, unless_stopped
from videoflix_shared.redis import check_redis, create_redis
from videoflix_shared.sealing import sealer_from_settings

logger = logging.getLogger(__name__)


def build_mailer(settings: MailerSettings, redis: Redis) -> Mailer:
    """Raises MissingMailTokenKey in production without MAIL_TOKEN_KEY."""
    sealer = sealer_from_settings(
        settings.mail_token_key,
        settings.mail_token_keys_previous,
        required=settings.is_production,
        service="mailer",
    )
    if sealer is None:
        logger.warning("MAIL_TOKEN_KEY is not set: only mail events with links in clear work")
    return Mailer(
        sealer=sealer,
        renderer=EmailRenderer(sender=settings.smtp_sender),
        sender=SmtpSender(settings),
        ledger=DeliveryLedger(
            redis,
            settings,
            claim_seconds=settings.claim_seconds,
            sent_ttl_seconds=settings.sent_ttl_seconds,
        ),
        dead_letters=DeadLetterStore(redis, settings),
        retry=RetryPolicy(
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            give_up_seconds=settings.retry_give_up_seconds,
        ),
    )


async def run_consumer(app: FastAPI, stop: asyncio.Event) -> None:
    settings: MailerSettings = app.state.settings
    async with LifespanStack(stop) as resources:
        bus = EventBus.from_settings(settings, principal="mailer")
        resources.push_async_callback(bus.close)
        redis = create_redis(settings)
        resources.push_async_callback(redis.aclose)
        mailer = build_mailer(settings, redis)
        app.state.event_bus, app.state.redis, app.state.mailer = bus, redis, mailer
        register_readiness_check(app, "nats", bus.check)
        register_readiness_check(app, "redis", lambda: check_redis(redis))
        register_readiness_check(app, "smtp", mailer.sender.check)
        register_metrics_refresh(app, "dead-letters", lambda: count_dead_letters(mailer))
        if await unless_stopped(stop, bus.connect()):
            logger.info(
                "consuming mail events; SMTP %s:%d (%s)",
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_security,
            )
            await consume_mail_events(bus=bus, mailer=mailer, settings=settings, stop=stop)


async def count_dead_letters(mailer: Mailer) -> None:
    """The dead-letter gauge, as Redis has it now (the CLI replays and deletes there)."""
    DEAD_LETTERS.set(await mailer.dead_letters.count())


async def run_sink(app: FastAPI, stop: asyncio.Event) -> None:
    settings: MailerSettings = app.state.settings
    mailbox = Mailbox(settings.mail_sink_dir)
    mailbox.ensure()
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
    app.state.mailbox = mailbox
    # Routes are looked up per request, so adding them to the health app here is enough.
    app.include_router(sink_router)
    server = await start_smtp_server(
        handler=MailboxHandler(mailbox), host=settings.smtp_host, port=settings.smtp_port
    )

    async def smtp_listening() -> None:
        if not server.is_serving():
            raise ConnectionError("SMTP listener closed")

    register_readiness_check(app, "smtp", smtp_listening)
    logger.info(
        "dev mail sink: SMTP on %s:%d, messages in %s, listing on http://%s:%d/messages",
        settings.smtp_host,
        settings.smtp_port,
        settings.mail_sink_dir,
        settings.http_host,
        settings.http_port,
    )
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
