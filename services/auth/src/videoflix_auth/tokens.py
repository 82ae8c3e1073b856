"""Token material: signed RS256 access tokens, opaque refresh and link secrets, `uidb64`.

Access tokens are JWTs every service verifies on its own (shared `TokenVerifier`).
Refresh tokens and email-link tokens are opaque random strings that only auth checks, so
they can be revoked; the database keeps only their SHA-256 digest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

import jwt

from videoflix_auth.keys import SigningKey
from videoflix_shared.security import ALGORITHM, access_token_claims

SECRET_BYTES = 32  # 256 bits of randomness per opaque token
MAX_SECRET_LENGTH = 128  # anything longer cannot be one of ours


def issue_access_token(
    key: SigningKey,
    *,
    user_id: int,
    email: str,
    is_admin: bool,
    issuer: str,
    audience: str,
    ttl_seconds: int,
) -> str:
    claims = access_token_claims(
        user_id=user_id,
        email=email,
        is_admin=is_admin,
        issuer=issuer,
        audience=audience,
        ttl_seconds=ttl_seconds,
    )
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def encode_uid(user_id: int) -> str:
    """The user id in URL-safe base64 without padding (as the frontend links carry it)."""
    return base64.urlsafe_b64encode(str(user_id).encode()).rstrip(b"=").decode()


def decode_uid(uidb64: str) -> int | None:
    """The user id of a `uidb64`, or None when it is not one we could have made."""
    if not uidb64 or len(uidb64) > 32 or not uidb64.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(uidb64 + "=" * (-len(uidb64) % 4))
        text = raw.decode("ascii")
    except (binascii.Error, ValueError):
        return None
    if not text.isdigit() or len(text) > 18:  # fits a BIGINT
        return None
    return int(text)
