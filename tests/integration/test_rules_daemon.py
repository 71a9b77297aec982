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


SORTED = """\
name: sorted
channel: voice
mode: agentless
contact_list: sorted-list
trunk: carrier
caller_id: "+12125550100"
lines: 1
ring_timeout: 15
max_duration: 10
max_attempts: 2
prompt: long.wav
retry:
  unavailable: 1s
sort: [attempts, {column: balance, order: desc}]
rules:
  - when: before_call
    if: "segment == 'vip'"
    then: {priority: 5, set: {stage: called, promo: null}}
  - when: after_call
    if: "result == 'busy'"
    then: {move_to: followup}
"""
FOLLOWUP = """\
name: followup
channel: voice
mode: agentless
contact_list: sorted-list
trunk: carrier
lines: 1
prompt: long.wav
"""
U, T, Q, S, P = "+12125557019", "+12125557009", "+12125557001", "+12125557005", "+12125557000"
SORTED_ROWS = [  # list order is the reverse of the dialling order
    ("p", P, "10", "std", ""),  # answers (a 2.5 s prompt)
    ("s", S, "100", "std", ""),  # busy: moved to followup
    ("q", Q, "300", "std", ""),  # answers
    ("t", T, "500", "vip", "spring"),  # unavailable: priority 5 and its columns set
    ("u", U, "999", "std", ""),  # unavailable: retried after every first attempt
]


@pytest.mark.timeout(120)
def test_sort_priority_set_and_move_to_through_the_dial_loop(tmp_path: Path) -> None:
    """One line, so the INVITEs' order is the dialling order: by balance first
    (u, t, q); while q's 2.5 s call runs, u and t become due again; t's rule
    priority puts it first, and the dynamic `attempts` key puts u (highest
    balance) behind s and p, which were never attempted. s is busy and moves."""
    prompt = tmp_path / "long.wav"
    prompt.write_bytes(encode_wav((np.ones(20000) * 2000).astype(np.int16)))
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("id,phone,balance,segment,promo\n"
                        + "".join(",".join(r) + "\n" for r in SORTED_ROWS))  # fmt: skip
    tone = make_tone(tmp_path / "hello.ul", 700, 0.5)
    sipp = start_carrier(tmp_path, tone, None)
    daemon = Daemon(tmp_path, sipp.port, SORTED, prompt)
    (tmp_path / "campaigns" / "followup.yaml").write_text(FOLLOWUP)
    daemon.start()
    try:
        daemon("contacts.import", list="sorted-list", file=str(contacts))
        daemon("campaign.start", name="sorted")
        deadline = time.monotonic() + 60
        while daemon("campaign.show", name="sorted")["state"] != "completed":
            assert time.monotonic() < deadline, daemon("campaign.show", name="sorted")
            time.sleep(0.25)
        attempts = daemon("report.attempts", campaign="sorted")
        followup = daemon("campaign.show", name="followup")["progress"]
        ids = {a["number"]: a["contact_id"] for a in attempts}
        shown = {n: daemon("contacts.show", contact_id=ids[n]) for n in (T, S)}
        out = tmp_path / "export.csv"
        daemon("contacts.export", list="sorted-list", file=str(out))
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        sipp.stop()
    order = [a["number"] for a in attempts]
    assert order == [U, T, Q, T, S, P, U], order
    invites = sipp_invites(tmp_path / "sipp-messages.log")
    firsts = sorted((times[0], n) for n, times in invites.items())
    assert [n for _, n in firsts] == [U, T, Q, S, P]  # SIPp saw them in that order
    # priority: t's row in this campaign; set: its columns (promo removed)
    (t_row,) = (r for r in shown[T]["campaigns"] if r["campaign"] == "sorted")
    assert t_row["priority"] == 5
    assert shown[T]["attributes"] == {"balance": "500", "segment": "vip", "stage": "called"}
    # move_to: done here with the reason, pending in followup (never started;
    # a campaign of the list, so the import enrolled the list there already)
    rows = {r["campaign"]: r for r in shown[S]["campaigns"]}
    assert (rows["sorted"]["state"], rows["sorted"]["last_result"]) == ("done", "busy")
    assert rows["sorted"]["skip_reason"] == "moved to followup (campaign rule)"
    assert rows["followup"]["state"] == "pending", rows
    assert followup["pending"] == len(SORTED_ROWS), followup
    export = out.read_text().splitlines()
    assert "stage" in export[0].split(","), export[0]
