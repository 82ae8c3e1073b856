"""Live activation and reset tokens rest in clear only in the user's mailbox: not in auth's
outbox table, not in the JetStream AUTH stream, not in the mailer's Redis keys (delivery
ledger, dead letters) or its log, while the mailer still mails working links.

The mailer runs as the launcher runs it (`videoflix-mailer consume` and the development
sink, `videoflix-mailer sink`, as processes on this run's streams and a Redis prefix of
their own); the tokens searched for are the ones taken from the emails it sent.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from videoflix_auth.app import create_app
from videoflix_shared.bus import EventBus
from videoflix_shared.processes import stop_processes
from videoflix_shared.sealing import MissingMailTokenKey
from videoflix_testing.plugin import free_port, wait_until, wait_until_async

from .conftest import raw_stream_messages, running

MAILER = str(Path(sys.executable).parent / "videoflix-mailer")
TOKEN_IN_LINK = re.compile(r"[?&]token=([^&\s\"'<>]+)")


class MailerProcesses:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: list[subprocess.Popen] = []

    def start(self, command: str, http_port: int) -> None:
        with open(self.logs / f"{command}.log", "wb") as log:
            self.processes.append(
                subprocess.Popen(
                    [MAILER, command],
                    env={**os.environ, **self.env, "HTTP_PORT": str(http_port)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def log_bytes(self) -> bytes:
        return b"".join(path.read_bytes() for path in self.logs.glob("*.log"))

    def stop(self) -> None:
        stop_processes(self.processes)


@pytest.fixture
def mailer(common_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[MailerProcesses, int]]:
    sink_http = free_port()
    env = {
        **common_env,
        "REDIS_KEY_PREFIX": f"{common_env['REDIS_KEY_PREFIX']}atrest:",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(free_port()),
        "MAIL_SINK_DIR": str(tmp_path / "mail"),
        "LOG_LEVEL": "DEBUG",  # everything it could log about an event
    }
    processes = MailerProcesses(env, tmp_path)
    processes.start("sink", sink_http)
    processes.start("consume", free_port())
    try:
        yield processes, sink_http
    finally:
        processes.stop()


def messages_to(sink_http: int, address: str) -> list[dict]:
    response = httpx.get(f"http://127.0.0.1:{sink_http}/messages", params={"to": address})
    response.raise_for_status()
    return response.json()


def wait_for_mail(sink_http: int, address: str, count: int) -> list[dict]:
    wait_until(
        lambda: len(messages_to(sink_http, address)) >= count,
        timeout=60,
        what=f"{count} email(s) to {address}",
    )
    return messages_to(sink_http, address)


async def redis_values(url: str, prefix: str) -> list[bytes]:
    """Every value under `prefix`, whatever its type (strings, hashes, sorted sets)."""
    client = aioredis.Redis.from_url(url)
    values: list[bytes] = []
    try:
        async for key in client.scan_iter(match=f"{prefix}*"):
            kind = (await client.type(key)).decode()
            values.append(key)
            if kind == "string":
                values.append(await client.get(key) or b"")
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    values += [field, value]
            elif kind == "zset":
                values += await client.zrange(key, 0, -1)
            else:
                raise AssertionError(f"unexpected {kind} at {key!r}")
    finally:
        await client.aclose()
    return values


async def activate_with_a_mailed_link(api, sink_http, email: str) -> None:
    """(b) a link the mailer sent activates the account (newest first)."""
    registration_mails = await asyncio.to_thread(wait_for_mail, sink_http, email, 2)
    activation_links = [
        link for message in registration_mails for link in message["links"] if "token=" in link
    ]
    assert activation_links, registration_mails
    activated = []
    for link in activation_links:
        uid, token = api.link_parts(link)
        activated.append((await api.client.get(f"/api/activate/{uid}/{token}/")).status_code)
        if activated[-1] == 200:
            break
    assert activated[-1] == 200, activated


async def reset_with_the_mailed_link(api, sink_http, email: str) -> set[str]:
    """(b) the reset link the mailer sent works; returns every mailed link and its token."""
    response = await api.client.post("/api/password_reset/", json={"email": email})
    assert response.status_code == 200
    mails = await asyncio.to_thread(wait_for_mail, sink_http, email, 3)
    links = [link for message in mails for link in message["links"] if "token=" in link]
    reset_link = next(link for link in links if "confirm_password" in link)
    assert re.match(r"http://127\.0\.0\.1:5500/pages/auth/confirm_password\.html\?uid=", reset_link)
    reset_uid, reset_token = api.link_parts(reset_link)
    confirm = await api.client.post(
        f"/api/password_confirm/{reset_uid}/{reset_token}/",
        json={"new_password": "Another-Horse-43", "confirm_password": "Another-Horse-43"},
    )
    assert confirm.status_code == 200, confirm.text
    return {TOKEN_IN_LINK.search(link).group(1) for link in links} | set(links)


async def auth_stream_as_stored(common_env) -> list[tuple[str, bytes]]:
    """(a) the AUTH stream, message by message, as stored."""
    bus = EventBus(
        url=common_env["NATS_URL"],
        subject_prefix=common_env["NATS_SUBJECT_PREFIX"],
        stream_prefix=common_env["NATS_STREAM_PREFIX"],
    )
    await bus.connect(wait=False)
    try:
        stored = await raw_stream_messages(bus, "AUTH")
        # (d) the stream auth provisioned keeps mail events hours, not days
        info = await bus.js.stream_info(bus.stream("AUTH"))
        assert info.config.max_age == 6 * 3600
    finally:
        await bus.close()
    return stored


async def test_tokens_rest_in_clear_only_in_the_mailbox(api, db, mailer, common_env):
    processes, sink_http = mailer
    email = api.new_email("at-rest")
    assert (await api.register(email)).status_code == 201
    assert (await api.register(email)).status_code == 201  # again, before activating
    await activate_with_a_mailed_link(api, sink_http, email)
    secrets = await reset_with_the_mailed_link(api, sink_http, email)
    assert len(secrets) >= 4  # two activation links (or one and a notice with it) + reset

    # (a) the outbox keeps no row once published
    await wait_until_async(lambda: db.count("outbox") == 0, timeout=15, what="outbox empty")
    assert db.query("SELECT count(*) FROM outbox") == [(0,)]

    stored = await auth_stream_as_stored(common_env)
    mine = [data for _, data in stored if email.encode() in data]
    assert len(mine) >= 3
    # (a) the mailer's Redis keys (sent-ledger, claims, dead letters) and its log
    at_rest = {
        "AUTH stream": b"\n".join(data for _, data in stored),
        "mailer Redis": b"\n".join(
            await redis_values(common_env["REDIS_URL"], processes.env["REDIS_KEY_PREFIX"])
        ),
        "mailer log": processes.log_bytes(),
    }
    for secret in secrets:
        for where, raw in at_rest.items():
            assert secret.encode() not in raw, f"{secret} rests in clear in the {where}"


async def test_auth_refuses_to_start_in_production_without_a_mail_token_key(make_settings):
    settings = make_settings(
        ENVIRONMENT="production",
        MAIL_TOKEN_KEY="",
        ADMIN_EMAIL="admin@example.com",
        ADMIN_PASSWORD="Production-Admin-2026",
    )
    app = create_app(settings)
    with pytest.raises(MissingMailTokenKey, match="MAIL_TOKEN_KEY"):
        async with running(app):
            pass
