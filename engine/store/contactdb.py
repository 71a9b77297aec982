"""Contacts in the database: list columns, batch inserts with duplicate
checks, and export pages. Functions of a Connection, run on the store thread;
the CSV side lives in engine/contacts.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select

from engine.errors import NotFound
from engine.store.schema import (
    bulk_insert,
    campaign_contacts,
    campaigns,
    contact_lists,
    contact_phones,
    contacts,
    driver_value,
    select_in,
)

_IN_CHUNK = 1_000  # numbers per IN (...) probe: far under every driver's parameter limit


@dataclass(frozen=True, slots=True)
class ParsedContact:
    line: int
    external_id: str | None
    phones: tuple[tuple[str, str], ...]  # (column name, E.164)
    attributes: str  # JSON
    raw: list[str]


def prepare_list(
    conn: Connection, name: str, phones: list[str], attributes: list[str], now: datetime
) -> int:
    """The list's id (created if new), its known columns merged with these."""
    row = conn.execute(
        select(contact_lists.c.id, contact_lists.c.fields).where(contact_lists.c.name == name)
    ).first()
    if row is None:
        fields = {"phones": phones, "attributes": attributes}
        result = conn.execute(
            insert(contact_lists).values(name=name, fields=json.dumps(fields), created_at=now)
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]
    list_id, text = int(row[0]), row[1]
    fields = json.loads(text or "{}")
    merged = {
        "phones": list(dict.fromkeys([*fields.get("phones", []), *phones])),
        "attributes": list(dict.fromkeys([*fields.get("attributes", []), *attributes])),
    }
    if merged != fields:
        conn.execute(
            contact_lists.update()
            .where(contact_lists.c.id == list_id)
            .values(fields=json.dumps(merged))
        )
    return list_id


def existing_numbers(conn: Connection, list_id: int, numbers: Sequence[str]) -> set[str]:
    """Which of these numbers the list holds already (probes of the unique
    (list_id, number) index, sent straight to the driver: SQLAlchemy's
    expanding IN costs ~8 us a value, more than SQLite's lookup)."""
    found: set[str] = set()
    unique = list(dict.fromkeys(numbers))
    for i in range(0, len(unique), _IN_CHUNK):
        chunk = unique[i : i + _IN_CHUNK]
        sql = select_in(
            conn,
            "SELECT number FROM contact_phones WHERE list_id = {} AND number IN ({})",
            len(chunk),
        )
        found.update(row[0] for row in conn.exec_driver_sql(sql, (list_id, *chunk)))
    return found


def insert_batch(
    conn: Connection, list_id: int, batch: list[ParsedContact], now: datetime
) -> list[tuple[int, str, list[str]]]:
    """Insert a batch after the list's last contact; returns the duplicates
    (line, reason, row), which are not inserted."""
    existing = existing_numbers(conn, list_id, [n for c in batch for _, n in c.phones])
    seen: dict[str, int] = {}
    accepted: list[ParsedContact] = []
    duplicates: list[tuple[int, str, list[str]]] = []
    for contact in batch:
        reason = _duplicate_reason(contact, existing, seen)
        if reason is not None:
            duplicates.append((contact.line, reason, contact.raw))
            continue
        for _, number in contact.phones:
            seen[number] = contact.line
        accepted.append(contact)
    if accepted:
        insert_contacts(conn, list_id, accepted, now)
    return duplicates


def _duplicate_reason(
    contact: ParsedContact, existing: set[str], seen: dict[str, int]
) -> str | None:
    for _, number in contact.phones:
        if number in existing:
            return f"duplicate: {number} is already in the list"
        if number in seen:
            return f"duplicate: {number} is also on line {seen[number]}"
    return None


def insert_contacts(
    conn: Connection, list_id: int, batch: list[ParsedContact], now: datetime
) -> None:
    """executemany of contacts, then of their phones. Positions follow the
    list's last one; the new ids are read back by position (portable: no
    RETURNING needed, and one index range scan)."""
    last = conn.execute(
        select(func.max(contacts.c.position)).where(contacts.c.list_id == list_id)
    ).scalar()
    base = int(last or 0)
    created = driver_value(conn, contacts.c.created_at, now)
    bulk_insert(
        conn,
        contacts,
        ("list_id", "external_id", "position", "priority", "attributes", "created_at"),
        [
            (list_id, c.external_id, base + i, 0, c.attributes, created)
            for i, c in enumerate(batch, 1)
        ],
    )
    ids = dict(
        conn.execute(
            select(contacts.c.position, contacts.c.id).where(
                contacts.c.list_id == list_id,
                contacts.c.position > base,
                contacts.c.position <= base + len(batch),
            )
        ).all()
    )
    bulk_insert(
        conn,
        contact_phones,
        ("contact_id", "list_id", "number", "column_name", "rank"),
        [
            (ids[base + i], list_id, number, column, rank)
            for i, c in enumerate(batch, 1)
            for rank, (column, number) in enumerate(c.phones)
        ],
    )


@dataclass(frozen=True, slots=True)
class ExportInfo:
    list_id: int
    phones: list[str]
    attributes: list[str]
    campaigns: dict[int, str]


def export_info(conn: Connection, list_name: str) -> ExportInfo:
    row = conn.execute(
        select(contact_lists.c.id, contact_lists.c.fields).where(contact_lists.c.name == list_name)
    ).first()
    if row is None:
        raise NotFound(f"no contact list {list_name!r}")
    fields = json.loads(row[1] or "{}")
    names = conn.execute(
        select(campaigns.c.id, campaigns.c.name).where(campaigns.c.list_id == row[0])
    ).all()
    return ExportInfo(
        int(row[0]), list(fields.get("phones", [])), list(fields.get("attributes", [])), dict(names)
    )


def export_page(
    conn: Connection, info: ExportInfo, after: int | None, limit: int
) -> list[tuple[Any, ...]]:
    """Contacts after position `after`, in position order, each with its
    phones and its latest campaign row."""
    query = select(
        contacts.c.id, contacts.c.external_id, contacts.c.position, contacts.c.attributes
    ).where(contacts.c.list_id == info.list_id)
    if after is not None:
        query = query.where(contacts.c.position > after)
    page = conn.execute(query.order_by(contacts.c.position).limit(limit)).all()
    ids = [r[0] for r in page]
    phones: dict[int, list[tuple[str, str]]] = {}
    status: dict[int, tuple[Any, ...]] = {}
    if ids:
        for cid, column, number in conn.execute(
            select(
                contact_phones.c.contact_id, contact_phones.c.column_name, contact_phones.c.number
            )
            .where(contact_phones.c.contact_id.in_(ids))
            .order_by(contact_phones.c.contact_id, contact_phones.c.rank)
        ):
            phones.setdefault(cid, []).append((column, number))
        if info.campaigns:
            cc = campaign_contacts.c
            for row in conn.execute(
                select(
                    cc.contact_id,
                    cc.campaign_id,
                    cc.updated_at,
                    cc.state,
                    cc.attempts,
                    cc.last_result,
                    cc.skip_reason,
                ).where(cc.campaign_id.in_(list(info.campaigns)), cc.contact_id.in_(ids))
            ):
                best = status.get(row[0])
                if best is None or (row[2], row[1]) > (best[2], best[1]):
                    status[row[0]] = row
    return [(*r, phones.get(r[0], []), status.get(r[0])) for r in page]
