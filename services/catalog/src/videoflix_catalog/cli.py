"""`videoflix-catalog serve | migrate | makemigration "message"`."""

from __future__ import annotations

from pathlib import Path

from videoflix_catalog.settings import CatalogSettings
from videoflix_shared.cli import run_database_service_cli

MIGRATIONS = Path(__file__).with_name("migrations")


def main(argv: list[str] | None = None) -> None:
    settings = CatalogSettings()
    run_database_service_cli(
        prog="videoflix-catalog",
        settings=settings,
        database_url=settings.database_url,
        app_factory="videoflix_catalog.app:create_app",
        migrations=MIGRATIONS,
        # Several workers: the list endpoint is CPU-bound per request; each worker runs its
        # own relay, consumer and sweeper, which are safe to run side by side.
        workers=settings.workers,
        argv=argv,
    )
