"""Least privilege in docker-compose.yml, proved without a container engine: each container
gets only the variables its service reads and only its own secrets, the server configs
holding the users are the ones generated from videoflix_shared.access, and those configs
really enforce the permissions when real servers run them (private instances here)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import psycopg
import pytest
import redis
import yaml
from psycopg.conninfo import conninfo_to_dict

from deploy import privileges
from deploy.tests.test_env_example import settings_env_names
from videoflix_shared.access import BY_NAME, PRINCIPALS
from videoflix_shared.bus import EventBus
from videoflix_shared.events import UserRegistered
from videoflix_shared.processes import stop_process
from videoflix_testing.plugin import POSTGRES_URL, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
BUILT = sorted(name for name, s in SERVICES.items() if "build" in s)
SECRET_REF = re.compile(r"\$\{(\w+)[^}]*\}")
# read by a service's settings but meaningless in a container: the native dev mail sink
NOT_FOR_CONTAINERS = {"MAIL_SINK_DIR"}


def env_of(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[name].get("environment") or {}).items()}


def reads(name: str) -> set[str]:
    """The variables the settings of a container's service (its Dockerfile target) read."""
    target = SERVICES[name]["build"]["target"]
    declared = {
        env
        for env, where in settings_env_names().items()
        if where.startswith((f"videoflix_{target}.", "videoflix_shared."))
    }
    # a secret two services declare (MAIL_TOKEN_KEY) is listed under the first one found
    shared_secrets = set(BY_NAME[name].secrets) if name in BY_NAME else set()
    return declared | (shared_secrets & set(settings_env_names()))


def referenced(name: str) -> set[str]:
    """The .env variables whose values reach a container."""
    return {m for value in env_of(name).values() for m in SECRET_REF.findall(value)}


def test_no_container_gets_the_whole_env_file() -> None:
    assert not [name for name, s in SERVICES.items() if "env_file" in s]


@pytest.mark.parametrize("name", BUILT)
def test_each_container_gets_only_variables_its_service_reads(name: str) -> None:
    extra = set(env_of(name)) - reads(name)
    assert not extra, f"{name} gets variables its service never reads: {sorted(extra)}"


@pytest.mark.parametrize("name", [n for n in BUILT if not n.endswith("-migrate")])
def test_each_service_still_gets_every_setting_of_env_example(name: str) -> None:
    """Without env_file, a setting .env documents must be passed on explicitly."""
    missing = reads(name) - set(env_of(name)) - NOT_FOR_CONTAINERS
    if not BY_NAME[name].uses_redis:
        missing -= {"REDIS_URL"}
    assert not missing, f"{name} lost {sorted(missing)}"


def secret_owners() -> dict[str, set[str]]:
    """Each secret variable of .env -> the containers that may receive it."""
    owners: dict[str, set[str]] = {"POSTGRES_PASSWORD": {"postgres", "postgres-roles"}}
    for p in PRINCIPALS:
        for variable in p.secrets:  # a secret two processes share lists both
            owners.setdefault(variable, set()).add(p.name)
        if p.uses_nats:
            owners[privileges.compose_secret("NATS", p.name)] = {p.name, "nats"}
        if p.uses_redis:
            owners[privileges.compose_secret("REDIS", p.name)] = {p.name, "redis"}
        if p.database:
            owners[privileges.compose_secret("POSTGRES", p.database)] = {
                p.name,
                f"{p.name}-migrate",
                "postgres-roles",
            }
    return owners


def test_each_secret_reaches_only_the_containers_that_use_it() -> None:
    owners = secret_owners()
    assert set(privileges.compose_secrets()) <= set(owners)
    for name in SERVICES:
        for variable in referenced(name) & set(owners):
            assert name in owners[variable], f"{variable} reaches {name}"


@pytest.mark.parametrize("name", [p.name for p in PRINCIPALS])
def test_each_service_logs_in_as_its_own_user(name: str) -> None:
    env, p = env_of(name), BY_NAME[name]
    if p.uses_nats:
        assert env["NATS_USER"] == name
        assert referenced(name) >= {privileges.compose_secret("NATS", name)}
    else:
        assert "NATS_USER" not in env
    if p.uses_redis:
        user = privileges.redis_username(p, privileges.COMPOSE_KEY_PREFIX)
        assert env["REDIS_URL"].startswith(f"redis://{user}:${{")
    else:
        assert "REDIS_URL" not in env
    if p.database:
        url = env[f"{p.database.upper()}_DATABASE_URL"]
        assert url.startswith(f"postgresql+psycopg://videoflix_{p.database}:${{")


def test_compose_pins_the_prefixes_its_server_configs_were_generated_for() -> None:
    for name in (p.name for p in PRINCIPALS):
        env = env_of(name)
        assert env["NATS_SUBJECT_PREFIX"] == privileges.COMPOSE_SUBJECT_PREFIX
        assert env["NATS_STREAM_PREFIX"] == privileges.COMPOSE_STREAM_PREFIX
        assert env["REDIS_KEY_PREFIX"] == privileges.COMPOSE_KEY_PREFIX


@pytest.mark.parametrize("path", sorted(privileges.COMPOSE_FILES), ids=lambda p: p.name)
def test_generated_server_configs_are_up_to_date(path: Path) -> None:
    assert path.read_text() == privileges.COMPOSE_FILES[path](), "run `make privileges`"


def test_servers_mount_the_generated_configs() -> None:
    assert (
        "./deploy/docker/nats/nats.conf:/etc/nats/videoflix.conf:ro" in SERVICES["nats"]["volumes"]
    )
    assert SERVICES["nats"]["command"][:3] == [
        "nats-server",
        "--config",
        "/etc/nats/videoflix.conf",
    ]
    assert "./deploy/docker/redis/acl.sh:/etc/videoflix/acl.sh:ro" in SERVICES["redis"]["volumes"]
    assert SERVICES["redis"]["entrypoint"] == ["sh", "/etc/videoflix/acl.sh"]
    assert SERVICES["redis"]["command"][-2:] == ["--aclfile", "/tmp/users.acl"]
    roles = SERVICES["postgres-roles"]
    assert "./deploy/docker/postgres/roles.sql:/etc/videoflix/roles.sql:ro" in roles["volumes"]
    for service in ("auth-migrate", "catalog-migrate"):
        assert SERVICES[service]["depends_on"]["postgres-roles"]["condition"] == (
            "service_completed_successfully"
        )


def test_mailpit_and_every_other_published_port_bind_loopback_except_the_gateway() -> None:
    assert SERVICES["mailpit"]["ports"] == ["127.0.0.1:${MAILPIT_PORT:-8025}:8025"]
    for name, service in SERVICES.items():
        for spec in service.get("ports", []):
            if spec == "${GATEWAY_PORT:-8000}:8000":  # the one public entry point
                continue
            assert spec.startswith("127.0.0.1:"), f"{name} publishes {spec} on all interfaces"


# --- the generated configs on real servers ------------------------------------------------


def fake_secrets() -> dict[str, str]:
    return {name: f"pw-{i}-{name.lower()}" for i, name in enumerate(privileges.compose_secrets())}


def test_roles_sql_keeps_each_role_in_its_database(run_id: str) -> None:
    admin = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")
    names = {"auth_db": f"vft_{run_id}_croles_auth", "catalog_db": f"vft_{run_id}_croles_catalog"}
    psql = [shutil.which("psql") or "psql", "-v", "ON_ERROR_STOP=1", "-q", "-d", admin]
    psql += [arg for k, v in names.items() for arg in ("-v", f"{k}={v}")]
    script = str(privileges.COMPOSE_DIR / "postgres" / "roles.sql")
    try:
        for _ in range(2):  # idempotent: every `up` runs it
            subprocess.run(
                [*psql, "-f", script], env=os.environ | fake_secrets(), check=True, timeout=60
            )
        as_catalog = conninfo_to_dict(admin) | {"user": names["catalog_db"]}
        psycopg.connect(**(as_catalog | {"dbname": names["catalog_db"]})).close()
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(**(as_catalog | {"dbname": names["auth_db"]})).close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def compose_redis(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    acl_file = tmp_path / "users.acl"
    process = subprocess.Popen(
        [
            "sh",
            str(privileges.COMPOSE_DIR / "redis" / "acl.sh"),
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
            "--aclfile",
            str(acl_file),
        ],
        env=os.environ | fake_secrets() | {"ACL_FILE": str(acl_file)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: redis.Redis(port=port).ping(), timeout=15, what="compose redis")
        yield port
    finally:
        stop_process(process, timeout=10)


def test_redis_acl_script_gives_each_user_its_own_keys_and_anonymous_only_ping(
    compose_redis: int,
) -> None:
    secrets = fake_secrets()
    anonymous = redis.Redis(port=compose_redis)
    assert anonymous.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        anonymous.get("videoflix:auth:ratelimit:x")
    catalog = redis.Redis(
        port=compose_redis,
        username="videoflix-catalog",
        password=secrets[privileges.compose_secret("REDIS", "catalog")],
    )
    catalog.set("videoflix:catalog:video-list:version", 1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        catalog.get("videoflix:auth:ratelimit:x")


@pytest.fixture
def compose_nats(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            shutil.which("nats-server") or "/usr/sbin/nats-server",
            "--config",
            str(privileges.COMPOSE_DIR / "nats" / "nats.conf"),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(tmp_path),
        ],
        env=os.environ | fake_secrets(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: privileges.nats_requires_auth("127.0.0.1", port), timeout=15, what="nats"
        )
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop_process(process, timeout=10)


def test_nats_config_refuses_forged_auth_events_from_the_transcoder(compose_nats: str) -> None:
    secrets = fake_secrets()

    def bus(name: str) -> EventBus:
        return EventBus(
            url=compose_nats,
            subject_prefix=privileges.COMPOSE_SUBJECT_PREFIX,
            stream_prefix=privileges.COMPOSE_STREAM_PREFIX,
            principal=name,
            user=name,
            password=secrets[privileges.compose_secret("NATS", name)],
        )

    async def scenario() -> int:
        auth, worker = bus("auth"), bus("transcoder-worker")
        await auth.connect(wait=False)
        await worker.connect(wait=False)
        forged = UserRegistered(
            user_id=1,
            email="admin@example.com",
            activation_url="x",
            expires_at="2030-01-01T00:00:00Z",
        )
        # refused: the server drops the publish, so JetStream's ack never comes
        with pytest.raises(nats.errors.TimeoutError):
            await worker.publish(forged, timeout=1)
        assert auth.js is not None
        stored = (await auth.js.stream_info(auth.stream("AUTH"))).state.messages
        await auth.close()
        await worker.close()
        return stored

    assert asyncio.run(scenario()) == 0


def test_nats_config_names_its_users_in_json_strings() -> None:
    text = (privileges.COMPOSE_DIR / "nats" / "nats.conf").read_text()
    users = re.findall(r'user: ("[^"]+")', text)
    assert [json.loads(u) for u in users] == [p.name for p in PRINCIPALS if p.uses_nats]
