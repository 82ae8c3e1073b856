"""Property-based fuzzing of a service's OpenAPI document with schemathesis (tests only).

A test module builds its `fuzz_client` fixture (a started `TestClient` of the real app) and
then:

    @pytest.fixture(scope="module")
    def openapi(fuzz_client):
        return openapi_of(fuzz_client)

    schema = schemathesis.from_pytest_fixture("openapi")

    @schema.parametrize()
    @FUZZ_SETTINGS
    def test_fuzzed_requests_never_get_a_server_error(case, fuzz_client):
        send_and_check(case, fuzz_client)
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.transports import RequestsTransport

# FastAPI emits OpenAPI 3.1, which schemathesis 3.x supports behind this switch.
schemathesis.experimental.OPEN_API_3_1.enable()

# Bounded and deterministic: a few seconds per service, the same cases on every run.
FUZZ_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def openapi_of(client: Any) -> Any:
    """The app's OpenAPI document, for positive and negative cases."""
    return schemathesis.from_asgi(
        "/openapi.json",
        client.app,
        data_generation_methods=[
            schemathesis.DataGenerationMethod.positive,
            schemathesis.DataGenerationMethod.negative,
        ],
    )


def send_and_check(
    case: Any,
    client: Any,
    *,
    empty_ok: bool = False,
    content_types: tuple[str, ...] = ("application/json",),
) -> None:
    """No 5xx, and a body of one of `content_types` (or none, for a 204, when `empty_ok`)."""
    response = RequestsTransport().send(case, session=client, base_url="http://testserver")
    case.validate_response(response, checks=(not_a_server_error,))
    if empty_ok and response.status_code == 204:
        return
    assert response.headers.get("content-type", "").startswith(content_types), (
        response.status_code,
        response.text[:200],
    )
