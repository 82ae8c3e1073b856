"""Streaming service: the app factory (skeleton; the streaming issue fills it in)."""

from __future__ import annotations

from fastapi import FastAPI

from videoflix_shared.app import create_app as create_service_app
from videoflix_shared.logs import configure_logging
from videoflix_streaming.settings import StreamingSettings


def create_app(settings: StreamingSettings | None = None) -> FastAPI:
    settings = settings or StreamingSettings()
    configure_logging("streaming", level=settings.log_level, fmt=settings.log_format)
    return create_service_app(service="streaming", settings=settings)
