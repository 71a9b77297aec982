"""The law's calling hours through the daemon, against a SIPp carrier.

The daemon runs with `legal_hours: enforce` (the default). Contacts carry a
time-zone column chosen from the clock at test time: half are in a zone where
it is early afternoon now (callable under 47 CFR 64.1200(c)(1)), half in one
where it is the middle of the night. SIPp must get INVITEs for the first half
only; the others are "deferred" with the rule and the time they become
callable, and the campaign keeps running for them.
"""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from dsp.wav import encode_wav
from tests.integration.daemon import Daemon
from tests.integration.sipp import make_tone
from tests.integration.test_daemon_sipp import sipp_invites, start_carrier

pytestmark = pytest.mark.sipp

CAMPAIGN = """\
name: hours
channel: voice
mode: agentless
contact_list: hours-list
trunk: carrier
lines: 20
max_attempts: 1
ring_timeout: 15
max_duration: 30
prompt: prompt.wav
"""


def zone_at(now: datetime, low: int, high: int) -> str:
    """A fixed-offset zone (Etc/GMT-N is UTC+N) where the local hour is in [low, high]."""
    for offset in range(-12, 15):
        name = f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"
        hour = now.astimezone(ZoneInfo(name)).hour
        if low <= hour <= high:
            return name
    raise AssertionError(f"no zone with the hour in [{low}, {high}] at {now}")


@pytest.mark.timeout(90)
def test_contacts_outside_their_hours_are_deferred_not_dialled(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    # Keep clear of the edges for the length of the test.
    day, night = zone_at(now, 11, 16), zone_at(now, 1, 4)
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(encode_wav((np.ones(4000) * 3000).astype(np.int16)))
    contacts = tmp_path / "contacts.csv"
    rows = ["id,phone,tz"]
    for i in range(20):
        rows.append(f"c{i},+1212555{2000 + i:04d},{day if i % 2 == 0 else night}")
    contacts.write_text("\n".join(rows) + "\n")
    tone = make_tone(tmp_path / "hello.ul", 700, 0.5)
    sipp = start_carrier(tmp_path, tone, None)
    daemon = Daemon(tmp_path, sipp.port, CAMPAIGN, prompt,
                    extra="compliance:\n  legal_hours: enforce\n").start()  # fmt: skip
    try:
        daemon("contacts.import", list="hours-list", file=str(contacts))
        daemon("campaign.start", name="hours")
        deadline = time.monotonic() + 60
        show: dict[str, Any] = {}
        while time.monotonic() < deadline:
            show = daemon("campaign.show", name="hours")
            progress = show["progress"]
            if progress["done"] + progress["failed"] == 10 and progress["deferred"] == 10:
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"not settled: {show}")
        assert show["state"] == "running"  # the deferred ones are still to call
        out = tmp_path / "export.csv"
        daemon("contacts.export", list="hours-list", file=str(out))
        report = daemon("compliance.report", campaign="hours", since="1d")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        sipp.stop()
    invites = sipp_invites(tmp_path / "sipp-messages.log")
    with out.open() as f:
        exported = list(csv.DictReader(f))
    assert len(exported) == 20
    for row in exported:
        i = int(row["external_id"][1:])
        if i % 2 == 0:
            assert row["dial_state"] in ("done", "failed"), row
            assert row["phone"] in invites, row
            assert not row["skip_reason"], row
        else:
            assert row["dial_state"] == "deferred", row
            assert row["phone"] not in invites, row  # never rung outside the hours
            reason = row["skip_reason"]
            assert "before 08:00" in reason and night in reason, reason
            assert "47 CFR 64.1200(c)(1)" in reason, reason
            when = datetime.fromisoformat(reason.rsplit("callable from ", 1)[1])
            local = when.astimezone(ZoneInfo(night))
            assert (local.hour, local.minute) == (8, 0), reason
            assert now < when < now + timedelta(hours=8), reason
    # The compliance ledger saw every call placed, none outside its hours, and
    # the deferrals under the federal rule.
    assert report["calls_placed"] == 10 and report["calls_outside_hours"] == 0, report
    assert report["deferrals"] == {"US federal: 47 CFR 64.1200(c)(1)": 10}, report
    assert report["ok"] is True, report
