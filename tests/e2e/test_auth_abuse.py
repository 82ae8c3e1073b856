"""Abuse of the auth surface through the gateway: a second registration cannot take over an
unactivated account, two refreshes at once keep the session, and however often an address
is submitted its owner receives a bounded number of emails."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.e2e.helpers import (
    Api,
    Mailbox,
    Stack,
    User,
    link_params,
    new_email,
    strong_password,
)

ACTIVATE_PAGE = "/pages/auth/activate.html"
EMAIL_BUDGET = 5  # AUTH_EMAIL_LIMIT_PER_ADDRESS's default, which the started stack keeps


def wait_for_count(mailbox: Mailbox, to: str, count: int, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(mailbox.messages(to)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} emails to {to}"
        time.sleep(0.2)


def activate(api: Api, message: dict[str, Any]) -> httpx.Response:
    _, query = link_params(message, ACTIVATE_PAGE)
    return api.get(f"/api/activate/{query['uid']}/{query['token']}/")


def test_a_second_registration_cannot_take_over_an_unactivated_account(
    api_factory, mailbox: Mailbox
) -> None:
    email = new_email("takeover")
    owner, attacker = User(email, strong_password()), User(email, strong_password())
    owner_api, attacker_api = api_factory(), api_factory()

    seen = mailbox.ids(email)
    assert owner_api.register(owner.email, owner.password).status_code == 201
    welcome = mailbox.wait_new(email, seen)
    seen.add(welcome["id"])
    first = attacker_api.register(attacker.email, attacker.password)
    assert first.status_code == 201
    notice = mailbox.wait_new(email, seen)
    assert notice["subject"].startswith("Someone tried to register with your email address")
    assert "If this was not you, ignore this email; nothing changes." in notice["text"]

    # The owner clicks the link of their own registration: their password, not the other.
    assert activate(owner_api, welcome).status_code == 200
    api_factory().login_ok(owner.email, owner.password)
    assert api_factory().login(attacker.email, attacker.password).status_code == 400
    # The attempt's link (in the owner's mailbox) was spent by the activation.
    assert activate(api_factory(), notice).status_code == 400
    assert api_factory().login(attacker.email, attacker.password).status_code == 400


def test_two_refreshes_at_once_both_succeed_and_the_session_survives(
    stack: Stack, active_user: User, api: Api
) -> None:
    api.login_ok(active_user.email, active_user.password)
    cookie = api.cookies["refresh_token"]

    def refresh_in_a_tab(_: int) -> httpx.Response:
        with httpx.Client(base_url=stack.base_url, timeout=30) as tab:
            return tab.post("/api/token/refresh/", headers={"Cookie": f"refresh_token={cookie}"})

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(refresh_in_a_tab, range(2)))

    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    for response in responses:
        with httpx.Client(base_url=stack.base_url, timeout=30) as tab:
            me = tab.get(
                "/api/user/",
                headers={"Authorization": f"Bearer {response.cookies['access_token']}"},
            )
            assert me.status_code == 200, me.text
            again = tab.post(
                "/api/token/refresh/",
                headers={"Cookie": f"refresh_token={response.cookies['refresh_token']}"},
            )
            assert again.status_code == 200, again.text


def test_25_registrations_of_one_address_deliver_at_most_5_emails(
    api: Api, mailbox: Mailbox
) -> None:
    email = new_email("flood")
    statuses = [api.register(email, strong_password()).status_code for _ in range(25)]

    assert statuses == [201] * EMAIL_BUDGET + [429] * (25 - EMAIL_BUDGET), statuses
    wait_for_count(mailbox, email, EMAIL_BUDGET)
    mailbox.assert_nothing_new(email, mailbox.ids(email))
    assert len(mailbox.messages(email)) == EMAIL_BUDGET


def test_register_and_password_reset_share_one_email_budget(
    api: Api, active_user: User, mailbox: Mailbox
) -> None:
    # active_user was sent its activation email: one of the budget is spent.
    email = active_user.email
    statuses = []
    for i in range(10):
        if i % 2:
            response = api.register(email, strong_password())
        else:
            response = api.post("/api/password_reset/", json={"email": email})
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) > 0
    assert statuses[: EMAIL_BUDGET - 1] == [200, 201, 200, 201], statuses
    assert set(statuses[EMAIL_BUDGET - 1 :]) == {429}, statuses
    wait_for_count(mailbox, email, EMAIL_BUDGET)
    mailbox.assert_nothing_new(email, mailbox.ids(email))
    assert len(mailbox.messages(email)) == EMAIL_BUDGET
