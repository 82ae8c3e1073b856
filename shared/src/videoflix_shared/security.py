"""Access-token verification for every service, and the FastAPI auth dependencies.

Tokens are RS256 JWTs issued by the auth service. The verifier accepts only RS256, only a
`kid` it knows, the configured `iss` and `aud`, and an unexpired `exp`; `exp`, `iat` and
`nbf` are checked with `JWT_LEEWAY_SECONDS` of tolerance for clocks that differ a little.
Public keys come from auth's JWKS endpoint, cached: an unknown `kid` triggers a refetch (at
most every `JWKS_MIN_REFETCH_SECONDS`), and the whole set is fetched again once it is
`JWKS_MAX_AGE_SECONDS` old, so a key auth removed from its JWKS stops being trusted within
that bound. While auth is unreachable the keys held keep working (a removal cannot be seen
then); a refetch is tried again every `JWKS_MIN_REFETCH_SECONDS`.
Verified tokens are cached until they expire or the key set they were checked against is
due for a refetch, whichever comes first, so a hot path verifies each token once.

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
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Annotated, Any, Protocol

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


def access_token_claims(
    *,
    user_id: int,
    email: str,
    is_admin: bool,
    issuer: str,
    audience: str,
    ttl_seconds: int,
) -> dict[str, Any]:
    """The claims of an access token, as auth issues them and `TokenVerifier` reads them
    (every one of REQUIRED_CLAIMS, plus `email` and `is_admin`), valid from now on."""
    now = int(time.time())
    return {
        "sub": str(user_id),
        "email": email,
        "is_admin": is_admin,
        "iat": now,
        "exp": now + ttl_seconds,
        "iss": issuer,
        "aud": audience,
        "jti": uuid.uuid4().hex,
    }


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

    def trusted_until(self) -> float:
        """time.monotonic() after which the keys held must be fetched again."""
        ...


class StaticKeySource:
    """Keys known in-process (the auth service verifies with its own public keys)."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys

    async def get_key(self, kid: str) -> Any | None:
        return self.keys.get(kid)

    def trusted_until(self) -> float:
        return float("inf")


def keys_from_jwks(document: dict[str, Any]) -> dict[str, Any]:
    keys = {}
    for jwk in document.get("keys", []):
        if jwk.get("kty") == "RSA" and jwk.get("kid") and jwk.get("alg", ALGORITHM) == ALGORITHM:
            keys[jwk["kid"]] = RSAAlgorithm.from_jwk(json.dumps(jwk))
    return keys


class JwksKeySource:
    """Auth's public keys from its JWKS: fetched for an unknown kid (at most every
    `min_refetch_seconds`) and again once the set is `max_age_seconds` old."""

    def __init__(
        self,
        url: str,
        *,
        min_refetch_seconds: float = 30.0,
        max_age_seconds: float = 300.0,
        timeout: float = 3.0,
    ) -> None:
        self.url = url
        self.min_refetch_seconds = min_refetch_seconds
        self.max_age_seconds = max_age_seconds
        self.timeout = timeout
        self.keys: dict[str, Any] = {}
        self._last_fetch = float("-inf")  # last attempt, successful or not
        self._fresh_until = float("-inf")  # the keys held need no refetch before this
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> JwksKeySource:
        return cls(
            settings.jwks_url,
            min_refetch_seconds=settings.jwks_min_refetch_seconds,
            max_age_seconds=settings.jwks_max_age_seconds,
        )

    def trusted_until(self) -> float:
        return self._fresh_until

    async def refresh(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.get(self.url)
            response.raise_for_status()
            self.keys = keys_from_jwks(response.json())
        self._fresh_until = time.monotonic() + self.max_age_seconds

    async def get_key(self, kid: str) -> Any | None:
        if time.monotonic() < self._fresh_until and kid in self.keys:
            return self.keys[kid]
        async with self._lock:
            now = time.monotonic()
            stale = now >= self._fresh_until
            if not stale and kid in self.keys:
                return self.keys[kid]
            if now - self._last_fetch >= self.min_refetch_seconds:
                self._last_fetch = now
                try:
                    await self.refresh()
                except Exception as exc:  # auth down: keep the keys we have, retry later
                    logger.warning("JWKS fetch from %s failed: %s", self.url, exc)
                    if stale:
                        self._fresh_until = now + self.min_refetch_seconds
            return self.keys.get(kid)

    async def check(self) -> None:
        """Readiness: we hold at least one key (fetching once if needed)."""
        if not self.keys:
            await self.refresh()  # a failure here (auth not up yet) must not delay get_key's
            self._last_fetch = time.monotonic()


class TokenVerifier:
    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: float = 30.0,
        cache_size: int = 10_000,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        self.cache_size = cache_size
        # token -> (principal, time.monotonic() until which its key may be trusted unchecked)
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before, not yet expired, whose key set is not
        due for a refetch (no await: hot path)."""
        entry = self._cache.get(token)
        if entry is None:
            return None
        principal, key_trusted_until = entry
        if (
            principal.expires_at + self.leeway_seconds > time.time()
            and time.monotonic() < key_trusted_until
        ):
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
                leeway=self.leeway_seconds,
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
        self._cache[token] = (principal, _trusted_until(self.keys))
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return principal


def _trusted_until(keys: KeySource) -> float:
    trusted_until = getattr(keys, "trusted_until", None)  # key sources of tests may lack it
    return trusted_until() if trusted_until is not None else float("inf")


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def csrf_matches(cookie: str | None, header: str | None) -> bool:
    if not cookie or not header:
        return False
    return hmac.compare_digest(cookie.encode(), header.encode())


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


# The caller's verified identity as a route parameter: `principal: Authenticated`.
Authenticated = Annotated[Principal, Depends(authenticate)]


async def require_admin(principal: Authenticated) -> Principal:
    if not principal.is_admin:
        raise HTTPException(403, "Administrator rights required.")
    return principal


# An administrator's verified identity (403 for anyone else): `_: Admin` guards a route.
Admin = Annotated[Principal, Depends(require_admin)]
