"""Sealing mail links: AES-256-GCM bound to its event and field, key ids, rotation."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from videoflix_shared.events import (
    PasswordResetRequested,
    UserAlreadyRegistered,
    UserRegistered,
    VideoUploaded,
)
from videoflix_shared.sealing import (
    SEALED_VERSION,
    MissingMailTokenKey,
    Sealer,
    SealingError,
    key_id,
    new_key,
    parse_key,
    sealed_fields,
    sealer_from_settings,
)

LINK = "http://127.0.0.1:5500/pages/auth/activate.html?uid=MQ&token=abc-secret-token"


def registered(**overrides) -> UserRegistered:
    values = {
        "user_id": 1,
        "email": "a@example.com",
        "activation_url": LINK,
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    }
    return UserRegistered(**{**values, **overrides})


def test_every_link_field_of_a_mail_event_is_sealed_and_opens_again():
    sealer = Sealer.from_text(new_key())
    notice = UserAlreadyRegistered(
        user_id=1, email="a@example.com", login_url="http://l/", password_reset_url="http://r/"
    )
    assert set(sealed_fields(notice)) == {"login_url", "password_reset_url", "activation_url"}
    assert sealer.seal(notice).activation_url is None  # an active account's notice: no link
    attempt = notice.model_copy(update={"activation_url": "http://a/?token=t"})
    assert sealer.open(sealer.seal(attempt)).activation_url == "http://a/?token=t"
    assert "token=t" not in sealer.seal(attempt).model_dump_json()
    assert sealed_fields(registered()) == ("activation_url",)
    sealed = sealer.seal(registered())
    assert sealed.version == SEALED_VERSION
    assert sealed.activation_url.startswith(f"vfx1.{sealer.current_id}.")
    assert "abc-secret-token" not in sealed.model_dump_json()
    assert sealer.open(sealed).activation_url == LINK
    assert sealer.open(sealer.seal(notice)).password_reset_url == "http://r/"
    # the same link sealed twice differs (random nonce)
    assert sealer.seal(registered()).activation_url != sealer.seal(registered()).activation_url


def test_events_without_links_are_left_alone():
    sealer = Sealer.from_text(new_key())
    uploaded = VideoUploaded(video_id=1, source_path="uploads/1/source.mp4")
    assert sealer.seal(uploaded) is uploaded


@pytest.mark.parametrize(
    "moved",
    [
        {"event_id": uuid.uuid4()},  # into another event
        {"email": "victim@example.com", "event_id": uuid.uuid4()},
    ],
)
def test_a_sealed_link_does_not_open_in_another_event(moved):
    sealer = Sealer.from_text(new_key())
    sealed = sealer.seal(registered())
    with pytest.raises(SealingError, match="tampered or misplaced"):
        sealer.open(registered(**moved, version=2, activation_url=sealed.activation_url))


def test_a_sealed_link_does_not_open_under_another_subject_or_field():
    sealer = Sealer.from_text(new_key())
    sealed = sealer.seal(registered())
    reset = PasswordResetRequested(
        event_id=sealed.event_id,
        version=2,
        user_id=1,
        email="a@example.com",
        reset_url=sealed.activation_url,
        expires_at=sealed.expires_at,
    )
    with pytest.raises(SealingError, match="reset_url"):
        sealer.open(reset)


def test_tampered_or_malformed_values_do_not_open():
    sealer = Sealer.from_text(new_key())
    sealed = sealer.seal(registered())
    body = sealed.activation_url
    flipped = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    for value in (flipped, body[:-4], "vfx1.x.y", "not sealed", body + "%%%"):
        with pytest.raises(SealingError):
            sealer.open(sealed.model_copy(update={"activation_url": value}))


def test_rotation_opens_with_previous_keys_and_seals_with_the_current_one():
    old, new = new_key(), new_key()
    before = Sealer.from_text(old).seal(registered())
    rotated = Sealer.from_text(new, f"{new_key()}, {old}")
    assert rotated.open(before).activation_url == LINK
    assert rotated.seal(registered()).activation_url.split(".")[1] == key_id(parse_key(new))
    with pytest.raises(SealingError, match="does not hold"):
        Sealer.from_text(new).open(before)


def test_keys_are_32_bytes_of_base64url():
    key = new_key()
    assert len(parse_key(key)) == 32
    assert parse_key(key.replace("-", "+").replace("_", "/") + "=") == parse_key(key)
    for bad in ("short", "!!!!", new_key()[:20]):
        with pytest.raises(ValueError, match="base64url"):
            parse_key(bad)


def test_a_key_is_required_in_production_only():
    with pytest.raises(MissingMailTokenKey, match="MAIL_TOKEN_KEY"):
        sealer_from_settings("", required=True, service="auth")
    assert sealer_from_settings("", required=False, service="auth") is None
    assert sealer_from_settings(new_key(), required=True, service="auth") is not None


def test_the_module_prints_a_new_key():
    out = subprocess.run(
        [sys.executable, "-m", "videoflix_shared.sealing"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert len(parse_key(out.stdout.strip())) == 32
