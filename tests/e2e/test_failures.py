"""Every failure case of the API contract, through the gateway: the right status, a JSON body
the frontend can flatten into messages, and nothing changed."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.helpers import (
    ADMIN_UPLOAD,
    ADMIN_VIDEOS,
    Api,
    Mailbox,
    PublishedVideo,
    Stack,
    User,
    assert_error_body,
    link_params,
    new_email,
    strong_password,
)

LOGIN_FAILED = {"detail": "Please check your input and try again."}


# --- conventions ---------------------------------------------------------------------------


def test_cors_preflight_from_the_frontend_origin_allows_credentials(stack: Stack) -> None:
    origin = stack.frontend_origin
    for path in ("/api/login/", "/api/logout/", "/api/video/"):
        response = httpx.options(
            f"{stack.base_url}{path}",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-csrftoken",
            },
        )
        assert response.status_code in (200, 204), (path, response.status_code, response.text)
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "x-csrftoken" in allowed
        assert "content-type" in allowed
        assert "POST" in response.headers["access-control-allow-methods"]

    actual = httpx.get(f"{stack.base_url}/api/video/", headers={"Origin": origin})
    assert actual.headers["access-control-allow-origin"] == origin, "never *"
    assert actual.headers["access-control-allow-credentials"] == "true"


def test_cors_is_not_granted_to_an_unknown_origin(stack: Stack) -> None:
    response = httpx.options(
        f"{stack.base_url}/api/login/",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers
    assert response.status_code < 500


def test_unknown_api_path_answers_json_404(api: Api) -> None:
    assert_error_body(api.get("/api/no-such-endpoint/"), 404)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/user", 401),
        ("GET", "/api/video", 401),
        ("POST", "/api/login", 400),
        ("POST", "/api/password_reset", 400),
        ("POST", "/api/token/refresh", 400),
    ],
)
def test_paths_without_trailing_slash_are_served(
    api: Api, method: str, path: str, expected: int
) -> None:
    """Served directly or redirected with the method kept (307/308), never a 404."""
    first = api.request(method, path, json={})
    assert first.status_code in (expected, 307, 308), (first.status_code, first.text)
    final = api.request(method, path, json={}, follow_redirects=True)
    assert_error_body(final, expected)


def test_a_wrong_method_answers_json(api: Api) -> None:
    assert_error_body(api.delete("/api/login/"), 405)


# --- registration and activation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address", "password": "Vf-Strong-Pass-42"}, "email"),
        ({"email": "@example.com", "password": "Vf-Strong-Pass-42"}, "email"),
        ({"email": "OK@example.com", "password": "short"}, "password"),
        ({"email": "OK@example.com", "password": "password123"}, "password"),
    ],
)
def test_register_rejects_bad_fields(api: Api, body: dict, field: str) -> None:
    body = {**body, "confirmed_password": body["password"]}
    errors = assert_error_body(api.post("/api/register/", json=body), 400)
    assert field in errors, errors


def test_register_rejects_passwords_that_differ(api: Api, mailbox: Mailbox) -> None:
    email = new_email("differ")
    response = api.post(
        "/api/register/",
        json={"email": email, "password": strong_password(), "confirmed_password": "x" * 12},
    )
    assert_error_body(response, 400)
    mailbox.assert_nothing_new(email, set(), wait=1)


@pytest.mark.parametrize("body", [{}, {"email": 5, "password": [], "confirmed_password": None}])
def test_register_rejects_missing_or_mistyped_fields(api: Api, body: dict) -> None:
    assert_error_body(api.post("/api/register/", json=body), 400)


def test_register_rejects_a_body_that_is_not_json(api: Api) -> None:
    response = api.post(
        "/api/register/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error_body(response, 400)


def test_registering_a_known_address_answers_the_same_and_tells_its_owner(
    api: Api, active_user: User, mailbox: Mailbox
) -> None:
    fresh = api.register(new_email("fresh"), strong_password())
    seen = mailbox.ids(active_user.email)
    again = api.register(active_user.email, strong_password())
    assert again.status_code == fresh.status_code == 201
    assert set(again.json()) == set(fresh.json())
    assert again.json()["detail"] == fresh.json()["detail"]
    message = mailbox.wait_new(active_user.email, seen)
    assert "activate.html" not in " ".join(message.get("links") or [])
    # the account and its password are untouched
    Api(api.stack).login_ok(active_user.email, active_user.password)


def test_activation_link_is_single_use_and_checked(
    api: Api, mailbox: Mailbox, api_factory: Callable[[], Api]
) -> None:
    email, password = new_email("activate"), strong_password()
    seen = mailbox.ids(email)
    assert api.register(email, password).status_code == 201
    _, query = link_params(mailbox.wait_new(email, seen), "/pages/auth/activate.html")
    uid, token = query["uid"], query["token"]

    tampered = token[:-2] + ("aa" if not token.endswith("aa") else "bb")
    other_uid = base64.urlsafe_b64encode(b"999999999").decode().rstrip("=")
    for bad in (
        f"/api/activate/{uid}/{tampered}/",
        f"/api/activate/{other_uid}/{token}/",
        f"/api/activate/!!!/{token}/",
        f"/api/activate/{uid}/x/",
    ):
        body = assert_error_body(api.get(bad), 400)
        assert "message" in body, body
    # an inactive account cannot log in (and learns nothing about why)
    inactive = api.login(email, password)
    assert inactive.status_code == 400
    assert inactive.json() == LOGIN_FAILED

    assert api.get(f"/api/activate/{uid}/{token}/").status_code == 200
    used = api.get(f"/api/activate/{uid}/{token}/")
    assert "message" in assert_error_body(used, 400)
    api_factory().login_ok(email, password)


# --- login, logout, refresh, user ----------------------------------------------------------


def test_login_failures_all_look_alike(api: Api, active_user: User) -> None:
    for body in (
        {"email": new_email("nobody"), "password": strong_password()},
        {"email": active_user.email, "password": "Wrong-password-123"},
    ):
        response = api.post("/api/login/", json=body)
        assert response.status_code == 400
        assert response.json() == LOGIN_FAILED
        assert "access_token" not in response.headers.get("set-cookie", "")
    assert_error_body(api.post("/api/login/", json={"email": "x"}), 400)


def test_logout_without_refresh_cookie_is_400(api: Api) -> None:
    assert_error_body(api.post("/api/logout/"), 400)


def test_logout_with_wrong_csrf_header_is_403_and_keeps_the_session(
    api: Api, active_user: User
) -> None:
    api.login_ok(active_user.email, active_user.password)
    assert_error_body(api.post("/api/logout/", headers={"X-CSRFToken": "forged"}), 403)
    assert_error_body(api.post("/api/logout/"), 403)
    assert api.post("/api/token/refresh/").status_code == 200, "the session is untouched"


def test_refresh_without_cookie_is_400_and_with_a_bad_one_401(stack: Stack) -> None:
    assert_error_body(httpx.post(f"{stack.base_url}/api/token/refresh/"), 400)
    for bad in ("garbage", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"):
        response = httpx.post(
            f"{stack.base_url}/api/token/refresh/", cookies={"refresh_token": bad}
        )
        assert_error_body(response, 401)


def test_an_access_token_is_not_a_refresh_token(api: Api, active_user: User) -> None:
    api.login_ok(active_user.email, active_user.password)
    access = api.cookies.get("access_token")
    response = httpx.post(
        f"{api.stack.base_url}/api/token/refresh/", cookies={"refresh_token": access}
    )
    assert_error_body(response, 401)


def test_user_endpoint_needs_a_valid_token(stack: Stack) -> None:
    assert_error_body(httpx.get(f"{stack.base_url}/api/user/"), 401)
    bad_bearer = httpx.get(
        f"{stack.base_url}/api/user/", headers={"Authorization": "Bearer not.a.jwt"}
    )
    assert_error_body(bad_bearer, 401)
    bad_cookie = httpx.get(f"{stack.base_url}/api/user/", cookies={"access_token": "x.y.z"})
    assert_error_body(bad_cookie, 401)


def test_bearer_access_token_works_without_csrf(api: Api, active_user: User) -> None:
    api.login_ok(active_user.email, active_user.password)
    token = api.cookies.get("access_token")
    response = httpx.get(
        f"{api.stack.base_url}/api/user/", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json()["email"] == active_user.email


# --- password reset ------------------------------------------------------------------------


def test_password_reset_for_unknown_address_answers_the_same_and_sends_nothing(
    api: Api, mailbox: Mailbox
) -> None:
    email = new_email("unknown")
    response = api.post("/api/password_reset/", json={"email": email})
    assert response.status_code == 200
    assert response.json() == {"detail": "An email has been sent to reset your password."}
    mailbox.assert_nothing_new(email, set())


def test_password_reset_for_an_inactive_account_sends_nothing(api: Api, mailbox: Mailbox) -> None:
    email = new_email("inactive")
    seen = mailbox.ids(email)
    assert api.register(email, strong_password()).status_code == 201
    seen.add(mailbox.wait_new(email, seen)["id"])  # the activation email
    response = api.post("/api/password_reset/", json={"email": email})
    assert response.status_code == 200
    assert response.json() == {"detail": "An email has been sent to reset your password."}
    mailbox.assert_nothing_new(email, seen)


def test_password_reset_rejects_a_malformed_address(api: Api) -> None:
    assert_error_body(api.post("/api/password_reset/", json={"email": "nope"}), 400)
    assert_error_body(api.post("/api/password_reset/", json={}), 400)


def test_password_confirm_rejects_mismatch_weak_and_bad_links(
    api: Api, active_user: User, mailbox: Mailbox
) -> None:
    seen = mailbox.ids(active_user.email)
    assert api.post("/api/password_reset/", json={"email": active_user.email}).status_code == 200
    _, query = link_params(
        mailbox.wait_new(active_user.email, seen), "/pages/auth/confirm_password.html"
    )
    url = f"/api/password_confirm/{query['uid']}/{query['token']}/"
    new = strong_password()

    assert_error_body(api.post(url, json={"new_password": new, "confirm_password": new + "x"}), 400)
    assert_error_body(api.post(url, json={"new_password": "abc", "confirm_password": "abc"}), 400)
    assert_error_body(api.post(url, json={}), 400)
    bad_token = f"/api/password_confirm/{query['uid']}/{query['token'][:-3]}xyz/"
    assert_error_body(api.post(bad_token, json={"new_password": new, "confirm_password": new}), 400)
    Api(api.stack).login_ok(active_user.email, active_user.password)  # nothing changed yet

    assert api.post(url, json={"new_password": new, "confirm_password": new}).status_code == 200
    again = strong_password()
    used = api.post(url, json={"new_password": again, "confirm_password": again})
    assert_error_body(used, 400)
    Api(api.stack).login_ok(active_user.email, new)


# --- videos and streaming ------------------------------------------------------------------


def test_video_list_needs_authentication(stack: Stack) -> None:
    assert_error_body(httpx.get(f"{stack.base_url}/api/video/"), 401)


def test_streaming_needs_authentication(stack: Stack, published_video: PublishedVideo) -> None:
    base = f"{stack.base_url}/api/video/{published_video.id}"
    for path in ("480p/index.m3u8", "480p/seg_00000.ts", "master.m3u8"):
        assert_error_body(httpx.get(f"{base}/{path}"), 401)
        bad = httpx.get(f"{base}/{path}", cookies={"access_token": "forged.token.value"})
        assert_error_body(bad, 401)


def test_streaming_unknown_video_rendition_or_segment_is_404(
    api: Api, active_user: User, published_video: PublishedVideo
) -> None:
    api.login_ok(active_user.email, active_user.password)
    known = f"/api/video/{published_video.id}"
    for path in (
        "/api/video/999999999/480p/index.m3u8",
        "/api/video/00000000-0000-0000-0000-000000000000/480p/index.m3u8",
        f"{known}/1440p/index.m3u8",
        f"{known}/480p/seg_99999.ts",
        f"{known}/480p/../../../etc/passwd",
        f"{known}/480p/%2e%2e%2f%2e%2e%2fsource.mp4",
        "/api/video/999999999/thumbnail.jpg",
    ):
        response = api.get(path)
        assert response.status_code == 404, (path, response.status_code, response.text[:200])
        assert response.headers["content-type"].startswith("application/json"), path


def test_non_video_upload_is_rejected_and_nothing_is_listed(admin_api: Api, tmp_path) -> None:
    before = admin_api.get(ADMIN_VIDEOS).json()
    fake = tmp_path / "notes.mp4"
    fake.write_bytes(b"this is plain text pretending to be a video\n" * 200)
    for name, content in (("notes.mp4", fake.read_bytes()), ("empty.mp4", b"")):
        response = admin_api.post(
            ADMIN_UPLOAD,
            data={"title": "not a video", "description": "", "category": "Drama"},
            files={"file": (name, content, "video/mp4")},
            headers=admin_api.csrf_headers(),
        )
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert_error_body(response, response.status_code)
    assert admin_api.get(ADMIN_VIDEOS).json() == before


def test_admin_api_refuses_a_regular_user(api: Api, active_user: User, stack: Stack) -> None:
    api.login_ok(active_user.email, active_user.password)
    assert_error_body(api.get(ADMIN_VIDEOS), 403)
    response = api.post(
        ADMIN_UPLOAD,
        data={"title": "sneaky", "description": "", "category": "Drama"},
        files={"file": ("x.mp4", b"\x00" * 4096, "video/mp4")},
        headers=api.csrf_headers(),
    )
    assert_error_body(response, 403)
    assert_error_body(httpx.get(f"{stack.base_url}{ADMIN_VIDEOS}"), 401)


# --- rate limits -----------------------------------------------------------------------------


def test_login_is_rate_limited_per_account_with_retry_after(api: Api) -> None:
    email = new_email("bruteforce")
    statuses = []
    for _ in range(30):
        response = api.login(email, "Wrong-password-123")
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {400}, statuses
    assert int(response.headers["retry-after"]) > 0
    assert_error_body(response, 429)


def test_password_reset_is_rate_limited_per_address(api: Api) -> None:
    email = new_email("resetflood")
    statuses = []
    for _ in range(20):
        response = api.post("/api/password_reset/", json={"email": email})
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {200}, statuses
    assert int(response.headers["retry-after"]) > 0
    assert_error_body(response, 429)
