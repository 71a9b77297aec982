"""SMS over the HTTP aggregators in the real daemon (`outdial run`), with its
HTTP listener (`http:`) taking the webhooks.

Twilio-shaped: a local fake of the Messages API runs in a thread (its own
event loop), so the daemon, another process, reaches it on loopback; it signs
the status callbacks it makes to the daemon's listener with the `twilio`
package's own RequestValidator, and so do the inbound webhooks the tests post.

Kannel: a real Kannel (bearerbox, smsbox, fakesmsc). bearerbox reports type 8
(delivered to the SMSC) to the daemon's dlr-url when fakesmsc takes a message;
the MO route is called as smsbox's sms-service get-url would call it.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import ClientSession, web
from twilio.request_validator import RequestValidator

from carriers.sms.encoding import segment
from tests.integration.daemon import Daemon
from tests.integration.kannel import PASSWORD, USERNAME, Kannel, run_kannel
from tests.integration.sipp import free_port

SID = "AC" + "0" * 31 + "7"
TOKEN = "fake-auth-token"
SENDER = "+15550100"
DLR_KEY = "k&1 2+3/4=5%6"  # quoted into the dlr-url, it must survive Kannel
STOP_REPLY = "You are unsubscribed."
HELP_REPLY = "Clinic reminders. Reply STOP to stop."

# A message's history when the carrier takes it, reports it taken, then delivered.
DELIVERED_STEPS = ["queued", "submitting", "submitted", "part_submitted", "delivered"]

CAMPAIGN = """\
name: reminders
channel: sms
contact_list: patients
template: "Hi {first_name}, see you on {date}. Reply STOP to opt out."
throughput: {messages_per_second: 500}
retry: {attempts: 3, after: 0.2s}
"""


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def write_contacts(path: Path, numbers: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["phone", "first_name", "date"])
        for i, number in enumerate(numbers):
            w.writerow([number, f"Pat{i}", "Monday"])


def http_port() -> int:
    return free_port(socket.SOCK_STREAM)


def http_section(port: int) -> str:
    return f"http:\n  listen: 127.0.0.1:{port}\n  public_url: http://127.0.0.1:{port}\n"


def sms_common() -> str:
    return (
        f'  default_sender: "{SENDER}"\n'
        "  reply_window: 1h\n"
        f'  stop_reply: "{STOP_REPLY}"\n'
        f'  help_reply: "{HELP_REPLY}"\n'
    )


def unknown_receipts(daemon: Daemon) -> list[dict[str, Any]]:
    out = []
    for line in daemon.log.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "for an id no message has" in str(event.get("event", "")):
            out.append(event)
    return out


# --- a fake Twilio Messages API, in a thread ------------------------------------------


def _twilio_error(status: int, code: int, message: str) -> web.Response:
    doc = {"code": code, "message": message, "status": status,
           "more_info": f"https://www.twilio.com/docs/errors/{code}"}  # fmt: skip
    return web.json_response(doc, status=status)


class FakeTwilio:
    """The Messages resource of one account on 127.0.0.1, served from a thread.

    Every POST is counted per `To`; `script[to]` is a list of (HTTP status,
    Twilio code) answers given, one per request, before the message is taken.
    For a number in `early` the answer waits 0.5 s: its first callback overtakes it.
    A taken message's answer is gzipped when the client accepts it; with a
    StatusCallback the message gets `sent` then `delivered` posted to it, signed
    by twilio's RequestValidator."""

    def __init__(self) -> None:
        self.validator = RequestValidator(TOKEN)
        self.requests: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}
        self.sent: list[dict[str, str]] = []
        self.callback_answers: list[int] = []
        self.gzipped = 0
        self.script: dict[str, list[tuple[int, int]]] = {}
        self.early: set[str] = set()  # these numbers' callbacks overtake the answer
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> FakeTwilio:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._messages)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        self._session = ClientSession()

    async def _close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, creds = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Basic" and base64.b64decode(creds).decode() == f"{SID}:{TOKEN}"

    async def _messages(self, request: web.Request) -> web.Response:
        if request.match_info["sid"] != SID or not self._authorized(request):
            return _twilio_error(401, 20003, "Authenticate")
        form = {k: str(v) for k, v in (await request.post()).items()}
        to = form.get("To", "")
        self.requests[to] += 1
        self.times.setdefault(to, []).append(time.monotonic())
        scripted = self.script.get(to)
        if scripted:
            status, code = scripted.pop(0)
            response = _twilio_error(status, code, f"scripted answer {status}")
            if status == 429:
                response.headers["Retry-After"] = "1"
            return response
        sid = "SM" + uuid.uuid4().hex
        self.sent.append({**form, "sid": sid})
        if "StatusCallback" in form:
            task = asyncio.create_task(self._callbacks(form["StatusCallback"], sid, form))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if to in self.early:
                await asyncio.sleep(0.5)  # the first callback is made before we answer
        resource = {"sid": sid, "account_sid": SID, "to": to, "from": form.get("From"),
                    "body": form.get("Body", ""), "status": "queued",
                    "num_segments": str(len(segment(form.get("Body", "")).segments)),
                    "error_code": None, "error_message": None}  # fmt: skip
        response = web.json_response(resource, status=201)
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            self.gzipped += 1  # answered compressed, as an API behind a CDN does
            response.enable_compression()
        return response

    async def _callbacks(self, url: str, sid: str, form: dict[str, str]) -> None:
        for status in ("sent", "delivered"):
            params = {"AccountSid": SID, "ApiVersion": "2010-04-01", "From": form.get("From", ""),
                      "To": form["To"], "MessageSid": sid, "SmsSid": sid,
                      "MessageStatus": status, "SmsStatus": status}  # fmt: skip
            signature = self.validator.compute_signature(url, params)
            assert self._session is not None
            async with self._session.post(
                url, data=params, headers={"X-Twilio-Signature": signature}
            ) as r:
                self.callback_answers.append(r.status)

    def sent_to(self, number: str) -> list[dict[str, str]]:
        return [m for m in list(self.sent) if m["To"] == number]


def post_form(url: str, params: dict[str, str], signature: str) -> int:
    """A form POST from the test thread (a webhook as Twilio makes it)."""
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(params).encode(), method="POST",
        headers={"X-Twilio-Signature": signature,
                 "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    try:
        yield fake
    finally:
        fake.stop()


class TwilioDaemon:
    def __init__(
        self, tmp_path: Path, fake: FakeTwilio, campaign: str = CAMPAIGN, account_extra: str = ""
    ) -> None:
        self.port = http_port()
        self.public = f"http://127.0.0.1:{self.port}"
        sms = (
            "sms:\n  accounts:\n    tw1:\n      type: twilio\n"
            f"      url: {fake.base_url}\n      account_sid: {SID}\n"
            f"      auth_token: {TOKEN}\n      timeout: 5s\n" + account_extra + sms_common()
        )
        self.daemon = Daemon(tmp_path, free_port(), campaign, tmp_path / "none.wav",
                             extra=http_section(self.port) + sms)  # fmt: skip

    def url(self, kind: str) -> str:
        return f"{self.public}/sms/twilio/tw1/{kind}"


def signed_post(fake: FakeTwilio, url: str, params: dict[str, str]) -> int:
    return post_form(url, params, fake.validator.compute_signature(url, params))


def inbound(fake: FakeTwilio, td: TwilioDaemon, from_: str, body: str,
            sid: str | None = None, segments: int = 1) -> int:  # fmt: skip
    params = {"AccountSid": SID, "MessageSid": sid or "SM" + uuid.uuid4().hex, "From": from_,
              "To": SENDER, "Body": body, "NumSegments": str(segments),
              "NumMedia": "0"}  # fmt: skip
    return signed_post(fake, td.url("inbound"), params)


# --- Twilio-shaped account ------------------------------------------------------------


@pytest.mark.smsc
def test_twilio_campaign_is_delivered_and_forged_callbacks_are_refused(
    tmp_path: Path, twilio: FakeTwilio
) -> None:
    numbers = [f"+1212555{i:04d}" for i in range(50)]
    write_contacts(tmp_path / "patients.csv", numbers)
    td = TwilioDaemon(tmp_path, twilio)
    daemon = td.daemon.start()
    try:
        assert get(f"{td.public}/health") == (200, '{"status": "ok"}')
        daemon("contacts.import", list="patients", file=str(tmp_path / "patients.csv"))
        daemon("campaign.start", name="reminders")
        daemon.wait_state("reminders", "completed", 20)
        report = until(
            lambda: (r := daemon("sms.report", campaign="reminders"))["delivered"] == 50 and r,
            15, "every status callback applied",
        )  # fmt: skip
        assert report["accepted"] == 50 and report["rejected"] == 0 and report["queued"] == 0
        assert report["in_doubt"] == 0 and report["segments"] == 50
        assert twilio.requests == Counter(numbers)  # each exactly once
        assert twilio.gzipped == 50  # and the daemon read the compressed answers
        assert len(twilio.sent) == 50 and all(m["From"] == SENDER for m in twilio.sent)
        assert {m["StatusCallback"] for m in twilio.sent} == {td.url("status")}
        until(lambda: len(twilio.callback_answers) == 100, 5, "the fake's callbacks answered")
        assert twilio.callback_answers == [200] * 100
        first = twilio.sent_to(numbers[0])[0]
        assert first["Body"] == "Hi Pat0, see you on Monday. Reply STOP to opt out."
        [row] = daemon("sms.list", number=numbers[0])
        assert row["status"] == "delivered" and row["carrier_id"] == first["sid"]
        history = daemon("sms.show", id=row["id"])["history"]
        assert [h["status"] for h in history] == DELIVERED_STEPS
        assert json.loads(history[-1]["detail"]) == {"status": "delivered"}
        # A callback whose signature is not the account's: 403, and nothing changes.
        forged = {"AccountSid": SID, "MessageSid": first["sid"], "MessageStatus": "undelivered",
                  "ErrorCode": "30003"}  # fmt: skip
        wrong = RequestValidator("not-the-token").compute_signature(td.url("status"), forged)
        assert post_form(td.url("status"), forged, wrong) == 403
        assert post_form(td.url("status"), forged, "") == 403
        # Signed for another URL (the inbound one): 403 too.
        other = twilio.validator.compute_signature(td.url("inbound"), forged)
        assert post_form(td.url("status"), forged, other) == 403
        time.sleep(0.3)
        after = daemon("sms.show", id=row["id"])
        assert after["status"] == "delivered" and after["error"] is None
        assert len(after["history"]) == len(history)
        assert unknown_receipts(daemon) == []
    finally:
        assert daemon.stop() == 0


@pytest.mark.smsc
def test_twilio_inbound_stop_and_reply_threading(tmp_path: Path, twilio: FakeTwilio) -> None:
    td = TwilioDaemon(tmp_path, twilio)
    daemon = td.daemon.start()
    customer, other = "+12125550199", "+12125550188"
    try:
        # A plain reply threads to the notification sent to that number.
        sent = daemon("sms.send", number=customer, text="Your code is 4711.")
        until(lambda: twilio.sent_to(customer), 10, "the notification at the fake")
        until(lambda: daemon("sms.show", id=sent["id"])["status"] == "delivered", 10,
              "the notification delivered")  # fmt: skip
        sid = "SM" + uuid.uuid4().hex
        assert inbound(twilio, td, customer, "Is it tomorrow?", sid, segments=2) == 200
        reply = until(lambda: [m for m in daemon("sms.list", number=customer)
                               if m["direction"] == "in"], 10, "the reply stored")  # fmt: skip
        assert reply[0]["thread_id"] == sent["id"] and reply[0]["keyword"] is None
        assert reply[0]["carrier_id"] == sid and reply[0]["segments"] == 2
        # Twilio retries a webhook it got no answer to: the same MessageSid is stored once.
        assert inbound(twilio, td, customer, "Is it tomorrow?", sid, segments=2) == 200
        thread = daemon("sms.show", id=sent["id"])["thread"]
        assert [(t["direction"], t["body"]) for t in thread] == [
            ("out", "Your code is 4711."),
            ("in", "Is it tomorrow?"),
        ]
        # STOP (signed): on the opt-out list, the confirmation sent through the fake.
        assert inbound(twilio, td, other, " Stop ") == 200
        hit = until(lambda: (c := daemon("dnc.check", number=other))["listed"] and c, 10,
                    "opted out")  # fmt: skip
        assert hit["list"] == "sms-optout" and hit["source"] == "sms"
        confirmation = until(lambda: twilio.sent_to(other), 10, "the STOP confirmation")
        assert [m["Body"] for m in confirmation] == [STOP_REPLY]
        assert confirmation[0]["From"] == SENDER
        [stop] = [m for m in daemon("sms.list", number=other) if m["direction"] == "in"]
        assert stop["keyword"] == "stop" and stop["body"] == " Stop "
        # A second STOP: no second confirmation. An unsigned one: 403, not stored.
        assert inbound(twilio, td, other, "STOP") == 200
        params = {"MessageSid": "SM1", "From": customer, "To": SENDER, "Body": "STOP"}
        assert post_form(td.url("inbound"), params, "AAAA") == 403
        time.sleep(0.5)
        assert len(twilio.sent_to(other)) == 1
        assert daemon("dnc.check", number=customer)["listed"] is False
        assert len(daemon("sms.list", number=customer)) == 2
    finally:
        assert daemon.stop() == 0


EDGE = """\
name: edge
channel: sms
contact_list: edge
template: "Hello {first_name}."
retry: {attempts: 3, after: 0.2s}
"""


@pytest.mark.smsc
def test_twilio_throttled_then_taken_and_refused(tmp_path: Path, twilio: FakeTwilio) -> None:
    throttled, invalid, early = "+12125550301", "+12125550302", "+12125550303"
    twilio.script = {throttled: [(429, 20429)], invalid: [(400, 21211)]}
    twilio.early = {early}
    write_contacts(tmp_path / "edge.csv", [throttled, invalid, early])
    td = TwilioDaemon(tmp_path, twilio, EDGE)
    daemon = td.daemon.start()
    try:
        daemon("contacts.import", list="edge", file=str(tmp_path / "edge.csv"))
        daemon("campaign.start", name="edge")
        daemon.wait_state("edge", "completed", 15)
        [ok] = daemon("sms.list", number=throttled)
        until(lambda: daemon("sms.show", id=ok["id"])["status"] == "delivered", 10,
              "the retried message delivered")  # fmt: skip
        shown = daemon("sms.show", id=ok["id"])
        assert shown["tries"] == 2 and shown["in_doubt"] in (0, False)
        assert twilio.requests[throttled] == 2 and len(twilio.sent_to(throttled)) == 1
        first_try, second_try = twilio.times[throttled]
        assert second_try - first_try >= 0.95  # Retry-After: 1, not the campaign's 0.2 s
        statuses = [h["status"] for h in shown["history"]]
        assert statuses[:5] == ["queued", "submitting", "deferred", "submitting", "submitted"]
        assert "HTTP 429 error 20429" in shown["history"][2]["detail"]
        [bad] = daemon("sms.list", number=invalid)
        assert bad["status"] == "rejected" and bad["tries"] == 1
        assert bad["error"] == "HTTP 400 error 21211: scripted answer 400"
        assert twilio.requests[invalid] == 1 and twilio.sent_to(invalid) == []
        # Callbacks made before the API answered (the daemon had no sid yet) still apply.
        [fast] = daemon("sms.list", number=early)
        until(lambda: daemon("sms.show", id=fast["id"])["status"] == "delivered", 10,
              "the overtaking callbacks applied")  # fmt: skip
        history = daemon("sms.show", id=fast["id"])["history"]
        assert [h["status"] for h in history] == DELIVERED_STEPS
        until(lambda: len(twilio.callback_answers) == 4, 5, "the fake's callbacks answered")
        assert twilio.callback_answers == [200] * 4 and unknown_receipts(daemon) == []
        report = daemon("sms.report", campaign="edge")
        assert report["rejected"] == 1 and report["delivered"] == 2
    finally:
        assert daemon.stop() == 0


def test_an_account_refused_by_twilio_pauses_and_loses_nothing(
    tmp_path: Path, twilio: FakeTwilio
) -> None:
    """HTTP 401 is about our credentials, not the message: the account pauses
    (refused_pause), the other messages wait instead of each being refused,
    and the refused one is sent once the API takes us again, however many
    401s that takes (more than the 3 tries a notification has)."""
    first, second, third = "+12125550401", "+12125550402", "+12125550403"
    twilio.script = {first: [(401, 20003)] * 4}
    td = TwilioDaemon(tmp_path, twilio, account_extra="      refused_pause: 0.5s\n")
    daemon = td.daemon.start()
    try:
        sent = daemon("sms.send", number=first, text="Your code is 1.")
        until(lambda: twilio.requests[first] == 1, 5, "the first 401")
        refused_at = time.monotonic()
        others = [daemon("sms.send", number=n, text="Your code is 2.") for n in (second, third)]
        until(lambda: daemon("sms.show", id=sent["id"])["status"] == "delivered", 15,
              "the refused message delivered in the end")  # fmt: skip
        shown = daemon("sms.show", id=sent["id"])
        assert twilio.requests[first] == 5 and len(twilio.sent_to(first)) == 1
        assert shown["tries"] == 5
        deferred = [h for h in shown["history"] if h["status"] == "deferred"]
        assert len(deferred) == 4 and all("refused the account" in h["detail"] for h in deferred)
        for other, number in zip(others, (second, third), strict=True):
            until(lambda o=other: daemon("sms.show", id=o["id"])["status"] == "delivered", 10,
                  "the waiting messages delivered")  # fmt: skip
            assert twilio.requests[number] == 1  # each sent once, after a pause
            assert twilio.times[number][0] - refused_at >= 0.3
        assert daemon("sms.report")["rejected"] == 0
    finally:
        assert daemon.stop() == 0


# --- Kannel account, real Kannel ------------------------------------------------------


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[Kannel]:
    (tmp_path / "kannel").mkdir()
    yield from run_kannel(tmp_path / "kannel")


def kannel_daemon(tmp_path: Path, kannel: Kannel, port: int | None = None) -> tuple[Daemon, str]:
    port = port or http_port()
    sms = (
        "sms:\n  accounts:\n    k1:\n      type: kannel\n"
        f"      url: {kannel.base_url}\n      username: {USERNAME}\n"
        f'      password: {PASSWORD}\n      dlr_key: "{DLR_KEY}"\n      timeout: 5s\n'
        + sms_common()
    )
    daemon = Daemon(tmp_path, free_port(), CAMPAIGN, tmp_path / "none.wav",
                    extra=http_section(port) + sms)  # fmt: skip
    return daemon, f"http://127.0.0.1:{port}/sms/kannel/k1"


def fakesmsc_got(kannel: Kannel, text: str) -> list[str]:
    return [line for line in kannel.received().splitlines()
            if "Got message" in line and text in line]  # fmt: skip


@pytest.mark.kannel
def test_kannel_send_report_and_mo(tmp_path: Path, kannel: Kannel) -> None:
    daemon, base = kannel_daemon(tmp_path, kannel)
    daemon.start()
    customer = "+12125550142"
    try:
        sent = daemon("sms.send", number=customer, text="Your code is 4711.")
        # bearerbox reports type 8 (fakesmsc took it), then type 1 (fakesmsc acks
        # as delivered when every report type is asked for).
        shown = until(lambda: (s := daemon("sms.show", id=sent["id"]))["status"] == "delivered"
                      and s, 15, "Kannel's reports applied")  # fmt: skip
        assert shown["carrier_id"] == str(sent["id"]) and shown["tries"] == 1
        history = [(h["status"], json.loads(h["detail"]) if h["detail"] else None)
                   for h in shown["history"]]  # fmt: skip
        assert [s for s, _ in history] == DELIVERED_STEPS
        assert history[3][1] == {"type": 8, "answer": "ACK/"}
        assert history[4][1]["type"] == 1
        assert until(lambda: fakesmsc_got(kannel, "Your code is 4711."), 10, "at fakesmsc")
        # The MO route (smsbox's get-url): the key is required.
        query = {"from": customer, "to": SENDER, "text": "HELP"}
        for key in (None, "wrong"):
            q = query if key is None else {**query, "key": key}
            assert get(f"{base}/mo?{urllib.parse.urlencode(q)}")[0] == 403
        assert get(f"{base}/mo?{urllib.parse.urlencode({'key': DLR_KEY})}")[0] == 400
        assert [m["direction"] for m in daemon("sms.list", number=customer)] == ["out"]
        status, body = get(f"{base}/mo?{urllib.parse.urlencode({**query, 'key': DLR_KEY})}")
        assert (status, body) == (200, "")
        messages = until(lambda: (m := daemon("sms.list", number=customer)) and len(m) == 3 and m,
                         10, "the HELP and its answer stored")  # fmt: skip
        [mo] = [m for m in messages if m["direction"] == "in"]
        assert mo["keyword"] == "help" and mo["thread_id"] == sent["id"]
        [answer] = [m for m in messages if m["direction"] == "out" and m["id"] != sent["id"]]
        assert answer["body"] == HELP_REPLY
        assert until(lambda: fakesmsc_got(kannel, HELP_REPLY.split(".")[0]), 10,
                     "the HELP answer at fakesmsc")  # fmt: skip
        until(lambda: daemon("sms.show", id=answer["id"])["status"] == "delivered", 10,
              "the HELP answer's reports")  # fmt: skip
        # A report without the key (or with another) is refused and changes nothing.
        assert get(f"{base}/dlr?ref={answer['id']}&type=2")[0] == 403
        assert get(f"{base}/dlr?key=x&ref={answer['id']}&type=2")[0] == 403
        time.sleep(0.3)
        after = daemon("sms.show", id=answer["id"])
        assert after["status"] == "delivered" and after["error"] is None
        assert [h["status"] for h in after["history"]][-1] == "delivered"
    finally:
        assert daemon.stop() == 0


@pytest.mark.kannel
def test_real_kannel_calls_the_mo_route(tmp_path: Path) -> None:
    """smsbox's sms-service calls the MO route; `max-messages = 0` because every
    answer goes through sendsms (tracked): without it Kannel texts the customer
    "<Empty reply from service provider>" (seen against this Kannel)."""
    port = http_port()
    mo = (f"http://127.0.0.1:{port}/sms/kannel/k1/mo?key={quote(DLR_KEY, safe='')}"
          "&from=%p&to=%P&text=%b&coding=%c&charset=%C")  # fmt: skip
    (tmp_path / "kannel").mkdir()
    kannels = run_kannel(tmp_path / "kannel", service=f'get-url = "{mo}"\nmax-messages = 0')
    kannel = next(kannels)
    daemon, _ = kannel_daemon(tmp_path, kannel, port)
    customer = "+12125550143"
    try:
        daemon.start()
        sent = daemon("sms.send", number=customer, text="See you at 10.")
        until(lambda: fakesmsc_got(kannel, "See you at 10."), 10, "the notification at fakesmsc")
        kannel.send_mo(customer, SENDER, "HELP")
        messages = until(lambda: (m := daemon("sms.list", number=customer)) and len(m) == 3 and m,
                         10, "the HELP and its answer stored")  # fmt: skip
        [mo_row] = [m for m in messages if m["direction"] == "in"]
        assert (mo_row["body"], mo_row["keyword"], mo_row["sender"]) == ("HELP", "help", SENDER)
        assert mo_row["thread_id"] == sent["id"]
        [answer] = [m for m in messages if m["direction"] == "out" and m["id"] != sent["id"]]
        until(lambda: fakesmsc_got(kannel, HELP_REPLY.split(".")[0]), 10, "the HELP answer")
        # A plain reply threads to the last message we sent that number: the answer.
        kannel.send_mo(customer, SENDER, "Can I come at 11?")
        until(lambda: len(daemon("sms.list", number=customer)) == 4, 10, "the reply stored")
        reply = daemon("sms.list", number=customer)[0]
        assert (reply["body"], reply["thread_id"]) == ("Can I come at 11?", answer["id"])
        # A UCS-2 message: Kannel gives its UTF-16BE bytes, with coding 2 and the charset.
        text = "Olá 😀 até já"
        kannel.send_mo(customer, SENDER, quote(text.encode("utf-16-be")), "ucs2")
        until(lambda: len(daemon("sms.list", number=customer)) == 5, 10, "the UCS-2 reply")
        assert daemon("sms.list", number=customer)[0]["body"] == text
        time.sleep(0.5)
        got = [line.split(": <", 1)[1] for line in kannel.received().splitlines()
               if "Got message" in line]  # fmt: skip
        assert got == [f"{SENDER} {customer} text See you at 10.>",
                       f"{SENDER} {customer} text {HELP_REPLY}>"]  # fmt: skip
    finally:
        assert daemon.stop() == 0
        next(kannels, None)
