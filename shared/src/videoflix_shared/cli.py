"""The command line of a service that owns a database: `serve | migrate | makemigration`."""

from __future__ import annotations

import argparse
from pathlib import Path

from videoflix_shared.app import run_http_service
from videoflix_shared.db import ensure_database, make_migration, run_migrations
from videoflix_shared.settings import CommonSettings


def run_database_service_cli(
    *,
    prog: str,
    settings: CommonSettings,
    database_url: str,
    app_factory: str,
    migrations: Path,
    workers: int = 1,
    argv: list[str] | None = None,
) -> None:
    """`serve` runs the HTTP service; `migrate` creates the database if needed and upgrades
    it to the newest migration; `makemigration "what changed"` autogenerates one."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("command", choices=["serve", "migrate", "makemigration"])
    parser.add_argument("message", nargs="?", default="change", help="makemigration: what changed")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        ensure_database(database_url)
        run_migrations(database_url, migrations)
    elif args.command == "makemigration":
        ensure_database(database_url)
        make_migration(database_url, migrations, args.message)
    else:
        run_http_service(app_factory, settings, workers=workers)
