"""The one claim set of an access token, shared by auth's issuer and the test issuer."""

from __future__ import annotations

import time

from videoflix_shared.security import REQUIRED_CLAIMS, access_token_claims


def test_access_token_claims_carry_every_claim_the_verifier_requires() -> None:
    before = int(time.time())
    claims = access_token_claims(
        user_id=7, email="a@example.com", is_admin=True, issuer="i", audience="a", ttl_seconds=60
    )
    assert set(REQUIRED_CLAIMS) <= set(claims)
    assert claims["sub"] == "7"
    assert claims["email"] == "a@example.com"
    assert claims["is_admin"] is True
    assert (claims["iss"], claims["aud"]) == ("i", "a")
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 60


def test_every_access_token_gets_its_own_id() -> None:
    def token_id() -> str:
        claims = access_token_claims(
            user_id=1, email="", is_admin=False, issuer="i", audience="a", ttl_seconds=1
        )
        return str(claims["jti"])

    assert token_id() != token_id()
