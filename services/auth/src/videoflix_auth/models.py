"""Auth's tables (its own database): users, single-use email link tokens, refresh tokens.
The outbox table comes from the shared library.

Secrets are never stored in clear: link and refresh tokens are kept as SHA-256 digests
(they are long random values, so a fast hash is enough), passwords as argon2id hashes.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from videoflix_shared.db import Base
from videoflix_shared.outbox import OutboxMessage

__all__ = ["Base", "LinkToken", "OutboxMessage", "RefreshToken", "User"]

ACTIVATION = "activation"
PASSWORD_RESET = "password_reset"  # noqa: S105 (a link purpose, not a secret)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Stored normalised (lower case, IDNA domain), so uniqueness ignores case.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    date_joined: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (CheckConstraint("email = lower(email)", name="ck_users_email_lower"),)


class LinkToken(Base):
    """An activation or password-reset link: single use, expiring.

    An activation link carries the password hash submitted with the registration that made
    it: activating sets exactly that password, so a link can never activate a password
    someone else chose for the address (NULL for reset links and links made before).
    """

    __tablename__ = "link_tokens"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (
        CheckConstraint(
            f"purpose IN ('{ACTIVATION}', '{PASSWORD_RESET}')", name="ck_link_tokens_purpose"
        ),
        Index("ix_link_tokens_user_purpose", "user_id", "purpose"),
    )


class RefreshToken(Base):
    """One refresh token of a login session ("family"); each refresh rotates it.

    `used_at` marks a token that was exchanged for its successor; presenting it again is
    reuse (a stolen copy) and revokes the whole family.
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
