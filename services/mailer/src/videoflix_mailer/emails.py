"""Turning a mail event into a MIME message: which template each event uses, and rendering
its subject, plain-text and HTML parts from the Jinja2 templates in `templates/`.

Subjects and texts live only in the templates (`<name>.subject.txt`, `<name>.txt`,
`<name>.html`); this module supplies the values they show.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from videoflix_shared.events import (
    Event,
    PasswordResetRequested,
    UserAlreadyRegistered,
    UserRegistered,
    utcnow,
)

# Event subject -> template name; subjects not listed here are not mail events.
TEMPLATE_BY_SUBJECT: dict[str, str] = {
    UserRegistered.subject: "user_registered",
    UserAlreadyRegistered.subject: "user_already_registered",
    PasswordResetRequested.subject: "password_reset_requested",
}


def human_duration(delta: timedelta) -> str:
    """`24 hours`, `1 hour`, `30 minutes`, `3 days`: how long a link stays valid."""
    minutes = max(round(delta.total_seconds() / 60), 1)
    if minutes % 1440 == 0 and minutes >= 3 * 1440:  # "48 hours" reads better than "2 days"
        count, unit = minutes // 1440, "day"
    elif minutes % 60 == 0:
        count, unit = minutes // 60, "hour"
    else:
        count, unit = minutes, "minute"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _expiry_values(event: Event) -> dict[str, str]:
    expires_at: datetime | None = getattr(event, "expires_at", None)
    if expires_at is None:
        return {}
    # Measured from when the link was made, so a retried email states the same validity.
    return {
        "expires_in": human_duration(expires_at - event.occurred_at),
        "expires_at_text": expires_at.astimezone(UTC).strftime("until %d %b %Y, %H:%M UTC"),
    }


class EmailRenderer:
    def __init__(self, *, sender: str, brand: str = "Videoflix") -> None:
        self.sender = sender
        self.brand = brand
        _, sender_address = getaddresses([sender])[0]
        self.message_id_domain = sender_address.rpartition("@")[2] or "videoflix.local"
        self.templates = Environment(
            loader=PackageLoader("videoflix_mailer", "templates"),
            autoescape=select_autoescape(["html"], default_for_string=False),
            undefined=StrictUndefined,  # a missing value is a bug, never a blank in an email
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, event: Event) -> EmailMessage:
        """The multipart/alternative email for a mail event (raises KeyError otherwise)."""
        name = TEMPLATE_BY_SUBJECT[event.subject]
        values: dict[str, Any] = {
            **event.model_dump(mode="json"),
            **_expiry_values(event),
            "brand": self.brand,
        }
        subject = self.templates.get_template(f"{name}.subject.txt").render(values)
        text = self.templates.get_template(f"{name}.txt").render(values)
        html = self.templates.get_template(f"{name}.html").render(values)

        message = EmailMessage()
        message["Subject"] = " ".join(subject.split())
        message["From"] = self.sender
        message["To"] = Address(addr_spec=values["email"])  # every mail event has one
        message["Date"] = format_datetime(utcnow())
        # Derived from the event id, so a duplicate that slipped through is recognisable.
        message["Message-ID"] = f"<{event.event_id}@{self.message_id_domain}>"
        message["X-Videoflix-Event-Id"] = str(event.event_id)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message
