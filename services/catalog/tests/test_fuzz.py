"""Property-based fuzzing of catalog's OpenAPI document as the admin (schemathesis): no
input, text fields with NUL or control characters included, yields a 5xx, and every answer
is JSON.

A catalog of its own (own database) runs its real lifespan; generated requests carry the
admin's Bearer token so they reach the admin API's validation and business rules.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import DataGenerationMethod
from schemathesis.transports import RequestsTransport
from starlette_testclient import TestClient

from videoflix_catalog.app import create_app
from videoflix_catalog.settings import CatalogSettings


@pytest.fixture(scope="module")
def fuzz_client(fresh_catalog_env, token_issuer):
    app = create_app(CatalogSettings(**fresh_catalog_env("catalog_fuzz")))
    bearer = token_issuer.token(user_id=1, email="admin@example.com", is_admin=True)
    with TestClient(app, base_url="http://testserver") as client:
        client.headers["Authorization"] = f"Bearer {bearer}"
        yield client


@pytest.fixture(scope="module")
def catalog_openapi(fuzz_client):
    return schemathesis.from_asgi(
        "/openapi.json",
        fuzz_client.app,
        data_generation_methods=[DataGenerationMethod.positive, DataGenerationMethod.negative],
    )


# FastAPI emits OpenAPI 3.1, which schemathesis 3.x supports behind this switch.
schemathesis.experimental.OPEN_API_3_1.enable()
schema = schemathesis.from_pytest_fixture("catalog_openapi")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzzed_admin_requests_never_get_a_server_error(case, fuzz_client):
    response = RequestsTransport().send(case, session=fuzz_client, base_url="http://testserver")
    case.validate_response(response, checks=(not_a_server_error,))
    if response.status_code != 204:
        assert response.headers.get("content-type", "").startswith(
            ("application/json", "text/html")
        ), (response.status_code, response.text[:200])
