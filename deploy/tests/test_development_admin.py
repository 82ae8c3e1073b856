"""`make up` without a configured admin: a development admin is generated once, printed,
kept under the data directory and reused; production refuses to start without one."""

from __future__ import annotations

import json
import stat

import pytest

from deploy.devstack.config import DEV_ADMIN_EMAIL, ensure_development_admin


@pytest.fixture(autouse=True)
def no_admin_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ADMIN_EMAIL", "ADMIN_PASSWORD", "ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


def test_a_development_admin_is_created_once_printed_and_reused(tmp_path, capsys) -> None:
    env: dict[str, str] = {}
    ensure_development_admin(env, tmp_path)
    printed = capsys.readouterr().err
    stored = json.loads((tmp_path / "dev-admin.json").read_text())
    assert stored["email"] == env["ADMIN_EMAIL"] == DEV_ADMIN_EMAIL
    assert stored["password"] == env["ADMIN_PASSWORD"]
    assert len(stored["password"]) >= 16
    assert stored["password"] in printed
    assert DEV_ADMIN_EMAIL in printed
    assert stat.S_IMODE((tmp_path / "dev-admin.json").stat().st_mode) == 0o600

    again: dict[str, str] = {}
    ensure_development_admin(again, tmp_path)
    assert again == env
    assert stored["password"] not in capsys.readouterr().err, "the password is printed once"


def test_a_configured_admin_is_left_alone(tmp_path) -> None:
    env = {"ADMIN_EMAIL": "boss@example.com", "ADMIN_PASSWORD": "Configured-2026"}
    ensure_development_admin(env, tmp_path)
    assert env == {"ADMIN_EMAIL": "boss@example.com", "ADMIN_PASSWORD": "Configured-2026"}
    assert not (tmp_path / "dev-admin.json").exists()


def test_production_without_an_admin_refuses_to_start(tmp_path) -> None:
    with pytest.raises(SystemExit, match="ADMIN_EMAIL and ADMIN_PASSWORD"):
        ensure_development_admin({"ENVIRONMENT": "production"}, tmp_path)
    assert not (tmp_path / "dev-admin.json").exists()
