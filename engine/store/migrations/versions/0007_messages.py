"""Messages: every SMS and email sent or received, with its status history; email
addresses on do-not-contact lists.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Like the earlier revisions, this file spells its columns out rather than
importing the live schema (tests compare the two).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OPEN = ("queued", "submitting", "deferred")


def _time(name: str, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaigns.id")),
        sa.Column("contact_id", sa.BigInteger()),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("encoding", sa.String(8)),
        sa.Column("segments", sa.SmallInteger(), nullable=False, server_default="1"),
        sa.Column("template", sa.String(200)),
        sa.Column("subject", sa.Text()),
        sa.Column("html", sa.Text()),
        sa.Column("message_ref", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("carrier_id", sa.String(100)),
        sa.Column("error", sa.Text()),
        sa.Column("tries", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("in_doubt", sa.SmallInteger(), nullable=False, server_default="0"),
        _time("next_attempt_at"),
        sa.Column("thread_id", sa.BigInteger()),
        sa.Column("keyword", sa.String(32)),
        sa.Column("replies", sa.Integer(), nullable=False, server_default="0"),
        _time("thread_closed_at"),
        _time("created_at", nullable=False),
        _time("submitted_at"),
        _time("final_at"),
        _time("updated_at", nullable=False),
    )
    op.create_index("ix_messages_campaign_status", "messages", ["campaign_id", "status"])
    op.create_index("ix_messages_address", "messages", ["address", "direction", "created_at"])
    op.create_index("ix_messages_ref", "messages", ["message_ref"])
    op.create_index(
        "uq_messages_campaign_contact",
        "messages",
        ["campaign_id", "contact_id"],
        unique=True,
        sqlite_where=sa.text("campaign_id IS NOT NULL"),
        postgresql_where=sa.text("campaign_id IS NOT NULL"),
    )
    op.create_index(
        "ix_messages_open",
        "messages",
        ["status", "next_attempt_at"],
        sqlite_where=sa.text("status IN ('queued', 'submitting', 'deferred')"),
        postgresql_where=sa.text("status IN ('queued', 'submitting', 'deferred')"),
    )
    op.create_table(
        "message_parts",
        sa.Column("message_id", sa.BigInteger(), primary_key=True),
        sa.Column("part", sa.SmallInteger(), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("carrier_id", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _time("at", nullable=False),
    )
    op.create_index("ix_message_parts_carrier", "message_parts", ["account", "carrier_id"])
    op.create_table(
        "message_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        _time("at", nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text()),
    )
    op.create_index("ix_message_events_message", "message_events", ["message_id", "id"])
    op.create_table(
        "dnc_addresses",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("list_id", sa.Integer(), sa.ForeignKey("dnc_lists.id"), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        _time("added_at", nullable=False),
        _time("expires_at"),
        sa.Column("note", sa.Text()),
        sa.UniqueConstraint("list_id", "address", name="uq_dnc_addresses_list_address"),
    )
    op.create_index("ix_dnc_addresses_address", "dnc_addresses", ["address"])


def downgrade() -> None:
    op.drop_index("ix_dnc_addresses_address", "dnc_addresses")
    op.drop_table("dnc_addresses")
    op.drop_index("ix_message_events_message", "message_events")
    op.drop_table("message_events")
    op.drop_index("ix_message_parts_carrier", "message_parts")
    op.drop_table("message_parts")
    for name in (
        "ix_messages_open", "uq_messages_campaign_contact", "ix_messages_ref",
        "ix_messages_address",
        "ix_messages_campaign_status",
    ):  # fmt: skip
        op.drop_index(name, "messages")
    op.drop_table("messages")
