"""Fixtures for auth's tests: a migrated per-run database, the app with its real lifespan
(PostgreSQL, Redis, NATS from the shared per-run fixtures), and helpers to read what the
service wrote: users straight from its database, events from the run's AUTH stream (where
the mailer reads them; the outbox keeps a row only until it is published), their sealed
links opened with the run's MAIL_TOKEN_KEY."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from nats.js.errors import NotFoundError
from sqlalchemy.engine import make_url

from videoflix_auth.app import create_app
from videoflix_auth.cli import MIGRATIONS
from videoflix_auth.settings import AuthSettings
from videoflix_shared.bus import EventBus
from videoflix_shared.db import run_migrations
from videoflix_shared.events import parse_event
from videoflix_shared.sealing import SEALED_VERSION, Sealer
from videoflix_testing.clients import asgi_client as client_for

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


@pytest.fixture
async def client(auth_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(auth_app) as c:
        yield c


class AuthStream:
    """Everything published to the run's AUTH stream, read back message by message (as the
    mailer gets it) with sealed links opened: (unprefixed subject, payload in clear)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.sealer = Sealer.from_text(env["MAIL_TOKEN_KEY"])
        self.read: list[tuple[str, dict[str, Any]]] = []
        self.next_sequence = 1

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        # Sync callers inside the test's event loop: read on a thread with its own loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self._read_new()).result(timeout=30)
        return self.read

    def open(self, subject: str, data: bytes | dict[str, Any]) -> dict[str, Any]:
        """A stored event (bytes or a JSON row) with its links opened, as a JSON payload."""
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        event = parse_event(subject, raw)
        if event.version == SEALED_VERSION:
            event = self.sealer.open(event)
        return event.model_dump(mode="json")

    async def _read_new(self) -> None:
        bus = EventBus(
            url=self.env["NATS_URL"],
            subject_prefix=self.env["NATS_SUBJECT_PREFIX"],
            stream_prefix=self.env["NATS_STREAM_PREFIX"],
        )
        await bus.connect(wait=False)
        try:
            for subject, data in await raw_stream_messages(bus, "AUTH", self.next_sequence):
                with contextlib.suppress(ValueError):  # other suites' junk, if any
                    self.read.append((subject, self.open(subject, data)))
            info = await bus.js.stream_info(bus.stream("AUTH"))
            self.next_sequence = max(self.next_sequence, info.state.last_seq + 1)
        finally:
            await bus.close()


async def raw_stream_messages(
    bus: EventBus, stream: str, first_sequence: int = 1
) -> list[tuple[str, bytes]]:
    """(unprefixed subject, bytes as stored) of every message of a stream from a sequence."""
    assert bus.js is not None
    name = bus.stream(stream)
    info = await bus.js.stream_info(name)
    messages = []
    for sequence in range(max(first_sequence, info.state.first_seq), info.state.last_seq + 1):
        with contextlib.suppress(NotFoundError):  # deleted or expired
            msg = await bus.js.get_msg(name, sequence)
            messages.append((bus.unprefixed(msg.subject or ""), msg.data or b""))
    return messages


class Db:
    """Direct reads (and test-only tweaks) of auth's database, and the events it published."""

    def __init__(self, url: str, stream: AuthStream) -> None:
        self.url = url
        self.stream = stream
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
        """The payloads (links opened) of `subject` events for `email`, oldest first.

        A committed event is in the AUTH stream or, until the relay has published it, still
        in the outbox (this is sync code in the app's event loop: it cannot wait for the
        relay), so both are read; an event in both (published, row not yet deleted) once."""
        pending = [
            (row_subject, self.stream.open(row_subject, payload))
            for row_subject, payload in self.query("SELECT subject, payload FROM outbox")
        ]
        found = {
            payload["event_id"]: payload
            for published, payload in [*self.stream.events(), *pending]
            if published == subject and payload.get("email") == email
        }
        return sorted(found.values(), key=lambda payload: payload["occurred_at"])

    def count(self, table: str) -> int:
        assert table in ("users", "outbox", "link_tokens", "refresh_tokens")
        return self.query(f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608 (fixed names)


@pytest.fixture(scope="session")
def auth_stream(common_env: dict[str, str]) -> AuthStream:
    return AuthStream(common_env)


@pytest.fixture(scope="session")
def db(auth_database_url: str, auth_stream: AuthStream) -> Db:
    return Db(auth_database_url, auth_stream)


@pytest.fixture(scope="session")
def make_auth_database(
    make_database: Callable[[str], str], auth_stream: AuthStream
) -> Callable[[str], Db]:
    """Factory: another migrated auth database (dropped after the run)."""

    def factory(name: str) -> Db:
        url = make_database(name)
        run_migrations(url, MIGRATIONS)
        return Db(url, auth_stream)

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
