"""Mailer settings: SMTP delivery, retry policy and the development sink (shared ones come
from CommonSettings). Every variable is documented in the root `.env.example`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from videoflix_shared.settings import CommonSettings


class MailerSettings(CommonSettings):
    http_port: int = Field(8006, alias="HTTP_PORT")  # health port (consumer) / HTTP (sink)

    # --- outgoing SMTP (the consumer) ---------------------------------------------------
    smtp_host: str = Field("127.0.0.1", alias="SMTP_HOST")
    smtp_port: int = Field(8025, alias="SMTP_PORT")
    smtp_user: str = Field("", alias="SMTP_USER")
    smtp_password: str = Field("", alias="SMTP_PASSWORD")
    # none: plain SMTP (the dev sink); starttls: upgrade after connecting (port 587);
    # tls: TLS from the first byte (port 465).
    smtp_security: Literal["none", "starttls", "tls"] = Field("none", alias="SMTP_SECURITY")
    smtp_validate_certs: bool = Field(True, alias="SMTP_VALIDATE_CERTS")
    smtp_timeout_seconds: float = Field(10.0, alias="SMTP_TIMEOUT_SECONDS", gt=0)
    smtp_sender: str = Field("Videoflix <noreply@videoflix.local>", alias="SMTP_SENDER")

    # --- sealed links (videoflix_shared.sealing): the key auth seals them with ------------
    mail_token_key: str = Field("", alias="MAIL_TOKEN_KEY")  # required in production
    mail_token_keys_previous: str = Field("", alias="MAIL_TOKEN_KEYS_PREVIOUS")

    # --- delivery policy ------------------------------------------------------------------
    retry_base_seconds: float = Field(2.0, alias="MAILER_RETRY_BASE_SECONDS", gt=0)
    retry_max_seconds: float = Field(300.0, alias="MAILER_RETRY_MAX_SECONDS", gt=0)
    # A transiently failing email is retried this long after its event was published, then
    # parked as a dead letter (replayable) before the AUTH stream drops it (6 h retention).
    retry_give_up_seconds: float = Field(5 * 3600.0, alias="MAILER_RETRY_GIVE_UP_SECONDS", gt=0)
    # How long one mailer may hold an event it is sending before another may take it over.
    claim_seconds: float = Field(120.0, alias="MAILER_CLAIM_SECONDS", gt=0)
    # How long "this event id was sent" is remembered (longer than the stream keeps events).
    sent_ttl_seconds: int = Field(30 * 86400, alias="MAILER_SENT_TTL_SECONDS", gt=0)
    ack_wait_seconds: float = Field(60.0, alias="MAILER_ACK_WAIT_SECONDS", gt=0)

    # --- development sink (`videoflix-mailer sink`) -----------------------------------------
    mail_sink_dir: Path = Field(Path(".data/mail"), alias="MAIL_SINK_DIR")
