"""Passwords: argon2id hashing and the rules a new password must meet.

Hashing runs in a worker thread: argon2 is deliberately slow and would otherwise block the
event loop for every other request. At most `max_concurrent` hashes run at once per process:
a flood of registrations queues here instead of taking every core (and memory) from the
requests that do not hash, and a request that cannot get a slot within `wait_seconds` gets
`HashingBusy` (an `Unavailable`: a 503 with Retry-After) instead of waiting without bound.
`PasswordHasher.burn` spends the same time as a real hash/verify for branches that have no
user, so timing does not reveal whether an address has an account.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from videoflix_shared.errors import Unavailable

if TYPE_CHECKING:
    from videoflix_auth.settings import AuthSettings

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 takes any length; a cap keeps hashing cost bounded

T = TypeVar("T")


class HashingBusy(Unavailable):
    """Every hashing slot stayed taken for longer than the wait bound: shed the request
    instead of queueing it (a registration flood)."""

    default_message = "The service is busy. Please try again shortly."


@functools.cache
def common_passwords() -> frozenset[str]:
    text = resources.files("videoflix_auth").joinpath("data/common_passwords.txt").read_text()
    return frozenset(
        line.strip().casefold() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def password_problems(password: str, *, email: str) -> list[str]:
    """Every rule `password` breaks, as messages for a field error (empty when it is fine)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(
            f"This password is too short. It must contain at least {MIN_LENGTH} characters."
        )
    if len(password) > MAX_LENGTH:
        problems.append(
            f"This password is too long. It may contain at most {MAX_LENGTH} characters."
        )
    if email and password.casefold() == email.casefold():
        problems.append("The password must not be the same as the email address.")
    if password.casefold() in common_passwords():
        problems.append("This password is too common.")
    return problems


class PasswordHasher:
    def __init__(
        self,
        *,
        time_cost: int,
        memory_kib: int,
        parallelism: int,
        max_concurrent: int = 1,
        wait_seconds: float = 2.0,
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        # A hash no password matches, verified against when there is no user.
        self._dummy_hash = self._hasher.hash("videoflix-dummy-password")
        self._slots = asyncio.Semaphore(max_concurrent)
        self._wait_seconds = wait_seconds

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> PasswordHasher:
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            max_concurrent=settings.hash_concurrency,
            wait_seconds=settings.hash_wait_seconds,
        )

    async def hash(self, password: str) -> str:
        return await self._in_slot(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._in_slot(self._verify, password_hash, password)

    async def burn(self, password: str) -> None:
        """Spend the time of a verification without a real hash (unknown account)."""
        await self._in_slot(self._verify, self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    async def _in_slot(self, work: Callable[..., T], *args: str) -> T:
        try:
            async with asyncio.timeout(self._wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise HashingBusy(retry_after=max(1, math.ceil(self._wait_seconds))) from None
        try:
            return await asyncio.to_thread(work, *args)
        finally:
            self._slots.release()

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
