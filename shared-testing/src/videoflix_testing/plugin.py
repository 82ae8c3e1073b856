"""pytest fixtures every service's tests reuse, against real servers.

Hermetic by construction: each test session gets a run id; databases are created as
`vft_<run>_<name>` and dropped afterwards, Redis keys live under `vft:<run>:` and are
deleted, NATS subjects get the prefix `vft<run>.` and streams `VFT<run>_...`, deleted at
the end. Server addresses come from TEST_POSTGRES_URL / TEST_REDIS_URL / TEST_NATS_URL
(`make test` exports them after making sure the servers answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import uvicorn

from videoflix_shared.sealing import new_key as new_mail_token_key
from videoflix_testing.cleanup import delete_nats_streams, delete_redis_keys
from videoflix_testing.tokens import TestTokenIssuer

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 30,
    interval: float = 0.1,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


async def wait_until_async(
    predicate: Callable[[], Any],
    timeout: float = 30,
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """Await `predicate()` (sync or async) until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except Exception as exc:
            last_exc = exc
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


class ServerThread:
    """Runs an ASGI app under uvicorn in a background thread on a free port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="auto",
        )
        # uvicorn captures SIGINT/SIGTERM only on the main thread: these stay pytest's
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=30, what=f"server on {self.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def make_database(run_id: str) -> Iterator[Callable[[str], str]]:
    """Factory: `make_database("auth")` -> URL of a fresh database, dropped after the run."""
    from sqlalchemy.engine import make_url

    from videoflix_shared.db import drop_database, ensure_database

    created: list[str] = []

    def factory(name: str) -> str:
        url = (
            make_url(POSTGRES_URL)
            .set(database=f"vft_{run_id}_{name}")
            .render_as_string(hide_password=False)
        )
        ensure_database(url)
        created.append(url)
        return url

    yield factory
    for url in created:
        with contextlib.suppress(Exception):
            drop_database(url)


@pytest.fixture(scope="session")
def redis_prefix(run_id: str) -> Iterator[str]:
    prefix = f"vft:{run_id}:"
    yield prefix
    delete_redis_keys(REDIS_URL, prefix)


@pytest.fixture(scope="session")
def nats_names(run_id: str) -> Iterator[dict[str, str]]:
    """Per-run NATS subject prefix and stream prefix; the run's streams are deleted after."""
    names = {"NATS_SUBJECT_PREFIX": f"vft{run_id}.", "NATS_STREAM_PREFIX": f"VFT{run_id}_"}
    yield names
    delete_nats_streams(NATS_URL, names)


@pytest.fixture(scope="session")
def token_issuer() -> TestTokenIssuer:
    """Signs RS256 access tokens the way auth does, for services tested without auth."""
    return TestTokenIssuer()


@pytest.fixture(scope="session")
def jwks_server(token_issuer: TestTokenIssuer) -> Iterator[ServerThread]:
    """Serves `token_issuer`'s public keys as JWKS at `<url>/.well-known/jwks.json`."""
    with ServerThread(token_issuer.jwks_app()) as server:
        yield server


@pytest.fixture(scope="session")
def common_env(
    tmp_path_factory: pytest.TempPathFactory,
    redis_prefix: str,
    nats_names: dict[str, str],
    jwks_server: ServerThread,
    token_issuer: TestTokenIssuer,
) -> dict[str, str]:
    """Environment every service under test shares (pass it to Settings or a subprocess)."""
    return {
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "console",
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": redis_prefix,
        "NATS_URL": NATS_URL,
        **nats_names,
        "JWT_ISSUER": token_issuer.issuer,
        "JWT_AUDIENCE": token_issuer.audience,
        "JWKS_URL": f"{jwks_server.url}/.well-known/jwks.json",
        "MEDIA_ROOT": str(tmp_path_factory.mktemp("media")),
        "PUBLIC_BASE_URL": "http://testserver",
        "FRONTEND_URL": "http://127.0.0.1:5500",
        "CORS_ALLOWED_ORIGINS": "http://127.0.0.1:5500",
        # the run's own key for sealing mail links (auth and mailer read it, others ignore it)
        "MAIL_TOKEN_KEY": new_mail_token_key(),
    }


@pytest.fixture(scope="session")
async def event_bus(nats_names: dict[str, str]) -> AsyncIterator[Any]:
    """A connected EventBus on the run's streams (to publish or inspect events in tests)."""
    from videoflix_shared.bus import EventBus

    bus = EventBus(
        url=NATS_URL,
        subject_prefix=nats_names["NATS_SUBJECT_PREFIX"],
        stream_prefix=nats_names["NATS_STREAM_PREFIX"],
    )
    await bus.connect(wait=False)
    yield bus
    await bus.close()
