"""Call analysis on attempts: AMD result and cause, decision time, voicemail
beep end and message start (milliseconds after the answer).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (
    ("amd_result", sa.String(16)),
    ("amd_cause", sa.String(64)),
    ("amd_ms", sa.Integer()),
    ("beep_end_ms", sa.Integer()),
    ("message_started_ms", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
