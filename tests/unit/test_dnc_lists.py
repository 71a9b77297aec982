"""Several do-not-contact lists: the migration from the one global list,
expiry, lists checked in a campaign's order, contact entries, upload with a
broken row, export round trip, and the ledger rows every add writes.

The real SQLite store in tmp_path; a plain sqlite3 connection looks at what
is committed."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from engine.errors import BadRequest, Conflict, NotFound
from engine.store import Store
from engine.store.store import MIGRATIONS, build_engine
from engine.store.types import DncHit

T0 = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
A, B, C = "+12125550100", "+12125550101", "+12125550102"


def url_of(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def peek(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def alembic(url: str, action: str, revision: str) -> None:
    engine = build_engine(url)
    with engine.connect() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)
        conn.commit()
    engine.dispose()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(url_of(tmp_path))
    yield s
    await s.close()


# --------------------------------------------------------------- migration


async def test_migration_moves_the_global_list_into_internal(tmp_path: Path) -> None:
    url = url_of(tmp_path)
    alembic(url, "upgrade", "0003")
    conn = sqlite3.connect(tmp_path / "store.db")
    conn.executemany(
        "INSERT INTO dnc (number, source, created_at, expires_at) VALUES (?, ?, ?, ?)",
        [(A, "complaint", "2030-01-01 09:00:00.000000", None),
         (B, "import", "2030-01-02 09:00:00.000000", "2030-02-01 00:00:00.000000")],
    )  # fmt: skip
    conn.commit()
    conn.close()
    store = await Store.open(url)
    try:
        lists = {row["name"]: row for row in await store.dnc_lists()}
        assert {n: (r["kind"], r["numbers"]) for n, r in lists.items()} == {
            "internal": ("internal", 2), "opt-outs": ("optout", 0)}  # fmt: skip
        (a,) = await store.dnc_check(A, T0)
        assert (a["list"], a["source"], a["added_at"]) == (
            "internal", "complaint", "2030-01-01T09:00:00+00:00")  # fmt: skip
        (b,) = await store.dnc_check(B, T0)
        assert b["expires_at"] == "2030-02-01T00:00:00+00:00"
        assert await store.dnc_check(B, datetime(2030, 2, 1, tzinfo=UTC)) == []
        assert set(await store.dnc_numbers([A, B, C], T0)) == {A, B}
    finally:
        await store.close()
    tables = {n for (n,) in peek(tmp_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "dnc" not in tables and {"dnc_lists", "dnc_entries", "compliance_ledger"} <= tables
    triggers = peek(tmp_path, "SELECT name FROM sqlite_master WHERE type='trigger'")
    assert sorted(t for (t,) in triggers) == [
        "compliance_ledger_no_delete", "compliance_ledger_no_update"]  # fmt: skip
    # and back: one global list again, numbers kept
    alembic(url, "downgrade", "0003")
    assert sorted(peek(tmp_path, "SELECT number, source FROM dnc")) == [
        (A, "complaint"), (B, "import")]  # fmt: skip
    alembic(url, "upgrade", "head")
    assert len(peek(tmp_path, "SELECT * FROM dnc_entries")) == 2


# ------------------------------------------------------------------ expiry


async def test_expired_entries_never_block(store: Store) -> None:
    await store.dnc_add(A, expires_at=T0)
    just_before = T0 - timedelta(microseconds=1)
    assert await store.dnc_numbers([A], just_before) == {
        A: DncHit("internal", "internal", "manual", T0)}  # fmt: skip
    assert await store.dnc_numbers([A], T0) == {}  # expiry is the first instant it is inert
    assert await store.dnc_check(A, T0) == []
    assert len(await store.dnc_check(A, just_before)) == 1
    # a later add of an expired number replaces the entry, also on import
    await store.dnc_add(A, source="again")
    (entry,) = await store.dnc_check(A, T0 + timedelta(days=999))
    assert (entry["source"], entry["expires_at"]) == ("again", None)


# -------------------------------------------------------------- many lists


async def test_lists_are_checked_in_the_campaigns_order(store: Store) -> None:
    await store.dnc_create_list("national-2026", "national")
    await store.dnc_add(A, list="national-2026", source="upload")
    await store.dnc_add(A, source="complaint")  # internal
    await store.dnc_add(B, list="opt-outs", source="ivr")
    await store.dnc_add(C, list="national-2026", source="upload", expires_at=T0)
    yesterday = datetime.now(UTC) - timedelta(days=1)  # dnc_lists counts at the real clock
    await store.dnc_add("+12125550103", list="national-2026", expires_at=yesterday)
    got = await store.dnc_numbers([A, B, C], T0, lists=["national-2026", "internal"])
    assert got == {A: DncHit("national-2026", "national", "upload")}
    got = await store.dnc_numbers([A, B], T0, lists=["internal", "national-2026", "opt-outs"])
    assert got[A].list == "internal" and got[B] == DncHit("opt-outs", "optout", "ivr")
    assert got[A].reason == "do-not-contact list internal (complaint)"
    # no lists named: any list blocks (internal first, by creation)
    assert {n: h.list for n, h in (await store.dnc_numbers([A, B, C], T0)).items()} == {
        A: "internal", B: "opt-outs"}  # fmt: skip
    assert await store.dnc_numbers([A], T0, lists=[]) == {}
    with pytest.raises(NotFound, match="'nope'"):  # fail closed: an unknown list is no empty list
        await store.dnc_numbers([A], T0, lists=["internal", "nope"])
    assert await store.dnc_missing_lists(["internal", "nope", "opt-outs"]) == ["nope"]
    entries = await store.dnc_check(A, T0)
    assert [(e["list"], e["kind"], e["source"]) for e in entries] == [
        ("internal", "internal", "complaint"), ("national-2026", "national", "upload")]  # fmt: skip
    # remove works on one list; the default one is internal
    assert await store.dnc_remove(A) is True
    assert await store.dnc_remove(A) is False
    assert [e["list"] for e in await store.dnc_check(A, T0)] == ["national-2026"]
    assert await store.dnc_remove(A, list="national-2026") is True
    counts = {r["name"]: (r["numbers"], r["expired"]) for r in await store.dnc_lists()}
    assert counts == {"internal": (0, 0), "opt-outs": (1, 0), "national-2026": (1, 1)}


async def test_list_creation_and_unknown_lists(store: Store) -> None:
    with pytest.raises(Conflict):
        await store.dnc_create_list("internal", "internal")
    with pytest.raises(BadRequest, match="kind"):
        await store.dnc_create_list("x", "secret")
    with pytest.raises(BadRequest):
        await store.dnc_create_list("two words", "other")
    with pytest.raises(NotFound, match="no do-not-contact list 'typo'"):
        await store.dnc_add(A, list="typo")
    with pytest.raises(BadRequest, match="one of them"):
        await store.dnc_add(A, contact_id=1)
    with pytest.raises(BadRequest):
        await store.dnc_add()


# ---------------------------------------------------------------- contacts


async def test_a_contact_dnc_blocks_the_contact_and_shows_on_its_numbers(store: Store) -> None:
    contact = await store.add_contact("leads", [A, B])
    other = await store.add_contact("leads", [C])
    assert await store.dnc_add(contact_id=contact, list="opt-outs", source="email") is None
    hit = await store.dnc_contact(contact, T0, lists=["internal", "opt-outs"])
    assert hit == DncHit("opt-outs", "optout", "email")
    assert await store.dnc_contact(contact, T0, lists=["internal"]) is None
    assert await store.dnc_contact(other, T0) is None
    assert set(await store.dnc_contacts([contact, other], T0)) == {contact}
    # the number itself is not listed, but check says why it is blocked
    assert await store.dnc_numbers([A], T0) == {}
    (entry,) = await store.dnc_check(B, T0)
    assert (entry["list"], entry["via"], entry["contact_id"]) == (
        "opt-outs", f"contact {contact}", contact)  # fmt: skip
    (entry,) = await store.dnc_check(contact_id=contact, now=T0)
    assert entry["number"] is None
    with pytest.raises(NotFound, match="no contact 999"):
        await store.dnc_add(contact_id=999)
    assert await store.dnc_remove(contact_id=contact, list="opt-outs") is True
    assert await store.dnc_contact(contact, T0) is None


# ----------------------------------------------------------- upload, export


async def test_upload_with_a_broken_row_loses_nothing_else(tmp_path: Path, store: Store) -> None:
    await store.dnc_create_list("national-2026", "national")
    src = tmp_path / "national.csv"
    src.write_bytes(
        b"phone,note\n"
        b"212 555 0100,first\n"  # 2
        b"212 555 0101,too,many,columns\n"  # 3: damaged
        b"212 555 0102,third\n"  # 4
        b"not a number,x\n"  # 5: invalid
        b"212 555 0104,caf\xe9\n"  # 6: not UTF-8
        b"212 555 0105,last\n"  # 7
    )
    errors = tmp_path / "errors.csv"
    summary = await store.dnc_import(src, list="national-2026", error_path=errors)
    assert (summary.rows, summary.imported, summary.invalid) == (6, 3, 3)
    rejected = errors.read_text().splitlines()
    assert rejected[0] == "line,reason,phone,note"
    assert [r.split(",")[0] for r in rejected[1:]] == ["3", "5", "6"]
    assert "is not a phone number" in rejected[2] and "columns" in rejected[1]
    wanted = [A, B, C, "+12125550104", "+12125550105"]
    listed = await store.dnc_numbers(wanted, T0, lists=["national-2026"])
    assert set(listed) == {A, C, "+12125550105"}  # every good row, around the broken ones
    assert await store.dnc_numbers([A], T0, lists=["internal"]) == {}  # only into that list
    # an import into a list that does not exist fails before reading anything
    with pytest.raises(NotFound):
        await store.dnc_import(src, list="nope")


async def test_export_round_trip(tmp_path: Path, store: Store) -> None:
    contact = await store.add_contact("leads", ["+12125550199"])
    await store.dnc_add(A, source="complaint", note="called twice, angry")
    await store.dnc_add(B, source="agent:7", expires_at=datetime(2099, 1, 1, tzinfo=UTC))
    await store.dnc_add(contact_id=contact, source="unsubscribe")
    first, second = tmp_path / "internal.csv", tmp_path / "copy.csv"
    assert await store.dnc_export("internal", first) == 3
    await store.dnc_create_list("copy", "other")
    summary = await store.dnc_import(first, list="copy", source="ignored-when-a-row-has-one")
    assert (summary.rows, summary.imported, summary.invalid) == (3, 3, 0)
    assert await store.dnc_export("copy", second) == 3

    def without_added_at(path: Path) -> list[list[str]]:
        rows = [line.split(",") for line in path.read_text().splitlines()]
        assert rows[0] == ["number", "contact_id", "source", "added_at", "expires_at", "note"]
        return [r[:3] + r[4:] for r in rows]

    assert without_added_at(first) == without_added_at(second)
    assert without_added_at(first)[1:] == [
        [A, "", "complaint", "", '"called twice', ' angry"'],
        [B, "", "agent:7", "2099-01-01T00:00:00+00:00", ""],
        ["", str(contact), "unsubscribe", "", ""],
    ]
    with pytest.raises(NotFound):
        await store.dnc_export("nope", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


# ----------------------------------------------------------------- ledger


async def test_every_add_is_in_the_ledger(tmp_path: Path, store: Store) -> None:
    await store.dnc_add(A, source="manual")
    await store.dnc_add(B, list="opt-outs", source="ivr", campaign="spring")
    contact = await store.add_contact("leads", [C])
    await store.dnc_add(contact_id=contact, list="opt-outs", source="agent:7")
    src = tmp_path / "optouts.csv"
    src.write_text("number,source\n2125550150,sms\n2125550151,\n", encoding="utf-8")
    await store.dnc_import(src, list="opt-outs", source="unsubscribe")
    src.write_text("number\n2125550160\n2125550161\n", encoding="utf-8")
    await store.dnc_import(src, source="import")  # internal: one summary row
    rows = await store.ledger_rows()
    assert [(r["kind"], r["number"], r["contact_id"], r["source"], r["campaign"]) for r in rows] == [
        ("dnc_added", A, None, "manual", None),
        ("opt_out", B, None, "ivr", "spring"),
        ("opt_out", None, contact, "agent:7", None),
        ("opt_out", "+12125550150", None, "sms", None),
        ("opt_out", "+12125550151", None, "unsubscribe", None),
        ("dnc_added", None, None, "import", None),
    ]  # fmt: skip
    assert rows[1]["rule"] == "47 CFR 64.1200(d)(3)"
    assert rows[1]["detail"]["list"] == "opt-outs"
    assert rows[5]["detail"] == {"file": "optouts.csv", "imported": 2, "list": "internal",
                                 "list_kind": "internal", "rows": 2}  # fmt: skip
    assert await store.ledger_rows(campaign="spring", kinds=["opt_out"]) == [rows[1]]
