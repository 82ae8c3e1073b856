"""Catalog announces who may play each video (`access.video.<id>`, VideoAccessChanged)
through its outbox whenever publication, readiness or existence changes, and announces
every video once more on start, so an installation whose videos predate the ACCESS stream
(an upgrade) or lost it becomes playable without anyone touching a video."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from videoflix_catalog import service
from videoflix_catalog.app import create_app
from videoflix_catalog.events import announced_access
from videoflix_shared.bus import EventBus
from videoflix_shared.db import create_engine, create_session_factory
from videoflix_shared.events import VideoAccessChanged, parse_event
from videoflix_shared.outbox import OutboxMessage
from videoflix_testing.plugin import NATS_URL, wait_until_async

from .conftest import Catalog, make_settings


async def latest(catalog: Catalog, video_id: int) -> VideoAccessChanged | None:
    """The announcement streaming would replay for this video (the stream keeps one)."""
    events = await catalog.events(f"access.video.{video_id}")
    assert len(events) <= 1, "the ACCESS stream keeps only the last state per video"
    return events[-1] if events else None  # type: ignore[return-value]


async def wait_for_state(catalog: Catalog, video_id: int, **expected: bool) -> VideoAccessChanged:
    async def matches() -> VideoAccessChanged | None:
        event = await latest(catalog, video_id)
        if event is not None and all(getattr(event, k) == v for k, v in expected.items()):
            return event
        return None

    return await wait_until_async(matches, timeout=15, interval=0.1, what=f"{expected}")


async def patch(catalog: Catalog, video_id: int, **changes: object) -> None:
    response = await catalog.admin.patch(f"/api/admin/videos/{video_id}/", json=changes)
    assert response.status_code == 200, response.text


async def test_every_change_of_publication_readiness_or_existence_is_announced(
    catalog: Catalog,
) -> None:
    video = await catalog.upload_ok()
    await wait_for_state(catalog, video["id"], published=False, ready=False, deleted=False)

    await catalog.bus.publish(catalog.completed_event(video["id"]))
    await wait_for_state(catalog, video["id"], published=False, ready=True)

    await patch(catalog, video["id"], published=True)
    announced = await wait_for_state(catalog, video["id"], published=True, ready=True)

    await patch(catalog, video["id"], title="Only the title changes")
    await patch(catalog, video["id"], published=True)  # no change either
    await catalog.wait_for(video["id"], lambda v: v["title"] == "Only the title changes", "edit")
    async with catalog.app.state.session_factory() as session:
        pending = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.subject == f"access.video.{video['id']}")
            .where(OutboxMessage.published_at.is_(None))
        )
    assert pending == 0
    assert (await latest(catalog, video["id"])).event_id == announced.event_id

    await patch(catalog, video["id"], published=False)
    await wait_for_state(catalog, video["id"], published=False, ready=True)
    await patch(catalog, video["id"], published=True)
    await wait_for_state(catalog, video["id"], published=True, ready=True)

    response = await catalog.admin.post(f"/api/admin/videos/{video['id']}/retranscode/")
    assert response.status_code == 202, response.text
    await wait_for_state(catalog, video["id"], published=True, ready=False)
    await catalog.bus.publish(catalog.completed_event(video["id"], generation=2))
    await wait_for_state(catalog, video["id"], published=True, ready=True)

    assert (await catalog.admin.delete(f"/api/admin/videos/{video['id']}/")).status_code == 204
    await wait_for_state(catalog, video["id"], published=False, ready=False, deleted=True)


async def test_announcements_commit_with_the_change_or_not_at_all(catalog: Catalog) -> None:
    video = await catalog.make_ready(publish=False)
    before = await wait_for_state(catalog, video["id"], published=False, ready=True)
    response = await catalog.admin.patch(
        f"/api/admin/videos/{video['id']}/", json={"published": True, "category": "No such"}
    )
    assert response.status_code == 400
    assert (await catalog.state(video["id"]))["published"] is False
    assert (await latest(catalog, video["id"])).event_id == before.event_id


async def test_reconciling_with_the_stream_intact_stages_nothing(catalog: Catalog) -> None:
    video = await catalog.make_ready(publish=True)
    await wait_for_state(catalog, video["id"], published=True, ready=True)

    async def relayed() -> bool:  # everything staged so far is in the stream
        async with catalog.app.state.session_factory() as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))
            )
        return pending == 0

    await wait_until_async(relayed, what="outbox relayed")
    announced = await announced_access(catalog.bus)
    assert announced[video["id"]].published is True
    async with catalog.app.state.session_factory() as session:
        assert await service.reconcile_access(session, announced=announced) == 0


@pytest.fixture
async def upgraded_catalog(fresh_catalog_env) -> AsyncIterator[dict]:
    """A catalog database whose videos were created before playback announcements existed
    (rows written directly, no outbox rows), on NATS streams of its own."""
    env = fresh_catalog_env(f"catalog_upgrade_{uuid.uuid4().hex[:6]}")
    settings = make_settings(env)
    # Migrated schema, no service running yet: write the old videos as they were.
    engine = create_engine(settings.database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            category = await session.scalar(text("SELECT id FROM category LIMIT 1"))
            for title, published, status in (
                ("old published", True, "ready"),
                ("old draft", False, "ready"),
                ("old failed", True, "failed"),
            ):
                await session.execute(
                    text(
                        "INSERT INTO video (title, description, category_id, created_at,"
                        " updated_at, published, status, progress, generation, sweep_retries,"
                        " last_activity_at, source_path, source_size, renditions)"
                        " VALUES (:title, '', :category, now(), now(), :published, :status,"
                        " 100, 1, 0, now(), 'uploads/x/source.mp4', 1, '{}')"
                    ),
                    {
                        "title": title,
                        "published": published,
                        "status": status,
                        "category": category,
                    },
                )
    finally:
        await engine.dispose()
    bus = EventBus(
        url=NATS_URL,
        subject_prefix=settings.nats_subject_prefix,
        stream_prefix=settings.nats_stream_prefix,
    )
    await bus.connect(wait=False)
    yield {"settings": settings, "bus": bus}
    await bus.delete_streams()
    await bus.close()


async def states_in_stream(bus: EventBus, video_ids) -> dict[int, VideoAccessChanged] | None:
    states = {}
    for video_id in video_ids:
        try:
            msg = await bus.js.get_last_msg(
                bus.stream("ACCESS"), bus.subject(f"access.video.{video_id}")
            )
        except Exception:
            return None
        states[video_id] = parse_event(f"access.video.{video_id}", msg.data)
    return states


@contextlib.asynccontextmanager
async def start_and_backfill(settings) -> AsyncIterator[FastAPI]:
    """A catalog process that has staged its start-up backfill."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.access_backfilled.wait(), 15)
        yield app


async def announcements_so_far(bus: EventBus) -> int:
    """How many playback states the ACCESS stream has ever stored (its last sequence)."""
    return (await bus.js.stream_info(bus.stream("ACCESS"))).state.last_seq


async def outbox_empty(app: FastAPI) -> bool:
    async with app.state.session_factory() as session:
        return not await session.scalar(select(func.count()).select_from(OutboxMessage))


@pytest.mark.usefixtures("catalog")  # the shared catalog runs alongside, as in the suite
async def test_start_after_an_upgrade_announces_videos_that_predate_the_stream(
    upgraded_catalog: dict,
) -> None:
    settings, bus = upgraded_catalog["settings"], upgraded_catalog["bus"]
    before = await announcements_so_far(bus)
    async with start_and_backfill(settings) as app:
        async with app.state.session_factory() as session:
            videos = {v.title: v.id for v in await session.scalars(select(service.Video))}
        states = await wait_until_async(
            lambda: states_in_stream(bus, videos.values()), what="start-up announcements"
        )
        published, draft = states[videos["old published"]], states[videos["old draft"]]
        assert (published.published, published.ready) == (True, True)
        assert (draft.published, draft.ready) == (False, True)
        assert states[videos["old failed"]].ready is False
        await wait_until_async(lambda: outbox_empty(app), what="relayed")
        assert await announcements_so_far(bus) - before == 3

    async with start_and_backfill(settings) as app:  # a restart: the stream shows it all
        await wait_until_async(lambda: outbox_empty(app), what="relayed")
        assert await announcements_so_far(bus) - before == 3, "nothing announced again"


@pytest.mark.usefixtures("catalog")  # the shared catalog runs alongside, as in the suite
async def test_start_rebuilds_a_lost_stream_and_buries_videos_it_no_longer_has(
    upgraded_catalog: dict,
) -> None:
    settings, bus = upgraded_catalog["settings"], upgraded_catalog["bus"]
    async with start_and_backfill(settings) as app:
        async with app.state.session_factory() as session:
            video_ids = [v.id for v in await session.scalars(select(service.Video))]
        await wait_until_async(lambda: states_in_stream(bus, video_ids), what="announced")
    await bus.js.delete_stream(bus.stream("ACCESS"))  # NATS lost its data
    await bus.ensure_streams()
    ghost = max(video_ids) + 100  # the stream says playable; the database has no such video
    await bus.publish(VideoAccessChanged(video_id=ghost, published=True, ready=True))

    async with start_and_backfill(settings):
        states = await wait_until_async(
            lambda: states_in_stream(bus, [*video_ids, ghost]), what="stream rebuilt"
        )

        async def buried() -> bool:
            return (await states_in_stream(bus, [ghost]))[ghost].deleted

        await wait_until_async(buried, what="tombstone for a video the database lacks")
    assert sum(s.ready for s in states.values() if s.video_id != ghost) == 2
