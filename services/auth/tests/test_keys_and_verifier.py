"""Signing keys (generation, production requirement, rotation) and the shared verifier's
refusals, exercised on tokens auth itself issues and keys from auth's JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from videoflix_auth.app import create_app
from videoflix_auth.keys import (
    CURRENT_KEY_FILE,
    PREVIOUS_KEY_FILE,
    KeyConfigurationError,
    generate_key_file,
    load_key_set,
    thumbprint,
)
from videoflix_auth.tokens import issue_access_token
from videoflix_shared.security import InvalidToken, StaticKeySource, TokenVerifier, keys_from_jwks

ISSUER, AUDIENCE = "videoflix-auth", "videoflix"


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def key_set(tmp_path_factory):
    return load_key_set(tmp_path_factory.mktemp("keys"), generate_if_missing=True)


@pytest.fixture
def verifier(key_set):
    keys = StaticKeySource(keys_from_jwks(key_set.jwks()))
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)


def token(key_set, **overrides) -> str:
    return issue_access_token(
        key_set.current,
        user_id=overrides.pop("user_id", 5),
        email="someone@example.com",
        is_admin=False,
        issuer=overrides.pop("issuer", ISSUER),
        audience=overrides.pop("audience", AUDIENCE),
        ttl_seconds=overrides.pop("ttl_seconds", 1800),
    )


async def test_verifier_accepts_auth_token(verifier, key_set):
    principal = await verifier.verify(token(key_set))
    assert (principal.user_id, principal.email, principal.is_admin) == (
        5,
        "someone@example.com",
        False,
    )


async def test_verifier_rejects_alg_none(verifier, key_set):
    claims = jwt.decode(token(key_set), options={"verify_signature": False})
    forged = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': key_set.current.kid})}.{b64(claims)}."
    with pytest.raises(InvalidToken):
        await verifier.verify(forged)


async def test_verifier_rejects_hs256_signed_with_public_key(verifier, key_set):
    claims = jwt.decode(token(key_set), options={"verify_signature": False})
    public_pem = key_set.current.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64({"alg": "HS256", "typ": "JWT", "kid": key_set.current.kid})
    payload = b64(claims)
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken):
        await verifier.verify(forged)


async def test_verifier_rejects_expired_token(verifier, key_set):
    with pytest.raises(InvalidToken):
        await verifier.verify(token(key_set, ttl_seconds=-120))  # beyond the 30 s clock-skew leeway


@pytest.mark.parametrize("claim", ["audience", "issuer"])
async def test_verifier_rejects_wrong_audience_or_issuer(verifier, key_set, claim):
    with pytest.raises(InvalidToken):
        await verifier.verify(token(key_set, **{claim: "someone-else"}))


async def test_verifier_rejects_unknown_kid(verifier, tmp_path):
    other = load_key_set(tmp_path, generate_if_missing=True)
    with pytest.raises(InvalidToken):
        await verifier.verify(token(other))


async def test_verifier_rejects_tampered_payload(verifier, key_set):
    header, payload, signature = token(key_set).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["is_admin"] = True
    with pytest.raises(InvalidToken):
        await verifier.verify(f"{header}.{b64(claims)}.{signature}")


def test_key_is_generated_once_and_kid_is_rfc7638_thumbprint(tmp_path):
    first = load_key_set(tmp_path, generate_if_missing=True)
    again = load_key_set(tmp_path, generate_if_missing=True)
    assert first.current.kid == again.current.kid
    assert (tmp_path / CURRENT_KEY_FILE).stat().st_mode & 0o077 == 0
    # RFC 7638 section 3.1 example key and thumbprint.
    jwk = {
        "kty": "RSA",
        "e": "AQAB",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    public_key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
    assert thumbprint(public_key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_concurrent_generation_keeps_the_first_key(tmp_path):
    generate_key_file(tmp_path / CURRENT_KEY_FILE)
    before = (tmp_path / CURRENT_KEY_FILE).read_bytes()
    generate_key_file(tmp_path / CURRENT_KEY_FILE)  # a second worker losing the race
    assert (tmp_path / CURRENT_KEY_FILE).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [CURRENT_KEY_FILE]


def test_production_without_key_fails_with_clear_error(tmp_path):
    with pytest.raises(KeyConfigurationError, match="must be provided"):
        load_key_set(tmp_path, generate_if_missing=False)
    assert not (tmp_path / CURRENT_KEY_FILE).exists()


def test_invalid_key_file_fails_with_clear_error(tmp_path):
    (tmp_path / CURRENT_KEY_FILE).write_text("not a key")
    with pytest.raises(KeyConfigurationError, match="PEM"):
        load_key_set(tmp_path, generate_if_missing=True)


async def test_rotation_publishes_previous_key_and_old_tokens_keep_verifying(tmp_path):
    old = load_key_set(tmp_path, generate_if_missing=True)
    old_token = token(old)
    (tmp_path / CURRENT_KEY_FILE).rename(tmp_path / PREVIOUS_KEY_FILE)
    rotated = load_key_set(tmp_path, generate_if_missing=True)

    assert rotated.current.kid != old.current.kid
    assert rotated.previous is not None
    assert rotated.previous.kid == old.current.kid
    assert [k["kid"] for k in rotated.jwks()["keys"]] == [rotated.current.kid, old.current.kid]
    verifier = TokenVerifier(
        StaticKeySource(keys_from_jwks(rotated.jwks())), issuer=ISSUER, audience=AUDIENCE
    )
    assert (await verifier.verify(old_token)).user_id == 5
    new_token = token(rotated)
    assert jwt.get_unverified_header(new_token)["kid"] == rotated.current.kid
    assert (await verifier.verify(new_token)).user_id == 5


async def test_production_app_refuses_to_start_without_key(make_settings, tmp_path):
    settings = make_settings(
        ENVIRONMENT="production",
        AUTH_KEYS_DIR=str(tmp_path),
        ADMIN_EMAIL="admin@example.com",
        ADMIN_PASSWORD="Production-Admin-2026",
    )
    app = create_app(settings)
    with pytest.raises(KeyConfigurationError):
        async with app.router.lifespan_context(app):
            pass


async def test_jwks_endpoint_is_cacheable_json(client):
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
    [key] = response.json()["keys"]
    assert {"kty", "kid", "alg", "use", "n", "e"} <= set(key)
    assert key["alg"] == "RS256"
    assert "d" not in key
