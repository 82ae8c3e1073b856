"""No account enumeration: register, login and password reset answer an existing and an
unknown address with the same status and body, and their median times differ by < 20%.

Samples alternate between the two branches so a burst of load on the shared machine hits
both alike; medians ignore the odd outlier.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

SAMPLES = 21
MAX_RELATIVE_DIFFERENCE = 0.20

Call = Callable[[bool], Awaitable[httpx.Response]]  # (existing address?) -> response


async def measure(
    call: Call, answer: Callable[[httpx.Response, bool], Any], samples: int = SAMPLES
) -> None:
    """Alternate both branches; assert identical answers and close median times."""
    await call(True)  # warm-up: first-use costs (pool connections) belong to neither branch
    await call(False)
    times: dict[bool, list[float]] = {True: [], False: []}
    answers: dict[bool, set[Any]] = {True: set(), False: set()}
    for _ in range(samples):
        for existing in (True, False):
            start = time.perf_counter()
            response = await call(existing)
            times[existing].append(time.perf_counter() - start)
            answers[existing].add(answer(response, existing))
    assert len(answers[True]) == 1, answers
    assert answers[True] == answers[False], answers
    known, unknown = statistics.median(times[True]), statistics.median(times[False])
    difference = abs(known - unknown) / min(known, unknown)
    print(
        f"median existing {known * 1000:.1f} ms, unknown {unknown * 1000:.1f} ms, "
        f"difference {difference:.1%}"
    )
    assert difference < MAX_RELATIVE_DIFFERENCE


def status_and_body(response: httpx.Response, _existing: bool) -> tuple[int, bytes]:
    return response.status_code, response.content


async def test_register_does_not_reveal_existing_accounts(api):
    existing_email = await api.register_active()
    password = "Timing-Pass-2026"
    submitted: dict[bool, str] = {}

    async def call(existing: bool) -> httpx.Response:
        email = existing_email if existing else api.new_email("timing")
        submitted[existing] = email
        return await api.client.post(
            "/api/register/",
            json={"email": email, "password": password, "confirmed_password": password},
        )

    def answer(response: httpx.Response, existing: bool) -> tuple[int, str]:
        # The body echoes the submitted address; apart from it, it must be identical.
        body = response.json()
        assert body["user"] == {"email": submitted[existing]}
        return response.status_code, body["detail"]

    await measure(call, answer)


async def test_login_does_not_reveal_existing_accounts(api):
    existing_email = await api.register_active()
    unknown_email = api.new_email("nobody")

    async def call(existing: bool) -> httpx.Response:
        return await api.login(existing_email if existing else unknown_email, "Wrong-Guess-99")

    await measure(call, status_and_body)


async def test_password_reset_does_not_reveal_existing_accounts(start_app):
    # The default response floor (the shared test app turns it off to stay fast).
    async with start_app(AUTH_RESET_RESPONSE_FLOOR_MS=150) as (_, api):
        existing_email = await api.register_active()
        unknown_email = api.new_email("nobody")

        async def call(existing: bool) -> httpx.Response:
            return await api.client.post(
                "/api/password_reset/",
                json={"email": existing_email if existing else unknown_email},
            )

        await measure(call, status_and_body, samples=9)
        assert api.db.events("auth.password_reset.requested", existing_email)
        assert api.db.events("auth.password_reset.requested", unknown_email) == []
