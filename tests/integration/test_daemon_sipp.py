"""The daemon end to end: `outdial run` dials a 200-contact agentless campaign
through a SIPp carrier whose answer depends on each number's last digit, and
what the store says must match what SIPp saw, number by number."""

from __future__ import annotations

import itertools
import re
import signal
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsp.wav import encode_wav
from tests.integration.daemon import Daemon
from tests.integration.sipp import Sipp, make_tone

pytestmark = pytest.mark.sipp

DIGIT_RESULT = {
    0: "answered", 1: "answered", 2: "answered", 3: "answered", 4: "answered",
    5: "busy", 6: "busy", 7: "no_answer", 8: "invalid_number", 9: "unavailable",
}  # fmt: skip
RETRIED = {"busy", "unavailable"}  # the campaign's retry rules
RETRY_S = 2.0
CONTACTS = 200
DNC = ("+12125551010", "+12125551021")  # end in 0 and 1: would have answered

CAMPAIGN = f"""\
name: e2e
channel: voice
mode: agentless
contact_list: e2e-list
trunk: carrier
lines: 60
max_attempts: 2
ring_timeout: 15
max_duration: 30
retry:
  busy: {RETRY_S:g}s
  unavailable: {RETRY_S:g}s
  interrupted: {RETRY_S:g}s
prompt: prompt.wav
"""


def number(i: int) -> str:
    return f"+1212555{1000 + i:04d}"


def expected_attempts(num: str) -> int:
    if num in DNC:
        return 0
    return 2 if DIGIT_RESULT[int(num[-1])] in RETRIED else 1


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    prompt = tmp_path / "prompt.wav"
    t = np.arange(8000) / 8000  # a 1 s prompt
    prompt.write_bytes(encode_wav((np.sin(2 * np.pi * 500 * t) * 6000).astype(np.int16)))
    contacts = tmp_path / "contacts.csv"
    lines = ["id,phone"] + [f"c{i},{number(i)}" for i in range(CONTACTS)]
    contacts.write_text("\n".join(lines) + "\n")
    tone = make_tone(tmp_path / "hello.ul", 700, 0.5)
    return tmp_path, prompt, contacts, tone


def sipp_invites(trace: Path) -> dict[str, list[float]]:
    """Per dialled number, the arrival time of each distinct INVITE SIPp got."""
    seen: set[str] = set()
    by_number: dict[str, list[float]] = defaultdict(list)
    for entry in trace.read_text(errors="replace").split("-" * 47):
        if "message received" not in entry or "\nINVITE sip:" not in entry:
            continue
        stamp = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", entry)
        call_id = re.search(r"\nCall-ID:\s*(\S+)", entry, re.IGNORECASE)
        dialled = re.search(r"\nINVITE sip:([^@;>]+)@", entry)
        assert stamp and call_id and dialled
        if call_id.group(1) in seen:
            continue  # a retransmission
        seen.add(call_id.group(1))
        when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        by_number[dialled.group(1)].append(when)
    return by_number


def start_carrier(workdir: Path, tone: Path, calls: int | None) -> Sipp:
    trace = workdir / "sipp-messages.log"
    extra = ["-trace_msg", "-message_file", str(trace)]
    sipp = Sipp("mix.xml", keys={"audio": f"{tone},-1,0"}, duration_ms=500, calls=calls or 0,
                extra=extra)  # fmt: skip
    return sipp.start(workdir)


def test_campaign_results_match_the_carrier(setup: Any) -> None:
    workdir, prompt, contacts, tone = setup
    total_invites = sum(expected_attempts(number(i)) for i in range(CONTACTS))
    sipp = start_carrier(workdir, tone, total_invites)
    daemon = Daemon(workdir, sipp.port, CAMPAIGN, prompt).start()
    try:
        summary = daemon("contacts.import", list="e2e-list", file=str(contacts))
        assert summary["imported"] == CONTACTS
        for num in DNC:
            daemon("dnc.add", number=num, source="test")
        daemon("campaign.start", name="e2e")
        show = daemon.wait_state("e2e", "completed", timeout=150)
        attempts = daemon("report.attempts", campaign="e2e")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
    assert sipp.wait(60) == 0, sipp.errors()  # SIPp saw every call through to its end
    progress = show["progress"]
    assert progress["total"] == CONTACTS
    assert progress["skipped"] == len(DNC)
    stored: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in attempts:
        stored[row["number"]].append(row)
    invites = sipp_invites(workdir / "sipp-messages.log")
    for i in range(CONTACTS):
        num = number(i)
        rows = sorted(stored.get(num, []), key=lambda r: r["created_at"])
        assert len(rows) == expected_attempts(num), (num, rows)
        assert len(invites.get(num, [])) == len(rows), num  # one INVITE per stored attempt
        for row in rows:
            assert row["result"] == DIGIT_RESULT[int(num[-1])], (num, row)
            assert row["invite_sent_at"] and row["ended_at"]
            assert row["call_id"]
        if len(rows) == 2:  # the retry came no sooner than its rule allows
            gap = datetime.fromisoformat(rows[1]["created_at"]) - datetime.fromisoformat(
                rows[0]["ended_at"]
            )
            assert gap.total_seconds() >= RETRY_S - 0.05, (num, gap)
    answered = [r for r in attempts if r["result"] == "answered"]
    assert all(r["answered_at"] and r["duration_ms"] >= 900 for r in answered)  # prompt heard
    assert all(r["sip_status"] == 487 for r in attempts if r["result"] == "no_answer")
    assert all(r["q850_cause"] == 34 for r in attempts if r["result"] == "unavailable")
    assert Counter(r["result"] for r in attempts)["answered"] == 100 - len(DNC)


def test_kill_9_mid_campaign_loses_nothing_and_dials_nothing_twice(setup: Any) -> None:
    workdir, prompt, contacts, tone = setup
    sipp = start_carrier(workdir, tone, None)
    daemon = Daemon(workdir, sipp.port, CAMPAIGN, prompt).start()
    try:
        daemon("contacts.import", list="e2e-list", file=str(contacts))
        daemon("campaign.start", name="e2e")
        deadline = time.monotonic() + 60
        while daemon("campaign.show", name="e2e")["progress"]["attempts"] < 80:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        daemon.kill()  # kill -9 with calls in flight
        daemon.start()  # reconciles, then resumes the running campaign
        daemon.wait_state("e2e", "completed", timeout=150)
        attempts = daemon("report.attempts", campaign="e2e")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        sipp.stop()
    interrupted = [r for r in attempts if r["result"] == "interrupted"]
    assert interrupted, "the kill should have caught calls in flight"
    assert all(r["ended_at"] for r in attempts)  # nothing left unrecorded
    stored = Counter(r["number"] for r in attempts)
    invites = sipp_invites(workdir / "sipp-messages.log")
    for i in range(CONTACTS):
        num = number(i)
        # The attempt is committed before its INVITE leaves (intent before
        # action), so a kill -9 between the two leaves one stored attempt that
        # SIPp never saw: interrupted, with no INVITE time. Never the reverse.
        unsent = [r for r in attempts if r["number"] == num and r["result"] == "interrupted"
                  and r["invite_sent_at"] is None]  # fmt: skip
        assert stored[num] - len(unsent) <= len(invites.get(num, [])) <= stored[num], num
        times = invites.get(num, [])
        for a, b in itertools.pairwise(times):
            assert b - a >= RETRY_S - 0.05, (num, times)  # never twice inside the interval


def test_sigterm_lets_calls_finish_then_exits_and_resumes(setup: Any) -> None:
    import json
    import socket
    import sqlite3

    workdir, prompt, contacts, tone = setup
    sipp = start_carrier(workdir, tone, None)
    daemon = Daemon(workdir, sipp.port, CAMPAIGN, prompt).start()
    try:
        daemon("contacts.import", list="e2e-list", file=str(contacts))
        events = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        events.connect(str(daemon.socket))
        events.sendall(b'{"id": 1, "cmd": "events", "args": {}}\n')
        stream = events.makefile("rb")
        assert json.loads(stream.readline())["result"] == "subscribed"
        daemon("campaign.start", name="e2e")
        seen: set[str] = set()
        while not {"call.started", "call.answered", "call.ended"} <= seen:
            seen.add(json.loads(stream.readline())["event"])
        events.close()
        assert daemon("campaign.show", name="e2e")["in_flight"] > 0
        started = time.monotonic()
        assert daemon.stop() == 0  # grace 2 s, then the rest hung up
        assert time.monotonic() - started < 15
        with sqlite3.connect(workdir / "outdial.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            open_attempts = db.execute("SELECT count(*) FROM attempts WHERE ended_at IS NULL")
            assert open_attempts.fetchone() == (0,)  # every call recorded as ended
            state = db.execute("SELECT state FROM campaigns WHERE name = 'e2e'").fetchone()
            assert state == ("running",)  # a shutdown is not a pause
        daemon.start()
        assert daemon("campaign.show", name="e2e")["state"] == "running"  # resumed
        deadline = time.monotonic() + 20
        while daemon("campaign.show", name="e2e")["in_flight"] < 5:  # calls to wait for
            assert time.monotonic() < deadline
            time.sleep(0.05)
        daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        time.sleep(0.1)
        daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert daemon.proc.wait(10) == 130  # type: ignore[union-attr]  # the second one: at once
        with sqlite3.connect(workdir / "outdial.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        daemon.stop()
        sipp.stop()
