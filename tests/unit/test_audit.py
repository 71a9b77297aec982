"""The simulated compliance audit: 30 days of a predictive campaign over the US
zones, every call through the real hours, limits and rules, into a real store,
and the compliance report on what it wrote."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.compliance.audit import CAMPAIGN, run_audit
from engine.compliance.campaign import POSTAL_COLUMNS
from engine.compliance.locate import Locator
from engine.store import Store
from engine.voice.simulate import Scenario
from engine.voice.simulate_cli import simulate_main

# Few agents and a coarse pacing tick keep 30 days to some seconds.
SCENARIO = Scenario(tick_s=10.0)
DAYS, AGENTS, CONTACTS = 30, 3, 300
LIMITED = {"FL", "OK", "MD"}  # at most 3 calls per 24 h (us_rules.yaml max_calls_24h)


async def _read(url: str) -> tuple[list[dict[str, Any]], dict[int, set[str]]]:
    """The ledger's call_placed rows and the states each called contact is in."""
    store = await Store.open(url)
    try:
        rows = await store.ledger_rows(CAMPAIGN, kinds=["call_placed"])
        locator = Locator((), POSTAL_COLUMNS)
        states = {}
        for contact_id in sorted({r["contact_id"] for r in rows}):
            contact = await store.contact(contact_id)
            locale = locator.locate(contact["attributes"], contact["phones"][0])
            states[contact_id] = set(locale.states)
    finally:
        await store.close()
    return rows, states


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('audit')) / 'audit.db'}"
    result = run_audit(DAYS, AGENTS, CONTACTS, seed=1, store_url=url, scenario=SCENARIO)
    rows, states = asyncio.run(_read(url))
    return {**result, "rows": rows, "states": states}


def _local(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["local_time"])


def test_the_report_finds_no_rule_broken(audited: dict[str, Any]) -> None:
    report, counts = audited["report"], audited["audit"]
    assert report["ok"], report["notes"]
    assert report["jurisdiction"] == "us"
    assert len(report["windows"]) == 1  # the 30 days are one 47 CFR 64.1200(a)(7) window
    assert report["calls_placed"] == counts["calls_placed"] > 5000
    assert report["calls_outside_hours"] == 0
    assert all(w["outside_hours"] == 0 for w in report["windows"])
    assert report["notes"] == []  # every INVITE has its call_placed row, with a local time


def test_abandon_rate_within_3_percent_and_no_repeat_within_72_hours(
    audited: dict[str, Any],
) -> None:
    report = audited["report"]
    for window in report["windows"]:
        assert window["live_answers"] > 1000
        assert window["abandon_rate"] is not None and window["abandon_rate"] <= 0.03
        assert not window["over_limit"]
    assert report["repeat_calls_72h"] == 0


def test_every_call_between_8_and_21_local_and_florida_before_20(
    audited: dict[str, Any],
) -> None:
    rows, states = audited["rows"], audited["states"]
    assert len(rows) == audited["audit"]["calls_placed"]
    for row in rows:
        assert time(8) <= _local(row).time() < time(21), row
    florida = [r for r in rows if "FL" in states[r["contact_id"]]]
    assert len(florida) > 500
    assert all(time(8) <= _local(r).time() < time(20) for r in florida)  # Fla. Stat. 501.616(6)(a)
    # Not vacuous: the shift runs past 20:00 Eastern and Florida is called up to its close.
    assert any(_local(r).hour == 19 for r in florida)
    assert any(_local(r).hour == 20 for r in rows if not states[r["contact_id"]] & {"FL"})


def test_no_more_than_3_calls_in_24_hours_where_fl_ok_md_rules_apply(
    audited: dict[str, Any],
) -> None:
    rows, states = audited["rows"], audited["states"]
    calls: dict[int, list[datetime]] = defaultdict(list)
    for row in rows:
        calls[row["contact_id"]].append(datetime.fromisoformat(row["at"]))
    limited = [c for c in calls if states[c] & LIMITED]
    assert len(limited) > 50
    day = timedelta(hours=24)
    for contact in limited:
        times = sorted(calls[contact])
        assert all(times[i + 3] - times[i] >= day for i in range(len(times) - 3)), contact
    # The rule binds: limited contacts do get 3 calls within 24 h, and are deferred after.
    assert any(
        t[i + 2] - t[i] < day
        for c in limited
        for t in [sorted(calls[c])]
        for i in range(len(t) - 2)
    )
    assert audited["audit"]["deferrals_call_limit"] > 0
    # Elsewhere the campaign's own per-day limit (4) allows a fourth call within 24 h.
    others = [sorted(calls[c]) for c in calls if not states[c] & LIMITED]
    assert any(t[i + 3] - t[i] < day for t in others for i in range(len(t) - 3))


def test_with_the_law_off_the_same_audit_calls_outside_hours() -> None:
    """CallingHours(None) (a lab rig's `legal_hours: off`): the shift runs from
    08:00 Eastern (02:00 in Hawaii) to 22:00 Eastern, and the report sees it."""
    result = run_audit(2, AGENTS, CONTACTS, seed=1, scenario=SCENARIO, legal=False)
    report = result["report"]
    assert report["calls_outside_hours"] > 0
    assert not report["ok"]
    assert result["audit"].get("deferrals_hours", 0) == 0


def test_outdial_simulate_audit_days_prints_the_compliance_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "audit.json"
    argv = ["--audit-days", "1", "--agents", "2", "--audit-contacts", "100", "--json", str(out)]
    assert simulate_main(argv) == 0
    printed = capsys.readouterr().out
    assert "compliance report: campaign audit (us: 47 CFR 64.1200(a)(7)" in printed
    assert "outside 08:00-21:00 local time: 0 (must be 0)" in printed
    assert printed.rstrip().splitlines()[-2] == "result: OK"
    saved = json.loads(out.read_text())
    assert saved["report"]["ok"] and saved["audit"]["days"] == 1
