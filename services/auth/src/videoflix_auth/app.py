"""Auth service: the app factory and its lifespan.

The lifespan creates every resource (database engine, Redis, signing keys, token verifier,
password hasher, event bus and outbox relay) and stores it on `app.state`. The service
starts and serves while NATS is down: the bus connects in a background task and the
outbox keeps events until it is back. The admin account is put in place in the background
too, retried until the database answers.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from videoflix_auth.api import router
from videoflix_auth.keys import load_key_set
from videoflix_auth.passwords import PasswordHasher
from videoflix_auth.ratelimit import RateLimiter
from videoflix_auth.service import AuthService, InvalidAdmin, admin_configuration_problem
from videoflix_auth.settings import AuthSettings
from videoflix_shared.app import create_service_app, register_readiness_check
from videoflix_shared.bus import EventBus
from videoflix_shared.db import check_database, create_engine, create_session_factory
from videoflix_shared.events import AUTH_STREAM
from videoflix_shared.lifespan import LifespanStack
from videoflix_shared.logs import configure_logging
from videoflix_shared.outbox import OutboxRelay
from videoflix_shared.redis import create_redis
from videoflix_shared.sealing import Sealer, sealer_from_settings
from videoflix_shared.security import StaticKeySource, TokenVerifier

logger = logging.getLogger(__name__)


async def _ensure_admin_until_done(service: AuthService, app: FastAPI) -> None:
    delay = 0.5
    while True:
        try:
            async with app.state.session_factory() as session:
                await service.ensure_admin(session)
            return
        except InvalidAdmin as exc:
            logger.error("admin account not created from ADMIN_EMAIL/ADMIN_PASSWORD: %s", exc)
            return
        except Exception as exc:
            logger.warning("admin account not in place yet (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


def _check_configuration(settings: AuthSettings) -> Sealer | None:
    """Refuse to start in production with an unusable admin account configuration or
    without MAIL_TOKEN_KEY; returns the sealer of mail links (None: links go in clear)."""
    problem = admin_configuration_problem(settings)
    if problem and settings.is_production:
        raise RuntimeError(problem)
    sealer = sealer_from_settings(
        settings.mail_token_key,
        settings.mail_token_keys_previous,
        required=settings.is_production,
        service="auth",
    )
    if sealer is None:
        logger.warning("MAIL_TOKEN_KEY is not set: mail events carry their links in clear")
    return sealer


def _open_resources(app: FastAPI, settings: AuthSettings, resources: LifespanStack) -> None:
    """Create every resource onto `app.state`, each closed by `resources` on the way out."""
    sealer = _check_configuration(settings)
    keys = load_key_set(settings.keys_dir, generate_if_missing=not settings.is_production)
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
    )
    resources.push_async_callback(engine.dispose)
    session_factory = create_session_factory(engine)
    redis = create_redis(settings)
    resources.push_async_callback(redis.aclose)
    bus = EventBus.from_settings(
        settings, principal="auth", max_age={AUTH_STREAM: settings.stream_max_age_seconds}
    )
    resources.push_async_callback(bus.close)
    relay = OutboxRelay(session_factory, bus)
    # Mail events are sealed as they enter the outbox (only auth and mailer hold the key).
    session_factory.configure(info={"outbox_sealer": sealer})
    service = AuthService(
        settings=settings,
        hasher=PasswordHasher.from_settings(settings),
        keys=keys,
        limiter=RateLimiter(redis, settings),
        on_event_committed=relay.wake.set,
    )
    app.state.session_factory = session_factory
    app.state.signing_keys = keys
    app.state.token_verifier = TokenVerifier(
        StaticKeySource(keys.public_keys()),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
    )
    app.state.auth_service = service
    app.state.event_bus = bus
    app.state.outbox_relay = relay
    # Readiness gates routing (the container health check uses /readyz), so it requires
    # only what auth cannot serve without: its database. With NATS down events wait in
    # the outbox (reported as degraded), with Redis down rate limits fail open (logged).
    register_readiness_check(app, "database", lambda: check_database(engine))
    register_readiness_check(app, "nats", bus.check, required=False)
    register_readiness_check(app, "outbox", relay.check, required=False)

    app.state.background_tasks = [
        resources.start_task(bus.connect(), name="nats-connect"),
        resources.start_task(_ensure_admin_until_done(service, app), name="ensure-admin"),
    ]
    relay.start()
    resources.push_async_callback(relay.stop)


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or AuthSettings()
    configure_logging("auth", level=settings.log_level, fmt=settings.log_format)

    app = create_service_app(
        service="auth",
        settings=settings,
        routers=[router],
        open_resources=lambda app, resources: _open_resources(app, settings, resources),
        description="Accounts, RS256 cookie sessions, JWKS and email flows.",
    )
    return app
