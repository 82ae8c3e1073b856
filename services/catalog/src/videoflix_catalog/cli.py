"""`videoflix-catalog serve | migrate | makemigration "message"`."""

from __future__ import annotations

import argparse
from pathlib import Path

from videoflix_catalog.settings import CatalogSettings
from videoflix_shared.app import run_http_service
from videoflix_shared.db import ensure_database, make_migration, run_migrations

MIGRATIONS = Path(__file__).with_name("migrations")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="videoflix-catalog")
    parser.add_argument("command", choices=["serve", "migrate", "makemigration"])
    parser.add_argument("message", nargs="?", default="change")
    args = parser.parse_args(argv)
    settings = CatalogSettings()
    if args.command == "migrate":
        ensure_database(settings.database_url)
        run_migrations(settings.database_url, MIGRATIONS)
    elif args.command == "makemigration":
        ensure_database(settings.database_url)
        make_migration(settings.database_url, MIGRATIONS, args.message)
    else:
        # Several workers: the list endpoint is CPU-bound per request; each worker runs its
        # own relay, consumer and sweeper, which are safe to run side by side.
        run_http_service("videoflix_catalog.app:create_app", settings, workers=settings.workers)
