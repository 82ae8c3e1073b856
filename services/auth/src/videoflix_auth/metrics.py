"""Auth's Prometheus metrics: what became of sign-ins and registrations, and which rate
limit refused how many attempts.

- `videoflix_auth_logins_total{outcome}`: `success`, `invalid_credentials` (unknown
  address, wrong password or inactive account: one answer to the client, one outcome here),
  `rate_limited`, `error` (the database or hashing was unavailable);
- `videoflix_auth_registrations_total{outcome}`: `registered` (a new account),
  `existing_address` (the address has an account: its owner was emailed, nothing changed),
  `invalid_input` (address or password rules), `rate_limited`, `error`;
- `videoflix_auth_rate_limited_total{limit}`: attempts refused per limit (`login:ip`,
  `login:email`, `register:ip`, `reset:ip`, `reset:email`, `email:address`), counted once
  per limit that was over when an attempt was refused (ratelimit.py counts them).

The outcomes are counted in the service layer (`counted`), after the answer is decided.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import Counter

from videoflix_shared.errors import InvalidInput, RateLimited

SUCCESS = "success"
INVALID_CREDENTIALS = "invalid_credentials"
REGISTERED = "registered"
EXISTING_ADDRESS = "existing_address"
INVALID_INPUT = "invalid_input"
RATE_LIMITED = "rate_limited"
ERROR = "error"

LOGINS = Counter("videoflix_auth_logins_total", "Sign-in attempts by outcome", ["outcome"])
REGISTRATIONS = Counter(
    "videoflix_auth_registrations_total", "Registration attempts by outcome", ["outcome"]
)
RATE_LIMIT_HITS = Counter(
    "videoflix_auth_rate_limited_total", "Attempts refused by a rate limit, per limit", ["limit"]
)

# Every series exists from the start, so rates and alerts see a 0 rather than nothing.
for _outcome in (SUCCESS, INVALID_CREDENTIALS, RATE_LIMITED, ERROR):
    LOGINS.labels(_outcome)
for _outcome in (REGISTERED, EXISTING_ADDRESS, INVALID_INPUT, RATE_LIMITED, ERROR):
    REGISTRATIONS.labels(_outcome)


@dataclass
class Outcome:
    """What a successful attempt counts as; the verb may change it before it returns."""

    label: str


@contextlib.contextmanager
def counted(counter: Counter, *, success: str, refused: str = INVALID_INPUT) -> Iterator[Outcome]:
    """Count one attempt by how the block ends: `success` (or what it set on the yielded
    outcome), `rate_limited`, `refused` for invalid input (a wrong password included), or
    `error` for anything else."""
    outcome = Outcome(success)
    try:
        yield outcome
    except RateLimited:
        counter.labels(RATE_LIMITED).inc()
        raise
    except InvalidInput:
        counter.labels(refused).inc()
        raise
    except Exception:
        counter.labels(ERROR).inc()
        raise
    counter.labels(outcome.label).inc()
