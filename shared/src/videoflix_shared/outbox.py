"""The transactional outbox: a state change and the event announcing it commit together.

Service code calls `add_event(session, event)` inside the transaction that changes state.
`OutboxRelay` (started in the service's lifespan) publishes pending rows to JetStream with
the event id as message id and deletes each row once JetStream has stored it (a row is a
copy of an event, and a mail event's copy would otherwise keep its sealed link around for
no use); when NATS is down rows simply wait. Several relays (several replicas) can run at
once, but only one publishes at a time (a transaction-scoped advisory lock per database):
rows leave in the order they were created, so two events about the same thing (publish,
then unpublish a video) never overtake each other, which a consumer keeping only the last
message per subject (the ACCESS stream) relies on. A relay that finds the lock taken tries
again on its next poll.

Mail events are sealed before they are stored (`videoflix_shared.sealing`): a session that
stages one must carry the process's sealer in `session.info["outbox_sealer"]` (configured
on the session factory; None only where no key is configured outside production). A
session without that entry refuses such an event instead of storing its token in clear.

Each service's models import `OutboxMessage` into their metadata so Alembic migrates the
`outbox` table into that service's own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, delete, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from videoflix_shared.bus import EventBus
from videoflix_shared.db import Base
from videoflix_shared.events import Event, utcnow
from videoflix_shared.sealing import sealed_fields

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key of the relays of one database (any constant unique to it).
RELAY_LOCK_KEY = 0x76666F7574626F78  # "vfoutbox"


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # the event id
    subject: Mapped[str] = mapped_column(String(200))  # unprefixed
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Rows are deleted once published; set only on rows an older relay left behind.
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("ix_outbox_pending", "created_at", postgresql_where=published_at.is_(None)),
    )


def add_event(session: AsyncSession, event: Event) -> None:
    """Stage `event` in the caller's transaction; it is published only if that commits."""
    if sealed_fields(event):
        if "outbox_sealer" not in session.info:
            raise RuntimeError(
                f"{event.subject} carries links: stage it in a session whose factory has "
                "info['outbox_sealer'] (videoflix_shared.sealing)"
            )
        sealer = session.info["outbox_sealer"]
        if sealer is not None:
            event = sealer.seal(event)
    session.add(
        OutboxMessage(
            id=event.event_id,
            subject=event.publish_subject,
            payload=event.model_dump(mode="json"),
            created_at=event.occurred_at,
            attempts=0,
        )
    )
    wake = session.info.get("outbox_wake")
    if wake is not None:
        wake.set()


class OutboxRelay:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        bus: EventBus,
        *,
        batch_size: int = 100,
        poll_interval: float = 0.5,
    ) -> None:
        self.session_factory = session_factory
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._task is not None:
            await self._task

    async def publish_pending(self) -> int:
        """Publish one batch, deleting each row JetStream stored; returns how many."""
        published = 0
        async with self.session_factory() as session, session.begin():
            if not await session.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK_KEY))):
                return 0  # another relay is publishing; its rows and ours go out in order
            rows = (
                await session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None))
                    .order_by(OutboxMessage.created_at)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                row.attempts += 1
                try:
                    await self.bus.publish_raw(
                        row.subject, json.dumps(row.payload).encode(), msg_id=str(row.id)
                    )
                except Exception as exc:
                    logger.warning(
                        "outbox: publishing %s %s failed (%s); will retry", row.subject, row.id, exc
                    )
                    break
                await session.delete(row)
                published += 1
        return published

    async def purge_published(self) -> None:
        """Delete rows an older relay marked published and kept (once, at start)."""
        async with self.session_factory() as session, session.begin():
            await session.execute(
                delete(OutboxMessage).where(OutboxMessage.published_at.is_not(None))
            )

    async def _run(self) -> None:
        backoff = self.poll_interval
        purged = False
        while not self._stop.is_set():
            self.wake.clear()
            try:
                if not purged:
                    await self.purge_published()
                    purged = True
                n = await self.publish_pending()
                backoff = self.poll_interval
                if n == self.batch_size:
                    continue  # more waiting
            except Exception as exc:
                logger.warning("outbox relay cycle failed: %s", exc)
                backoff = min(backoff * 2, 10)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), backoff)
