"""A stand-in token issuer for tests of services that verify tokens but do not issue them.

It signs exactly like the auth service (RS256, `kid` header, the same claims), so the real
shared verifier is exercised end to end over a real JWKS HTTP endpoint.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from videoflix_shared.security import ALGORITHM, access_token_claims


class TestTokenIssuer:
    __test__ = False  # not a pytest test class

    def __init__(
        self, issuer: str = "videoflix-auth-test", audience: str = "videoflix-test"
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:16]

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def jwks_app(self) -> Starlette:
        async def jwks(_request: Request) -> JSONResponse:
            return JSONResponse(self.jwks())

        return Starlette(routes=[Route("/.well-known/jwks.json", jwks)])

    def token(
        self,
        *,
        user_id: int = 1,
        email: str = "user@example.com",
        is_admin: bool = False,
        ttl: int = 1800,
        **overrides: Any,
    ) -> str:
        claims = {
            **access_token_claims(
                user_id=user_id,
                email=email,
                is_admin=is_admin,
                issuer=self.issuer,
                audience=self.audience,
                ttl_seconds=ttl,
            ),
            **overrides,
        }
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def cookies(self, **kwargs: Any) -> dict[str, str]:
        """Cookies a logged-in browser would send (access token + CSRF token)."""
        return {"access_token": self.token(**kwargs), "csrftoken": "test-csrf-token"}
