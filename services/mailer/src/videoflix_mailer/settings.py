"""Mailer settings (shared ones come from CommonSettings)."""

from __future__ import annotations

from pydantic import Field

from videoflix_shared.settings import CommonSettings


class MailerSettings(CommonSettings):
    http_port: int = Field(8006, alias="HTTP_PORT")  # health port
