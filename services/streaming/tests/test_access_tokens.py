"""Every protected route wants a valid access token (cookie or Bearer); every kind of bad
token gets a 401 JSON answer with `WWW-Authenticate: Bearer`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from videoflix_shared.settings import CommonSettings
from videoflix_testing.plugin import wait_until
from videoflix_testing.tokens import TestTokenIssuer

PROTECTED = (
    "/api/video/1/master.m3u8",
    "/api/video/1/480p/index.m3u8",
    "/api/video/1/480p/seg_00000.ts",
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(issuer: TestTokenIssuer, **overrides) -> dict:
    now = int(time.time())
    claims = {
        "sub": "1",
        "email": "user@example.com",
        "is_admin": False,
        "iat": now,
        "exp": now + 600,
        "iss": issuer.issuer,
        "aud": issuer.audience,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def unsigned_parts(header: dict, claims: dict) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


def bad_tokens(issuer: TestTokenIssuer) -> dict[str, str]:
    impostor = TestTokenIssuer(issuer=issuer.issuer, audience=issuer.audience)
    impostor.kid = issuer.kid  # same key id, different private key
    stranger = TestTokenIssuer(issuer=issuer.issuer, audience=issuer.audience)
    public_pem = issuer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs256_body = unsigned_parts({"alg": "HS256", "kid": issuer.kid}, claims_of(issuer))
    hs256 = hmac.new(public_pem, hs256_body.encode(), hashlib.sha256).digest()
    valid = issuer.token()
    header, payload, signature = valid.split(".")
    tampered_claims = {**json.loads(base64.urlsafe_b64decode(payload + "==")), "is_admin": True}
    return {
        "garbage": "not-a-jwt",
        "empty segments": "..",
        "bad signature (other key, same kid)": impostor.token(),
        "unknown kid": stranger.token(),
        "no kid": unsigned_parts({"alg": "RS256"}, claims_of(issuer)) + "." + signature,
        "alg none": unsigned_parts({"alg": "none", "kid": issuer.kid}, claims_of(issuer)) + ".",
        "alg HS256 keyed with the public key": f"{hs256_body}.{b64url(hs256)}",
        "tampered payload": f"{header}.{b64url(json.dumps(tampered_claims).encode())}.{signature}",
        "truncated signature": valid[:-10],
        "expired": issuer.token(ttl=-120),
        "wrong issuer": issuer.token(iss="someone-else"),
        "wrong audience": issuer.token(aud="another-app"),
        "missing jti": _signed(issuer, claims_of(issuer, jti=None)),
        "missing exp": _signed(issuer, claims_of(issuer, exp=None)),
        "non-integer subject": issuer.token(sub="admin"),
        "huge": "a" * 20_000,
    }


def _signed(issuer: TestTokenIssuer, claims: dict) -> str:
    import jwt

    return jwt.encode(claims, issuer.private_key, algorithm="RS256", headers={"kid": issuer.kid})


def assert_unauthorized(response, detail: str = "Invalid or expired access token.") -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": detail}
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", PROTECTED)
def test_missing_token_is_401(client, path):
    assert_unauthorized(client.get(path), "Authentication credentials were not provided.")


def test_every_kind_of_bad_token_is_401_by_cookie_and_by_bearer(client, token_issuer):
    for kind, token in bad_tokens(token_issuer).items():
        by_cookie = client.get(PROTECTED[2], headers={"Cookie": f"access_token={token}"})
        assert by_cookie.status_code == 401, kind
        assert_unauthorized(by_cookie)
        by_bearer = client.get(PROTECTED[2], headers={"Authorization": f"Bearer {token}"})
        assert by_bearer.status_code == 401, kind
        assert_unauthorized(by_bearer)


def test_valid_token_by_cookie_or_bearer_is_accepted(client, token_issuer):
    token = token_issuer.token()
    for path in PROTECTED:
        assert client.get(path, headers={"Cookie": f"access_token={token}"}).status_code == 200
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_cookie_is_found_among_other_cookies(client, token_issuer):
    cookie = f"csrftoken=abc; access_token={token_issuer.token()}; refresh_token=zzz"
    assert client.get(PROTECTED[0], headers={"Cookie": cookie}).status_code == 200


def test_refresh_token_cookie_is_not_an_access_token(client, token_issuer):
    response = client.get(PROTECTED[0], headers={"Cookie": f"refresh_token={token_issuer.token()}"})
    assert_unauthorized(response, "Authentication credentials were not provided.")


def test_malformed_authorization_headers_are_401(client):
    for value in ("Bearer", "Bearer x y", "Basic dXNlcjpwYXNz", "Token abc"):
        response = client.get(PROTECTED[0], headers={"Authorization": value})
        assert response.status_code == 401, value


def test_bearer_takes_precedence_over_the_cookie(client, token_issuer):
    headers = {
        "Authorization": "Bearer not-a-jwt",
        "Cookie": f"access_token={token_issuer.token()}",
    }
    assert_unauthorized(client.get(PROTECTED[0], headers=headers))


def test_verified_token_stops_working_when_it_expires(client, token_issuer):
    # Expired 29 s ago: accepted for one more second within the tolerated clock skew.
    leeway = int(CommonSettings.model_fields["jwt_leeway_seconds"].default)
    token = token_issuer.token(ttl=1 - leeway)
    headers = {"Cookie": f"access_token={token}"}
    assert client.get(PROTECTED[2], headers=headers).status_code == 200
    # Verified tokens are cached, but never past their expiry (plus the leeway).
    wait_until(
        lambda: client.get(PROTECTED[2], headers=headers).status_code == 401,
        timeout=5,
        what="the expired token to be refused",
    )


def test_thumbnail_needs_no_token_and_ignores_a_bad_one(client):
    assert client.get("/api/video/1/thumbnail.jpg").status_code == 200
    bad = client.get("/api/video/1/thumbnail.jpg", headers={"Cookie": "access_token=junk"})
    assert bad.status_code == 200
