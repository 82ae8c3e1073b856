"""The admin page in Debian's Chromium (Playwright, headless): signed in with the admin's
cookies, it uploads a generated clip with a progress bar and shows the status go live from
uploaded through processing to ready as transcoder events arrive on NATS."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from videoflix_catalog.app import create_app
from videoflix_shared.events import TranscodeProgress
from videoflix_testing.browser import CHROMIUM, CHROMIUM_ARGS
from videoflix_testing.plugin import ServerThread

from .conftest import make_settings

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed"),
]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def admin_page(browser: Browser, url: str, token_issuer: Any) -> Page:
    """The admin page in a browser holding an admin's session cookies."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    cookies = token_issuer.cookies(user_id=1, email="admin@example.com", is_admin=True)
    await context.add_cookies(
        [{"name": name, "value": value, "url": url} for name, value in cookies.items()]
    )
    page = await context.new_page()
    await page.goto(f"{url}/admin/")
    return page


async def upload_from_the_page(page: Page, title: str, clip: Path) -> Locator:
    """Fill in and send the upload form; the new video's row once the upload completed."""
    from playwright.async_api import expect

    await page.fill("#upload-title", title)
    await page.fill("#upload-description", "Uploaded from the admin page.")
    await page.select_option("#upload-category", label="Documentary")
    await page.set_input_files("#upload-file", str(clip))
    await page.click("#upload-submit")
    await expect(page.locator("#upload-message")).to_contain_text("uploaded")
    progress = await page.eval_on_selector("#upload-progress", "el => el.value")
    assert progress == 100
    row = page.locator("#videos-body tr", has_text=title)
    await expect(row).to_have_count(1)
    return row


async def watch_it_go_live(page: Page, catalog: Any, video_id: int) -> None:
    """Status and "waiting for" follow the transcoder's events without a reload."""
    from playwright.async_api import expect

    status = page.locator(f"#status-{video_id}")
    await expect(status).to_have_attribute("data-status", "uploaded")
    waiting = page.locator(f"#waiting-{video_id}")
    await expect(waiting).to_contain_text("It publishes itself when ready.")

    await catalog.bus.publish(TranscodeProgress(video_id=video_id, generation=1, percent=40))
    await expect(status).to_have_attribute("data-status", "processing")
    await expect(status).to_contain_text("40%")
    await expect(waiting).to_contain_text("Transcoding to finish (40%)")

    # "Publish when ready" is the form's default: ready means live, no extra step.
    await catalog.bus.publish(catalog.completed_event(video_id))
    await expect(status).to_have_attribute("data-status", "ready")
    await expect(status).to_contain_text("Ready")
    await expect(waiting).to_contain_text("Live: viewers see it.")


async def test_admin_uploads_a_clip_and_watches_it_become_ready(
    catalog, catalog_env: dict[str, str], token_issuer
) -> None:
    from playwright.async_api import expect

    # The page needs a real HTTP server: the same catalog on uvicorn in a thread.
    with ServerThread(create_app(make_settings(catalog_env))) as server:
        async with chromium() as browser:
            page = await admin_page(browser, server.url, token_issuer)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await expect(page.locator("#admin-section")).to_be_visible()
            await expect(page.locator("#upload-category option")).not_to_have_count(0)
            documentary = page.locator("#categories-list li", has_text="Documentary")
            count_before = int((await documentary.inner_text()).split("(")[1].split(")")[0])

            row = await upload_from_the_page(
                page, catalog.unique_title("Browser upload"), catalog.clip
            )
            # The category counts follow without a reload.
            await expect(documentary).to_contain_text(f"Documentary ({count_before + 1})")
            video_id = int(await row.get_attribute("data-video-id") or 0)
            await watch_it_go_live(page, catalog, video_id)
            await expect(row.locator(".publish-toggle")).to_be_checked()
            assert (await catalog.state(video_id))["published"] is True

            await row.locator(".publish-toggle").uncheck()
            await expect(page.locator(".toast").last).to_contain_text("Unpublished.")
            await expect(page.locator(f"#waiting-{video_id}")).to_contain_text("it is a draft")
            assert (await catalog.state(video_id))["published"] is False

            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "catalog-admin-page.png"), full_page=True)

            page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation
            await row.locator(".delete-button").click()
            await expect(row).to_have_count(0)
            await expect(documentary).to_contain_text(f"Documentary ({count_before})")
            assert errors == []


async def test_admin_page_asks_to_sign_in_without_a_session(catalog_env: dict[str, str]) -> None:
    from playwright.async_api import expect

    with ServerThread(create_app(make_settings(catalog_env))) as server:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{server.url}/admin/")
            await expect(page.locator("#login-section")).to_be_visible()
            await expect(page.locator("#login-email")).to_be_focused()
            await expect(page.locator("#admin-section")).to_be_hidden()
