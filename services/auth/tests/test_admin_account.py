"""The admin account for a newcomer and an operator: special-use addresses such as
admin@videoflix.test, production refusing to start without an admin, and
`videoflix-auth create-admin` with clear errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from videoflix_auth.app import create_app
from videoflix_testing.plugin import free_port, wait_until_async


def admin_email(domain: str = "videoflix.test") -> str:
    return f"admin-{uuid.uuid4().hex[:8]}@{domain}"


def run_cli(make_settings, *args: str, stdin: str = "", **env_overrides: str):
    """`videoflix-auth <args>` as an operator runs it, with the test stack's environment."""
    settings = make_settings()
    env = {
        **os.environ,
        "AUTH_DATABASE_URL": settings.database_url,
        "AUTH_ARGON2_MEMORY_KIB": "8192",
        **env_overrides,
    }
    return subprocess.run(
        [sys.executable, "-c", "from videoflix_auth.cli import main; main()", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_an_admin_on_a_special_use_test_domain_is_created_and_signs_in(
    start_app, db, capsys
) -> None:
    email = admin_email()
    async with start_app(ADMIN_EMAIL=email, ADMIN_PASSWORD="Admin-Secret-2026") as (_, api):
        await wait_until_async(lambda: db.user(email), timeout=10, what="admin account")
        assert (await api.login(email, "Admin-Secret-2026")).status_code == 200
        me = (await api.client.get("/api/user/")).json()
    assert (me["email"], me["is_admin"]) == (email, True)
    assert "Traceback" not in capsys.readouterr().out


async def test_an_invalid_admin_address_is_one_clear_log_line_not_a_traceback(
    start_app, capsys
) -> None:
    async with start_app(ADMIN_EMAIL="admin@localhost", ADMIN_PASSWORD="Admin-Secret-2026") as (
        app,
        api,
    ):
        await asyncio.gather(*app.state.background_tasks, return_exceptions=True)
        assert (await api.client.get("/healthz")).status_code == 200
    logged = capsys.readouterr().out
    assert "admin account not created from ADMIN_EMAIL" in logged
    assert "'admin@localhost' is not a valid address" in logged
    assert "Traceback" not in logged


async def test_production_refuses_to_start_without_an_admin(make_settings) -> None:
    app = create_app(make_settings(ENVIRONMENT="production", ADMIN_EMAIL="", ADMIN_PASSWORD=""))
    with pytest.raises(RuntimeError, match="ADMIN_EMAIL and ADMIN_PASSWORD"):
        async with app.router.lifespan_context(app):
            pass


def test_serve_in_production_without_an_admin_exits_with_the_reason(make_settings) -> None:
    result = run_cli(
        make_settings, "serve", ENVIRONMENT="production", ADMIN_EMAIL="", ADMIN_PASSWORD=""
    )
    assert result.returncode == 1
    assert "refusing to start" in result.stderr
    assert "ADMIN_EMAIL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.usefixtures("db")
async def test_create_admin_generates_a_password_once_and_it_signs_in(
    make_settings, start_app
) -> None:
    email = admin_email()
    result = run_cli(make_settings, "create-admin", email)
    assert result.returncode == 0, result.stderr
    assert f"admin account {email} is ready" in result.stdout
    password = result.stdout.split("password: ")[1].split()[0]
    async with start_app() as (_, api):
        assert (await api.login(email, password)).status_code == 200
        assert (await api.client.get("/api/user/")).json()["is_admin"] is True


async def test_create_admin_resets_an_existing_account_and_makes_it_admin(
    make_settings, start_app, db
) -> None:
    async with start_app() as (_, api):
        email = await api.register_active()
    result = run_cli(
        make_settings, "create-admin", email, "--password-stdin", stdin="Reset-Admin-2026\n"
    )
    assert result.returncode == 0, result.stderr
    assert "password:" not in result.stdout, "a password given on stdin is never printed"
    async with start_app() as (_, api):
        assert (await api.login(email, "Reset-Admin-2026")).status_code == 200
    assert db.user(email)["is_admin"] is True


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["not-an-address"], "", "is not a valid address"),
        (["admin@localhost"], "", "is not a valid address"),
        (["--password-stdin", "weak-admin@example.com"], "short\n", "too weak"),
    ],
)
def test_create_admin_refuses_bad_input_with_a_clear_message(
    make_settings, db, args, stdin, message
) -> None:
    result = run_cli(make_settings, "create-admin", *args, stdin=stdin)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert db.user("weak-admin@example.com") is None


def test_create_admin_says_when_the_database_is_unreachable(make_settings) -> None:
    url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/videoflix_auth"
    result = run_cli(make_settings, "create-admin", admin_email(), AUTH_DATABASE_URL=url)
    assert result.returncode == 1
    assert "cannot write to the auth database" in result.stderr
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr
