"""Sending a message over SMTP with aiosmtplib, and telling transient failures (worth a
retry later) from permanent ones (this recipient or message will never be accepted)."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from videoflix_mailer.settings import MailerSettings


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def _is_permanent_code(code: int) -> bool:
    return 500 <= code < 600


def classify(exc: Exception) -> DeliveryError:
    """Map an aiosmtplib/OS error to a DeliveryError.

    Only a 5xx about *this* email (recipient refused, message refused after DATA) is
    permanent. A 5xx on login, MAIL FROM or HELO is about our own configuration: every email
    would fail alike, so those are retried with backoff and go out once it is fixed.
    Connection refused/reset, timeouts and 4xx replies are transient by definition.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        permanent = bool(codes) and all(_is_permanent_code(c) for c in codes)
        return DeliveryError(f"recipient refused: {detail}", permanent=permanent)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        kind = "recipient" if isinstance(exc, aiosmtplib.SMTPRecipientRefused) else "message"
        return DeliveryError(
            f"{kind} refused: {exc.code} {exc.message}", permanent=_is_permanent_code(exc.code)
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return DeliveryError(
            f"SMTP server answered {exc.code} {exc.message} ({type(exc).__name__})",
            permanent=False,
        )
    return DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False)


class SmtpSender:
    def __init__(self, settings: MailerSettings) -> None:
        self.settings = settings

    def _client(self) -> aiosmtplib.SMTP:
        """A client for the configured server, not connected yet (`async with` connects)."""
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_user or None,
            password=s.smtp_password or None,
            use_tls=s.smtp_security == "tls",
            # False rather than None: never upgrade opportunistically when told "none".
            start_tls=s.smtp_security == "starttls",
            validate_certs=s.smtp_validate_certs,
            timeout=s.smtp_timeout_seconds,
        )

    async def send(self, message: EmailMessage) -> None:
        """Hand the message to the SMTP server; raises DeliveryError when it is not accepted."""
        try:
            async with self._client() as client:
                await client.send_message(message)
        except Exception as exc:  # beyond SMTP/OS errors, anything unforeseen is transient too
            raise classify(exc) from exc

    async def check(self) -> None:
        """Readiness: the server answers its greeting and a NOOP (with login when configured)."""
        async with self._client() as client:
            await client.noop()
