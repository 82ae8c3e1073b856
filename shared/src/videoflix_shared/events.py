"""Every event that crosses a service boundary: subject, version and payload.

Services meet only through these models (and JWKS over HTTP). Each event carries an
`event_id`; it is also the JetStream message id, so a publish retried within the stream's
duplicate window is dropped, and consumers use it to stay idempotent.
Subjects are published under a configurable prefix (`NATS_SUBJECT_PREFIX`) so test runs
never overlap the streams of a running stack.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    subject: ClassVar[str]
    stream: ClassVar[str]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)


# --- auth: what the mailer needs to write each email ------------------------------------
# Every `*_url` field of these travels sealed for the mailer (videoflix_shared.sealing):
# a link field added later is sealed too, by its name.


class UserRegistered(Event):
    subject: ClassVar[str] = "auth.user.registered"
    stream: ClassVar[str] = "AUTH"
    user_id: int
    email: EmailStr
    activation_url: str
    expires_at: datetime


class UserAlreadyRegistered(Event):
    """Someone registered with an address that has an account: tell its owner."""

    subject: ClassVar[str] = "auth.user.already_registered"
    stream: ClassVar[str] = "AUTH"
    user_id: int
    email: EmailStr
    login_url: str
    password_reset_url: str


class PasswordResetRequested(Event):
    subject: ClassVar[str] = "auth.password_reset.requested"
    stream: ClassVar[str] = "AUTH"
    user_id: int
    email: EmailStr
    reset_url: str
    expires_at: datetime


# --- catalog -> transcoder ------------------------------------------------------------------


class VideoUploaded(Event):
    """A source file is in the media volume and wants (re-)transcoding.

    `generation` grows with every re-transcode or sweeper retry of the same video, so the
    transcoder's job id `transcode:<video_id>:<generation>` is deterministic per attempt.
    """

    subject: ClassVar[str] = "catalog.video.uploaded"
    stream: ClassVar[str] = "CATALOG"
    video_id: int
    generation: int = 1
    source_path: str  # relative to MEDIA_ROOT


class VideoDeleted(Event):
    subject: ClassVar[str] = "catalog.video.deleted"
    stream: ClassVar[str] = "CATALOG"
    video_id: int


# --- transcoder -> catalog ------------------------------------------------------------------


class TranscodeProgress(Event):
    subject: ClassVar[str] = "transcoder.video.progress"
    stream: ClassVar[str] = "TRANSCODER"
    video_id: int
    generation: int = 1
    percent: float = Field(ge=0, le=100)


class TranscodeCompleted(Event):
    subject: ClassVar[str] = "transcoder.video.completed"
    stream: ClassVar[str] = "TRANSCODER"
    video_id: int
    generation: int = 1
    duration_seconds: float
    width: int
    height: int
    renditions: list[str]  # e.g. ["480p", "720p"]
    thumbnail_path: str  # relative to MEDIA_ROOT
    master_playlist_path: str  # relative to MEDIA_ROOT


class TranscodeFailed(Event):
    subject: ClassVar[str] = "transcoder.video.failed"
    stream: ClassVar[str] = "TRANSCODER"
    video_id: int
    generation: int = 1
    reason: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.subject: cls
    for cls in (
        UserRegistered,
        UserAlreadyRegistered,
        PasswordResetRequested,
        VideoUploaded,
        VideoDeleted,
        TranscodeProgress,
        TranscodeCompleted,
        TranscodeFailed,
    )
}

# Stream name (before NATS_STREAM_PREFIX) -> the subject family it stores.
STREAMS: dict[str, str] = {"AUTH": "auth.>", "CATALOG": "catalog.>", "TRANSCODER": "transcoder.>"}


class UnknownEvent(ValueError):
    pass


def parse_event(subject: str, data: bytes) -> Event:
    """Parse a message body for its (unprefixed) subject; raises ValueError when malformed."""
    cls = EVENT_TYPES.get(subject)
    if cls is None:
        raise UnknownEvent(f"no event type for subject {subject!r}")
    return cls.model_validate_json(data)
