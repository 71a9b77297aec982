"""Email-only store queries (store thread functions): messages by Message-ID
for reply threading, and inbound mail threaded to a known message. Statuses
and events are messagedb's, shared with SMS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from engine.store.messagedb import _event
from engine.store.schema import campaigns, messages

M = messages.c


def outbound(conn: Connection, message_id: int) -> dict[str, Any] | None:
    """One outbound message with its campaign's name (None if there is none)."""
    row = (
        conn.execute(
            select(messages, campaigns.c.name.label("campaign"))
            .outerjoin(campaigns, campaigns.c.id == M.campaign_id)
            .where(M.id == message_id, M.direction == "out")
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


def by_refs(conn: Connection, refs: Sequence[str], since: datetime) -> int | None:
    """The newest outbound email sent since `since` whose Message-ID is one of `refs`."""
    wanted = [r.strip() for r in refs if r and r.strip()]
    if not wanted:
        return None
    found = conn.execute(
        select(M.id)
        .where(
            M.message_ref.in_(wanted[:50]),
            M.direction == "out",
            M.channel == "email",
            M.created_at >= since,
        )
        .order_by(M.id.desc())
        .limit(1)
    ).scalar()
    return int(found) if found is not None else None


def last_to(conn: Connection, address: str, since: datetime) -> int | None:
    """The last email sent to `address` since `since`."""
    found = conn.execute(
        select(M.id)
        .where(
            M.address == address.lower(),
            M.direction == "out",
            M.channel == "email",
            M.created_at >= since,
        )
        .order_by(M.id.desc())
        .limit(1)
    ).scalar()
    return int(found) if found is not None else None


def record_inbound(
    conn: Connection, values: Mapping[str, Any], parent_id: int | None, now: datetime
) -> int:
    """Store an inbound email (a reply, an auto-reply, a bounce or a complaint
    as received), threaded to `parent_id` when known."""
    row = {**values, "channel": "email", "direction": "in", "status": "received",
           "created_at": now, "updated_at": now, "final_at": now}  # fmt: skip
    if parent_id is not None:
        parent = conn.execute(select(M.contact_id).where(M.id == parent_id)).first()
        row.update(thread_id=parent_id, contact_id=parent.contact_id if parent else None)
        if values.get("keyword") in (None, "reply"):
            conn.execute(
                update(messages)
                .where(M.id == parent_id)
                .values(replies=M.replies + 1, thread_closed_at=None)
            )
    message_id = int(conn.execute(messages.insert().values(**row)).inserted_primary_key[0])  # type: ignore[index]
    _event(conn, message_id, "received", now, values.get("keyword"))
    return message_id


def event(conn: Connection, message_id: int, label: str, detail: Any, now: datetime) -> None:
    _event(conn, message_id, label[:16], now, detail)
