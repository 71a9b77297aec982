"""Compliance: several do-not-contact lists (entries by number or by contact,
with a source, an expiry and a note), the append-only compliance ledger, and
attempt columns for the contact's local time and the IVR path.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10

The one global `dnc` table of 0001 becomes the list named `internal`; a list
`opt-outs` (kind optout) is created beside it, the default `optout_list` of a
campaign. Like 0001, this file spells its columns out rather than importing
the live schema; only the trigger statements are shared (tests check the two
agree).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ATTEMPT_COLUMNS = (
    ("local_time", sa.String(40)),
    ("ivr_path", sa.Text()),
    ("ivr_summary", sa.Text()),
)
APPEND_ONLY_MESSAGE = "compliance_ledger is append-only"
SQLITE_TRIGGERS = tuple(
    f"CREATE TRIGGER compliance_ledger_no_{verb.lower()} BEFORE {verb} ON compliance_ledger "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
    for verb in ("UPDATE", "DELETE")
)
POSTGRESQL_TRIGGERS = (
    "CREATE FUNCTION compliance_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$",
    "CREATE TRIGGER compliance_ledger_append_only BEFORE UPDATE OR DELETE ON "
    "compliance_ledger FOR EACH ROW EXECUTE FUNCTION compliance_ledger_append_only()",
)


def _time(name: str, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _now() -> datetime:
    now = datetime.now(UTC)
    # SQLite keeps naive UTC text (see schema.UTCDateTime)
    return now.replace(tzinfo=None) if op.get_bind().dialect.name == "sqlite" else now


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        for name, kind in ATTEMPT_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    lists = op.create_table(
        "dnc_lists",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        _time("created_at", nullable=False),
    )
    op.create_table(
        "dnc_entries",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("list_id", sa.Integer(), sa.ForeignKey("dnc_lists.id"), nullable=False),
        sa.Column("number", sa.String(20)),
        sa.Column("contact_id", sa.BigInteger()),
        sa.Column("source", sa.String(64), nullable=False),
        _time("added_at", nullable=False),
        _time("expires_at"),
        sa.Column("note", sa.Text()),
        sa.CheckConstraint(
            "(number IS NULL) <> (contact_id IS NULL)", name="ck_dnc_entries_number_or_contact"
        ),
        sa.UniqueConstraint("list_id", "number", name="uq_dnc_entries_list_number"),
        sa.UniqueConstraint("list_id", "contact_id", name="uq_dnc_entries_list_contact"),
    )
    op.create_index("ix_dnc_entries_number", "dnc_entries", ["number"])
    op.create_index("ix_dnc_entries_contact", "dnc_entries", ["contact_id"])
    now = _now()
    op.bulk_insert(
        lists,
        [
            {"id": 1, "name": "internal", "kind": "internal", "created_at": now},
            {"id": 2, "name": "opt-outs", "kind": "optout", "created_at": now},
        ],
    )
    op.execute(
        "INSERT INTO dnc_entries (list_id, number, source, added_at, expires_at) "
        "SELECT 1, number, source, created_at, expires_at FROM dnc"
    )
    op.drop_table("dnc")
    op.create_table(
        "compliance_ledger",
        sa.Column("id", BigId, primary_key=True),
        _time("at", nullable=False),
        sa.Column("campaign", sa.String(200)),
        sa.Column("contact_id", sa.BigInteger()),
        sa.Column("number", sa.String(20)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rule", sa.Text()),
        sa.Column("detail", sa.Text()),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("local_time", sa.String(40)),
    )
    op.create_index("ix_compliance_ledger_campaign_at", "compliance_ledger", ["campaign", "at"])
    op.create_index("ix_compliance_ledger_kind_at", "compliance_ledger", ["kind", "at"])
    # Append-only (the ledger is evidence): the database refuses UPDATE and
    # DELETE, whatever code or tool asks.
    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}.get(
        dialect, ()
    ):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER compliance_ledger_append_only ON compliance_ledger")
        op.execute("DROP FUNCTION compliance_ledger_append_only()")
    op.drop_index("ix_compliance_ledger_kind_at", "compliance_ledger")
    op.drop_index("ix_compliance_ledger_campaign_at", "compliance_ledger")
    op.drop_table("compliance_ledger")  # SQLite drops its triggers with it
    op.create_table(
        "dnc",
        sa.Column("number", sa.String(20), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        _time("created_at", nullable=False),
        _time("expires_at"),
    )
    # One global list again: every number entry of every list, the latest
    # of a number's entries kept. Contact entries have no place there.
    op.execute(
        "INSERT INTO dnc (number, source, created_at, expires_at) "
        "SELECT number, source, added_at, expires_at FROM dnc_entries e "
        "WHERE number IS NOT NULL AND id = (SELECT max(id) FROM dnc_entries "
        "WHERE number = e.number)"
    )
    op.drop_index("ix_dnc_entries_contact", "dnc_entries")
    op.drop_index("ix_dnc_entries_number", "dnc_entries")
    op.drop_table("dnc_entries")
    op.drop_table("dnc_lists")
    with op.batch_alter_table("attempts") as batch:
        for name, _ in reversed(ATTEMPT_COLUMNS):
            batch.drop_column(name)
