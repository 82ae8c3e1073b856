"""The stack under test: a native one started for the session (`launch`), or one already
up (`existing_stack`, from E2E_BASE_URL and friends), both described by a `Stack`."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from videoflix_shared.processes import stop_process
from videoflix_testing.plugin import free_port

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"
STACK_LOG = ARTIFACTS / "e2e-stack.log"

FRONTEND_PORT = 5500
STACK_START_TIMEOUT = 180  # migrations + eight processes on a busy 2-core machine
STACK_STOP_TIMEOUT = 45  # the launcher stops honcho (20 s at most), then its servers
REFRESH_GRACE_SECONDS = 2  # the started stack's AUTH_REFRESH_REUSE_GRACE_SECONDS
PORT_OFFSETS = (*range(10), 22, 25)  # 9: Prometheus, 22: the stack's own NATS, 25: SMTP sink
PROMETHEUS_OFFSET = 9  # the launcher's `up --observe` (deploy/devstack/config.py)


@dataclass(frozen=True)
class Stack:
    base_url: str  # the gateway, e.g. http://127.0.0.1:18000
    mail_url: str  # the dev mail sink's HTTP listing
    admin_email: str
    admin_password: str
    frontend_origin: str  # where the test page is served from (a configured CORS origin)
    frontend_url: str  # what email links point at (FRONTEND_URL of the stack)
    prometheus_url: str  # the operator's Prometheus scraping every process of the stack

    @property
    def frontend_port(self) -> int:
        return urlsplit(self.frontend_origin).port or 80


@dataclass(frozen=True)
class RunNames:
    """The run's own names on the shared servers, apart from the services' own suites."""

    run_id: str
    auth_database_url: str
    catalog_database_url: str
    redis_prefix: str
    subject_prefix: str
    stream_prefix: str


def existing_stack(base_url: str) -> Stack:
    """A stack that is already up (E2E_BASE_URL), e.g. compose; see the package docstring."""
    mail_url = os.environ.get("E2E_MAIL_URL")
    if not mail_url:
        port = urlsplit(base_url).port or 80
        mail_url = f"http://127.0.0.1:{port + 7}"
    email = os.environ.get("E2E_ADMIN_EMAIL") or os.environ.get("ADMIN_EMAIL")
    password = os.environ.get("E2E_ADMIN_PASSWORD") or os.environ.get("ADMIN_PASSWORD")
    if not (email and password):
        pytest.fail("E2E_BASE_URL is set: also set E2E_ADMIN_EMAIL and E2E_ADMIN_PASSWORD")
    frontend = f"http://127.0.0.1:{FRONTEND_PORT}"
    port = urlsplit(base_url).port or 80
    prometheus = os.environ.get("E2E_PROMETHEUS_URL") or f"http://127.0.0.1:{port + 9}"
    return Stack(
        base_url=base_url,
        mail_url=mail_url.rstrip("/"),
        admin_email=email,
        admin_password=password,
        frontend_origin=frontend,
        frontend_url=os.environ.get("E2E_FRONTEND_URL") or frontend,
        prometheus_url=prometheus.rstrip("/"),
    )


@contextlib.contextmanager
def launch(data_dir: Path, names: RunNames) -> Iterator[Stack]:
    """`python -m deploy.devstack up` on a free port block with the run's names, until the
    block ends; then the launcher is stopped and the run's users and data removed."""
    port_base = free_port_block()
    frontend_port = FRONTEND_PORT if port_free(FRONTEND_PORT) else free_port()
    stack = Stack(
        base_url=f"http://127.0.0.1:{port_base}",
        mail_url=f"http://127.0.0.1:{port_base + 7}",
        admin_email=f"e2e-admin-{names.run_id}@example.com",
        admin_password=f"Admin-{secrets.token_urlsafe(12)}-9",
        frontend_origin=f"http://127.0.0.1:{frontend_port}",
        frontend_url=f"http://127.0.0.1:{FRONTEND_PORT}",
        prometheus_url=f"http://127.0.0.1:{port_base + PROMETHEUS_OFFSET}",
    )
    overrides = stack_overrides(stack, port_base, data_dir, names)
    launcher = start_launcher(overrides)
    try:
        wait_stack_healthy(launcher, port_base)
        yield stack
    finally:
        # SIGTERM to the launcher stops every process it started
        stop_process(launcher, timeout=STACK_STOP_TIMEOUT, group=True)
        drop_service_users(overrides)  # its NATS (streams included) lived in data_dir
        shutil.rmtree(data_dir, ignore_errors=True)


def stack_overrides(
    stack: Stack, port_base: int, data_dir: Path, names: RunNames
) -> dict[str, str]:
    """The started stack's environment: its ports, data, names, admin, and limits."""
    origins = {f"http://127.0.0.1:{FRONTEND_PORT}", stack.frontend_origin}
    return {
        "VIDEOFLIX_PORT_BASE": str(port_base),
        "VIDEOFLIX_DATA_DIR": str(data_dir),
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "console",
        "AUTH_DATABASE_URL": names.auth_database_url,
        "CATALOG_DATABASE_URL": names.catalog_database_url,
        "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "REDIS_KEY_PREFIX": names.redis_prefix,
        "NATS_URL": os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222"),
        "NATS_SUBJECT_PREFIX": names.subject_prefix,
        "NATS_STREAM_PREFIX": names.stream_prefix,
        "JWKS_URL": f"http://127.0.0.1:{port_base + 1}/.well-known/jwks.json",
        "PUBLIC_BASE_URL": stack.base_url,
        "FRONTEND_URL": stack.frontend_url,
        "CORS_ALLOWED_ORIGINS": ",".join(sorted(origins)),
        "MEDIA_ROOT": str(data_dir / "media"),
        "AUTH_KEYS_DIR": str(data_dir / "keys"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port_base + 25),
        "MAIL_SINK_DIR": str(data_dir / "mail"),
        "ADMIN_EMAIL": stack.admin_email,
        "ADMIN_PASSWORD": stack.admin_password,
        # The whole suite logs in from 127.0.0.1: lift the per-address limits so they do not
        # decide which test runs last; the per-account limits (what the 429 tests prove)
        # keep their defaults.
        "AUTH_LOGIN_LIMIT_PER_IP": "1000",
        "AUTH_RESET_LIMIT_PER_IP": "1000",
        "AUTH_REGISTER_LIMIT_PER_IP": "1000",
        "AUTH_REFRESH_REUSE_GRACE_SECONDS": str(REFRESH_GRACE_SECONDS),
        # Films (issue 17) at test scale: a 36 s upload is a film of 10 s chunks; the other
        # suites' clips (25 s at most) keep the single pass.
        "TRANSCODER_FILM_THRESHOLD_SECONDS": "30",
        "TRANSCODER_CHUNK_SECONDS": "10",
    }


def start_launcher(overrides: dict[str, str]) -> subprocess.Popen[bytes]:
    """The launcher in a session of its own, its output in test-artifacts/e2e-stack.log;
    with Prometheus (`--observe`), as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if k != "HTTP_PORT"} | overrides
    # The launcher runs the services' console scripts: they sit beside this interpreter
    # (the venv's bin), which is not on PATH when pytest is started without `uv run`.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    ARTIFACTS.mkdir(exist_ok=True)
    with open(STACK_LOG, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "deploy.devstack", "up", "--observe"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_stack_healthy(launcher: subprocess.Popen[bytes], port_base: int) -> None:
    """Until `devstack status` says every process is healthy; fails with the log's end."""
    deadline = time.monotonic() + STACK_START_TIMEOUT
    status = ""
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise RuntimeError(
                f"the stack launcher exited with {launcher.returncode}; its log "
                f"({STACK_LOG}) ends with:\n{stack_log_tail()}"
            )
        check = subprocess.run(
            [sys.executable, "-m", "deploy.devstack", "status", "--port-base", str(port_base)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        status = check.stdout
        if check.returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(
        f"the stack was not healthy within {STACK_START_TIMEOUT}s:\n{status}\n"
        f"log ({STACK_LOG}) ends with:\n{stack_log_tail()}"
    )


def stack_log_tail(lines: int = 60) -> str:
    """The end of the stack's log without the health probes' access lines."""
    with contextlib.suppress(OSError):
        text = STACK_LOG.read_text(errors="replace").splitlines()
        useful = [line for line in text if "/healthz" not in line and "/readyz" not in line]
        return "\n".join(useful[-lines:])
    return ""


def drop_service_users(env: dict[str, str]) -> None:
    """The stack made a PostgreSQL role per database and Redis ACL users for its prefix on
    the shared servers: remove them with the run's databases."""
    from deploy import privileges
    from videoflix_shared.db import drop_database

    for variable in privileges.DATABASE_URL_VARIABLE.values():
        with contextlib.suppress(Exception):
            drop_database(env[variable])
            privileges.drop_database_role(env[variable])
    privileges.drop_redis_users(env["REDIS_URL"], env["REDIS_KEY_PREFIX"])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block() -> int:
    """A port base whose gateway, service, health and SMTP ports are all free."""
    bases = list(range(18000, 19900, 100))
    start = secrets.randbelow(len(bases))  # engineers running the suite at once spread out
    for base in bases[start:] + bases[:start]:
        if all(port_free(base + offset) for offset in PORT_OFFSETS):
            return base
    raise RuntimeError("no free port block between 18000 and 19900 for the e2e stack")
