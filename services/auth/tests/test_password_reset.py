"""POST /api/password_reset/ and POST /api/password_confirm/<uidb64>/<token>/."""

from __future__ import annotations

from datetime import datetime

import pytest

from videoflix_shared.events import PasswordResetRequested

RESET_SENT = {"detail": "An email has been sent to reset your password."}
RESET_DONE = {"detail": "Your Password has been successfully reset."}
NEW_PASSWORD = "Fresh-Start-2026"


async def request_reset(api, email: str):
    return await api.client.post("/api/password_reset/", json={"email": email})


async def reset_link(api, email: str) -> tuple[str, str]:
    assert (await request_reset(api, email)).json() == RESET_SENT
    events = api.db.events("auth.password_reset.requested", email)
    assert events
    return api.link_parts(events[-1]["reset_url"])


async def confirm(api, uid: str, token: str, new: str = NEW_PASSWORD, again: str | None = None):
    return await api.client.post(
        f"/api/password_confirm/{uid}/{token}/",
        json={"new_password": new, "confirm_password": new if again is None else again},
    )


async def test_reset_request_answers_the_same_for_any_address_and_mails_only_active(api, db):
    active = await api.register_active()
    inactive = api.new_email()
    await api.register(inactive)
    unknown = api.new_email("unknown")

    for email in (active, inactive, unknown):
        response = await request_reset(api, email)
        assert response.status_code == 200
        assert response.json() == RESET_SENT

    [event] = db.events("auth.password_reset.requested", active)
    parsed = PasswordResetRequested.model_validate(event)
    uid, token = api.link_parts(parsed.reset_url)
    assert parsed.reset_url == (
        f"http://127.0.0.1:5500/pages/auth/confirm_password.html?uid={uid}&token={token}"
    )
    minutes = (parsed.expires_at - datetime.now(parsed.expires_at.tzinfo)).total_seconds() / 60
    assert 59 < minutes <= 60
    assert db.events("auth.password_reset.requested", inactive) == []
    assert db.events("auth.password_reset.requested", unknown) == []


@pytest.mark.parametrize("email", ["not-an-address", "a@", "x" * 300 + "@example.com", ""])
async def test_reset_request_with_malformed_address_is_400(api, email):
    response = await request_reset(api, email)
    assert response.status_code == 400
    assert "email" in response.json()


@pytest.mark.usefixtures("db")
async def test_password_confirm_sets_password_and_ends_every_session(api, start_app):
    email = await api.logged_in()
    # A second login session (another browser) of the same user.
    async with start_app() as (_, other_browser):
        assert (await other_browser.login(email)).status_code == 200
        uid, token = await reset_link(api, email)

        response = await confirm(api, uid, token)

        assert response.status_code == 200
        assert response.json() == RESET_DONE
        assert (await api.client.post("/api/token/refresh/")).status_code == 401
        assert (await other_browser.client.post("/api/token/refresh/")).status_code == 401
    assert (await api.login(email)).status_code == 400
    assert (await api.login(email, NEW_PASSWORD)).status_code == 200


async def test_reset_link_is_single_use(api):
    email = await api.register_active()
    uid, token = await reset_link(api, email)
    assert (await confirm(api, uid, token)).status_code == 200
    again = await confirm(api, uid, token, "Another-Fresh-Pass-1")
    assert again.status_code == 400
    assert again.json() == {"detail": "This password reset link has already been used."}
    assert (await api.login(email, NEW_PASSWORD)).status_code == 200


async def test_using_a_reset_link_spends_older_ones(api):
    email = await api.register_active()
    old_uid, old_token = await reset_link(api, email)
    uid, token = await reset_link(api, email)
    assert (await confirm(api, uid, token)).status_code == 200
    assert (await confirm(api, old_uid, old_token, "Another-Fresh-Pass-1")).status_code == 400


async def test_expired_reset_link_is_refused(api, db):
    email = await api.register_active()
    uid, token = await reset_link(api, email)
    db.query(
        "UPDATE link_tokens SET expires_at = now() - interval '1 second' "
        "WHERE user_id = %s AND purpose = 'password_reset'",
        db.user(email)["id"],
    )
    response = await confirm(api, uid, token)
    assert response.status_code == 400
    assert "expired" in response.json()["detail"]
    assert (await api.login(email)).status_code == 200


async def test_forged_reset_link_and_activation_token_are_refused(api):
    email = await api.register_active()
    uid, token = await reset_link(api, email)
    assert (await confirm(api, uid, token[::-1])).status_code == 400
    assert (await confirm(api, "MA", token)).status_code == 400
    # An activation link is not a reset link.
    act_uid, act_token = api.activation_link(email)
    response = await confirm(api, act_uid, act_token)
    assert response.status_code == 400
    assert response.json() == {"detail": "This password reset link is invalid."}


@pytest.mark.parametrize(
    ("new", "again", "field"),
    [
        (NEW_PASSWORD, NEW_PASSWORD + "x", "confirm_password"),
        ("short", "short", "new_password"),
        ("qwerty123", "qwerty123", "new_password"),
        ("{email}", "{email}", "new_password"),
    ],
    ids=["mismatch", "too-short", "too-common", "equals-email"],
)
async def test_password_confirm_rejects_bad_passwords_and_keeps_link(api, new, again, field):
    email = await api.register_active()
    uid, token = await reset_link(api, email)
    response = await confirm(
        api, uid, token, new.replace("{email}", email), again.replace("{email}", email)
    )
    assert response.status_code == 400
    assert field in response.json()
    # Nothing changed: old password works and the link is still usable.
    assert (await api.login(email)).status_code == 200
    assert (await confirm(api, uid, token)).status_code == 200
