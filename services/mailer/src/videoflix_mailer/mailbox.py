"""The development sink's mailbox: every received message as one `.eml` file in
MAIL_SINK_DIR, and reading them back (sender, recipients, subject, text, HTML, links).

File names are `<received ns, 20 digits>-<8 hex>.eml`, so sorting them sorts by arrival and
the name (without `.eml`) is the message id. Files are written under a temporary name and
renamed, so a reader never sees half a message. The envelope is kept in front of the
message as `X-MailFrom` / `X-RcptTo` headers, as aiosmtpd's own Message handler does.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path

MESSAGE_ID = re.compile(r"^[0-9]{20}-[0-9a-f]{8}$")
URL_IN_TEXT = re.compile(r"https?://[^\s<>\"')\]]+")


@dataclass(frozen=True)
class StoredMessage:
    id: str
    sender: str
    to: list[str]
    subject: str
    date: str  # ISO 8601
    text: str
    html: str
    links: list[str]


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href and href.startswith(("http://", "https://")):
                self.links.append(href)


def extract_links(*, text: str, html: str) -> list[str]:
    """Every http(s) link of the HTML hrefs and the plain text, once, in order of appearance."""
    collector = _LinkCollector()
    collector.feed(html)
    found = collector.links + URL_IN_TEXT.findall(text)
    return list(dict.fromkeys(link.rstrip(".,;") for link in found))


def _part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return ""
    return str(part.get_content())


def _received_at(message_id: str) -> datetime:
    return datetime.fromtimestamp(int(message_id.split("-")[0]) / 1e9, UTC)


def parse_stored(message_id: str, raw: bytes) -> StoredMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    envelope_to = [a for _, a in getaddresses(message.get_all("X-RcptTo", []))]
    header_to = [a for _, a in getaddresses(message.get_all("To", []) + message.get_all("Cc", []))]
    try:
        date = parsedate_to_datetime(str(message["Date"])).isoformat()
    except (TypeError, ValueError):
        date = _received_at(message_id).isoformat()
    text, html = _part(message, "plain"), _part(message, "html")
    return StoredMessage(
        id=message_id,
        sender=str(message.get("From", "")),
        to=[a for a in dict.fromkeys(envelope_to or header_to) if a],
        subject=str(message.get("Subject", "")),
        date=date,
        text=text,
        html=html,
        links=extract_links(text=text, html=html),
    )


def _addressed_to(raw: bytes, address: str) -> bool:
    # Headers only: filtering should not decode every body in the directory.
    message = BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    headers = (
        message.get_all("X-RcptTo", []) + message.get_all("To", []) + message.get_all("Cc", [])
    )
    return any(a.lower() == address for _, a in getaddresses(headers))


class Mailbox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def store(self, *, raw: bytes, mail_from: str, rcpt_tos: list[str], peer: str = "") -> str:
        """Write one received message; returns its id."""
        self.ensure()
        message_id = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        envelope = (
            f"X-Peer: {peer}\r\nX-MailFrom: {mail_from}\r\nX-RcptTo: {', '.join(rcpt_tos)}\r\n"
        ).encode()
        temporary = self.directory / f".tmp-{message_id}"
        temporary.write_bytes(envelope + raw)
        os.replace(temporary, self.directory / f"{message_id}.eml")
        return message_id

    def _paths_newest_first(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(
            (p for p in self.directory.glob("*.eml") if MESSAGE_ID.match(p.stem)), reverse=True
        )

    def raw(self, message_id: str) -> bytes | None:
        if not MESSAGE_ID.match(message_id):
            return None
        try:
            return (self.directory / f"{message_id}.eml").read_bytes()
        except FileNotFoundError:
            return None

    def get(self, message_id: str) -> StoredMessage | None:
        raw = self.raw(message_id)
        return parse_stored(message_id, raw) if raw is not None else None

    def list(self, *, to: str | None = None, limit: int = 100) -> list[StoredMessage]:
        """Newest first; `to` keeps the messages addressed to it (case-insensitive)."""
        wanted = to.strip().lower() if to else None
        found: list[StoredMessage] = []
        for path in self._paths_newest_first():
            if len(found) >= limit:
                break
            try:
                raw = path.read_bytes()
            except FileNotFoundError:  # cleared meanwhile
                continue
            if wanted is None or _addressed_to(raw, wanted):
                found.append(parse_stored(path.stem, raw))
        return found

    def clear(self) -> int:
        removed = 0
        for path in self._paths_newest_first():
            path.unlink(missing_ok=True)
            removed += 1
        return removed
