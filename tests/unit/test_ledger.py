"""The compliance ledger (append-only, in order with the group-committed
writes), the abandon row written with each abandon, the attempt's compliance
columns, and the compliance report on a hand-built store whose figures are
worked out by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, text, update
from sqlalchemy.exc import DBAPIError

from engine.ctl_compliance import format_compliance
from engine.errors import BadRequest, NotFound
from engine.store import AttemptIntent, Store
from engine.store.schema import compliance_ledger, metadata

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
EST = timezone(timedelta(hours=-5))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    await s.close()


# ------------------------------------------------------------------ ledger


async def test_rows_are_queued_in_order_and_read_back(store: Store) -> None:
    local = datetime(2030, 1, 1, 9, 30, tzinfo=EST)
    store.ledger("call_placed", source="dialer", at=T0, campaign="c1", contact_id=5,
                 number="+12125550100", rule="47 CFR 64.1200(c)(1); NY GBL 399-z",
                 local_time=local, detail={"attempt_id": 1})  # fmt: skip
    store.ledger("skip", source="dialer", at=T0 + DAY, campaign="c1", contact_id=6,
                 rule="do-not-contact list internal (manual)")  # fmt: skip
    store.ledger("deferral", source="dialer", at=T0 + 2 * DAY, campaign="c2",
                 rule="47 CFR 64.1200(c)(1)", local_time="2030-01-03T07:10:00-05:00")  # fmt: skip
    rows = await store.ledger_rows()
    assert [r["kind"] for r in rows] == ["call_placed", "skip", "deferral"]
    assert rows[0]["local_time"] == "2030-01-01T09:30:00-05:00"
    assert rows[0]["detail"] == {"attempt_id": 1} and rows[1]["detail"] is None
    assert rows[0]["at"] == T0.isoformat()
    assert await store.ledger_rows(campaign="c1", kinds=["skip"]) == [rows[1]]
    assert await store.ledger_rows(since=T0 + DAY, until=T0 + 2 * DAY) == [rows[1]]


@pytest.mark.parametrize(
    ("kind", "fields", "error"),
    [
        ("called", {"source": "dialer"}, "kind"),
        ("skip", {}, "source"),
        ("skip", {"source": "dialer", "reason": "x"}, "unknown fields reason"),
        ("skip", {"source": "dialer", "at": datetime(2030, 1, 1)}, "aware"),
        ("call_placed", {"source": "dialer", "local_time": datetime(2030, 1, 1)}, "naive"),
        ("call_placed", {"source": "dialer", "local_time": "2030-01-01T09:00"}, "offset"),
        ("skip", {"source": "dialer", "detail": ["x"]}, "mapping"),
    ],
)
async def test_bad_rows_fail_at_the_call(
    store: Store, kind: str, fields: dict[str, object], error: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        store.ledger(kind, **fields)


async def test_the_ledger_is_append_only(tmp_path: Path, store: Store) -> None:
    store.ledger("opt_out", source="sms", number="+12125550100")
    await store.flush()
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with engine.connect() as conn:
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(update(compliance_ledger).values(source="someone else"))
            conn.rollback()
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(delete(compliance_ledger))
            conn.rollback()
            assert conn.execute(text("SELECT source FROM compliance_ledger")).all() == [("sms",)]
    finally:
        engine.dispose()
    # the store has no way to change a row either
    assert not [n for n in dir(store) if "ledger" in n and n not in ("ledger", "ledger_rows")]


def test_create_all_adds_the_triggers_too() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.connect() as conn:
        conn.execute(compliance_ledger.insert().values(at=T0, kind="skip", source="x"))
        with pytest.raises(DBAPIError, match="append-only"):
            conn.execute(update(compliance_ledger).values(kind="abandon"))


async def test_an_abandon_writes_its_ledger_row_with_the_jurisdictions_rule(store: Store) -> None:
    contact = await store.add_contact("l1", ["+12125550100"])
    for name, jurisdiction in (("us1", "us"), ("uk1", "uk")):
        await store.upsert_campaign(name, "l1", {"dialing": {"jurisdiction": jurisdiction}})
        attempt = await store.create_attempt(
            AttemptIntent(name, contact, "+12125550100", "t", None, T0)
        )
        abandon_id = await store.record_abandon(
            campaign=name, attempt_id=attempt, contact_id=contact, number="+12125550100",
            answered_at=T0, greeting_end_at=T0 + timedelta(seconds=2), message_started_at=None,
            reason="no agent within 1s", at=T0 + timedelta(seconds=3),
        )  # fmt: skip
        (row,) = await store.ledger_rows(campaign=name, kinds=["abandon"])
        assert (row["source"], row["number"], row["contact_id"]) == (
            "dialer", "+12125550100", contact)  # fmt: skip
        assert row["detail"]["abandon_id"] == abandon_id
        assert row["detail"]["attempt_id"] == attempt
    rules = [r["rule"] for r in await store.ledger_rows(kinds=["abandon"])]
    assert rules[0] == "47 CFR 64.1200(a)(7)" and rules[1].startswith("Ofcom")


async def test_attempts_keep_local_time_and_the_ivr_path(store: Store) -> None:
    contact = await store.add_contact("l1", ["+12125550100"])
    await store.upsert_campaign("c1", "l1", {})
    attempt = await store.create_attempt(AttemptIntent("c1", contact, "+1", "t", None, T0))
    store.update_attempt(
        attempt, local_time=datetime(2030, 1, 1, 10, tzinfo=EST),
        ivr_path={"steps": ["greet", "main", "optout", "bye"]},
        ivr_summary="greet > main: 9 > optout > bye",
    )  # fmt: skip
    (row,) = await store.attempts("c1")
    assert row["local_time"] == "2030-01-01T10:00:00-05:00"
    assert row["ivr_path"] == '{"steps": ["greet", "main", "optout", "bye"]}'
    assert row["ivr_summary"] == "greet > main: 9 > optout > bye"
    with pytest.raises(TypeError, match="naive"):
        store.update_attempt(attempt, local_time=datetime(2030, 1, 1))


# ------------------------------------------------------------------ report


async def _answers(
    store: Store, campaign: str, contact: int, at: datetime, n: int, amd: str | None = None
) -> list[int]:
    """n calls answered at `at` (spread over a minute), returning their ids."""
    ids = []
    for i in range(n):
        when = at + timedelta(seconds=i)
        number = f"+1212556{len(ids) % 10_000:04d}"
        attempt = await store.create_attempt(
            AttemptIntent(campaign, contact, number, "t", None, when)
        )
        store.update_attempt(attempt, invite_sent_at=when, answered_at=when, amd_result=amd)
        ids.append(attempt)
    return ids


async def _abandon(
    store: Store, campaign: str, contact: int, attempt: int, number: str, at: datetime
) -> None:
    await store.record_abandon(
        campaign=campaign, attempt_id=attempt, contact_id=contact, number=number,
        answered_at=at, greeting_end_at=at, message_started_at=None, reason="no agent", at=at,
    )  # fmt: skip


async def test_us_report_windows_hours_repeats_skips_and_opt_outs(store: Store) -> None:
    """Two 30-day windows: 100 live answers and 2 abandons (2 %, under the
    limit); 50 live answers (and 10 machines, not counted) and 3 abandons (6 %)."""
    contact = await store.add_contact("l1", ["+12125550100"])
    await store.upsert_campaign("us1", "l1", {"dialing": {"jurisdiction": "us"}})
    first = await _answers(store, "us1", contact, T0 + DAY, 100)
    second = await _answers(store, "us1", contact, T0 + 31 * DAY, 50)
    await _answers(store, "us1", contact, T0 + 32 * DAY, 10, amd="machine")
    for attempt in first[:2]:
        await _abandon(store, "us1", contact, attempt, "+12125550777", T0 + 2 * DAY)
    for attempt in second[:3]:
        await _abandon(store, "us1", contact, attempt, "+12125550888", T0 + 33 * DAY)
    # a repeat call 10 h after the first abandons (counted), another 80 h after (not)
    for hours in (10, 80):
        when = T0 + 2 * DAY + timedelta(hours=hours)
        repeat = await store.create_attempt(
            AttemptIntent("us1", contact, "+12125550777", "t", None, when)
        )
        store.update_attempt(repeat, invite_sent_at=when)
    late = datetime(2030, 1, 5, 21, 30, tzinfo=EST)  # 21:30 at the contact: outside hours
    for local in (datetime(2030, 1, 5, 9, 0, tzinfo=EST), late):
        store.ledger("call_placed", source="dialer", at=local.astimezone(UTC), campaign="us1",
                     number="+12125550100", contact_id=contact, local_time=local,
                     rule="47 CFR 64.1200(c)(1)")  # fmt: skip
    for kind, rule in (("skip", "dnc internal"), ("skip", "dnc internal"),
                       ("skip", "bad contact data"), ("deferral", "NY GBL 399-z")):  # fmt: skip
        store.ledger(kind, source="dialer", at=T0 + 3 * DAY, campaign="us1", rule=rule)
    await store.dnc_add("+12125550100", list="opt-outs", source="ivr", campaign="us1")
    await store.dnc_add("+12125550101", list="opt-outs", source="agent:7", campaign="us1")
    await store.dnc_add("+12125550102", list="opt-outs", source="sms")  # no campaign
    await store.flush()

    report = await store.compliance_report("us1", T0, T0 + 60 * DAY)
    windows = report["windows"]
    assert (report["jurisdiction"], report["window"], report["limit"]) == ("us", "30d", 0.03)
    assert report["rule"] == "47 CFR 64.1200(a)(7)"
    w1, w2 = windows[0], windows[1]
    assert (w1["live_answers"], w1["abandons"], w1["abandon_rate"], w1["over_limit"]) == (
        100, 2, 0.02, False)  # fmt: skip
    assert (w2["live_answers"], w2["abandons"], w2["abandon_rate"], w2["over_limit"]) == (
        50, 3, 0.06, True)  # fmt: skip
    assert (w2["machines"], w2["amd_false_positive_estimate"]) == (10, 0.0)
    assert w1["to"] == (T0 + 30 * DAY).isoformat() == w2["from"]
    assert (report["calls_placed"], report["calls_outside_hours"]) == (2, 1)
    assert report["outside_hours"][0]["local_time"] == "2030-01-05T21:30:00-05:00"
    assert w1["outside_hours"] == 1 and w1["calls_placed"] == 2
    assert report["repeat_calls_72h"] == 2  # after each of the two abandons of that number
    assert {r["called_at"] for r in report["repeat_calls"]} == {
        (T0 + 2 * DAY + timedelta(hours=10)).isoformat()}  # fmt: skip
    assert report["skips"] == {"bad contact data": 1, "dnc internal": 2}
    assert report["deferrals"] == {"NY GBL 399-z": 1}
    assert report["ok"] is False
    # 162 attempts sent, 2 call_placed rows: said so
    assert any("162 attempts" in n for n in report["notes"])
    table = format_compliance(report)
    assert "6.00%" in table and "result: NOT OK" in table and "21:30:00-05:00" in table
    now = datetime.now(UTC)  # the opt-outs were stamped by the real clock
    recent = await store.compliance_report("us1", now - DAY, now + DAY)
    assert recent["opt_outs"] == {"agent:7": 1, "ivr": 1}
    assert recent["opt_outs_without_campaign"] == 1
    assert "opt-outs by source:" in format_compliance(recent)


async def test_uk_report_counts_amd_false_positives_per_24_hours(store: Store) -> None:
    contact = await store.add_contact("l1", ["+442079460000"])
    await store.upsert_campaign(
        "uk1", "l1", {"dialing": {"jurisdiction": "uk", "amd_false_positive_rate": "10%"}}
    )
    await store.upsert_campaign("uk2", "l1", {"dialing": {"jurisdiction": "uk"}})
    for name in ("uk1", "uk2"):
        live = await _answers(store, name, contact, T0 + timedelta(hours=1), 19)
        await _answers(store, name, contact, T0 + timedelta(hours=2), 10, amd="machine")
        await _abandon(store, name, contact, live[0], "+442079460001", T0 + timedelta(hours=3))
        await _answers(store, name, contact, T0 + timedelta(hours=30), 5)
    await store.flush()
    report = await store.compliance_report("uk1", T0, T0 + 2 * DAY)
    assert (report["window"], len(report["windows"])) == ("24h", 2)
    w1, w2 = report["windows"]
    # Ofcom: (abandons + estimate) / (live + estimate) = (1 + 10 x 10 %) / (19 + 1)
    assert (w1["live_answers"], w1["machines"], w1["amd_false_positive_estimate"]) == (19, 10, 1.0)
    assert w1["abandon_rate"] == 0.1 and w1["over_limit"] is True
    assert (w2["live_answers"], w2["abandons"], w2["abandon_rate"]) == (5, 0, 0.0)
    assert report["notes"] == [
        "AMD false-positive rate 10.00%: the configured dialing.amd_false_positive_rate; "
        "the operator-marked sample replaces it from 20 marks, it has 0: no sample is "
        "marked yet",
        "34 attempts sent an INVITE but the ledger has 0 call_placed rows: the calls "
        "without one are not checked for hours",
    ]
    other = await store.compliance_report("uk2", T0, T0 + DAY)
    assert other["windows"][0]["abandon_rate"] == round(1 / 19, 6)
    assert any("amd_false_positive_rate is not configured" in n for n in other["notes"])


async def test_report_errors(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.compliance_report("nope")
    await store.upsert_campaign("c1", "l1", {})
    with pytest.raises(BadRequest, match="not before"):
        await store.compliance_report("c1", T0, T0)
    report = await store.compliance_report("c1")  # from its creation to now: nothing yet
    assert report["ok"] is True and report["windows"][0]["abandon_rate"] is None
