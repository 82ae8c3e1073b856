"""publish when ready

Revision ID: 4d2f7a9c1e63
Revises: b19467a52d52
Create Date: 2026-12-04 02:20:00

Videos uploaded before this keep their publication as the admin left it (false); new
uploads default to being published once transcoded.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4d2f7a9c1e63"
down_revision: str | None = "b19467a52d52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "video",
        sa.Column("publish_when_ready", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("video", "publish_when_ready")
