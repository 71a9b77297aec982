"""Contact lists from and to CSV: streaming import, export with results.

Import (`import_csv`) runs in a worker thread, never on the event loop. It
reads the file one record at a time (`CsvSource`), normalises every number to
E.164, and hands batches of ~5,000 contacts to the store's database thread,
one transaction each. Memory stays flat whatever the file's size, and the
dialer's group commits slip in between batches.

- Phone columns: the ones named, or every column whose header contains
  "phone" or "number" (any case). A contact keeps every valid number, in
  column order. Column `external_id` (or else `id`) is the contact's external
  id; every other column becomes an attribute (empty cells are left out).
- Rejected rows go to the error CSV (`line, reason`, then the row as read):
  damaged rows (undecodable bytes, wrong column count, broken quoting), rows
  without a valid number, and duplicates: a row is a duplicate if one of its
  numbers is already in the list or on an earlier row of the file (calling it
  would reach the same person twice). A row with one bad number among good
  ones is imported without it, and listed with a reason starting "imported
  without" (counted in `warnings`).
- Every batch is committed on its own: an import that stops half-way (a
  damaged file, a full disk) keeps what it committed and touches nothing
  that was there before; importing the same file again imports only what is
  missing, the rest being duplicates.

Export (`export_csv`) writes `contact_id, external_id`, the phone columns, the
attribute columns, then, from the latest campaign that used the list,
`campaign, dial_state, attempts, last_result, skip_reason` ("dial_state", not
"state", which lists often use for an address). An attribute whose name
collides with those is written as `attr.<name>`. An exported file imports
back as it was: the status columns are recognised and left out.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from engine.errors import BadRequest
from engine.store.contactdb import (
    ExportInfo,
    ParsedContact,
    export_info,
    export_page,
    insert_batch,
    prepare_list,
)
from engine.store.csvio import (
    CsvSource,
    ErrorReport,
    Rejection,
    Tally,
    default_error_path,
    run_batches,
)
from engine.store.phones import InvalidNumber, PhoneNormalizer
from engine.store.types import ImportSummary
from engine.store.writer import Submit

BATCH_ROWS = 5_000
EXPORT_STATUS = ("campaign", "dial_state", "attempts", "last_result", "skip_reason")
_EXPORT_MARKERS = frozenset({"contact_id", "dial_state", "last_result", "skip_reason"})
_ENGINE_COLUMNS = frozenset({"contact_id", *EXPORT_STATUS})
_ATTR_PREFIX = "attr."


# --------------------------------------------------------------- the header


@dataclass(frozen=True, slots=True)
class ContactLayout:
    """Where a file's phones, external id and attributes are."""

    phones: tuple[tuple[int, str], ...]  # (column index, column name)
    attributes: tuple[tuple[int, str], ...]  # (column index, attribute key)
    external_id: int | None

    @classmethod
    def from_header(
        cls, header: list[str], phone_columns: Sequence[str] | None, source: str
    ) -> ContactLayout:
        lower = [h.lower() for h in header]
        exported = _EXPORT_MARKERS <= set(lower)
        phones = _phone_indexes(header, lower, phone_columns, source)
        taken = set(phones)
        external = next((lower.index(n) for n in ("external_id", "id") if n in lower), None)
        if external in taken:
            external = None
        if external is not None:
            taken.add(external)
        attributes = []
        for i, name in enumerate(header):
            if i in taken or (exported and lower[i] in _ENGINE_COLUMNS):
                continue
            key = name[len(_ATTR_PREFIX) :] if exported and name.startswith(_ATTR_PREFIX) else name
            attributes.append((i, key))
        return cls(tuple((i, header[i]) for i in phones), tuple(attributes), external)

    @property
    def phone_names(self) -> list[str]:
        return [name for _, name in self.phones]

    @property
    def attribute_names(self) -> list[str]:
        return [key for _, key in self.attributes]


def _phone_indexes(
    header: list[str], lower: list[str], wanted: Sequence[str] | None, source: str
) -> list[int]:
    columns = ", ".join(header)
    if wanted:
        indexes = []
        for name in wanted:
            if name in header:
                indexes.append(header.index(name))
            elif name.lower() in lower:
                indexes.append(lower.index(name.lower()))
            else:
                raise BadRequest(f"{source}: no column {name!r} in the header (columns: {columns})")
        return list(dict.fromkeys(indexes))
    found = [i for i, h in enumerate(lower) if "phone" in h or "number" in h]
    if not found:
        raise BadRequest(
            f"{source}: no phone column: no header contains 'phone' or 'number'; "
            f"name the phone columns (columns: {columns})"
        )
    return found


# ----------------------------------------------------------------- the rows


def parse_row(
    layout: ContactLayout, normalizer: PhoneNormalizer, line: int, fields: list[str]
) -> tuple[ParsedContact | None, str | None]:
    """The contact of one record, or None and why; with a contact, the second
    value (if any) names numbers that were left out."""
    phones: list[tuple[str, str]] = []
    problems: list[str] = []
    for index, column in layout.phones:
        raw = fields[index]
        if not raw or raw.isspace():
            continue
        try:
            number = normalizer.normalize(raw)
        except InvalidNumber as exc:
            problems.append(f"column {column!r}: {exc.message}")
            continue
        if all(number != n for _, n in phones):
            phones.append((column, number))
    if not phones:
        return None, "; ".join(problems) if problems else "no phone number"
    attributes = {key: fields[i] for i, key in layout.attributes if fields[i]}
    external = fields[layout.external_id].strip() if layout.external_id is not None else ""
    contact = ParsedContact(line, external or None, tuple(phones), json.dumps(attributes), fields)
    return contact, ("imported without " + "; ".join(problems)) if problems else None


# ------------------------------------------------------------------ import


def import_csv(
    submit: Submit[Any],
    list_name: str,
    csv_path: Path,
    *,
    phone_columns: Sequence[str] | None = None,
    region: str = "US",
    error_path: Path | None = None,
    encoding: str = "utf-8",
    cancel: threading.Event | None = None,
) -> ImportSummary:
    """Stream `csv_path` into the list (blocking: run it in a worker thread).

    `submit` queues a function on the store's database thread and returns a
    future. Errors go to `error_path` (created even if empty), or else to
    FILE.errors.csv beside the input, created only if there are errors.
    """
    started = time.perf_counter()
    normalizer = PhoneNormalizer(region)
    with CsvSource(csv_path, encoding) as source:
        layout = ContactLayout.from_header(source.header, phone_columns, source.name)
        report = ErrorReport(
            error_path or default_error_path(csv_path), source.header, always=error_path is not None
        )
        try:
            tally = _import(submit, list_name, source, layout, normalizer, report, cancel)
        finally:
            report.close()
    return tally.summary(report.written, started)


def _import(
    submit: Submit[Any],
    list_name: str,
    source: CsvSource,
    layout: ContactLayout,
    normalizer: PhoneNormalizer,
    report: ErrorReport,
    cancel: threading.Event | None,
) -> Tally:
    now = datetime.now(UTC)
    prepare = partial(
        prepare_list,
        name=list_name,
        phones=layout.phone_names,
        attributes=layout.attribute_names,
        now=now,
    )
    list_id: int = submit(prepare).result()

    def classify(
        line: int, fields: list[str], damage: str | None
    ) -> tuple[ParsedContact | None, str | None]:
        return (None, damage) if damage else parse_row(layout, normalizer, line, fields)

    def ship(batch: list[ParsedContact]) -> list[Rejection]:
        job = partial(insert_batch, list_id=list_id, batch=batch, now=now)
        duplicates: list[Rejection] = submit(job).result()
        return duplicates

    return run_batches(
        source.records(), classify, ship, report, batch_rows=BATCH_ROWS, cancel=cancel
    )


# ------------------------------------------------------------------ export


def export_header(info: ExportInfo) -> tuple[list[str], list[str]]:
    """The header, and the attribute keys in header order."""
    reserved = {"contact_id", "external_id", *EXPORT_STATUS, *info.phones}
    attribute_columns = [
        _ATTR_PREFIX + key if key in reserved or key.startswith(_ATTR_PREFIX) else key
        for key in info.attributes
    ]
    header = ["contact_id", "external_id", *info.phones, *attribute_columns, *EXPORT_STATUS]
    return header, info.attributes


def export_csv(submit: Submit[Any], list_name: str, out_path: Path, *, page: int = 5_000) -> int:
    """Write the list to `out_path` (blocking: run it in a worker thread);
    returns the number of contacts written. The file appears complete or not
    at all (written aside, then renamed)."""
    import csv

    info: ExportInfo = submit(partial(export_info, list_name=list_name)).result()
    header, keys = export_header(info)
    phone_slot = {name: i for i, name in enumerate(info.phones)}
    partial_path = out_path.with_name(f".{out_path.name}.partial")
    written = 0
    after: int | None = None
    try:
        with partial_path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            while True:
                rows = submit(partial(export_page, info=info, after=after, limit=page)).result()
                for cid, external, _pos, attributes, phones, status in rows:
                    values = json.loads(attributes or "{}")
                    tail: list[Any] = ["", "", "", "", ""]
                    if status is not None:
                        tail = [info.campaigns[status[1]], *status[3:]]
                    writer.writerow(
                        [
                            cid,
                            external or "",
                            *_phone_cells(phones, phone_slot),
                            *(values.get(k, "") for k in keys),
                            *tail,
                        ]
                    )
                written += len(rows)
                if len(rows) < page:
                    break
                after = rows[-1][2]
        os.replace(partial_path, out_path)
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise
    return written


def _phone_cells(phones: list[tuple[str, str]], slot: dict[str, int]) -> list[str]:
    cells = [""] * len(slot)
    for column, number in phones:
        index = slot.get(column)
        if index is None or cells[index]:  # not a list column: first free cell
            index = next((i for i, c in enumerate(cells) if not c), None)
        if index is not None:
            cells[index] = number
    return cells
