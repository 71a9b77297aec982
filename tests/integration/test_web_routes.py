"""The daemon's HTTP listener (engine/web.py) in process, on loopback, with a
recording stand-in for the SMS service: what each webhook hands the service."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from carriers.sms.http.twilio import compute_signature
from engine.config import ConfigError
from engine.sms.config import HttpConfig, SmsAccountConfig
from engine.web import WebServer

KEY = "k&1 2+3/4=5%6"
TOKEN = "tok"


class RecordingSms:
    def __init__(self) -> None:
        self.cfg = SimpleNamespace(
            accounts={
                "k1": SmsAccountConfig("k1", "kannel", url="http://x", dlr_key=KEY),
                "tw1": SmsAccountConfig("tw1", "twilio", account_sid="AC1", auth_token=TOKEN),
            }
        )
        self.receipts: list[tuple[Any, ...]] = []
        self.inbound: list[tuple[str, ...]] = []

    async def on_receipt(self, *args: Any, patience: float = 0.0) -> None:
        assert patience > 0  # a webhook may overtake the answer to its send
        self.receipts.append(args)

    async def on_inbound(self, *args: str) -> None:
        self.inbound.append(args)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def server() -> AsyncIterator[tuple[WebServer, RecordingSms, str]]:
    sms = RecordingSms()
    port = _port()
    base = f"http://127.0.0.1:{port}"
    app = SimpleNamespace(sms=sms, email=None, config=SimpleNamespace(path=Path("outdial.yaml")))
    web = WebServer(app, HttpConfig("127.0.0.1", port, base))  # type: ignore[arg-type]
    await web.start()
    yield web, sms, base
    await web.stop()


async def test_kannel_reports_carry_the_smsc_answer_as_error(
    server: tuple[WebServer, RecordingSms, str],
) -> None:
    _, sms, base = server
    key = quote(KEY, safe="")
    async with aiohttp.ClientSession() as http:
        for kind, answer in (("8", "ACK/"), ("16", "NACK/0x0000000b/Invalid Destination")):
            url = f"{base}/sms/kannel/k1/dlr?key={key}&ref=5&type={kind}&answer={quote(answer)}"
            async with http.get(url) as r:
                assert r.status == 200
        async with http.get(f"{base}/sms/kannel/k1/dlr?key=k&ref=5&type=1") as r:
            assert r.status == 403  # the key cut at its '&'
    assert sms.receipts == [
        ("k1", "5", "submitted", {"type": 8, "answer": "ACK/"}, None),
        ("k1", "5", "undelivered", {"type": 16, "answer": "NACK/0x0000000b/Invalid Destination"},
         "NACK/0x0000000b/Invalid Destination"),
    ]  # fmt: skip


async def test_twilio_status_maps_and_keeps_the_error_code(
    server: tuple[WebServer, RecordingSms, str],
) -> None:
    _, sms, base = server
    url = f"{base}/sms/twilio/tw1/status"
    params = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    headers = {"X-Twilio-Signature": compute_signature(TOKEN, url, params)}
    async with aiohttp.ClientSession() as http, http.post(url, data=params, headers=headers) as r:
        assert r.status == 200 and "<Response>" in await r.text()
    assert sms.receipts == [("tw1", "SM1", "undelivered", {"status": "undelivered"}, "error 30003")]


async def test_a_taken_port_is_a_located_config_error(
    server: tuple[WebServer, RecordingSms, str],
) -> None:
    web, sms, _ = server
    app = SimpleNamespace(sms=sms, email=None, config=SimpleNamespace(path=Path("outdial.yaml")))
    other = WebServer(app, HttpConfig("127.0.0.1", web.port, "http://x"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"outdial.yaml: http.listen: cannot listen on 127"):
        await other.start()
