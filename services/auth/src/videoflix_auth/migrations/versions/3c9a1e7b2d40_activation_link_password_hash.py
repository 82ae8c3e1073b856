"""activation links carry the password hash of their registration

Revision ID: 3c9a1e7b2d40
Revises: d5bfe5fe8e95
Create Date: 2026-12-04 01:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c9a1e7b2d40"
down_revision: str | None = "d5bfe5fe8e95"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("link_tokens", sa.Column("password_hash", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("link_tokens", "password_hash")
