"""The Kannel adapter against a real Kannel on loopback: Debian's bearerbox and smsbox,
with Kannel's own fakesmsc as the SMSC. bearerbox reports type 8 (delivered to the
SMSC) when fakesmsc takes a message; the handset's receipt (type 1) needs a real
SMSC, which fakesmsc is not, so that path is tested against the fake smsbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import unquote_to_bytes

import aiohttp
import pytest
from aiohttp import web

from carriers.sms.http.client import KannelSender, kannel_dlr_handler
from carriers.sms.http.errors import SendRejectedError
from carriers.sms.http.kannel import DeliveryReport, DlrType, KannelAccount
from tests.integration.kannel import PASSWORD, USERNAME, Kannel, run_kannel

pytestmark = pytest.mark.kannel


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[Kannel]:
    yield from run_kannel(tmp_path)


@pytest.fixture
async def reports() -> AsyncIterator[tuple[str, asyncio.Queue[DeliveryReport]]]:
    queue: asyncio.Queue[DeliveryReport] = asyncio.Queue()
    app = web.Application()
    app.router.add_get("/kannel/dlr", kannel_dlr_handler(queue.put_nowait, secret="k1"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/kannel/dlr?key=k1", queue
    await runner.cleanup()


async def _received(kannel: Kannel, needle: str, seconds: float = 10.0) -> str:
    for _ in range(int(seconds / 0.1)):
        out = kannel.received()
        if needle in out:
            return out
        await asyncio.sleep(0.1)
    raise AssertionError(f"fakesmsc never got {needle!r}; it printed:\n{kannel.received()}")


def _got(out: str) -> tuple[str, str, str, str]:
    """fakesmsc's line for the message it got: (from, to, type, decoded text)."""
    line = next(x for x in out.splitlines() if "Got message" in x)
    sender, receiver, kind, data = line.split(": <", 1)[1].rstrip(">").split(" ", 3)
    if kind == "ucs-2":  # printed URL-encoded, '+' for a space
        data = unquote_to_bytes(data.replace("+", " ")).decode("utf-16-be")
    return sender, receiver, kind, data


@pytest.mark.parametrize(
    ("text", "kind"),
    [("Hi Ana, see you at 10:00 {5} €", "text"), ("Olá — até já 😀", "ucs-2")],
    ids=["gsm7", "ucs2"],
)
async def test_real_kannel_sends_and_reports(
    kannel: Kannel, reports: tuple[str, asyncio.Queue[DeliveryReport]], text: str, kind: str
) -> None:
    dlr_base, queue = reports
    async with aiohttp.ClientSession() as http:
        sender = KannelSender(
            http,
            KannelAccount(kannel.base_url, USERNAME, PASSWORD),
            dlr_base_url=dlr_base,
            dlr_mask=DlrType.DELIVERED_TO_SMSC | DlrType.NOT_DELIVERED_TO_SMSC,
        )
        reply = await sender.send(to="447700900123", text=text, reference="msg-42", from_="4477")
    assert reply.code in (0, 3)
    report = await asyncio.wait_for(queue.get(), 15)
    assert (report.reference, report.type) == ("msg-42", DlrType.DELIVERED_TO_SMSC)
    assert report.to == "447700900123" and report.smsc == "fake"
    # What the SMSC got, decoded, is what we sent (Kannel converted the charset).
    assert _got(await _received(kannel, "Got message")) == ("4477", "447700900123", kind, text)


async def test_real_kannel_refuses_a_wrong_password(kannel: Kannel) -> None:
    async with aiohttp.ClientSession() as http:
        sender = KannelSender(http, KannelAccount(kannel.base_url, USERNAME, "wrong"))
        with pytest.raises(SendRejectedError) as info:
            await sender.send(to="447700900123", text="x", reference="r")
    assert info.value.http_status == 403 and not info.value.retryable
    assert "Authorization failed" in str(info.value)
