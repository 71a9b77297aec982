"""Initial schema: contact lists, contacts and phones, campaigns, campaign
contacts, attempts, do-not-contact.

Revision ID: 0001
Revises:
Create Date: 2026-05-10

A frozen copy of engine/store/schema.py at this revision (migrations never
import the live schema, which moves on); tests check that the two agree.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "contact_lists",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("fields", sa.Text, nullable=False, server_default="{}"),
        _time("created_at", nullable=False),
    )
    op.create_table(
        "contacts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("list_id", sa.Integer, sa.ForeignKey("contact_lists.id"), nullable=False),
        sa.Column("external_id", sa.String(200)),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attributes", sa.Text, nullable=False, server_default="{}"),
        _time("created_at", nullable=False),
        sa.UniqueConstraint("list_id", "position", name="uq_contacts_list_position"),
    )
    op.create_table(
        "contact_phones",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("contact_id", sa.BigInteger, sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("list_id", sa.Integer, sa.ForeignKey("contact_lists.id"), nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("column_name", sa.String(200), nullable=False),
        sa.Column("rank", sa.SmallInteger, nullable=False),
        sa.UniqueConstraint("list_id", "number", name="uq_contact_phones_list_number"),
    )
    op.create_index("ix_contact_phones_number", "contact_phones", ["number"])
    op.create_index("ix_contact_phones_contact", "contact_phones", ["contact_id"])
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("list_id", sa.Integer, sa.ForeignKey("contact_lists.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
    )
    _campaign_contacts()
    _attempts()
    op.create_table(
        "dnc",
        sa.Column("number", sa.String(20), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        _time("created_at", nullable=False),
        _time("expires_at"),
    )


def _campaign_contacts() -> None:
    op.create_table(
        "campaign_contacts",
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id"), primary_key=True),
        sa.Column("contact_id", sa.BigInteger, sa.ForeignKey("contacts.id"), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _time("next_attempt_at"),
        sa.Column("last_result", sa.String(32)),
        sa.Column("skip_reason", sa.Text),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("dial_queue", sa.SmallInteger, nullable=False, server_default="2"),
        _time("updated_at", nullable=False),
    )
    op.create_index(
        "ix_campaign_contacts_due", "campaign_contacts", ["campaign_id", "state", "next_attempt_at"]
    )
    op.create_index(
        "ix_campaign_contacts_waiting",
        "campaign_contacts",
        ["campaign_id", "dial_queue", "next_attempt_at"],
    )
    op.create_index(
        "ix_campaign_contacts_ready",
        "campaign_contacts",
        ["campaign_id", "dial_queue", sa.text("priority DESC"), "position"],
    )
    op.create_index("ix_campaign_contacts_contact", "campaign_contacts", ["contact_id"])


def _attempts() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("contact_id", sa.BigInteger, sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("trunk", sa.String(200), nullable=False),
        sa.Column("caller_id", sa.String(64)),
        sa.Column("call_id", sa.String(255)),
        _time("created_at", nullable=False),
        _time("invite_sent_at"),
        _time("ringing_at"),
        _time("answered_at"),
        _time("ended_at"),
        sa.Column("result", sa.String(32)),
        sa.Column("sip_status", sa.Integer),
        sa.Column("reason", sa.Text),
        sa.Column("q850_cause", sa.Integer),
        sa.Column("ended_by", sa.String(32)),
        sa.Column("duration_ms", sa.Integer),
    )
    op.create_index("ix_attempts_campaign", "attempts", ["campaign_id"])
    op.create_index("ix_attempts_contact", "attempts", ["contact_id"])
    op.create_index(
        "ix_attempts_open",
        "attempts",
        ["ended_at"],
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )


def downgrade() -> None:
    for table in (
        "dnc",
        "attempts",
        "campaign_contacts",
        "campaigns",
        "contact_phones",
        "contacts",
        "contact_lists",
    ):
        op.drop_table(table)
