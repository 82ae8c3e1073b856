"""Fixtures of the end-to-end suite: a whole Videoflix stack reached through its gateway only
(the helpers they use are in tests/e2e/helpers/).

By default the session starts the native stack (`python -m deploy.devstack up`) as a
subprocess on a private port block, with per-run databases, Redis prefix, NATS subjects and
streams, and stops it afterwards. With `E2E_BASE_URL` set (and `E2E_MAIL_URL` for the dev mail
sink, `E2E_ADMIN_EMAIL` / `E2E_ADMIN_PASSWORD` for the admin account) it uses a stack that is
already up, for example compose. Such a stack must serve CORS to http://127.0.0.1:5500 (the
test page's origin, served by the suite) and allow the suite's ~30 logins from one address
within five minutes and its registrations within an hour (AUTH_LOGIN_LIMIT_PER_IP,
AUTH_REGISTER_LIMIT_PER_IP; the started stack lifts the per-address limits,
the per-account limits the 429 tests prove keep their defaults), and run with
AUTH_REFRESH_REUSE_GRACE_SECONDS=2 (REFRESH_GRACE_SECONDS), so the journey can show
both sides of the refresh grace window without waiting 20 s.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers.api import (
    Api,
    PublishedVideo,
    User,
    new_email,
    publish_clip,
    strong_password,
)
from tests.e2e.helpers.browser import HLS_JS, serving_frontend
from tests.e2e.helpers.mail import Mailbox, link_params
from tests.e2e.helpers.media import JOURNEY_CLIP_SECONDS, Clip, generate_clip
from tests.e2e.helpers.stack import RunNames, Stack, existing_stack, launch
from tests.e2e.helpers.steps import STEP_TIMINGS
from videoflix_testing.browser import (
    CHROMIUM_MISSING,
    chromium_installed,
    chromium_launch_options,
)

E2E_DIR = Path(__file__).resolve().parent


# --- pytest hooks -----------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The journey runs first among the e2e tests: it performs the upload the others reuse,
    so its steps are timed as a user would live them."""
    slots = [i for i, item in enumerate(items) if Path(str(item.path)).parent == E2E_DIR]
    e2e = sorted((items[i] for i in slots), key=lambda item: item.path.name != "test_journey.py")
    for slot, item in zip(slots, e2e, strict=True):
        items[slot] = item


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not STEP_TIMINGS:
        return
    terminalreporter.section("e2e steps")
    for test, name, seconds in STEP_TIMINGS:
        terminalreporter.write_line(f"{seconds:7.2f}s  {test}: {name}")


# --- the stack --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    run_id: str,
    make_database: Callable[[str], str],
    redis_prefix: str,
    nats_names: dict[str, str],
) -> Iterator[Stack]:
    if base_url := os.environ.get("E2E_BASE_URL"):
        yield existing_stack(base_url.rstrip("/"))
        return
    # Names under the run's own prefixes but apart from the services' own test suites, which
    # share the run id: their tables, cache keys and durable consumers must not meet ours.
    names = RunNames(
        run_id=run_id,
        auth_database_url=make_database("e2e_auth"),
        catalog_database_url=make_database("e2e_catalog"),
        redis_prefix=f"{redis_prefix}e2e:",
        subject_prefix=f"{nats_names['NATS_SUBJECT_PREFIX']}e2e.",
        stream_prefix=f"{nats_names['NATS_STREAM_PREFIX']}E2E_",
    )
    with launch(tmp_path_factory.mktemp("e2e-stack"), names) as started:
        yield started


# --- clients ----------------------------------------------------------------------------------


@pytest.fixture
def api_factory(stack: Stack) -> Iterator[Callable[[], Api]]:
    clients: list[Api] = []

    def factory() -> Api:
        clients.append(Api(stack))
        return clients[-1]

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def api(api_factory: Callable[[], Api]) -> Api:
    return api_factory()


@pytest.fixture(scope="session")
def mailbox(stack: Stack) -> Iterator[Mailbox]:
    box = Mailbox(stack.mail_url)
    yield box
    box.close()


@pytest.fixture(scope="session")
def admin_api(stack: Stack) -> Iterator[Api]:
    """The admin, logged in with cookies like the admin page (so writes carry X-CSRFToken)."""
    admin = Api(stack)
    admin.login_ok(stack.admin_email, stack.admin_password)
    yield admin
    admin.close()


@pytest.fixture
def active_user(api_factory: Callable[[], Api], mailbox: Mailbox) -> User:
    """A freshly registered and activated account (through the API and the emailed link)."""
    user = User(new_email("user"), strong_password())
    api = api_factory()
    seen = mailbox.ids(user.email)
    assert api.register(user.email, user.password).status_code == 201
    _, query = link_params(mailbox.wait_new(user.email, seen), "/pages/auth/activate.html")
    response = api.get(f"/api/activate/{query['uid']}/{query['token']}/")
    assert response.status_code == 200, response.text
    return user


# --- media --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def journey_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    path = tmp_path_factory.mktemp("clips") / "journey-1080p.mp4"
    generate_clip(path, seconds=JOURNEY_CLIP_SECONDS, width=1920, height=1080)
    return Clip(path, JOURNEY_CLIP_SECONDS)


@pytest.fixture(scope="session")
def published_video(admin_api: Api, journey_clip: Clip) -> PublishedVideo:
    """The admin uploads the journey clip, it is transcoded and published (asserting each step).

    The journey test asks for it at its step; the streaming and browser tests reuse it so the
    expensive transcode happens once per run.
    """
    return publish_clip(admin_api, journey_clip, f"E2E journey {uuid.uuid4().hex[:6]}")


# --- the frontend origin and the browser --------------------------------------------------------


@pytest.fixture(scope="session")
def frontend(stack: Stack) -> Iterator[str]:
    """The test page's origin (a CORS origin of the stack), served while the session runs."""
    if not HLS_JS.exists():
        pytest.fail(f"{HLS_JS} is missing: run `make install` (npm ci in tests/e2e)")
    with serving_frontend(stack.frontend_port):
        yield stack.frontend_origin


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    if not chromium_installed():
        pytest.fail(CHROMIUM_MISSING)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(**chromium_launch_options())
        yield chromium
        chromium.close()
