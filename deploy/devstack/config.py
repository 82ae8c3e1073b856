"""What the launcher runs and with which settings: the process table, the port layout, the
stack's environment (defaults from the port base, then `.env`, then the environment) and
the development admin."""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Process:
    name: str
    command: str  # {data}: the data directory, {port}: its port
    port_offset: int  # HTTP port (service or health) = port base + offset
    health_path: str | None = "/healthz"
    reads_http_port: bool = True  # a Videoflix process: its port comes as HTTP_PORT


PROCESSES = (
    Process(
        "gateway",
        "caddy run --config {data}/Caddyfile --adapter caddyfile",
        0,
        None,
        reads_http_port=False,
    ),
    Process("auth", "videoflix-auth serve", 1),
    Process("catalog", "videoflix-catalog serve", 2),
    Process("streaming", "videoflix-streaming serve", 3),
    Process("transcoder-dispatcher", "videoflix-transcoder dispatcher", 4),
    Process("transcoder-worker", "videoflix-transcoder worker", 5),
    Process("mailer", "videoflix-mailer consume", 6),
    Process("mail-sink", "videoflix-mailer sink", 7),
)
# With `up --observe` (make up OBSERVE=1): Debian's Prometheus scraping every process, with
# the rules of deploy/observability (deploy/devstack/observe.py renders its configuration).
PROMETHEUS = Process(
    "prometheus",
    "prometheus --config.file={data}/prometheus/prometheus.yml"
    " --storage.tsdb.path={data}/prometheus/data --storage.tsdb.retention.time=7d"
    " --web.listen-address=127.0.0.1:{port}",
    9,
    "/-/ready",
    reads_http_port=False,
)
MAIL_SINK_OFFSET = 7
SMTP_SINK_OFFSET = 25
SECURED_NATS_OFFSET = 22  # the stack's own NATS when the configured one accepts anyone
MIGRATIONS = ("videoflix-auth migrate", "videoflix-catalog migrate")


def processes(*, observe: bool = False) -> tuple[Process, ...]:
    """What `up` runs: every process of the stack, and Prometheus when observing."""
    return (*PROCESSES, PROMETHEUS) if observe else PROCESSES


def log(msg: str) -> None:
    print(f"devstack | {msg}", file=sys.stderr, flush=True)


def stack_env(data_dir: Path, port_base: int) -> dict[str, str]:
    """Defaults derived from the port base, overridden by .env, overridden by the environment."""
    defaults = {
        "AUTH_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/videoflix_auth",
        "CATALOG_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/videoflix_catalog",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "NATS_URL": "nats://127.0.0.1:4222",
        "JWKS_URL": f"http://127.0.0.1:{port_base + 1}/.well-known/jwks.json",
        "CATALOG_TRANSCODER_JOBS_URL": f"http://127.0.0.1:{port_base + 4}/jobs",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port_base}",
        "MEDIA_ROOT": str(data_dir / "media"),
        "AUTH_KEYS_DIR": str(data_dir / "keys"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port_base + SMTP_SINK_OFFSET),
        "MAIL_SINK_DIR": str(data_dir / "mail"),
        "LOG_FORMAT": "console",
    }
    env_file = ROOT / ".env"
    from_file = (
        {k: v for k, v in dotenv_values(env_file).items() if v is not None}
        if env_file.exists()
        else {}
    )
    merged = {**defaults, **from_file}
    merged.update({k: os.environ[k] for k in merged if k in os.environ})
    return merged


def setting(env: dict[str, str], name: str, default: str) -> str:
    """A setting stack_env does not carry (it has defaults only for addresses)."""
    return env.get(name, os.environ.get(name, default))


DEV_ADMIN_FILE = "dev-admin.json"
DEV_ADMIN_EMAIL = "admin@videoflix.test"


def ensure_development_admin(env: dict[str, str], data_dir: Path) -> None:
    """Without ADMIN_EMAIL / ADMIN_PASSWORD a development stack gets an admin of its own:
    generated once into <data dir>/dev-admin.json (0600) and printed then; production
    refuses to start without one configured."""
    if setting(env, "ADMIN_EMAIL", "") and setting(env, "ADMIN_PASSWORD", ""):
        return
    if setting(env, "ENVIRONMENT", "development") == "production":
        raise SystemExit("devstack: ENVIRONMENT=production needs ADMIN_EMAIL and ADMIN_PASSWORD")
    path = data_dir / DEV_ADMIN_FILE
    if path.exists():
        admin = json.loads(path.read_text())
        log(f"admin        {admin['email']} (development admin; password in {path})")
    else:
        admin = {"email": DEV_ADMIN_EMAIL, "password": secrets.token_urlsafe(15)}
        path.touch(mode=0o600)
        path.write_text(json.dumps(admin, indent=2) + "\n")
        log("no ADMIN_EMAIL / ADMIN_PASSWORD configured: created a development admin")
        log(f"admin        {admin['email']}  password {admin['password']}  (kept in {path})")
    env["ADMIN_EMAIL"], env["ADMIN_PASSWORD"] = admin["email"], admin["password"]
