"""SMTP settings reach the wire: STARTTLS and implicit TLS with login, against aiosmtpd
servers using a self-signed certificate made for the test."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from videoflix_mailer.emails import EmailRenderer
from videoflix_mailer.mailbox import Mailbox
from videoflix_mailer.settings import MailerSettings
from videoflix_mailer.sink import MailboxHandler
from videoflix_mailer.smtp import DeliveryError, SmtpSender
from videoflix_testing.plugin import free_port

from .conftest import user_registered


@pytest.fixture(scope="module")
def server_tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def authenticate(_server, _session, _envelope, _mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"mailer", b"s3cret")
    return AuthResult(success=ok, handled=False)


async def start_server(
    mailbox: Mailbox, *, port: int, starttls: ssl.SSLContext | None, implicit: ssl.SSLContext | None
) -> asyncio.Server:
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(
            MailboxHandler(mailbox),
            loop=loop,
            tls_context=starttls,
            require_starttls=starttls is not None,
            auth_required=True,
            # aiosmtpd only knows about TLS it negotiated itself (STARTTLS); with implicit
            # TLS the whole connection is encrypted by the listener.
            auth_require_tls=starttls is not None,
            authenticator=authenticate,
        )

    return await loop.create_server(factory, host="127.0.0.1", port=port, ssl=implicit)


@pytest.mark.parametrize("security", ["starttls", "tls"])
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # implicit TLS
async def test_mailer_logs_in_over_encrypted_connection_as_configured(
    security: str, server_tls_context: ssl.SSLContext, tmp_path: Path
):
    mailbox = Mailbox(tmp_path / "mail")
    port = free_port()
    server = await start_server(
        mailbox,
        port=port,
        starttls=server_tls_context if security == "starttls" else None,
        implicit=server_tls_context if security == "tls" else None,
    )
    settings = MailerSettings(
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=port,
        SMTP_SECURITY=security,
        SMTP_USER="mailer",
        SMTP_PASSWORD="s3cret",
        SMTP_VALIDATE_CERTS=False,  # self-signed for the test
        SMTP_TIMEOUT_SECONDS=5,
    )
    renderer = EmailRenderer(sender=settings.smtp_sender)
    try:
        sender = SmtpSender(settings)
        await sender.check()
        await sender.send(renderer.render(user_registered("secure@example.com")))
        assert [m.to for m in mailbox.list()] == [["secure@example.com"]]

        wrong = SmtpSender(settings.model_copy(update={"smtp_password": "wrong"}))
        with pytest.raises(DeliveryError) as refused:
            await wrong.send(renderer.render(user_registered("secure@example.com")))
        # A bad login is our configuration, not this email: retried, never dead-lettered.
        assert not refused.value.permanent
        assert "535" in refused.value.reason

        strict = SmtpSender(settings.model_copy(update={"smtp_validate_certs": True}))
        with pytest.raises(DeliveryError, match="certificate"):
            await strict.send(renderer.render(user_registered("secure@example.com")))
        assert len(mailbox.list()) == 1
    finally:
        server.close()
        await server.wait_closed()
