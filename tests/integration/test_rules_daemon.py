"""Campaign rules through the daemon, against the SIPp carrier whose answer
depends on the number's last digit (config/sipp/mix.xml: 0-4 answer, 5-6
busy, 9 unavailable). The campaign's filter leaves some contacts out, a
before_call rule changes the caller ID for VIPs, an after_call rule retries
busy numbers after 1 s (the retry table would wait an hour), and a per-day
limit of two attempts per contact defers the third to the contact's local
midnight. SIPp's own log must show
the INVITEs the store says were made, with the caller ID the rule chose."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dsp.wav import encode_wav
from tests.integration.daemon import Daemon
from tests.integration.sipp import make_tone
from tests.integration.test_daemon_sipp import sipp_invites, start_carrier

pytestmark = pytest.mark.sipp

CAMPAIGN = """\
name: rules
channel: voice
mode: agentless
contact_list: rules-list
trunk: carrier
caller_id: "+12125550100"
lines: 10
ring_timeout: 15
max_duration: 10
prompt: prompt.wav
retry:
  busy: 1h
  unavailable: 1s
filter: "segment != 'former'"
limits:
  per_contact: {total: 3, per_day: 2}
rules:
  - when: before_call
    if: "segment == 'vip'"
    then: {caller_id: "+12125550199"}
  - when: after_call
    if: "result == 'busy' and attempts < 3"
    then: {retry_in: 1s}
"""
ROWS = [
    ("a", "+12125556000", "vip"),  # answers: one call, with the VIP caller ID
    ("b", "+12125556005", "std"),  # busy: retried after 1 s by the rule, then the day's limit
    ("c", "+12125556009", "std"),  # unavailable: the retry table's 1 s, then the day's limit
    ("d", "+12125556001", "former"),  # filtered out: never called
]


@pytest.mark.timeout(120)
def test_filter_caller_id_retry_rule_and_number_limit(tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(encode_wav((np.ones(2000) * 2000).astype(np.int16)))
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("id,phone,segment\n" + "".join(f"{i},{p},{s}\n" for i, p, s in ROWS))
    tone = make_tone(tmp_path / "hello.ul", 700, 0.5)
    sipp = start_carrier(tmp_path, tone, None)
    daemon = Daemon(tmp_path, sipp.port, CAMPAIGN, prompt).start()
    try:
        daemon("contacts.import", list="rules-list", file=str(contacts))
        daemon("campaign.start", name="rules")
        deadline = time.monotonic() + 60
        while True:
            progress = daemon("campaign.show", name="rules")["progress"]
            if progress["deferred"] == 2 and progress["done"] == 1 and progress["skipped"] == 1:
                break
            assert time.monotonic() < deadline, progress
            time.sleep(0.25)
        time.sleep(1.5)  # nothing more is dialled today
        attempts = daemon("report.attempts", campaign="rules")
        out = tmp_path / "export.csv"
        daemon("contacts.export", list="rules-list", file=str(out))
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        sipp.stop()
    calls = Counter(a["number"] for a in attempts)
    assert calls == {"+12125556000": 1, "+12125556005": 2, "+12125556009": 2}, calls
    by_number = {a["number"]: a for a in attempts}
    assert by_number["+12125556000"]["caller_id"] == "+12125550199"
    assert by_number["+12125556005"]["caller_id"] == "+12125550100"
    invites = sipp_invites(tmp_path / "sipp-messages.log")
    assert {n: len(t) for n, t in invites.items()} == dict(calls)
    gaps = np.diff(invites["+12125556005"])
    assert all(0.9 <= g < 30 for g in gaps), gaps  # the rule's 1 s, not the table's hour
    trace = (tmp_path / "sipp-messages.log").read_text(errors="replace")
    assert "+12125550199" in trace  # the VIP caller ID reached the carrier
    export = out.read_text()
    assert "not in the campaign's filter" in export
    assert export.count("attempt limit: limits.per_contact.per_day") == 2, export
