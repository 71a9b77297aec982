"""The store's database work: functions of a Connection, run on the store's
thread (see writer.py). Lists, contacts, campaigns and the dialer's queries."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from engine.errors import BadRequest, Conflict, NotFound
from engine.store.contactdb import (
    existing_numbers,
    prepare_list,
)
from engine.store.dialorder import SortSpec, is_dynamic, sort_key, spec_of
from engine.store.schema import (
    UTCDateTime,
    attempts,
    bulk_insert,
    campaign_contacts,
    campaigns,
    contact_lists,
    contact_phones,
    contacts,
    driver_value,
)
from engine.store.types import INTERRUPTED, READY, WAITING, AttemptIntent, DialCandidate

_IN_CHUNK = 1_000
cc = campaign_contacts.c


def iso(value: Any) -> Any:
    """Datetimes as ISO-8601 text (for JSON); other values as they are."""
    return value.isoformat() if isinstance(value, datetime) else value


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"{kind}: a name is required")
    if len(name) > 200:
        raise BadRequest(f"{kind}: names are at most 200 characters")
    return name


class CampaignIds:
    """Campaign name -> (id, list id), cached; touched on the store thread only."""

    def __init__(self) -> None:
        self._ids: dict[str, tuple[int, int]] = {}
        self._specs: dict[int, SortSpec] = {}

    def get(self, conn: Connection, name: str) -> tuple[int, int]:
        found = self._ids.get(name)
        if found is None:
            row = conn.execute(
                select(campaigns.c.id, campaigns.c.list_id).where(campaigns.c.name == name)
            ).first()
            if row is None:
                raise NotFound(f"no campaign {name!r}")
            found = self._ids[name] = (int(row[0]), int(row[1]))
        return found

    def spec(self, conn: Connection, cid: int) -> SortSpec:
        """The campaign's `sort:` keys, from its stored definition (() for none)."""
        found = self._specs.get(cid)
        if found is None:
            query = select(campaigns.c.definition).where(campaigns.c.id == cid)
            text = conn.execute(query).scalar()
            found = self._specs[cid] = spec_of(json.loads(text or "{}"))
        return found

    def forget(self, name: str) -> None:
        self._ids.pop(name, None)
        self._specs.clear()  # by id; upserts are rare


# ------------------------------------------------------------------- lists


def ensure_list(conn: Connection, name: str, now: datetime) -> int:
    return prepare_list(conn, check_name("list", name), [], [], now)


def list_id(conn: Connection, name: str) -> int:
    found = conn.execute(select(contact_lists.c.id).where(contact_lists.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"no contact list {name!r}")
    return int(found)


def lists(conn: Connection) -> list[dict[str, Any]]:
    counts = (
        select(contacts.c.list_id, func.count().label("n")).group_by(contacts.c.list_id).subquery()
    )
    rows = conn.execute(
        select(contact_lists.c.name, func.coalesce(counts.c.n, 0), contact_lists.c.created_at)
        .outerjoin(counts, counts.c.list_id == contact_lists.c.id)
        .order_by(contact_lists.c.name)
    )
    return [{"name": n, "contacts": int(c), "created_at": iso(t)} for n, c, t in rows]


# ---------------------------------------------------------------- contacts


def add_contact(
    conn: Connection,
    list_name: str,
    phones: Sequence[str],
    attributes: Mapping[str, str],
    *,
    priority: int,
    top: bool,
    external_id: str | None,
    now: datetime,
) -> int:
    """One contact (numbers already E.164), after the list's last one, or with
    `top` ahead of every contact of the list: first position, and at least the
    list's highest priority (the dialer orders by priority first)."""
    lid = prepare_list(conn, check_name("list", list_name), [], list(attributes), now)
    taken = existing_numbers(conn, lid, phones)
    if taken:
        raise Conflict(f"{', '.join(sorted(taken))} already in list {list_name!r}")
    names = _phone_names(conn, lid, len(phones))
    prepare_list(conn, list_name, names, [], now)
    position, priority = _slot(conn, lid, top, priority)
    result = conn.execute(
        insert(contacts).values(
            list_id=lid,
            external_id=external_id,
            position=position,
            priority=priority,
            attributes=json.dumps(dict(attributes)),
            created_at=now,
        )
    )
    contact_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    conn.execute(
        insert(contact_phones),
        [
            {"contact_id": contact_id, "list_id": lid, "number": n, "column_name": c, "rank": r}
            for r, (c, n) in enumerate(zip(names, phones, strict=True))
        ],
    )
    _enrol(conn, lid, contact_id, now)
    return contact_id


def _slot(conn: Connection, lid: int, top: bool, priority: int) -> tuple[int, int]:
    """Position and priority of a new contact: last, or (top) first."""
    low, high, top_priority = conn.execute(
        select(
            func.min(contacts.c.position),
            func.max(contacts.c.position),
            func.max(contacts.c.priority),
        ).where(contacts.c.list_id == lid)
    ).one()
    if top and low is not None:
        return int(low) - 1, max(priority, top_priority)
    return int(high or 0) + 1, priority


def _phone_names(conn: Connection, lid: int, count: int) -> list[str]:
    """Column names for a contact's phones: the list's phone columns in order
    (so the export puts them there), then phone, phone_2..."""
    text = conn.execute(select(contact_lists.c.fields).where(contact_lists.c.id == lid)).scalar()
    known = list(json.loads(text or "{}").get("phones", []))
    fallback = ["phone" if r == 0 else f"phone_{r + 1}" for r in range(count)]
    return [known[r] if r < len(known) else fallback[r] for r in range(count)]


def _enrol(conn: Connection, lid: int, contact_id: int, now: datetime) -> None:
    """A contact added to a list joins the list's campaigns still under way."""
    for cid, definition in conn.execute(
        select(campaigns.c.id, campaigns.c.definition).where(
            campaigns.c.list_id == lid, campaigns.c.state.in_(("running", "paused", "stopped"))
        )
    ).all():
        spec = spec_of(json.loads(definition or "{}"))
        _sync_range(conn, cid, lid, contact_id, contact_id, now, spec)


def contact(conn: Connection, contact_id: int) -> dict[str, Any]:
    row = (
        conn.execute(
            select(contacts, contact_lists.c.name.label("list"))
            .join(contact_lists, contact_lists.c.id == contacts.c.list_id)
            .where(contacts.c.id == contact_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    phones = conn.execute(
        select(contact_phones.c.number, contact_phones.c.column_name)
        .where(contact_phones.c.contact_id == contact_id)
        .order_by(contact_phones.c.rank)
    ).all()
    states = conn.execute(
        select(
            campaigns.c.name.label("campaign"),
            cc.state,
            cc.attempts,
            cc.next_attempt_at,
            cc.last_result,
            cc.skip_reason,
            cc.priority,
            cc.last_attempt_at,
            cc.updated_at,
        )
        .join(campaigns, campaigns.c.id == cc.campaign_id)
        .where(cc.contact_id == contact_id)
        .order_by(campaigns.c.name)
    ).mappings()
    return {
        "id": row["id"],
        "list": row["list"],
        "external_id": row["external_id"],
        "phones": [n for n, _ in phones],
        "phone_columns": [c for _, c in phones],
        "attributes": json.loads(row["attributes"] or "{}"),
        "priority": row["priority"],
        "position": row["position"],
        "created_at": iso(row["created_at"]),
        "campaigns": [{k: iso(v) for k, v in s.items()} for s in states],
    }


# --------------------------------------------------------------- campaigns


def upsert_campaign(
    conn: Connection, name: str, list_name: str, definition: Mapping[str, Any], now: datetime
) -> int:
    lid = ensure_list(conn, list_name, now)
    text = json.dumps(dict(definition), default=str, sort_keys=True)
    row = conn.execute(
        select(campaigns.c.id, campaigns.c.list_id).where(campaigns.c.name == name)
    ).first()
    if row is None:
        result = conn.execute(
            insert(campaigns).values(
                name=check_name("campaign", name),
                list_id=lid,
                state="stopped",
                definition=text,
                created_at=now,
                updated_at=now,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]
    cid, old_list = int(row[0]), int(row[1])
    if old_list != lid and conn.execute(select(exists().where(cc.campaign_id == cid))).scalar():
        raise Conflict(
            f"campaign {name!r} has already dialled another list; "
            f"give the campaign a new name to use list {list_name!r}"
        )
    conn.execute(
        update(campaigns)
        .where(campaigns.c.id == cid)
        .values(list_id=lid, definition=text, updated_at=now)
    )
    return cid


def campaign_rows(conn: Connection, name: str | None = None) -> list[dict[str, Any]]:
    query = select(campaigns, contact_lists.c.name.label("list")).join(
        contact_lists, contact_lists.c.id == campaigns.c.list_id
    )
    if name is not None:
        query = query.where(campaigns.c.name == name)
    out = []
    for row in conn.execute(query.order_by(campaigns.c.name)).mappings():
        out.append(
            {
                "id": row["id"],
                "name": row["name"],
                "list": row["list"],
                "state": row["state"],
                "definition": json.loads(row["definition"]),
                "created_at": iso(row["created_at"]),
                "updated_at": iso(row["updated_at"]),
            }
        )
    if name is not None and not out:
        raise NotFound(f"no campaign {name!r}")
    return out


def set_campaign_state(conn: Connection, name: str, state: str, now: datetime) -> None:
    result = conn.execute(
        update(campaigns).where(campaigns.c.name == name).values(state=state, updated_at=now)
    )
    if result.rowcount == 0:
        raise NotFound(f"no campaign {name!r}")


# ----------------------------------------------------------------- dialing


def contact_id_range(conn: Connection, lid: int) -> tuple[int, int] | None:
    low, high = conn.execute(
        select(func.min(contacts.c.id), func.max(contacts.c.id)).where(contacts.c.list_id == lid)
    ).one()
    return None if low is None else (int(low), int(high))


def _sync_range(
    conn: Connection, cid: int, lid: int, low: int, high: int, now: datetime,
    spec: SortSpec = (),
) -> int:  # fmt: skip
    """campaign_contacts rows (pending) for the list's contacts with ids in
    [low, high] that have none yet; with a `sort:`, each with its key."""
    if spec:
        return _sync_sorted(conn, cid, lid, low, high, now, spec)
    source = select(
        literal(cid),
        contacts.c.id,
        literal("pending"),
        literal(0),
        contacts.c.priority,
        contacts.c.position,
        literal(READY),
        literal(now, UTCDateTime()),
    ).where(
        contacts.c.list_id == lid,
        contacts.c.id.between(low, high),
        ~exists().where(and_(cc.campaign_id == cid, cc.contact_id == contacts.c.id)),
    )
    result = conn.execute(
        insert(campaign_contacts).from_select(
            [
                "campaign_id",
                "contact_id",
                "state",
                "attempts",
                "priority",
                "position",
                "dial_queue",
                "updated_at",
            ],
            source,
        )
    )
    return max(result.rowcount, 0)


_ENROL_COLUMNS = ("campaign_id", "contact_id", "state", "attempts", "priority", "position",
                  "dial_queue", "updated_at", "sort_key")  # fmt: skip


def _sync_sorted(
    conn: Connection, cid: int, lid: int, low: int, high: int, now: datetime, spec: SortSpec
) -> int:
    """_sync_range for a sorted campaign: the keys need the attributes, in Python."""
    rows = conn.execute(
        select(
            contacts.c.id, contacts.c.priority, contacts.c.position, contacts.c.attributes
        ).where(
            contacts.c.list_id == lid,
            contacts.c.id.between(low, high),
            ~exists().where(and_(cc.campaign_id == cid, cc.contact_id == contacts.c.id)),
        )
    ).all()
    stamp = driver_value(conn, cc.updated_at, now)
    bulk_insert(conn, campaign_contacts, _ENROL_COLUMNS, [
        (cid, r[0], "pending", 0, r[1], r[2], READY, stamp,
         sort_key(spec, json.loads(r[3] or "{}")))
        for r in rows
    ])  # fmt: skip
    return len(rows)


def rekey(conn: Connection, cid: int, spec: SortSpec, where: Any) -> int:
    """Recompute the sort keys of the campaign's rows matching `where`."""
    rows = conn.execute(
        select(cc.contact_id, cc.attempts, cc.last_attempt_at, cc.last_result,
               contacts.c.attributes)
        .join(contacts, contacts.c.id == cc.contact_id)
        .where(cc.campaign_id == cid, where)
    ).all()  # fmt: skip
    if rows:
        conn.execute(
            update(campaign_contacts)
            .where(cc.campaign_id == cid, cc.contact_id == bindparam("b_contact"))
            .values(sort_key=bindparam("b_key")),
            [{"b_contact": r[0],
              "b_key": sort_key(spec, json.loads(r[4] or "{}"), r[1], r[2], r[3])}
             for r in rows],
        )  # fmt: skip
    return len(rows)


def sync_range(
    conn: Connection, ids: CampaignIds, name: str, low: int, high: int, now: datetime
) -> int:
    cid, lid = ids.get(conn, name)
    return _sync_range(conn, cid, lid, low, high, now, ids.spec(conn, cid))


def rekey_range(conn: Connection, ids: CampaignIds, name: str, low: int, high: int) -> int:
    """The sort keys of the campaign's contacts with ids in [low, high] (after its
    `sort:` changed)."""
    cid, _ = ids.get(conn, name)
    return rekey(conn, cid, ids.spec(conn, cid), cc.contact_id.between(low, high))


# Retries moved to READY per transaction: a backlog of a million (a campaign
# resumed after a night) is promoted in slices, with group commits between.
PROMOTE_CHUNK = 20_000


def due_contacts(
    conn: Connection,
    ids: CampaignIds,
    name: str,
    now: datetime,
    limit: int,
    exclude: Collection[int],
) -> list[DialCandidate] | None:
    """Pending contacts, and retries whose time has come, in dialling order:
    priority DESC, the campaign's sort key (dialorder.py), position ASC;
    None if the caller must ask again (a backlog of due retries is being
    moved, one slice per call).

    Called every ~100 ms on campaigns of a million contacts, so it must cost
    O(limit), whatever the mix of states. Each row carries a dial queue
    (READY, WAITING, IDLE, kept by every write). First, retries whose time
    has come move from WAITING to READY: a range scan of
    ix_campaign_contacts_waiting that reads only those (each moves once).
    Then ix_campaign_contacts_ready, which is in dialling order, is walked
    and the walk stops after `limit` rows. The time test is repeated in the
    walk, so a `now` earlier than a previous call's stays exact.
    """
    if limit <= 0:
        return []
    cid, _ = ids.get(conn, name)
    if _promote_due(conn, cid, now) >= PROMOTE_CHUNK:
        return None
    query = (
        select(cc.contact_id, cc.attempts, cc.priority)
        .where(
            cc.campaign_id == cid,
            cc.dial_queue == READY,
            or_(cc.state == "pending", cc.next_attempt_at <= now),
        )
        .order_by(cc.priority.desc(), cc.sort_key, cc.position)
        .limit(limit)
    )
    if exclude:
        query = query.where(cc.contact_id.not_in(list(exclude)))
    rows = conn.execute(query).all()
    return _candidates(conn, rows) if rows else []


def _promote_due(conn: Connection, cid: int, now: datetime) -> int:
    """Move (up to PROMOTE_CHUNK) retries whose time has come to READY."""
    due = (
        select(cc.contact_id)
        .where(cc.campaign_id == cid, cc.dial_queue == WAITING, cc.next_attempt_at <= now)
        .limit(PROMOTE_CHUNK)
    )
    return int(
        conn.execute(
            update(campaign_contacts)
            .where(cc.campaign_id == cid, cc.contact_id.in_(due.scalar_subquery()))
            .values(dial_queue=READY)
        ).rowcount
    )


def _candidates(conn: Connection, rows: Sequence[Any]) -> list[DialCandidate]:
    wanted = [r[0] for r in rows]
    attributes = dict(
        conn.execute(
            select(contacts.c.id, contacts.c.attributes).where(contacts.c.id.in_(wanted))
        ).all()
    )
    phones: dict[int, list[str]] = {}
    columns: dict[int, list[str]] = {}
    for contact_id, number, column in conn.execute(
        select(contact_phones.c.contact_id, contact_phones.c.number, contact_phones.c.column_name)
        .where(contact_phones.c.contact_id.in_(wanted))
        .order_by(contact_phones.c.contact_id, contact_phones.c.rank)
    ):
        phones.setdefault(contact_id, []).append(number)
        columns.setdefault(contact_id, []).append(column)
    return [
        DialCandidate(
            contact_id=r[0],
            phones=tuple(phones.get(r[0], ())),
            attempts=r[1],
            attributes=json.loads(attributes.get(r[0]) or "{}"),
            priority=r[2],
            columns=tuple(columns.get(r[0], ())),
        )
        for r in rows
    ]


def create_attempt(conn: Connection, ids: CampaignIds, intent: AttemptIntent) -> int:
    cid, _ = ids.get(conn, intent.campaign)
    result = conn.execute(
        insert(attempts).values(
            campaign_id=cid,
            contact_id=intent.contact_id,
            number=intent.number,
            trunk=intent.trunk,
            caller_id=intent.caller_id,
            created_at=intent.created_at,
        )
    )
    conn.execute(
        update(campaign_contacts)
        .where(cc.campaign_id == cid, cc.contact_id == intent.contact_id)
        .values(last_attempt_at=intent.created_at)
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def update_attempt(conn: Connection, attempt_id: int, fields: dict[str, Any]) -> None:
    conn.execute(update(attempts).where(attempts.c.id == attempt_id).values(**fields))


def set_contact_state(
    conn: Connection,
    ids: CampaignIds,
    name: str,
    contact_id: int,
    values: dict[str, Any],
    attempts_delta: int,
) -> None:
    cid, _ = ids.get(conn, name)
    if attempts_delta:
        values = {**values, "attempts": cc.attempts + attempts_delta}
    conn.execute(
        update(campaign_contacts)
        .where(cc.campaign_id == cid, cc.contact_id == contact_id)
        .values(**values)
    )
    spec = ids.spec(conn, cid)
    if is_dynamic(spec):  # attempts, last_attempt_at, last_result: as results come in
        rekey(conn, cid, spec, cc.contact_id == contact_id)


def reconcile_in_flight(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """After a crash: open attempts become `interrupted` (ended now); contacts
    left in flight become retries due now (the retry rules then decide)."""
    open_ids = list(
        conn.execute(select(attempts.c.id).where(attempts.c.ended_at.is_(None))).scalars()
    )
    for i in range(0, len(open_ids), _IN_CHUNK):
        conn.execute(
            update(attempts)
            .where(attempts.c.id.in_(open_ids[i : i + _IN_CHUNK]))
            .values(
                result=INTERRUPTED,
                ended_at=now,
                reason=func.coalesce(attempts.c.reason, "the daemon stopped during the call"),
            )
        )
    conn.execute(
        update(campaign_contacts)
        .where(cc.state == "in_flight")
        .values(state="retry", next_attempt_at=now, dial_queue=READY, updated_at=now)
    )
    out: list[dict[str, Any]] = []
    for i in range(0, len(open_ids), _IN_CHUNK):
        out.extend(attempt_rows(conn, attempts.c.id.in_(open_ids[i : i + _IN_CHUNK])))
    return out


def attempt_rows(conn: Connection, where: Any, limit: int | None = None) -> list[dict[str, Any]]:
    query = (
        select(attempts, campaigns.c.name.label("campaign"))
        .join(campaigns, campaigns.c.id == attempts.c.campaign_id)
        .where(where)
        .order_by(attempts.c.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [_attempt_dict(r) for r in conn.execute(query).mappings()]


def _attempt_dict(row: RowMapping) -> dict[str, Any]:
    return {key: iso(value) for key, value in row.items()}
