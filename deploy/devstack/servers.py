"""The servers the stack needs, PostgreSQL, Redis and NATS: used where the configured URLs
answer, otherwise started as private instances from the distribution's binaries under the
data directory (on the configured ports, so the URLs stay right), and stopped again.

`<data dir>/private/` records what this launcher started (PostgreSQL's port, the others'
pids), so `down` and a later start find leftovers of a launcher that died.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from deploy import privileges
from deploy.devstack.config import SECURED_NATS_OFFSET, log, setting
from deploy.devstack.system import ensure_binary, port_open, wait_port
from videoflix_shared.processes import stop_pid

PRIVATE_PG_HBA = """# written by deploy/devstack at every start of make up's private PostgreSQL
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""

StartServer = Callable[[Path, int], None]  # (data dir, port)


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url.replace("postgresql+psycopg", "postgresql"))
    return parts.hostname or "127.0.0.1", parts.port or default_port


def is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def _spawn_daemon(args: list[str], log_file: Path, pid_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))


def _write_private(path: Path, text: str) -> None:
    """A config file holding a password: readable by its owner only, from its creation."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


# --- PostgreSQL -----------------------------------------------------------------------------


def _as_postgres_user() -> list[str]:
    """The command prefix that runs a PostgreSQL tool: it refuses to run as root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _initdb(pgdata: Path) -> None:
    initdb = ensure_binary("initdb", "postgresql")
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(pgdata, "postgres", "postgres")
    subprocess.run(
        [
            *_as_postgres_user(),
            initdb,
            "-D",
            str(pgdata),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def start_private_postgres(
    data_dir: Path, port: int, superuser_password: str | None = None
) -> None:
    """With `superuser_password` (make up) TCP logins need a password (scram-sha-256); the
    socket, in a 0700 directory of the data dir, stays trusted for the launcher."""
    pg_ctl = ensure_binary("pg_ctl", "postgresql")
    pgdata = data_dir / "postgres"
    if not (pgdata / "PG_VERSION").exists():
        _initdb(pgdata)
    sock = pgdata / "sock"
    sock.mkdir(exist_ok=True)
    sock.chmod(0o700)
    if superuser_password is not None:
        (pgdata / "pg_hba.conf").write_text(PRIVATE_PG_HBA)
    if os.geteuid() == 0:
        shutil.chown(sock, "postgres", "postgres")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off"
    subprocess.run(
        [
            *_as_postgres_user(),
            pg_ctl,
            "-D",
            str(pgdata),
            "-l",
            str(pgdata / "server.log"),
            "-w",
            "-o",
            options,
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (data_dir / "private").mkdir(exist_ok=True)
    (data_dir / "private" / "postgres").write_text(str(port))
    if superuser_password is not None:
        _set_superuser_password(sock, port, superuser_password)


def _set_superuser_password(sock: Path, port: int, password: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=str(sock), port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(password)))


def stop_private_postgres(data_dir: Path) -> None:
    pg_ctl = ensure_binary("pg_ctl", "postgresql")
    subprocess.run(
        [
            *_as_postgres_user(),
            pg_ctl,
            "-D",
            str(data_dir / "postgres"),
            "-m",
            "fast",
            "-w",
            "stop",
        ],
        check=False,
        stdout=subprocess.DEVNULL,
    )


# --- Redis and NATS ---------------------------------------------------------------------------


def start_private_redis(data_dir: Path, port: int, admin_password: str | None = None) -> None:
    """With `admin_password` the default user needs it (set in a 0600 config file, never on
    the command line); the services' own users are added by deploy/privileges.py."""
    redis = ensure_binary("redis-server", "redis-server")
    d = data_dir / "redis"
    d.mkdir(parents=True, exist_ok=True)
    config: list[str] = []
    if admin_password is not None:
        _write_private(d / "redis.conf", f"requirepass {admin_password}\n")
        config = [str(d / "redis.conf")]
    args = [redis, *config, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d)]
    args += ["--appendonly", "yes", "--save", ""]
    _spawn_daemon(args, d / "redis.log", data_dir / "private" / "redis.pid")


def start_private_nats(data_dir: Path, port: int, config: str | None = None) -> None:
    """`config` (a whole nats-server config: users, listen, store) goes to a 0600 file."""
    nats = ensure_binary("nats-server", "nats-server")
    d = data_dir / "nats"
    d.mkdir(parents=True, exist_ok=True)
    args = [nats, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(d)]
    if config is not None:
        _write_private(d / "nats.conf", config)
        args = [nats, "-c", str(d / "nats.conf")]
    _spawn_daemon(args, d / "nats.log", data_dir / "private" / "nats.pid")


# --- all of them ------------------------------------------------------------------------------


def _servers(
    env: dict[str, str], credentials: privileges.Credentials | None
) -> list[tuple[str, tuple[str, int], StartServer]]:
    """(name, configured address, how to start a private one) of each server to make answer.

    With `credentials` (make up) a private PostgreSQL and Redis get an admin password and
    NATS is left to `ensure_secured_nats`."""
    postgres_password = redis_password = None
    if credentials is not None:
        postgres_password = credentials.password("postgres:superuser")
        redis_password = credentials.password("redis:default")
    servers: list[tuple[str, tuple[str, int], StartServer]] = [
        (
            "postgres",
            host_port(env["AUTH_DATABASE_URL"], 5432),
            functools.partial(start_private_postgres, superuser_password=postgres_password),
        ),
        (
            "redis",
            host_port(env["REDIS_URL"], 6379),
            functools.partial(start_private_redis, admin_password=redis_password),
        ),
    ]
    if credentials is None:
        servers.append(("nats", host_port(env["NATS_URL"], 4222), start_private_nats))
    return servers


def ensure_infra(
    env: dict[str, str], data_dir: Path, *, credentials: privileges.Credentials | None = None
) -> list[str]:
    """Make PostgreSQL, Redis and NATS answer; returns the names of private instances started.

    With `credentials` (make up) a private PostgreSQL and Redis get an admin password
    (`provision` puts it into the admin URLs) and NATS is left to `ensure_secured_nats`."""
    (data_dir / "private").mkdir(parents=True, exist_ok=True)
    started = []
    for name, (host, port), start in _servers(env, credentials):
        if port_open(host, port):
            log(f"{name}: using the server at {host}:{port}")
            continue
        if not is_local(host):
            raise SystemExit(
                f"devstack: {name} at {host}:{port} does not answer (and is not local, so no private instance)"
            )
        log(
            f"{name}: nothing answers at {host}:{port}; starting a private instance in {data_dir / name}"
        )
        start(data_dir, port)
        wait_port(host, port, name)
        started.append(name)
    return started


def ensure_secured_nats(
    env: dict[str, str], data_dir: Path, port_base: int, credentials: privileges.Credentials
) -> str:
    """The URL of a NATS that enforces the per-service users (without credentials in it)."""
    host, port = host_port(env["NATS_URL"], 4222)
    requires_auth = privileges.nats_requires_auth(host, port)
    if requires_auth:
        log(
            f"nats: using the server at {host}:{port}; it asks for credentials, so it must "
            "hold the users of `python -m deploy.devstack nats-config` (docs/SECURITY.md)"
        )
        return f"nats://{host}:{port}"
    if requires_auth is None and not is_local(host):
        raise SystemExit(f"devstack: nats at {host}:{port} does not answer (and is not local)")
    if requires_auth is False:
        reason = f"the server at {host}:{port} accepts anyone and cannot get users at runtime"
        host, port = "127.0.0.1", port_base + SECURED_NATS_OFFSET
        if privileges.nats_requires_auth(host, port):  # ours, left by a launcher that died
            log(f"nats: {reason}; using the stack's own nats-server still running on {port}")
            return f"nats://{host}:{port}"
    else:
        reason = f"nothing answers at {host}:{port}"
    log(
        f"nats: {reason}; starting the stack's own nats-server with per-service users on "
        f"{host}:{port} (data in {data_dir / 'nats'})"
    )
    config = privileges.nats_server_config(
        port=port,
        store_dir=data_dir / "nats",
        credentials=credentials,
        subject_prefix=setting(env, "NATS_SUBJECT_PREFIX", ""),
        stream_prefix=setting(env, "NATS_STREAM_PREFIX", "VIDEOFLIX_"),
    )
    start_private_nats(data_dir, port, config)
    wait_port(host, port, "nats")
    return f"nats://{host}:{port}"


def stop_private_infra(data_dir: Path) -> None:
    """Stop whatever this launcher (or one that died) started under `data_dir`."""
    private = data_dir / "private"
    if (private / "postgres").exists():
        log("stopping private postgres")
        stop_private_postgres(data_dir)
        (private / "postgres").unlink()
    for name in ("redis", "nats"):
        pid_file = private / f"{name}.pid"
        if pid_file.exists():
            log(f"stopping private {name}")
            stop_pid(int(pid_file.read_text()), timeout=10)
            pid_file.unlink()
