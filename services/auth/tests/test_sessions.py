"""Login, GET /api/user/, token refresh with rotation and reuse detection, logout."""

from __future__ import annotations

import asyncio
import hashlib
import time

import jwt
import pytest

from videoflix_shared.security import StaticKeySource, TokenVerifier, keys_from_jwks

from .conftest import client_for

LOGIN_FAILED = {"detail": "Please check your input and try again."}
LOGOUT_OK = {
    "detail": "Logout successful! All tokens will be deleted. Refresh token is now invalid."
}


def set_cookies(response) -> dict[str, str]:
    """Set-Cookie headers of a response by cookie name (the raw header text)."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


async def test_login_answers_contract_body_and_sets_three_cookies(api, db):
    email = await api.register_active()
    response = await api.login(email)

    assert response.status_code == 200
    assert response.json() == {
        "detail": "Login successful",
        "user": {"id": db.user(email)["id"], "username": email},
    }
    cookies = set_cookies(response)
    assert set(cookies) == {"access_token", "refresh_token", "csrftoken"}
    for name, header in cookies.items():
        lowered = header.lower()
        assert "samesite=lax" in lowered
        assert "path=/" in lowered
        assert "secure" not in lowered  # COOKIE_SECURE is off in tests
        assert ("httponly" in lowered) == (name != "csrftoken")
    assert "max-age=1800" in cookies["access_token"].lower()
    assert "max-age=604800" in cookies["refresh_token"].lower()


async def test_cookies_are_secure_when_configured(start_app):
    async with start_app(COOKIE_SECURE="true") as (_, secure_api):
        email = await secure_api.register_active()
        response = await secure_api.login(email)
    cookies = set_cookies(response)
    assert len(cookies) == 3
    assert all("; secure" in header.lower() for header in cookies.values())


@pytest.mark.usefixtures("db")
async def test_login_failures_are_indistinguishable(api):
    active = await api.register_active()
    inactive = api.new_email()
    await api.register(inactive)

    answers = [
        await api.login(api.new_email("unknown")),
        await api.login(active, "Wrong-Password-1"),
        await api.login(inactive),
        await api.login("not-an-address"),
    ]

    for response in answers:
        assert response.status_code == 400
        assert response.json() == LOGIN_FAILED
        assert "set-cookie" not in response.headers


async def test_login_accepts_address_in_any_case(api):
    email = await api.register_active()
    assert (await api.login(f"  {email.upper()} ")).status_code == 200


async def test_user_endpoint_with_cookie_and_with_bearer(api, db):
    email = await api.logged_in()
    user = db.user(email)

    by_cookie = await api.client.get("/api/user/")
    assert by_cookie.status_code == 200
    body = by_cookie.json()
    assert {k: body[k] for k in ("id", "email", "is_admin")} == {
        "id": user["id"],
        "email": email,
        "is_admin": False,
    }
    assert body["date_joined"]

    token = api.client.cookies["access_token"]
    api.client.cookies.clear()
    assert (await api.client.get("/api/user/")).status_code == 401
    by_bearer = await api.client.get("/api/user/", headers={"Authorization": f"Bearer {token}"})
    assert by_bearer.status_code == 200
    assert by_bearer.json() == body
    bad = await api.client.get("/api/user/", headers={"Authorization": f"Bearer {token}x"})
    assert bad.status_code == 401


async def test_access_token_carries_exact_claims_and_verifies_via_jwks(api, db, auth_app):
    email = await api.logged_in()
    token = api.client.cookies["access_token"]
    jwks = (await api.client.get("/.well-known/jwks.json")).json()
    alias = (await api.client.get("/api/auth/jwks/")).json()
    assert alias == jwks

    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"sub", "email", "is_admin", "iat", "exp", "iss", "aud", "jti"}
    assert claims["sub"] == str(db.user(email)["id"])
    assert (claims["email"], claims["is_admin"]) == (email, False)
    assert claims["exp"] - claims["iat"] == 1800
    assert abs(claims["iat"] - time.time()) < 60

    settings = auth_app.state.settings
    verifier = TokenVerifier(
        StaticKeySource(keys_from_jwks(jwks)),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    principal = await verifier.verify(token)
    assert principal.user_id == int(claims["sub"])
    assert principal.email == email


async def test_refresh_rotates_both_tokens(api):
    await api.logged_in()
    old_access = api.client.cookies["access_token"]
    old_refresh = api.client.cookies["refresh_token"]
    csrf = api.client.cookies["csrftoken"]

    response = await api.client.post("/api/token/refresh/")

    assert response.status_code == 200
    assert response.json() == {"detail": "Token refreshed"}
    assert "access" not in response.text
    assert old_refresh not in response.text
    cookies = set_cookies(response)
    assert {"access_token", "refresh_token"} <= set(cookies)
    assert api.client.cookies["refresh_token"] != old_refresh
    assert api.client.cookies["access_token"] != old_access
    assert api.client.cookies["csrftoken"] == csrf
    assert (await api.client.get("/api/user/")).status_code == 200
    # The rotated token works in turn.
    assert (await api.client.post("/api/token/refresh/")).status_code == 200


async def test_refresh_token_reuse_revokes_family(start_app):
    async with start_app(AUTH_REFRESH_REUSE_GRACE_SECONDS=1) as (_, api):
        await api.logged_in()
        stolen = api.client.cookies["refresh_token"]
        assert (await api.client.post("/api/token/refresh/")).status_code == 200
        legitimate = api.client.cookies["refresh_token"]
        await asyncio.sleep(1.2)  # past the reuse grace: a replay is a stolen copy

        # The thief replays the old token: refused, and the whole session family is revoked.
        api.client.cookies.set("refresh_token", stolen)
        reuse = await api.client.post("/api/token/refresh/")
        assert reuse.status_code == 401
        assert reuse.json() == {"detail": "Refresh token is invalid, expired or revoked."}

        api.client.cookies.set("refresh_token", legitimate)
        assert (await api.client.post("/api/token/refresh/")).status_code == 401


async def test_refresh_token_presented_again_within_grace_gets_a_working_pair(auth_app, api):
    await api.logged_in()
    first = api.client.cookies["refresh_token"]

    async def refresh_with(refresh_token: str):
        async with client_for(auth_app) as tab:
            return await tab.post(
                "/api/token/refresh/", headers={"Cookie": f"refresh_token={refresh_token}"}
            )

    rotated = await refresh_with(first)
    assert rotated.status_code == 200
    # A second tab still holding the old cookie, a moment later.
    again = await refresh_with(first)
    assert again.status_code == 200
    successor, sibling = rotated.cookies["refresh_token"], again.cookies["refresh_token"]
    assert len({first, successor, sibling}) == 3

    # The session survives: both successors work (and rotate in turn).
    for token in (successor, sibling):
        response = await refresh_with(token)
        assert response.status_code == 200
        access = response.cookies["access_token"]
        me = await api.client.get("/api/user/", headers={"Authorization": f"Bearer {access}"})
        assert me.status_code == 200


async def test_two_refreshes_at_the_same_moment_both_succeed(auth_app, api):
    await api.logged_in()
    cookie = api.client.cookies["refresh_token"]

    async def post_with(path: str, refresh_token: str):
        # A tab of its own (no shared cookie jar), holding only this refresh cookie.
        async with client_for(auth_app) as tab:
            return await tab.post(path, headers={"Cookie": f"refresh_token={refresh_token}"})

    results = await asyncio.gather(*(post_with("/api/token/refresh/", cookie) for _ in range(2)))

    assert [r.status_code for r in results] == [200, 200]
    new_tokens = {r.cookies["refresh_token"] for r in results}
    assert len(new_tokens) == 2
    assert cookie not in new_tokens
    for response in results:
        access = response.cookies["access_token"]
        me = await api.client.get("/api/user/", headers={"Authorization": f"Bearer {access}"})
        assert me.status_code == 200
    for token in new_tokens:
        assert (await post_with("/api/token/refresh/", token)).status_code == 200


async def test_refresh_within_grace_of_a_logged_out_session_is_refused(api):
    await api.logged_in()
    first = api.client.cookies["refresh_token"]
    assert (await api.client.post("/api/token/refresh/")).status_code == 200
    csrf = api.client.cookies["csrftoken"]
    assert (await api.client.post("/api/logout/", headers={"X-CSRFToken": csrf})).status_code == 200
    api.client.cookies.set("refresh_token", first)
    assert (await api.client.post("/api/token/refresh/")).status_code == 401


async def test_refresh_without_cookie_is_400_and_with_garbage_401(api):
    response = await api.client.post("/api/token/refresh/")
    assert response.status_code == 400
    assert "detail" in response.json()
    api.client.cookies.set("refresh_token", "not-a-token")
    assert (await api.client.post("/api/token/refresh/")).status_code == 401


async def test_expired_refresh_token_is_refused(api, db):
    email = await api.logged_in()
    db.query(
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE user_id = %s",
        db.user(email)["id"],
    )
    assert (await api.client.post("/api/token/refresh/")).status_code == 401


async def test_logout_revokes_refresh_token_and_deletes_cookies(api):
    await api.logged_in()
    refresh_token = api.client.cookies["refresh_token"]
    csrf = api.client.cookies["csrftoken"]
    # The access token may have expired already: logout needs only refresh + CSRF.
    api.client.cookies.delete("access_token")

    response = await api.client.post("/api/logout/", headers={"X-CSRFToken": csrf})

    assert response.status_code == 200
    assert response.json() == LOGOUT_OK
    cookies = set_cookies(response)
    assert set(cookies) == {"access_token", "refresh_token", "csrftoken"}
    assert all("max-age=0" in header.lower() for header in cookies.values())
    api.client.cookies.set("refresh_token", refresh_token)
    assert (await api.client.post("/api/token/refresh/")).status_code == 401


async def test_logout_without_refresh_cookie_is_400(api):
    await api.logged_in()
    csrf = api.client.cookies["csrftoken"]
    api.client.cookies.delete("refresh_token")
    response = await api.client.post("/api/logout/", headers={"X-CSRFToken": csrf})
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize("header", [None, "wrong-token", ""])
async def test_logout_with_csrf_mismatch_is_403_and_keeps_session(api, header):
    await api.logged_in()
    headers = {"X-CSRFToken": header} if header is not None else {}
    response = await api.client.post("/api/logout/", headers=headers)
    assert response.status_code == 403
    assert (await api.client.post("/api/token/refresh/")).status_code == 200


async def test_frontend_origin_gets_credentialed_cors_on_login(api):
    origin = "http://127.0.0.1:5500"
    preflight = await api.client.options(
        "/api/login/",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert preflight.headers["access-control-allow-credentials"] == "true"
    email = await api.register_active()
    response = await api.client.post(
        "/api/login/",
        json={"email": email, "password": api.password},
        headers={"Origin": origin},
    )
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_refresh_and_link_tokens_are_stored_only_as_digests(api, db):
    email = await api.logged_in()
    refresh_token = api.client.cookies["refresh_token"]
    _, activation_token = api.activation_link(email)
    user_id = db.user(email)["id"]

    stored_refresh = [
        row[0]
        for row in db.query("SELECT token_hash FROM refresh_tokens WHERE user_id = %s", user_id)
    ]
    stored_links = [
        row[0] for row in db.query("SELECT token_hash FROM link_tokens WHERE user_id = %s", user_id)
    ]
    assert stored_refresh == [hashlib.sha256(refresh_token.encode()).hexdigest()]
    assert stored_links == [hashlib.sha256(activation_token.encode()).hexdigest()]
    dump = str(db.query("SELECT * FROM refresh_tokens")) + str(
        db.query("SELECT * FROM link_tokens")
    )
    assert refresh_token not in dump
    assert activation_token not in dump
