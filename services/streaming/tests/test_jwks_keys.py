"""Auth's public keys: fetched from JWKS once and cached (no call to auth per request),
refetched when an unknown `kid` appears (rate limited), still used while auth is down."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from videoflix_streaming.app import create_app
from videoflix_streaming.settings import StreamingSettings
from videoflix_testing.plugin import ServerThread, free_port
from videoflix_testing.tokens import TestTokenIssuer

SEGMENT = "/api/video/1/480p/seg_00000.ts"


class FakeAuthJwks:
    """auth's JWKS endpoint with keys we can rotate, counting how often it is asked."""

    def __init__(self, *issuers: TestTokenIssuer) -> None:
        self.issuers = list(issuers)
        self.fetches = 0

    def app(self) -> Starlette:
        async def jwks(_request: Request) -> JSONResponse:
            self.fetches += 1
            return JSONResponse({"keys": [k for i in self.issuers for k in i.jwks()["keys"]]})

        return Starlette(routes=[Route("/.well-known/jwks.json", jwks)])


@contextmanager
def streaming_with_jwks(
    env: dict[str, str], jwks_url: str, *, min_refetch_seconds: float
) -> Iterator[httpx.Client]:
    settings = StreamingSettings(
        **{**env, "JWKS_URL": jwks_url, "JWKS_MIN_REFETCH_SECONDS": str(min_refetch_seconds)}
    )
    with (
        ServerThread(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.usefixtures("video")
def test_keys_are_fetched_once_not_per_request(streaming_env, token_issuer):
    fake = FakeAuthJwks(token_issuer)
    with (
        ServerThread(fake.app()) as auth,
        streaming_with_jwks(
            streaming_env, f"{auth.url}/.well-known/jwks.json", min_refetch_seconds=0
        ) as client,
    ):
        for _ in range(10):  # fresh tokens: each one is verified, none needs auth
            assert client.get(SEGMENT, headers=bearer(token_issuer.token())).status_code == 200
        assert fake.fetches == 1  # the prefetch at startup


@pytest.mark.usefixtures("video")
def test_unknown_kid_triggers_a_refetch_that_finds_a_rotated_key(streaming_env, token_issuer):
    rotated = TestTokenIssuer(issuer=token_issuer.issuer, audience=token_issuer.audience)
    fake = FakeAuthJwks(token_issuer)
    with (
        ServerThread(fake.app()) as auth,
        streaming_with_jwks(
            streaming_env, f"{auth.url}/.well-known/jwks.json", min_refetch_seconds=0
        ) as client,
    ):
        assert client.get(SEGMENT, headers=bearer(rotated.token())).status_code == 401
        fake.issuers.append(rotated)  # auth publishes its new key
        assert client.get(SEGMENT, headers=bearer(rotated.token())).status_code == 200
        assert client.get(SEGMENT, headers=bearer(token_issuer.token())).status_code == 200


@pytest.mark.usefixtures("video")
def test_refetches_for_unknown_kids_are_rate_limited(streaming_env, token_issuer):
    fake = FakeAuthJwks(token_issuer)
    with (
        ServerThread(fake.app()) as auth,
        streaming_with_jwks(
            streaming_env, f"{auth.url}/.well-known/jwks.json", min_refetch_seconds=60
        ) as client,
    ):
        for _ in range(5):  # a flood of tokens with made-up key ids
            stranger = TestTokenIssuer(issuer=token_issuer.issuer, audience=token_issuer.audience)
            assert client.get(SEGMENT, headers=bearer(stranger.token())).status_code == 401
        assert fake.fetches == 1  # only the startup fetch: the window has not passed


@pytest.mark.usefixtures("video")
def test_cached_keys_keep_working_while_auth_is_down(streaming_env, token_issuer):
    fake = FakeAuthJwks(token_issuer)
    auth = ServerThread(fake.app())
    with (
        auth,
        streaming_with_jwks(
            streaming_env, f"{auth.url}/.well-known/jwks.json", min_refetch_seconds=0
        ) as client,
    ):
        assert client.get(SEGMENT, headers=bearer(token_issuer.token())).status_code == 200
        auth.__exit__(None, None, None)  # auth goes down
        with httpx.Client() as probe:
            try:
                probe.get(f"{auth.url}/.well-known/jwks.json", timeout=1)
                raise AssertionError("the fake auth server is still up")
            except httpx.TransportError:
                pass
        # A token never seen before, signed with the known key: verified from the cache.
        assert client.get(SEGMENT, headers=bearer(token_issuer.token())).status_code == 200
        stranger = TestTokenIssuer(issuer=token_issuer.issuer, audience=token_issuer.audience)
        assert client.get(SEGMENT, headers=bearer(stranger.token())).status_code == 401
        ready = client.get("/readyz")
        assert ready.status_code == 200  # keys are held: still ready


@pytest.mark.usefixtures("video")
def test_starts_and_fetches_later_when_auth_is_not_up_yet(streaming_env, token_issuer):
    port = free_port()
    fake = FakeAuthJwks(token_issuer)
    with streaming_with_jwks(
        streaming_env, f"http://127.0.0.1:{port}/.well-known/jwks.json", min_refetch_seconds=0
    ) as client:
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["jwks"].startswith("failing")
        with ServerThread(fake.app(), port=port):
            assert client.get(SEGMENT, headers=bearer(token_issuer.token())).status_code == 200
            assert client.get("/readyz").status_code == 200
