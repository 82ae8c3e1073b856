"""The admin page as an editor uses it, in Chromium through the gateway: sign in, upload a
short clip with the progress bar, watch its status in the table until it is ready."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import (
    ADMIN_VIDEOS,
    READY_TIMEOUT,
    Api,
    Stack,
    generate_clip,
    screenshot,
)
from tests.e2e.helpers import step as timed_step

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("admin-page") / "short-480p.mp4"
    return generate_clip(path, seconds=4, width=854, height=480)


# Records every status the title's row shows, from its first appearance on.
RECORD_STATUSES = """(title) => {
    const seen = (window.statusesSeen = []);
    const record = () => {
        for (const row of document.querySelectorAll("#videos-body tr")) {
            const status = row.dataset.status;
            if (row.textContent.includes(title) && status &&
                seen[seen.length - 1] !== status) seen.push(status);
        }
    };
    new MutationObserver(record).observe(document.getElementById("videos-body"),
        { subtree: true, childList: true, attributes: true });
}"""
ROW_SETTLED = """(id) => {
    const row = document.querySelector(`tr[data-video-id="${id}"]`);
    const status = row && row.dataset.status;
    return status === "ready" || status === "failed";
}"""


def test_admin_signs_in_uploads_and_sees_the_video_become_ready(
    stack: Stack, browser: Any, short_clip: Path, admin_api: Api
) -> None:
    title = f"Admin page upload {uuid.uuid4().hex[:6]}"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        with timed_step("admin page", "open /admin/ and sign in"):
            sign_in(page, stack)
        with timed_step("admin page", "upload a clip with the form"):
            upload_with_the_form(page, title, short_clip)
        with timed_step("admin page", "the table shows the status live until ready"):
            video_id = wait_until_the_row_is_ready(page, title)
    finally:
        screenshot(page, "admin-page-ready")
        context.close()

    # The page told the truth: the API agrees, and the transcoder produced the rendition.
    video = admin_api.get(f"{ADMIN_VIDEOS}{video_id}/").json()
    assert video["status"] == "ready", video
    assert video["title"] == title, video
    assert video["renditions"] == ["480p"], video
    assert video["published"] is True, "the page's default: published as soon as it is ready"
    assert video["waiting_for"] is None, video


def sign_in(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.base_url}/admin/")
    page.wait_for_selector("#login-section", state="visible")
    page.fill("#login-email", stack.admin_email)
    page.fill("#login-password", stack.admin_password)
    page.click("#login-submit")
    page.wait_for_selector("#admin-section", state="visible")
    # the page shows itself first, then asks /api/user/ who is signed in
    page.wait_for_function("document.querySelector('#account-email').textContent !== ''")
    assert page.text_content("#account-email") == stack.admin_email


def upload_with_the_form(page: Any, title: str, clip: Path) -> None:
    page.wait_for_selector("#upload-category option >> text=Documentary", state="attached")
    page.fill("#upload-title", title)
    page.fill("#upload-description", "Uploaded through the admin page by the e2e suite.")
    page.select_option("#upload-category", label="Documentary")
    page.set_input_files("#upload-file", str(clip))
    page.evaluate(RECORD_STATUSES, title)
    page.click("#upload-submit")
    page.wait_for_function(
        "document.getElementById('upload-message').textContent.includes('uploaded')",
        timeout=60_000,
    )
    assert page.get_attribute("#upload-progress", "value") == "100"


def wait_until_the_row_is_ready(page: Any, title: str) -> str:
    """The row's status goes live from uploaded/processing to ready; the video's id."""
    row = page.locator("#videos-body tr", has_text=title)
    row.wait_for(state="attached")
    video_id: str = row.get_attribute("data-video-id")
    page.wait_for_function(ROW_SETTLED, arg=video_id, timeout=READY_TIMEOUT * 1000, polling=250)
    statuses = page.evaluate("window.statusesSeen")
    assert row.get_attribute("data-status") == "ready", (statuses, row.inner_text())
    assert statuses[0] in ("uploaded", "processing"), f"not live: {statuses}"
    assert statuses[-1] == "ready", statuses
    page.wait_for_selector(f"#status-{video_id} .badge.ready")
    return video_id
