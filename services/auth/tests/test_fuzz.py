"""Property-based fuzzing of auth's OpenAPI document (schemathesis): no input yields a 5xx,
and every answer is JSON.

The in-process ASGI app runs its real lifespan once (PostgreSQL, Redis, NATS); generated
requests, including random cookies and the CSRF header, go to it through a test client.
Positive and negative data generation; bounded examples keep it to a few seconds.
"""

from __future__ import annotations

import pytest
import schemathesis
from starlette_testclient import TestClient

from videoflix_auth.app import create_app
from videoflix_testing.fuzz import FUZZ_SETTINGS, openapi_of, send_and_check


@pytest.fixture(scope="module")
def fuzz_client(make_settings):
    app = create_app(make_settings())
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture(scope="module")
def auth_openapi(fuzz_client):
    return openapi_of(fuzz_client)


schema = schemathesis.from_pytest_fixture("auth_openapi")


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzzed_requests_never_get_a_server_error(case, fuzz_client):
    send_and_check(case, fuzz_client)
