"""POST /api/register/ and GET /api/activate/<uidb64>/<token>/ (API.md auth rows)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from videoflix_shared.events import UserRegistered

REGISTERED = {
    "detail": "Registration successful. Please check your email to activate your account."
}


async def test_register_creates_inactive_user_and_emits_activation_link(api, db):
    email = api.new_email()
    response = await api.register(email)

    assert response.status_code == 201
    assert response.json() == {"user": {"email": email}, **REGISTERED}
    user = db.user(email)
    assert user is not None
    assert user["is_active"] is False
    assert user["is_admin"] is False
    assert user["password_hash"].startswith("$argon2id$")
    [event] = db.events("auth.user.registered", email)
    parsed = UserRegistered.model_validate(event)
    uid, token = api.link_parts(parsed.activation_url)
    assert parsed.activation_url == (
        f"http://127.0.0.1:5500/pages/auth/activate.html?uid={uid}&token={token}"
    )
    assert parsed.user_id == user["id"]
    hours = (parsed.expires_at - datetime.now(parsed.expires_at.tzinfo)).total_seconds() / 3600
    assert 23.9 < hours <= 24
    # Inactive accounts cannot log in yet.
    assert (await api.login(email)).status_code == 400


async def test_activation_link_activates_once(api, db):
    email = api.new_email()
    await api.register(email)
    uid, token = api.activation_link(email)

    first = await api.client.get(f"/api/activate/{uid}/{token}/")
    assert first.status_code == 200
    assert first.json() == {"message": "Account successfully activated."}
    assert db.user(email)["is_active"] is True
    assert (await api.login(email)).status_code == 200

    again = await api.client.get(f"/api/activate/{uid}/{token}/")
    assert again.status_code == 400
    assert again.json() == {"message": "This activation link has already been used."}


async def test_activation_without_trailing_slash_works(api):
    email = api.new_email()
    await api.register(email)
    uid, token = api.activation_link(email)
    response = await api.client.get(f"/api/activate/{uid}/{token}")
    assert response.status_code == 200


async def test_expired_activation_link_is_refused(api, db):
    email = api.new_email()
    await api.register(email)
    uid, token = api.activation_link(email)
    db.query(
        "UPDATE link_tokens SET expires_at = now() - interval '1 second' WHERE user_id = %s",
        db.user(email)["id"],
    )
    response = await api.client.get(f"/api/activate/{uid}/{token}/")
    assert response.status_code == 400
    assert "expired" in response.json()["message"]
    assert db.user(email)["is_active"] is False


@pytest.mark.parametrize(
    "forge",
    [
        lambda uid, token: (uid, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")),
        lambda _uid, token: ("OTk5OTk5OTk", token),  # another user id
        lambda _uid, token: ("not base64!", token),
        lambda _uid, token: ("YWJj", token),  # base64 of "abc"
        lambda uid, _token: (uid, "x" * 500),
    ],
    ids=["token", "other-uid", "bad-base64", "non-numeric-uid", "oversized-token"],
)
async def test_forged_activation_link_is_refused(api, db, forge):
    email = api.new_email()
    await api.register(email)
    uid, token = forge(*api.activation_link(email))
    response = await api.client.get(f"/api/activate/{uid}/{token}/")
    assert response.status_code == 400
    assert response.json() == {"message": "This activation link is invalid."}
    assert db.user(email)["is_active"] is False


async def test_activation_token_of_another_user_is_refused(api, db):
    first, second = api.new_email(), api.new_email()
    await api.register(first)
    await api.register(second)
    uid_first, _ = api.activation_link(first)
    _, token_second = api.activation_link(second)
    response = await api.client.get(f"/api/activate/{uid_first}/{token_second}/")
    assert response.status_code == 400
    assert db.user(first)["is_active"] is False
    assert db.user(second)["is_active"] is False


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {
                "email": "not-an-email",
                "password": "Sturdy-Pass-1",
                "confirmed_password": "Sturdy-Pass-1",
            },
            "email",
            "Enter a valid email address.",
        ),
        (
            {
                "email": "{email}",
                "password": "Sturdy-Pass-1",
                "confirmed_password": "Sturdy-Pass-2",
            },
            "confirmed_password",
            "Passwords do not match.",
        ),
        (
            {"email": "{email}", "password": "Sh0rt!", "confirmed_password": "Sh0rt!"},
            "password",
            "This password is too short. It must contain at least 8 characters.",
        ),
        (
            {"email": "{email}", "password": "Password123", "confirmed_password": "Password123"},
            "password",
            "This password is too common.",
        ),
        (
            {"email": "{email}", "password": "{email}", "confirmed_password": "{email}"},
            "password",
            "The password must not be the same as the email address.",
        ),
    ],
    ids=["invalid-email", "passwords-differ", "too-short", "too-common", "equals-email"],
)
async def test_register_rejects_bad_input_with_field_errors(api, db, body, field, message):
    email = api.new_email()
    body = {k: v.replace("{email}", email) for k, v in body.items()}
    users_before = db.count("users")

    response = await api.client.post("/api/register/", json=body)

    assert response.status_code == 400
    assert message in response.json()[field]
    assert db.count("users") == users_before


async def test_register_reports_every_broken_rule_at_once(api):
    response = await api.client.post(
        "/api/register/", json={"email": "nope", "password": "123", "confirmed_password": "1234"}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"email", "password", "confirmed_password"}


async def test_register_existing_address_gets_same_answer_and_owner_email(api, db):
    email = await api.register_active()
    hash_before = db.user(email)["password_hash"]

    response = await api.register(email.upper(), "Another-Pass-77")

    assert response.status_code == 201
    assert response.json() == {"user": {"email": email}, **REGISTERED}
    [notice] = db.events("auth.user.already_registered", email)
    assert notice["login_url"] == "http://127.0.0.1:5500/pages/auth/login.html"
    assert notice["password_reset_url"] == "http://127.0.0.1:5500/pages/auth/forgot_password.html"
    assert db.user(email)["password_hash"] == hash_before  # nothing about the account changed
    assert len(db.events("auth.user.registered", email)) == 1


async def test_email_uniqueness_ignores_case(api, db):
    email = api.new_email()
    mixed = email[0].upper() + email[1:].replace("example.com", "EXAMPLE.com")
    response = await api.register(mixed)
    assert response.json()["user"]["email"] == email
    await api.register(email)
    assert db.query("SELECT count(*) FROM users WHERE email = %s", email)[0][0] == 1


def already_registered_link(api, email: str) -> tuple[str, str]:
    """(uidb64, token) of the activation link in the newest "someone tried to register" event."""
    notices = api.db.events("auth.user.already_registered", email)
    assert notices, notices
    assert notices[-1]["activation_url"], notices
    return api.link_parts(notices[-1]["activation_url"])


async def activate(api, uid: str, token: str) -> int:
    return (await api.client.get(f"/api/activate/{uid}/{token}/")).status_code


OWNER_PASSWORD = "Owner-Chose-This-1"
ATTACKER_PASSWORD = "Attacker-Chose-2"


async def test_takeover_owner_registers_first_attacker_second(api, db):
    email = api.new_email("owner-first")
    assert (await api.register(email, OWNER_PASSWORD)).status_code == 201
    owner_link = api.activation_link(email)
    hash_before = db.user(email)["password_hash"]

    attacker = await api.register(email, ATTACKER_PASSWORD)

    assert attacker.status_code == 201
    assert attacker.json() == {"user": {"email": email}, **REGISTERED}
    assert db.user(email)["password_hash"] == hash_before  # registration changed nothing
    assert len(db.events("auth.user.registered", email)) == 1
    attempt_link = already_registered_link(api, email)  # the owner is told, with its own link

    assert await activate(api, *owner_link) == 200
    assert (await api.login(email, OWNER_PASSWORD)).status_code == 200
    assert (await api.login(email, ATTACKER_PASSWORD)).status_code == 400
    # The attempt's link was spent by the activation: it cannot switch the password later.
    assert await activate(api, *attempt_link) == 400
    assert (await api.login(email, ATTACKER_PASSWORD)).status_code == 400
    assert (await api.login(email, OWNER_PASSWORD)).status_code == 200


async def test_takeover_attacker_registers_first_owner_second(api, db):
    email = api.new_email("attacker-first")
    assert (await api.register(email, ATTACKER_PASSWORD)).status_code == 201
    attacker_link = api.activation_link(email)  # sent to the owner's mailbox, never clicked

    assert (await api.register(email, OWNER_PASSWORD)).status_code == 201
    owner_link = already_registered_link(api, email)
    assert len(db.events("auth.user.registered", email)) == 1

    assert await activate(api, *owner_link) == 200
    assert (await api.login(email, OWNER_PASSWORD)).status_code == 200
    assert (await api.login(email, ATTACKER_PASSWORD)).status_code == 400
    assert await activate(api, *attacker_link) == 400
    assert (await api.login(email, OWNER_PASSWORD)).status_code == 200


async def test_each_activation_link_activates_the_password_of_its_own_registration(api, db):
    email = api.new_email("bound")
    passwords = ["First-Choice-11", "Second-Choice-22", "Third-Choice-33"]
    for password in passwords:
        assert (await api.register(email, password)).status_code == 201
    links = [api.activation_link(email)] + [
        api.link_parts(n["activation_url"])
        for n in db.events("auth.user.already_registered", email)
    ]
    assert len(links) == 3

    assert await activate(api, *links[1]) == 200

    assert (await api.login(email, passwords[1])).status_code == 200
    for other in (passwords[0], passwords[2]):
        assert (await api.login(email, other)).status_code == 400
    assert [await activate(api, *link) for link in (links[0], links[2])] == [400, 400]


async def test_registering_an_activated_address_sends_no_activation_link(api, db):
    email = await api.register_active()
    await api.register(email, "Another-Pass-77")
    [notice] = db.events("auth.user.already_registered", email)
    assert notice.get("activation_url") is None
    assert db.query(
        "SELECT count(*) FROM link_tokens WHERE user_id = %s AND used_at IS NULL",
        db.user(email)["id"],
    ) == [(0,)]


async def test_activation_link_made_before_links_carried_a_password_is_refused(api, db):
    # Such a link could activate whatever password the address's latest registration set.
    email = api.new_email("legacy")
    await api.register(email)
    uid, token = api.activation_link(email)
    db.query("UPDATE link_tokens SET password_hash = NULL WHERE user_id = %s", db.user(email)["id"])
    response = await api.client.get(f"/api/activate/{uid}/{token}/")
    assert response.status_code == 400
    assert "expired" in response.json()["message"]
    assert db.user(email)["is_active"] is False
    # Registering again sends the owner a link bound to the new password.
    assert (await api.register(email, "Fresh-Start-2026")).status_code == 201
    [notice] = db.events("auth.user.already_registered", email)
    assert (
        await api.client.get(
            "/api/activate/{}/{}/".format(*api.link_parts(notice["activation_url"]))
        )
    ).status_code == 200
    assert (await api.login(email, "Fresh-Start-2026")).status_code == 200


async def click_after(api, delay: float, uid: str, token: str):
    await asyncio.sleep(delay)
    return await api.client.get(f"/api/activate/{uid}/{token}/")


async def test_a_registration_racing_the_activation_leaves_no_open_link(api, db):
    # Whichever commits first, the attempt's link is either spent by the activation or
    # never made (the account is already active): nothing can switch the password later.
    # The click is delayed in steps across the registration's hashing time, so some rounds
    # land while the registration's transaction (its new link) is open.
    for step in range(16):
        email = api.new_email("race")
        await api.register(email, OWNER_PASSWORD)
        uid, token = api.activation_link(email)

        attempt, activated = await asyncio.gather(
            api.register(email, ATTACKER_PASSWORD),
            click_after(api, step * 0.004, uid, token),
        )
        assert (activated.status_code, attempt.status_code) == (200, 201)
        user = db.user(email)
        open_links = db.query(
            "SELECT count(*) FROM link_tokens WHERE user_id = %s AND used_at IS NULL", user["id"]
        )
        assert user["is_active"] is True, step
        assert open_links == [(0,)], step
        assert (await api.login(email, OWNER_PASSWORD)).status_code == 200
