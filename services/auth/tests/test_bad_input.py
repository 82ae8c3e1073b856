"""Bad input gets a clear 4xx JSON error and changes nothing; never a 500."""

from __future__ import annotations

import json

import pytest

from videoflix_shared.text import UNSTORABLE_TEXT
from videoflix_testing.plugin import free_port

ODD_EMAILS = [
    "user\x00@example.com",
    "user\ud800@example.com",  # lone surrogate: valid JSON escape, not valid text
    "us\u202eer@example.com",  # right-to-left override
    "us\u00e9r@example.com",  # non-ASCII local part
    "user\uff20example.com",  # fullwidth at sign
    "user@exa\u200bmple.com",  # zero-width space in the domain
    "<script>@example.com",
    "user@exam\nple.com",  # header injection attempt
    "a" * 65 + "@example.com",  # local part over 64 characters
    "user@" + "x" * 400 + ".com",
    "",
    " ",
]

BODIES = [
    pytest.param(b"{not json", "application/json", id="malformed-json"),
    pytest.param(b"[1, 2]", "application/json", id="array"),
    pytest.param(b'"text"', "application/json", id="string"),
    pytest.param(b"null", "application/json", id="null"),
    pytest.param(b"email=a@b.c", "application/x-www-form-urlencoded", id="form"),
    pytest.param(b"", "application/json", id="empty"),
    pytest.param(
        json.dumps({"email": 42, "password": ["x"], "confirmed_password": None}).encode(),
        "application/json",
        id="wrong-types",
    ),
    pytest.param(b"{}", "application/json", id="missing-fields"),
]

POST_PATHS = ["/api/register/", "/api/login/", "/api/password_reset/"]


def assert_error_body(response) -> None:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert body
    for value in body.values():
        assert isinstance(value, str) or all(isinstance(v, str) for v in value)


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize(("content", "content_type"), BODIES)
async def test_malformed_bodies_get_400_json_and_change_nothing(
    api, db, path, content, content_type
):
    before = (db.count("users"), db.count("outbox"))
    response = await api.client.post(path, content=content, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert_error_body(response)
    assert (db.count("users"), db.count("outbox")) == before


@pytest.mark.parametrize("email", ODD_EMAILS, ids=range(len(ODD_EMAILS)))
async def test_odd_unicode_emails_are_refused_everywhere(api, db, email):
    before = (db.count("users"), db.count("outbox"))
    password = "Sturdy-Pass-1"
    # json.dumps escapes the lone surrogate the way a client would send it.
    payloads = {
        "/api/register/": {"email": email, "password": password, "confirmed_password": password},
        "/api/login/": {"email": email, "password": password},
        "/api/password_reset/": {"email": email},
    }
    for path, payload in payloads.items():
        response = await api.client.post(
            path, content=json.dumps(payload), headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (path, response.text)
        assert_error_body(response)
    assert (db.count("users"), db.count("outbox")) == before


@pytest.mark.usefixtures("db")
async def test_odd_passwords_do_not_break_hashing(api):
    email = api.new_email()
    odd = "p\u00e4ss\ud83d\ude00word-\u202e-ok"  # umlaut, an emoji as surrogate pair, RTL mark
    response = await api.client.post(
        "/api/register/",
        content=json.dumps({"email": email, "password": odd, "confirmed_password": odd}),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 201


@pytest.mark.parametrize("password", ["p\x00ssword-long-enough", "password\ud800x-long-enough"])
async def test_passwords_with_nul_or_lone_surrogates_are_field_errors(api, db, password):
    """No service stores such text; a password is refused like any other field, clearly."""
    before = (db.count("users"), db.count("outbox"))
    for path, body in (
        ("/api/register/", {"password": password, "confirmed_password": password}),
        ("/api/login/", {"password": password}),
    ):
        response = await api.client.post(
            path,
            content=json.dumps({"email": api.new_email(), **body}),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400, (path, response.text)
        assert response.json() == {"password": [UNSTORABLE_TEXT]}
    assert (db.count("users"), db.count("outbox")) == before


async def test_oversized_body_gets_413(api, db):
    before = db.count("users")
    huge = {"email": "big@example.com", "password": "x" * 200_000, "confirmed_password": "x"}
    response = await api.client.post("/api/register/", json=huge)
    assert response.status_code == 413
    assert_error_body(response)
    assert db.count("users") == before


async def test_overlong_password_is_a_field_error(api):
    password = "Long-" + "x" * 2000
    response = await api.client.post(
        "/api/register/",
        json={"email": api.new_email(), "password": password, "confirmed_password": password},
    )
    assert response.status_code == 400
    assert "password" in response.json()


@pytest.mark.parametrize(
    "path",
    [
        "/api/activate/%00/%00/",
        "/api/activate/" + "A" * 5000 + "/x/",
        "/api/activate/\u00e9\u00e9/\ud7ff/",
        "/api/activate/MQ/",
    ],
    ids=["nul", "huge", "unicode", "missing-token"],
)
async def test_odd_activation_paths_are_4xx(api, path):
    response = await api.client.get(path)
    assert 400 <= response.status_code < 500
    assert_error_body(response)


async def test_unknown_path_and_wrong_method_are_json(api):
    assert (await api.client.get("/api/nope/")).status_code == 404
    response = await api.client.get("/api/login/")
    assert response.status_code == 405
    assert_error_body(response)


async def test_database_outage_answers_503_json_not_500(start_app):
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    async with start_app(AUTH_DATABASE_URL=unreachable) as (_, api):
        response = await api.register(api.new_email())
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
        assert_error_body(response)
        assert (await api.client.get("/readyz")).status_code == 503
