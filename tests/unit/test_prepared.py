"""Prepared statements (engine/store/prepared.py) and the message store's hot
path that runs on them: the same rows as SQLAlchemy would write, inside the
group's transaction, refused where SQLAlchemy's own execution is needed, and
one message per campaign contact without a savepoint."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, create_engine, select

from engine.errors import NotFound
from engine.store import Store
from engine.store.messagedb import DuplicateMessage
from engine.store.prepared import Prepared, flush_deferred, install
from engine.store.schema import UTCDateTime
from engine.store.types import DncHit

T = datetime(2030, 1, 15, 12, 0, 5, 250_000, tzinfo=UTC)

meta = MetaData()
things = Table(
    "things",
    meta,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False),
    Column("at", UTCDateTime),
    Column("n", Integer, nullable=False, server_default="7"),
)
defaulted = Table(
    "defaulted",
    meta,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), default=lambda: "from python"),
)

INSERT = Prepared(
    things.insert().values(name=bindparam("name"), at=bindparam("at", type_=things.c.at.type)),
    ("name", "at"),
)


def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    e = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    meta.create_all(e)
    return e


def test_rows_match_what_sqlalchemy_writes(tmp_path: Path) -> None:
    e = engine(tmp_path)
    with e.connect() as conn:
        INSERT.run(conn, {"name": "prepared", "at": T})
        INSERT.run(conn, {"name": "no time", "at": None})
        conn.execute(things.insert(), {"name": "core", "at": T})
        conn.commit()
    raw = sqlite3.connect(tmp_path / "t.db").execute("SELECT name, at, n FROM things").fetchall()
    assert raw[0][1] == raw[2][1] == "2030-01-15 12:00:05.250000"  # UTC, SQLAlchemy's format
    assert raw[1][1] is None and {r[2] for r in raw} == {7}  # the server default applies
    with e.connect() as conn:  # and reads back through Core as the aware time it was
        assert conn.execute(select(things.c.at).where(things.c.name == "prepared")).scalar() == T


def test_a_naive_time_is_refused_as_through_core(tmp_path: Path) -> None:
    with engine(tmp_path).connect() as conn, pytest.raises(ValueError, match="naive datetime"):
        INSERT.run(conn, {"name": "x", "at": datetime(2030, 1, 1)})


def test_statements_join_the_connections_transaction(tmp_path: Path) -> None:
    e = engine(tmp_path)
    with e.connect() as conn:
        INSERT.run(conn, {"name": "undone", "at": T})
        assert conn.in_transaction()
        conn.rollback()
        INSERT.run(conn, {"name": "kept", "at": T})
        conn.commit()
    names = sqlite3.connect(tmp_path / "t.db").execute("SELECT name FROM things").fetchall()
    assert names == [("kept",)]


def test_bound_literals_and_returning(tmp_path: Path) -> None:
    e = engine(tmp_path)
    newest = Prepared(
        select(things.c.id, things.c.name)
        .where(things.c.name != bindparam("skip"))
        .order_by(things.c.id.desc())
        .limit(1),
        ("skip",),
    )
    with e.connect() as conn:
        for name in ("a", "b", "c"):
            INSERT.run(conn, {"name": name, "at": T})
        assert newest.first(conn, {"skip": "c"}) == (2, "b")  # the LIMIT's own value
        assert newest.first(conn, {"skip": "zz"}) == (3, "c")
        assert Prepared(select(things.c.id).where(things.c.id > 5), ()).first(conn, {}) is None


def test_what_needs_sqlalchemys_execution_is_refused(tmp_path: Path) -> None:
    e = engine(tmp_path)
    with e.connect() as conn:
        with pytest.raises(TypeError, match="column defaults"):
            Prepared(defaulted.insert().values(id=bindparam("id")), ("id",)).run(conn, {"id": 1})
        expanding = select(things.c.id).where(things.c.id.in_(bindparam("ids", expanding=True)))
        with pytest.raises(TypeError, match=r"expanding|post-compile"):
            Prepared(expanding, ("ids",)).run(conn, {"ids": [1]})
        with pytest.raises(TypeError, match="no parameter"):
            Prepared(things.insert().values(name=bindparam("name")), ("name", "nope")).run(
                conn, {"name": "x"}
            )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    await s.close()


async def test_one_message_per_campaign_contact_and_the_group_survives(
    tmp_path: Path, store: Store
) -> None:
    contact = await store.add_contact("l1", ["+12125550100"])
    other = await store.add_contact("l1", ["+12125550101"])
    await store.upsert_campaign("c1", "l1", {"mode": "agentless"})
    await store.sync_campaign_contacts("c1")
    row = {"channel": "sms", "address": "+12125550100", "sender": "s", "account": "a",
           "body": "hi", "contact_id": contact}  # fmt: skip
    first = await store.create_message(row, campaign="c1")
    with pytest.raises(DuplicateMessage) as caught:
        await store.create_message({**row, "body": "again"}, campaign="c1")
    assert caught.value.message_id == first
    # Another contact of the same campaign, and the same contact as a notification.
    second = await store.create_message({**row, "contact_id": other}, campaign="c1")
    note = await store.create_message(row)
    assert len({first, second, note}) == 3
    db = sqlite3.connect(tmp_path / "store.db")
    assert db.execute("SELECT id, body FROM messages ORDER BY id").fetchall() == [
        (first, "hi"), (second, "hi"), (note, "hi")
    ]  # fmt: skip
    states = db.execute("SELECT state FROM campaign_contacts ORDER BY contact_id").fetchall()
    assert states == [("sending",), ("sending",)]
    events = db.execute("SELECT message_id, status FROM message_events ORDER BY id").fetchall()
    assert events == [(first, "queued"), (second, "queued"), (note, "queued")]


def test_deferred_rows_land_at_commit_and_vanish_on_rollback(tmp_path: Path) -> None:
    e = engine(tmp_path)
    install(e)
    peek = sqlite3.connect(tmp_path / "t.db")
    with e.connect() as conn:
        INSERT.defer(conn, {"name": "later", "at": T})
        INSERT.defer(conn, {"name": "later too", "at": None})
        INSERT.run(conn, {"name": "now", "at": T})
        assert conn.execute(select(things.c.name)).scalars().all() == ["now"]
        conn.commit()
        assert [r[0] for r in peek.execute("SELECT name FROM things ORDER BY id")] == [
            "now", "later", "later too"
        ]  # fmt: skip
        INSERT.defer(conn, {"name": "rolled back", "at": T})
        conn.rollback()
        conn.commit()  # nothing left over to write
        INSERT.defer(conn, {"name": "flushed", "at": T})
        flush_deferred(conn)  # readable in the transaction once flushed
        assert "flushed" in conn.execute(select(things.c.name)).scalars().all()
        conn.commit()
    names = [r[0] for r in peek.execute("SELECT name FROM things ORDER BY id")]
    assert names == ["now", "later", "later too", "flushed"]
    with e.connect() as conn, pytest.raises(ValueError, match="naive"):  # checked at defer
        INSERT.defer(conn, {"name": "x", "at": datetime(2030, 1, 1)})


async def test_a_failed_write_leaves_no_history_the_others_keep_theirs(
    tmp_path: Path, store: Store
) -> None:
    """The writer replays a failed group one write at a time: the failing
    write's deferred history rows go with its rollback, the others' land once."""
    ok = await store.create_message(
        {"channel": "sms", "address": "+12125550100", "sender": "s", "account": "a", "body": "x"}
    )
    store.set_message_status(ok, "submitting", None, tries="+1")
    store.set_message_status(ok, "submitted", None, carrier_id="C1")
    bad = store.create_message({"channel": "sms", "address": "+12125550101"})  # no body
    with pytest.raises(Exception, match=r"NOT NULL|body"):
        await bad
    await store.flush()
    db = sqlite3.connect(tmp_path / "store.db")
    events = db.execute("SELECT message_id, status FROM message_events ORDER BY id").fetchall()
    assert events == [(ok, "queued"), (ok, "submitting"), (ok, "submitted")]


async def test_a_notification_is_created_unless_its_number_is_listed(
    tmp_path: Path, store: Store
) -> None:
    """The SMS notification path: the opt-out check (prepared, one number) and
    the message in one write; the hit is the one `dnc_numbers` gives."""
    now = datetime.now(UTC)
    await store.dnc_create_list("sms-optout", "optout")
    await store.dnc_create_list("other", "internal")
    await store.dnc_add("+12125550100", list="sms-optout", source="sms")
    await store.dnc_add("+12125550101", list="other", source="manual")  # not the list checked
    await store.dnc_add("+12125550102", list="sms-optout", source="sms",
                        expires_at=now + timedelta(milliseconds=200))  # fmt: skip
    row = {"channel": "sms", "sender": "s", "account": "a", "body": "hi"}
    lists = ["sms-optout"]
    hit = await store.create_message_unless_listed({**row, "address": "+12125550100"}, lists)
    assert hit == (await store.dnc_numbers(["+12125550100"], now, lists))["+12125550100"]
    assert isinstance(hit, DncHit) and (hit.list, hit.source) == ("sms-optout", "sms")
    other = await store.create_message_unless_listed({**row, "address": "+12125550101"}, lists)
    assert isinstance(other, int)
    soon = await store.create_message_unless_listed({**row, "address": "+12125550102"}, lists)
    assert isinstance(soon, DncHit)
    await asyncio.sleep(0.3)  # that entry expires: the number may be texted again
    later = await store.create_message_unless_listed({**row, "address": "+12125550102"}, lists)
    assert isinstance(later, int)
    with pytest.raises(NotFound, match="'nope'"):
        await store.create_message_unless_listed({**row, "address": "+12125550103"}, ["nope"])
    db = sqlite3.connect(tmp_path / "store.db")
    assert db.execute("SELECT id, address FROM messages ORDER BY id").fetchall() == [
        (other, "+12125550101"), (later, "+12125550102")
    ]  # fmt: skip


async def test_an_email_notification_is_created_unless_its_address_is_listed(
    tmp_path: Path, store: Store
) -> None:
    """The email notification path: the address (any capitals) checked against
    the opt-out and bounce lists and the message written in one transaction."""
    now = datetime.now(UTC)
    await store.dnc_create_list("email-optout", "optout")
    await store.dnc_create_list("email-bounces", "optout")
    await store.dnc_create_list("other", "internal")
    await store.dnc_add_address("Ann@Example.org", list="email-bounces", source="bounce")
    await store.dnc_add_address("bob@example.org", list="other", source="manual")
    row = {"channel": "email", "sender": "s@x.test", "account": "relay", "body": "hi",
           "subject": "Hi"}  # fmt: skip
    lists = ["email-optout", "email-bounces"]
    hit = await store.create_message_unless_listed({**row, "address": "ann@example.org"}, lists)
    assert isinstance(hit, DncHit) and (hit.list, hit.source) == ("email-bounces", "bounce")
    assert hit == (await store.dnc_addresses(["ann@example.org"], now, lists))["ann@example.org"]
    bob = await store.create_message_unless_listed({**row, "address": "bob@example.org"}, lists)
    assert isinstance(bob, int)
    # A number-shaped address is looked for among addresses, not numbers.
    await store.dnc_add("+12125550100", list="email-optout", source="sms")
    digits = await store.create_message_unless_listed({**row, "address": "+12125550100"}, lists)
    assert isinstance(digits, int)
    db = sqlite3.connect(tmp_path / "store.db")
    assert db.execute("SELECT id, address FROM messages ORDER BY id").fetchall() == [
        (bob, "bob@example.org"), (digits, "+12125550100")
    ]  # fmt: skip


async def test_a_given_created_at_is_kept_so_a_retry_has_the_same_date(
    tmp_path: Path, store: Store
) -> None:
    """An email's Date header is its created_at: the time the service composed
    it with is the one stored, so a retry after a restart (composed from the
    row) carries the same Date."""
    from email.utils import format_datetime

    from engine.email.sender import EmailPending

    made = datetime(2026, 12, 4, 19, 0, 59, 999_999, tzinfo=UTC)  # a second boundary next
    values = {"channel": "email", "address": "ann@example.org", "sender": "s@x.test",
              "account": "relay", "body": "hi", "subject": "Hi", "message_ref": "<1@x.test>",
              "created_at": made}  # fmt: skip
    message_id = await store.create_message(values)
    row = await store.email_outbound(message_id)
    assert row is not None
    again = EmailPending.of(row)
    assert again.created_at == made
    assert format_datetime(again.created_at) == "Fri, 04 Dec 2026 19:00:59 +0000"
    sms = await store.create_message({"channel": "sms", "address": "+12125550100",
                                      "sender": "s", "account": "a", "body": "hi"})  # fmt: skip
    db = sqlite3.connect(tmp_path / "store.db")
    (stamp,) = db.execute("SELECT created_at FROM messages WHERE id = ?", (sms,)).fetchone()
    assert stamp is not None and not str(stamp).startswith("2026-12-04 19:00:59")
