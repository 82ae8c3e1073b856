"""Journey steps, timed: `with step(test, name):` records how long each took (and which
failed); conftest lists them in the terminal summary."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

STEP_TIMINGS: list[tuple[str, str, float]] = []  # (test, step, seconds)


@contextlib.contextmanager
def step(test: str, name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    except BaseException:
        STEP_TIMINGS.append((test, f"{name}  <- FAILED", time.monotonic() - started))
        raise
    STEP_TIMINGS.append((test, name, time.monotonic() - started))
