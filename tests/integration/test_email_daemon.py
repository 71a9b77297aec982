"""Email in the real daemon (`outdial run`) against real relays on loopback:
Postfix's smtp-sink for a campaign of a few hundred messages, aiosmtpd
scripted to answer 4xx then accept, 5xx, or drop mid-transaction; the
daemon's own inbound listener taking a DSN and a reply; the one-click
unsubscribe on its HTTP listener; kill -9 in the middle of a campaign."""

from __future__ import annotations

import asyncio
import csv
import email
import re
import smtplib
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import ControlError, Daemon
from tests.integration.sipp import free_port
from tests.integration.smtp_relays import ScriptedHandler, SmtpSink, message_ids, start_aiosmtpd
from tests.integration.test_sms_daemon import until

pytestmark = pytest.mark.smtp

DOMAIN = "mail.clinic.test"
CAMPAIGN = """\
name: newsletter
channel: email
contact_list: customers
subject: "Spring news for {{ first_name }}"
text: "Hello {{ first_name }}, our spring hours are 9-17."
html: "<p>Hello <b>{{ first_name }}</b>, our spring hours are 9-17.</p>"
throughput: {messages_per_second: 400}
retry: {attempts: 4, after: 0.3s}
"""


def email_section(relay_port: int, inbound_port: int, http_port: int, extra: str = "") -> str:
    return (
        f"http:\n  listen: 127.0.0.1:{http_port}\n"
        "email:\n"
        f"  domain: {DOMAIN}\n"
        '  from: "Clinic <news@clinic.test>"\n'
        "  relays:\n"
        "    relay1:\n"
        "      host: 127.0.0.1\n"
        f"      port: {relay_port}\n"
        "      connections: 4\n"
        "      timeout: 5s\n"
        f"  inbound:\n    listen: 127.0.0.1:{inbound_port}\n"
        "  reply_window: 1h\n"
        "  retry: {attempts: 4, after: 0.3s}\n"
        "  templates:\n"
        "    receipt:\n"
        '      subject: "Receipt {{ number }}"\n'
        '      text: "Thank you, {{ name }}."\n' + extra
    )


class Ports:
    def __init__(self) -> None:
        self.inbound, self.http = free_port(), free_port()


def make_daemon(tmp_path: Path, relay_port: int, ports: Ports, campaign: str = CAMPAIGN) -> Daemon:
    extra = email_section(relay_port, ports.inbound, ports.http) + (
        f"  secret_file: {tmp_path / 'email.secret'}\n"
    )
    return Daemon(tmp_path, free_port(), campaign, tmp_path / "none.wav", extra=extra)


def write_contacts(path: Path, count: int, missing: int | None = None) -> list[str]:
    addresses = []
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["phone", "email", "first_name"])
        for i in range(count):
            address = f"patient{i}@dest{i % 3}.test"
            addresses.append(address)
            w.writerow([f"+1212555{i:04d}", address, "" if i == missing else f"Pat{i}"])
    return addresses


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    relay = SmtpSink(tmp_path / "sink").start()
    yield relay
    relay.stop()


class RecordingHandler(ScriptedHandler):
    """ScriptedHandler that also keeps each transaction's return path."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_froms: list[str] = []

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.mail_froms.append(address)
        return await super().handle_MAIL(server, session, envelope, address, options)


class ThreadRelay:
    """aiosmtpd with a ScriptedHandler on its own loop in a thread (the test's
    own thread blocks on the daemon's control socket)."""

    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server, self.port = self.loop.run_until_complete(start_aiosmtpd(self.handler))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(5)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def relay() -> Iterator[ThreadRelay]:
    r = ThreadRelay()
    yield r
    r.stop()


def parse(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def dumped(sink: SmtpSink) -> list[email.message.EmailMessage]:
    # Each dump is the message as received, after smtp-sink's own X-*/Received lines.
    return [parse(raw) for raw in sink.dumps()]


def test_campaign_reaches_smtp_sink_complete_once_each(tmp_path: Path, sink: SmtpSink) -> None:
    contacts = tmp_path / "customers.csv"
    addresses = write_contacts(contacts, 300, missing=5)
    ports = Ports()
    daemon = make_daemon(tmp_path, sink.port, ports).start()
    try:
        daemon("contacts.import", list="customers", file=str(contacts))
        daemon("campaign.start", name="newsletter")
        daemon.wait_state("newsletter", "completed", 60)
        report = daemon("sms.report", campaign="newsletter")
        assert report["accepted"] == 299 and report["skipped"] == 1 and report["in_doubt"] == 0
        until(lambda: len(sink.dumps()) >= 299, 10, "every message dumped")
        ids = Counter(i for raw in sink.dumps() for i in message_ids(raw))
        stored = {m["message_ref"] for m in daemon("email.list", campaign="newsletter",
                                                   limit=1000)}  # fmt: skip
        assert len(stored) == 299 and set(ids) == stored and set(ids.values()) == {1}
        sample = next(m for m in dumped(sink) if m["To"] == addresses[7])
        assert sample["Subject"] == "Spring news for Pat7"
        assert sample["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.match(rf"<http://127.0.0.1:{ports.http}/u/[a-z2-7]+>, <mailto:unsubscribe\+",
                        sample["List-Unsubscribe"])  # fmt: skip
        assert sample["Reply-To"].startswith("reply+")
        assert sample["Message-ID"].endswith(f"@{DOMAIN}>")
        plain = sample.get_body(("plain",))
        html = sample.get_body(("html",))
        assert plain is not None and "Hello Pat7," in plain.get_content()
        assert html is not None and "<b>Pat7</b>" in html.get_content()
        export = tmp_path / "out.csv"
        daemon("contacts.export", list="customers", file=str(export))
        rows = {r["email"]: r for r in csv.DictReader(export.open())}
        assert rows[addresses[5]]["dial_state"] == "skipped"
        assert "missing column 'first_name'" in rows[addresses[5]]["skip_reason"]
        assert rows[addresses[0]]["last_result"] == "submitted"
    finally:
        assert daemon.stop() == 0


def test_relay_faults_retry_bounce_and_in_doubt(tmp_path: Path, relay: ThreadRelay) -> None:
    h = relay.handler
    h.rcpt_script["grey@dest.test"] = ["451 4.7.1 Greylisted, try again"]
    h.rcpt_script["gone@dest.test"] = ["550 5.1.1 <gone@dest.test>: User unknown"]
    h.rcpt_script["flaky@dest.test"] = ["drop"]  # mid-transaction, before the content
    h.data_script["lost@dest.test"] = ["drop"]  # after the content: the relay holds it
    ports = Ports()
    daemon = make_daemon(tmp_path, relay.port, ports).start()
    try:
        sent = {}
        for who in ("grey", "gone", "flaky", "lost", "fine"):
            sent[who] = daemon("email.send", address=f"{who}@dest.test", template="receipt",
                               data={"number": "7", "name": who.title()})["id"]  # fmt: skip

        def status(who: str) -> dict[str, Any]:
            return dict(daemon("sms.show", id=sent[who]))

        until(lambda: all(status(w)["status"] in ("submitted", "bounced")
                          for w in sent), 20, "every outcome")  # fmt: skip
        assert status("fine")["status"] == "submitted" and status("fine")["tries"] == 1
        grey = status("grey")
        assert grey["status"] == "submitted" and grey["tries"] == 2 and not grey["in_doubt"]
        assert "deferred" in [e["status"] for e in grey["history"]]
        gone = status("gone")
        assert gone["status"] == "bounced" and "5.1.1" in gone["error"]
        flaky = status("flaky")
        assert flaky["status"] == "submitted" and not flaky["in_doubt"]
        lost = status("lost")
        assert lost["status"] == "submitted" and lost["in_doubt"] and lost["tries"] == 2
        by_id = {status(w)["message_ref"]: w for w in sent}
        received = {by_id[i]: n for i, n in h.received.items() if i in by_id}
        # Nothing lost; twice only what the store flags in doubt.
        assert received == {"grey": 1, "flaky": 1, "lost": 2, "fine": 1}
        with pytest.raises(ControlError, match="may not be emailed"):
            daemon("email.send", address="gone@dest.test", template="receipt",
                   data={"number": "8", "name": "Gone"})  # fmt: skip
    finally:
        assert daemon.stop() == 0


DSN = """\
From: MAILER-DAEMON@dest.test
To: {rcpt}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

Your message could not be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.dest.test

Final-Recipient: rfc822; {address}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--b1
Content-Type: text/rfc822-headers

Message-ID: {ref}
Subject: Receipt 1

--b1--
"""


def test_inbound_dsn_marks_bounced_and_a_reply_is_threaded(
    tmp_path: Path, relay: ThreadRelay
) -> None:
    ports = Ports()
    daemon = make_daemon(tmp_path, relay.port, ports).start()
    try:
        first = daemon("email.send", address="ann@dest.test", template="receipt",
                       data={"number": "1", "name": "Ann"})  # fmt: skip
        until(lambda: relay.handler.contents, 10, "the receipt at the relay")
        raw = relay.handler.contents[-1]
        msg = parse(raw)
        return_path = relay_return_path(relay)
        assert return_path.startswith("bounce+") and return_path.endswith(f"@{DOMAIN}")
        with smtplib.SMTP("127.0.0.1", ports.inbound, timeout=10) as smtp:
            dsn = DSN.format(rcpt=return_path, address="ann@dest.test", ref=msg["Message-ID"])
            smtp.sendmail("", [return_path], dsn.replace("\n", "\r\n").encode())
            reply = (
                f"From: Ann <ann@dest.test>\r\nTo: {msg['Reply-To']}\r\n"
                f"Subject: Re: Receipt 1\r\nMessage-ID: <r1@dest.test>\r\n"
                f"In-Reply-To: {msg['Message-ID']}\r\nReferences: {msg['Message-ID']}\r\n"
                "\r\nThanks! Can I pay by card?\r\n\r\n> Thank you, Ann.\r\n"
            )
            smtp.sendmail("ann@dest.test", [msg["Reply-To"]], reply.encode())
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("x@dest.test", [f"someone@{DOMAIN}"], b"Subject: x\r\n\r\nx\r\n")
        show = until(lambda: (s := daemon("sms.show", id=first["id"]))["status"] == "bounced"
                     and len(s["thread"]) == 2 and s, 10, "bounced and threaded")  # fmt: skip
        assert "5.1.1" in show["error"]
        assert show["thread"][1]["direction"] == "in"
        assert "Can I pay by card?" in show["thread"][1]["body"]
        hits = daemon("dnc.check_address", address="ANN@dest.test")
        assert [h["list"] for h in hits["lists"]] == ["email-bounces"]
    finally:
        assert daemon.stop() == 0


def relay_return_path(relay: ThreadRelay) -> str:
    """The last transaction's MAIL FROM (the VERP return path)."""
    return relay.handler.mail_froms[-1]


def test_one_click_unsubscribe_end_to_end(tmp_path: Path, sink: SmtpSink) -> None:
    contacts = tmp_path / "customers.csv"
    write_contacts(contacts, 3)
    ports = Ports()
    daemon = make_daemon(tmp_path, sink.port, ports).start()
    try:
        daemon("contacts.import", list="customers", file=str(contacts))
        daemon("campaign.start", name="newsletter")
        daemon.wait_state("newsletter", "completed", 30)
        until(lambda: len(sink.dumps()) >= 3, 10, "dumped")
        msg = next(m for m in dumped(sink) if m["To"] == "patient1@dest1.test")
        url = re.match(r"<([^>]+)>", msg["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "patient1@dest1.test" in page and '<form method="post"' in page
        assert daemon("dnc.check_address", address="patient1@dest1.test")["lists"] == []
        post = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST",
                                      headers={"Content-Type":
                                               "application/x-www-form-urlencoded"})  # fmt: skip
        done = urllib.request.urlopen(post, timeout=10).read().decode()
        assert "will get no more emails" in done
        hit = daemon("dnc.check_address", address="patient1@dest1.test")["lists"][0]
        assert (hit["list"], hit["source"]) == ("email-optout", "unsubscribe")
        row = next(m for m in daemon("email.list", campaign="newsletter")
                   if m["address"] == "patient1@dest1.test")  # fmt: skip
        assert row["status"] == "unsubscribed"
        forged = url[:-3] + ("aaa" if not url.endswith("aaa") else "bbb")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(forged, data=b"", method="POST"))
        assert err.value.code == 404
    finally:
        assert daemon.stop() == 0


def test_kill_9_mid_campaign_sends_each_once(tmp_path: Path, sink: SmtpSink) -> None:
    contacts = tmp_path / "customers.csv"
    write_contacts(contacts, 400)
    ports = Ports()
    daemon = make_daemon(tmp_path, sink.port, ports,
                         CAMPAIGN.replace("400}", "150}")).start()  # fmt: skip
    daemon("contacts.import", list="customers", file=str(contacts))
    daemon("campaign.start", name="newsletter")
    until(lambda: len(sink.dumps()) >= 100, 20, "the campaign under way")
    daemon.kill()
    time.sleep(0.3)
    daemon.start()
    try:
        daemon.wait_state("newsletter", "completed", 60)
        rows = daemon("email.list", campaign="newsletter", limit=1000)
        assert len(rows) == 400 and all(r["status"] == "submitted" for r in rows)
        until(lambda: len(sink.dumps()) >= 400, 10, "every message dumped")
        ids = Counter(i for raw in sink.dumps() for i in message_ids(raw))
        doubt = {r["message_ref"] for r in rows if r["in_doubt"]}
        assert {r["message_ref"] for r in rows} == set(ids)  # nothing lost
        twice = {i for i, n in ids.items() if n > 1}
        assert twice <= doubt and all(n <= 2 for n in ids.values())
    finally:
        assert daemon.stop() == 0


def test_dkim_signed_with_rsa_and_ed25519_verifies_with_dkimpy(
    tmp_path: Path, relay: ThreadRelay
) -> None:
    import dkim as dkimpy
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    from carriers.email.dkim import DkimKey

    pems = {
        "clinic.test": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "shop.test": ed25519.Ed25519PrivateKey.generate(),
    }
    records = {}
    lines = "  dkim:\n"
    for domain, key in pems.items():
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
        path = tmp_path / f"{domain}.pem"
        path.write_bytes(pem)
        records[f"s1._domainkey.{domain}."] = DkimKey.from_pem(domain, "s1", pem).public_record()
        lines += f"    - {{domain: {domain}, selector: s1, key_file: {path}}}\n"
    ports = Ports()
    extra = email_section(relay.port, ports.inbound, ports.http, lines) + (
        f"  secret_file: {tmp_path / 'email.secret'}\n"
    )
    daemon = Daemon(tmp_path, free_port(), CAMPAIGN, tmp_path / "none.wav", extra=extra).start()
    try:
        daemon("email.send", address="ann@dest.test", template="receipt",
               data={"number": "1", "name": "Ann"})  # fmt: skip
        daemon("email.send", address="bob@dest.test", template="receipt",
               data={"number": "2", "name": "Bob"}, sender="Shop <hi@shop.test>")  # fmt: skip
        until(lambda: len(relay.handler.contents) >= 2, 10, "both at the relay")

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
            return records[name.decode()].encode()

        for raw in relay.handler.contents:
            assert raw.startswith(b"DKIM-Signature:")
            assert dkimpy.verify(raw, dnsfunc=dnsfunc), raw[:400]
            assert not dkimpy.verify(raw.replace(b"Thank you", b"Thank yoU"), dnsfunc=dnsfunc)
        algorithms = {re.search(rb"a=([a-z0-9-]+)", raw).group(1)  # type: ignore[union-attr]
                      for raw in relay.handler.contents}  # fmt: skip
        assert algorithms == {b"rsa-sha256", b"ed25519-sha256"}
    finally:
        assert daemon.stop() == 0
