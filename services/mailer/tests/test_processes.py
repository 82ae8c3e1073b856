"""The mailer as the launcher runs it: `videoflix-mailer consume` processes sharing the
durable consumer, and the operator's `videoflix-mailer dead-letters` command."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

from videoflix_shared.processes import stop_process
from videoflix_testing.plugin import free_port, wait_until_async

from .conftest import user_registered, wait_for_messages, wait_until_consumer_idle

MAILER = str(Path(sys.executable).parent / "videoflix-mailer")


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [MAILER, *args], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


async def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(
        subprocess.run,
        [MAILER, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_two_mailer_processes_on_one_stream_send_every_email_once(
    bus, smtp, mailbox, mail_env, tmp_path
):
    await smtp.start()
    processes = []
    try:
        for n in (1, 2):
            env = {**mail_env, "HTTP_PORT": str(free_port())}
            processes.append(
                (start_process(["consume"], env, tmp_path / f"mailer{n}.log"), env["HTTP_PORT"])
            )
        async with httpx.AsyncClient() as client:
            for _, port in processes:
                await wait_until_async(
                    lambda port=port: _ready(client, port), timeout=30, what="mailer ready"
                )

        # Both are pulling from the durable before anything is published.
        await wait_until_async(
            lambda: _pulling_processes(bus, 2), timeout=30, what="two waiting pull requests"
        )
        events = [user_registered(f"viewer{i}@example.com") for i in range(30)]
        for event in events:
            await bus.publish(event)
        for event in events[:10]:  # redelivered copies of a third of them, as after a crash
            await bus.publish_raw(
                event.subject, bus.sealed_json(event), msg_id=f"{event.event_id}-again"
            )

        await wait_for_messages(mailbox, "viewer29@example.com", timeout=30)
        await wait_until_consumer_idle(bus, timeout=30)
        received = Counter(to for m in mailbox.list(limit=1000) for to in m.to)
        assert received == Counter({f"viewer{i}@example.com": 1 for i in range(30)})
    finally:
        for process, _ in processes:
            stop_process(process)

    sent_by = [
        len(re.findall(r"sent auth\.user\.registered", (tmp_path / f"mailer{n}.log").read_text()))
        for n in (1, 2)
    ]
    print(f"two mailer processes: emails sent per process {sent_by}")
    assert sum(sent_by) == 30
    assert all(count > 0 for count in sent_by), f"one process did all the work: {sent_by}"
    assert all(p.returncode == 0 for p, _ in processes)  # clean shutdown on SIGTERM


async def _pulling_processes(bus, count: int) -> bool:
    info = await bus.js.consumer_info(bus.stream("AUTH"), "mailer")
    return (info.num_waiting or 0) >= count


async def _ready(client: httpx.AsyncClient, port: str) -> bool:
    response = await client.get(f"http://127.0.0.1:{port}/readyz")
    return response.status_code == 200


async def test_operator_lists_and_replays_a_dead_letter_with_one_command(
    bus, smtp, mailbox, start_mailer, mail_env
):
    from .conftest import RefusingHandler

    refusing = await smtp.start(RefusingHandler(mailbox, rcpt="550 5.1.1 unknown user"))
    start_mailer()
    event = user_registered("later@example.com")
    await bus.publish(event)
    await wait_until_consumer_idle(bus)

    listed = await run_cli(["dead-letters", "list", "--json"], mail_env)
    assert listed.returncode == 0, listed.stderr
    [letter] = json.loads(listed.stdout)
    assert letter["kind"] == "rejected"
    assert letter["recipient"] == "later@example.com"
    assert letter["event_id"] == str(event.event_id)
    assert "550 5.1.1 unknown user" in letter["reason"]

    refusing.rcpt_refusal = None
    replayed = await run_cli(["dead-letters", "replay", letter["id"]], mail_env)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {letter['id']}" in replayed.stdout

    [message] = await wait_for_messages(mailbox, "later@example.com")
    assert message.links == [event.activation_url]
    await wait_until_consumer_idle(bus)
    assert len(mailbox.list()) == 1
    after = await run_cli(["dead-letters", "list", "--json"], mail_env)
    assert json.loads(after.stdout) == []


async def test_dev_sink_process_stores_smtp_messages_and_lists_them_over_http(mail_env, tmp_path):
    import aiosmtplib

    from videoflix_mailer.emails import EmailRenderer

    env = {**mail_env, "MAIL_SINK_DIR": str(tmp_path / "sink-mail")}
    sink = start_process(["sink"], env, tmp_path / "sink.log")
    base = f"http://127.0.0.1:{env['HTTP_PORT']}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            await wait_until_async(lambda: _ok(client, "/readyz"), timeout=30, what="sink ready")
            renderer = EmailRenderer(sender="Videoflix <noreply@videoflix.example.com>")
            older = user_registered("reader@example.com")
            newer = user_registered("reader@example.com")
            other = user_registered("someone.else@example.com")
            for event in (older, newer, other):
                await aiosmtplib.send(
                    renderer.render(event),
                    hostname="127.0.0.1",
                    port=int(env["SMTP_PORT"]),
                    start_tls=False,
                )

            listed = (await client.get("/messages", params={"to": "Reader@Example.com"})).json()
            assert [m["links"] for m in listed] == [[newer.activation_url], [older.activation_url]]
            first = listed[0]
            assert set(first) == {"id", "from", "to", "subject", "date", "text", "html", "links"}
            assert first["to"] == ["reader@example.com"]
            assert first["from"] == "Videoflix <noreply@videoflix.example.com>"
            assert first["subject"] == "Confirm your email address for Videoflix"
            assert newer.activation_url in first["text"]
            assert "<html" in first["html"]

            one = await client.get(f"/messages/{first['id']}")
            assert one.status_code == 200
            assert one.json() == first
            raw = await client.get(f"/messages/{first['id']}.eml")
            assert raw.status_code == 200
            assert raw.headers["content-type"] == "message/rfc822"
            assert b"X-RcptTo: reader@example.com" in raw.content
            assert (await client.get("/messages/00000000000000000000-00000000")).status_code == 404
            missing = await client.get("/messages/not-an-id.eml")
            assert missing.status_code == 404
            assert missing.json() == {"detail": "No such message."}
            escape = await client.get("/messages/..%2F..%2Fetc%2Fpasswd.eml")
            assert escape.status_code == 404
            assert escape.headers["content-type"] == "application/json"
            assert (await client.get("/messages", params={"limit": 0})).status_code == 400

            cli = await run_cli(["mail", "list", "--to", "someone.else@example.com"], env)
            assert cli.returncode == 0
            assert "someone.else@example.com" in cli.stdout
            assert cli.stdout.count("\n") == 1
            shown = await run_cli(["mail", "show", first["id"]], env)
            assert newer.activation_url in shown.stdout

            cleared = await client.delete("/messages")
            assert cleared.json() == {"deleted": 3}
            assert (await client.get("/messages")).json() == []
    finally:
        stop_process(sink)
    assert sink.returncode == 0


async def _ok(client: httpx.AsyncClient, path: str) -> bool:
    return (await client.get(path)).status_code == 200
