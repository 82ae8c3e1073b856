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

# The JetStream streams (names before NATS_STREAM_PREFIX). Publishers, consumers and the
# rights in access.py name a stream by these constants, never by a literal or an event class.
AUTH_STREAM = "AUTH"
CATALOG_STREAM = "CATALOG"
ACCESS_STREAM = "ACCESS"
TRANSCODER_STREAM = "TRANSCODER"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    subject: ClassVar[str]
    stream: ClassVar[str]

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)

    @property
    def publish_subject(self) -> str:
        """The subject this event goes out on: `subject`, except for an event family with
        one subject per key (`subject` ends in `.*`), which fills in its key."""
        return self.subject


# --- auth: what the mailer needs to write each email ------------------------------------
# Every `*_url` field of these travels sealed for the mailer (videoflix_shared.sealing):
# a link field added later is sealed too, by its name.


class UserRegistered(Event):
    subject: ClassVar[str] = "auth.user.registered"
    stream: ClassVar[str] = AUTH_STREAM
    user_id: int
    email: EmailStr
    activation_url: str
    expires_at: datetime


class UserAlreadyRegistered(Event):
    """Someone registered with an address that has an account: tell its owner.

    When the account is not activated yet, `activation_url` (with `expires_at`) is a fresh
    link that activates exactly the password of this attempt, should the owner have made it;
    both are absent for an active account (and in events from before they existed).
    """

    subject: ClassVar[str] = "auth.user.already_registered"
    stream: ClassVar[str] = AUTH_STREAM
    user_id: int
    email: EmailStr
    login_url: str
    password_reset_url: str
    activation_url: str | None = None
    expires_at: datetime | None = None


class PasswordResetRequested(Event):
    subject: ClassVar[str] = "auth.password_reset.requested"
    stream: ClassVar[str] = AUTH_STREAM
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
    stream: ClassVar[str] = CATALOG_STREAM
    video_id: int
    generation: int = 1
    source_path: str  # relative to MEDIA_ROOT


class VideoDeleted(Event):
    subject: ClassVar[str] = "catalog.video.deleted"
    stream: ClassVar[str] = CATALOG_STREAM
    video_id: int


class VideoAccessChanged(Event):
    """Who may play a video now: catalog announces it whenever a video's publication,
    readiness or existence changes (and, on start, for every video it has).

    One subject per video, `access.video.<id>`, in the ACCESS stream, which keeps only the
    last message of each subject and never ages it out: the stream is the current playback
    state of every video. Streaming replays it on start and follows it (docs/AUTHORIZATION.md).
    """

    subject: ClassVar[str] = "access.video.*"
    stream: ClassVar[str] = ACCESS_STREAM
    video_id: int = Field(ge=1)
    published: bool
    ready: bool  # transcoded: renditions and thumbnail in the media volume
    deleted: bool = False

    @property
    def publish_subject(self) -> str:
        return f"access.video.{self.video_id}"


# --- transcoder -> catalog ------------------------------------------------------------------


class TranscodeProgress(Event):
    subject: ClassVar[str] = "transcoder.video.progress"
    stream: ClassVar[str] = TRANSCODER_STREAM
    video_id: int
    generation: int = 1
    percent: float = Field(ge=0, le=100)
    # Films (chunk-parallel): progress of each rung and the estimated seconds until all
    # are ready; absent for a single-pass encode.
    renditions_percent: dict[str, float] = Field(default_factory=dict)
    eta_seconds: float | None = None


class RenditionBitrate(BaseModel):
    """What one rendition takes to stream (bits/s over its segments as written: video,
    audio, container) and the CRF it was encoded at (null: the fixed ladder's bit rate)."""

    average_bitrate: int = Field(ge=0)
    peak_bitrate: int = Field(ge=0)  # the HLS peak segment bit rate (BANDWIDTH)
    crf: float | None = None


class TranscodeCompleted(Event):
    subject: ClassVar[str] = "transcoder.video.completed"
    stream: ClassVar[str] = TRANSCODER_STREAM
    video_id: int
    generation: int = 1
    duration_seconds: float
    width: int
    height: int
    renditions: list[str]  # e.g. ["480p", "720p"]
    thumbnail_path: str  # relative to MEDIA_ROOT
    master_playlist_path: str  # relative to MEDIA_ROOT
    # Per rendition name; absent from transcoders before the content-aware ladder.
    renditions_bitrate: dict[str, RenditionBitrate] = Field(default_factory=dict)


class TranscodeFailed(Event):
    subject: ClassVar[str] = "transcoder.video.failed"
    stream: ClassVar[str] = TRANSCODER_STREAM
    video_id: int
    generation: int = 1
    reason: str


class TranscodeRenditionReady(Event):
    """A film's rendition is assembled and listed in its master playlist: the first one
    (the lowest rung) makes the video playable; `renditions` lists every one ready so far.
    `transcoder.video.completed` still follows when all are."""

    subject: ClassVar[str] = "transcoder.video.rendition_ready"
    stream: ClassVar[str] = TRANSCODER_STREAM
    video_id: int
    generation: int
    rendition: str
    renditions: list[str]
    duration_seconds: float
    width: int
    height: int
    thumbnail_path: str  # relative to MEDIA_ROOT
    master_playlist_path: str  # relative to MEDIA_ROOT
    renditions_bitrate: dict[str, RenditionBitrate] = Field(default_factory=dict)


class QueuedTranscode(BaseModel):
    video_id: int
    generation: int
    running: bool  # a job of the video runs now (it heartbeats)
    place: int | None  # of its waiting work in the queue, 1 = next; None: nothing waits
    waiting_jobs: int = 0


class TranscodeQueueState(Event):
    """Every video with work in the transcode queue, published by one worker every
    TRANSCODER_QUEUE_STATE_INTERVAL_SECONDS: catalog shows queued videos as queued (with
    their place) and never takes one of them for stuck."""

    subject: ClassVar[str] = "transcoder.queue.state"
    stream: ClassVar[str] = TRANSCODER_STREAM
    videos: list[QueuedTranscode]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.subject: cls
    for cls in (
        UserRegistered,
        UserAlreadyRegistered,
        PasswordResetRequested,
        VideoUploaded,
        VideoDeleted,
        VideoAccessChanged,
        TranscodeProgress,
        TranscodeCompleted,
        TranscodeFailed,
        TranscodeRenditionReady,
        TranscodeQueueState,
    )
}

# Stream name (before NATS_STREAM_PREFIX) -> the subject family it stores. ACCESS lies
# outside `catalog.>` because streams may not overlap and CATALOG keeps a history while
# ACCESS keeps state; only catalog publishes to either.
STREAMS: dict[str, str] = {
    AUTH_STREAM: "auth.>",
    CATALOG_STREAM: "catalog.>",
    ACCESS_STREAM: "access.video.*",
    TRANSCODER_STREAM: "transcoder.>",
}
# Streams that hold current state rather than history: the last message of each subject
# is kept until a newer one replaces it, never aged out.
STATE_STREAMS: frozenset[str] = frozenset({ACCESS_STREAM})


class UnknownEvent(ValueError):
    pass


def event_type(subject: str) -> type[Event] | None:
    """The event class of an (unprefixed) subject: exact, or a per-key family `<family>.*`."""
    cls = EVENT_TYPES.get(subject)
    if cls is None:
        family, dot, key = subject.rpartition(".")
        cls = EVENT_TYPES.get(f"{family}.*") if dot and key else None
    return cls


def parse_event(subject: str, data: bytes) -> Event:
    """Parse a message body for its (unprefixed) subject; raises ValueError when malformed
    or when the payload belongs on another subject (say, another video's)."""
    cls = event_type(subject)
    if cls is None:
        raise UnknownEvent(f"no event type for subject {subject!r}")
    event = cls.model_validate_json(data)
    if event.publish_subject != subject:
        raise ValueError(f"{cls.__name__} for {event.publish_subject!r} on {subject!r}")
    return event
