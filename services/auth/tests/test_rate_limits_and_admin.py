"""Redis rate limits on login, registration, password reset and the emails one address is
sent; the admin account from the environment."""

from __future__ import annotations

import asyncio
import uuid

from videoflix_testing.plugin import free_port, wait_until_async

RATE_LIMITED = {"detail": "Too many attempts. Please try again later."}


def fresh_client_ip() -> str:
    # Only a label in the ASGI scope: a fresh one keeps each test's counters apart.
    return f"192.0.2.{uuid.uuid4().int % 250 + 1}-{uuid.uuid4().hex[:6]}"


async def test_login_rate_limit_per_ip_triggers_and_recovers(start_app):
    async with start_app(
        client_ip=fresh_client_ip(), AUTH_LOGIN_LIMIT_PER_IP=3, AUTH_LOGIN_WINDOW_SECONDS=2
    ) as (_, api):
        email = await api.register_active()
        for _ in range(3):
            assert (await api.login(email, "Wrong-Password-1")).status_code == 400

        limited = await api.login(email)  # even the right password waits
        assert limited.status_code == 429
        assert limited.json() == RATE_LIMITED
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        assert "set-cookie" not in limited.headers

        async def can_log_in() -> bool:
            return (await api.login(email)).status_code == 200

        await wait_until_async(can_log_in, timeout=6, interval=0.25, what="limit to expire")


async def test_login_rate_limit_per_email_spans_ips_and_hides_existence(start_app):
    settings = {"AUTH_LOGIN_LIMIT_PER_EMAIL": 2, "AUTH_LOGIN_WINDOW_SECONDS": 60}
    async with (
        start_app(client_ip=fresh_client_ip(), **settings) as (_, first),
        start_app(client_ip=fresh_client_ip(), **settings) as (_, second),
    ):
        known = await first.register_active()
        unknown = first.new_email("unknown")
        for email in (known, unknown):
            assert (await first.login(email, "Wrong-Password-1")).status_code == 400
            assert (await second.login(email, "Wrong-Password-1")).status_code == 400
            limited = await second.login(email, "Wrong-Password-1")
            assert limited.status_code == 429
            assert limited.json() == RATE_LIMITED
        # Another address from the same IP is unaffected.
        other = await first.register_active()
        assert (await first.login(other)).status_code == 200


async def test_successful_login_clears_the_email_counter(start_app):
    async with start_app(
        client_ip=fresh_client_ip(), AUTH_LOGIN_LIMIT_PER_EMAIL=2, AUTH_LOGIN_WINDOW_SECONDS=60
    ) as (_, api):
        email = await api.register_active()
        assert (await api.login(email, "Wrong-Password-1")).status_code == 400
        assert (await api.login(email)).status_code == 200
        assert (await api.login(email, "Wrong-Password-1")).status_code == 400
        assert (await api.login(email)).status_code == 200


async def test_password_reset_rate_limits_per_email_and_per_ip(start_app, db):
    async with start_app(
        client_ip=fresh_client_ip(),
        AUTH_RESET_LIMIT_PER_EMAIL=2,
        AUTH_RESET_LIMIT_PER_IP=5,
        AUTH_RESET_WINDOW_SECONDS=60,
    ) as (_, api):
        known = await api.register_active()
        unknown = api.new_email("unknown")
        for email in (known, unknown):
            for _ in range(2):
                response = await api.client.post("/api/password_reset/", json={"email": email})
                assert response.status_code == 200
            limited = await api.client.post("/api/password_reset/", json={"email": email})
            assert limited.status_code == 429
            assert limited.json() == RATE_LIMITED
            assert int(limited.headers["retry-after"]) > 0
        assert len(db.events("auth.password_reset.requested", known)) == 2
        # Per IP: the fifth request from this IP was the last allowed.
        fresh = api.new_email("fresh")
        assert (
            await api.client.post("/api/password_reset/", json={"email": fresh})
        ).status_code == 429


async def test_registration_is_limited_per_address_whether_or_not_it_has_an_account(start_app, db):
    async with start_app(
        client_ip=fresh_client_ip(), AUTH_EMAIL_LIMIT_PER_ADDRESS=3, AUTH_EMAIL_WINDOW_SECONDS=60
    ) as (_, api):
        active, pending, unknown = (
            await api.register_active(),
            api.new_email("pending"),
            api.new_email("unknown"),
        )
        await api.register(pending)
        answers = {}
        for email in (active, pending, unknown):
            statuses = [(await api.register(email)).status_code for _ in range(6)]
            limited = await api.register(email)
            answers[email] = (statuses, limited.status_code, limited.json())
            assert int(limited.headers["retry-after"]) > 0
        # Each address was sent at most 3 emails in the window, however often submitted.
        for email in (active, pending, unknown):
            sent = len(db.events("auth.user.registered", email)) + len(
                db.events("auth.user.already_registered", email)
            )
            assert sent <= 3, (email, sent)
        # The same answers for an active, a pending and an unknown address.
        assert answers[active][0] == [201, 201, 429, 429, 429, 429]  # 1 sent at registration
        assert answers[pending][0] == answers[active][0]
        assert answers[unknown][0] == [201, 201, 201, 429, 429, 429]
        assert {a[1:] == (429, RATE_LIMITED) for a in answers.values()} == {True}


async def test_registration_is_limited_per_ip(start_app, db):
    async with start_app(
        client_ip=fresh_client_ip(), AUTH_REGISTER_LIMIT_PER_IP=3, AUTH_REGISTER_WINDOW_SECONDS=60
    ) as (_, api):
        emails = [api.new_email("ip") for _ in range(5)]
        statuses = [(await api.register(email)).status_code for email in emails]
        assert statuses == [201, 201, 201, 429, 429]
        assert db.user(emails[3]) is None
        assert db.events("auth.user.registered", emails[3]) == []
    # Another client IP is not affected.
    async with start_app(
        client_ip=fresh_client_ip(), AUTH_REGISTER_LIMIT_PER_IP=3, AUTH_REGISTER_WINDOW_SECONDS=60
    ) as (_, other):
        assert (await other.register(other.new_email("ip"))).status_code == 201


async def test_register_and_password_reset_share_one_email_budget_per_address(start_app, db):
    async with start_app(
        client_ip=fresh_client_ip(), AUTH_EMAIL_LIMIT_PER_ADDRESS=5, AUTH_EMAIL_WINDOW_SECONDS=60
    ) as (_, api):
        email = await api.register_active()  # one email (the activation) spent
        statuses = []
        for i in range(12):
            if i % 2:
                response = await api.client.post("/api/password_reset/", json={"email": email})
            else:
                response = await api.register(email, "Someone-Else-9")
            statuses.append(response.status_code)
        assert statuses[:4] == [201, 200, 201, 200]
        assert set(statuses[4:]) == {429}
        emails = sum(
            len(db.events(subject, email))
            for subject in (
                "auth.user.registered",
                "auth.user.already_registered",
                "auth.password_reset.requested",
            )
        )
        assert emails == 5


async def test_admin_account_is_created_at_start_and_updated_idempotently(start_app, db):
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    async with start_app(ADMIN_EMAIL=email.upper(), ADMIN_PASSWORD="Admin-Secret-2026") as (
        _,
        api,
    ):
        await wait_until_async(lambda: db.user(email), timeout=10, what="admin account")
        assert (await api.login(email, "Admin-Secret-2026")).status_code == 200
        me = (await api.client.get("/api/user/")).json()
        assert me["is_admin"] is True
        assert me["email"] == email
        first_hash = db.user(email)["password_hash"]

    # Same settings again: nothing changes (no needless rehash).
    async with start_app(ADMIN_EMAIL=email, ADMIN_PASSWORD="Admin-Secret-2026") as (app, _):
        await asyncio.gather(*app.state.background_tasks, return_exceptions=True)
    assert db.user(email)["password_hash"] == first_hash

    # A new password in the environment wins; the account stays active and admin.
    db.query("UPDATE users SET is_active = false, is_admin = false WHERE email = %s", email)
    async with start_app(ADMIN_EMAIL=email, ADMIN_PASSWORD="Admin-Rotated-2027") as (app, api):
        await wait_until_async(
            lambda: db.user(email)["password_hash"] != first_hash, timeout=10, what="update"
        )
        assert (await api.login(email, "Admin-Rotated-2027")).status_code == 200
    user = db.user(email)
    assert user["is_active"] is True
    assert user["is_admin"] is True
    assert db.query("SELECT count(*) FROM users WHERE email = %s", email)[0][0] == 1


async def test_admin_creation_is_race_safe(auth_app, db, make_settings):
    from videoflix_auth.service import AuthService

    email = f"admin-race-{uuid.uuid4().hex[:8]}@example.com"
    base: AuthService = auth_app.state.auth_service
    service = AuthService(
        settings=make_settings(ADMIN_EMAIL=email, ADMIN_PASSWORD="Race-Admin-2026"),
        hasher=base.hasher,
        keys=base.keys,
        limiter=base.limiter,
    )

    async def one_worker() -> None:
        async with auth_app.state.session_factory() as session:
            await service.ensure_admin(session)

    results = await asyncio.gather(*(one_worker() for _ in range(4)), return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert db.user(email)["is_admin"] is True


async def test_login_and_reset_still_work_while_redis_is_down(start_app):
    # Nothing listens on that port: the limiter lets requests through instead of failing.
    async with start_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0") as (_, api):
        email = await api.register_active()
        assert (await api.login(email)).status_code == 200
        response = await api.client.post("/api/password_reset/", json={"email": email})
        assert response.status_code == 200
        # Registration too (its limits fail open the same way).
        assert (await api.register(api.new_email("no-redis"))).status_code == 201
        assert (await api.register(email)).status_code == 201
