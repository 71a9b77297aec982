"""The store: schema and migrations, contacts and campaigns, the dialer's
queries, group-committed writes (durable before create_attempt returns),
reconciliation after a crash, do-not-contact, and the figures of reports.

Every test gets its own SQLite file; a second, plain sqlite3 connection
looks at what is really committed."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, create_engine

from engine.errors import BadRequest, Conflict, NotFound
from engine.store import AttemptIntent, Store, StoreClosed, queries
from engine.store.schema import metadata
from engine.store.store import MIGRATIONS

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def db_file(tmp_path: Path) -> Path:
    return tmp_path / "var" / "store.db"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{db_file(tmp_path)}")
    yield s
    await s.close()


def peek(tmp_path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """What a separate connection sees: committed data only (WAL)."""
    conn = sqlite3.connect(db_file(tmp_path))
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def campaign_with(store: Store, n: int, name: str = "c1") -> list[int]:
    ids = [await store.add_contact("l1", [f"+1212555{i:04d}"]) for i in range(n)]
    await store.upsert_campaign(name, "l1", {"mode": "agentless"})
    assert await store.sync_campaign_contacts(name) == n
    return ids


def intent(contact_id: int, campaign: str = "c1", at: datetime = T0) -> AttemptIntent:
    return AttemptIntent(campaign, contact_id, "+12125550000", "trunk1", "+15550001111", at)


# ------------------------------------------------------------ schema, open


async def test_open_creates_the_directory_in_wal_mode_at_head(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{db_file(tmp_path)}")
    await store.close()
    assert db_file(tmp_path).exists()
    assert peek(tmp_path, "PRAGMA journal_mode") == [("wal",)]
    revisions = sorted(p.name for p in (MIGRATIONS / "versions").glob("0*.py"))
    head = revisions[-1].split("_")[0]  # every migration applied, up to the newest
    assert peek(tmp_path, "SELECT version_num FROM alembic_version") == [(head,)]
    assert revisions == [
        "0001_initial.py", "0002_call_analysis.py", "0003_agents.py", "0004_compliance.py",
        "0005_dialling_order.py",
        "0006_amd_samples.py", "0007_messages.py",
    ]  # fmt: skip


async def test_migrations_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no alembic.ini, no migrations folder here
    store = await Store.open("sqlite:///rel/x.db")
    await store.close()
    assert (elsewhere / "rel" / "x.db").exists()


async def test_migrated_schema_matches_the_metadata(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{db_file(tmp_path)}")
    await store.close()
    engine = create_engine(f"sqlite:///{db_file(tmp_path)}")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        # and the comparison does see a difference when there is one
        changed = MetaData()
        for table in metadata.sorted_tables:
            table.to_metadata(changed)
        changed.tables["dnc_entries"].append_column(Column("extra", Integer))
        assert compare_metadata(context, changed) != []
    engine.dispose()


async def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    url = f"sqlite:///{db_file(tmp_path)}"
    store = await Store.open(url)
    await store.add_contact("l1", ["+12125550100"])
    await store.close()
    store = await Store.open(url)
    assert await store.lists() == [
        {"name": "l1", "contacts": 1, "created_at": (await store.lists())[0]["created_at"]}
    ]
    await store.close()


async def test_synchronous_is_a_url_option(tmp_path: Path) -> None:
    base = f"sqlite:///{db_file(tmp_path)}"
    for query, expected in (("", 1), ("?synchronous=full", 2), ("?synchronous=NORMAL", 1)):
        store = await Store.open(base + query)
        mode = await store._writer.run(lambda c: c.exec_driver_sql("PRAGMA synchronous").scalar())
        fks = await store._writer.run(lambda c: c.exec_driver_sql("PRAGMA foreign_keys").scalar())
        await store.close()
        assert (mode, fks) == (expected, 1)
    with pytest.raises(BadRequest, match="synchronous"):
        await Store.open(base + "?synchronous=sometimes")


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{db_file(tmp_path)}")
    await store.close()
    with pytest.raises(StoreClosed):
        await store.lists()
    with pytest.raises(StoreClosed):
        store.update_attempt(1, result="busy")


# ------------------------------------------------------ lists and contacts


async def test_add_contact_normalises_and_refuses_bad_or_taken_numbers(store: Store) -> None:
    cid = await store.add_contact("l1", ["(212) 555-0100", "212.555.0101"], {"name": "Ann"})
    contact = await store.contact(cid)
    assert contact["phones"] == ["+12125550100", "+12125550101"]
    assert contact["attributes"] == {"name": "Ann"}
    assert contact["list"] == "l1"
    with pytest.raises(BadRequest, match="not a valid"):
        await store.add_contact("l1", ["555-0100"])
    with pytest.raises(Conflict, match=r"\+12125550101"):
        await store.add_contact("l1", ["+1 212 555 0101"])
    assert await store.add_contact("l2", ["+12125550101"])  # another list: fine
    with pytest.raises(NotFound):
        await store.contact(999)
    lists = {row["name"]: row["contacts"] for row in await store.lists()}
    assert lists == {"l1": 1, "l2": 1}


async def test_top_contacts_come_first_even_over_priorities(store: Store) -> None:
    a, b, c = await campaign_with(store, 3)
    due = await store.due_contacts("c1", T0, 10)
    assert [d.contact_id for d in due] == [a, b, c]
    urgent = await store.add_contact("l1", ["+13125550001"], priority=5)
    top = await store.add_contact("l1", ["+13125550002"], top=True)
    top2 = await store.add_contact("l1", ["+13125550003"], top=True)
    # contacts added to the list join the campaign (it is not completed)
    due = await store.due_contacts("c1", T0, 10)
    assert [d.contact_id for d in due] == [top2, top, urgent, a, b, c]
    assert [d.priority for d in due] == [5, 5, 5, 0, 0, 0]


# ------------------------------------------------------------- campaigns


async def test_campaign_upsert_state_and_errors(store: Store) -> None:
    cid = await store.upsert_campaign("c1", "l1", {"lines": 10})
    assert await store.upsert_campaign("c1", "l1", {"lines": 20}) == cid
    row = await store.campaign("c1")
    assert (row["state"], row["list"], row["definition"]) == ("stopped", "l1", {"lines": 20})
    await store.set_campaign_state("c1", "running")
    await store.upsert_campaign("c1", "l1", {"lines": 30})
    assert (await store.campaign("c1"))["state"] == "running"  # reloading keeps the state
    assert [c["name"] for c in await store.campaigns()] == ["c1"]
    with pytest.raises(BadRequest):
        await store.set_campaign_state("c1", "flying")
    with pytest.raises(NotFound):
        await store.set_campaign_state("nope", "running")
    with pytest.raises(NotFound):
        await store.campaign("nope")
    await store.upsert_campaign("c1", "l2", {})  # nothing dialled yet: may switch lists
    await store.add_contact("l2", ["+12125550100"])
    await store.sync_campaign_contacts("c1")
    with pytest.raises(Conflict):
        await store.upsert_campaign("c1", "l1", {})


async def test_sync_enrols_each_contact_once(store: Store) -> None:
    await campaign_with(store, 4)
    assert await store.sync_campaign_contacts("c1") == 0
    await store.set_campaign_state("c1", "completed")
    await store.add_contact("l1", ["+13125550001"])  # a completed campaign does not grow...
    assert (await store.progress("c1"))["total"] == 4
    assert await store.sync_campaign_contacts("c1") == 1  # ...until it is synced
    with pytest.raises(NotFound):
        await store.sync_campaign_contacts("nope")


# ---------------------------------------------------------------- dialing


async def test_due_contacts_order_limit_exclude_and_retry_time(store: Store) -> None:
    a, b, c, d = await campaign_with(store, 4)
    store.set_contact_state("c1", a, state="retry", next_attempt_at=T0 + timedelta(minutes=10))
    store.set_contact_state("c1", b, state="done")
    due = await store.due_contacts("c1", T0, 10)  # queued writes are seen: FIFO
    assert [x.contact_id for x in due] == [c, d]
    assert [x.contact_id for x in await store.due_contacts("c1", T0, 1)] == [c]
    assert [x.contact_id for x in await store.due_contacts("c1", T0, 10, {c})] == [d]
    assert await store.due_contacts("c1", T0, 0) == []
    later = await store.due_contacts("c1", T0 + timedelta(minutes=10), 10)
    assert [x.contact_id for x in later] == [a, c, d]  # a is first by position again
    assert later[0].phones == ("+12125550000",)
    with pytest.raises(NotFound):
        await store.due_contacts("nope", T0, 5)
    with pytest.raises(TypeError):
        await store.due_contacts("c1", datetime(2030, 1, 1), 5)  # naive: whose time?


async def test_due_retries_are_exact_in_a_backlog_and_for_an_earlier_now(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "PROMOTE_CHUNK", 2)  # the backlog moves in slices of 2
    ids = await campaign_with(store, 7)
    for i, cid in enumerate(reversed(ids[:5])):  # due times in reverse order of position
        store.set_contact_state("c1", cid, state="retry", next_attempt_at=T0 + i * MINUTE)
    store.set_contact_state("c1", ids[5], state="done")
    store.set_contact_state("c1", ids[6], state="in_flight")
    due = await store.due_contacts("c1", T0 + 10 * MINUTE, 10)
    assert [d.contact_id for d in due] == ids[:5]  # by position, not by due time
    earlier = await store.due_contacts("c1", T0 + MINUTE, 10)
    assert [d.contact_id for d in earlier] == ids[3:5]  # only those due at T0 + 1 min
    store.set_contact_state("c1", ids[0], state="retry", next_attempt_at=T0 + 60 * MINUTE)
    later = await store.due_contacts("c1", T0 + 10 * MINUTE, 10)
    assert [d.contact_id for d in later] == ids[1:5]  # moved back to waiting


async def test_candidates_carry_phones_in_column_order_and_attempts(store: Store) -> None:
    cid = await store.add_contact("l1", ["+12125550002", "+12125550001"], {"k": "v"})
    await store.upsert_campaign("c1", "l1", {})
    await store.sync_campaign_contacts("c1")
    store.set_contact_state("c1", cid, state="retry", next_attempt_at=T0, attempts_delta=2)
    (cand,) = await store.due_contacts("c1", T0, 5)
    assert cand.phones == ("+12125550002", "+12125550001")
    assert (cand.attempts, cand.attributes) == (2, {"k": "v"})


async def test_create_attempt_is_committed_when_it_returns(tmp_path: Path, store: Store) -> None:
    (cid,) = await campaign_with(store, 1)
    attempt_id = await store.create_attempt(intent(cid))
    rows = peek(tmp_path, "SELECT id, contact_id, trunk, caller_id FROM attempts")
    assert rows == [(attempt_id, cid, "trunk1", "+15550001111")]


async def test_concurrent_creates_share_group_commits(tmp_path: Path, store: Store) -> None:
    (cid,) = await campaign_with(store, 1)
    before = store.commits
    ids = await asyncio.gather(*(store.create_attempt(intent(cid)) for _ in range(200)))
    assert len(set(ids)) == 200
    assert peek(tmp_path, "SELECT count(*) FROM attempts") == [(200,)]
    assert store.commits - before < 50  # many rows per commit, not one each


async def test_commit_interval_spaces_group_commits(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{db_file(tmp_path)}", commit_interval=0.05)
    try:
        (cid,) = await campaign_with(store, 1)
        loop = asyncio.get_running_loop()
        start, before = loop.time(), store.commits
        for _ in range(3):  # one after another: each waits for its commit slot
            await store.create_attempt(intent(cid))
        assert loop.time() - start >= 0.09
        assert store.commits - before == 3
    finally:
        await store.close()


async def test_a_failing_write_does_not_sink_its_group(tmp_path: Path, store: Store) -> None:
    (cid,) = await campaign_with(store, 1)
    results = await asyncio.gather(
        store.create_attempt(intent(cid)),
        store.create_attempt(intent(cid, campaign="nope")),
        store.create_attempt(intent(99_999)),  # no such contact: foreign key
        store.create_attempt(intent(cid)),
        return_exceptions=True,
    )
    assert isinstance(results[1], NotFound)
    assert isinstance(results[2], Exception)
    assert peek(tmp_path, "SELECT id FROM attempts ORDER BY id") == [
        (results[0],),
        (results[3],),
    ]


async def test_updates_and_states_land_after_flush(tmp_path: Path, store: Store) -> None:
    (cid,) = await campaign_with(store, 1)
    aid = await store.create_attempt(intent(cid))
    store.set_contact_state("c1", cid, state="in_flight")
    store.update_attempt(aid, invite_sent_at=T0, call_id="abc@host")
    store.update_attempt(aid, ended_at=T0 + timedelta(seconds=3), result="busy", sip_status=486)
    when = T0 + timedelta(minutes=10)
    store.set_contact_state(
        "c1", cid, state="retry", next_attempt_at=when, last_result="busy", attempts_delta=1
    )
    await store.flush()
    assert peek(tmp_path, "SELECT call_id, result, sip_status FROM attempts") == [
        ("abc@host", "busy", 486)
    ]
    assert peek(
        tmp_path, "SELECT state, attempts, last_result, next_attempt_at FROM campaign_contacts"
    ) == [("retry", 1, "busy", "2030-01-15 12:10:00.000000")]
    store.set_contact_state("c1", cid, state="done", attempts_delta=1)  # keeps last_result
    await store.flush()
    assert peek(
        tmp_path, "SELECT state, attempts, last_result, next_attempt_at FROM campaign_contacts"
    ) == [("done", 2, "busy", None)]


async def test_bad_fire_and_forget_calls_fail_at_once(store: Store) -> None:
    with pytest.raises(TypeError, match="colour"):
        store.update_attempt(1, colour="red")
    with pytest.raises(TypeError, match="aware"):
        store.update_attempt(1, ended_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="state"):
        store.set_contact_state("c1", 1, state="asleep")


async def test_reconcile_closes_open_attempts_and_requeues(tmp_path: Path, store: Store) -> None:
    a, b, c = await campaign_with(store, 3)
    open1 = await store.create_attempt(intent(a))
    open2 = await store.create_attempt(intent(b))
    done = await store.create_attempt(intent(c))
    store.update_attempt(done, ended_at=T0, result="answered")
    for cid in (a, b):
        store.set_contact_state("c1", cid, state="in_flight", attempts_delta=1)
    store.set_contact_state("c1", c, state="done", attempts_delta=1)
    await store.flush()
    now = T0 + timedelta(hours=1)
    reconciled = await store.reconcile_in_flight(now)
    assert sorted(r["id"] for r in reconciled) == [open1, open2]
    assert {(r["result"], r["ended_at"], r["campaign"]) for r in reconciled} == {
        ("interrupted", now.isoformat(), "c1")
    }
    assert peek(
        tmp_path, "SELECT contact_id, state, attempts FROM campaign_contacts ORDER BY contact_id"
    ) == [(a, "retry", 1), (b, "retry", 1), (c, "done", 1)]
    assert [d.contact_id for d in await store.due_contacts("c1", now, 10)] == [a, b]
    assert await store.reconcile_in_flight(now) == []  # nothing left open


# --------------------------------------------------------- do-not-contact


async def test_dnc_add_check_remove_and_expiry(store: Store) -> None:
    assert await store.dnc_add("(212) 555-0100", source="complaint") == "+12125550100"
    (entry,) = await store.dnc_check("+1 212 555 0100", T0)
    assert (entry["number"], entry["source"], entry["list"]) == (
        "+12125550100", "complaint", "internal")  # fmt: skip
    await store.dnc_add("+12125550101", expires_at=T0 + timedelta(days=30))
    numbers = ["+12125550100", "+12125550101", "+12125550102"]
    assert set(await store.dnc_numbers(numbers, T0)) == {"+12125550100", "+12125550101"}
    assert set(await store.dnc_numbers(numbers, T0 + timedelta(days=31))) == {"+12125550100"}
    assert await store.dnc_check("2125550101", T0 + timedelta(days=31)) == []
    assert await store.dnc_remove("212-555-0100") is True
    assert await store.dnc_remove("212-555-0100") is False
    assert set(await store.dnc_numbers(numbers, T0)) == {"+12125550101"}
    assert await store.dnc_numbers([], T0) == {}
    with pytest.raises(BadRequest):
        await store.dnc_add("12")
    with pytest.raises(BadRequest):
        await store.dnc_check("+44", T0)


async def test_dnc_import_with_header_expiry_duplicates_and_errors(
    tmp_path: Path, store: Store
) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)  # imports compare with the real clock
    await store.dnc_add("+12125550100", expires_at=yesterday)  # expired: replaced
    await store.dnc_add("+12125550101")  # active: a duplicate
    src = tmp_path / "dnc.csv"
    src.write_text(
        "name,Phone Number,expires_at\n"
        "a,212 555 0100,\n"  # 2: refreshes the expired entry
        "b,212 555 0101,\n"  # 3: duplicate (listed)
        "c,+1 212 555 0102,2099-01-01\n"  # 4
        "d,not a number,\n"  # 5: invalid
        "e,(212) 555-0102,\n"  # 6: duplicate of line 4
        "f,212 555 0103,someday\n",  # 7: bad expiry
        encoding="utf-8",
    )
    errors = tmp_path / "dnc-errors.csv"
    summary = await store.dnc_import(src, error_path=errors)
    assert (summary.rows, summary.imported, summary.duplicates, summary.invalid) == (6, 2, 2, 2)
    lines = errors.read_text().splitlines()
    assert lines[0] == "line,reason,name,Phone Number,expires_at"
    assert [ln.split(",")[0] for ln in lines[1:]] == ["3", "5", "6", "7"]
    assert "already on the list" in lines[1] and "also on line 4" in lines[3]
    assert "expires_at" in lines[4]
    listed = await store.dnc_numbers(["+12125550100", "+12125550102", "+12125550103"], T0)
    assert set(listed) == {"+12125550100", "+12125550102"}
    (entry,) = await store.dnc_check("+12125550102", T0)
    assert entry["expires_at"].startswith("2099-01-01")
    assert await store.dnc_numbers(["+12125550102"], datetime(2099, 1, 2, tzinfo=UTC)) == {}


async def test_dnc_import_of_a_bare_list_of_numbers(tmp_path: Path, store: Store) -> None:
    src = tmp_path / "bare.csv"
    src.write_text("2125550100\n2125550101\n\n2125550102\n", encoding="utf-8")
    summary = await store.dnc_import(src, source="carrier")
    assert (summary.rows, summary.imported, summary.error_path) == (3, 3, None)
    (entry,) = await store.dnc_check("2125550100", T0)
    assert entry["source"] == "carrier"


# ---------------------------------------------------------------- reports


async def test_progress_and_summary_of_a_known_scenario(store: Store) -> None:
    """Five contacts; every figure below is worked out by hand from the times."""
    c1, c2, c3, c4, c5 = await campaign_with(store, 5)
    s = timedelta(seconds=1)

    async def attempt(
        cid: int, ring: float | None, answer: float | None, end: float | None, result: str | None
    ) -> None:
        aid = await store.create_attempt(intent(cid))
        fields: dict[str, object] = {"invite_sent_at": T0}
        if ring is not None:
            fields["ringing_at"] = T0 + ring * s
        if answer is not None:
            fields["answered_at"] = T0 + answer * s
        if end is not None:
            fields.update(ended_at=T0 + end * s, result=result)
        store.update_attempt(aid, **fields)

    await attempt(c1, ring=2, answer=5, end=35, result="answered")  # ring 2 s, talk 30 s
    await attempt(c2, ring=4, answer=None, end=6, result="busy")  # ring 4 s
    await attempt(c2, ring=1, answer=2, end=12, result="answered")  # ring 1 s, talk 10 s
    await attempt(c3, ring=3, answer=None, end=30, result="no_answer")  # ring 3 s
    await attempt(c5, ring=None, answer=None, end=None, result=None)  # still in flight
    for cid, state in (
        (c1, "done"),
        (c2, "done"),
        (c3, "retry"),
        (c4, "skipped"),
        (c5, "in_flight"),
    ):
        store.set_contact_state("c1", cid, state=state)
    await store.flush()
    progress = await store.progress("c1")
    assert progress == {
        "total": 5,
        "pending": 0,
        "in_flight": 1,
        "retry": 1,
        "done": 2,
        "skipped": 1,
        "failed": 0,
        "callback": 0,
        "deferred": 0,
        "sending": 0,
        "processed": 3,
        "attempts": 5,
        "by_result": {"answered": 2, "busy": 1, "no_answer": 1},
    }
    summary = await store.summary("c1")
    keys = ("answered", "connect_rate", "avg_ring_ms", "avg_pdd_ms", "avg_talk_ms")
    assert {k: summary[k] for k in keys} == {
        "answered": 2,
        "connect_rate": 0.4,  # 2 answered of 5 attempts
        "avg_ring_ms": 8250,  # rang until answer or end: (3 + 2 + 1 + 27) / 4 s
        "avg_pdd_ms": 2500,  # INVITE to first ring: (2 + 4 + 1 + 3) / 4 s
        "avg_talk_ms": 20000,  # (30 + 10) / 2 s
    }
    assert summary["total"] == 5


async def test_summary_of_an_empty_campaign(store: Store) -> None:
    await store.upsert_campaign("c1", "l1", {})
    summary = await store.summary("c1")
    assert (summary["total"], summary["attempts"], summary["connect_rate"]) == (0, 0, 0.0)
    assert (summary["avg_ring_ms"], summary["avg_talk_ms"]) == (None, None)
    with pytest.raises(NotFound):
        await store.progress("nope")


async def test_attempts_report_every_column_in_order(store: Store) -> None:
    a, b = await campaign_with(store, 2)
    first = await store.create_attempt(intent(a))
    second = await store.create_attempt(intent(b, at=T0 + timedelta(seconds=1)))
    store.update_attempt(first, ended_at=T0 + timedelta(seconds=9), result="busy", sip_status=486)
    await store.flush()
    rows = await store.attempts("c1")
    assert [r["id"] for r in rows] == [first, second]
    assert rows[0]["ended_at"] == "2030-01-15T12:00:09+00:00"
    assert (rows[0]["campaign"], rows[0]["sip_status"], rows[1]["result"]) == ("c1", 486, None)
    assert {
        "number",
        "trunk",
        "caller_id",
        "call_id",
        "created_at",
        "invite_sent_at",
        "ringing_at",
        "answered_at",
        "reason",
        "q850_cause",
        "ended_by",
        "duration_ms",
    } <= set(rows[0])
    assert [r["id"] for r in await store.attempts("c1", limit=1)] == [first]


# ------------------------------------------------------------------ crash

CRASHER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from engine.store import AttemptIntent, Store

    async def main(url):
        store = await Store.open(url)
        await store.upsert_campaign("crash", "crash", {})
        cid = await store.add_contact("crash", ["+12125550100"])
        await store.sync_campaign_contacts("crash")

        async def one():
            intent = AttemptIntent("crash", cid, "+12125550100", "t", None, datetime.now(UTC))
            attempt_id = await store.create_attempt(intent)
            sys.stdout.write(f"{attempt_id}\\n")
            sys.stdout.flush()

        while True:
            await asyncio.gather(*(one() for _ in range(8)))

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_kill_9_loses_no_attempt_that_was_returned(tmp_path: Path) -> None:
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    url = f"sqlite:///{db_file(tmp_path)}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), url, stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=env
    )
    assert proc.stdout is not None
    printed: list[int] = []
    try:
        while len(printed) < 400:
            line = await proc.stdout.readline()
            assert line, "the crasher died on its own"
            printed.append(int(line))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest = await proc.stdout.read()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    printed += [int(x) for x in rest.split(b"\n")[:-1]]  # whole lines only
    stored = {row[0] for row in peek(tmp_path, "SELECT id FROM attempts")}
    assert set(printed) <= stored
    # after the restart, every attempt left open is reconciled: none unrecorded
    store = await Store.open(url)
    try:
        reconciled = await store.reconcile_in_flight(datetime.now(UTC))
        assert {r["id"] for r in reconciled} == stored
        assert all(r["result"] == "interrupted" for r in reconciled)
    finally:
        await store.close()


async def test_callbacks_left_dialling_by_a_crash_are_pending_again(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    store = await Store.open(f"sqlite:///{tmp_path / 'cb.db'}")
    try:
        now = datetime.now(UTC)
        ids = [
            await store.add_callback(
                campaign="c1",
                contact_id=i,
                number=f"+1212555000{i}",
                agent=None,
                due_at=now,
                state="pending",
                created_by="ana",
                attempt_id=None,
                created_at=now,
            )
            for i in range(3)
        ]
        store.set_callback(ids[0], state="dialling")
        store.set_callback(ids[1], state="dialled", attempt_id=9)
        assert await store.reset_dialling_callbacks() == 1
        states = {cb["id"]: cb["state"] for cb in await store.callbacks("c1")}
        assert states == {ids[0]: "pending", ids[1]: "dialled", ids[2]: "pending"}
        due = await store.due_callbacks("c1", now, 10)
        assert [cb["id"] for cb in due] == [ids[0], ids[2]]
    finally:
        await store.close()
