"""The do-not-contact list: numbers (E.164) never to dial, each with its
source and an optional expiry; checked before every dial.

An expired entry is inert (it no longer blocks) and is replaced by the next
add or import of the same number.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update

from engine.errors import BadRequest
from engine.store.csvio import CsvSource, ErrorReport, Rejection, default_error_path, run_batches
from engine.store.phones import InvalidNumber, PhoneNormalizer
from engine.store.queries import iso
from engine.store.schema import dnc
from engine.store.types import ImportSummary
from engine.store.writer import Submit

BATCH_ROWS = 5_000
_IN_CHUNK = 1_000
Entry = tuple[int, str, datetime | None, list[str]]  # (line, E.164, expiry, fields)


def _active(now: datetime) -> Any:
    return or_(dnc.c.expires_at.is_(None), dnc.c.expires_at > now)


def add(
    conn: Connection, number: str, source: str, expires_at: datetime | None, now: datetime
) -> None:
    found = conn.execute(select(dnc.c.number).where(dnc.c.number == number)).first()
    if found is None:
        conn.execute(
            insert(dnc).values(number=number, source=source, created_at=now, expires_at=expires_at)
        )
    else:
        conn.execute(
            update(dnc)
            .where(dnc.c.number == number)
            .values(source=source, expires_at=expires_at, created_at=now)
        )


def remove(conn: Connection, number: str) -> bool:
    return bool(conn.execute(delete(dnc).where(dnc.c.number == number)).rowcount)


def check(conn: Connection, number: str, now: datetime) -> dict[str, Any] | None:
    row = conn.execute(select(dnc).where(dnc.c.number == number, _active(now))).mappings().first()
    return None if row is None else {k: iso(v) for k, v in row.items()}


def listed(conn: Connection, numbers: Collection[str], now: datetime) -> set[str]:
    wanted = list(dict.fromkeys(numbers))
    found: set[str] = set()
    for i in range(0, len(wanted), _IN_CHUNK):
        found.update(
            conn.execute(
                select(dnc.c.number).where(
                    dnc.c.number.in_(wanted[i : i + _IN_CHUNK]), _active(now)
                )
            ).scalars()
        )
    return found


def insert_batch(
    conn: Connection,
    batch: list[Entry],
    source: str,
    now: datetime,
) -> list[tuple[int, str, list[str]]]:
    """Add the batch's numbers; returns the duplicates (already listed and
    active, or earlier in the batch), which are left as they are."""
    numbers = [n for _, n, _, _ in batch]
    current: dict[str, datetime | None] = {}
    for i in range(0, len(numbers), _IN_CHUNK):
        current.update(
            conn.execute(
                select(dnc.c.number, dnc.c.expires_at).where(
                    dnc.c.number.in_(numbers[i : i + _IN_CHUNK])
                )
            ).all()
        )
    seen: dict[str, int] = {}
    fresh: list[dict[str, Any]] = []
    duplicates: list[tuple[int, str, list[str]]] = []
    for line, number, expires_at, raw in batch:
        if number in seen:
            duplicates.append((line, f"duplicate: {number} is also on line {seen[number]}", raw))
            continue
        seen[number] = line
        if number in current:
            old_expiry = current[number]
            if old_expiry is None or old_expiry > now:
                duplicates.append((line, f"duplicate: {number} is already on the list", raw))
                continue
            conn.execute(delete(dnc).where(dnc.c.number == number))  # expired: replaced
        fresh.append(
            {"number": number, "source": source, "created_at": now, "expires_at": expires_at}
        )
    if fresh:
        conn.execute(insert(dnc), fresh)
    return duplicates


def import_csv(
    submit: Submit[Any],
    csv_path: Path,
    *,
    column: str | None,
    source: str,
    region: str,
    error_path: Path | None,
) -> ImportSummary:
    """Stream a CSV of numbers onto the list (blocking: run it in a thread).

    The column: the one named, else the first whose header contains "phone"
    or "number", else the first. A file whose first line is itself a valid
    number has no header (a bare list of numbers). An `expires_at` column
    (ISO-8601 date or time, UTC if no offset) is honoured if present.
    """
    started = time.perf_counter()
    normalizer = PhoneNormalizer(region)
    now = datetime.now(UTC)
    with CsvSource(csv_path) as src:
        index, headerless = _number_column(src, column, normalizer)
        lower = [h.lower() for h in src.header]
        expiry = lower.index("expires_at") if "expires_at" in lower and not headerless else None
        columns = [f"column_{i + 1}" for i in range(len(src.header))] if headerless else src.header
        report = ErrorReport(
            error_path or default_error_path(csv_path), columns, always=error_path is not None
        )
        records = src.records()
        if headerless:
            records = _chain_header(src.header, records)

        def classify(
            line: int, fields: list[str], damage: str | None
        ) -> tuple[Entry | None, str | None]:
            return _dnc_entry(line, fields, damage, index, expiry, normalizer)

        def ship(batch: list[Entry]) -> list[Rejection]:
            job = partial(insert_batch, batch=batch, source=source, now=now)
            duplicates: list[Rejection] = submit(job).result()
            return duplicates

        try:
            tally = run_batches(records, classify, ship, report, batch_rows=BATCH_ROWS)
        finally:
            report.close()
    return tally.summary(report.written, started)


def _number_column(
    src: CsvSource, column: str | None, normalizer: PhoneNormalizer
) -> tuple[int, bool]:
    header, lower = src.header, [h.lower() for h in src.header]
    if column is not None:
        if column in header:
            return header.index(column), False
        if column.lower() in lower:
            return lower.index(column.lower()), False
        raise BadRequest(f"{src.name}: no column {column!r} (columns: {', '.join(header)})")
    try:
        normalizer.normalize(header[0])
    except InvalidNumber:
        pass
    else:
        return 0, True  # the first line is data: no header
    found = next((i for i, h in enumerate(lower) if "phone" in h or "number" in h), 0)
    return found, False


def _chain_header(header: list[str], records: Any) -> Any:
    yield 1, header, None
    yield from records


def _dnc_entry(
    line: int,
    fields: list[str],
    damage: str | None,
    index: int,
    expiry: int | None,
    normalizer: PhoneNormalizer,
) -> tuple[Entry | None, str | None]:
    if damage is not None:
        return None, damage
    raw = fields[index] if index < len(fields) else ""
    if not raw.strip():
        return None, "no phone number"
    try:
        number = normalizer.normalize(raw)
    except InvalidNumber as exc:
        return None, exc.message
    expires_at = None
    if expiry is not None and fields[expiry].strip():
        try:
            expires_at = parse_time(fields[expiry])
        except ValueError:
            return None, f"expires_at: {fields[expiry]!r} is not an ISO-8601 date or time"
    return (line, number, expires_at, fields), None


def parse_time(text: str) -> datetime:
    """ISO-8601 date or time; UTC when it carries no offset."""
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
