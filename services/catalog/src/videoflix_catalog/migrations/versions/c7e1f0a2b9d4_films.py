"""films: per-rung progress, ETA, queue place, transcoder heartbeat

Revision ID: c7e1f0a2b9d4
Revises: 4d2f7a9c1e63
Create Date: 2026-12-04 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c7e1f0a2b9d4"
down_revision: str | None = "4d2f7a9c1e63"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "video",
        sa.Column(
            "renditions_progress",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("video", sa.Column("eta_seconds", sa.Float(), nullable=True))
    op.add_column("video", sa.Column("queue_place", sa.Integer(), nullable=True))
    op.create_table(
        "transcoder_heartbeat",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("transcoder_heartbeat")
    op.drop_column("video", "queue_place")
    op.drop_column("video", "eta_seconds")
    op.drop_column("video", "renditions_progress")
