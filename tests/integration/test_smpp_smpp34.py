"""The SMPP client against a second, independent SMSC: the PyPI `smpp34` server (Rust core).

Also cross-checks our codec with smpp34's: each side decodes what the other encodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from carriers.sms.smpp.client import SmppClient
from carriers.sms.smpp.errors import SubmitRejectedError
from carriers.sms.smpp.events import LinkClosed, MessageReceived, ReceiptReceived
from carriers.sms.smpp.pdu import (
    CommandId,
    Pdu,
    ShortMessage,
    Status,
    Tag,
    Tlv,
    decode,
    encode,
    tlv_int,
)
from carriers.sms.smpp.receipt import MessageState
from carriers.sms.smpp.session import SessionConfig, SessionState

try:
    import smpp34
except ImportError:
    smpp34 = None

pytestmark = pytest.mark.smsc


@pytest.fixture(autouse=True)
def _needs_smpp34() -> None:
    # A missing peer fails with its install command (DESIGN.md, Tests), it does not skip.
    if smpp34 is None:
        pytest.fail(
            "smpp34 is not installed: .venv/bin/pip install -e '.[dev]'   (or `make test`)",
            pytrace=False,
        )


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Smpp34Smsc:
    """An smpp34 server answering submits (every ``throttle_every``-th with
    ESME_RTHROTTLED) and sending a TLV-form receipt for each accepted one."""

    port: int
    throttle_every: int = 0
    submits: int = 0
    sessions: dict[str, Any] = field(default_factory=dict)
    tasks: set[asyncio.Future[Any]] = field(default_factory=set)

    async def serve(self, server: Any) -> None:
        while True:
            event = await server.next()
            if isinstance(event, smpp34.Esme):
                self.sessions[event.session_id] = event
            elif isinstance(event, smpp34.SubmitSmEvent):
                self.on_submit(event)

    def on_submit(self, event: Any) -> None:
        self.submits += 1
        if self.throttle_every and self.submits % self.throttle_every == 0:
            event.reject(smpp34.ESME_RTHROTTLED)
            return
        message_id = f"r{self.submits:06d}"
        event.accept(message_id=message_id)
        if event.registered_delivery & 1:
            esme = self.sessions[event.session_id]
            self.spawn(
                esme.deliver_sm(
                    event.source_addr,
                    b"id:" + message_id.encode() + b" stat:DELIVRD err:000",
                    source_addr=event.destination_addr,
                    esm_class=0x04,
                    tlvs=[
                        smpp34.Tlv(Tag.RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),
                        smpp34.Tlv(Tag.MESSAGE_STATE, bytes([MessageState.DELIVERED])),
                    ],
                )
            )

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def mo(self, source: str, text: bytes) -> None:
        for esme in self.sessions.values():
            await esme.deliver_sm("Clinic", text, source_addr=source)


@pytest.fixture
async def smsc() -> AsyncIterator[Smpp34Smsc]:
    port = free_tcp_port()
    server = smpp34.Server(host="127.0.0.1", port=port, system_id="rustsmsc")
    await server.start()
    state = Smpp34Smsc(port, throttle_every=7)
    serving = asyncio.create_task(state.serve(server))
    try:
        yield state
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        for task in list(state.tasks):
            task.cancel()
        await server.stop()


def message(i: int) -> ShortMessage:
    return ShortMessage(
        f"4477009{i:05d}",
        f"Payment reminder {i}".encode(),
        source_addr="Clinic",
        registered_delivery=1,
    )


async def test_fifty_submits_with_throttling_retried_and_receipts(smsc: Smpp34Smsc) -> None:
    config = SessionConfig("outdial", "secret", window=10, enquire_link_interval=0.2)
    client = await SmppClient.connect("127.0.0.1", smsc.port, config)
    rejections: list[tuple[bool, int]] = []

    async def send(i: int) -> str:
        for attempt in range(5):
            try:
                return await client.submit(message(i))
            except SubmitRejectedError as exc:
                rejections.append((exc.retryable, exc.status))
                await asyncio.sleep(0.01 * (attempt + 1))  # back off, then the same message
        raise AssertionError("still throttled")

    ids = await asyncio.gather(*(send(i) for i in range(50)))
    assert len(set(ids)) == 50
    assert len(rejections) >= 7
    assert set(rejections) == {(True, Status.ESME_RTHROTTLED)}

    receipts: dict[str, ReceiptReceived] = {}
    async with asyncio.timeout(10):
        while len(receipts) < 50:
            event = await client.events.get()
            if isinstance(event, ReceiptReceived):
                receipts[event.receipt.message_id] = event
    assert set(receipts) == set(ids)
    assert all(r.receipt.state is MessageState.DELIVERED for r in receipts.values())

    await smsc.mo("447700900123", b"YES")
    async with asyncio.timeout(5):
        while not isinstance(event := await client.events.get(), MessageReceived):
            pass
    assert event.message.short_message == b"YES"

    # Idle with a 0.2 s enquire_link interval: the link is probed and stays up.
    before = client.session._next_sequence
    await asyncio.sleep(0.7)
    assert client.session._next_sequence - before >= 2  # enquire_links went out
    assert client.session.state is SessionState.BOUND
    assert not any(isinstance(e, LinkClosed) for e in drain(client.events))
    await client.unbind()
    assert client.closed


def drain(queue: asyncio.Queue[object]) -> list[object]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def test_smpp34_decodes_our_submit_sm() -> None:
    ours = ShortMessage(
        "447700900123",
        b"\x05\x00\x03\x2a\x02\x01hello",
        source_addr="Clinic",
        source_addr_ton=5,
        esm_class=0x40,
        registered_delivery=1,
        data_coding=8,
        tlvs=(Tlv.integer(Tag.SAR_MSG_REF_NUM, 42), Tlv(0x1401, b"vendor")),
    )
    theirs = smpp34.decode(encode(Pdu(CommandId.SUBMIT_SM, 77, 0, ours)))
    assert isinstance(theirs, smpp34.SubmitSm)
    assert theirs.sequence_number == 77
    assert (theirs.source_addr, theirs.destination_addr) == ("Clinic", "447700900123")
    assert (theirs.source_addr_ton, theirs.esm_class, theirs.data_coding) == (5, 0x40, 8)
    assert theirs.short_message == ours.short_message
    assert [(t.tag, t.value) for t in theirs.tlvs] == [(0x020C, b"\x00\x2a"), (0x1401, b"vendor")]


def test_we_decode_smpp34s_deliver_sm() -> None:
    theirs = smpp34.DeliverSm(
        source_addr="447700900123",
        destination_addr="Clinic",
        esm_class=0x04,
        short_message=b"id:abc stat:UNDELIV err:001",
        tlvs=[smpp34.Tlv(Tag.MESSAGE_STATE, b"\x05")],
    )
    pdu = decode(theirs.encode())
    assert pdu.command_id == CommandId.DELIVER_SM
    assert isinstance(pdu.body, ShortMessage)
    assert pdu.body.source_addr == "447700900123"
    assert pdu.body.short_message == b"id:abc stat:UNDELIV err:001"
    assert tlv_int(pdu.body.tlvs, Tag.MESSAGE_STATE) == 5
