"""Catalog's tables (its own database): categories and videos with their transcoding state.

The outbox table comes from the shared library so a video change and its event commit
together.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from videoflix_shared.db import Base
from videoflix_shared.events import utcnow
from videoflix_shared.outbox import OutboxMessage

__all__ = ["Base", "Category", "OutboxMessage", "TranscoderHeartbeat", "Video", "VideoStatus"]

TITLE_MAX = 200
DESCRIPTION_MAX = 5000
CATEGORY_NAME_MAX = 60


class VideoStatus(StrEnum):
    UPLOADED = "uploaded"  # source stored, waiting for a transcoder
    PROCESSING = "processing"  # a transcoder reported progress
    READY = "ready"  # renditions and thumbnail written: playable
    FAILED = "failed"  # transcoding gave up; failure_reason says why


class Category(Base):
    __tablename__ = "category"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(CATEGORY_NAME_MAX))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, server_default=func.now()
    )

    __table_args__ = (Index("uq_category_name_ci", func.lower(name), unique=True),)


class Video(Base):
    __tablename__ = "video"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int] = mapped_column(ForeignKey("category.id", ondelete="RESTRICT"))
    category: Mapped[Category] = relationship(lazy="joined", innerjoin=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    # Publish by itself once transcoded (the upload form's default); spent when it does, and
    # cancelled when an admin unpublishes the video before that.
    publish_when_ready: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )

    # Transcoding state. `generation` counts attempts (upload = 1, +1 per re-transcode or
    # sweeper retry); events of another generation are ignored.
    status: Mapped[str] = mapped_column(String(20), default=VideoStatus.UPLOADED.value)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    sweep_retries: Mapped[int] = mapped_column(Integer, default=0)
    # When transcoding last moved (upload, progress, retry): the stuck-job sweeper's clock.
    last_activity_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    # The source as uploaded (relative to MEDIA_ROOT) and what ffprobe saw in it.
    source_path: Mapped[str] = mapped_column(String(300))
    source_size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)

    # Filled by the transcoder's completion event.
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    renditions: Mapped[list[str]] = mapped_column(
        ARRAY(String(10)), default=list, server_default=text("'{}'")
    )
    # Films (chunk-parallel): the rungs' progress in percent ({"480p": 100.0, ...}) and the
    # transcoder's estimate of the seconds until every rung is ready; a film is `ready`
    # (playable) once its lowest rung is, `renditions` grows as the others arrive.
    renditions_progress: Mapped[dict[str, float]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Per ready rendition, what it takes to stream and how it was encoded, as the transcoder
    # measured it: {"720p": {"average_bitrate": 2100000, "peak_bitrate": 2600000,
    # "crf": 21.5}} (bits/s; crf null for the fixed ladder).
    renditions_bitrate: Mapped[dict[str, dict[str, float | None]]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    # Its place in the transcode queue while its work waits (transcoder.queue.state).
    queue_place: Mapped[int | None] = mapped_column(Integer, nullable=True)
    thumbnail_path: Mapped[str | None] = mapped_column(String(300), nullable=True)
    master_playlist_path: Mapped[str | None] = mapped_column(String(300), nullable=True)

    __table_args__ = (
        CheckConstraint(
            "status IN ('uploaded', 'processing', 'ready', 'failed')", name="ck_video_status"
        ),
        CheckConstraint("progress >= 0 AND progress <= 100", name="ck_video_progress"),
        # The public list: published, ready, newest first.
        Index(
            "ix_video_playable",
            created_at.desc(),
            postgresql_where=text("published AND status = 'ready'"),
        ),
        # The sweeper's scan.
        Index(
            "ix_video_in_flight",
            "last_activity_at",
            postgresql_where=text("status IN ('uploaded', 'processing')"),
        ),
    )


class TranscoderHeartbeat(Base):
    """When the transcoder last announced its queue (one row). The sweeper judges silence
    only while this is recent: with NATS or every worker down, nothing looks stuck."""

    __tablename__ = "transcoder_heartbeat"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
