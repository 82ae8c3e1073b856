"""Catalog service settings (shared ones come from CommonSettings)."""

from __future__ import annotations

from pydantic import Field

from videoflix_shared.settings import CommonSettings


class CatalogSettings(CommonSettings):
    http_port: int = Field(8002, alias="HTTP_PORT")
    database_url: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/videoflix_catalog",
        alias="CATALOG_DATABASE_URL",
    )
