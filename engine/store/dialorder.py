"""A campaign's `sort:` as one stored key per contact, so the dialler's
ready index is in dialling order (pure: no I/O).

`due_contacts` walks ix_campaign_contacts_ready, which is in (priority DESC,
sort_key, position) order, and stops after the batch it needs: O(batch),
whatever the list's size. Sorting by columns in the query instead would
read and sort every ready row of the campaign on every pass. So the key is
computed in Python when a row is written (enrolment, a rule's `set`, and for
dynamic keys every change of the contact's state) and compared as text.

The order is the one `engine.compliance.rules.Sort.key` gives (a test checks
the two agree): per key, numbers, then text, then missing, each group in the
key's order; `last_attempt_at` never attempted sorts as the oldest. Dynamic
keys (`attempts`, `last_attempt_at`, `last_result`) are the contact's in
this campaign, like `max_attempts`.

Encoding: per key a group byte (1 number, 2 text, 3 missing, never
inverted), then the value: a number as an IEEE double made bytewise
ordered (sign bit flipped, or every bit for negatives), a text as UTF-8
with 0x00 escaped as 0x00 0xFF and ended by 0x00 0x00 (so no value is a
prefix of another). A descending key inverts its value bytes. The bytes are
stored as lower-case hex: bytewise order survives, and a text column
compares bytewise in SQLite (BINARY) and in PostgreSQL (COLLATE "C").
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.compliance.expr import _num

# Keys kept by the dialler per campaign row; any other key is a contact column.
DYNAMIC_KEYS = ("attempts", "last_attempt_at", "last_result")
_NUMBER, _TEXT, _MISSING = b"\x01", b"\x02", b"\x03"
_INVERT = bytes(255 - b for b in range(256))

SortSpec = tuple[tuple[str, bool], ...]  # (column, descending), in order


def spec_of(definition: Mapping[str, Any]) -> SortSpec:
    """The sort keys of a stored campaign definition (`"sort": [{column, order}]`)."""
    keys = definition.get("sort") or ()
    return tuple((str(k["column"]), k.get("order") == "desc") for k in keys)


def is_dynamic(spec: SortSpec) -> bool:
    """The key changes as results come in (recomputed on each state change)."""
    return any(column in DYNAMIC_KEYS for column, _ in spec)


def _number(value: float) -> bytes:
    (bits,) = struct.unpack(">Q", struct.pack(">d", float(value) + 0.0))  # -0.0 is 0.0
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)
    return struct.pack(">Q", bits)


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass").replace(b"\x00", b"\x00\xff") + b"\x00\x00"


def _part(value: Any, descending: bool, numeric: bool) -> bytes:
    if value is None:
        return _MISSING
    number = _num(value) if numeric else None
    group, body = (_NUMBER, _number(number)) if number is not None else (_TEXT, _text(value))
    return group + (body.translate(_INVERT) if descending else body)


def sort_key(
    spec: Sequence[tuple[str, bool]],
    attributes: Mapping[str, str],
    attempts: int = 0,
    last_attempt_at: datetime | None = None,
    last_result: str | None = None,
) -> str:
    """The stored key of one contact in a campaign sorted by `spec` ('' for no sort)."""
    out = bytearray()
    for column, descending in spec:
        if column == "attempts":
            out += _part(attempts, descending, True)
        elif column == "last_attempt_at":
            at = last_attempt_at.timestamp() if last_attempt_at is not None else -math.inf
            out += _NUMBER + (_number(at).translate(_INVERT) if descending else _number(at))
        elif column == "last_result":
            out += _part(last_result, descending, False)
        else:
            out += _part(attributes.get(column), descending, True)
    return out.hex()
