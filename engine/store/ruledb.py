"""What a campaign's rules write (functions of a Connection, run on the store
thread): a contact's columns (`set`), its priority in a campaign
(`priority`), a move to another campaign (`move_to`), and the sort keys of
a campaign whose `sort:` changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from engine.errors import BadRequest, NotFound
from engine.store.dialorder import SortSpec, sort_key, spec_of
from engine.store.queries import CampaignIds, cc, rekey
from engine.store.schema import campaign_contacts, campaigns, contact_lists, contacts
from engine.store.types import FINISHED_STATES, IDLE, READY


def stored_spec(conn: Connection, name: str) -> SortSpec | None:
    """The `sort:` of the campaign as stored now (None: no such campaign yet)."""
    text = conn.execute(select(campaigns.c.definition).where(campaigns.c.name == name)).scalar()
    return None if text is None else spec_of(json.loads(text))


def enrolled_range(conn: Connection, ids: CampaignIds, name: str) -> tuple[int, int] | None:
    cid, _ = ids.get(conn, name)
    low, high = conn.execute(
        select(func.min(cc.contact_id), func.max(cc.contact_id)).where(cc.campaign_id == cid)
    ).one()
    return None if low is None else (int(low), int(high))


def set_columns(
    conn: Connection, ids: CampaignIds, contact_id: int, columns: Mapping[str, str | None],
    now: datetime,
) -> dict[str, str]:  # fmt: skip
    """Write (None: remove) the contact's columns; the list's export gains new
    ones, and sort keys on them are recomputed in every campaign of the contact.
    Returns the contact's columns afterwards."""
    row = conn.execute(
        select(contacts.c.attributes, contacts.c.list_id).where(contacts.c.id == contact_id)
    ).first()
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    attributes: dict[str, str] = json.loads(row[0] or "{}")
    for column, value in columns.items():
        if value is None:
            attributes.pop(column, None)
        else:
            attributes[column] = value
    conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id)
        .values(attributes=json.dumps(attributes))
    )
    _add_fields(conn, int(row[1]), [c for c, v in columns.items() if v is not None])
    for cid in conn.execute(select(cc.campaign_id).where(cc.contact_id == contact_id)).scalars():
        spec = ids.spec(conn, cid)
        if any(column in columns for column, _ in spec):
            rekey(conn, cid, spec, cc.contact_id == contact_id)
    return attributes


def _add_fields(conn: Connection, lid: int, names: list[str]) -> None:
    """New attribute columns join the list's export header."""
    text = conn.execute(select(contact_lists.c.fields).where(contact_lists.c.id == lid)).scalar()
    fields = json.loads(text or "{}")
    known = list(fields.get("attributes", []))
    added = [n for n in names if n not in known]
    if added:
        fields["attributes"] = known + added
        conn.execute(
            update(contact_lists).where(contact_lists.c.id == lid).values(fields=json.dumps(fields))
        )


def set_priority(
    conn: Connection, ids: CampaignIds, name: str, contact_id: int, priority: int, now: datetime
) -> None:
    """The contact's priority in one campaign (the ready index orders by it first)."""
    cid, _ = ids.get(conn, name)
    conn.execute(
        update(campaign_contacts)
        .where(cc.campaign_id == cid, cc.contact_id == contact_id)
        .values(priority=priority, updated_at=now)
    )


def move_contact(
    conn: Connection, ids: CampaignIds, name: str, contact_id: int, target: str, reason: str,
    now: datetime,
) -> str:  # fmt: skip
    """The contact leaves campaign `name` (done, `reason` in skip_reason) and is
    enrolled in `target`, which dials the same list: a new row (pending), or
    its row there reopened (pending) if it had finished; a row still under
    way there is left as it is. Returns "enrolled", "reopened" or "already"."""
    cid, lid = ids.get(conn, name)
    tid, target_list = ids.get(conn, target)
    if target_list != lid:
        raise BadRequest(f"campaign {target!r} dials another list; a contact moves within its list")
    conn.execute(
        update(campaign_contacts)
        .where(cc.campaign_id == cid, cc.contact_id == contact_id)
        .values(state="done", next_attempt_at=None, dial_queue=IDLE, skip_reason=reason,
                updated_at=now)
    )  # fmt: skip
    spec = ids.spec(conn, tid)
    state = conn.execute(
        select(cc.state).where(cc.campaign_id == tid, cc.contact_id == contact_id)
    ).scalar()
    if state is None:
        row = conn.execute(
            select(contacts.c.priority, contacts.c.position, contacts.c.attributes)
            .where(contacts.c.id == contact_id)
        ).one()  # fmt: skip
        values: dict[str, Any] = {
            "campaign_id": tid, "contact_id": contact_id, "state": "pending", "attempts": 0,
            "priority": row[0], "position": row[1], "dial_queue": READY, "updated_at": now,
            "sort_key": sort_key(spec, json.loads(row[2] or "{}")),
        }  # fmt: skip
        conn.execute(insert(campaign_contacts).values(**values))
        return "enrolled"
    if state not in FINISHED_STATES:
        return "already"
    conn.execute(
        update(campaign_contacts)
        .where(cc.campaign_id == tid, cc.contact_id == contact_id)
        .values(state="pending", next_attempt_at=None, dial_queue=READY, skip_reason=None,
                updated_at=now)
    )  # fmt: skip
    if spec:
        rekey(conn, tid, spec, cc.contact_id == contact_id)
    return "reopened"
