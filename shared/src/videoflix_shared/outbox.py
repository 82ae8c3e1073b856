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

Each row keeps the trace context of the transaction that staged it (`headers`, the
`traceparent`): the relay publishes it with the event, so the consumers continue the
upload's trace (videoflix_shared.tracing).

The relay measures the backlog after every cycle: `videoflix_outbox_pending_events{service}`
(rows not yet published) and `videoflix_outbox_relay_lag_seconds{service}` (age of the
oldest, 0 when none); `OutboxRelay.check` reports them in `/readyz` (catalog and auth stay
ready while NATS is away: the outbox absorbs it).

Each service's models import `OutboxMessage` into their metadata so Alembic migrates the
`outbox` table into that service's own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import DateTime, Index, Integer, String, delete, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from videoflix_shared.bus import EventBus
from videoflix_shared.db import Base
from videoflix_shared.events import Event, utcnow
from videoflix_shared.sealing import sealed_fields
from videoflix_shared.tracing import TRACEPARENT, continue_trace, current_traceparent

logger = logging.getLogger(__name__)

# Every relay of a database measures the same table: merged by the maximum.
OUTBOX_PENDING = Gauge(
    "videoflix_outbox_pending_events",
    "Events written to the outbox and not yet published to JetStream",
    ["service"],
    multiprocess_mode="livemax",
)
OUTBOX_LAG = Gauge(
    "videoflix_outbox_relay_lag_seconds",
    "Age of the oldest event not yet published (0 when none)",
    ["service"],
    multiprocess_mode="livemax",
)
MEASURE_INTERVAL_SECONDS = 1.0  # while nothing is published (idle, or NATS away)
# A backlog older than this is worth a word in /readyz (the relay publishes within a poll).
READY_DETAIL_LAG_SECONDS = 5.0

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
    # Message headers to publish with the event: the trace context ({"traceparent": ...}).
    headers: Mapped[dict[str, str] | None] = mapped_column(JSONB, nullable=True)

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
            headers=trace_headers(),
        )
    )
    wake = session.info.get("outbox_wake")
    if wake is not None:
        wake.set()


def trace_headers() -> dict[str, str] | None:
    """The headers that carry the current trace to the event's consumers (None outside)."""
    traceparent = current_traceparent()
    return None if traceparent is None else {TRACEPARENT: traceparent}


@dataclass(frozen=True)
class Backlog:
    pending: int  # rows not yet published
    lag_seconds: float  # age of the oldest (0 when none)


class OutboxRelay:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        bus: EventBus,
        *,
        batch_size: int = 100,
        poll_interval: float = 0.5,
        service: str | None = None,
    ) -> None:
        """`service`: the metrics label (default: the bus's principal)."""
        self.session_factory = session_factory
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        label = service or bus.principal or "none"
        self._pending_gauge = OUTBOX_PENDING.labels(label)
        self._lag_gauge = OUTBOX_LAG.labels(label)
        self.backlog: Backlog | None = None  # as of the last measurement

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
                if not await self._publish(row):
                    break
                await session.delete(row)
                published += 1
        return published

    async def _publish(self, row: OutboxMessage) -> bool:
        """Publish one row in the trace it was staged in; False when JetStream did not
        store it (NATS away: the row waits for the next cycle)."""
        traceparent = (row.headers or {}).get(TRACEPARENT)
        with continue_trace(traceparent, name=f"{row.subject} publish", kind="producer"):
            try:
                await self.bus.publish_raw(
                    row.subject,
                    json.dumps(row.payload).encode(),
                    msg_id=str(row.id),
                    traceparent=current_traceparent() if traceparent else None,
                )
            except Exception as exc:
                logger.warning(
                    "outbox: publishing %s %s failed (%s); will retry", row.subject, row.id, exc
                )
                return False
        return True

    async def measure_backlog(self) -> Backlog:
        """Count what waits (and how long the oldest has), export it and keep it."""
        async with self.session_factory() as session:
            pending, oldest = (
                await session.execute(
                    select(func.count(), func.min(OutboxMessage.created_at)).where(
                        OutboxMessage.published_at.is_(None)
                    )
                )
            ).one()
        lag = 0.0 if oldest is None else max((utcnow() - oldest).total_seconds(), 0.0)
        self.backlog = Backlog(pending=int(pending), lag_seconds=lag)
        self._pending_gauge.set(self.backlog.pending)
        self._lag_gauge.set(lag)
        return self.backlog

    async def check(self) -> str:
        """Readiness detail: raises (degraded) while events wait longer than a few seconds."""
        backlog = self.backlog
        if backlog is None or backlog.lag_seconds <= READY_DETAIL_LAG_SECONDS:
            return "ok" if backlog is None else f"ok: {backlog.pending} pending"
        raise RuntimeError(
            f"{backlog.pending} event(s) waiting, the oldest for {backlog.lag_seconds:.0f}s"
        )

    async def purge_published(self) -> None:
        """Delete rows an older relay marked published and kept (once, at start)."""
        async with self.session_factory() as session, session.begin():
            await session.execute(
                delete(OutboxMessage).where(OutboxMessage.published_at.is_not(None))
            )

    async def _run(self) -> None:
        backoff = self.poll_interval
        purged = False
        measured_at = 0.0
        while not self._stop.is_set():
            self.wake.clear()
            n = 0
            try:
                if not purged:
                    await self.purge_published()
                    purged = True
                n = await self.publish_pending()
                backoff = self.poll_interval
            except Exception as exc:
                logger.warning("outbox relay cycle failed: %s", exc)
                backoff = min(backoff * 2, 10)
            if n or time.monotonic() - measured_at >= MEASURE_INTERVAL_SECONDS:
                with contextlib.suppress(Exception):  # the database away: measured later
                    await self.measure_backlog()
                    measured_at = time.monotonic()
            if n == self.batch_size:
                continue  # more waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), backoff)
