"""AMD samples: the recorded first seconds of machine-classified calls and an
operator's mark on each (person or machine), behind Ofcom's AMD
false-positive estimate.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Like the earlier revisions, this file spells its columns out rather than
importing the live schema (tests compare the two).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "amd_samples",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("campaign", sa.String(200), nullable=False),
        sa.Column("attempt_id", sa.BigInteger(), nullable=False, unique=True),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        _time("recorded_at", nullable=False),
        sa.Column("mark", sa.String(8)),
        sa.Column("marked_by", sa.String(64)),
        _time("marked_at"),
        sa.CheckConstraint(
            "mark IS NULL OR mark IN ('person', 'machine')", name="ck_amd_samples_mark"
        ),
    )
    op.create_index("ix_amd_samples_campaign_mark", "amd_samples", ["campaign", "mark"])


def downgrade() -> None:
    op.drop_index("ix_amd_samples_campaign_mark", "amd_samples")
    op.drop_table("amd_samples")
