"""The HTTP aggregator adapters over real HTTP on loopback.

A local fake of the Twilio Messages API (aiohttp.web on 127.0.0.1) checks Basic
auth, answers Twilio-shaped JSON and then calls our status-callback handler
with signed form POSTs. The fake signs with the `twilio` package's own
`RequestValidator` (not our code), so our verification is checked against an
independent implementation; the signatures the tests compute with our code are
checked with `RequestValidator.validate` too.

Kannel: a small aiohttp fake of smsbox's sendsms that replies as Kannel does and
calls the dlr-url with Kannel's escapes substituted, for what the real Kannel in
test_sms_http_kannel.py cannot show (handset receipts, smsbox's error replies).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_to_bytes

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from carriers.sms.encoding import segment
from carriers.sms.http.client import (
    KannelSender,
    TwilioSender,
    kannel_dlr_handler,
    twilio_inbound_handler,
    twilio_status_handler,
)
from carriers.sms.http.errors import SendNotAcknowledgedError, SendRejectedError
from carriers.sms.http.kannel import DeliveryReport, DlrType, KannelAccount
from carriers.sms.http.twilio import (
    InboundMessage,
    MessageStatus,
    StatusCallback,
    TwilioAccount,
    compute_signature,
)

SID = "AC" + "0" * 31 + "1"
TOKEN = "fake-auth-token"
INVALID_TO = "+15005550001"  # Twilio's magic "invalid number" test number
THROTTLED_TO = "+15005550429"
BROKEN_TO = "+15005550500"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def _twilio_error(status: int, code: int, message: str) -> web.Response:
    doc = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(doc, status=status)


@dataclass
class FakeMessagesApi:
    """The Messages resource of one account, and the status callbacks it makes."""

    validator: RequestValidator = field(default_factory=lambda: RequestValidator(TOKEN))
    sent: list[dict[str, str]] = field(default_factory=list)
    callback_answers: list[int] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    base_url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.messages)
        return app

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, creds = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return False
        return base64.b64decode(creds).decode() == f"{request.match_info['sid']}:{TOKEN}"

    async def messages(self, request: web.Request) -> web.Response:
        if request.match_info["sid"] != SID or not self._authorized(request):
            return _twilio_error(401, 20003, "Authenticate")
        form = {k: str(v) for k, v in (await request.post()).items()}
        to, body = form.get("To", ""), form.get("Body", "")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if to == INVALID_TO:
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to == THROTTLED_TO:
            response = _twilio_error(429, 20429, "Too Many Requests")
            response.headers["Retry-After"] = "2"
            return response
        if to == BROKEN_TO:
            return _twilio_error(500, 20500, "Internal Server Error")
        self.sent.append(form)
        sid = "SM" + uuid.uuid4().hex
        if "StatusCallback" in form:
            task = asyncio.create_task(self._callbacks(form["StatusCallback"], sid, form))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        resource = {
            "sid": sid,
            "account_sid": SID,
            "to": to,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": body,
            "status": "queued",
            "num_segments": str(len(segment(body).segments)),
            "error_code": None,
            "error_message": None,
            "api_version": "2010-04-01",
        }
        return web.json_response(resource, status=201)

    async def post_signed(self, url: str, params: dict[str, str]) -> int:
        """POST ``params`` to ``url`` as Twilio does, signed by twilio's own validator."""
        signature = self.validator.compute_signature(url, params)
        assert self.validator.validate(url, params, signature)
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=params, headers={"X-Twilio-Signature": signature}) as r,
        ):
            return r.status

    async def _callbacks(self, url: str, sid: str, form: dict[str, str]) -> None:
        for status in ("sent", "delivered"):
            params = {
                "AccountSid": SID,
                "ApiVersion": "2010-04-01",
                "From": form.get("From", ""),
                "To": form["To"],
                "MessageSid": sid,
                "SmsSid": sid,
                "MessageStatus": status,
                "SmsStatus": status,
            }
            self.callback_answers.append(await self.post_signed(url, params))


@dataclass
class Listener:
    """Our side: the webhook handlers on a real aiohttp server."""

    base_url: str
    statuses: asyncio.Queue[StatusCallback]
    inbound: asyncio.Queue[InboundMessage]
    reports: asyncio.Queue[DeliveryReport]


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    statuses: asyncio.Queue[StatusCallback] = asyncio.Queue()
    inbound: asyncio.Queue[InboundMessage] = asyncio.Queue()
    reports: asyncio.Queue[DeliveryReport] = asyncio.Queue()
    app = web.Application()
    app.router.add_post("/sms/status", twilio_status_handler(TOKEN, statuses.put_nowait))

    async def on_inbound(message: InboundMessage) -> None:
        await inbound.put(message)

    app.router.add_post("/sms/inbound", twilio_inbound_handler(TOKEN, on_inbound))
    app.router.add_get("/kannel/dlr", kannel_dlr_handler(reports.put_nowait, secret="k1"))
    runner, url = await _serve(app)
    yield Listener(url, statuses, inbound, reports)
    await runner.cleanup()


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeMessagesApi]:
    fake = FakeMessagesApi()
    runner, fake.base_url = await _serve(fake.app())
    yield fake
    for task in list(fake.tasks):
        task.cancel()
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_send_then_signed_status_callbacks(
    fake_api: FakeMessagesApi, listener: Listener, http: aiohttp.ClientSession
) -> None:
    sender = TwilioSender(http, TwilioAccount(SID, TOKEN, fake_api.base_url))
    callback = f"{listener.base_url}/sms/status?campaign=7&contact=42"
    sent = await sender.send(
        to="+447700900123",
        body="Olá Ana, see you at 10:00 😀",
        from_="+15005550006",
        status_callback=callback,
    )
    assert sent.sid.startswith("SM") and sent.status is MessageStatus.QUEUED
    assert sent.num_segments == 1
    assert fake_api.sent[0]["Body"] == "Olá Ana, see you at 10:00 😀"
    first = await asyncio.wait_for(listener.statuses.get(), 5)
    second = await asyncio.wait_for(listener.statuses.get(), 5)
    assert (first.message_sid, first.status) == (sent.sid, MessageStatus.SENT)
    assert (second.message_sid, second.status) == (sent.sid, MessageStatus.DELIVERED)
    assert second.status.final and second.to == "+447700900123"
    await asyncio.gather(*fake_api.tasks)  # the fake's last POST has had its answer
    assert fake_api.callback_answers == [200, 200]


async def test_send_through_a_messaging_service(
    fake_api: FakeMessagesApi, http: aiohttp.ClientSession
) -> None:
    sender = TwilioSender(http, TwilioAccount(SID, TOKEN, fake_api.base_url))
    sent = await sender.send(to="+15551234567", body="x" * 161, messaging_service_sid="MG1")
    assert sent.num_segments == 2 and fake_api.sent[0]["MessagingServiceSid"] == "MG1"


async def test_wrong_credentials_are_a_final_rejection(
    fake_api: FakeMessagesApi, http: aiohttp.ClientSession
) -> None:
    sender = TwilioSender(http, TwilioAccount(SID, "wrong", fake_api.base_url))
    with pytest.raises(SendRejectedError) as info:
        await sender.send(to="+15551234567", body="hi", from_="+15005550006")
    assert (info.value.http_status, info.value.code, info.value.retryable) == (401, 20003, False)
    assert fake_api.sent == []


@pytest.mark.parametrize(
    ("to", "status", "code", "retryable", "retry_after"),
    [
        (INVALID_TO, 400, 21211, False, None),
        (THROTTLED_TO, 429, 20429, True, 2.0),
        (BROKEN_TO, 500, 20500, True, None),
    ],
)
async def test_error_answers(
    fake_api: FakeMessagesApi,
    http: aiohttp.ClientSession,
    to: str,
    status: int,
    code: int,
    retryable: bool,
    retry_after: float | None,
) -> None:
    sender = TwilioSender(http, TwilioAccount(SID, TOKEN, fake_api.base_url))
    with pytest.raises(SendRejectedError) as info:
        await sender.send(to=to, body="hi", from_="+15005550006")
    err = info.value
    assert (err.http_status, err.code, err.retryable, err.retry_after) == (
        status,
        code,
        retryable,
        retry_after,
    )


async def test_no_listener_is_not_acknowledged(http: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = TwilioSender(http, TwilioAccount(SID, TOKEN, f"http://127.0.0.1:{port}"), timeout=2)
    with pytest.raises(SendNotAcknowledgedError):
        await sender.send(to="+15551234567", body="hi", from_="+15005550006")


async def test_signed_inbound_message(fake_api: FakeMessagesApi, listener: Listener) -> None:
    params = {
        "AccountSid": SID,
        "MessageSid": "SM" + "a" * 32,
        "SmsMessageSid": "SM" + "a" * 32,
        "From": "+447700900123",
        "To": "+15005550006",
        "Body": "Stop & go — ok? 😀",
        "NumSegments": "1",
        "NumMedia": "0",
    }
    assert await fake_api.post_signed(f"{listener.base_url}/sms/inbound", params) == 200
    message = await asyncio.wait_for(listener.inbound.get(), 5)
    assert message.body == "Stop & go — ok? 😀"
    assert (message.from_, message.to, message.num_segments) == ("+447700900123", "+15005550006", 1)


async def test_forged_and_tampered_callbacks_are_refused(
    listener: Listener, http: aiohttp.ClientSession
) -> None:
    url = f"{listener.base_url}/sms/status?campaign=7"
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": SID}
    ours = compute_signature(TOKEN, url, params)
    assert RequestValidator(TOKEN).validate(url, params, ours)  # our signer, twilio's check

    async def post(target: str, data: object, signature: str | None) -> tuple[int, str]:
        headers = {"X-Twilio-Signature": signature} if signature is not None else {}
        async with http.post(target, data=data, headers=headers) as r:
            return r.status, await r.text()

    status, text = await post(url, params, None)
    assert status == 403 and "missing X-Twilio-Signature" in text
    tampered = {**params, "MessageStatus": "failed"}
    assert (await post(url, tampered, ours))[0] == 403
    assert (await post(url.replace("campaign=7", "campaign=8"), params, ours))[0] == 403
    assert (await post(url, params, compute_signature("other", url, params)))[0] == 403
    raw = "MessageSid=SM1&MessageStatus=delivered&AccountSid=" + SID + "&x=1"
    async with http.post(
        url,
        data=raw.encode(),
        headers={"X-Twilio-Signature": ours, "Content-Type": "application/x-www-form-urlencoded"},
    ) as r:
        assert r.status == 403
    assert listener.statuses.empty()
    # The untouched request still passes, so the refusals above were the tampering.
    status, _ = await post(url, params, ours)
    assert status == 200
    accepted = await asyncio.wait_for(listener.statuses.get(), 5)
    assert accepted.status is MessageStatus.DELIVERED


async def test_signed_but_malformed_callback_is_bad_request(
    fake_api: FakeMessagesApi, listener: Listener
) -> None:
    status = await fake_api.post_signed(f"{listener.base_url}/sms/status", {"MessageSid": "SM1"})
    assert status == 400 and listener.statuses.empty()


# --- Kannel: a fake smsbox ----------------------------------------------------------

KANNEL_ANSWERS = {1: "id:{id} sub:001 dlvrd:001 stat:DELIVRD err:000 text:", 8: "ACK/"}


@dataclass
class FakeSmsbox:
    """smsbox's sendsms as Kannel 1.4 answers it, and its dlr-url calls (types 8 then 1)."""

    received: list[dict[str, str]] = field(default_factory=list)
    dlr_answers: list[int] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    base_url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/sendsms", self.sendsms)
        return app

    async def sendsms(self, request: web.Request) -> web.Response:
        raw: dict[str, bytes] = {}
        for part in request.raw_path.partition("?")[2].split("&"):
            name, _, value = part.partition("=")
            raw[name] = unquote_to_bytes(value.replace("+", " "))
        q = {k: v.decode("latin-1") for k, v in raw.items()}
        if q.get("username") != "tester" or q.get("password") != "s3cret":
            return web.Response(status=403, text="Authorization failed for sendsms")
        if not q.get("to"):
            return web.Response(status=400, text="Missing receiver number")
        if q["to"] == "+15550000503":
            return web.Response(status=503, text="Sending failed.")
        coding = q.get("coding", "0")
        charset = q.get("charset") or ("UTF-16BE" if coding == "2" else "UTF-8")
        text = raw.get("text", b"").decode(charset)
        self.received.append(
            {"to": q["to"], "from": q.get("from", ""), "coding": coding, "text": text}
        )
        if "dlr-url" in raw:
            dlr_url = raw["dlr-url"].decode("utf-8")
            task = asyncio.create_task(self._reports(dlr_url, int(q.get("dlr-mask", "0")), q))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return web.Response(status=202, text="0: Accepted for delivery")

    async def _reports(self, dlr_url: str, mask: int, q: dict[str, str]) -> None:
        foreign = uuid.uuid4().hex[:10]
        for kind in (8, 1):
            if not mask & kind:
                continue
            values = {
                "%d": str(kind),
                "%A": KANNEL_ANSWERS[kind].format(id=foreign),
                "%T": "1764760000",
                "%p": q["to"],  # a report comes from the handset, as in Kannel
                "%P": q.get("from", ""),
                "%i": "fake",
                "%F": foreign,
            }
            url = dlr_url
            for escape, value in values.items():
                url = url.replace(escape, quote(value, safe=""))  # Kannel URL-encodes them
            async with aiohttp.ClientSession() as session, session.get(url) as r:
                self.dlr_answers.append(r.status)


@pytest.fixture
async def fake_kannel() -> AsyncIterator[FakeSmsbox]:
    fake = FakeSmsbox()
    runner, fake.base_url = await _serve(fake.app())
    yield fake
    for task in list(fake.tasks):
        task.cancel()
    await runner.cleanup()


def _kannel(fake: FakeSmsbox, password: str = "s3cret") -> KannelAccount:
    return KannelAccount(fake.base_url, "tester", password)


@pytest.mark.parametrize(
    ("text", "coding"),
    [("Hi Ana, 10:00 {room 5} costs €5", "0"), ("Olá — até já 😀", "2")],
    ids=["gsm7", "ucs2"],
)
async def test_kannel_send_and_delivery_reports(
    fake_kannel: FakeSmsbox,
    listener: Listener,
    http: aiohttp.ClientSession,
    text: str,
    coding: str,
) -> None:
    sender = KannelSender(
        http,
        _kannel(fake_kannel),
        dlr_base_url=f"{listener.base_url}/kannel/dlr?key=k1",
        dlr_mask=DlrType.DELIVERED | DlrType.UNDELIVERED | DlrType.DELIVERED_TO_SMSC,
    )
    reply = await sender.send(to="+447700900123", text=text, reference="msg 42/a", from_="Clinic")
    assert (reply.code, reply.queued) == (0, False)
    assert fake_kannel.received == [
        {"to": "+447700900123", "from": "Clinic", "coding": coding, "text": text}
    ]
    first = await asyncio.wait_for(listener.reports.get(), 5)
    second = await asyncio.wait_for(listener.reports.get(), 5)
    assert (first.reference, first.type, first.answer) == (
        "msg 42/a",
        DlrType.DELIVERED_TO_SMSC,
        "ACK/",
    )
    assert not first.type.final
    assert (second.reference, second.type) == ("msg 42/a", DlrType.DELIVERED)
    assert second.type.final and "stat:DELIVRD" in second.answer
    assert second.smsc_message_id and second.answer.startswith(f"id:{second.smsc_message_id}")
    await asyncio.gather(*fake_kannel.tasks)
    assert (second.to, second.from_, second.smsc, second.timestamp) == (
        "+447700900123",
        "Clinic",
        "fake",
        1764760000,
    )
    assert fake_kannel.dlr_answers == [200, 200]


async def test_kannel_refusals(fake_kannel: FakeSmsbox, http: aiohttp.ClientSession) -> None:
    with pytest.raises(SendRejectedError) as info:
        await KannelSender(http, _kannel(fake_kannel, "wrong")).send(
            to="+1", text="x", reference="r"
        )
    assert (info.value.http_status, info.value.retryable) == (403, False)
    assert "Authorization failed" in str(info.value)
    with pytest.raises(SendRejectedError) as info:
        await KannelSender(http, _kannel(fake_kannel)).send(
            to="+15550000503", text="x", reference="r"
        )
    assert (info.value.http_status, info.value.retryable) == (503, True)


async def test_kannel_dlr_needs_the_key(listener: Listener, http: aiohttp.ClientSession) -> None:
    url = f"{listener.base_url}/kannel/dlr?ref=r&type=1"
    async with http.get(url) as r:
        assert r.status == 403
    async with http.get(url + "&key=wrong") as r:
        assert r.status == 403
    async with http.get(f"{listener.base_url}/kannel/dlr?key=k1&ref=r&type=%25d") as r:
        assert r.status == 400
    assert listener.reports.empty()
    async with http.get(url + "&key=k1") as r:
        assert r.status == 200 and await r.text() == "OK"
    assert (await asyncio.wait_for(listener.reports.get(), 5)).type is DlrType.DELIVERED
