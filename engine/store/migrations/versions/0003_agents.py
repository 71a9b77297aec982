"""Agents: attempt columns for the agent who took the call and the wrap-up;
agent state history, agents added by command, the abandon ledger, and
scheduled callbacks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Like 0001, this file spells its columns out rather than importing the live
schema (which moves on); tests check that the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ATTEMPT_COLUMNS = (
    ("agent", sa.String(64)),
    ("bridged_at", sa.DateTime(timezone=True)),
    ("answer_to_agent_ms", sa.Integer()),
    ("greeting_end_ms", sa.Integer()),
    ("wrapup_code", sa.String(64)),
)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        for name, kind in ATTEMPT_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        "agent_states",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200)),
        sa.Column("campaign", sa.String(200)),
        sa.Column("attempt_id", sa.BigInteger()),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agent_states_agent_at", "agent_states", ["agent", "at"])
    op.create_table(
        "agent_accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password", sa.String(200)),
        sa.Column("uri", sa.String(500)),
        sa.Column("campaigns", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "abandons",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("campaign", sa.String(200), nullable=False),
        sa.Column("attempt_id", sa.BigInteger(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("greeting_end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_started_at", sa.DateTime(timezone=True)),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_abandons_campaign_at", "abandons", ["campaign", "at"])
    op.create_index("ix_abandons_number_at", "abandons", ["number", "at"])
    op.create_table(
        "callbacks",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("campaign", sa.String(200), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("agent", sa.String(64)),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64)),
        sa.Column("attempt_id", sa.BigInteger()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_callbacks_due", "callbacks", ["campaign", "state", "due_at"])


def downgrade() -> None:
    for index, table in (
        ("ix_callbacks_due", "callbacks"),
        ("ix_abandons_number_at", "abandons"),
        ("ix_abandons_campaign_at", "abandons"),
        ("ix_agent_states_agent_at", "agent_states"),
    ):
        op.drop_index(index, table)
    for table in ("callbacks", "abandons", "agent_accounts", "agent_states"):
        op.drop_table(table)
    with op.batch_alter_table("attempts") as batch:
        for name, _ in reversed(ATTEMPT_COLUMNS):
            batch.drop_column(name)
