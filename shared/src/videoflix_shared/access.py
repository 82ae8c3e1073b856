"""Least privilege: what each process may do on NATS, in Redis and in PostgreSQL.

`PRINCIPALS` is the one table; everything else is derived from it:
- `nats_permissions` / `render_nats_authorization`: the NATS users and their publish /
  subscribe allow lists (generated from NATS_SUBJECT_PREFIX and NATS_STREAM_PREFIX),
- `redis_acl_rules`: the Redis ACL of each user (key patterns under REDIS_KEY_PREFIX and
  the command categories it needs),
- `database_role`: the PostgreSQL role owning a service's database.
The native launcher (deploy/devstack/) and the compose configs (deploy/docker/) both
render from it, and `EventBus` uses it to provision only the streams a process owns and to
keep its replies on a private inbox.

Giving a process a new right is one line here: e.g. a new stream the catalog publishes is
one more name in its `owns`, a new consumer one more `Reads`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from videoflix_shared.events import (
    ACCESS_STREAM,
    AUTH_STREAM,
    CATALOG_STREAM,
    STREAMS,
    TRANSCODER_STREAM,
)


@dataclass(frozen=True)
class Reads:
    """A stream a principal consumes: from one durable pull consumer, or (durable None)
    from ephemeral consumers it creates itself (ordered consumers, flow control)."""

    stream: str  # unprefixed, a key of events.STREAMS
    durable: str | None = None


@dataclass(frozen=True)
class Principal:
    name: str  # NATS user, Redis user suffix, the value of the process's service identity
    owns: tuple[str, ...] = ()  # streams it provisions and is the only publisher to
    reads: tuple[Reads, ...] = ()
    redis_keys: tuple[str, ...] = ()  # glob patterns; "{p}" is the (escaped) key prefix
    redis_channels: tuple[str, ...] = ()  # Pub/Sub channel patterns, the same way
    redis_extra: tuple[str, ...] = ()  # ACL rules beyond the common ones
    database: str | None = None  # "auth" / "catalog": it owns that service's database
    secrets: tuple[str, ...] = ()  # secret environment variables only these processes get

    @property
    def uses_nats(self) -> bool:
        return bool(self.owns or self.reads)

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_keys)


# arq keeps its keys under fixed names; the queue is <prefix>arq:queue and every job id
# starts with <prefix>transcode: (videoflix_transcoder.queue), so nearly all of it is
# prefixable. `arq:abort` is not (arq's worker removes a finished job's id from it, and the
# set is shared by every stack on the server): it holds job ids only.
_ARQ_KEYS = (
    "arq:abort",
    "{p}arq:queue",
    "{p}arq:queue:health-check",
    "arq:job:{p}transcode:*",
    "arq:in-progress:{p}transcode:*",
    "arq:result:{p}transcode:*",
    "arq:retry:{p}transcode:*",
    "{p}transcoder:*",
)
_LUA = ("+eval", "+evalsha", "+script|load", "+script|exists")
# the key sealing the links of mail events (videoflix_shared.sealing): auth and mailer only
MAIL_TOKEN_SECRETS = ("MAIL_TOKEN_KEY", "MAIL_TOKEN_KEYS_PREVIOUS")

PRINCIPALS: tuple[Principal, ...] = (
    Principal(
        "auth",
        owns=(AUTH_STREAM,),
        redis_keys=("{p}auth:*",),
        database="auth",
        secrets=("ADMIN_EMAIL", "ADMIN_PASSWORD", *MAIL_TOKEN_SECRETS),
    ),
    Principal(
        "catalog",
        # CATALOG for the transcoder; ACCESS, the playback state of every video, for streaming
        owns=(CATALOG_STREAM, ACCESS_STREAM),
        # ...and reads ACCESS back at start (an ephemeral consumer: the last state per video)
        # to announce what the stream lacks (videoflix_catalog.events.announced_access)
        reads=(Reads(TRANSCODER_STREAM, "catalog"), Reads(ACCESS_STREAM)),
        redis_keys=("{p}catalog:*",),
        # the list cache announces changes to every catalog process on its own channel
        redis_channels=("{p}catalog:*",),
        redis_extra=("+publish", "+subscribe", "+unsubscribe", "+punsubscribe"),
        database="catalog",
    ),
    # each streaming process replays and follows ACCESS with an ephemeral consumer of its own
    Principal("streaming", reads=(Reads(ACCESS_STREAM),)),
    Principal(
        "transcoder-dispatcher",
        reads=(Reads(CATALOG_STREAM, "transcoder-dispatcher"),),
        redis_keys=_ARQ_KEYS,
        redis_extra=_LUA,
    ),
    # arq's worker logs INFO / DBSIZE once at start
    Principal(
        "transcoder-worker",
        owns=(TRANSCODER_STREAM,),
        redis_keys=_ARQ_KEYS,
        redis_extra=(*_LUA, "+info", "+dbsize"),
    ),
    Principal(
        "mailer",
        reads=(Reads(AUTH_STREAM, "mailer"),),
        redis_keys=("{p}mailer:*",),
        redis_extra=_LUA,
        secrets=("SMTP_USER", "SMTP_PASSWORD", *MAIL_TOKEN_SECRETS),
    ),
)
BY_NAME: dict[str, Principal] = {p.name: p for p in PRINCIPALS}


def principal(name: str) -> Principal:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown principal {name!r}; known: {sorted(BY_NAME)}") from None


# --- NATS ---------------------------------------------------------------------------------


def inbox_prefix(name: str) -> str:
    """Where a principal's replies arrive (JetStream API answers, pull batches, publish
    acks). Private per principal: with the shared `_INBOX.>` any user could read the AUTH
    messages a pull request of the mailer asks to be delivered there."""
    return f"_INBOX_{name}"


@dataclass(frozen=True)
class NatsPermissions:
    publish: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)


def nats_permissions(p: Principal, *, subject_prefix: str, stream_prefix: str) -> NatsPermissions:
    api = "$JS.API"
    publish = [f"{api}.INFO"]  # readiness check (account info)
    for name in p.owns:
        stream = stream_prefix + name
        publish.append(subject_prefix + STREAMS[name])
        publish += [f"{api}.STREAM.{op}.{stream}" for op in ("CREATE", "UPDATE", "INFO")]
    for reads in p.reads:
        publish += _consumer_subjects(f"{stream_prefix}{reads.stream}", reads.durable)
    return NatsPermissions(publish=publish, subscribe=[f"{inbox_prefix(p.name)}.>"])


def _consumer_subjects(stream: str, durable: str | None) -> list[str]:
    api = "$JS.API.CONSUMER"
    # STREAM.INFO (the stream's configuration and counters, no message): a reader whose
    # consumer was deleted tells a re-created stream from the same one (videoflix_shared.bus).
    stream_info = f"$JS.API.STREAM.INFO.{stream}"
    if durable is not None:  # this one consumer only: create (old and 2.9+ forms), pull, ack
        return [
            stream_info,
            f"{api}.INFO.{stream}.{durable}",
            f"{api}.DURABLE.CREATE.{stream}.{durable}",
            f"{api}.CREATE.{stream}.{durable}",
            f"{api}.CREATE.{stream}.{durable}.>",
            f"{api}.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        ]
    return [  # ephemeral (ordered) consumers of its own on the stream, with flow control
        stream_info,
        f"{api}.CREATE.{stream}",
        f"{api}.CREATE.{stream}.>",
        f"{api}.INFO.{stream}.*",
        f"{api}.DELETE.{stream}.*",
        f"{api}.MSG.NEXT.{stream}.*",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def render_nats_authorization(
    passwords: dict[str, str], *, subject_prefix: str, stream_prefix: str
) -> str:
    """An nats-server `authorization` block with one user per principal using NATS.

    `passwords` maps a principal to its password, or to `$VARIABLE` (unquoted in the
    output), which nats-server reads from its environment (compose)."""
    lines = ["authorization {", "  users = ["]
    for p in PRINCIPALS:
        if not p.uses_nats:
            continue
        perms = nats_permissions(p, subject_prefix=subject_prefix, stream_prefix=stream_prefix)
        password = passwords[p.name]
        password_value = password if password.startswith("$") else json.dumps(password)
        lines += [
            "    {",
            f"      user: {json.dumps(p.name)}",
            f"      password: {password_value}",
            "      permissions: {",
            f"        publish: {{ allow: {json.dumps(perms.publish)} }}",
            f"        subscribe: {{ allow: {json.dumps(perms.subscribe)} }}",
            "      }",
            "    }",
        ]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


# --- Redis --------------------------------------------------------------------------------

# Reads and writes of its own keys, MULTI/EXEC, PING/AUTH; nothing that touches the whole
# server (FLUSHALL, CONFIG, KEYS, DEBUG... are @dangerous) or lists other users' key names.
_REDIS_COMMON = (
    "-@all",
    "+@read",
    "+@write",
    "+@transaction",
    "+@connection",
    "-@dangerous",
    "-scan",
    "-randomkey",
)


def redis_username(p: Principal, key_prefix: str) -> str:
    """Per stack (two stacks on one server use different prefixes) and URL-safe."""
    stack = re.sub(r"[^A-Za-z0-9]+", "-", key_prefix).strip("-") or "videoflix"
    return f"{stack}-{p.name}"


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def redis_acl_rules(p: Principal, key_prefix: str) -> list[str]:
    """The ACL rules (without user name and password) for `ACL SETUSER` or an ACL file."""
    prefix = _glob_escape(key_prefix)
    keys = [f"~{pattern.format(p=prefix)}" for pattern in p.redis_keys]
    channels = [f"&{pattern.format(p=prefix)}" for pattern in p.redis_channels]
    return ["resetchannels", *channels, *keys, *_REDIS_COMMON, *p.redis_extra]


# --- PostgreSQL ---------------------------------------------------------------------------


def database_role(database: str) -> str:
    """The role owning a service's database is named after it, so stacks and test runs
    with their own databases on one server get their own roles."""
    return database
