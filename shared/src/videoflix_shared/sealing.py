"""Sealing the token-bearing fields of mail events, so live activation and reset links rest
in clear only in the user's mailbox: never in auth's outbox table, the JetStream AUTH
stream or the mailer's dead letters.

Every URL field (`*_url`) of an AUTH stream event may carry a live token, so all of them
travel sealed with AES-256-GCM under a key only auth and the mailer hold (`MAIL_TOKEN_KEY`,
32 random bytes, base64url). A sealed event has `version` 2 (an older mailer refuses it
loudly as an unsupported version instead of mailing a scrambled link).

A sealed value is `vfx1.<key id>.<base64url(nonce | ciphertext | tag)>`. The associated
data is the event's subject, event id and field name: a sealed value copied into another
event, or into another field, does not open. The key id (derived from the key) says which
key sealed it, so keys rotate: the new key becomes `MAIL_TOKEN_KEY`, the old one moves to
`MAIL_TOKEN_KEYS_PREVIOUS` (comma-separated; only opens) until the events it sealed are
gone from the stream (its retention, hours).

`python -m videoflix_shared.sealing` prints a new key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from videoflix_shared.events import AUTH_STREAM, Event

FORMAT = "vfx1"
SEALED_VERSION = 2  # the `version` of an event whose URL fields are sealed
KEY_BYTES = 32
NONCE_BYTES = 12
SEALED_STREAM = AUTH_STREAM  # the mail events

EventT = TypeVar("EventT", bound=Event)


class SealingError(ValueError):
    """A sealed value that cannot be opened: wrong or unknown key, tampered, or malformed."""


class MissingMailTokenKey(RuntimeError):
    pass


def _b64decode(text: str) -> bytes:
    """Strict base64url (no padding needed): anything outside the alphabet is an error."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip("=")


def parse_key(text: str) -> bytes:
    """32 bytes from base64url (standard base64 and missing padding accepted)."""
    cleaned = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    try:
        key = _b64decode(cleaned)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a mail token key must be base64url") from exc
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"a mail token key must be {KEY_BYTES} random bytes, base64url "
            f"(this one is {len(key)}); generate one with `python -m videoflix_shared.sealing`"
        )
    return key


def key_id(key: bytes) -> str:
    """A short public name of a key (a hash of it, not the key): which key sealed a value."""
    return hashlib.sha256(b"videoflix mail token key id\0" + key).hexdigest()[:12]


def sealed_fields(event: Event) -> tuple[str, ...]:
    """The fields of `event` that travel sealed: every URL field of a mail event."""
    if event.stream != SEALED_STREAM:
        return ()
    return tuple(name for name in type(event).model_fields if name.endswith("_url"))


def _associated_data(event: Event, field: str) -> bytes:
    return f"{event.subject}\0{event.event_id}\0{field}".encode()


class Sealer:
    def __init__(self, current: bytes, previous: tuple[bytes, ...] = ()) -> None:
        self.current_id = key_id(current)
        self.current = AESGCM(current)
        self.keys = {key_id(k): AESGCM(k) for k in (*previous, current)}

    @classmethod
    def from_text(cls, current: str, previous: str = "") -> Sealer:
        """From the values of MAIL_TOKEN_KEY and MAIL_TOKEN_KEYS_PREVIOUS."""
        old = tuple(parse_key(k) for k in previous.split(",") if k.strip())
        return cls(parse_key(current), old)

    def seal_value(self, plaintext: str, *, associated_data: bytes) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self.current.encrypt(nonce, plaintext.encode(), associated_data)
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{FORMAT}.{self.current_id}.{body}"

    def open_value(self, sealed: str, *, associated_data: bytes) -> str:
        parts = sealed.split(".")
        if len(parts) != 3 or parts[0] != FORMAT:
            raise SealingError("not a sealed value")
        _, kid, body = parts
        aead = self.keys.get(kid)
        if aead is None:
            raise SealingError(f"sealed with key {kid}, which this process does not hold")
        try:
            raw = _b64decode(body)
            plaintext = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated_data)
            return plaintext.decode()
        except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError) as exc:
            raise SealingError(f"does not open with key {kid}: tampered or misplaced") from exc

    def seal(self, event: EventT) -> EventT:
        """A copy of `event` with its URL fields sealed (version 2); others unchanged."""
        fields = sealed_fields(event)
        if not fields:
            return event
        update: dict[str, object] = {"version": SEALED_VERSION}
        for name in fields:
            value = getattr(event, name)
            if isinstance(value, str):
                update[name] = self.seal_value(value, associated_data=_associated_data(event, name))
        return event.model_copy(update=update)

    def open(self, event: EventT) -> EventT:
        """The clear copy of a sealed event (to render it; never to store or log it)."""
        if event.version != SEALED_VERSION:
            raise SealingError(f"version {event.version} carries no sealed fields")
        update: dict[str, object] = {"version": 1}
        for name in sealed_fields(event):
            value = getattr(event, name)
            if isinstance(value, str):
                try:
                    update[name] = self.open_value(
                        value, associated_data=_associated_data(event, name)
                    )
                except SealingError as exc:
                    raise SealingError(f"{name}: {exc}") from exc
        return event.model_copy(update=update)


def sealer_from_settings(
    current: str, previous: str = "", *, required: bool, service: str
) -> Sealer | None:
    """The process's sealer; None without a key (allowed outside production only)."""
    if current.strip():
        return Sealer.from_text(current, previous)
    if required:
        raise MissingMailTokenKey(
            f"{service}: MAIL_TOKEN_KEY is required in production (32 random bytes, "
            "base64url; `python -m videoflix_shared.sealing` prints one)"
        )
    return None


if __name__ == "__main__":
    print(new_key())
