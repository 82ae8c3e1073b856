"""`videoflix-mailer`: the mailer's processes and the operator's commands.

videoflix-mailer consume                      mail event consumer (health port HTTP_PORT)
videoflix-mailer sink                         dev SMTP sink (SMTP_PORT) + HTTP (HTTP_PORT)
videoflix-mailer mail list [--to ADDR]        messages in the dev sink, newest first
videoflix-mailer mail show ID [--raw]         one of them
videoflix-mailer dead-letters list [--json]   emails given up on, newest first
videoflix-mailer dead-letters show ID
videoflix-mailer dead-letters replay ID...    publish them to the stream again
videoflix-mailer dead-letters delete ID...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

from videoflix_mailer.settings import MailerSettings

if TYPE_CHECKING:
    from videoflix_mailer.dead_letters import DeadLetterStore

# The commands import what they use inside their functions: reading the mailbox or the
# dead letters should not pay for loading the web and SMTP server stack first.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoflix-mailer", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("consume", help="deliver mail events (durable consumer 'mailer')")
    commands.add_parser("sink", help="development SMTP sink with an HTTP listing")

    mail = commands.add_parser("mail", help="read the development sink's messages")
    mail_commands = mail.add_subparsers(dest="mail_command", required=True)
    mail_list = mail_commands.add_parser("list")
    mail_list.add_argument("--to", help="only messages to this address")
    mail_list.add_argument("--limit", type=int, default=50)
    mail_show = mail_commands.add_parser("show")
    mail_show.add_argument("id")
    mail_show.add_argument("--raw", action="store_true", help="print the .eml as received")

    dead = commands.add_parser("dead-letters", help="list, replay or delete dead letters")
    dead_commands = dead.add_subparsers(dest="dead_command", required=True)
    dead_list = dead_commands.add_parser("list")
    dead_list.add_argument("--limit", type=int, default=100)
    dead_list.add_argument("--json", action="store_true", help="one JSON array")
    dead_commands.add_parser("show").add_argument("id")
    dead_commands.add_parser("replay").add_argument("ids", nargs="+", metavar="id")
    dead_commands.add_parser("delete").add_argument("ids", nargs="+", metavar="id")
    return parser


def _mail(args: argparse.Namespace, settings: MailerSettings) -> int:
    from videoflix_mailer.mailbox import Mailbox

    mailbox = Mailbox(settings.mail_sink_dir)
    if args.mail_command == "list":
        for m in mailbox.list(to=args.to, limit=args.limit):
            print(f"{m.id}  {m.date}  {', '.join(m.to)}  {m.subject}")
        return 0
    if args.raw:
        raw = mailbox.raw(args.id)
        if raw is not None:
            sys.stdout.buffer.write(raw)
            return 0
    elif (message := mailbox.get(args.id)) is not None:
        print(f"From:    {message.sender}\nTo:      {', '.join(message.to)}")
        print(f"Subject: {message.subject}\nDate:    {message.date}\n")
        print(message.text)
        print("Links:\n" + "\n".join(f"  {link}" for link in message.links))
        return 0
    print(f"no message {args.id!r} in {settings.mail_sink_dir}", file=sys.stderr)
    return 1


async def _dead_letters(args: argparse.Namespace, settings: MailerSettings) -> int:
    from videoflix_mailer.dead_letters import DeadLetterStore
    from videoflix_shared.redis import create_redis

    redis = create_redis(settings)
    store = DeadLetterStore(redis, settings)
    try:
        if args.dead_command == "list":
            letters = await store.list(limit=args.limit)
            if args.json:
                print(json.dumps([letter.to_json() for letter in letters], indent=2))
            for letter in [] if args.json else letters:
                print(
                    f"{letter.id}  {letter.failed_at:%Y-%m-%d %H:%M:%S}  {letter.kind:<9}  "
                    f"{letter.subject}  {letter.recipient or '-'}  {letter.reason[:120]}"
                )
            return 0
        if args.dead_command == "show":
            found = await store.get(args.id)
            if found is None:
                print(f"no dead letter {args.id!r}", file=sys.stderr)
                return 1
            print(json.dumps(found.to_json(), indent=2))
            return 0
        if args.dead_command == "delete":
            failed = 0
            for letter_id in args.ids:
                if await store.remove(letter_id):
                    print(f"deleted {letter_id}")
                else:
                    print(f"no dead letter {letter_id!r}", file=sys.stderr)
                    failed += 1
            return 1 if failed else 0
        return await _replay(args.ids, store, settings)
    finally:
        await redis.aclose()


async def _replay(ids: list[str], store: DeadLetterStore, settings: MailerSettings) -> int:
    from videoflix_mailer.service import replay_dead_letter
    from videoflix_shared.bus import EventBus

    # Replaying republishes an auth event, which only auth's NATS user may (docs/SECURITY.md):
    # the bus acts as auth, with the credentials the operator gives this command.
    bus = EventBus.from_settings(settings, principal="auth")
    # nats-py keeps retrying an unreachable server even with wait=False: bound it here.
    await asyncio.wait_for(bus.connect(wait=False), timeout=15)
    failed = 0
    try:
        for letter_id in ids:
            try:
                letter = await replay_dead_letter(store=store, bus=bus, letter_id=letter_id)
            except LookupError as exc:
                print(exc, file=sys.stderr)
                failed += 1
            else:
                print(f"replayed {letter.id}: {letter.subject} {letter.recipient or ''}".rstrip())
    finally:
        await bus.close()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = MailerSettings()
    if args.command in ("consume", "sink"):
        from videoflix_mailer.app import run_consumer, run_sink
        from videoflix_shared.app import run_worker

        work = run_consumer if args.command == "consume" else run_sink
        run_worker(service=f"mailer-{args.command}", settings=settings, work=work)
        return
    if args.command == "mail":
        raise SystemExit(_mail(args, settings))
    from redis.exceptions import RedisError

    try:
        raise SystemExit(asyncio.run(_dead_letters(args, settings)))
    except (RedisError, OSError) as exc:  # an operator wants a sentence, not a traceback
        print(
            f"cannot reach Redis ({settings.redis_url}) or NATS ({settings.nats_url}): {type(exc).__name__} {exc}",
            file=sys.stderr,
        )
        raise SystemExit(2) from exc
