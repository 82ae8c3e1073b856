"""The native launcher: the whole Videoflix stack as local processes, one command.

    python -m deploy.devstack up      [--data-dir .data] [--port-base 8000]
    python -m deploy.devstack down    [--data-dir .data]
    python -m deploy.devstack infra   [--data-dir .data] [--print-env]
    python -m deploy.devstack status  [--data-dir .data] [--port-base 8000]
    python -m deploy.devstack nats-config [--data-dir .data]   (users for an operator's NATS)

`up` uses PostgreSQL, Redis and NATS at the configured URLs when they answer, and otherwise
starts private instances from the distribution's binaries under the data directory (on the
configured ports, so the URLs stay right). Every process runs as its own least-privileged
user on each server (deploy/privileges.py, docs/SECURITY.md): the configured URLs are the
launcher's admin connections and reach no process. A NATS server that accepts anyone cannot
get users at runtime, so then the stack runs its own NATS with them (port base + 22).
It creates the databases and roles, runs migrations,
renders the Caddy config from gateway/routes.toml, runs every process under honcho with
interleaved, prefixed logs, reports health, and on Ctrl-C or `down` stops everything it
started, private servers included. Running it twice is harmless: a second `up` sees the
first and says so.

Configuration comes from the environment, then `.env`, then defaults derived from the
port base (see .env.example).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from deploy import privileges
from gateway.generate import load_routes, render_caddyfile

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Process:
    name: str
    command: str
    port_offset: int | None  # HTTP port (service or health) = port base + offset
    health_path: str | None = "/healthz"


PROCESSES = (
    Process("gateway", "caddy run --config {data}/Caddyfile --adapter caddyfile", 0, None),
    Process("auth", "videoflix-auth serve", 1),
    Process("catalog", "videoflix-catalog serve", 2),
    Process("streaming", "videoflix-streaming serve", 3),
    Process("transcoder-dispatcher", "videoflix-transcoder dispatcher", 4),
    Process("transcoder-worker", "videoflix-transcoder worker", 5),
    Process("mailer", "videoflix-mailer consume", 6),
    Process("mail-sink", "videoflix-mailer sink", 7),
)
SMTP_SINK_OFFSET = 25
SECURED_NATS_OFFSET = 22  # the stack's own NATS when the configured one accepts anyone
MIGRATIONS = ("videoflix-auth migrate", "videoflix-catalog migrate")


def log(msg: str) -> None:
    print(f"devstack | {msg}", file=sys.stderr, flush=True)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_port(host: str, port: int, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.2)
    raise SystemExit(f"devstack: {what} did not open {host}:{port} within {timeout:.0f}s")


def apt_install(*packages: str) -> None:
    """Install Debian packages when possible; otherwise say exactly what is missing."""
    if os.geteuid() != 0 and not shutil.which("sudo"):
        raise SystemExit(f"devstack: please install: apt-get install {' '.join(packages)}")
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=False, env=env)
    result = subprocess.run([*prefix, "apt-get", "install", "-y", "-qq", *packages], env=env)
    if result.returncode != 0:
        raise SystemExit(
            f"devstack: could not install {packages}; please run: apt-get install {' '.join(packages)}"
        )


def find_binary(binary: str) -> str | None:
    candidates = [
        shutil.which(binary),
        f"/usr/sbin/{binary}",
        *map(str, sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{binary}"), reverse=True)),
    ]
    return next((c for c in candidates if c and Path(c).exists()), None)


def ensure_binary(binary: str, package: str) -> str:
    """The path of `binary`, installing its Debian package first when it is missing."""
    found = find_binary(binary)
    if found is None:
        apt_install(package)
        found = find_binary(binary)
    if found is None:
        raise SystemExit(f"devstack: {binary} not found even after installing {package}")
    return found


# --- configuration ------------------------------------------------------------------------


def stack_env(data_dir: Path, port_base: int) -> dict[str, str]:
    """Defaults derived from the port base, overridden by .env, overridden by the environment."""
    defaults = {
        "AUTH_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/videoflix_auth",
        "CATALOG_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/videoflix_catalog",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "NATS_URL": "nats://127.0.0.1:4222",
        "JWKS_URL": f"http://127.0.0.1:{port_base + 1}/.well-known/jwks.json",
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


# --- infrastructure -----------------------------------------------------------------------


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url.replace("postgresql+psycopg", "postgresql"))
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _is_local(host: str) -> bool:
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


def start_private_postgres(
    data_dir: Path, port: int, superuser_password: str | None = None
) -> None:
    """With `superuser_password` (make up) TCP logins need a password (scram-sha-256); the
    socket, in a 0700 directory of the data dir, stays trusted for the launcher."""
    initdb, pg_ctl = ensure_binary("initdb", "postgresql"), ensure_binary("pg_ctl", "postgresql")
    pgdata = data_dir / "postgres"
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        if as_user:
            shutil.chown(pgdata, "postgres", "postgres")
        subprocess.run(
            [
                *as_user,
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
    sock = pgdata / "sock"
    sock.mkdir(exist_ok=True)
    sock.chmod(0o700)
    if superuser_password is not None:
        (pgdata / "pg_hba.conf").write_text(PRIVATE_PG_HBA)
    if as_user:
        shutil.chown(sock, "postgres", "postgres")
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(pgdata),
            "-l",
            str(pgdata / "server.log"),
            "-w",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (data_dir / "private").mkdir(exist_ok=True)
    (data_dir / "private" / "postgres").write_text(str(port))
    if superuser_password is not None:
        _set_superuser_password(sock, port, superuser_password)


PRIVATE_PG_HBA = """# written by deploy/devstack.py at every start of make up's private PostgreSQL
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


def _set_superuser_password(sock: Path, port: int, password: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=str(sock), port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(password)))


def stop_private_postgres(data_dir: Path) -> None:
    pgdata = data_dir / "postgres"
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [
            *as_user,
            ensure_binary("pg_ctl", "postgresql"),
            "-D",
            str(pgdata),
            "-m",
            "fast",
            "-w",
            "stop",
        ],
        check=False,
        stdout=subprocess.DEVNULL,
    )


def start_private_redis(data_dir: Path, port: int, admin_password: str | None = None) -> None:
    """With `admin_password` the default user needs it (set in a 0600 config file, never on
    the command line); the services' own users are added by deploy/privileges.py."""
    redis = ensure_binary("redis-server", "redis-server")
    d = data_dir / "redis"
    d.mkdir(parents=True, exist_ok=True)
    config: list[str] = []
    if admin_password is not None:
        conf = d / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"requirepass {admin_password}\n")
        config = [str(conf)]
    _spawn_daemon(
        [
            redis,
            *config,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(d),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        d / "redis.log",
        data_dir / "private" / "redis.pid",
    )


def start_private_nats(data_dir: Path, port: int, config: str | None = None) -> None:
    """`config` (a whole nats-server config: users, listen, store) goes to a 0600 file."""
    nats = ensure_binary("nats-server", "nats-server")
    d = data_dir / "nats"
    d.mkdir(parents=True, exist_ok=True)
    args = [nats, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(d)]
    if config is not None:
        conf = d / "nats.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(config)
        args = [nats, "-c", str(conf)]
    _spawn_daemon(args, d / "nats.log", data_dir / "private" / "nats.pid")


def ensure_infra(
    env: dict[str, str], data_dir: Path, *, credentials: privileges.Credentials | None = None
) -> list[str]:
    """Make PostgreSQL, Redis and NATS answer; returns the names of private instances started.

    With `credentials` (make up) a private PostgreSQL and Redis get an admin password
    (`provision` puts it into the admin URLs) and NATS is left to `ensure_secured_nats`."""
    (data_dir / "private").mkdir(parents=True, exist_ok=True)
    started = []
    start_redis, start_postgres = start_private_redis, start_private_postgres
    if credentials is not None:
        redis_password = credentials.password("redis:default")
        postgres_password = credentials.password("postgres:superuser")

        def start_redis(data_dir: Path, port: int) -> None:
            start_private_redis(data_dir, port, redis_password)

        def start_postgres(data_dir: Path, port: int) -> None:
            start_private_postgres(data_dir, port, postgres_password)

    checks = [
        ("postgres", _host_port(env["AUTH_DATABASE_URL"], 5432), start_postgres),
        ("redis", _host_port(env["REDIS_URL"], 6379), start_redis),
    ]
    if credentials is None:
        checks.append(("nats", _host_port(env["NATS_URL"], 4222), start_private_nats))
    for name, (host, port), starter in checks:
        if port_open(host, port):
            log(f"{name}: using the server at {host}:{port}")
            continue
        if not _is_local(host):
            raise SystemExit(
                f"devstack: {name} at {host}:{port} does not answer (and is not local, so no private instance)"
            )
        log(
            f"{name}: nothing answers at {host}:{port}; starting a private instance in {data_dir / name}"
        )
        starter(data_dir, port)
        wait_port(host, port, name)
        started.append(name)
    return started


def ensure_secured_nats(
    env: dict[str, str], data_dir: Path, port_base: int, credentials: privileges.Credentials
) -> str:
    """The URL of a NATS that enforces the per-service users (without credentials in it)."""
    host, port = _host_port(env["NATS_URL"], 4222)
    requires_auth = privileges.nats_requires_auth(host, port)
    if requires_auth:
        log(
            f"nats: using the server at {host}:{port}; it asks for credentials, so it must "
            "hold the users of `python -m deploy.devstack nats-config` (docs/SECURITY.md)"
        )
        return f"nats://{host}:{port}"
    if requires_auth is None and not _is_local(host):
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
        subject_prefix=_setting(env, "NATS_SUBJECT_PREFIX", ""),
        stream_prefix=_setting(env, "NATS_STREAM_PREFIX", "VIDEOFLIX_"),
    )
    start_private_nats(data_dir, port, config)
    wait_port(host, port, "nats")
    return f"nats://{host}:{port}"


DEV_ADMIN_FILE = "dev-admin.json"
DEV_ADMIN_EMAIL = "admin@videoflix.test"


def ensure_development_admin(env: dict[str, str], data_dir: Path) -> None:
    """Without ADMIN_EMAIL / ADMIN_PASSWORD a development stack gets an admin of its own:
    generated once into <data dir>/dev-admin.json (0600) and printed then; production
    refuses to start without one configured."""
    if _setting(env, "ADMIN_EMAIL", "") and _setting(env, "ADMIN_PASSWORD", ""):
        return
    if _setting(env, "ENVIRONMENT", "development") == "production":
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


def _setting(env: dict[str, str], name: str, default: str) -> str:
    """A setting stack_env does not carry (it has defaults only for addresses)."""
    return env.get(name, os.environ.get(name, default))


def provision(env: dict[str, str], data_dir: Path, port_base: int) -> dict[str, dict[str, str]]:
    """Servers up, users and roles in place; returns each process's own variables."""
    credentials = privileges.Credentials(data_dir)
    ensure_infra(env, data_dir, credentials=credentials)
    nats_url = ensure_secured_nats(env, data_dir, port_base, credentials)
    private = data_dir / "private"
    if (private / "redis.pid").exists():  # ours (this start or a crashed one): its admin
        env["REDIS_URL"] = privileges.with_credentials(
            env["REDIS_URL"], "default", credentials.password("redis:default")
        )
    database_urls = {}
    for service, variable in privileges.DATABASE_URL_VARIABLE.items():
        if (private / "postgres").exists():
            url = env[variable]
            user = urlsplit(url.replace("postgresql+psycopg", "postgresql")).username
            env[variable] = privileges.with_credentials(
                url, user or "postgres", credentials.password("postgres:superuser")
            )
        database_urls[service] = privileges.provision_postgres(
            env[variable], credentials.password(f"postgres:{service}")
        )
    log("postgres: a role per service database, owning it; no other role may connect")
    key_prefix = _setting(env, "REDIS_KEY_PREFIX", "videoflix:")
    redis_urls = privileges.provision_redis(env["REDIS_URL"], key_prefix, credentials)
    log(f"redis: an ACL user per process, limited to its keys under {key_prefix!r}")
    log(f"credentials: {credentials.path} (0600); delete an entry and restart to rotate it")
    privileges.ensure_mail_token_key(env, credentials)
    per_process = {}
    for process in PROCESSES:
        principal = privileges.principal_of(process.name)
        if principal is not None:
            per_process[process.name] = privileges.process_env(
                principal,
                env={**os.environ, **env},
                nats_url=nats_url,
                redis_urls=redis_urls,
                database_urls=database_urls,
                credentials=credentials,
            )
    return per_process


def stop_private_infra(data_dir: Path) -> None:
    private = data_dir / "private"
    if (private / "postgres").exists():
        log("stopping private postgres")
        stop_private_postgres(data_dir)
        (private / "postgres").unlink()
    for name in ("redis", "nats"):
        pid_file = private / f"{name}.pid"
        if pid_file.exists():
            log(f"stopping private {name}")
            _terminate(int(pid_file.read_text()))
            pid_file.unlink()


def _terminate(pid: int, timeout: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


# --- the stack ----------------------------------------------------------------------------


def ensure_tools() -> None:
    missing = [
        pkg
        for binary, pkg in (("ffmpeg", "ffmpeg"), ("ffprobe", "ffmpeg"), ("caddy", "caddy"))
        if not shutil.which(binary)
    ]
    if missing:
        apt_install(*sorted(set(missing)))


def write_procfile(
    data_dir: Path, port_base: int, per_process: dict[str, dict[str, str]] | None = None
) -> Path:
    """`per_process`: each process's own credentials, sourced from a 0600 file of its own
    (not on a command line, where `ps` would show them)."""
    lines = []
    for p in PROCESSES:
        cmd = p.command.format(data=data_dir)
        if p.name != "gateway":
            cmd = f"env HTTP_PORT={port_base + p.port_offset} {cmd}"
        # exec: honcho's SIGTERM reaches the program itself, not an intermediate shell
        cmd = f"exec {cmd}"
        if per_process and p.name in per_process:
            env_file = data_dir / "secrets" / f"{p.name}.env"
            privileges.write_env_file(env_file, per_process[p.name])
            cmd = f"set -a && . '{env_file}' && set +a && {cmd}"
        lines.append(f"{p.name}: {cmd}")
    procfile = data_dir / "Procfile"
    procfile.write_text("\n".join(lines) + "\n")
    caddyfile = render_caddyfile(load_routes(), port_base=port_base)
    (data_dir / "Caddyfile").write_text(caddyfile)
    return procfile


def health(port_base: int) -> dict[str, str]:
    results = {}
    for p in PROCESSES:
        if p.health_path is None:
            continue
        url = f"http://127.0.0.1:{port_base + p.port_offset}{p.health_path}"
        if p.name in ("auth", "catalog", "streaming"):  # HTTP services: through the gateway
            url = f"http://127.0.0.1:{port_base}/svc/{p.name}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (local URL)
                results[p.name] = "healthy" if r.status == 200 else f"HTTP {r.status}"
        except Exception as exc:
            results[p.name] = f"down ({type(exc).__name__})"
    return results


def wait_healthy(port_base: int, honcho: subprocess.Popen, timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    results: dict[str, str] = {}
    while time.monotonic() < deadline and honcho.poll() is None:
        results = health(port_base)
        if all(v == "healthy" for v in results.values()):
            break
        time.sleep(0.5)
    return results


def cmd_up(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = data_dir / "devstack.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        log(f"the stack is already running (pid {pid_file.read_text()}); `make down` stops it")
        return 0
    if port_open("127.0.0.1", args.port_base):
        raise SystemExit(
            f"devstack: port {args.port_base} is taken by another program; set VIDEOFLIX_PORT_BASE"
        )
    pid_file.write_text(str(os.getpid()))
    ensure_tools()
    env = stack_env(data_dir, args.port_base)
    ensure_development_admin(env, data_dir)
    os.environ.update(env)
    honcho: subprocess.Popen | None = None

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Explicit for SIGINT too: a launcher started in the background inherits SIGINT ignored.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        per_process = provision(env, data_dir, args.port_base)
        # what every process inherits: nothing with admin rights, no other process's secret
        shared_env = {k: v for k, v in os.environ.items() if k not in privileges.WITHHELD}
        for migration in MIGRATIONS:  # as the role owning the database
            log(f"running `{migration}`")
            service = migration.split()[0].removeprefix("videoflix-")
            subprocess.run(migration.split(), check=True, env=shared_env | per_process[service])
        procfile = write_procfile(data_dir, args.port_base, per_process)
        honcho = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "honcho",
                "start",
                "-f",
                str(procfile),
                "-d",
                str(ROOT),
                "--no-colour",
            ],
            start_new_session=True,
            env=shared_env,
        )
        results = wait_healthy(args.port_base, honcho)
        for name, state in results.items():
            log(f"{name:22s} {state}")
        base = f"http://127.0.0.1:{args.port_base}"
        log(
            f"gateway      {base}/api/   (JSON API; CORS for {os.environ.get('CORS_ALLOWED_ORIGINS', 'http://127.0.0.1:5500')})"
        )
        log(f"admin page   {base}/admin/   (sign in as {_setting(env, 'ADMIN_EMAIL', '?')})")
        log(
            f"dev mail     http://127.0.0.1:{args.port_base + 7}/messages  (SMTP on {env['SMTP_HOST']}:{env['SMTP_PORT']})"
        )
        log("stop with Ctrl-C or `make down`")
        honcho.wait()
        return 0 if all(v == "healthy" for v in results.values()) else 1
    except KeyboardInterrupt:
        log("stopping")
        return 0
    finally:
        if honcho is not None and honcho.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(honcho.pid, signal.SIGTERM)
            try:
                honcho.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(honcho.pid, signal.SIGKILL)
        stop_private_infra(data_dir)
        pid_file.unlink(missing_ok=True)
        log("stopped")


def _alive(pid: int) -> bool:
    """Whether `pid` still runs. Reaps it when it is our child: a zombie still answers kill 0."""
    with contextlib.suppress(ChildProcessError):  # not our child: only kill 0 can tell
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def cmd_down(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    pid_file = data_dir / "devstack.pid"
    if pid_file.exists() and _alive(pid := int(pid_file.read_text())):
        log(f"stopping the stack (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    else:
        log("no stack running")
        stop_private_infra(data_dir)  # leftovers of a launcher that was killed
    return 0


def cmd_infra(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    env = stack_env(data_dir, args.port_base)
    ensure_infra(env, data_dir)
    if args.print_env:
        pg = env["AUTH_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
        print(
            f"export TEST_POSTGRES_URL={pg}\nexport TEST_REDIS_URL={env['REDIS_URL']}\nexport TEST_NATS_URL={env['NATS_URL']}"
        )
    return 0


def cmd_nats_config(args: argparse.Namespace) -> int:
    """The `authorization` block with the per-service users, for an operator's nats-server."""
    env = stack_env(args.data_dir.resolve(), args.port_base)
    print(
        privileges.render_nats_authorization(
            privileges.nats_passwords(privileges.Credentials(args.data_dir.resolve())),
            subject_prefix=_setting(env, "NATS_SUBJECT_PREFIX", ""),
            stream_prefix=_setting(env, "NATS_STREAM_PREFIX", "VIDEOFLIX_"),
        ),
        end="",
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    results = health(args.port_base)
    for name, state in results.items():
        print(f"{name:22s} {state}")
    return 0 if all(v == "healthy" for v in results.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="devstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "infra", "status", "nats-config"])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("VIDEOFLIX_DATA_DIR", ROOT / ".data"))
    )
    parser.add_argument(
        "--port-base", type=int, default=int(os.environ.get("VIDEOFLIX_PORT_BASE", "8000"))
    )
    parser.add_argument(
        "--print-env", action="store_true", help="infra: print TEST_* exports for the test suite"
    )
    args = parser.parse_args(argv)
    commands = {
        "up": cmd_up,
        "down": cmd_down,
        "infra": cmd_infra,
        "status": cmd_status,
        "nats-config": cmd_nats_config,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
