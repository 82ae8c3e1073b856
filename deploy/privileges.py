"""Least privilege for the native launcher: per-service users on PostgreSQL, Redis and NATS.

What each process may do is the table in `videoflix_shared.access`; this module makes the
servers enforce it and hands every process only its own credentials:

- passwords are generated once and kept in `<data dir>/secrets/credentials.json` (0600),
  reused on every start; delete the file (or one entry) to rotate (docs/SECURITY.md),
- PostgreSQL: a LOGIN role per service database (named after it), owning it and what is in
  it, no superuser/createdb/createrole; nobody else may connect (REVOKE ... FROM PUBLIC).
  Created idempotently through the configured URL, which must have admin rights,
- Redis: an ACL user per process (`ACL SETUSER`, idempotent) through the configured URL,
- NATS: users cannot be added at runtime to a server we did not start, so the launcher runs
  its own nats-server with the generated users unless the configured one already asks for
  credentials (an operator loaded `python -m deploy.devstack nats-config` into it),
- `process_env`: the per-process environment files the Procfile sources.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from videoflix_shared.access import (
    BY_NAME,
    PRINCIPALS,
    Principal,
    database_role,
    redis_acl_rules,
    redis_username,
    render_nats_authorization,
)
from videoflix_shared.sealing import new_key as new_mail_token_key

# The processes of the launcher that act as a principal (the gateway and the mail sink
# talk to none of the servers).
PROCESS_PRINCIPALS = {
    "auth": "auth",
    "catalog": "catalog",
    "streaming": "streaming",
    "transcoder-dispatcher": "transcoder-dispatcher",
    "transcoder-worker": "transcoder-worker",
    "mailer": "mailer",
}


def compose_secret(kind: str, name: str) -> str:
    """The .env variable holding a principal's password in compose, e.g. NATS_PASSWORD_AUTH."""
    return f"{kind}_PASSWORD_{name.upper().replace('-', '_')}"


def compose_secrets() -> list[str]:
    names = [compose_secret("NATS", p.name) for p in PRINCIPALS if p.uses_nats]
    names += [compose_secret("REDIS", p.name) for p in PRINCIPALS if p.uses_redis]
    names += [compose_secret("POSTGRES", p.database) for p in PRINCIPALS if p.database]
    return [*names, "MAIL_TOKEN_KEY"]  # shared by auth and the mailer


# Variables that hold server addresses with admin rights or secrets: no process inherits
# them from the launcher; each gets its own (process_env).
WITHHELD = (
    "AUTH_DATABASE_URL",
    "CATALOG_DATABASE_URL",
    "REDIS_URL",
    "NATS_URL",
    "NATS_USER",
    "NATS_PASSWORD",
    *sorted({name for p in PRINCIPALS for name in p.secrets}),
    "POSTGRES_PASSWORD",  # compose's, when a developer's .env is shared by both ways
    *compose_secrets(),
)
DATABASE_URL_VARIABLE = {"auth": "AUTH_DATABASE_URL", "catalog": "CATALOG_DATABASE_URL"}


# --- credentials --------------------------------------------------------------------------


class Credentials:
    """Generated passwords, one per (server, user), kept across starts in a 0600 file."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "secrets"
        self.path = self.directory / "credentials.json"
        self.values: dict[str, str] = {}
        if self.path.exists():
            self.values = json.loads(self.path.read_text())

    def password(self, key: str) -> str:
        return self.value(key, lambda: secrets.token_hex(24))  # URL- and shell-safe

    def value(self, key: str, generate: Callable[[], str]) -> str:
        if key not in self.values:
            self.values[key] = generate()
            self._save()
        return self.values[key]

    def _save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.values, out, indent=2, sort_keys=True)
        tmp.replace(self.path)


def with_credentials(url: str, user: str, password: str, database: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


# --- PostgreSQL ---------------------------------------------------------------------------


def _admin_libpq(url: str, database: str) -> str:
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://"))
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def provision_postgres(database_url: str, password: str) -> str:
    """Make the database of `database_url` (an admin connection) owned by its own role, with
    `password`; returns the URL services and migrations use (as that role)."""
    import psycopg
    from psycopg import sql

    database = urlsplit(database_url).path.lstrip("/")
    role = database_role(database)
    ident_role, ident_db = sql.Identifier(role), sql.Identifier(database)
    with psycopg.connect(_admin_libpq(database_url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER ROLE {} WITH" if exists else "CREATE ROLE {}"
        conn.execute(
            sql.SQL(
                verb + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}"
            ).format(ident_role, sql.Literal(password))
        )
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(ident_db, ident_role))
        else:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident_db, ident_role))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident_db))
        conn.execute(
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(ident_db, ident_role)
        )
    with psycopg.connect(_admin_libpq(database_url, database), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(ident_role))
        conn.execute("SELECT set_config('videoflix.role', %s, false)", (role,))
        conn.execute(REASSIGN_PUBLIC_OBJECTS)
    return with_credentials(database_url, role, password)


# Tables, views, sequences and enum types made by the superuser before roles existed (an
# older `make up`) now belong to the role (the session setting videoflix.role); sequences
# owned by a column follow their table. Shared by the launcher and compose's roles.sql.
REASSIGN_PUBLIC_OBJECTS = """
DO $do$
DECLARE r record;
DECLARE role text := current_setting('videoflix.role');
BEGIN
  FOR r IN
    SELECT c.relname, c.relkind FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
      AND pg_get_userbyid(c.relowner) <> role
      AND NOT (c.relkind = 'S' AND EXISTS (
        SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
  LOOP
    EXECUTE format('ALTER %s public.%I OWNER TO %I',
      CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
        WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.relname, role);
  END LOOP;
  FOR r IN
    SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = 'public' AND t.typtype = 'e' AND pg_get_userbyid(t.typowner) <> role
  LOOP
    EXECUTE format('ALTER TYPE public.%I OWNER TO %I', r.typname, role);
  END LOOP;
END
$do$;
"""


def drop_database_role(database_url: str) -> None:
    """Drop the role of a database that is gone (the e2e suite's per-run stacks)."""
    import psycopg
    from psycopg import sql

    role = database_role(urlsplit(database_url).path.lstrip("/"))
    with psycopg.connect(_admin_libpq(database_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# --- Redis --------------------------------------------------------------------------------


def provision_redis(admin_url: str, key_prefix: str, credentials: Credentials) -> dict[str, str]:
    """ACL users for the principals that use Redis; returns each one's REDIS_URL."""
    import redis

    urls = {}
    client = redis.Redis.from_url(admin_url, socket_connect_timeout=5)
    try:
        for p in PRINCIPALS:
            if not p.uses_redis:
                continue
            user = redis_username(p, key_prefix)
            password = credentials.password(f"redis:{user}")
            # the raw rules (what compose's ACL script runs too); redis-py's acl_setuser
            # would want them split by kind, and leaves execute_command untyped
            acl: Callable[..., object] = client.execute_command
            acl(
                "ACL",
                "SETUSER",
                user,
                "reset",
                "on",
                f">{password}",
                *redis_acl_rules(p, key_prefix),
            )
            urls[p.name] = with_credentials(admin_url, user, password)
    finally:
        client.close()
    return urls


def drop_redis_users(admin_url: str, key_prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(admin_url, socket_connect_timeout=5)
    with contextlib.suppress(redis.RedisError):
        users = [redis_username(p, key_prefix) for p in PRINCIPALS if p.uses_redis]
        client.acl_deluser(*users)
    client.close()


# --- NATS ---------------------------------------------------------------------------------


def nats_requires_auth(host: str, port: int) -> bool | None:
    """Whether the NATS server at host:port asks for credentials (its INFO line says so);
    None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(2)
            line = sock.recv(4096).decode(errors="replace")
    except OSError:
        return None
    if not line.startswith("INFO "):
        return None
    return bool(json.loads(line[5:].strip()).get("auth_required"))


def nats_passwords(credentials: Credentials) -> dict[str, str]:
    return {p.name: credentials.password(f"nats:{p.name}") for p in PRINCIPALS if p.uses_nats}


def nats_server_config(
    *, port: int, store_dir: Path, credentials: Credentials, subject_prefix: str, stream_prefix: str
) -> str:
    return (
        f'listen: "127.0.0.1:{port}"\n'
        f"jetstream {{ store_dir: {json.dumps(str(store_dir))} }}\n"
        + render_nats_authorization(
            nats_passwords(credentials), subject_prefix=subject_prefix, stream_prefix=stream_prefix
        )
    )


# --- the processes ------------------------------------------------------------------------


def process_env(
    principal: Principal,
    *,
    env: dict[str, str],
    nats_url: str,
    redis_urls: dict[str, str],
    database_urls: dict[str, str],
    credentials: Credentials,
) -> dict[str, str]:
    """The withheld variables one process gets back: its own addresses and secrets only."""
    own: dict[str, str] = {}
    if principal.uses_nats:
        own |= {
            "NATS_URL": nats_url,
            "NATS_USER": principal.name,
            "NATS_PASSWORD": credentials.password(f"nats:{principal.name}"),
        }
    if principal.name in redis_urls:
        own["REDIS_URL"] = redis_urls[principal.name]
    if principal.database is not None:
        variable = DATABASE_URL_VARIABLE[principal.database]
        own[variable] = database_urls[principal.database]
    own |= {name: env[name] for name in principal.secrets if name in env}
    return own


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """A file the Procfile sources with `set -a; . file`: single-quoted, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    lines = [f"{k}='" + v.replace("'", "'\\''") + "'" for k, v in sorted(values.items())]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")


def ensure_mail_token_key(env: dict[str, str], credentials: Credentials) -> None:
    """MAIL_TOKEN_KEY from the configuration, or generated once and kept with the other
    credentials (auth and the mailer must share it across restarts: sealed events wait
    in the stream)."""
    if not (env.get("MAIL_TOKEN_KEY") or os.environ.get("MAIL_TOKEN_KEY")):
        env["MAIL_TOKEN_KEY"] = credentials.value("mail-token-key", new_mail_token_key)


def principal_of(process: str) -> Principal | None:
    name = PROCESS_PRINCIPALS.get(process)
    return BY_NAME[name] if name else None


# --- compose ------------------------------------------------------------------------------

# Compose pins the prefixes (docker-compose.yml sets them for every container), so the
# server configs below can be generated once and committed; `make privileges` rewrites
# them, a test fails when they are stale.
COMPOSE_SUBJECT_PREFIX = ""
COMPOSE_STREAM_PREFIX = "VIDEOFLIX_"
COMPOSE_KEY_PREFIX = "videoflix:"
COMPOSE_DIR = Path(__file__).resolve().parent / "docker"
GENERATED = "generated by `make privileges` from videoflix_shared.access; do not edit"


def render_compose_nats_conf() -> str:
    passwords = {p.name: "$" + compose_secret("NATS", p.name) for p in PRINCIPALS if p.uses_nats}
    return (
        f"# nats-server config of docker-compose.yml, {GENERATED}.\n"
        "# Passwords are environment variables of the nats container only ($NAME below);\n"
        "# JetStream, its store and the monitoring port are set on the command line.\n"
        + render_nats_authorization(
            passwords, subject_prefix=COMPOSE_SUBJECT_PREFIX, stream_prefix=COMPOSE_STREAM_PREFIX
        )
    )


def render_compose_redis_script() -> str:
    """Writes the ACL file from the redis container's environment, then runs "$@"."""
    lines = [
        "#!/bin/sh",
        f"# Redis users of docker-compose.yml, {GENERATED}.",
        "# The passwords come from this container's environment; the file is private to it.",
        "set -eu",
        "umask 077",
        'ACL_FILE="${ACL_FILE:-/tmp/users.acl}"',
        'cat > "$ACL_FILE" <<EOF',
        "user default on nopass resetchannels -@all +ping",  # anonymous: the healthcheck only
    ]
    for p in PRINCIPALS:
        if p.uses_redis:
            user = redis_username(p, COMPOSE_KEY_PREFIX)
            secret = "${" + compose_secret("REDIS", p.name) + ":?}"
            rules = " ".join(redis_acl_rules(p, COMPOSE_KEY_PREFIX))
            lines.append(f"user {user} on >{secret} {rules}")
    lines += [
        "EOF",
        'chown redis "$ACL_FILE" 2>/dev/null || true  # the image runs redis-server as redis',
        'exec "$@"',
    ]
    return "\n".join(lines) + "\n"


def render_postgres_roles_sql() -> str:
    """psql script run by compose's one-shot postgres-roles container (as the superuser):
    idempotent, so it also applies changed passwords on every `up`."""
    out = [
        f"-- PostgreSQL roles of docker-compose.yml, {GENERATED}.",
        "-- psql -v ON_ERROR_STOP=1 -f roles.sql, passwords in the environment; database",
        "-- names may be overridden with -v <service>_db=<name> (tests do).",
    ]
    for p in PRINCIPALS:
        if p.database is None:
            continue
        db, secret = f"{p.database}_db", compose_secret("POSTGRES", p.database)
        # :'{db}' is a psql variable (quoted by psql), not a value spliced into SQL
        missing_role = f"WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'{db}')"  # noqa: S608
        create_role = f"SELECT format('CREATE ROLE %I', :'{db}') {missing_role} \\gexec"
        missing_db = f"WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'{db}')"  # noqa: S608
        create_database = (
            f"SELECT format('CREATE DATABASE %I OWNER %I', :'{db}', :'{db}') {missing_db} \\gexec"
        )
        out += [
            f"\\if :{{?{db}}} \\else \\set {db} videoflix_{p.database} \\endif",
            f"\\getenv password {secret}",
            "\\if :{?password} \\else",
            f"SELECT '{secret} is not set'::int;  -- stops here (ON_ERROR_STOP)",
            "\\endif",
            create_role,
            f'ALTER ROLE :"{db}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
            "PASSWORD :'password';",
            create_database,
            f'ALTER DATABASE :"{db}" OWNER TO :"{db}";',
            f'REVOKE ALL ON DATABASE :"{db}" FROM PUBLIC;',
            f'GRANT CONNECT, TEMPORARY ON DATABASE :"{db}" TO :"{db}";',
            f'\\connect :"{db}"',
            f'ALTER SCHEMA public OWNER TO :"{db}";',
            f"SELECT set_config('videoflix.role', :'{db}', false);",
            REASSIGN_PUBLIC_OBJECTS.strip(),
            "\\connect postgres",
            "\\unset password",
        ]
    return "\n".join(out) + "\n"


def render_compose_secrets_script() -> str:
    """Fills the per-service passwords into .env: each missing or empty one gets a random
    value, set ones stay (delete a line and rerun to rotate that password)."""
    names = " ".join(compose_secrets())
    return f"""#!/bin/sh
# Per-service passwords of docker-compose.yml into .env, {GENERATED}.
# Usage (from anywhere): sh deploy/docker/secrets.sh   (creates .env from .env.example first)
set -eu
cd "$(dirname "$0")/../.."
[ -f .env ] || cp .env.example .env
chmod 600 .env
for name in {names}; do
  if grep -Eq "^$name=[^[:space:]#\\"']" .env; then continue; fi
  if [ "$name" = MAIL_TOKEN_KEY ]; then  # 32 random bytes, base64url
    value=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\\n')
  else
    value=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \\n')
  fi
  tmp=$(mktemp)
  grep -v "^$name=" .env > "$tmp" || true
  printf '%s=%s\\n' "$name" "$value" >> "$tmp"
  cat "$tmp" > .env
  rm -f "$tmp"
  echo "generated $name"
done
"""


COMPOSE_FILES = {
    COMPOSE_DIR / "secrets.sh": render_compose_secrets_script,
    COMPOSE_DIR / "nats" / "nats.conf": render_compose_nats_conf,
    COMPOSE_DIR / "redis" / "acl.sh": render_compose_redis_script,
    COMPOSE_DIR / "postgres" / "roles.sql": render_postgres_roles_sql,
}


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.privileges write`: regenerate compose's server configs."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args != ["write"]:
        print("usage: python -m deploy.privileges write", file=sys.stderr)
        return 2
    for path, render in COMPOSE_FILES.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render())
        print(f"wrote {path.relative_to(COMPOSE_DIR.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
