"""SMS in the real daemon (`outdial run`) against a real SMSC (the npm `smpp`
package's server, tests/peers/smsc) on loopback: a campaign from contact list
to delivery receipts, notifications, inbound keywords and reply threading,
kill -9 in the middle of a campaign."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import ControlError, Daemon
from tests.integration.sipp import ROOT, free_port
from tests.integration.smsc import NodeSmsc, run_smsc

pytestmark = pytest.mark.smsc

SENDER = "+15550100"


def sms_section(port: int, extra: str = "") -> str:
    return (
        "sms:\n"
        "  accounts:\n"
        "    smsc1:\n"
        "      type: smpp\n"
        "      host: 127.0.0.1\n"
        f"      port: {port}\n"
        "      system_id: outdial\n"
        "      password: secret\n"
        "      window: 10\n"
        "      binds: 2\n"
        f'  default_sender: "{SENDER}"\n'
        "  reply_window: 1h\n"
        "  interaction_timeout: 2s\n"
        '  stop_reply: "You are unsubscribed."\n'
        '  help_reply: "Clinic reminders. Reply STOP to stop."\n'
        '  start_reply: "Welcome back."\n'
        "  senders:\n"
        f'    "{SENDER}":\n'
        '      keywords: {HOURS: "Open 9-17."}\n'
        "  templates:\n"
        '    code: "Your code is {code}."\n' + extra
    )


CAMPAIGN = """\
name: reminders
channel: sms
contact_list: patients
template: "Hi {first_name}, your appointment is on {date}. Reply STOP to opt out."
throughput: {messages_per_second: 500}
retry: {attempts: 3, after: 0.2s}
"""


@pytest.fixture
def smsc(tmp_path: Path) -> Iterator[NodeSmsc]:
    yield from run_smsc("--password", "secret", log=tmp_path / "smsc.jsonl")


def make_daemon(tmp_path: Path, smsc_port: int, campaign: str = CAMPAIGN) -> Daemon:
    return Daemon(tmp_path, free_port(), campaign, tmp_path / "none.wav",
                  extra=sms_section(smsc_port))  # fmt: skip


def write_contacts(path: Path, count: int, *, bad: dict[int, str] | None = None) -> list[str]:
    numbers = []
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["phone", "first_name", "date"])
        for i in range(count):
            number = f"+1212555{i:04d}"
            numbers.append(number)
            w.writerow([number, (bad or {}).get(i, f"Pat{i}"), "Monday 3 pm"])
    return numbers


def ctl(daemon: Daemon, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "ctl", "--socket", str(daemon.socket), *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def events_of(daemon: Daemon) -> list[dict[str, Any]]:
    out = []
    for line in daemon.log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def test_campaign_sends_every_contact_once_and_follows_receipts(
    tmp_path: Path, smsc: NodeSmsc
) -> None:
    contacts = tmp_path / "patients.csv"
    numbers = write_contacts(contacts, 120, bad={7: ""})  # contact 7 has no first name
    daemon = make_daemon(tmp_path, smsc.port).start()
    try:
        daemon("contacts.import", list="patients", file=str(contacts))
        daemon("dnc.add", number=numbers[3], list="internal")
        daemon("campaign.start", name="reminders")
        daemon.wait_state("reminders", "completed", 30)
        report = until(
            lambda: (r := daemon("sms.report", campaign="reminders"))["delivered"] == 118 and r,
            15, "every receipt applied",
        )  # fmt: skip
        assert report["contacts"] == 120 and report["processed"] == 120
        assert report["skipped"] == 2 and report["accepted"] == 118
        assert report["rejected"] == 0 and report["queued"] == 0 and report["in_doubt"] == 0
        assert report["segments"] == 118
        counts = smsc.counts()
        sent = {n for n in numbers if n not in (numbers[3], numbers[7])}
        assert counts == {n.lstrip("+"): 1 for n in sent}  # each exactly once, none skipped
        logged = {e["dst"]: e for e in smsc.logged()}
        assert logged["12125550010"]["text"] == (
            "Hi Pat10, your appointment is on Monday 3 pm. Reply STOP to opt out."
        )
        assert logged["12125550010"]["src"] == SENDER.lstrip("+")
        export = tmp_path / "out.csv"
        daemon("contacts.export", list="patients", file=str(export))
        rows = {r["phone"]: r for r in csv.DictReader(export.open())}
        assert rows[numbers[7]]["dial_state"] == "skipped"
        assert "missing column 'first_name'" in rows[numbers[7]]["skip_reason"]
        assert rows[numbers[3]]["dial_state"] == "skipped"
        assert "do-not-contact list internal" in rows[numbers[3]]["skip_reason"]
        assert rows[numbers[0]]["dial_state"] == "done"
        assert rows[numbers[0]]["last_result"] == "delivered"
        one = daemon("sms.list", number=numbers[0])
        assert len(one) == 1 and one[0]["status"] == "delivered" and one[0]["carrier_id"]
        history = daemon("sms.show", id=one[0]["id"])["history"]
        assert [h["status"] for h in history] == ["queued", "submitting", "submitted",
                                                  "delivered"]  # fmt: skip
    finally:
        assert daemon.stop() == 0


def test_a_long_reply_is_put_back_together_and_a_half_one_kept_at_stop(
    tmp_path: Path, smsc: NodeSmsc
) -> None:
    """A reply in three UDH segments (out of order, one sent twice by the SMSC)
    is stored as one message of 3 segments, threaded to the notification; a
    reply whose third segment never comes is stored with what came when the
    daemon stops, not dropped."""
    daemon = make_daemon(tmp_path, smsc.port, CAMPAIGN).start()
    customer, other = "+12125550177", "+12125550178"
    stopped = False
    try:
        sent = daemon("sms.send", number=customer, template="code", data={"code": "1"})
        until(lambda: smsc.counts().get(customer[1:]) == 1, 10, "the notification")
        # (The SMSC's command line trims each text: the segments split inside words.)
        for ref, seq, text in [
            (7, 3, "re at nine."),
            (7, 1, "Yes, I wi"),
            (9, 1, "Half a r"),
            (7, 2, "ll be the"),
            (7, 2, "ll be the"),
            (9, 2, "eply"),
        ]:
            answer = smsc.command(f"mopart {customer[1:] if ref == 7 else other[1:]} "
                                  f"{SENDER[1:]} {ref} 3 {seq} {text}")  # fmt: skip
            assert answer == "sent mopart 1", answer
        replies = until(lambda: [m for m in daemon("sms.list", number=customer)
                                 if m["direction"] == "in"], 10, "the whole reply")  # fmt: skip
        time.sleep(0.5)  # a second copy would be stored by now
        replies = [m for m in daemon("sms.list", number=customer) if m["direction"] == "in"]
        assert len(replies) == 1
        assert replies[0]["body"] == "Yes, I will be there at nine."
        assert replies[0]["segments"] == 3 and replies[0]["thread_id"] == sent["id"]
        assert not [m for m in daemon("sms.list", number=other) if m["direction"] == "in"]
        assert daemon.stop() == 0
        stopped = True
        daemon.start()
        stopped = False
        half = [m for m in daemon("sms.list", number=other) if m["direction"] == "in"]
        assert [(m["body"], m["segments"]) for m in half] == [("Half a reply", 2)]
    finally:
        if not stopped:
            assert daemon.stop() == 0


def test_notifications_keywords_and_reply_threading(tmp_path: Path, smsc: NodeSmsc) -> None:
    daemon = make_daemon(tmp_path, smsc.port, CAMPAIGN).start()
    customer = "+12125550199"
    try:
        sent = daemon("sms.send", number="(212) 555-0199", template="code", data={"code": "4711"})
        assert sent["to"] == customer and sent["status"] == "queued"
        until(lambda: smsc.counts().get(customer[1:]) == 1, 10, "the notification at the SMSC")
        assert smsc.logged()[-1]["text"] == "Your code is 4711."
        with pytest.raises(ControlError, match="missing column 'code'"):
            daemon("sms.send", number=customer, template="code")
        # A reply threads to the notification; HOURS is the sender's own keyword.
        assert smsc.command(f"mo1 {customer[1:]} {SENDER[1:]} Is it tomorrow?").startswith("sent")
        reply = until(lambda: [m for m in daemon("sms.list", number=customer)
                               if m["direction"] == "in"], 10, "the reply stored")  # fmt: skip
        assert reply[0]["thread_id"] == sent["id"] and reply[0]["keyword"] is None
        smsc.command(f"mo1 {customer[1:]} {SENDER[1:]} hours")
        until(lambda: smsc.counts().get(customer[1:]) == 2, 10, "the HOURS answer")
        assert smsc.logged()[-1]["text"] == "Open 9-17."
        # STOP (any case, trimmed): on the SMS opt-out list, one confirmation only.
        smsc.command(f"mo1 {customer[1:]} {SENDER[1:]}  Stop ")
        until(lambda: smsc.counts().get(customer[1:]) == 3, 10, "the STOP confirmation")
        assert smsc.logged()[-1]["text"] == "You are unsubscribed."
        smsc.command(f"mo1 {customer[1:]} {SENDER[1:]} STOPALL")
        hit = until(
            lambda: (c := daemon("dnc.check", number=customer))["listed"] and c, 10, "opted out"
        )
        assert hit["list"] == "sms-optout" and hit["source"] == "sms"
        time.sleep(0.5)
        assert smsc.counts()[customer[1:]] == 3  # no second confirmation
        with pytest.raises(ControlError, match="opted out"):
            daemon("sms.send", number=customer, text="Another one")
        smsc.command(f"mo1 {customer[1:]} {SENDER[1:]} HELP")
        until(lambda: smsc.counts().get(customer[1:]) == 4, 10, "the HELP answer")
        assert smsc.logged()[-1]["text"] == "Clinic reminders. Reply STOP to stop."
        smsc.command(f"mo1 {customer[1:]} {SENDER[1:]} start")
        until(lambda: smsc.counts().get(customer[1:]) == 5, 10, "the START confirmation")
        assert smsc.logged()[-1]["text"] == "Welcome back."
        assert daemon("dnc.check", number=customer)["listed"] is False
        daemon("sms.send", number=customer, text="Back again")
        until(lambda: smsc.counts().get(customer[1:]) == 6, 10, "sendable again")
        # The interaction closes after 2 s of quiet, visible in the event stream (log).
        show = daemon("sms.show", id=sent["id"])
        assert [t["direction"] for t in show["thread"]][:2] == ["out", "in"]
        until(lambda: any(h["status"] == "interaction_closed"
                          for h in daemon("sms.show", id=sent["id"])["history"]),
              10, "the interaction closed")  # fmt: skip
        report = daemon("sms.report")
        assert report["opted_out"] >= 1 and report["replies"] >= 2
        # The same through `outdial ctl sms ...`.
        out = ctl(daemon, "sms", "send", "+12125550142", "--template", "code", "--data",
                  "code=9001")  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "to +12125550142 queued: 1 segment(s), GSM-7" in out.stdout
        until(lambda: smsc.counts().get("12125550142") == 1, 10, "the ctl notification")
        assert smsc.logged()[-1]["text"] == "Your code is 9001."
        out = ctl(daemon, "sms", "send", "+12125550142", "--template", "code")
        assert out.returncode != 0 and "missing column 'code'" in out.stderr
        out = ctl(daemon, "sms", "preview", "Caf\u00e9 \u263a https://example.com/x")
        assert out.returncode == 0 and "UCS-2 forced by" in out.stdout, out.stdout
        out = ctl(daemon, "sms", "list", "--number", "+12125550142", "--format", "json")
        assert json.loads(out.stdout)[0]["body"] == "Your code is 9001."
    finally:
        assert daemon.stop() == 0
