"""Fixtures of the end-to-end suite: a whole Videoflix stack reached through its gateway only.

By default the session starts the native stack (`python -m deploy.devstack up`) as a
subprocess on a private port block, with per-run databases, Redis prefix, NATS subjects and
streams, and stops it afterwards. With `E2E_BASE_URL` set (and `E2E_MAIL_URL` for the dev mail
sink, `E2E_ADMIN_EMAIL` / `E2E_ADMIN_PASSWORD` for the admin account) it uses a stack that is
already up, for example compose. Such a stack must serve CORS to http://127.0.0.1:5500 (the
test page's origin, served by the suite) and allow the suite's ~30 logins from one address
within five minutes and its registrations within an hour (AUTH_LOGIN_LIMIT_PER_IP,
AUTH_REGISTER_LIMIT_PER_IP; the started stack lifts the per-address limits,
the per-account limits the 429 tests prove keep their defaults), and run with
AUTH_REFRESH_REUSE_GRACE_SECONDS=2 (REFRESH_GRACE_SECONDS below), so the journey can show
both sides of the refresh grace window without waiting 20 s.

Everything here speaks HTTP to the gateway (and the mail sink's listing), never to a
service's port or database, so the suite sees the product the way a client does.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
WEB_DIR = E2E_DIR / "web"
HLS_JS = E2E_DIR / "node_modules" / "hls.js" / "dist" / "hls.min.js"
ARTIFACTS = ROOT / "test-artifacts"

FRONTEND_PORT = 5500
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STACK_START_TIMEOUT = 180  # migrations + eight processes on a busy 2-core machine
READY_TIMEOUT = 240  # upload -> transcoded, 25 s of 1080p into the whole ladder
REFRESH_GRACE_SECONDS = 2  # the started stack's AUTH_REFRESH_REUSE_GRACE_SECONDS

# The admin endpoints the suite uses, in one place.
ADMIN_VIDEOS = "/api/admin/videos/"
ADMIN_UPLOAD = "/api/admin/videos/upload/"


# --- the stack ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    base_url: str  # the gateway, e.g. http://127.0.0.1:18000
    mail_url: str  # the dev mail sink's HTTP listing
    admin_email: str
    admin_password: str
    frontend_origin: str  # where the test page is served from (a configured CORS origin)
    frontend_url: str  # what email links point at (FRONTEND_URL of the stack)

    @property
    def frontend_port(self) -> int:
        return urlsplit(self.frontend_origin).port or 80


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_block() -> int:
    """A port base whose gateway, service, health and SMTP ports are all free."""
    offsets = (*range(8), 22, 25)  # 22: the stack's own NATS with per-service users
    bases = list(range(18000, 19900, 100))
    start = secrets.randbelow(len(bases))  # engineers running the suite at once spread out
    for base in bases[start:] + bases[:start]:
        if all(_port_free(base + o) for o in offsets):
            return base
    raise RuntimeError("no free port block between 18000 and 19900 for the e2e stack")


def _stack_log_tail(log_file: Path, lines: int = 60) -> str:
    """The end of the stack's log without the health probes' access lines."""
    with contextlib.suppress(OSError):
        text = log_file.read_text(errors="replace").splitlines()
        useful = [line for line in text if "/healthz" not in line and "/readyz" not in line]
        return "\n".join(useful[-lines:])
    return ""


def _wait_stack_healthy(launcher: subprocess.Popen, port_base: int, log_file: Path) -> None:
    deadline = time.monotonic() + STACK_START_TIMEOUT
    status = ""
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise RuntimeError(
                f"the stack launcher exited with {launcher.returncode}; its log "
                f"({log_file}) ends with:\n{_stack_log_tail(log_file)}"
            )
        check = subprocess.run(
            [sys.executable, "-m", "deploy.devstack", "status", "--port-base", str(port_base)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        status = check.stdout
        if check.returncode == 0:
            return
        time.sleep(1)
    raise RuntimeError(
        f"the stack was not healthy within {STACK_START_TIMEOUT}s:\n{status}\n"
        f"log ({log_file}) ends with:\n{_stack_log_tail(log_file)}"
    )


def _stop_launcher(launcher: subprocess.Popen) -> None:
    """SIGTERM to the launcher stops every process it started; kill its group if it hangs."""
    if launcher.poll() is None:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout=45)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait(timeout=10)


def _drop_service_users(env: dict[str, str]) -> None:
    """The stack made a PostgreSQL role per database and Redis ACL users for its prefix on
    the shared servers: remove them with the run's databases."""
    from deploy import privileges
    from videoflix_shared.db import drop_database

    for variable in privileges.DATABASE_URL_VARIABLE.values():
        with contextlib.suppress(Exception):
            drop_database(env[variable])
            privileges.drop_database_role(env[variable])
    privileges.drop_redis_users(env["REDIS_URL"], env["REDIS_KEY_PREFIX"])


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    run_id: str,
    make_database: Callable[[str], str],
    redis_prefix: str,
    nats_names: dict[str, str],
) -> Iterator[Stack]:
    if base_url := os.environ.get("E2E_BASE_URL"):
        yield _existing_stack(base_url.rstrip("/"))
        return

    port_base = _free_port_block()
    data_dir = tmp_path_factory.mktemp("e2e-stack")
    frontend_port = FRONTEND_PORT if _port_free(FRONTEND_PORT) else _free_alternative_port()
    origins = {f"http://127.0.0.1:{FRONTEND_PORT}", f"http://127.0.0.1:{frontend_port}"}
    # Names under the run's own prefixes but apart from the services' own test suites, which
    # share the run id: their tables, cache keys and durable consumers must not meet ours.
    subject_prefix = f"{nats_names['NATS_SUBJECT_PREFIX']}e2e."
    stream_prefix = f"{nats_names['NATS_STREAM_PREFIX']}E2E_"
    nats_url = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
    started = Stack(
        base_url=f"http://127.0.0.1:{port_base}",
        mail_url=f"http://127.0.0.1:{port_base + 7}",
        admin_email=f"e2e-admin-{run_id}@example.com",
        admin_password=f"Admin-{secrets.token_urlsafe(12)}-9",
        frontend_origin=f"http://127.0.0.1:{frontend_port}",
        frontend_url=f"http://127.0.0.1:{FRONTEND_PORT}",
    )
    overrides = {
        "VIDEOFLIX_PORT_BASE": str(port_base),
        "VIDEOFLIX_DATA_DIR": str(data_dir),
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "console",
        "AUTH_DATABASE_URL": make_database("e2e_auth"),
        "CATALOG_DATABASE_URL": make_database("e2e_catalog"),
        "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "REDIS_KEY_PREFIX": f"{redis_prefix}e2e:",
        "NATS_URL": nats_url,
        "NATS_SUBJECT_PREFIX": subject_prefix,
        "NATS_STREAM_PREFIX": stream_prefix,
        "JWKS_URL": f"http://127.0.0.1:{port_base + 1}/.well-known/jwks.json",
        "PUBLIC_BASE_URL": started.base_url,
        "FRONTEND_URL": started.frontend_url,
        "CORS_ALLOWED_ORIGINS": ",".join(sorted(origins)),
        "MEDIA_ROOT": str(data_dir / "media"),
        "AUTH_KEYS_DIR": str(data_dir / "keys"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port_base + 25),
        "MAIL_SINK_DIR": str(data_dir / "mail"),
        "ADMIN_EMAIL": started.admin_email,
        "ADMIN_PASSWORD": started.admin_password,
        # The whole suite logs in from 127.0.0.1: lift the per-address limits so they do not
        # decide which test runs last; the per-account limits (what the 429 tests prove)
        # keep their defaults.
        "AUTH_LOGIN_LIMIT_PER_IP": "1000",
        "AUTH_RESET_LIMIT_PER_IP": "1000",
        "AUTH_REGISTER_LIMIT_PER_IP": "1000",
        "AUTH_REFRESH_REUSE_GRACE_SECONDS": str(REFRESH_GRACE_SECONDS),
    }
    env = {k: v for k, v in os.environ.items() if k != "HTTP_PORT"} | overrides
    # The launcher runs the services' console scripts: they sit beside this interpreter
    # (the venv's bin), which is not on PATH when pytest is started without `uv run`.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    ARTIFACTS.mkdir(exist_ok=True)
    log_file = ARTIFACTS / "e2e-stack.log"
    with open(log_file, "wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "deploy.devstack", "up"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_stack_healthy(launcher, port_base, log_file)
        yield started
    finally:
        _stop_launcher(launcher)
        _drop_service_users(overrides)  # its NATS (streams included) lived in data_dir
        shutil.rmtree(data_dir, ignore_errors=True)


def _free_alternative_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _existing_stack(base_url: str) -> Stack:
    mail_url = os.environ.get("E2E_MAIL_URL")
    if not mail_url:
        port = urlsplit(base_url).port or 80
        mail_url = f"http://127.0.0.1:{port + 7}"
    email = os.environ.get("E2E_ADMIN_EMAIL") or os.environ.get("ADMIN_EMAIL")
    password = os.environ.get("E2E_ADMIN_PASSWORD") or os.environ.get("ADMIN_PASSWORD")
    if not (email and password):
        pytest.fail("E2E_BASE_URL is set: also set E2E_ADMIN_EMAIL and E2E_ADMIN_PASSWORD")
    frontend = f"http://127.0.0.1:{FRONTEND_PORT}"
    return Stack(
        base_url=base_url,
        mail_url=mail_url.rstrip("/"),
        admin_email=email,
        admin_password=password,
        frontend_origin=frontend,
        frontend_url=os.environ.get("E2E_FRONTEND_URL") or frontend,
    )


# --- journey steps, timed and listed in the terminal summary ----------------------------------

STEP_TIMINGS: list[tuple[str, str, float]] = []  # (test, step, seconds)


@contextlib.contextmanager
def step(test: str, name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    except BaseException:
        STEP_TIMINGS.append((test, f"{name}  <- FAILED", time.monotonic() - started))
        raise
    STEP_TIMINGS.append((test, name, time.monotonic() - started))


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


# --- HTTP helpers ---------------------------------------------------------------------------


def assert_error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    """The contract's error shape: JSON object whose values are strings or lists of strings."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and body, body
    for value in body.values():
        assert isinstance(value, str) or (
            isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        ), body
    return body


def set_cookies(response: httpx.Response) -> dict[str, Any]:
    """The response's Set-Cookie headers parsed, by cookie name (value and attributes)."""
    cookies: dict[str, Any] = {}
    for header in response.headers.get_list("set-cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        cookies.update(parsed)
    return cookies


def cookie_deleted(morsel: Any) -> bool:
    return morsel.value in ("", '""') or morsel["max-age"] == "0" or "1970" in morsel["expires"]


class Api:
    """An httpx client on the gateway, keeping cookies like a browser on the same site."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = httpx.Client(base_url=stack.base_url, timeout=30)

    def __getattr__(self, name: str) -> Any:  # get, post, request, cookies ... of the client
        return getattr(self.http, name)

    def csrf_headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.http.cookies.get("csrftoken") or ""}

    def register(self, email: str, password: str) -> httpx.Response:
        return self.http.post(
            "/api/register/",
            json={"email": email, "password": password, "confirmed_password": password},
        )

    def login(self, email: str, password: str) -> httpx.Response:
        return self.http.post("/api/login/", json={"email": email, "password": password})

    def login_ok(self, email: str, password: str) -> httpx.Response:
        response = self.login(email, password)
        assert response.status_code == 200, response.text
        return response

    def close(self) -> None:
        self.http.close()


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


# --- mail -----------------------------------------------------------------------------------


class Mailbox:
    """The dev mail sink's listing: GET /messages?to=<address>, newest first."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def messages(self, to: str) -> list[dict[str, Any]]:
        response = self.http.get("/messages", params={"to": to})
        response.raise_for_status()
        return response.json()

    def ids(self, to: str) -> set[str]:
        return {m["id"] for m in self.messages(to)}

    def wait_new(self, to: str, seen: set[str], *, timeout: float = 30) -> dict[str, Any]:
        """The newest message to `to` whose id is not in `seen` (polls until it arrives)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = [m for m in self.messages(to) if m["id"] not in seen]
            if fresh:
                return fresh[0]
            time.sleep(0.2)
        raise TimeoutError(f"no new email to {to} within {timeout}s")

    def assert_nothing_new(self, to: str, seen: set[str], *, wait: float = 2) -> None:
        time.sleep(wait)  # a negative: give a mail that should not exist the time to appear
        assert self.ids(to) <= seen, self.messages(to)[0]


def link_params(message: dict[str, Any], page: str) -> tuple[str, dict[str, str]]:
    """The emailed link to the frontend page `page`, and its uid / token query."""
    candidates = list(message.get("links") or [])
    candidates += re.findall(r"https?://[^\s\"'<>]+", message.get("text") or "")
    for link in candidates:
        parts = urlsplit(link.replace("&amp;", "&"))
        if parts.path.endswith(page):
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            assert {"uid", "token"} <= set(query), link
            return link, query
    raise AssertionError(f"no link to {page} in {json.dumps(message)[:1500]}")


@pytest.fixture(scope="session")
def mailbox(stack: Stack) -> Iterator[Mailbox]:
    box = Mailbox(stack.mail_url)
    yield box
    box.http.close()


# --- users ----------------------------------------------------------------------------------


@dataclass
class User:
    email: str
    password: str


def new_email(label: str) -> str:
    return f"e2e-{label}-{uuid.uuid4().hex[:10]}@example.com"


def strong_password() -> str:
    return f"Vf-{secrets.token_urlsafe(10)}-7q"


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


# --- media ----------------------------------------------------------------------------------


def generate_clip(path: Path, *, seconds: int, width: int, height: int) -> Path:
    """A test-pattern clip with a sine tone (video and audio), cheap to encode."""
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size={width}x{height}:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


@dataclass(frozen=True)
class Clip:
    path: Path
    seconds: float


JOURNEY_CLIP_SECONDS = 25


@pytest.fixture(scope="session")
def journey_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    path = tmp_path_factory.mktemp("clips") / "journey-1080p.mp4"
    generate_clip(path, seconds=JOURNEY_CLIP_SECONDS, width=1920, height=1080)
    return Clip(path, JOURNEY_CLIP_SECONDS)


# --- admin ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def admin_api(stack: Stack) -> Iterator[Api]:
    """The admin, logged in with cookies like the admin page (so writes carry X-CSRFToken)."""
    admin = Api(stack)
    admin.login_ok(stack.admin_email, stack.admin_password)
    yield admin
    admin.close()


def wait_for_status(admin: Api, video_id: Any, *, timeout: float = READY_TIMEOUT) -> dict:
    """Poll the admin API until the video is `ready`; fail at once when it is `failed`."""
    deadline = time.monotonic() + timeout
    video: dict = {}
    while time.monotonic() < deadline:
        response = admin.get(f"{ADMIN_VIDEOS}{video_id}/")
        assert response.status_code == 200, response.text
        video = response.json()
        if video["status"] == "ready":
            return video
        assert video["status"] != "failed", f"transcoding failed: {video}"
        time.sleep(1)
    raise TimeoutError(f"video {video_id} not ready within {timeout}s; last seen {video}")


@dataclass(frozen=True)
class PublishedVideo:
    id: Any
    title: str
    clip: Clip
    admin_view: dict[str, Any]


@pytest.fixture(scope="session")
def published_video(admin_api: Api, journey_clip: Clip) -> PublishedVideo:
    """The admin uploads the journey clip, it is transcoded and published (asserting each step).

    The journey test asks for it at its step; the streaming and browser tests reuse it so the
    expensive transcode happens once per run.
    """
    title = f"E2E journey {uuid.uuid4().hex[:6]}"
    with journey_clip.path.open("rb") as source:
        response = admin_api.post(
            ADMIN_UPLOAD,
            data={
                "title": title,
                "description": "A generated test pattern with a tone.",
                "category": "Documentary",
            },
            files={"file": ("journey.mp4", source, "video/mp4")},
            headers=admin_api.csrf_headers(),
            timeout=120,
        )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] in ("uploaded", "processing"), body
    video = wait_for_status(admin_api, body["id"])
    if not video.get("published", video.get("is_published", False)):
        published = admin_api.patch(
            f"{ADMIN_VIDEOS}{body['id']}/",
            json={"published": True},
            headers=admin_api.csrf_headers(),
        )
        assert published.status_code == 200, published.text
    wait_until_playable(admin_api.stack, body["id"])
    return PublishedVideo(id=body["id"], title=title, clip=journey_clip, admin_view=video)


def wait_until_playable(stack: Stack, video_id: Any, timeout: float = 10) -> None:
    """Streaming learns of a publication from catalog's announcement within moments: wait
    until it shows (the thumbnail turns public), so the steps after this play at once."""
    url = f"{stack.base_url}/api/video/{video_id}/thumbnail.jpg"
    deadline = time.monotonic() + timeout
    while httpx.get(url, timeout=10).status_code != 200:
        assert time.monotonic() < deadline, (
            f"video {video_id} not playable {timeout}s after publishing"
        )
        time.sleep(0.1)


# --- the frontend origin and the browser --------------------------------------------------------


class _FrontendHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the test page from web/ and the npm-installed hls.js at /vendor/hls.min.js."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(WEB_DIR), **kwargs)

    def translate_path(self, path: str) -> str:
        if urlsplit(path).path == "/vendor/hls.min.js":
            return str(HLS_JS)
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def frontend(stack: Stack) -> Iterator[str]:
    """The test page's origin (a CORS origin of the stack), served while the session runs."""
    if not HLS_JS.exists():
        pytest.fail(f"{HLS_JS} is missing: run `make install` (npm ci in tests/e2e)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", stack.frontend_port), _FrontendHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stack.frontend_origin
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
