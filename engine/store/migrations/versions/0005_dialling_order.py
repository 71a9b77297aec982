"""Campaign rules: a contact's dialling-order key and last attempt time per
campaign (`sort:`), and the ready index in (priority, sort key, position)
order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-17

Existing rows get an empty key: a campaign without `sort:` dials as before,
and one that gains a sort has its keys computed when its file is loaded
(Store.upsert_campaign). Like the others, this file spells its columns out.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SORT_KEY = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("campaign_contacts") as batch:
        batch.add_column(sa.Column("sort_key", SORT_KEY, nullable=False, server_default=""))
        batch.add_column(sa.Column("last_attempt_at", sa.DateTime(timezone=True)))
    op.drop_index("ix_campaign_contacts_ready", "campaign_contacts")
    op.create_index(
        "ix_campaign_contacts_ready",
        "campaign_contacts",
        ["campaign_id", "dial_queue", sa.text("priority DESC"), "sort_key", "position"],
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_contacts_ready", "campaign_contacts")
    op.create_index(
        "ix_campaign_contacts_ready",
        "campaign_contacts",
        ["campaign_id", "dial_queue", sa.text("priority DESC"), "position"],
    )
    with op.batch_alter_table("campaign_contacts") as batch:
        batch.drop_column("last_attempt_at")
        batch.drop_column("sort_key")
