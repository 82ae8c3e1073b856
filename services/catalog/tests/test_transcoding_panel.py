"""The admin page's "Transcoding" panel: catalog passes on the transcoder dispatcher's
read-only job list (its internal `GET /jobs`), to admins only, and says clearly when the
transcoder cannot be reached. Against a real dispatcher process, Redis and NATS; the
panel in Debian's Chromium."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from videoflix_catalog.app import create_app
from videoflix_shared.transcode_jobs import TranscodeJobs
from videoflix_testing.browser import CHROMIUM
from videoflix_testing.plugin import ServerThread, wait_until

from .conftest import CSRF, make_settings
from .test_admin_page import ARTIFACTS, admin_page, chromium
from .transcoder_helpers import Dispatcher

JOBS = "/api/admin/transcoding/jobs/"


async def test_the_job_list_is_for_admins_only(
    anonymous: httpx.AsyncClient, viewer: httpx.AsyncClient
) -> None:
    anonymous_answer = await anonymous.get(JOBS)
    assert anonymous_answer.status_code == 401
    assert "detail" in anonymous_answer.json()
    viewer_answer = await viewer.get(JOBS)
    assert viewer_answer.status_code == 403
    assert "detail" in viewer_answer.json()


async def test_a_transcoder_out_of_reach_is_a_clear_503(admin: httpx.AsyncClient) -> None:
    # The shared app's CATALOG_TRANSCODER_JOBS_URL is a port nothing listens on.
    answer = await admin.get(JOBS)

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.json() == {
        "detail": "The transcoder's job list is unavailable: the dispatcher cannot be reached "
        "(ConnectError). Transcoding itself goes on; try again shortly."
    }


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
async def test_the_panel_shows_an_uploaded_video_queued_for_transcoding(
    catalog_with_dispatcher: Callable[[str], tuple[dict[str, str], Dispatcher]],
    token_issuer: Any,
    clip: Path,
) -> None:
    from playwright.async_api import expect

    env, dispatcher = catalog_with_dispatcher("transcoding_panel")
    title = "Queued for the panel"
    cookies = token_issuer.cookies(user_id=1, email="admin@example.com", is_admin=True)
    with ServerThread(create_app(make_settings(env))) as server:
        async with httpx.AsyncClient(
            base_url=server.url, cookies=cookies, headers={"X-CSRFToken": CSRF}
        ) as admin:
            uploaded = await admin.post(
                "/api/admin/videos/upload/",
                data={"title": title, "category": "Drama"},
                files={"file": ("clip.mp4", await asyncio.to_thread(clip.read_bytes), "video/mp4")},
            )
            assert uploaded.status_code == 202, uploaded.text
            video_id = uploaded.json()["id"]

            def queued() -> TranscodeJobs | None:
                answer = httpx.get(f"{server.url}{JOBS}", cookies=cookies, timeout=5)
                listing = TranscodeJobs.model_validate_json(answer.content)
                return listing if [j.video_id for j in listing.queued] == [video_id] else None

            # upload -> outbox -> NATS -> dispatcher -> Redis, and back through catalog
            wait_until(lambda: queued() is not None, timeout=30, what="the job queued")
            job = queued().queued[0]  # type: ignore[union-attr]
            assert (job.generation, job.part, job.attempt, job.worker) == (1, None, 1, None)
            assert job.job_id.endswith(f"transcode:{video_id}:1")

        async with chromium() as browser:
            page = await admin_page(browser, server.url, token_issuer)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            row = page.locator(f'#transcoding-body tr[data-video-id="{video_id}"]')
            await expect(row).to_have_attribute("data-state", "queued")
            await expect(row).to_contain_text("Queued")
            await expect(row).to_contain_text(f"#{video_id} {title} (generation 1)")
            await expect(row).to_contain_text("plays first")
            await expect(page.locator("#transcoding-summary")).to_contain_text("1 queued")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(
                path=str(ARTIFACTS / "catalog-transcoding-panel.png"), full_page=True
            )

            # The transcoder goes away: the panel says so instead of showing an old list.
            dispatcher.stop()
            await expect(page.locator("#transcoding-status")).to_contain_text(
                "the dispatcher cannot be reached", timeout=15_000
            )
            await expect(row).to_have_count(0)
            assert errors == []
