"""The servers up with every process's own user on them (deploy/privileges.py does the
granting): what `make up` runs before it starts a single process."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from deploy import privileges
from deploy.devstack.config import PROCESSES, log, setting
from deploy.devstack.servers import ensure_infra, ensure_secured_nats


def provision(env: dict[str, str], data_dir: Path, port_base: int) -> dict[str, dict[str, str]]:
    """Servers up, users and roles in place; returns each process's own variables."""
    credentials = privileges.Credentials(data_dir)
    ensure_infra(env, data_dir, credentials=credentials)
    nats_url = ensure_secured_nats(env, data_dir, port_base, credentials)
    _admin_passwords_into_urls(env, data_dir, credentials)
    database_urls = {
        service: privileges.provision_postgres(
            env[variable], credentials.password(f"postgres:{service}")
        )
        for service, variable in privileges.DATABASE_URL_VARIABLE.items()
    }
    log("postgres: a role per service database, owning it; no other role may connect")
    key_prefix = setting(env, "REDIS_KEY_PREFIX", "videoflix:")
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


def _admin_passwords_into_urls(
    env: dict[str, str], data_dir: Path, credentials: privileges.Credentials
) -> None:
    """A private PostgreSQL or Redis (this start's or a crashed one's) asks its admin for
    the password `ensure_infra` gave it: put it into the admin URLs."""
    private = data_dir / "private"
    if (private / "redis.pid").exists():
        env["REDIS_URL"] = privileges.with_credentials(
            env["REDIS_URL"], "default", credentials.password("redis:default")
        )
    if (private / "postgres").exists():
        for variable in privileges.DATABASE_URL_VARIABLE.values():
            url = env[variable]
            user = urlsplit(url.replace("postgresql+psycopg", "postgresql")).username
            env[variable] = privileges.with_credentials(
                url, user or "postgres", credentials.password("postgres:superuser")
            )
