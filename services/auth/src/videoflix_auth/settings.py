"""Auth service settings (shared ones come from CommonSettings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from videoflix_shared.settings import CommonSettings


class AuthSettings(CommonSettings):
    http_port: int = Field(8001, alias="HTTP_PORT")
    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/videoflix_auth", alias="AUTH_DATABASE_URL"
    )
    keys_dir: Path = Field(Path(".data/keys"), alias="AUTH_KEYS_DIR")
