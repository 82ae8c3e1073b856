"""Auth's business logic: registration, activation, login sessions, password reset, admin.

No HTTP here: routes parse, call one verb, and turn its result into a response; refusals
are domain errors (`videoflix_shared.errors`), which the app factory maps to HTTP. Every
state change commits together with the event announcing it (outbox).

Enumeration: register, login and password reset must not tell whether an address has an
account, neither by answer nor by time. Register hashes the password in both branches,
login verifies against a dummy hash when there is no user, and a reset request answers no
sooner than a fixed floor (its known-address branch writes a link and an event, the other
branch nothing). Rate limits count the submitted address whether or not it has an account.

Registration never changes an existing account: each activation link carries the password
hash of the registration that made it, and activating sets exactly that password and spends
every other open activation link, so no link can activate a password its clicker did not set.

Overload: password hashing never runs while the session holds a database connection (the
pool is shared with requests that do not hash), and is bounded by the hasher's slots.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from videoflix_auth import events
from videoflix_auth.keys import KeySet
from videoflix_auth.metrics import (
    EXISTING_ADDRESS,
    INVALID_CREDENTIALS,
    LOGINS,
    REGISTERED,
    REGISTRATIONS,
    SUCCESS,
    counted,
)
from videoflix_auth.models import ACTIVATION, PASSWORD_RESET, LinkToken, RefreshToken, User
from videoflix_auth.passwords import PasswordHasher, password_problems
from videoflix_auth.ratelimit import (
    EMAILS_PER_ADDRESS,
    LOGIN_PER_EMAIL,
    LOGIN_PER_IP,
    REGISTER_PER_IP,
    RESET_PER_EMAIL,
    RESET_PER_IP,
    Limit,
    RateLimiter,
)
from videoflix_auth.settings import AuthSettings
from videoflix_auth.tokens import (
    MAX_SECRET_LENGTH,
    decode_uid,
    digest,
    issue_access_token,
    new_secret,
)
from videoflix_shared.errors import InvalidInput, Unauthorized
from videoflix_shared.outbox import add_event

logger = logging.getLogger(__name__)

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_LENGTH = 64
INVALID_EMAIL = "Enter a valid email address."
PASSWORDS_DIFFER = "Passwords do not match."

LINK_MESSAGES = {
    ACTIVATION: {
        "invalid": "This activation link is invalid.",
        "expired": "This activation link has expired. Please register again to get a new one.",
        "used": "This activation link has already been used.",
    },
    PASSWORD_RESET: {
        "invalid": "This password reset link is invalid.",
        "expired": "This password reset link has expired. Please request a new one.",
        "used": "This password reset link has already been used.",
    },
}


class InvalidCredentials(InvalidInput):
    """Unknown address, wrong password or inactive account: deliberately one error."""

    default_message = "Please check your input and try again."


class InvalidLink(InvalidInput):
    """An activation or reset link that is invalid, expired or used (see LINK_MESSAGES)."""


class InvalidRefreshToken(Unauthorized):
    default_message = "Refresh token is invalid, expired or revoked."


@dataclass(frozen=True)
class IssuedSession:
    user: User
    access_token: str
    refresh_token: str


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_email(raw: str, *, allow_test_domain: bool = False) -> str | None:
    """The canonical form of an address (lower case, ASCII/IDNA domain) or None if invalid.

    Non-ASCII local parts are refused: mail systems handle them unevenly and they invite
    look-alike addresses. `allow_test_domain` also admits the special-use `.test` domain,
    for the admin account only (an address like admin@videoflix.test never receives mail,
    so registration and password reset keep refusing it).
    """
    try:
        return _normalized_or_error(raw, allow_test_domain=allow_test_domain)
    except ValueError:
        return None


def _normalized_or_error(raw: str, *, allow_test_domain: bool) -> str:
    """Like `normalize_email`, but a ValueError says what is wrong with the address."""
    if not raw or len(raw) > MAX_EMAIL_LENGTH:
        raise ValueError(f"an address has 1 to {MAX_EMAIL_LENGTH} characters")
    try:
        validated = validate_email(
            raw.strip(),
            check_deliverability=False,
            allow_smtputf8=False,
            test_environment=allow_test_domain,
        )
    except (EmailNotValidError, UnicodeError) as exc:
        raise ValueError(str(exc)) from None
    email = (validated.ascii_email or validated.normalized).lower()
    local_part = email.rpartition("@")[0]
    if len(local_part) > MAX_LOCAL_PART_LENGTH or len(email) > MAX_EMAIL_LENGTH:
        raise ValueError("the address is longer than RFC 5321 allows")
    return email


class InvalidAdmin(ValueError):
    """The admin account cannot be put in place as configured; the message says why."""


def admin_configuration_problem(settings: AuthSettings) -> str | None:
    """Why auth must not start with these admin settings, or None.

    Production needs an admin; outside production a missing one is fine (`make up` creates
    a development admin itself, and `videoflix-auth create-admin` makes one any time).
    """
    if not settings.admin_email or not settings.admin_password:
        if settings.is_production:
            return "ENVIRONMENT=production needs ADMIN_EMAIL and ADMIN_PASSWORD (the admin account)"
        return None
    try:
        _normalized_or_error(settings.admin_email, allow_test_domain=True)
    except ValueError as exc:
        return f"ADMIN_EMAIL {settings.admin_email!r} is not a valid address: {exc}"
    problems = password_problems(settings.admin_password, email=settings.admin_email)
    if problems and settings.is_production:
        return f"ADMIN_PASSWORD is too weak: {' '.join(problems)}"
    return None


async def put_admin(
    session: AsyncSession, hasher: PasswordHasher, *, email: str, password: str, allow_weak: bool
) -> str:
    """Create the admin account, or make an existing account an active admin with this
    password (idempotent, safe when several processes do it at once); returns the address."""
    try:
        normalized = _normalized_or_error(email, allow_test_domain=True)
    except ValueError as exc:
        raise InvalidAdmin(f"{email!r} is not a valid address: {exc}") from None
    problems = password_problems(password, email=normalized)
    if problems and not allow_weak:
        raise InvalidAdmin(f"the password is too weak: {' '.join(problems)}")
    if problems:
        logger.warning("the admin password is weak (%s); accepted outside production", problems)
    existing = await session.scalar(select(User.password_hash).where(User.email == normalized))
    await session.rollback()  # no connection held while hashing
    if existing is not None and await hasher.verify(existing, password):
        password_hash = existing  # unchanged: no need to rehash every start
    else:
        password_hash = await hasher.hash(password)
    statement = insert(User).values(
        email=normalized, password_hash=password_hash, is_active=True, is_admin=True
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[User.email],
            set_={"password_hash": password_hash, "is_active": True, "is_admin": True},
        )
    )
    await session.commit()
    return normalized


class AuthService:
    def __init__(
        self,
        *,
        settings: AuthSettings,
        hasher: PasswordHasher,
        keys: KeySet,
        limiter: RateLimiter,
        on_event_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.hasher = hasher
        self.keys = keys
        self.limiter = limiter
        # Wakes the outbox relay so committed events leave at once instead of at its next poll.
        self.on_event_committed = on_event_committed

    # -- registration and activation ---------------------------------------------------------

    async def register(
        self,
        session: AsyncSession,
        *,
        email: str,
        password: str,
        confirmed_password: str,
        client_ip: str,
    ) -> str:
        """Create an inactive account and send its activation link; returns the address.

        An existing address keeps its account exactly as it is, with the same answer: its
        owner is told someone tried to register; while the account is not activated, that
        email carries a link activating this attempt's password (in case it was the owner).
        """
        with counted(REGISTRATIONS, success=REGISTERED) as outcome:
            normalized = self._validated_registration(email, password, confirmed_password)
            await self.limiter.hit(
                Limit(
                    REGISTER_PER_IP,
                    client_ip,
                    self.settings.register_limit_per_ip,
                    self.settings.register_window_seconds,
                ),
                self._email_budget(normalized),
            )
            # Before the first query (no connection held), and in every branch: same time.
            password_hash = await self.hasher.hash(password)
            user_id = await session.scalar(
                insert(User)
                .values(email=normalized, password_hash=password_hash)
                .on_conflict_do_nothing(index_elements=[User.email])
                .returning(User.id)
            )
            if user_id is not None:
                token, expires_at = await self._new_activation_link(session, user_id, password_hash)
                add_event(
                    session,
                    events.user_registered(
                        self.settings,
                        user_id=user_id,
                        email=normalized,
                        token=token,
                        expires_at=expires_at,
                    ),
                )
            else:
                outcome.label = EXISTING_ADDRESS
                await self._tell_owner_of_attempt(session, normalized, password_hash)
            await self._commit_with_event(session)
            return normalized

    def _validated_registration(self, email: str, password: str, confirmed_password: str) -> str:
        """The normalised address, or InvalidInput naming every broken rule at once."""
        normalized = normalize_email(email)
        errors: dict[str, list[str]] = {}
        if normalized is None:
            errors["email"] = [INVALID_EMAIL]
        problems = password_problems(password, email=normalized or email)
        if problems:
            errors["password"] = problems
        if password != confirmed_password:
            errors["confirmed_password"] = [PASSWORDS_DIFFER]
        if errors or normalized is None:
            raise InvalidInput.for_fields(errors)
        return normalized

    async def _tell_owner_of_attempt(
        self, session: AsyncSession, email: str, password_hash: str
    ) -> None:
        """The "someone tried to register" event; the account itself is left untouched."""
        # Locked so an activation running now sees (and spends) the link made here.
        existing = await session.scalar(select(User).where(User.email == email).with_for_update())
        assert existing is not None
        token = expires_at = None
        if not existing.is_active:
            token, expires_at = await self._new_activation_link(session, existing.id, password_hash)
        add_event(
            session,
            events.user_already_registered(
                self.settings,
                user_id=existing.id,
                email=existing.email,
                token=token,
                expires_at=expires_at,
            ),
        )

    async def _new_activation_link(
        self, session: AsyncSession, user_id: int, password_hash: str
    ) -> tuple[str, datetime]:
        return await self._new_link(
            session,
            user_id=user_id,
            purpose=ACTIVATION,
            ttl_seconds=self.settings.activation_ttl_seconds,
            password_hash=password_hash,
        )

    async def activate(self, session: AsyncSession, *, uidb64: str, token: str) -> None:
        """Activate the account with the password of the registration this link came from."""
        link = await self._valid_link(session, uidb64=uidb64, token=token, purpose=ACTIVATION)
        # Lock the user first: a registration attempt committing its link meanwhile is then
        # visible to _consume_link, which spends it with every other open activation link.
        user = await session.scalar(select(User).where(User.id == link.user_id).with_for_update())
        assert user is not None  # link tokens cascade with their user
        if user.is_active:
            await session.rollback()
            raise InvalidLink(LINK_MESSAGES[ACTIVATION]["used"])
        if link.password_hash is None:
            # Made before links carried their password: it could activate whichever password
            # the address's last registration set. Registering again gives a bound link.
            await session.rollback()
            raise InvalidLink(LINK_MESSAGES[ACTIVATION]["expired"])
        await self._consume_link(session, link)
        user.is_active = True
        user.password_hash = link.password_hash
        await session.commit()

    # -- sessions ------------------------------------------------------------------------------

    async def login(
        self, session: AsyncSession, *, email: str, password: str, client_ip: str
    ) -> IssuedSession:
        with counted(LOGINS, success=SUCCESS, refused=INVALID_CREDENTIALS):
            normalized = normalize_email(email, allow_test_domain=True)  # the admin may use .test
            email_limit = Limit(
                LOGIN_PER_EMAIL,
                normalized or email.strip().lower(),
                self.settings.login_limit_per_email,
                self.settings.login_window_seconds,
            )
            await self.limiter.hit(
                Limit(
                    LOGIN_PER_IP,
                    client_ip,
                    self.settings.login_limit_per_ip,
                    self.settings.login_window_seconds,
                ),
                email_limit,
            )
            user = None
            if normalized is not None:
                user = await session.scalar(select(User).where(User.email == normalized))
                await self._release_connection(session)  # before verifying
            if user is None:
                await self.hasher.burn(password)
                raise InvalidCredentials
            if not await self.hasher.verify(user.password_hash, password) or not user.is_active:
                raise InvalidCredentials
            await self.limiter.reset(email_limit)
            if self.hasher.needs_rehash(user.password_hash):
                user.password_hash = await self.hasher.hash(password)
            refresh_token = await self._new_refresh_token(
                session, user_id=user.id, family_id=uuid.uuid4()
            )
            await session.commit()
            return IssuedSession(user, self._access_token(user), refresh_token)

    async def refresh(self, session: AsyncSession, *, refresh_token: str) -> IssuedSession:
        """Exchange a refresh token for a new access token and its rotated successor.

        A token presented again within the reuse grace after it was exchanged (two tabs,
        parallel requests after a 401, a lost response) gets another successor in the same
        family. Later, it is a copy in someone else's hands: the whole family (this login
        session) is revoked.
        """
        if not refresh_token or len(refresh_token) > MAX_SECRET_LENGTH:
            raise InvalidRefreshToken
        token_hash = digest(refresh_token)
        claimed = (
            await session.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.token_hash == token_hash,
                    RefreshToken.used_at.is_(None),
                    RefreshToken.revoked_at.is_(None),
                    RefreshToken.expires_at > func.now(),
                )
                .values(used_at=func.now())
                .returning(RefreshToken.user_id, RefreshToken.family_id)
            )
        ).one_or_none()
        # Two presentations at once: the second UPDATE waits for the first one's row lock,
        # then matches nothing (used_at is set) and reads the committed claim below.
        user_id, family_id = claimed or await self._reuse_within_grace(session, token_hash)
        user = await session.get(User, user_id)
        if user is None or not user.is_active:
            await self._revoke_family(session, family_id)
            await session.commit()
            raise InvalidRefreshToken
        new_token = await self._new_refresh_token(session, user_id=user.id, family_id=family_id)
        await session.commit()
        return IssuedSession(user, self._access_token(user), new_token)

    async def _reuse_within_grace(
        self, session: AsyncSession, token_hash: str
    ) -> tuple[int, uuid.UUID]:
        """(user id, family) of an exchanged token presented again within the grace;
        otherwise InvalidRefreshToken, after revoking the family if the token was reused."""
        grace = timedelta(seconds=self.settings.refresh_reuse_grace_seconds)
        stored = (
            await session.execute(
                select(
                    RefreshToken.user_id,
                    RefreshToken.family_id,
                    RefreshToken.used_at,
                    RefreshToken.revoked_at,
                    (RefreshToken.used_at > func.now() - grace).label("in_grace"),
                    (RefreshToken.expires_at > func.now()).label("unexpired"),
                ).where(RefreshToken.token_hash == token_hash)
            )
        ).one_or_none()
        if stored is None or stored.used_at is None or stored.revoked_at is not None:
            raise InvalidRefreshToken  # unknown, expired unused, or revoked already
        if stored.in_grace and stored.unexpired:
            return stored.user_id, stored.family_id
        logger.warning(
            "refresh token reuse for user %s: revoking session family %s",
            stored.user_id,
            stored.family_id,
        )
        await self._revoke_family(session, stored.family_id)
        await session.commit()
        raise InvalidRefreshToken

    async def logout(self, session: AsyncSession, *, refresh_token: str) -> None:
        """Revoke the login session the refresh token belongs to (unknown tokens: nothing)."""
        if not refresh_token or len(refresh_token) > MAX_SECRET_LENGTH:
            return
        family_id = await session.scalar(
            select(RefreshToken.family_id).where(RefreshToken.token_hash == digest(refresh_token))
        )
        if family_id is not None:
            await self._revoke_family(session, family_id)
            await session.commit()

    async def get_user(self, session: AsyncSession, *, user_id: int) -> User | None:
        user = await session.get(User, user_id)
        return user if user is not None and user.is_active else None

    # -- password reset ------------------------------------------------------------------------

    async def request_password_reset(
        self, session: AsyncSession, *, email: str, client_ip: str
    ) -> None:
        normalized = normalize_email(email)
        if normalized is None:
            raise InvalidInput(INVALID_EMAIL, field="email")
        started = time.monotonic()
        await self.limiter.hit(
            Limit(
                RESET_PER_IP,
                client_ip,
                self.settings.reset_limit_per_ip,
                self.settings.reset_window_seconds,
            ),
            Limit(
                RESET_PER_EMAIL,
                normalized,
                self.settings.reset_limit_per_email,
                self.settings.reset_window_seconds,
            ),
            self._email_budget(normalized),
        )
        user = await session.scalar(
            select(User).where(User.email == normalized, User.is_active.is_(True))
        )
        if user is not None:
            token, expires_at = await self._new_link(
                session,
                user_id=user.id,
                purpose=PASSWORD_RESET,
                ttl_seconds=self.settings.password_reset_ttl_seconds,
            )
            add_event(
                session,
                events.password_reset_requested(
                    self.settings,
                    user_id=user.id,
                    email=user.email,
                    token=token,
                    expires_at=expires_at,
                ),
            )
            await self._commit_with_event(session)
        remaining = self.settings.reset_response_floor_ms / 1000 - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def confirm_password_reset(
        self,
        session: AsyncSession,
        *,
        uidb64: str,
        token: str,
        new_password: str,
        confirm_password: str,
    ) -> None:
        """Set a new password from a reset link and end every session of that user."""
        link = await self._valid_link(session, uidb64=uidb64, token=token, purpose=PASSWORD_RESET)
        user = await session.get(User, link.user_id)
        assert user is not None  # link tokens cascade with their user
        errors: dict[str, list[str]] = {}
        problems = password_problems(new_password, email=user.email)
        if problems:
            errors["new_password"] = problems
        if new_password != confirm_password:
            errors["confirm_password"] = [PASSWORDS_DIFFER]
        if errors:
            raise InvalidInput.for_fields(errors)
        await self._release_connection(session)  # before hashing
        password_hash = await self.hasher.hash(new_password)
        await self._consume_link(session, link)
        user.password_hash = password_hash
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
        await session.commit()

    # -- admin account -------------------------------------------------------------------------

    async def ensure_admin(self, session: AsyncSession) -> None:
        """Put the admin account from ADMIN_EMAIL / ADMIN_PASSWORD in place, if configured."""
        if not self.settings.admin_email or not self.settings.admin_password:
            logger.warning(
                "no admin account configured (ADMIN_EMAIL / ADMIN_PASSWORD); create one with "
                "`videoflix-auth create-admin EMAIL`"
            )
            return
        email = await put_admin(
            session,
            self.hasher,
            email=self.settings.admin_email,
            password=self.settings.admin_password,
            allow_weak=not self.settings.is_production,
        )
        logger.info("admin account %s is in place", email)

    # -- helpers -------------------------------------------------------------------------------

    def _access_token(self, user: User) -> str:
        return issue_access_token(
            self.keys.current,
            user_id=user.id,
            email=user.email,
            is_admin=user.is_admin,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            ttl_seconds=self.settings.access_token_ttl_seconds,
        )

    async def _new_refresh_token(
        self, session: AsyncSession, *, user_id: int, family_id: uuid.UUID
    ) -> str:
        token = new_secret()
        session.add(
            RefreshToken(
                user_id=user_id,
                family_id=family_id,
                token_hash=digest(token),
                expires_at=utcnow() + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            )
        )
        await session.flush()
        return token

    async def _revoke_family(self, session: AsyncSession, family_id: uuid.UUID) -> None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )

    def _email_budget(self, email: str) -> Limit:
        """The emails one address may be sent per window, shared by every endpoint that
        sends one (keyed on the submitted address, account or not)."""
        return Limit(
            EMAILS_PER_ADDRESS,
            email,
            self.settings.email_limit_per_address,
            self.settings.email_window_seconds,
        )

    @staticmethod
    async def _release_connection(session: AsyncSession) -> None:
        """End the (read-only so far) transaction: the connection goes back to the pool
        while this request hashes. Loaded objects stay usable (expire_on_commit=False)."""
        await session.commit()

    async def _new_link(
        self,
        session: AsyncSession,
        *,
        user_id: int,
        purpose: str,
        ttl_seconds: int,
        password_hash: str | None = None,
    ) -> tuple[str, datetime]:
        token = new_secret()
        expires_at = utcnow() + timedelta(seconds=ttl_seconds)
        session.add(
            LinkToken(
                user_id=user_id,
                purpose=purpose,
                token_hash=digest(token),
                expires_at=expires_at,
                password_hash=password_hash,
            )
        )
        await session.flush()
        return token, expires_at

    async def _valid_link(
        self, session: AsyncSession, *, uidb64: str, token: str, purpose: str
    ) -> LinkToken:
        messages = LINK_MESSAGES[purpose]
        user_id = decode_uid(uidb64)
        if user_id is None or not token or len(token) > MAX_SECRET_LENGTH:
            raise InvalidLink(messages["invalid"])
        link = await session.scalar(select(LinkToken).where(LinkToken.token_hash == digest(token)))
        if link is None or link.user_id != user_id or link.purpose != purpose:
            raise InvalidLink(messages["invalid"])
        if link.used_at is not None:
            raise InvalidLink(messages["used"])
        if link.expires_at <= utcnow():
            raise InvalidLink(messages["expired"])
        return link

    async def _consume_link(self, session: AsyncSession, link: LinkToken) -> None:
        """Mark the link used, atomically (two clicks at once: one wins), together with
        every other open link of the same purpose for that user."""
        claimed = await session.scalar(
            update(LinkToken)
            .where(LinkToken.id == link.id, LinkToken.used_at.is_(None))
            .values(used_at=func.now())
            .returning(LinkToken.id)
        )
        if claimed is None:
            await session.rollback()
            raise InvalidLink(LINK_MESSAGES[link.purpose]["used"])
        await session.execute(
            update(LinkToken)
            .where(
                LinkToken.user_id == link.user_id,
                LinkToken.purpose == link.purpose,
                LinkToken.used_at.is_(None),
            )
            .values(used_at=func.now())
        )

    async def _commit_with_event(self, session: AsyncSession) -> None:
        await session.commit()
        self.on_event_committed()
