"""Property-based fuzzing of auth's OpenAPI document (schemathesis): no input yields a 5xx,
and every answer is JSON.

The in-process ASGI app runs its real lifespan once (PostgreSQL, Redis, NATS); generated
requests, including random cookies and the CSRF header, go to it through a test client.
Positive and negative data generation; bounded examples keep it to a few seconds.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import DataGenerationMethod
from schemathesis.transports import RequestsTransport
from starlette_testclient import TestClient

from videoflix_auth.app import create_app


@pytest.fixture(scope="module")
def fuzz_client(make_settings):
    app = create_app(make_settings())
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture(scope="module")
def auth_openapi(fuzz_client):
    return schemathesis.from_asgi(
        "/openapi.json",
        fuzz_client.app,
        data_generation_methods=[DataGenerationMethod.positive, DataGenerationMethod.negative],
    )


# FastAPI emits OpenAPI 3.1, which schemathesis 3.x supports behind this switch.
schemathesis.experimental.OPEN_API_3_1.enable()
schema = schemathesis.from_pytest_fixture("auth_openapi")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_requests_never_get_a_server_error(case, fuzz_client):
    response = RequestsTransport().send(case, session=fuzz_client, base_url="http://testserver")
    case.validate_response(response, checks=(not_a_server_error,))
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.status_code,
        response.text[:200],
    )
