"""Auth service: the app factory and its lifespan (database, readiness)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from videoflix_auth.settings import AuthSettings
from videoflix_shared.app import create_app as create_service_app
from videoflix_shared.app import register_readiness_check
from videoflix_shared.db import check_database, create_engine, create_session_factory
from videoflix_shared.logs import configure_logging


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or AuthSettings()
    configure_logging("auth", level=settings.log_level, fmt=settings.log_format)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        app.state.session_factory = create_session_factory(engine)
        register_readiness_check(app, "database", lambda: check_database(engine))
        yield
        await engine.dispose()

    return create_service_app(service="auth", settings=settings, lifespan=lifespan)
