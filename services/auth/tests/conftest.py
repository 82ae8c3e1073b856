"""Fixtures for auth's tests: a migrated per-run database, the app with its real lifespan
(PostgreSQL, Redis, NATS from the shared per-run fixtures), and helpers to read what the
service wrote (users, outbox events) straight from its database."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from videoflix_auth.app import create_app
from videoflix_auth.cli import MIGRATIONS
from videoflix_auth.settings import AuthSettings
from videoflix_shared.db import run_migrations

PASSWORD = "Correct-Horse-42"

_counter = itertools.count()


@pytest.fixture(scope="session")
def auth_database_url(make_database: Callable[[str], str]) -> str:
    url = make_database("auth")
    run_migrations(url, MIGRATIONS)
    return url


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth-keys")


@pytest.fixture(scope="session")
def make_settings(
    common_env: dict[str, str], auth_database_url: str, keys_dir: Path
) -> Callable[..., AuthSettings]:
    """AuthSettings for tests; generous rate limits and no reset floor unless overridden."""

    def factory(**overrides: Any) -> AuthSettings:
        env: dict[str, Any] = {
            **common_env,
            "AUTH_DATABASE_URL": auth_database_url,
            "AUTH_KEYS_DIR": str(keys_dir),
            "AUTH_LOGIN_LIMIT_PER_IP": 10_000,
            "AUTH_LOGIN_LIMIT_PER_EMAIL": 10_000,
            "AUTH_RESET_LIMIT_PER_IP": 10_000,
            "AUTH_RESET_LIMIT_PER_EMAIL": 10_000,
            "AUTH_REGISTER_LIMIT_PER_IP": 10_000,
            "AUTH_EMAIL_LIMIT_PER_ADDRESS": 10_000,
            "AUTH_RESET_RESPONSE_FLOOR_MS": 0,
            "LOG_LEVEL": "WARNING",
            **overrides,
        }
        return AuthSettings(**env)

    return factory


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    """Run the app's real lifespan (startup and shutdown) around the block."""
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def auth_app(make_settings: Callable[..., AuthSettings]) -> AsyncIterator[FastAPI]:
    async with running(create_app(make_settings())) as app:
        yield app


def client_for(app: FastAPI, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(client_ip, 50000)),
        base_url="http://testserver",
    )


@pytest.fixture
async def client(auth_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(auth_app) as c:
        yield c


class Db:
    """Direct reads (and test-only tweaks) of auth's database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    def query(self, sql: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def user(self, email: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT id, email, is_active, is_admin, password_hash FROM users WHERE email = %s",
            email,
        )
        if not rows:
            return None
        return dict(
            zip(("id", "email", "is_active", "is_admin", "password_hash"), rows[0], strict=True)
        )

    def events(self, subject: str, email: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT payload FROM outbox WHERE subject = %s AND payload->>'email' = %s "
            "ORDER BY created_at",
            subject,
            email,
        )
        return [row[0] for row in rows]

    def count(self, table: str) -> int:
        assert table in ("users", "outbox", "link_tokens", "refresh_tokens")
        return self.query(f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608 (fixed names)


@pytest.fixture(scope="session")
def db(auth_database_url: str) -> Db:
    return Db(auth_database_url)


@pytest.fixture(scope="session")
def make_auth_database(make_database: Callable[[str], str]) -> Callable[[str], Db]:
    """Factory: another migrated auth database (dropped after the run)."""

    def factory(name: str) -> Db:
        url = make_database(name)
        run_migrations(url, MIGRATIONS)
        return Db(url)

    return factory


class AuthApi:
    """The auth API as a test drives it: one client (one cookie jar) plus the database."""

    password = PASSWORD

    def __init__(self, client: httpx.AsyncClient, db: Db) -> None:
        self.client = client
        self.db = db

    @staticmethod
    def new_email(tag: str = "user") -> str:
        return f"{tag}-{next(_counter)}-{uuid.uuid4().hex[:8]}@example.com"

    @staticmethod
    def link_parts(url: str) -> tuple[str, str]:
        """(uidb64, token) from a frontend link `...?uid=<uidb64>&token=<token>`."""
        query = httpx.URL(url).params
        return query["uid"], query["token"]

    async def register(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.client.post(
            "/api/register/",
            json={"email": email, "password": password, "confirmed_password": password},
        )

    def activation_link(self, email: str) -> tuple[str, str]:
        events = self.db.events("auth.user.registered", email)
        assert events, f"no activation event for {email}"
        return self.link_parts(events[-1]["activation_url"])

    async def register_active(self, email: str | None = None, password: str = PASSWORD) -> str:
        """Register and activate an account through the API; returns its address."""
        email = email or self.new_email()
        assert (await self.register(email, password)).status_code == 201
        uid, token = self.activation_link(email)
        assert (await self.client.get(f"/api/activate/{uid}/{token}/")).status_code == 200
        return email

    async def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.client.post("/api/login/", json={"email": email, "password": password})

    async def logged_in(self) -> str:
        """A new active account, logged in on this client; returns its address."""
        email = await self.register_active()
        assert (await self.login(email)).status_code == 200
        return email


@pytest.fixture
def start_app(
    make_settings: Callable[..., AuthSettings], db: Db
) -> Callable[..., contextlib.AbstractAsyncContextManager[tuple[FastAPI, AuthApi]]]:
    """Factory: `async with start_app(SETTING=value) as (app, api)` runs a separately
    configured auth app (its own lifespan) on the same database."""

    @contextlib.asynccontextmanager
    async def factory(client_ip: str = "127.0.0.1", **overrides: Any):
        app = create_app(make_settings(**overrides))
        async with running(app), client_for(app, client_ip) as client:
            yield app, AuthApi(client, db)

    return factory


@pytest.fixture
def api(client: httpx.AsyncClient, db: Db) -> AuthApi:
    return AuthApi(client, db)
