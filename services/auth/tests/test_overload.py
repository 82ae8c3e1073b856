"""Overload answers 429/503 with Retry-After, never 500: password hashing is bounded, no
request holds a database connection while it hashes, and an exhausted pool is a 503."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from .test_rate_limits_and_admin import fresh_client_ip

BUSY = {"detail": "The service is busy. Please try again shortly."}
UNAVAILABLE = {"detail": "Service temporarily unavailable. Please try again shortly."}
ONE_CONNECTION = {
    "AUTH_DB_POOL_SIZE": 1,
    "AUTH_DB_POOL_OVERFLOW": 0,
    "AUTH_DB_POOL_TIMEOUT_SECONDS": 0.3,
}
# argon2id at t=60 takes ~0.6 s here: longer than the pool timeout above.
SLOW_HASHING = {
    "AUTH_ARGON2_TIME_COST": 60,
    "AUTH_HASH_CONCURRENCY": 3,
    "AUTH_HASH_WAIT_SECONDS": 30,
}


async def test_registration_flood_past_the_hashing_bound_gets_503_not_500(start_app, db):
    async with start_app(
        client_ip=fresh_client_ip(),
        AUTH_HASH_CONCURRENCY=1,
        AUTH_HASH_WAIT_SECONDS=0.05,
        **ONE_CONNECTION,
    ) as (_, api):
        emails = [api.new_email("flood") for _ in range(12)]
        responses = await asyncio.gather(*(api.register(email) for email in emails))

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 503}, statuses
    assert 201 in statuses, statuses
    assert 503 in statuses, statuses
    for email, response in zip(emails, responses, strict=True):
        if response.status_code == 503:
            assert response.json() == BUSY
            assert int(response.headers["retry-after"]) >= 1
            assert db.user(email) is None  # shed before anything was written
        else:
            assert db.user(email) is not None


async def test_exhausted_database_pool_answers_503_with_retry_after(start_app):
    async with start_app(**ONE_CONNECTION) as (app, api):
        email = await api.logged_in()
        async with app.state.session_factory() as holder:
            await holder.execute(text("SELECT 1"))  # the only connection, held
            refresh = await api.client.post("/api/token/refresh/")
            login = await api.login(email)
        assert (await api.client.post("/api/token/refresh/")).status_code == 200

    for response in (refresh, login):
        assert response.status_code == 503, response.text
        assert response.json() == UNAVAILABLE
        assert int(response.headers["retry-after"]) >= 1


async def test_concurrent_logins_do_not_hold_the_connection_while_verifying(start_app):
    async with start_app(client_ip=fresh_client_ip(), **SLOW_HASHING, **ONE_CONNECTION) as (
        _,
        api,
    ):
        emails = [await api.register_active() for _ in range(3)]
        responses = await asyncio.gather(*(api.login(email) for email in emails))
    assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]


async def test_concurrent_password_confirms_do_not_hold_the_connection_while_hashing(start_app, db):
    async with start_app(client_ip=fresh_client_ip(), **SLOW_HASHING, **ONE_CONNECTION) as (
        _,
        api,
    ):
        emails = [await api.register_active() for _ in range(3)]
        links = []
        for email in emails:
            assert (
                await api.client.post("/api/password_reset/", json={"email": email})
            ).status_code == 200
            [event] = db.events("auth.password_reset.requested", email)
            links.append(api.link_parts(event["reset_url"]))
        new_password = "Brand-New-Secret-5"
        body = {"new_password": new_password, "confirm_password": new_password}
        responses = await asyncio.gather(
            *(
                api.client.post(f"/api/password_confirm/{uid}/{token}/", json=body)
                for uid, token in links
            )
        )
        assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
        assert (await api.login(emails[0], new_password)).status_code == 200
