"""Property-based fuzzing of auth's OpenAPI document (schemathesis): no input yields a 5xx,
and every answer is JSON.

The in-process ASGI app runs its real lifespan once (PostgreSQL, Redis, NATS); generated
requests, including random cookies and the CSRF header, go to it through a test client.
Positive and negative data generation; bounded examples keep it to a few seconds.
"""

from __future__ import annotations

import hypothesis_jsonschema._from_schema as hypothesis_jsonschema_internals
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.internal.conjecture import utils as conjecture_utils
from schemathesis.checks import not_a_server_error
from schemathesis.generation import DataGenerationMethod
from schemathesis.transports import RequestsTransport
from starlette_testclient import TestClient

from videoflix_auth.app import create_app


class _ManyWithMore(conjecture_utils.many):
    """hypothesis-jsonschema 0.23 (schemathesis' JSON generator) still calls the old
    `many.more()` protocol, which the installed Hypothesis replaced by `with many(...) as
    elements: for _ in elements:`. This adapter drives the new protocol step by step."""

    def more(self) -> bool:
        if self._depth is None:
            self.__enter__()
            self._steps = iter(self)
        if next(self._steps, StopIteration) is StopIteration:
            self.__exit__(None)
            return False
        return True


@pytest.fixture(scope="module", autouse=True)
def _jsonschema_generator_compatibility():
    if hasattr(conjecture_utils.many, "more"):
        yield  # an older Hypothesis: nothing to adapt
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hypothesis_jsonschema_internals.cu, "many", _ManyWithMore)
        yield


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
