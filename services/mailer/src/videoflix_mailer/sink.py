"""The development SMTP sink: a real SMTP server (aiosmtpd) on SMTP_HOST:SMTP_PORT that
accepts every message and keeps it in the mailbox; `api.py` serves them over HTTP."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from videoflix_mailer.mailbox import Mailbox

logger = logging.getLogger(__name__)


class MailboxHandler:
    """aiosmtpd handler: stores each message's bytes with its envelope."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, _server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        try:
            message_id = await asyncio.to_thread(
                self.mailbox.store,
                raw=raw,
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                peer=peer,
            )
        except OSError as exc:  # disk full, directory gone: tell the client to try later
            logger.error("cannot store message from %s: %s", envelope.mail_from, exc)
            return "451 Requested action aborted: local error in processing"
        logger.info("stored %s from %s to %s", message_id, envelope.mail_from, envelope.rcpt_tos)
        return "250 Message accepted for delivery"


async def start_smtp_server(
    *, handler: Any, host: str, port: int, hostname: str = "videoflix-mail-sink"
) -> asyncio.Server:
    """Listen for SMTP on host:port in the running loop (handler: any aiosmtpd handler)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, hostname=hostname, loop=loop), host=host, port=port
    )
