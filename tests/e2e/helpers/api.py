"""Speaking the public API through the gateway: a cookie-keeping client (`Api`), the
contract's error shape and cookies, users, and the admin's upload-until-playable steps."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.helpers.media import Clip
from tests.e2e.helpers.stack import Stack

# The admin endpoints the suite uses, in one place.
ADMIN_VIDEOS = "/api/admin/videos/"
ADMIN_UPLOAD = "/api/admin/videos/upload/"
READY_TIMEOUT = 240  # upload -> transcoded, 25 s of 1080p into the whole ladder


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


def assert_error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    """The contract's error shape: JSON object whose values are strings or lists of strings."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert body, body
    for value in body.values():
        assert isinstance(value, str) or (
            isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        ), body
    return body


def set_cookies(response: httpx.Response) -> dict[str, Morsel[str]]:
    """The response's Set-Cookie headers parsed, by cookie name (value and attributes)."""
    cookies: dict[str, Morsel[str]] = {}
    for header in response.headers.get_list("set-cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        cookies.update(parsed)
    return cookies


def cookie_deleted(morsel: Morsel[str]) -> bool:
    return morsel.value in ("", '""') or morsel["max-age"] == "0" or "1970" in morsel["expires"]


@dataclass
class User:
    email: str
    password: str


def new_email(label: str) -> str:
    return f"e2e-{label}-{uuid.uuid4().hex[:10]}@example.com"


def strong_password() -> str:
    return f"Vf-{secrets.token_urlsafe(10)}-7q"


# --- the admin: upload, transcode, publish ----------------------------------------------------


@dataclass(frozen=True)
class PublishedVideo:
    id: Any
    title: str
    clip: Clip
    admin_view: dict[str, Any]


def upload(admin: Api, path: Path, form: dict[str, str]) -> dict[str, Any]:
    """Upload `path` as the admin page does (multipart, X-CSRFToken); the 202 body."""
    with path.open("rb") as source:
        response = admin.post(
            ADMIN_UPLOAD,
            data=form,
            files={"file": (path.name, source, "video/mp4")},
            headers=admin.csrf_headers(),
            timeout=120,
        )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] in ("uploaded", "processing"), body
    return body


def publish_clip(admin: Api, clip: Clip, title: str) -> PublishedVideo:
    """Upload the clip, wait until it is transcoded, publish it if it is a draft, and wait
    until streaming plays it (asserting each step)."""
    form = {
        "title": title,
        "description": "A generated test pattern with a tone.",
        "category": "Documentary",
    }
    body = upload(admin, clip.path, form)
    video = wait_for_status(admin, body["id"])
    if not video.get("published", video.get("is_published", False)):
        published = admin.patch(
            f"{ADMIN_VIDEOS}{body['id']}/", json={"published": True}, headers=admin.csrf_headers()
        )
        assert published.status_code == 200, published.text
    wait_until_playable(admin.stack, body["id"])
    return PublishedVideo(id=body["id"], title=title, clip=clip, admin_view=video)


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
