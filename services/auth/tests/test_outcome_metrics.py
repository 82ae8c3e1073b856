"""What auth counts for operators: each sign-in and registration by outcome, and each attempt
a rate limit refused, per limit, as `/metrics` shows them."""

from __future__ import annotations

import uuid

from videoflix_testing.metrics import Scrape

LOGINS = "videoflix_auth_logins_total"
REGISTRATIONS = "videoflix_auth_registrations_total"
RATE_LIMITED = "videoflix_auth_rate_limited_total"


async def scrape(client) -> Scrape:
    return Scrape((await client.get("/metrics")).text)


def counted(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, labels) - before.value(name, labels)


async def test_registrations_are_counted_by_outcome(api, client):
    before = await scrape(client)
    email = await api.register_active()
    assert (await api.register(email)).status_code == 201  # same answer, nothing changes
    assert (await api.register("not-an-address")).status_code == 400
    after = await scrape(client)
    assert counted(before, after, REGISTRATIONS, outcome="registered") == 1
    assert counted(before, after, REGISTRATIONS, outcome="existing_address") == 1
    assert counted(before, after, REGISTRATIONS, outcome="invalid_input") == 1
    assert counted(before, after, REGISTRATIONS, outcome="rate_limited") == 0


async def test_logins_and_rate_limit_hits_are_counted(start_app):
    client_ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    async with start_app(
        client_ip=client_ip, AUTH_LOGIN_LIMIT_PER_EMAIL=2, AUTH_LOGIN_WINDOW_SECONDS=60
    ) as (_, api):
        before = await scrape(api.client)
        email = await api.register_active()
        assert (await api.login(email)).status_code == 200
        assert (await api.login(api.new_email("nobody"))).status_code == 400
        for _ in range(2):
            assert (await api.login(email, "Wrong-Password-1")).status_code == 400
        assert (await api.login(email)).status_code == 429  # the third try of this address
        after = await scrape(api.client)
    assert counted(before, after, LOGINS, outcome="success") == 1
    assert counted(before, after, LOGINS, outcome="invalid_credentials") == 3
    assert counted(before, after, LOGINS, outcome="rate_limited") == 1
    assert counted(before, after, RATE_LIMITED, limit="login:email") == 1
    assert counted(before, after, RATE_LIMITED, limit="login:ip") == 0


async def test_every_outcome_and_limit_is_exported_from_the_start(client):
    metrics = await scrape(client)
    for outcome in ("success", "invalid_credentials", "rate_limited", "error"):
        assert metrics.has(LOGINS, {"outcome": outcome})
    for outcome in ("registered", "existing_address", "invalid_input", "rate_limited", "error"):
        assert metrics.has(REGISTRATIONS, {"outcome": outcome})
    for limit in ("login:ip", "login:email", "register:ip", "reset:ip", "reset:email"):
        assert metrics.has(RATE_LIMITED, {"limit": limit})
    assert metrics.has(RATE_LIMITED, {"limit": "email:address"})
