"""Access-token verification for every service, and the FastAPI auth dependencies.

Tokens are RS256 JWTs issued by the auth service. The verifier accepts only RS256, only a
`kid` it knows, the configured `iss` and `aud`, and an unexpired `exp`. Public keys come
from auth's JWKS endpoint, cached: an unknown `kid` triggers a refetch (at most every
`JWKS_MIN_REFETCH_SECONDS`), and cached keys keep working while auth is down.
Verified tokens are cached until they expire, so a hot path verifies each token once.

Browser clients authenticate with the `access_token` cookie and must echo the readable
`csrftoken` cookie as `X-CSRFToken` on unsafe methods; API clients send
`Authorization: Bearer <token>` and need no CSRF header.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx
import jwt
from fastapi import Depends, HTTPException, Request
from jwt.algorithms import RSAAlgorithm

logger = logging.getLogger(__name__)

ACCESS_COOKIE = "access_token"
REFRESH_COOKIE = "refresh_token"
CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "x-csrftoken"
ALGORITHM = "RS256"
REQUIRED_CLAIMS = ["sub", "exp", "iat", "iss", "aud", "jti"]
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class InvalidToken(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    email: str
    is_admin: bool
    token_id: str
    expires_at: int
    via_cookie: bool = False


class KeySource(Protocol):
    async def get_key(self, kid: str) -> Any | None: ...


class StaticKeySource:
    """Keys known in-process (the auth service verifies with its own public keys)."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys

    async def get_key(self, kid: str) -> Any | None:
        return self.keys.get(kid)


def keys_from_jwks(document: dict[str, Any]) -> dict[str, Any]:
    keys = {}
    for jwk in document.get("keys", []):
        if jwk.get("kty") == "RSA" and jwk.get("kid") and jwk.get("alg", ALGORITHM) == ALGORITHM:
            keys[jwk["kid"]] = RSAAlgorithm.from_jwk(json.dumps(jwk))
    return keys


class JwksKeySource:
    def __init__(
        self, url: str, *, min_refetch_seconds: float = 30.0, timeout: float = 3.0
    ) -> None:
        self.url = url
        self.min_refetch_seconds = min_refetch_seconds
        self.timeout = timeout
        self.keys: dict[str, Any] = {}
        self._last_fetch = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.get(self.url)
            response.raise_for_status()
            self.keys = keys_from_jwks(response.json())

    async def get_key(self, kid: str) -> Any | None:
        key = self.keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            if kid in self.keys:
                return self.keys[kid]
            if time.monotonic() - self._last_fetch < self.min_refetch_seconds:
                return None
            self._last_fetch = time.monotonic()
            try:
                await self.refresh()
            except Exception as exc:  # auth down: keep the keys we have
                logger.warning("JWKS fetch from %s failed: %s", self.url, exc)
            return self.keys.get(kid)

    async def check(self) -> None:
        """Readiness: we hold at least one key (fetching once if needed)."""
        if not self.keys:
            await self.refresh()
            self._last_fetch = time.monotonic()


class TokenVerifier:
    def __init__(
        self, keys: KeySource, *, issuer: str, audience: str, cache_size: int = 10_000
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Principal] = OrderedDict()

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before and not yet expired (no await: hot path)."""
        principal = self._cache.get(token)
        if principal is not None and principal.expires_at > time.time():
            return principal
        return None

    async def verify(self, token: str) -> Principal:
        principal = self.cached(token)
        if principal is not None:
            return principal
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unsupported algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token has no key id")
        key = await self.keys.get_key(kid)
        if key is None:
            raise InvalidToken("unknown key id")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
            principal = Principal(
                user_id=int(claims["sub"]),
                email=str(claims.get("email", "")),
                is_admin=bool(claims.get("is_admin", False)),
                token_id=str(claims["jti"]),
                expires_at=int(claims["exp"]),
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(str(exc)) from exc
        self._cache[token] = principal
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return principal


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def csrf_matches(cookie: str | None, header: str | None) -> bool:
    return bool(cookie) and bool(header) and hmac.compare_digest(cookie.encode(), header.encode())


def unauthorized(detail: str = "Authentication credentials were not provided.") -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request) -> Principal:
    """FastAPI dependency: the caller's verified identity (401 otherwise).

    Cookie-authenticated unsafe requests must carry the CSRF header (403 otherwise).
    The verifier lives on `app.state.token_verifier`.
    """
    token = bearer_token(request.headers.get("authorization"))
    via_cookie = token is None
    if via_cookie:
        token = request.cookies.get(ACCESS_COOKIE)
    if not token:
        raise unauthorized()
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        principal = await verifier.verify(token)
    except InvalidToken as exc:
        raise unauthorized("Invalid or expired access token.") from exc
    if (
        via_cookie
        and request.method in UNSAFE_METHODS
        and not csrf_matches(request.cookies.get(CSRF_COOKIE), request.headers.get(CSRF_HEADER))
    ):
        raise HTTPException(403, "CSRF token missing or incorrect.")
    return replace(principal, via_cookie=True) if via_cookie else principal


async def require_admin(principal: Principal = Depends(authenticate)) -> Principal:
    if not principal.is_admin:
        raise HTTPException(403, "Administrator rights required.")
    return principal
