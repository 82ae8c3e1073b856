"""Streaming service settings (shared ones come from CommonSettings)."""

from __future__ import annotations

from pydantic import Field

from videoflix_shared.settings import CommonSettings


class StreamingSettings(CommonSettings):
    http_port: int = Field(8003, alias="HTTP_PORT")
