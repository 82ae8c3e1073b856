"""Catalog announces who may play each video (`access.video.<id>`, VideoAccessChanged)
through its outbox whenever publication, readiness or existence changes, and announces
every video once more on start, so an installation whose videos predate the ACCESS stream
(an upgrade) or lost it becomes playable without anyone touching a video."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text

from videoflix_catalog import service
from videoflix_catalog.app import create_app
from videoflix_shared.bus import EventBus
from videoflix_shared.db import create_engine, create_session_factory
from videoflix_shared.events import VideoAccessChanged, parse_event
from videoflix_shared.outbox import OutboxMessage
from videoflix_shared.testing.plugin import NATS_URL, wait_until_async

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


async def test_announcing_every_video_again_is_idempotent(catalog: Catalog) -> None:
    video = await catalog.make_ready(publish=True)
    await wait_for_state(catalog, video["id"], published=True, ready=True)
    async with catalog.app.state.session_factory() as session:
        await service.announce_all_access(session)  # a start: stages what is not there yet
    async with catalog.app.state.session_factory() as session:
        assert await service.announce_all_access(session) == 0  # a second start: nothing new
    await wait_for_state(catalog, video["id"], published=True, ready=True)


@pytest.fixture
async def upgraded_catalog(catalog: Catalog, fresh_catalog_env) -> AsyncIterator[dict]:
    """A catalog database whose videos were created before playback announcements existed
    (rows written directly, no outbox rows), on NATS streams of its own."""
    suffix = uuid.uuid4().hex[:6]
    env = fresh_catalog_env(
        f"catalog_upgrade_{suffix}",
        NATS_SUBJECT_PREFIX=f"{catalog.settings.nats_subject_prefix}up{suffix}.",
        NATS_STREAM_PREFIX=f"{catalog.settings.nats_stream_prefix}UP{suffix}_",
    )
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


async def test_start_after_an_upgrade_announces_videos_that_predate_the_stream(
    catalog: Catalog, upgraded_catalog: dict
) -> None:
    settings, bus = upgraded_catalog["settings"], upgraded_catalog["bus"]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.session_factory() as session:
            videos = {v.title: v.id for v in await session.scalars(select(service.Video))}

        async def announced() -> dict[int, VideoAccessChanged] | None:
            states = {}
            for video_id in videos.values():
                try:
                    msg = await bus.js.get_last_msg(
                        bus.stream("ACCESS"), bus.subject(f"access.video.{video_id}")
                    )
                except Exception:
                    return None
                states[video_id] = parse_event(f"access.video.{video_id}", msg.data)
            return states

        states = await wait_until_async(announced, timeout=15, what="start-up announcements")
        assert (
            states[videos["old published"]].published,
            states[videos["old published"]].ready,
        ) == (True, True)
        assert (states[videos["old draft"]].published, states[videos["old draft"]].ready) == (
            False,
            True,
        )
        assert states[videos["old failed"]].ready is False
        async with app.state.session_factory() as session:
            rows = await session.scalar(select(func.count()).select_from(OutboxMessage))
    assert rows == 3

    restarted = create_app(settings)  # a restart stages nothing new: ids are deterministic
    async with (
        restarted.router.lifespan_context(restarted),
        restarted.state.session_factory() as session,
    ):
        assert await service.announce_all_access(session) == 0
        rows = await session.scalar(select(func.count()).select_from(OutboxMessage))
    assert rows == 3
