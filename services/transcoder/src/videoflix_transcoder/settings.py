"""Transcoder settings (shared ones come from CommonSettings)."""

from __future__ import annotations

from pydantic import Field

from videoflix_shared.settings import CommonSettings


class TranscoderSettings(CommonSettings):
    http_port: int = Field(8004, alias="HTTP_PORT")  # health port
