"""The shared access-token verifier: accepts only what auth issues, rejects every forgery."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter

from videoflix_shared.app import create_service_app
from videoflix_shared.security import (
    Admin,
    Authenticated,
    InvalidToken,
    JwksKeySource,
    StaticKeySource,
    TokenVerifier,
    keys_from_jwks,
)
from videoflix_shared.settings import CommonSettings
from videoflix_testing.plugin import ServerThread
from videoflix_testing.tokens import TestTokenIssuer


@pytest.fixture(scope="module")
def issuer() -> TestTokenIssuer:
    return TestTokenIssuer()


@pytest.fixture
def verifier(issuer: TestTokenIssuer) -> TokenVerifier:
    keys = StaticKeySource(keys_from_jwks(issuer.jwks()))
    return TokenVerifier(keys, issuer=issuer.issuer, audience=issuer.audience)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_valid_token_gives_principal(verifier, issuer):
    principal = await verifier.verify(issuer.token(user_id=7, email="a@b.c", is_admin=True))
    assert (principal.user_id, principal.email, principal.is_admin) == (7, "a@b.c", True)


async def test_alg_none_is_rejected(verifier, issuer):
    claims = jwt.decode(issuer.token(), options={"verify_signature": False})
    forged = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': issuer.kid})}.{_b64(claims)}."
    with pytest.raises(InvalidToken):
        await verifier.verify(forged)


async def test_hs256_signed_with_the_public_key_is_rejected(verifier, issuer):
    claims = jwt.decode(issuer.token(), options={"verify_signature": False})
    public_pem = issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.kid}
    import hashlib
    import hmac

    signing_input = f"{_b64(header)}.{_b64(claims)}"
    sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match="algorithm"):
        await verifier.verify(forged)


async def test_expired_token_is_rejected(verifier, issuer):
    with pytest.raises(InvalidToken):
        await verifier.verify(issuer.token(ttl=-120))  # beyond the leeway


@pytest.mark.parametrize("claim", ["aud", "iss"])
async def test_wrong_audience_or_issuer_is_rejected(verifier, issuer, claim):
    with pytest.raises(InvalidToken):
        await verifier.verify(issuer.token(**{claim: "someone-else"}))


async def test_unknown_kid_is_rejected(verifier, issuer):
    other = TestTokenIssuer(issuer=issuer.issuer, audience=issuer.audience)
    with pytest.raises(InvalidToken, match="unknown key"):
        await verifier.verify(other.token())


async def test_tampered_payload_is_rejected(verifier, issuer):
    header, payload, sig = issuer.token(is_admin=False).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["is_admin"] = True
    with pytest.raises(InvalidToken):
        await verifier.verify(f"{header}.{_b64(claims)}.{sig}")


async def test_missing_required_claim_is_rejected(verifier, issuer):
    token = jwt.encode(
        {"sub": "1", "exp": int(time.time()) + 60, "iss": issuer.issuer, "aud": issuer.audience},
        issuer.private_key,
        algorithm="RS256",
        headers={"kid": issuer.kid},
    )
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


async def test_garbage_is_rejected(verifier):
    for garbage in ("", "abc", "a.b.c", "x" * 5000):
        with pytest.raises(InvalidToken):
            await verifier.verify(garbage)


async def test_jwks_source_refetches_for_a_new_kid_at_most_once_per_interval(issuer):
    rotated = TestTokenIssuer(issuer=issuer.issuer, audience=issuer.audience)
    served = {"issuer": issuer, "fetches": 0}

    async def app(scope, _receive, send):
        if scope["type"] != "http":
            return
        served["fetches"] += 1
        body = json.dumps(served["issuer"].jwks()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    with ServerThread(app) as server:
        source = JwksKeySource(f"{server.url}/jwks", min_refetch_seconds=60)
        verifier = TokenVerifier(source, issuer=issuer.issuer, audience=issuer.audience)
        await verifier.verify(issuer.token())
        served["issuer"] = rotated
        with pytest.raises(InvalidToken):  # within the interval: no refetch for the new kid
            await verifier.verify(rotated.token())
        assert served["fetches"] == 1
        source.min_refetch_seconds = 0
        assert (await verifier.verify(rotated.token())).user_id == 1
        assert served["fetches"] == 2


async def test_cached_keys_keep_working_when_jwks_is_down(issuer):
    async def app(scope, _receive, send):
        if scope["type"] != "http":
            return
        body = json.dumps(issuer.jwks()).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with ServerThread(app) as server:
        source = JwksKeySource(f"{server.url}/jwks", min_refetch_seconds=0)
        await source.check()
    # the JWKS server is gone now
    verifier = TokenVerifier(source, issuer=issuer.issuer, audience=issuer.audience)
    assert (await verifier.verify(issuer.token(user_id=3))).user_id == 3


# --- the FastAPI dependencies ------------------------------------------------------------


@pytest.fixture
async def api(issuer):
    router = APIRouter()

    @router.get("/api/me/")
    async def me(p: Authenticated) -> dict:
        return {"id": p.user_id, "cookie": p.via_cookie}

    @router.post("/api/change/")
    async def change(_: Authenticated) -> dict:
        return {"ok": True}

    @router.post("/api/admin/thing/")
    async def admin(_: Admin) -> dict:
        return {"ok": True}

    app = create_service_app(service="t", settings=CommonSettings(), routers=[router])
    app.state.token_verifier = TokenVerifier(
        StaticKeySource(keys_from_jwks(issuer.jwks())),
        issuer=issuer.issuer,
        audience=issuer.audience,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_no_token_is_401_json(api):
    r = await api.get("/api/me/")
    assert r.status_code == 401
    assert "detail" in r.json()


async def test_cookie_and_bearer_both_authenticate(api, issuer):
    assert (
        await api.get("/api/me/", cookies={"access_token": issuer.token(user_id=5)})
    ).json() == {"id": 5, "cookie": True}
    r = await api.get("/api/me/", headers={"Authorization": f"Bearer {issuer.token(user_id=6)}"})
    assert r.json() == {"id": 6, "cookie": False}


async def test_invalid_token_is_401(api, issuer):
    r = await api.get("/api/me/", cookies={"access_token": issuer.token(ttl=-120)})
    assert r.status_code == 401


async def test_cookie_auth_unsafe_method_needs_matching_csrf_header(api, issuer):
    cookies = {"access_token": issuer.token(), "csrftoken": "abc123"}
    assert (await api.post("/api/change/", cookies=cookies)).status_code == 403
    assert (
        await api.post("/api/change/", cookies=cookies, headers={"X-CSRFToken": "wrong"})
    ).status_code == 403
    assert (
        await api.post("/api/change/", cookies=cookies, headers={"X-CSRFToken": "abc123"})
    ).status_code == 200


async def test_bearer_auth_needs_no_csrf(api, issuer):
    r = await api.post("/api/change/", headers={"Authorization": f"Bearer {issuer.token()}"})
    assert r.status_code == 200


async def test_admin_route_needs_admin_claim(api, issuer):
    headers = {"Authorization": f"Bearer {issuer.token(is_admin=False)}"}
    assert (await api.post("/api/admin/thing/", headers=headers)).status_code == 403
    headers = {"Authorization": f"Bearer {issuer.token(is_admin=True)}"}
    assert (await api.post("/api/admin/thing/", headers=headers)).status_code == 200


# --- clock skew and key removal ------------------------------------------------------------


async def test_clock_skew_within_the_leeway_is_tolerated_on_exp_iat_and_nbf(verifier, issuer):
    """auth's clock a little ahead (iat, nbf in our future) or ours a little ahead (exp
    just past): accepted within the default 30 s leeway."""
    now = int(time.time())
    ahead = issuer.token(iat=now + 20, nbf=now + 20, exp=now + 600)
    assert (await verifier.verify(ahead)).user_id == 1
    assert (await verifier.verify(issuer.token(ttl=-20))).user_id == 1


async def test_clock_skew_beyond_the_leeway_is_refused(issuer):
    keys = StaticKeySource(keys_from_jwks(issuer.jwks()))
    strict = TokenVerifier(keys, issuer=issuer.issuer, audience=issuer.audience, leeway_seconds=5)
    now = int(time.time())
    for token in (
        issuer.token(ttl=-20),
        issuer.token(nbf=now + 60),
        issuer.token(iat=now + 60),
    ):
        with pytest.raises(InvalidToken):
            await strict.verify(token)


def test_leeway_and_key_age_are_settings():
    settings = CommonSettings(JWT_LEEWAY_SECONDS=7, JWKS_MAX_AGE_SECONDS=42)
    assert (settings.jwt_leeway_seconds, settings.jwks_max_age_seconds) == (7, 42)
    assert CommonSettings().jwt_leeway_seconds == 30
    source = JwksKeySource.from_settings(settings)
    assert source.max_age_seconds == 42


async def test_key_removed_from_the_jwks_is_refused_within_the_max_age(issuer):
    """auth drops a key (compromised, or rotated out): a token signed with it, even one
    verified and cached before, is refused once the key set is max_age old."""
    rotated = TestTokenIssuer(issuer=issuer.issuer, audience=issuer.audience)
    served = {"issuers": [issuer, rotated]}

    async def app(scope, _receive, send):
        if scope["type"] != "http":
            return
        keys = [k for i in served["issuers"] for k in i.jwks()["keys"]]
        body = json.dumps({"keys": keys}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with ServerThread(app) as server:
        source = JwksKeySource(f"{server.url}/jwks", min_refetch_seconds=0.2, max_age_seconds=1)
        verifier = TokenVerifier(source, issuer=issuer.issuer, audience=issuer.audience)
        old_token = issuer.token(user_id=5)
        assert (await verifier.verify(old_token)).user_id == 5  # now cached too
        served["issuers"] = [rotated]  # the old key is removed from the JWKS
        removed_at = time.monotonic()
        while True:
            try:
                await verifier.verify(old_token)
            except InvalidToken:
                break
            assert time.monotonic() - removed_at < 1.5, "removed key still trusted"
            await asyncio.sleep(0.05)
        assert (await verifier.verify(rotated.token(user_id=6))).user_id == 6


async def test_keys_keep_working_while_the_jwks_is_down_after_their_max_age(issuer):
    state = {"up": True}

    async def app(scope, _receive, send):
        if scope["type"] != "http":
            return
        status = 200 if state["up"] else 503
        body = json.dumps(issuer.jwks()).encode() if state["up"] else b"down"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with ServerThread(app) as server:
        source = JwksKeySource(f"{server.url}/jwks", min_refetch_seconds=0, max_age_seconds=0.2)
        verifier = TokenVerifier(source, issuer=issuer.issuer, audience=issuer.audience)
        assert (await verifier.verify(issuer.token(user_id=8))).user_id == 8
        state["up"] = False  # auth answers 503: a removal cannot be seen, availability wins
        await asyncio.sleep(0.3)
        assert (await verifier.verify(issuer.token(user_id=9))).user_id == 9


async def test_a_failed_readiness_fetch_does_not_delay_the_first_real_one(issuer):
    """Streaming probes the JWKS at startup, often before auth is up: the first token
    after auth came up must still fetch at once, not after JWKS_MIN_REFETCH_SECONDS."""
    state = {"up": False}

    async def app(scope, _receive, send):
        if scope["type"] != "http":
            return
        status = 200 if state["up"] else 503
        body = json.dumps(issuer.jwks()).encode() if state["up"] else b"starting"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    with ServerThread(app) as server:
        source = JwksKeySource(f"{server.url}/jwks", min_refetch_seconds=60)
        with pytest.raises(httpx.HTTPStatusError):
            await source.check()
        state["up"] = True
        verifier = TokenVerifier(source, issuer=issuer.issuer, audience=issuer.audience)
        assert (await verifier.verify(issuer.token(user_id=4))).user_id == 4
