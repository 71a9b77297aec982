"""Email addresses on do-not-contact lists (store thread functions).

The lists are the same named lists numbers are on (`dnc_lists`, with their
kinds); an address entry has a source (`unsubscribe`, `bounce`, `complaint`,
`manual`, `import`...), an optional expiry and a note. Addresses compare
lower-cased: the local part is case-sensitive by the letter of RFC 5321, but
no mailbox provider treats it so, and an unsubscribe must not be dodged by
capitals. Every add writes its compliance ledger row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update

from engine.errors import BadRequest
from engine.store import compliancedb
from engine.store.dnc import _list, on_lists, resolve
from engine.store.prepared import Prepared
from engine.store.queries import iso
from engine.store.schema import dnc_addresses, dnc_lists
from engine.store.types import DncHit

A = dnc_addresses.c
D = dnc_lists.c
_IN_CHUNK = 1_000


def clean(address: str) -> str:
    text = address.strip().strip("<>").strip().lower()
    local, sep, domain = text.rpartition("@")
    if not sep or not local or "." not in domain or any(c.isspace() for c in text):
        raise BadRequest(f"address: {address!r} is not an email address")
    return text


def add(
    conn: Connection,
    list_name: str,
    address: str,
    source: str,
    expires_at: datetime | None,
    note: str | None,
    now: datetime,
    campaign: str | None,
) -> str:
    lid, kind = _list(conn, list_name)
    addr = clean(address)
    values = {"source": source, "added_at": now, "expires_at": expires_at, "note": note}
    found = conn.execute(select(A.id).where(A.list_id == lid, A.address == addr)).scalar()
    if found is None:
        conn.execute(insert(dnc_addresses).values(list_id=lid, address=addr, **values))
    else:
        conn.execute(update(dnc_addresses).where(A.id == found).values(**values))
    detail = {"list": list_name, "list_kind": kind, "address": addr, "expires_at": expires_at,
              "note": note}  # fmt: skip
    row = compliancedb.ledger_row(
        "opt_out" if kind == "optout" else "dnc_added",
        {"campaign": campaign, "source": source, "rule": compliancedb.DNC_RULES.get(kind),
         "detail": detail},
        now,
    )  # fmt: skip
    compliancedb.append(conn, [row])
    return addr


def remove(conn: Connection, list_name: str, address: str) -> bool:
    lid, _ = _list(conn, list_name)
    result = conn.execute(
        delete(dnc_addresses).where(A.list_id == lid, A.address == clean(address))
    )
    return bool(result.rowcount)


def _active(now: datetime) -> Any:
    return or_(A.expires_at.is_(None), A.expires_at > now)


def check(conn: Connection, address: str, now: datetime) -> list[dict[str, Any]]:
    """Every active entry, on any list, for the address."""
    rows = conn.execute(
        select(D.name, D.kind, A.source, A.added_at, A.expires_at, A.note)
        .join(dnc_lists, D.id == A.list_id)
        .where(A.address == clean(address), _active(now))
        .order_by(D.id)
    ).all()
    return [
        {"list": n, "kind": k, "source": s, "added_at": iso(a), "expires_at": iso(e), "note": no}
        for n, k, s, a, e, no in rows
    ]


def listed(
    conn: Connection, addresses: Collection[str], now: datetime, lists: Sequence[str] | None
) -> dict[str, DncHit]:
    """The addresses (as given) listed on one of `lists` (None: any), each with
    the first of those lists that has it."""
    wanted = {a.strip().lower(): a for a in addresses}
    known = resolve(conn, lists)
    rank = {lid: i for i, lid in enumerate(known)}
    best: dict[str, tuple[int, DncHit]] = {}
    keys = list(wanted)
    for i in range(0, len(keys), _IN_CHUNK):
        query = select(A.address, A.list_id, A.source, A.expires_at).where(
            A.address.in_(keys[i : i + _IN_CHUNK]), _active(now)
        )
        if lists is not None:
            query = query.where(A.list_id.in_(list(known)))
        for addr, lid, source, expires in conn.execute(query):
            name, kind = known[lid]
            if addr not in best or rank[lid] < best[addr][0]:
                best[addr] = (rank[lid], DncHit(name, kind, source, expires))
    return {wanted[a]: hit for a, (_, hit) in best.items()}


# One address against named lists, as an email notification is checked:
# prepared (engine/store/prepared.py), a hit then read in full by `listed`.
_ADDRESS_LISTS = Prepared(
    select(A.list_id).where(
        A.address == bindparam("address"),
        or_(A.expires_at.is_(None), A.expires_at > bindparam("now", type_=A.expires_at.type)),
    ),
    ("address", "now"),
)


def address_listed(
    conn: Connection, address: str, now: datetime, lists: Sequence[str]
) -> DncHit | None:
    """`listed` for one address on named lists: its hit, or None."""
    params = {"address": address.strip().lower(), "now": now}
    if not on_lists(conn, lists, _ADDRESS_LISTS, params):
        return None
    return listed(conn, [address], now, lists).get(address)
