"""`videoflix-auth serve | migrate | makemigration "message" | create-admin EMAIL`."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from videoflix_auth.passwords import PasswordHasher
from videoflix_auth.service import InvalidAdmin, admin_configuration_problem, put_admin
from videoflix_auth.settings import AuthSettings
from videoflix_shared.cli import run_database_service_cli
from videoflix_shared.db import create_engine, create_session_factory

MIGRATIONS = Path(__file__).with_name("migrations")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    settings = AuthSettings()
    if argv[:1] == ["create-admin"]:
        sys.exit(create_admin_command(settings, argv[1:]))
    if argv[:1] == ["serve"]:
        problem = admin_configuration_problem(settings)
        if problem and settings.is_production:
            sys.exit(f"videoflix-auth: refusing to start: {problem}")
    run_database_service_cli(
        prog="videoflix-auth",
        settings=settings,
        database_url=settings.database_url,
        app_factory="videoflix_auth.app:create_app",
        migrations=MIGRATIONS,
        argv=argv,
    )


def create_admin_command(settings: AuthSettings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="videoflix-auth create-admin",
        description="Create an admin account, or make an existing account an active admin "
        "with a new password. Without --password-stdin a strong password is generated and "
        "printed once.",
    )
    parser.add_argument("email")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    args = parser.parse_args(argv)
    generated = not args.password_stdin
    password = secrets.token_urlsafe(18) if generated else sys.stdin.readline().rstrip("\n")
    try:
        email = asyncio.run(_put_admin(settings, args.email, password))
    except InvalidAdmin as exc:
        print(f"videoflix-auth create-admin: {exc}", file=sys.stderr)
        return 2
    except (OperationalError, ProgrammingError, DBAPIError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(
            f"videoflix-auth create-admin: cannot write to the auth database at "
            f"{_without_password(settings.database_url)} ({reason}). Is PostgreSQL running, "
            f"and has `videoflix-auth migrate` run?",
            file=sys.stderr,
        )
        return 1
    print(f"admin account {email} is ready")
    if generated:
        print(f"password: {password}   (shown once; sign in on /admin/)")
    return 0


async def _put_admin(settings: AuthSettings, email: str, password: str) -> str:
    engine = create_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session:
            return await put_admin(
                session,
                PasswordHasher.from_settings(settings),
                email=email,
                password=password,
                allow_weak=False,
            )
    finally:
        await engine.dispose()


def _without_password(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
