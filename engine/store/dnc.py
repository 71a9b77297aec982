"""Do-not-contact lists: named lists (kind internal, optout, national or
other) of entries that block a number (E.164) or a contact (all its numbers),
each with its source, an optional expiry and a note. Checked before every
dial, against the lists the campaign names.

An expired entry is inert (it no longer blocks) and is replaced by the next
add or import of the same number or contact on that list. Every add writes a
compliance ledger row in the same transaction: `opt_out` on an optout list,
`dnc_added` on the others (an import into a non-optout list writes one
summary row; into an optout list, one row per entry: each is a request).
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, delete, exists, func, insert, or_, select, update

from engine.errors import BadRequest, Conflict, NotFound
from engine.store import compliancedb
from engine.store.csvio import CsvSource, ErrorReport, Rejection, default_error_path, run_batches
from engine.store.phones import InvalidNumber, PhoneNormalizer
from engine.store.prepared import Prepared
from engine.store.queries import iso
from engine.store.schema import DNC_LIST_KINDS, contact_phones, contacts, dnc_entries, dnc_lists
from engine.store.types import DncHit, ImportSummary
from engine.store.writer import Submit

BATCH_ROWS = 5_000
_IN_CHUNK = 1_000
DEFAULT_LIST = "internal"
LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # as campaign_config's names
EXPORT_HEADER = ["number", "contact_id", "source", "added_at", "expires_at", "note"]
E = dnc_entries.c
D = dnc_lists.c


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry to import: a number or a contact id, from a line of a file."""

    line: int
    number: str | None
    contact_id: int | None
    expires_at: datetime | None
    source: str | None
    note: str | None
    fields: list[str]

    @property
    def key(self) -> tuple[str, str | int]:
        if self.number is not None:
            return ("number", self.number)
        assert self.contact_id is not None
        return ("contact", self.contact_id)


def _active(now: datetime) -> Any:
    return or_(E.expires_at.is_(None), E.expires_at > now)


# ------------------------------------------------------------------- lists


def create_list(conn: Connection, name: str, kind: str, now: datetime) -> dict[str, Any]:
    if not isinstance(name, str) or not LIST_NAME.fullmatch(name):
        raise BadRequest(
            f"list: {name!r}: expected 1-64 letters, digits, '.', '_' or '-' (not first), "
            "as a campaign's dnc_lists names it"
        )
    if kind not in DNC_LIST_KINDS:
        raise BadRequest(f"kind: {kind!r}; expected one of {', '.join(DNC_LIST_KINDS)}")
    if conn.execute(select(D.id).where(D.name == name)).first() is not None:
        raise Conflict(f"do-not-contact list {name!r} exists already")
    conn.execute(insert(dnc_lists).values(name=name, kind=kind, created_at=now))
    return {"name": name, "kind": kind, "created_at": now.isoformat()}


def lists_of(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """Every list with its active number and contact entries and its expired ones."""
    active = _active(now)
    counts = (
        select(
            E.list_id,
            func.count(E.number).filter(active).label("numbers"),
            func.count(E.contact_id).filter(active).label("contacts"),
            func.count().filter(~active).label("expired"),
        )
        .group_by(E.list_id)
        .subquery()
    )
    rows = conn.execute(
        select(D.name, D.kind, D.created_at, counts.c.numbers, counts.c.contacts, counts.c.expired)
        .outerjoin(counts, counts.c.list_id == D.id)
        .order_by(D.id)
    )
    return [
        {"name": n, "kind": k, "numbers": int(num or 0), "contacts": int(con or 0),
         "expired": int(exp or 0), "created_at": iso(t)}
        for n, k, t, num, con, exp in rows
    ]  # fmt: skip


def resolve(conn: Connection, names: Sequence[str] | None) -> dict[int, tuple[str, str]]:
    """List id -> (name, kind) of `names` in their order (None: every list, by
    id); NotFound naming the lists that do not exist."""
    query = select(D.id, D.name, D.kind).order_by(D.id)
    if names is not None:
        query = query.where(D.name.in_(list(names)))
    found = {name: (int(i), kind) for i, name, kind in conn.execute(query)}
    if names is None:
        return {i: (name, kind) for name, (i, kind) in found.items()}
    missing = [n for n in names if n not in found]
    if missing:
        raise NotFound(
            f"no do-not-contact list {', '.join(map(repr, missing))} "
            f"(create it: outdial ctl dnc create NAME --kind KIND)"
        )
    return {found[n][0]: (n, found[n][1]) for n in dict.fromkeys(names)}


def missing_lists(conn: Connection, names: Collection[str]) -> list[str]:
    known = set(conn.execute(select(D.name).where(D.name.in_(list(names)))).scalars())
    return [n for n in dict.fromkeys(names) if n not in known]


def _list(conn: Connection, name: str) -> tuple[int, str]:
    ((lid, (_, kind)),) = resolve(conn, [name]).items()
    return lid, kind


# ----------------------------------------------------------------- entries


def add(
    conn: Connection,
    list_name: str,
    number: str | None,
    contact_id: int | None,
    source: str,
    expires_at: datetime | None,
    note: str | None,
    now: datetime,
    campaign: str | None,
) -> None:
    """List a number or a contact (replacing its entry on that list), with
    its ledger row."""
    lid, kind = _list(conn, list_name)
    if (
        contact_id is not None
        and not conn.execute(select(exists().where(contacts.c.id == contact_id))).scalar()
    ):
        raise NotFound(f"no contact {contact_id}")
    which = E.number == number if number is not None else E.contact_id == contact_id
    values = {"source": source, "added_at": now, "expires_at": expires_at, "note": note}
    found = conn.execute(select(E.id).where(E.list_id == lid, which)).scalar()
    if found is None:
        conn.execute(insert(dnc_entries).values(list_id=lid, number=number,
                                                contact_id=contact_id, **values))  # fmt: skip
    else:
        conn.execute(update(dnc_entries).where(E.id == found).values(**values))
    detail = {"list": list_name, "list_kind": kind, "expires_at": expires_at, "note": note}
    compliancedb.append(conn, [_ledger(kind, source, number, contact_id, campaign, detail, now)])


def _ledger(
    kind: str,
    source: str,
    number: str | None,
    contact_id: int | None,
    campaign: str | None,
    detail: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return compliancedb.ledger_row(
        "opt_out" if kind == "optout" else "dnc_added",
        {"campaign": campaign, "number": number, "contact_id": contact_id, "source": source,
         "rule": compliancedb.DNC_RULES.get(kind), "detail": detail},
        now,
    )  # fmt: skip


def remove(conn: Connection, list_name: str, number: str | None, contact_id: int | None) -> bool:
    lid, _ = _list(conn, list_name)
    which = E.number == number if number is not None else E.contact_id == contact_id
    return bool(conn.execute(delete(dnc_entries).where(E.list_id == lid, which)).rowcount)


def check(
    conn: Connection, number: str | None, contact_id: int | None, now: datetime
) -> list[dict[str, Any]]:
    """Every active entry that blocks the number or the contact, on any list
    (by list): for a number, its own entries and those of the contacts that
    have it; `via` says which."""
    conditions = []
    if number is not None:
        owners = select(contact_phones.c.contact_id).where(contact_phones.c.number == number)
        conditions += [E.number == number, E.contact_id.in_(owners)]
    if contact_id is not None:
        conditions.append(E.contact_id == contact_id)
    rows = conn.execute(
        select(D.name, D.kind, E.number, E.contact_id, E.source, E.added_at, E.expires_at, E.note)
        .join(dnc_lists, D.id == E.list_id)
        .where(or_(*conditions), _active(now))
        .order_by(D.id, E.id)
    ).all()
    return [
        {"list": name, "kind": kind, "via": "number" if num is not None else f"contact {cid}",
         "number": num, "contact_id": cid, "source": source, "added_at": iso(added),
         "expires_at": iso(expires), "note": note}
        for name, kind, num, cid, source, added, expires, note in rows
    ]  # fmt: skip


def listed(
    conn: Connection, numbers: Collection[str], now: datetime, lists: Sequence[str] | None
) -> dict[str, DncHit]:
    """The numbers listed (unexpired) on one of `lists` (None: any list), each
    with the first of those lists (in that order) that has it."""
    return _hits(conn, E.number, list(dict.fromkeys(numbers)), now, lists)


# One number against named lists, as an SMS notification is checked: prepared
# (engine/store/prepared.py), a hit then read in full by `listed`.
_LIST_ID = Prepared(select(D.id).where(D.name == bindparam("name")), ("name",))
_NUMBER_LISTS = Prepared(
    select(E.list_id).where(
        E.number == bindparam("number"),
        or_(E.expires_at.is_(None), E.expires_at > bindparam("now", type_=E.expires_at.type)),
    ),
    ("number", "now"),
)


def number_listed(
    conn: Connection, number: str, now: datetime, lists: Sequence[str]
) -> DncHit | None:
    """`listed` for one number on named lists: its hit, or None."""
    if not on_lists(conn, lists, _NUMBER_LISTS, {"number": number, "now": now}):
        return None
    return listed(conn, [number], now, lists).get(number)


def on_lists(
    conn: Connection, lists: Sequence[str], entries: Prepared, params: dict[str, Any]
) -> bool:
    """Whether `entries` (a prepared query of list ids: one number's or one
    address's active entries) names one of `lists`. NotFound names every
    list in `lists` that does not exist."""
    ids = set()
    for name in lists:
        row = _LIST_ID.first(conn, {"name": name})
        if row is None:
            resolve(conn, lists)  # raises NotFound naming every missing list
        else:
            ids.add(row[0])
    return any(lid in ids for (lid,) in entries.all(conn, params))


def contacts_listed(
    conn: Connection, contact_ids: Collection[int], now: datetime, lists: Sequence[str] | None
) -> dict[int, DncHit]:
    """Like `listed`, for contact entries."""
    return _hits(conn, E.contact_id, list(dict.fromkeys(contact_ids)), now, lists)


def _hits(
    conn: Connection, column: Any, wanted: list[Any], now: datetime, lists: Sequence[str] | None
) -> dict[Any, DncHit]:
    known = resolve(conn, lists)
    rank = {lid: i for i, lid in enumerate(known)}
    best: dict[Any, tuple[int, DncHit]] = {}
    for i in range(0, len(wanted), _IN_CHUNK):
        query = select(column, E.list_id, E.source, E.expires_at).where(
            column.in_(wanted[i : i + _IN_CHUNK]), _active(now)
        )
        if lists is not None:
            query = query.where(E.list_id.in_(list(known)))
        for key, lid, source, expires in conn.execute(query):
            name, kind = known[lid]
            if key not in best or rank[lid] < best[key][0]:
                best[key] = (rank[lid], DncHit(name, kind, source, expires))
    return {key: hit for key, (_, hit) in best.items()}


# ------------------------------------------------------------------ import


def insert_batch(
    conn: Connection,
    list_name: str,
    batch: list[Entry],
    source: str,
    now: datetime,
    file: str,
) -> list[Rejection]:
    """Add the batch's entries to the list; returns the duplicates (listed
    and active already, or earlier in the batch), which are left as they are."""
    lid, kind = _list(conn, list_name)
    current: dict[tuple[str, Any], tuple[int, datetime | None]] = {}
    for label, column in (("number", E.number), ("contact", E.contact_id)):
        keys = [e.key[1] for e in batch if e.key[0] == label]
        for i in range(0, len(keys), _IN_CHUNK):
            for key, entry_id, expires in conn.execute(
                select(column, E.id, E.expires_at).where(
                    E.list_id == lid, column.in_(keys[i : i + _IN_CHUNK])
                )
            ):
                current[(label, key)] = (entry_id, expires)
    seen: dict[tuple[str, Any], int] = {}
    fresh: list[dict[str, Any]] = []
    ledger: list[dict[str, Any]] = []
    duplicates: list[Rejection] = []
    for entry in batch:
        what = entry.number or f"contact {entry.contact_id}"
        if entry.key in seen:
            duplicates.append((entry.line, f"duplicate: {what} is also on line "
                               f"{seen[entry.key]}", entry.fields))  # fmt: skip
            continue
        seen[entry.key] = entry.line
        if entry.key in current:
            entry_id, old_expiry = current[entry.key]
            if old_expiry is None or old_expiry > now:
                duplicates.append((entry.line, f"duplicate: {what} is already on the list",
                                   entry.fields))  # fmt: skip
                continue
            conn.execute(delete(dnc_entries).where(E.id == entry_id))  # expired: replaced
        row_source = entry.source or source
        fresh.append({"list_id": lid, "number": entry.number, "contact_id": entry.contact_id,
                      "source": row_source, "added_at": now, "expires_at": entry.expires_at,
                      "note": entry.note})  # fmt: skip
        if kind == "optout":
            detail = {"list": list_name, "list_kind": kind, "file": file, "line": entry.line}
            ledger.append(_ledger(kind, row_source, entry.number, entry.contact_id, None,
                                  detail, now))  # fmt: skip
    if fresh:
        conn.execute(insert(dnc_entries), fresh)
    compliancedb.append(conn, ledger)
    return duplicates


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where an import file keeps what (column indexes, None when absent)."""

    number: int | None
    contact: int | None
    expiry: int | None
    source: int | None
    note: int | None
    headerless: bool


def import_csv(
    submit: Submit[Any],
    csv_path: Path,
    *,
    list_name: str,
    column: str | None,
    source: str,
    region: str,
    error_path: Path | None,
) -> ImportSummary:
    """Stream a CSV file into a list (blocking: run it in a thread).

    The number column: the one named, else the first whose header contains
    "phone" or "number", else (when there is a `contact_id` column) none,
    else the first. A file whose first line is itself a valid number has no
    header (a bare list of numbers). Optional columns: `contact_id` (a row
    without a number is a contact entry), `expires_at` (ISO-8601 date or
    time, UTC without an offset), `source` (overrides `source` for its row),
    `note`. Contact ids are not checked against the contacts. `dnc.export`
    writes this format.
    """
    started = time.perf_counter()
    _, kind = submit(partial(_list, name=list_name)).result()  # NotFound before reading
    normalizer = PhoneNormalizer(region)
    now = datetime.now(UTC)
    with CsvSource(csv_path) as src:
        layout = _layout(src, column, normalizer)
        columns = (
            [f"column_{i + 1}" for i in range(len(src.header))] if layout.headerless else src.header
        )
        report = ErrorReport(
            error_path or default_error_path(csv_path), columns, always=error_path is not None
        )
        records = src.records()
        if layout.headerless:
            records = _chain_header(src.header, records)

        def classify(
            line: int, fields: list[str], damage: str | None
        ) -> tuple[Entry | None, str | None]:
            return _dnc_entry(line, fields, damage, layout, normalizer)

        def ship(batch: list[Entry]) -> list[Rejection]:
            job = partial(insert_batch, list_name=list_name, batch=batch, source=source,
                          now=now, file=csv_path.name)  # fmt: skip
            duplicates: list[Rejection] = submit(job).result()
            return duplicates

        try:
            tally = run_batches(records, classify, ship, report, batch_rows=BATCH_ROWS)
        finally:
            report.close()
    if kind != "optout" and tally.imported:
        detail = {"list": list_name, "list_kind": kind, "file": csv_path.name,
                  "rows": tally.rows, "imported": tally.imported}  # fmt: skip
        row = _ledger(kind, source, None, None, None, detail, now)
        submit(partial(compliancedb.append, rows=[row])).result()
    return tally.summary(report.written, started)


def _layout(src: CsvSource, column: str | None, normalizer: PhoneNormalizer) -> _Layout:
    header, lower = src.header, [h.strip().lower() for h in src.header]

    def named(name: str) -> int | None:
        return lower.index(name) if name in lower else None

    if column is not None:
        if column in header:
            number: int | None = header.index(column)
        elif column.lower() in lower:
            number = lower.index(column.lower())
        else:
            raise BadRequest(f"{src.name}: no column {column!r} (columns: {', '.join(header)})")
    else:
        try:
            normalizer.normalize(header[0])
        except InvalidNumber:
            pass
        else:  # the first line is data: no header
            return _Layout(0, None, None, None, None, headerless=True)
        number = next((i for i, h in enumerate(lower) if "phone" in h or "number" in h), None)
        if number is None and named("contact_id") is None:
            number = 0
    return _Layout(number, named("contact_id"), named("expires_at"), named("source"),
                   named("note"), headerless=False)  # fmt: skip


def _chain_header(header: list[str], records: Any) -> Any:
    yield 1, header, None
    yield from records


def _cell(fields: list[str], index: int | None) -> str:
    return fields[index].strip() if index is not None and index < len(fields) else ""


def _dnc_entry(
    line: int,
    fields: list[str],
    damage: str | None,
    layout: _Layout,
    normalizer: PhoneNormalizer,
) -> tuple[Entry | None, str | None]:
    if damage is not None:
        return None, damage
    raw, contact = _cell(fields, layout.number), _cell(fields, layout.contact)
    number = contact_id = None
    if raw:
        try:
            number = normalizer.normalize(raw)
        except InvalidNumber as exc:
            return None, exc.message
    elif contact:
        if not contact.isdigit():
            return None, f"contact_id: {contact!r} is not a contact id"
        contact_id = int(contact)
    else:
        return None, "no phone number" + (" or contact id" if layout.contact is not None else "")
    expires_at = None
    if expiry := _cell(fields, layout.expiry):
        try:
            expires_at = parse_time(expiry)
        except ValueError:
            return None, f"expires_at: {expiry!r} is not an ISO-8601 date or time"
    source = _cell(fields, layout.source)[:64] or None
    note = _cell(fields, layout.note) or None
    return Entry(line, number, contact_id, expires_at, source, note, fields), None


def parse_time(text: str) -> datetime:
    """ISO-8601 date or time; UTC when it carries no offset."""
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ------------------------------------------------------------------ export


def export_page(conn: Connection, list_name: str, after: int, limit: int) -> list[tuple[Any, ...]]:
    lid, _ = _list(conn, list_name)
    return [
        tuple(r)
        for r in conn.execute(
            select(E.id, E.number, E.contact_id, E.source, E.added_at, E.expires_at, E.note)
            .where(E.list_id == lid, E.id > after)
            .order_by(E.id)
            .limit(limit)
        )
    ]


def export_csv(submit: Submit[Any], list_name: str, out_path: Path, *, page: int = 5_000) -> int:
    """Write every entry of the list (expired ones too, with their expiry) as
    CSV in the import format; returns the entries written. Blocking: run it in
    a thread. The file appears complete or not at all (written aside, renamed)."""
    submit(partial(_list, name=list_name)).result()  # NotFound before creating a file
    partial_path = out_path.with_name(f".{out_path.name}.partial")
    written = 0
    try:
        with partial_path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(EXPORT_HEADER)
            for rows in _pages(submit, list_name, page):
                for _, number, contact_id, source, added, expires, note in rows:
                    contact = "" if contact_id is None else contact_id
                    writer.writerow([number or "", contact, source, iso(added),
                                     iso(expires) or "", note or ""])  # fmt: skip
                written += len(rows)
        os.replace(partial_path, out_path)
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise
    return written


def _pages(submit: Submit[Any], list_name: str, page: int) -> Iterator[list[tuple[Any, ...]]]:
    after = 0
    while True:
        rows = submit(partial(export_page, list_name=list_name, after=after, limit=page)).result()
        if rows:
            yield rows
        if len(rows) < page:
            return
        after = rows[-1][0]
