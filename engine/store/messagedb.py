"""Messages (SMS, and email with its channel): store thread functions.

The sender's life of an outbound message, each step one committed write:

    queued  --(just before the PDU leaves)-->  submitting  --+--> submitted --> delivered
       ^                                                     |               +-> undelivered
       +------ temporary failure, at next_attempt_at --------+               +-> expired
                                                             +--> rejected (permanent)
                                                             +--> failed (tries used up)

A campaign's contact is `sending` from the message's creation until the
carrier accepts or finally refuses it, then `done` or `failed`, its
`last_result` following the message's status (delivery receipts included),
so the contact list export shows every outcome.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    exists,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from engine.errors import NotFound
from engine.store import dnc, emaildnc
from engine.store.prepared import Prepared
from engine.store.queries import CampaignIds, iso
from engine.store.schema import (
    OPEN_MESSAGE_STATUSES,
    campaign_contacts,
    campaigns,
    message_events,
    message_parts,
    messages,
)
from engine.store.types import DncHit, dial_queue

M = messages.c
E = message_events.c
P = message_parts.c
cc = campaign_contacts.c

# Statuses after which the carrier holds the message (or held it).
ACCEPTED = ("submitted", "delivered", "undelivered", "expired")
FINAL = ("delivered", "undelivered", "expired", "rejected", "failed")
# The contact's state once its message reaches a status.
_CONTACT_AFTER = {"submitted": "done", "rejected": "failed", "failed": "failed"}


class DuplicateMessage(Exception):
    """The campaign already has a message for this contact (its id in ``message_id``)."""

    def __init__(self, message_id: int) -> None:
        super().__init__(f"message {message_id} already exists for this contact")
        self.message_id = message_id


# The sender's path runs these for every message: each is built once, in
# Core, and run through `Prepared` (compiled once per dialect, executed on the
# driver's cursor): measured, an UPDATE built per call costs ~120 us of Python,
# the same one prebuilt ~25 us through Connection.execute, ~8 us prepared.
def _insert(table: Any, keys: Sequence[str]) -> Any:
    return table.insert().values({k: bindparam(k, type_=table.c[k].type) for k in keys})


_EVENT_KEYS = ("message_id", "at", "status", "detail")
_PART_KEYS = ("message_id", "part", "account", "carrier_id", "status", "at")
_INSERT_EVENT = Prepared(_insert(message_events, _EVENT_KEYS), _EVENT_KEYS)
_INSERT_PART = Prepared(_insert(message_parts, _PART_KEYS), _PART_KEYS)
_SET_CARRIER_ID = Prepared(
    update(messages).where(M.id == bindparam("m_id")).values(carrier_id=bindparam("v_carrier_id")),
    ("m_id", "v_carrier_id"),
)
# A receipt's segment (the newest one with that carrier id) gets its status,
# found and updated in one statement.
_RECEIPT_PART = Prepared(
    update(message_parts)
    .where(
        tuple_(P.message_id, P.part).in_(
            select(P.message_id, P.part)
            .where(P.account == bindparam("r_account"), P.carrier_id == bindparam("r_carrier_id"))
            .order_by(P.message_id.desc())
            .limit(1)
        )
    )
    .values(status=bindparam("v_status"), at=bindparam("v_at", type_=P.at.type))
    .returning(P.message_id, P.part),
    ("r_account", "r_carrier_id", "v_status", "v_at"),
)
_RECEIPT_MESSAGE = Prepared(
    select(M.id, M.status, M.address, M.segments, campaigns.c.name.label("campaign"))
    .outerjoin(campaigns, campaigns.c.id == M.campaign_id)
    .where(M.id == bindparam("m_id")),
    ("m_id",),
)
_PART_STATUSES = Prepared(select(P.part, P.status).where(P.message_id == bindparam("m_id")),
                          ("m_id",))  # fmt: skip
_SENDING_CONTACT = Prepared(
    update(campaign_contacts)
    .where(cc.campaign_id == bindparam("c_campaign"), cc.contact_id == bindparam("c_contact"))
    .values(
        state="sending",
        dial_queue=bindparam("v_dial_queue"),
        next_attempt_at=None,
        skip_reason=None,
        updated_at=bindparam("v_now", type_=cc.updated_at.type),
        last_attempt_at=bindparam("v_now", type_=cc.last_attempt_at.type),
    ),
    ("c_campaign", "c_contact", "v_dial_queue", "v_now"),
)


@cache
def _insert_message(keys: tuple[str, ...]) -> Prepared:
    """INSERT INTO messages (<keys>) ... ON CONFLICT DO NOTHING RETURNING id: no
    row back means the campaign already has this contact's message (the partial
    unique index), found without a savepoint."""

    def build(dialect: Any) -> Any:
        module = postgresql if dialect.name == "postgresql" else sqlite
        values = {k: bindparam(k, type_=M[k].type) for k in keys}
        return module.insert(messages).values(values).on_conflict_do_nothing().returning(M.id)

    return Prepared(build, keys)


@cache
def _status_update(keys: tuple[str, ...], plus_try: bool) -> Prepared:
    """UPDATE messages SET <keys> [, tries = tries + 1] WHERE id = :m_id
    RETURNING campaign_id, contact_id (one statement: the contact follows)."""
    values: dict[str, Any] = {k: bindparam(f"v_{k}", type_=M[k].type) for k in keys}
    if plus_try:
        values["tries"] = M.tries + 1
    statement = (
        update(messages)
        .where(M.id == bindparam("m_id"))
        .values(values)
        .returning(M.campaign_id, M.contact_id)
    )
    return Prepared(statement, [f"v_{k}" for k in keys] + ["m_id"])


@cache
def _contact_update(keys: tuple[str, ...], plus_attempt: bool) -> Prepared:
    values: dict[str, Any] = {k: bindparam(f"v_{k}", type_=cc[k].type) for k in keys}
    if plus_attempt:
        values["attempts"] = cc.attempts + 1
    statement = (
        update(campaign_contacts)
        .where(cc.campaign_id == bindparam("c_campaign"), cc.contact_id == bindparam("c_contact"))
        .values(values)
    )
    return Prepared(statement, [f"v_{k}" for k in keys] + ["c_campaign", "c_contact"])


def _event(conn: Connection, message_id: int, status: str, at: datetime, detail: Any) -> None:
    text = detail if detail is None or isinstance(detail, str) else json.dumps(detail, default=str)
    # Inserted with the others of its transaction when it commits: nothing reads
    # a message's history back in the transaction that writes it.
    row = {"message_id": message_id, "at": at, "status": status, "detail": text}
    _INSERT_EVENT.defer(conn, row)


def create(
    conn: Connection,
    ids: CampaignIds,
    values: Mapping[str, Any],
    campaign: str | None,
    now: datetime,
) -> int:
    """Insert an outbound message (status `queued`) and its first event; for a
    campaign message the contact becomes `sending` in the same transaction."""
    row = dict(values)
    cid = None
    if campaign is not None:
        cid, _ = ids.get(conn, campaign)
        row["campaign_id"] = cid
    row.setdefault("status", "queued")
    row.setdefault("direction", "out")
    # A caller may give created_at (email: the Date header it composes from,
    # so a retry after a restart sends the same Date).
    row.setdefault("created_at", now)
    row["updated_at"] = now
    inserted = _insert_message(tuple(sorted(row))).first(conn, row)
    if inserted is None:
        found = conn.execute(
            select(M.id).where(M.campaign_id == cid, M.contact_id == row.get("contact_id"))
        ).scalar()
        if found is None:
            raise IntegrityError("INSERT INTO messages", row, Exception("conflict"))
        raise DuplicateMessage(int(found))
    message_id = int(inserted[0])
    _event(conn, message_id, row["status"], now, row.get("error"))
    if cid is not None and row.get("contact_id") is not None:
        _SENDING_CONTACT.run(
            conn,
            {"c_campaign": cid, "c_contact": row["contact_id"],
             "v_dial_queue": dial_queue("sending", None, now), "v_now": now},
        )  # fmt: skip
    return message_id


def create_unless_listed(
    conn: Connection, values: Mapping[str, Any], lists: Sequence[str], now: datetime
) -> int | DncHit:
    """A notification: its address (a number, or an email address for the
    email channel) checked against `lists` and, unless listed there (the hit
    is returned, nothing written), the message created, in one transaction:
    no opt-out can slip in between the check and the message."""
    if values.get("channel") == "email":
        hit = emaildnc.address_listed(conn, values["address"], now, lists)
    else:
        hit = dnc.number_listed(conn, values["address"], now, lists)
    if hit is not None:
        return hit
    return create(conn, CampaignIds(), values, None, now)


def set_status(
    conn: Connection,
    message_id: int,
    status: str,
    now: datetime,
    detail: Any = None,
    fields: Mapping[str, Any] | None = None,
) -> None:
    """Move a message to `status` (with `fields`: carrier_id, error, tries...)
    and log the event; a campaign message's contact follows."""
    values: dict[str, Any] = {"status": status, "updated_at": now, **(fields or {})}
    if status == "submitted":
        values.setdefault("submitted_at", now)
    if status in FINAL:
        values.setdefault("final_at", now)
    plus_try = values.get("tries") == "+1"
    if plus_try:
        del values["tries"]
    keys = tuple(sorted(values))
    params = {f"v_{k}": values[k] for k in keys}
    params["m_id"] = message_id
    row = _status_update(keys, plus_try).first(conn, params)
    _event(conn, message_id, status, now, detail)
    # The contact is `sending` from its message's creation; `submitting` says
    # nothing new about it, so its row is left until the carrier answers.
    if status != "submitting" and row is not None and row[0] is not None and row[1] is not None:
        _follow_contact(conn, row[0], row[1], status, now, values.get("error"))


def _follow_contact(
    conn: Connection, campaign_id: int, contact_id: int, status: str, now: datetime, error: Any
) -> None:
    values: dict[str, Any] = {"last_result": status, "updated_at": now}
    state = _CONTACT_AFTER.get(status)
    if state is not None:
        values.update(state=state, dial_queue=dial_queue(state, None, now))
        if state == "failed" and error:
            values["skip_reason"] = str(error)[:500]
    keys = tuple(sorted(values))
    params = {f"v_{k}": values[k] for k in keys}
    params.update(c_campaign=campaign_id, c_contact=contact_id)
    _contact_update(keys, state is not None).run(conn, params)


def open_messages(
    conn: Connection, channel: str, after_id: int, limit: int
) -> list[dict[str, Any]]:
    """Outbound messages still owed to the carrier (queued or submitting), by id."""
    query = (
        select(messages, campaigns.c.name.label("campaign"))
        .outerjoin(campaigns, campaigns.c.id == M.campaign_id)
        .where(M.status.in_(OPEN_MESSAGE_STATUSES), M.channel == channel, M.id > after_id)
        .order_by(M.id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def in_doubt(conn: Connection, channel: str, now: datetime) -> list[int]:
    """After a restart: messages left `submitting` had no carrier answer. They go
    back to `queued`, flagged `in_doubt` (the carrier may have them already):
    what the issue calls re-submitting only what has no submit_sm_resp, with the
    store saying which. Returns their ids."""
    found = list(
        conn.execute(select(M.id).where(M.status == "submitting", M.channel == channel)).scalars()
    )
    for message_id in found:
        conn.execute(
            update(messages)
            .where(M.id == message_id)
            .values(status="queued", in_doubt=1, updated_at=now, next_attempt_at=None)
        )
        _event(
            conn,
            message_id,
            "queued",
            now,
            "the daemon stopped before the carrier answered the submit: re-submitted, "
            "the carrier may hold it twice",
        )
    return found


def record_part(
    conn: Connection, message_id: int, part: int, account: str, carrier_id: str, now: datetime
) -> None:
    """The carrier accepted segment `part` of a message under `carrier_id`."""
    _INSERT_PART.run(
        conn,
        {"message_id": message_id, "part": part, "account": account,
         "carrier_id": carrier_id, "status": "submitted", "at": now},
    )  # fmt: skip
    if part <= 1:  # the first segment, or part 0: the whole message (an HTTP aggregator)
        _SET_CARRIER_ID.run(conn, {"m_id": message_id, "v_carrier_id": carrier_id})


def submitted(
    conn: Connection,
    message_id: int,
    part: int,
    account: str,
    carrier_id: str,
    now: datetime,
    detail: Any = None,
) -> None:
    """The carrier accepted the last segment still owed (`part`, under
    `carrier_id`): its row and the message's `submitted` status (its event
    with `detail`) in one transaction; the message's carrier_id is its first
    segment's."""
    _INSERT_PART.run(
        conn,
        {"message_id": message_id, "part": part, "account": account,
         "carrier_id": carrier_id, "status": "submitted", "at": now},
    )  # fmt: skip
    set_status(conn, message_id, "submitted", now, detail,
               {"carrier_id": carrier_id} if part <= 1 else None)  # fmt: skip


def parts_done(conn: Connection, message_id: int) -> set[int]:
    """The segments of a message the carrier has already accepted."""
    return set(conn.execute(select(P.part).where(P.message_id == message_id)).scalars())


_PART_FAILURES = ("undelivered", "expired", "rejected")


def apply_receipt(
    conn: Connection,
    account: str,
    carrier_id: str,
    status: str,
    now: datetime,
    detail: Any,
    error: str | None = None,
) -> dict[str, Any] | None:
    """A delivery receipt for the carrier's `carrier_id` (one segment). The
    message is delivered once every segment is, undelivered (or expired) as
    soon as one is. Returns the message (with `changed`: its status moved),
    or None when no segment has that id: a receipt for an unknown id."""
    found = _RECEIPT_PART.first(
        conn, {"r_account": account, "r_carrier_id": carrier_id, "v_status": status, "v_at": now}
    )
    if found is None:
        return None
    part_message, part_number = found
    got = _RECEIPT_MESSAGE.first(conn, {"m_id": part_message})
    assert got is not None
    message_id, current, address, segments, campaign = got
    if segments == 1 and part_number <= 1:  # the one part there is: no need to read it back
        parts = {part_number: status}
    else:
        parts = dict(_PART_STATUSES.all(conn, {"m_id": message_id}))
    statuses = list(parts.values())
    expected = 1 if 0 in parts else segments  # part 0: the whole message (HTTP)
    failed = [s for s in statuses if s in _PART_FAILURES]
    if failed:
        target = failed[0]
    elif len(statuses) >= expected and all(s == "delivered" for s in statuses):
        target = "delivered"
    else:
        target = None
    info = {
        "id": message_id,
        "address": address,
        "campaign": campaign,
        "part": part_number,
        "segments": segments,
    }
    if target is None or current in ("delivered", *_PART_FAILURES):
        _event(conn, int(message_id), f"part_{status}"[:16], now, detail)
        return {**info, "status": current, "changed": False}
    fields: dict[str, Any] = {"error": error} if error else {}
    set_status(conn, int(message_id), target, now, detail, fields)
    return {**info, "status": target, "changed": True}


def record_inbound(
    conn: Connection, values: Mapping[str, Any], thread_since: datetime, now: datetime
) -> dict[str, Any]:
    """Store a received message, threaded to the last outbound message to that
    address (on the same channel) sent since `thread_since`. Returns the
    stored row with `thread` (the outbound message's id, campaign and
    contact, or None). One with a `carrier_id` the account already gave an
    inbound message from that address is not stored again: `duplicate`."""
    channel, address = values["channel"], values["address"]
    carrier_id = values.get("carrier_id")
    if carrier_id:  # an aggregator retrying its webhook: the message is stored already
        seen = conn.execute(
            select(M.id).where(
                M.address == address,  # ix_messages_address
                M.direction == "in",
                M.channel == channel,
                M.account == values["account"],
                M.carrier_id == carrier_id,
            )
        ).scalar()
        if seen is not None:
            return {"id": int(seen), "thread": None, "duplicate": True}
    parent = conn.execute(
        select(M.id, M.campaign_id, M.contact_id, M.sender, campaigns.c.name.label("campaign"))
        .outerjoin(campaigns, campaigns.c.id == M.campaign_id)
        .where(
            M.channel == channel,
            M.direction == "out",
            M.address == address,
            M.created_at >= thread_since,
            M.status.not_in(("rejected", "failed")),
        )
        .order_by(M.created_at.desc(), M.id.desc())
        .limit(1)
    ).first()
    row = {
        **values,
        "direction": "in",
        "status": "received",
        "created_at": now,
        "updated_at": now,
        "final_at": now,
    }
    if parent is not None:
        row.update(thread_id=parent.id, contact_id=parent.contact_id)
        conn.execute(
            update(messages)
            .where(M.id == parent.id)
            .values(replies=M.replies + 1, thread_closed_at=None)
        )
    message_id = int(conn.execute(messages.insert().values(**row)).inserted_primary_key[0])  # type: ignore[index]
    _event(conn, message_id, "received", now, values.get("keyword"))
    thread = None
    if parent is not None:
        thread = {
            "id": parent.id,
            "campaign": parent.campaign,
            "contact_id": parent.contact_id,
            "sender": parent.sender,
        }
    return {"id": message_id, "thread": thread}


def close_threads(
    conn: Connection, channel: str, quiet_since: datetime, now: datetime
) -> list[int]:
    """Interactions (outbound messages with replies) whose customer has said
    nothing since `quiet_since` are closed; returns their ids."""
    reply = messages.alias("reply")
    recent = exists().where(reply.c.thread_id == M.id, reply.c.created_at >= quiet_since)
    found = list(
        conn.execute(
            select(M.id).where(
                M.channel == channel,
                M.direction == "out",
                M.replies > 0,
                M.thread_closed_at.is_(None),
                ~recent,
            )
        ).scalars()
    )
    if found:
        conn.execute(update(messages).where(M.id.in_(found)).values(thread_closed_at=now))
        for message_id in found:
            _event(conn, message_id, "interaction_closed", now, None)
    return found


def message(conn: Connection, message_id: int) -> dict[str, Any]:
    """One message with its status history and its thread (replies, or the
    message it answers)."""
    row = (
        conn.execute(
            select(messages, campaigns.c.name.label("campaign"))
            .outerjoin(campaigns, campaigns.c.id == M.campaign_id)
            .where(M.id == message_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no message {message_id}")
    out = {k: iso(v) for k, v in row.items() if k != "campaign_id"}
    out["history"] = [
        {k: iso(v) for k, v in e.items()}
        for e in conn.execute(
            select(E.at, E.status, E.detail).where(E.message_id == message_id).order_by(E.id)
        ).mappings()
    ]
    root = row["thread_id"] or message_id
    out["thread"] = [
        {k: iso(v) for k, v in r.items()}
        for r in conn.execute(
            select(M.id, M.direction, M.created_at, M.body, M.status, M.keyword)
            .where((M.id == root) | (M.thread_id == root))
            .order_by(M.created_at, M.id)
        ).mappings()
    ]
    return out


def messages_of(
    conn: Connection,
    *,
    campaign: str | None = None,
    address: str | None = None,
    channel: str | None = None,
    notifications: bool = False,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Messages, newest first, filtered by campaign, address, channel; with
    `notifications` only those sent without a campaign."""
    query = select(
        M.id,
        M.channel,
        M.direction,
        campaigns.c.name.label("campaign"),
        M.contact_id,
        M.address,
        M.sender,
        M.status,
        M.segments,
        M.encoding,
        M.carrier_id,
        M.error,
        M.tries,
        M.in_doubt,
        M.thread_id,
        M.keyword,
        M.replies,
        M.created_at,
        M.submitted_at,
        M.final_at,
        M.body,
        M.subject,
        M.message_ref,
    ).outerjoin(campaigns, campaigns.c.id == M.campaign_id)
    conditions = []
    if campaign is not None:
        cid = conn.execute(select(campaigns.c.id).where(campaigns.c.name == campaign)).scalar()
        if cid is None:
            raise NotFound(f"no campaign {campaign!r}")
        conditions.append(M.campaign_id == cid)
    if notifications:
        conditions.append(M.campaign_id.is_(None))
    if address is not None:
        conditions.append(M.address == address)
    if channel is not None:
        conditions.append(M.channel == channel)
    if conditions:
        query = query.where(and_(*conditions))
    query = query.order_by(M.id.desc()).limit(limit)
    return [{k: iso(v) for k, v in r.items()} for r in conn.execute(query).mappings()]


def report(conn: Connection, campaign: str | None) -> dict[str, Any]:
    """A campaign's (or, with None, the notifications') message totals:
    contacts total and processed, messages by status, accepted, rejected,
    delivered, failed, opted out, segments, replies, in doubt."""
    out: dict[str, Any] = {}
    if campaign is not None:
        crow = conn.execute(select(campaigns.c.id).where(campaigns.c.name == campaign)).first()
        if crow is None:
            raise NotFound(f"no campaign {campaign!r}")
        where = M.campaign_id == crow.id
        states: dict[str, int] = dict(
            conn.execute(
                select(cc.state, func.count()).where(cc.campaign_id == crow.id).group_by(cc.state)
            ).all()
        )
        out["contacts"] = int(sum(states.values()))
        out["processed"] = int(
            sum(n for s, n in states.items() if s in ("done", "skipped", "failed"))
        )
        out["skipped"] = int(states.get("skipped", 0))
        out["waiting"] = int(
            sum(n for s, n in states.items() if s in ("pending", "retry", "deferred"))
        )
    else:
        where = M.campaign_id.is_(None)
    by_status = {
        str(s): int(n)
        for s, n in conn.execute(
            select(M.status, func.count()).where(where, M.direction == "out").group_by(M.status)
        )
    }
    segments = conn.execute(
        select(func.coalesce(func.sum(M.segments), 0)).where(
            where, M.direction == "out", M.status.in_(ACCEPTED)
        )
    ).scalar()
    reply = messages.alias("reply")
    replies = conn.execute(
        select(reply.c.keyword, func.count())
        .join(messages, reply.c.thread_id == M.id)
        .where(where)
        .group_by(reply.c.keyword)
    ).all()
    out.update(
        messages=int(sum(by_status.values())),
        by_status=dict(sorted(by_status.items())),
        accepted=int(sum(by_status.get(s, 0) for s in ACCEPTED)),
        rejected=by_status.get("rejected", 0),
        delivered=by_status.get("delivered", 0),
        failed=int(sum(by_status.get(s, 0) for s in ("failed", "undelivered", "expired"))),
        queued=int(sum(by_status.get(s, 0) for s in OPEN_MESSAGE_STATUSES)),
        segments=int(segments or 0),
        in_doubt=int(
            conn.execute(select(func.count()).where(where, M.in_doubt == 1)).scalar() or 0
        ),
        replies=int(sum(n for _, n in replies)),
        opted_out=int(sum(n for k, n in replies if k == "stop")),
    )
    return out


__all__ = [
    "ACCEPTED", "FINAL", "DuplicateMessage", "apply_receipt", "close_threads", "create",
    "create_unless_listed",
    "in_doubt", "message", "messages_of", "open_messages", "parts_done", "record_inbound",
    "record_part", "report", "set_status", "submitted",
]  # fmt: skip
