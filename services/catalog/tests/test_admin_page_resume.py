"""The admin page's resumable upload in Debian's Chromium (Playwright, headless): a clip goes
up in small chunks (`?chunk_size=`), the page is reloaded mid-way, choosing the same file
again continues from the offset the server holds (not from zero, and no second upload), and
the video becomes ready."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from videoflix_catalog.app import create_app
from videoflix_testing.plugin import ServerThread, wait_until_async

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


class UploadTraffic:
    """The page's tus requests as the network sees them: the Upload-Offset of every PATCH
    and every POST, per page load; while `cut`, PATCHes fail as if the link dropped."""

    def __init__(self) -> None:
        self.load = "first"
        self.cut = False
        self.refused = 0
        self.patches: list[tuple[str, int]] = []
        self.posts: list[str] = []

    async def route(self, route) -> None:
        request = route.request
        if request.method == "PATCH":
            if self.cut:  # nothing reaches catalog
                self.refused += 1
                await route.abort()
                return
            self.patches.append((self.load, int(request.headers["upload-offset"])))
        elif request.method == "POST":
            self.posts.append(self.load)
        await route.continue_()

    def offsets(self, load: str) -> list[int]:
        return [offset for at, offset in self.patches if at == load]


async def upload_until_the_link_drops(page, traffic: UploadTraffic, title: str, clip: Path):
    from playwright.async_api import expect

    await expect(page.locator("#upload-category option")).not_to_have_count(0)
    await fill_form(page, title, clip)
    await page.click("#upload-submit")
    await wait_until_async(lambda: len(traffic.patches) >= 3, timeout=30, what="3 chunks")
    traffic.cut = True
    await wait_until_async(lambda: traffic.refused >= 1, timeout=30, what="a dropped chunk")


async def servers_offset(catalog, title: str) -> tuple[dict, int]:
    upload = next(u for u in (await catalog.admin.get(TUS)).json() if u["title"] == title)
    head = await catalog.admin.head(upload["location"], headers={"Tus-Resumable": "1.0.0"})
    return upload, int(head.headers["Upload-Offset"])


async def reload_and_choose_the_file_again(page, traffic: UploadTraffic, upload: dict, clip):
    from playwright.async_api import expect

    traffic.load, traffic.cut = "reloaded", False
    await page.reload()
    # The page lists the unfinished upload with what the server has.
    unfinished = page.locator(f"#unfinished-body tr[data-upload-id='{upload['id']}']")
    await expect(unfinished).to_contain_text(upload["title"])
    await expect(page.locator("#upload-category option")).not_to_have_count(0)
    await fill_form(page, upload["title"], clip)
    await page.click("#upload-submit")
    await expect(page.locator("#upload-message")).to_contain_text("uploaded", timeout=60_000)
    await expect(unfinished).to_have_count(0)


async def test_reloaded_page_resumes_the_upload_from_the_servers_offset(
    catalog, catalog_env: dict[str, str], token_issuer, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    clip = make_clip(tmp_path / "resumable.mp4", seconds=4, size="320x180")
    data = clip.read_bytes()
    assert len(data) > 5 * CHUNK, "the clip must take several chunks"
    title = catalog.unique_title("Resumed")
    traffic = UploadTraffic()
    with ServerThread(create_app(make_settings(catalog_env))) as server:
        async with chromium() as browser:
            page = await admin_page(browser, server.url, token_issuer)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.route(f"**{TUS}**", traffic.route)
            await page.goto(f"{server.url}/admin/?chunk_size={CHUNK}")

            await upload_until_the_link_drops(page, traffic, title, clip)
            upload, offset_before_reload = await servers_offset(catalog, title)
            assert CHUNK <= offset_before_reload < len(data)
            await reload_and_choose_the_file_again(page, traffic, upload, clip)

            resumed = traffic.offsets("reloaded")
            assert resumed[0] == offset_before_reload > 0, (traffic.patches, offset_before_reload)
            assert traffic.posts == ["first"], "the reloaded page continued, it did not start over"
            assert await page.eval_on_selector("#upload-progress", "el => el.value") == 100
            assert await page.locator("#upload-stats").inner_text() != ""

            row = page.locator("#videos-body tr", has_text=title)
            await expect(row).to_have_count(1)
            video_id = int(await row.get_attribute("data-video-id"))
            source = catalog.settings.media_root / f"uploads/{video_id}/source.mp4"
            assert hashlib.sha256(source.read_bytes()).digest() == hashlib.sha256(data).digest()
            await catalog.bus.publish(catalog.completed_event(video_id))
            await expect(page.locator(f"#status-{video_id}")).to_have_attribute(
                "data-status", "ready"
            )
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
