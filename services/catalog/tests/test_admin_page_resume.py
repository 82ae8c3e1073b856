"""The admin page's resumable upload in Debian's Chromium (Playwright, headless): a clip goes
up in small chunks (`?chunk_size=`), the page is reloaded mid-way, choosing the same file
again continues from the offset the server holds (not from zero, and no second upload), and
the video becomes ready."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from videoflix_catalog.app import create_app
from videoflix_shared.testing.plugin import ServerThread, wait_until_async

from .conftest import make_clip, make_settings
from .test_admin_page import ARTIFACTS, admin_page, chromium
from .test_admin_page import pytestmark as browser_marks

pytestmark = browser_marks

CHUNK = 4096
TUS = "/api/admin/uploads/"


async def fill_form(page, title: str, clip: Path) -> None:
    await page.fill("#upload-title", title)
    await page.select_option("#upload-category", label="Documentary")
    await page.set_input_files("#upload-file", str(clip))


async def test_reloaded_page_resumes_the_upload_from_the_servers_offset(
    catalog, catalog_env: dict[str, str], token_issuer, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    clip = make_clip(tmp_path / "resumable.mp4", seconds=4, size="320x180")
    data = clip.read_bytes()
    assert len(data) > 5 * CHUNK, "the clip must take several chunks"
    title = catalog.unique_title("Resumed")
    patches: list[tuple[str, int]] = []  # (page load, Upload-Offset) of every PATCH sent
    posts: list[str] = []
    state = {"load": "first", "hold": False, "held": 0}

    with ServerThread(create_app(make_settings(catalog_env))) as server:
        async with chromium() as browser:
            page = await admin_page(browser, server.url, token_issuer)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            async def on_upload_request(route) -> None:
                request = route.request
                if request.method == "PATCH":
                    if state["hold"]:  # the connection drops: nothing reaches catalog
                        state["held"] += 1
                        await route.abort()
                        return
                    offset = int(request.headers["upload-offset"])
                    patches.append((state["load"], offset))
                elif request.method == "POST":
                    posts.append(state["load"])
                await route.continue_()

            await page.route(f"**{TUS}**", on_upload_request)
            await page.goto(f"{server.url}/admin/?chunk_size={CHUNK}")
            await expect(page.locator("#admin-section")).to_be_visible()
            await expect(page.locator("#upload-category option")).not_to_have_count(0)
            await fill_form(page, title, clip)
            await page.click("#upload-submit")

            # A few chunks arrive, then the connection fails and the page is reloaded.
            await wait_until_async(lambda: len(patches) >= 3, timeout=30, what="3 chunks")
            state["hold"] = True
            await wait_until_async(lambda: state["held"] >= 1, timeout=30, what="a cut")
            listed = (await catalog.admin.get(TUS)).json()
            upload = next(u for u in listed if u["title"] == title)
            head = await catalog.admin.head(upload["location"], headers={"Tus-Resumable": "1.0.0"})
            offset_before_reload = int(head.headers["Upload-Offset"])
            assert CHUNK <= offset_before_reload < len(data)

            state["load"], state["hold"] = "reloaded", False
            await page.reload()
            await expect(page.locator("#admin-section")).to_be_visible()
            # The page lists the unfinished upload with what the server has.
            unfinished = page.locator(f"#unfinished-body tr[data-upload-id='{upload['id']}']")
            await expect(unfinished).to_contain_text(title)
            await expect(page.locator("#upload-category option")).not_to_have_count(0)
            await fill_form(page, title, clip)
            await page.click("#upload-submit")
            await expect(page.locator("#upload-message")).to_contain_text(
                "uploaded", timeout=60_000
            )

            resumed = [offset for load, offset in patches if load == "reloaded"]
            assert resumed[0] == offset_before_reload, (patches, offset_before_reload)
            assert resumed[0] > 0
            assert posts == ["first"], "the reloaded page continued, it did not start over"
            assert await page.eval_on_selector("#upload-progress", "el => el.value") == 100
            assert await page.locator("#upload-stats").inner_text() != ""

            row = page.locator("#videos-body tr", has_text=title)
            await expect(row).to_have_count(1)
            video_id = int(await row.get_attribute("data-video-id"))
            source = catalog.settings.media_root / f"uploads/{video_id}/source.mp4"
            assert hashlib.sha256(source.read_bytes()).digest() == hashlib.sha256(data).digest()
            await expect(unfinished).to_have_count(0)

            await catalog.bus.publish(catalog.completed_event(video_id))
            status = page.locator(f"#status-{video_id}")
            await expect(status).to_have_attribute("data-status", "ready")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "catalog-admin-resumed-upload.png"))
            assert errors == []


@pytest.mark.usefixtures("catalog")
async def test_page_pauses_resumes_and_discards(
    catalog_env: dict[str, str], token_issuer, tmp_path: Path
) -> None:
    """Pause stops sending, Resume continues, Discard on the unfinished list deletes it."""
    from playwright.async_api import expect

    clip = make_clip(tmp_path / "paused.mp4", seconds=4, size="320x180")
    with ServerThread(create_app(make_settings(catalog_env))) as server:
        async with chromium() as browser:
            page = await admin_page(browser, server.url, token_issuer)
            sent = {"patches": 0}

            async def slow_patches(route) -> None:
                if route.request.method == "PATCH":
                    sent["patches"] += 1
                    await page.wait_for_timeout(150)
                await route.continue_()

            await page.route(f"**{TUS}**", slow_patches)
            await page.goto(f"{server.url}/admin/?chunk_size={CHUNK}")
            await expect(page.locator("#upload-category option")).not_to_have_count(0)
            title = f"Paused {tmp_path.name[-6:]}"
            await fill_form(page, title, clip)
            await page.click("#upload-submit")
            await wait_until_async(lambda: sent["patches"] >= 2, timeout=30, what="2 chunks")
            await page.click("#upload-pause")
            await expect(page.locator("#upload-resume")).to_be_visible()
            await page.wait_for_timeout(500)
            paused_at = sent["patches"]
            await page.wait_for_timeout(700)
            assert sent["patches"] == paused_at, "nothing is sent while paused"
            await page.click("#upload-resume")
            await wait_until_async(
                lambda: sent["patches"] > paused_at + 1, timeout=30, what="resumed chunks"
            )
            await page.click("#upload-pause")
            await page.reload()  # leaves it unfinished
            row = page.locator("#unfinished-body tr", has_text=title)
            await expect(row).to_have_count(1)
            page.on("dialog", lambda dialog: dialog.accept())
            await row.locator(".discard-upload").click()
            await expect(row).to_have_count(0)
            await expect(page.locator("#unfinished-card")).to_be_hidden()
