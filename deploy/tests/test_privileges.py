"""Least privilege as the launcher sets it up (deploy/privileges.py) on the real servers:
a PostgreSQL role per service database, Redis ACL users per process, generated passwords
kept and reused. The NATS users are proven in shared/tests/test_bus_permissions.py."""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from arq.connections import RedisSettings, create_pool

from deploy import privileges
from deploy.tests.conftest import ClosedPorts
from videoflix_shared.access import BY_NAME, redis_username
from videoflix_shared.bus import EventBus
from videoflix_shared.db import drop_database
from videoflix_shared.sealing import parse_key
from videoflix_testing.plugin import REDIS_URL, free_port

ROOT = Path(__file__).resolve().parents[2]


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def service_databases(
    make_database: Callable[[str], str], tmp_path: Path
) -> Iterator[dict[str, str]]:
    """auth's and catalog's databases (admin URLs), provisioned like make up does; the URL
    of each role under "<service>-role"."""
    credentials = privileges.Credentials(tmp_path)
    admin = {"auth": make_database("priv_auth"), "catalog": make_database("priv_catalog")}
    with psycopg.connect(libpq(admin["auth"]), autocommit=True) as conn:  # an older make up's
        conn.execute("CREATE TABLE users (id serial PRIMARY KEY, email text)")
    urls = dict(admin)
    for service, url in admin.items():
        urls[f"{service}-role"] = privileges.provision_postgres(
            url, credentials.password(f"postgres:{service}")
        )
    yield urls
    for url in admin.values():
        with contextlib.suppress(Exception):
            drop_database(url)
        privileges.drop_database_role(url)


def test_a_service_role_cannot_connect_to_another_services_database(service_databases) -> None:
    catalog_as_role = service_databases["catalog-role"]
    auth_db = service_databases["auth"].rsplit("/", 1)[1]
    with psycopg.connect(libpq(catalog_as_role)) as conn:  # its own database: fine
        conn.execute("CREATE TABLE videos (id int)")
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(libpq(catalog_as_role.rsplit("/", 1)[0] + f"/{auth_db}")).close()


def test_a_service_role_owns_its_database_and_nothing_more(service_databases) -> None:
    role_url = service_databases["auth-role"]
    with psycopg.connect(libpq(role_url)) as conn:
        who, owner_of_users = conn.execute(
            "SELECT current_user, (SELECT tableowner FROM pg_tables WHERE tablename = 'users')"
        ).fetchone()
        flags = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        conn.execute("INSERT INTO users (email) VALUES ('a@example.com')")  # migrations can
        conn.execute("ALTER TABLE users ADD COLUMN name text")
    assert owner_of_users == who  # tables the superuser made before now belong to the role
    assert flags == (False, False, False)


def test_provisioning_twice_keeps_working_and_rotates_a_deleted_password(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    admin = make_database("priv_rotate")
    credentials = privileges.Credentials(tmp_path)
    first = privileges.provision_postgres(admin, credentials.password("postgres:x"))
    again = privileges.Credentials(tmp_path)  # the next start reads the same file
    assert privileges.provision_postgres(admin, again.password("postgres:x")) == first
    assert stat.S_IMODE((tmp_path / "secrets" / "credentials.json").stat().st_mode) == 0o600
    del again.values["postgres:x"]
    assert privileges.provision_postgres(admin, again.password("postgres:x")) != first
    drop_database(admin)
    privileges.drop_database_role(admin)


@pytest.fixture
def redis_users(redis_prefix: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    prefix = f"{redis_prefix}priv:"
    urls = privileges.provision_redis(REDIS_URL, prefix, privileges.Credentials(tmp_path))
    yield prefix, urls
    privileges.drop_redis_users(REDIS_URL, prefix)


def test_a_service_redis_user_only_reaches_its_own_keys(redis_users) -> None:
    prefix, urls = redis_users
    catalog = redis.Redis.from_url(urls["catalog"])
    catalog.set(f"{prefix}catalog:video-list:version", 1)
    assert catalog.incr(f"{prefix}catalog:video-list:version") == 2
    for attempt in (
        lambda: catalog.get(f"{prefix}auth:ratelimit:login:x"),
        lambda: catalog.set(f"{prefix}mailer:delivery:x", "sent"),
        lambda: catalog.get("videoflix:catalog:video-list:json"),  # another stack's keys
        lambda: catalog.zadd(f"{prefix}arq:queue", {"job": 1}),
        lambda: catalog.flushall(),
        lambda: catalog.keys("*"),
        lambda: list(catalog.scan_iter()),
        lambda: catalog.config_get("*"),
        lambda: catalog.publish("anything", "x"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    catalog.close()


def test_the_catalog_user_announces_list_changes_on_its_own_channel_only(redis_users) -> None:
    """The list cache's change channel (videoflix_catalog.list_cache): publish and
    subscribe on <prefix>catalog:*, no other channel."""
    prefix, urls = redis_users
    channel = f"{prefix}catalog:video-list:changed"
    listener = redis.Redis.from_url(urls["catalog"]).pubsub()
    listener.subscribe(channel)
    assert listener.get_message(timeout=2)["type"] == "subscribe"
    catalog = redis.Redis.from_url(urls["catalog"])
    assert catalog.publish(channel, "1") == 1
    assert listener.get_message(timeout=2)["data"] == b"1"
    listener.close()
    for attempt in (
        lambda: catalog.publish(f"{prefix}auth:anything", "1"),
        lambda: redis.Redis.from_url(urls["auth"]).publish(channel, "1"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    catalog.close()


def test_processes_without_redis_get_no_user(redis_users) -> None:
    _, urls = redis_users
    assert sorted(urls) == [
        "auth",
        "catalog",
        "mailer",
        "transcoder-dispatcher",
        "transcoder-worker",
    ]


def test_the_transcoder_users_can_run_the_arq_queue(redis_users) -> None:
    prefix, urls = redis_users

    async def enqueue_and_read() -> None:
        pool = await create_pool(
            RedisSettings.from_dsn(urls["transcoder-dispatcher"]),
            default_queue_name=f"{prefix}arq:queue",
        )
        job = await pool.enqueue_job(
            "transcode_video", video_id=1, _job_id=f"{prefix}transcode:1:1"
        )
        assert job is not None
        await pool.aclose()
        worker = await create_pool(RedisSettings.from_dsn(urls["transcoder-worker"]))
        assert await worker.zcard(f"{prefix}arq:queue") == 1
        assert await worker.exists(f"arq:job:{prefix}transcode:1:1")
        await worker.info()  # arq's worker logs it at start
        with pytest.raises(redis.exceptions.NoPermissionError):
            await worker.get(f"{prefix}mailer:delivery:x")
        await worker.delete(f"{prefix}arq:queue", f"arq:job:{prefix}transcode:1:1")
        await worker.aclose()

    asyncio.run(enqueue_and_read())


def test_redis_user_names_follow_the_key_prefix() -> None:
    assert redis_username(BY_NAME["auth"], "videoflix:") == "videoflix-auth"
    assert redis_username(BY_NAME["mailer"], "vft:1a2b:e2e:") == "vft-1a2b-e2e-mailer"


def test_make_up_on_private_servers_lets_no_one_in_without_a_user(
    monkeypatch: pytest.MonkeyPatch, closed_ports: ClosedPorts
) -> None:
    """Closed ports: make up starts PostgreSQL, Redis and NATS itself, each refusing
    anonymous clients, and the processes' own users work; a second start reuses them."""
    from deploy.devstack.provision import provision
    from deploy.devstack.servers import stop_private_infra

    data_dir, env = closed_ports.data_dir, closed_ports.env()
    pg, rd, nt = closed_ports.postgres, closed_ports.redis, closed_ports.nats
    for name in ("REDIS_KEY_PREFIX", "NATS_SUBJECT_PREFIX", "NATS_STREAM_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    try:
        first = provision(dict(env), data_dir, port_base=free_port())
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=rd).get("videoflix:auth:x")
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg}/postgres").close()
        assert privileges.nats_requires_auth("127.0.0.1", nt) is True
        mailer = first["mailer"]
        assert redis.Redis.from_url(mailer["REDIS_URL"]).set("videoflix:mailer:x", 1)
        with psycopg.connect(libpq(first["auth"]["AUTH_DATABASE_URL"])) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("videoflix_auth",)
        asyncio.run(_connects(mailer))
        assert "ADMIN_PASSWORD" not in mailer
        assert "REDIS_URL" not in first["streaming"]

        again = provision(dict(env), data_dir, port_base=free_port())  # still running
        assert again == first
    finally:
        stop_private_infra(data_dir)


async def _connects(process_env: dict[str, str]) -> None:
    bus = EventBus(
        url=process_env["NATS_URL"],
        principal=process_env["NATS_USER"],
        user=process_env["NATS_USER"],
        password=process_env["NATS_PASSWORD"],
    )
    await bus.connect(wait=False, attempt_timeout=5)
    await bus.check()
    await bus.close()


def test_each_process_sources_only_its_own_credentials_from_a_private_file(
    tmp_path: Path,
) -> None:
    from deploy.devstack.supervise import write_procfile

    per_process = {
        name: {"NATS_PASSWORD": f"secret-of-{name}", "NATS_USER": name}
        for name in privileges.PROCESS_PRINCIPALS
    }
    procfile = write_procfile(tmp_path, 8000, per_process).read_text()
    assert "secret-of-" not in procfile  # `ps` shows command lines
    for name in privileges.PROCESS_PRINCIPALS:
        env_file = tmp_path / "secrets" / f"{name}.env"
        assert f"{name}: set -a && . '{env_file}' && set +a && exec env HTTP_PORT=" in procfile
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert env_file.read_text().count("secret-of-") == 1
        assert f"secret-of-{name}'" in env_file.read_text()
    assert "mail-sink: exec env HTTP_PORT=8007" in procfile  # no credentials at all


def test_admin_connections_and_service_secrets_are_withheld_from_every_process() -> None:
    assert {
        "AUTH_DATABASE_URL",
        "CATALOG_DATABASE_URL",
        "REDIS_URL",
        "NATS_URL",
        "ADMIN_PASSWORD",
        "SMTP_PASSWORD",
        "POSTGRES_PASSWORD",
        "NATS_PASSWORD_AUTH",
    } <= set(privileges.WITHHELD)


def test_make_up_generates_the_mail_token_key_once_and_gives_it_to_auth_and_mailer_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAIL_TOKEN_KEY", raising=False)
    env: dict[str, str] = {}
    privileges.ensure_mail_token_key(env, privileges.Credentials(tmp_path))
    key = env["MAIL_TOKEN_KEY"]
    assert len(parse_key(key)) == 32
    again: dict[str, str] = {}  # the next start reuses it: sealed events wait in the stream
    privileges.ensure_mail_token_key(again, privileges.Credentials(tmp_path))
    assert again["MAIL_TOKEN_KEY"] == key
    assert "MAIL_TOKEN_KEY" in privileges.WITHHELD
    for name in privileges.PROCESS_PRINCIPALS:
        own = privileges.process_env(
            privileges.principal_of(name),
            env=env,
            nats_url="nats://127.0.0.1:4222",
            redis_urls={},
            database_urls={"auth": "postgresql://a", "catalog": "postgresql://c"},
            credentials=privileges.Credentials(tmp_path),
        )
        assert ("MAIL_TOKEN_KEY" in own) == (name in ("auth", "mailer")), name
    configured = {"MAIL_TOKEN_KEY": "from-the-operator"}
    privileges.ensure_mail_token_key(configured, privileges.Credentials(tmp_path))
    assert configured["MAIL_TOKEN_KEY"] == "from-the-operator"
