"""What auth publishes (through the outbox): the mail events, with full frontend links.

The links point at the frontend pages the API contract names, which call the API:
`<FRONTEND_URL>/pages/auth/activate.html?uid=<uidb64>&token=<token>` and
`<FRONTEND_URL>/pages/auth/confirm_password.html?uid=<uidb64>&token=<token>`.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from videoflix_auth.settings import AuthSettings
from videoflix_auth.tokens import encode_uid
from videoflix_shared.events import PasswordResetRequested, UserAlreadyRegistered, UserRegistered

ACTIVATION_PAGE = "/pages/auth/activate.html"
CONFIRM_PASSWORD_PAGE = "/pages/auth/confirm_password.html"  # noqa: S105 (a page, not a secret)

PUBLISHES = (UserRegistered, UserAlreadyRegistered, PasswordResetRequested)


def frontend_link(settings: AuthSettings, page: str, **query: str) -> str:
    base = settings.frontend_url.rstrip("/")
    return f"{base}{page}" + (f"?{urlencode(query)}" if query else "")


def user_registered(
    settings: AuthSettings, *, user_id: int, email: str, token: str, expires_at: datetime
) -> UserRegistered:
    return UserRegistered(
        user_id=user_id,
        email=email,
        activation_url=frontend_link(
            settings, ACTIVATION_PAGE, uid=encode_uid(user_id), token=token
        ),
        expires_at=expires_at,
    )


def user_already_registered(
    settings: AuthSettings,
    *,
    user_id: int,
    email: str,
    token: str | None = None,
    expires_at: datetime | None = None,
) -> UserAlreadyRegistered:
    """The owner's notice; with `token` (inactive account) it carries that attempt's link."""
    activation_url = None
    if token is not None:
        activation_url = frontend_link(
            settings, ACTIVATION_PAGE, uid=encode_uid(user_id), token=token
        )
    return UserAlreadyRegistered(
        user_id=user_id,
        email=email,
        login_url=frontend_link(settings, settings.frontend_login_path),
        password_reset_url=frontend_link(settings, settings.frontend_forgot_password_path),
        activation_url=activation_url,
        expires_at=expires_at,
    )


def password_reset_requested(
    settings: AuthSettings, *, user_id: int, email: str, token: str, expires_at: datetime
) -> PasswordResetRequested:
    return PasswordResetRequested(
        user_id=user_id,
        email=email,
        reset_url=frontend_link(
            settings, CONFIRM_PASSWORD_PAGE, uid=encode_uid(user_id), token=token
        ),
        expires_at=expires_at,
    )
