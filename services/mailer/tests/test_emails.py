"""Rendering (templates -> MIME) and SMTP failure classification; no servers needed."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta

import aiosmtplib
import pytest

from videoflix_mailer.emails import EmailRenderer, human_duration
from videoflix_mailer.mailbox import extract_links
from videoflix_mailer.smtp import classify
from videoflix_shared.events import PasswordResetRequested, UserAlreadyRegistered, utcnow

from .conftest import user_registered

renderer = EmailRenderer(sender="Videoflix <noreply@videoflix.example.com>")


def reparse(message: email.message.EmailMessage) -> email.message.EmailMessage:
    """What a receiving client sees: the bytes on the wire, parsed again."""
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def test_activation_email_is_multipart_with_text_and_html_link_and_expiry():
    event = user_registered(
        "new.user@example.com",
        activation_url="http://127.0.0.1:5500/pages/auth/activate.html?uid=Nw&token=abc-123",
    )
    message = reparse(renderer.render(event))

    assert message.get_content_type() == "multipart/alternative"
    assert message["To"] == "new.user@example.com"
    assert message["From"] == "Videoflix <noreply@videoflix.example.com>"
    assert message["Subject"] == "Confirm your email address for Videoflix"
    assert message["Message-ID"] == f"<{event.event_id}@videoflix.example.com>"
    assert message["X-Videoflix-Event-Id"] == str(event.event_id)
    assert message["Date"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]

    url = event.activation_url
    assert url in text
    assert "expires in 24 hours" in text
    # HTML: a button and the plain link below it, with `&` escaped as HTML requires.
    escaped = url.replace("&", "&amp;")
    assert html.count(f'href="{escaped}"') == 2
    assert "Activate account</a>" in html
    assert "expires in <strong>24 hours</strong>" in html
    assert extract_links(text=text, html=html) == [url]


def test_reset_email_states_its_one_hour_expiry():
    now = utcnow()
    event = PasswordResetRequested(
        user_id=3,
        email="someone@example.com",
        reset_url="http://127.0.0.1:5500/pages/auth/confirm_password.html?uid=Mw&token=t0k",
        expires_at=now + timedelta(hours=1),
        occurred_at=now,
    )
    message = reparse(renderer.render(event))
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert message["Subject"] == "Reset your Videoflix password"
    assert "expires in 1 hour (until " in text
    assert event.reset_url in text
    assert "Reset password</a>" in html


def test_already_registered_email_links_login_and_password_reset():
    event = UserAlreadyRegistered(
        user_id=4,
        email="owner@example.com",
        login_url="http://127.0.0.1:5500/pages/auth/login.html",
        password_reset_url="http://127.0.0.1:5500/pages/auth/forgot_password.html",
    )
    message = reparse(renderer.render(event))
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert message["To"] == "owner@example.com"
    assert extract_links(text=text, html=html) == [event.login_url, event.password_reset_url]


def test_already_registered_email_for_an_inactive_account_carries_the_attempts_link():
    now = utcnow()
    event = UserAlreadyRegistered(
        user_id=5,
        email="pending@example.com",
        login_url="http://127.0.0.1:5500/pages/auth/login.html",
        password_reset_url="http://127.0.0.1:5500/pages/auth/forgot_password.html",
        activation_url="http://127.0.0.1:5500/pages/auth/activate.html?uid=NQ&token=t-2",
        expires_at=now + timedelta(hours=24),
        occurred_at=now,
    )
    message = reparse(renderer.render(event))
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert message["Subject"] == "Someone tried to register with your email address on Videoflix"
    assert extract_links(text=text, html=html) == [event.activation_url]
    assert "If this was not you, ignore this email; nothing changes." in text
    assert "the password you just chose" in text
    assert "expires in 24 hours (until " in text
    assert "Activate with this password</a>" in html
    assert "ignore this email; nothing changes." in html
    assert "You already have an account" not in text + html


def test_values_are_html_escaped_in_the_html_part_only():
    event = user_registered(
        "x@example.com", activation_url='http://host/a?x=1&y="><script>alert(1)</script>'
    )
    message = reparse(renderer.render(event))
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert '"><script>alert(1)</script>' in text


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(hours=24), "24 hours"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(minutes=30), "30 minutes"),
        (timedelta(minutes=90), "90 minutes"),
        (timedelta(hours=48), "48 hours"),
        (timedelta(days=7), "7 days"),
        (timedelta(seconds=59, microseconds=999), "1 minute"),
    ],
)
def test_human_duration_names_link_validity(delta, expected):
    assert human_duration(delta) == expected


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@b.c")]
            ),
            True,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(452, "mailbox full", "a@b.c")]
            ),
            False,
        ),
        (aiosmtplib.SMTPDataError(554, "spam"), True),
        (aiosmtplib.SMTPDataError(451, "try again"), False),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), False),
        (aiosmtplib.SMTPSenderRefused(553, "sender refused", "noreply@x"), False),
        (aiosmtplib.SMTPConnectError("Connection refused"), False),
        (aiosmtplib.SMTPServerDisconnected("gone"), False),
        (aiosmtplib.SMTPReadTimeoutError("timed out"), False),
        (ConnectionRefusedError(111, "refused"), False),
    ],
)
def test_only_a_5xx_for_this_email_is_permanent(error, permanent):
    assert classify(error).permanent is permanent
