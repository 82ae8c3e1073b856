"""`videoflix-auth serve | migrate | makemigration "message"`."""

from __future__ import annotations

from pathlib import Path

from videoflix_auth.settings import AuthSettings
from videoflix_shared.cli import run_database_service_cli

MIGRATIONS = Path(__file__).with_name("migrations")


def main(argv: list[str] | None = None) -> None:
    run_database_service_cli(
        prog="videoflix-auth",
        settings=AuthSettings(),
        app_factory="videoflix_auth.app:create_app",
        migrations=MIGRATIONS,
        argv=argv,
    )
