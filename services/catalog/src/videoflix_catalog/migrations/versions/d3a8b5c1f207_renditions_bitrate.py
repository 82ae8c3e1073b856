"""renditions_bitrate: per rendition average and peak bit rate and CRF

Revision ID: d3a8b5c1f207
Revises: a8d3e5f19c20
Create Date: 2026-12-04 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d3a8b5c1f207"
down_revision: str | None = "a8d3e5f19c20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "video",
        sa.Column(
            "renditions_bitrate",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("video", "renditions_bitrate")
