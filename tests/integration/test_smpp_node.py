"""The SMPP client against a real SMSC on loopback: the npm `smpp` package's server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from carriers.sms.smpp.client import SmppClient
from carriers.sms.smpp.errors import (
    SmppBindError,
    SmppStateError,
    SubmitNotAcknowledgedError,
    SubmitRejectedError,
)
from carriers.sms.smpp.events import MessageReceived, ReceiptReceived, SessionEvent, Unbound
from carriers.sms.smpp.pdu import ShortMessage, Status, Tag, find_tlv
from carriers.sms.smpp.receipt import MessageState
from carriers.sms.smpp.session import BindMode, SessionConfig
from tests.integration.smsc import NodeSmsc, free_port, run_smsc

pytestmark = pytest.mark.smsc


@pytest.fixture
def smsc() -> Iterator[NodeSmsc]:
    yield from run_smsc("--password", "secret")


@pytest.fixture
def holding_smsc() -> Iterator[NodeSmsc]:
    yield from run_smsc("--answer", "5")


def message(i: int) -> ShortMessage:
    return ShortMessage(
        destination_addr=f"4477009{i:05d}",
        short_message=f"Reminder {i}: your appointment is tomorrow".encode(),
        source_addr="Clinic",
        source_addr_ton=5,
        registered_delivery=1,
    )


async def next_of(queue: asyncio.Queue[SessionEvent], kind: type) -> object:
    async with asyncio.timeout(5.0):
        while True:
            event = await queue.get()
            if isinstance(event, kind):
                return event


async def until(predicate: Callable[[], bool]) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("condition not met within 5 s")


async def test_hundred_submits_in_a_window_of_ten_with_receipts_and_mo(smsc: NodeSmsc) -> None:
    config = SessionConfig("outdial", "secret", window=10, response_timeout=5.0)
    client = await SmppClient.connect("127.0.0.1", smsc.port, config)
    assert client.session.smsc_system_id == "nodesmsc"

    peak = 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, client.session.outstanding)
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    ids = await asyncio.gather(*(client.submit(message(i)) for i in range(100)))
    sampler.cancel()
    assert len(set(ids)) == 100 and all(ids)
    assert peak == 10  # pipelined, never past the window

    receipts: dict[str, ReceiptReceived] = {}
    async with asyncio.timeout(10):
        while len(receipts) < 100:
            event = await client.events.get()
            if isinstance(event, ReceiptReceived):
                receipts[event.receipt.message_id] = event
    assert set(receipts) == set(ids)
    assert all(r.receipt.state is MessageState.DELIVERED for r in receipts.values())
    # Both receipt forms were exercised: TLVs on even ids, the text alone on odd ones.
    with_tlv = [r for r in receipts.values() if find_tlv(r.message.tlvs, Tag.RECEIPTED_MESSAGE_ID)]
    assert 0 < len(with_tlv) < 100
    by_id = dict(zip(ids, range(100), strict=True))
    for message_id, r in receipts.items():
        assert r.message.source_addr == f"4477009{by_id[message_id]:05d}"

    assert smsc.command("mo 447700900123 Clinic STOP please") == "sent mo 1"
    mo = await next_of(client.events, MessageReceived)
    assert isinstance(mo, MessageReceived)
    assert mo.message.short_message == b"STOP please"
    assert (mo.message.source_addr, mo.message.destination_addr) == ("447700900123", "Clinic")

    await client.unbind()
    assert client.closed
    assert await next_of(client.events, Unbound) == Unbound(by_peer=False)
    with pytest.raises(SmppStateError):
        await client.submit(message(0))


async def test_transmitter_and_receiver_pair(smsc: NodeSmsc) -> None:
    tx = await SmppClient.connect(
        "127.0.0.1", smsc.port, SessionConfig("outdial", "secret", mode=BindMode.TRANSMITTER)
    )
    rx = await SmppClient.connect(
        "127.0.0.1", smsc.port, SessionConfig("outdial", "secret", mode=BindMode.RECEIVER)
    )
    assert await tx.submit(message(1))
    assert smsc.command("mo 447700900999 Clinic HELP") == "sent mo 2"
    mo = await next_of(rx.events, MessageReceived)
    assert isinstance(mo, MessageReceived) and mo.message.short_message == b"HELP"
    await tx.unbind()
    await rx.unbind()


async def test_wrong_password_is_a_bind_error(smsc: NodeSmsc) -> None:
    with pytest.raises(SmppBindError) as info:
        await SmppClient.connect("127.0.0.1", smsc.port, SessionConfig("outdial", "wrong"))
    assert info.value.status == Status.ESME_RINVPASWD


async def test_smsc_closing_mid_window_fails_every_unacknowledged_submit(
    holding_smsc: NodeSmsc,
) -> None:
    config = SessionConfig("outdial", window=10, response_timeout=30.0)
    client = await SmppClient.connect("127.0.0.1", holding_smsc.port, config)
    accepted: list[str] = []

    async def send(i: int) -> str:
        message_id = await client.submit(message(i))
        accepted.append(message_id)
        return message_id

    tasks = [asyncio.create_task(send(i)) for i in range(20)]
    # The SMSC answers 5 and holds the rest: the window fills with 10 unanswered.
    await until(lambda: len(accepted) == 5 and client.session.outstanding == 10)
    assert holding_smsc.command("drop") == "dropped"
    results = await asyncio.gather(*tasks, return_exceptions=True)

    sent = [r for r in results if isinstance(r, str)]
    unacked = [r for r in results if isinstance(r, SubmitNotAcknowledgedError)]
    never_sent = [r for r in results if isinstance(r, SmppStateError)]
    assert sorted(sent) == sorted(accepted) and len(sent) == 5
    assert len(unacked) == 10 and all("closed by the SMSC" in str(e) for e in unacked)
    assert len(never_sent) == 5
    assert holding_smsc.command("stats") == "stats 15 5"
    assert client.closed


async def test_unanswered_submit_times_out_and_frees_the_window(holding_smsc: NodeSmsc) -> None:
    config = SessionConfig("outdial", window=2, response_timeout=0.3)
    client = await SmppClient.connect("127.0.0.1", holding_smsc.port, config)
    for i in range(5):
        assert await client.submit(message(i))
    held = [asyncio.create_task(client.submit(message(i))) for i in range(5, 8)]
    results = await asyncio.gather(*held, return_exceptions=True)
    # Two went out at once and timed out; the third got the freed slot and timed out too.
    assert all(isinstance(r, SubmitNotAcknowledgedError) for r in results)
    assert all("no submit_sm_resp within 0.3s" in str(r) for r in results)
    assert client.session.outstanding == 0 and client.session.window_free == 2
    assert holding_smsc.command("stats") == "stats 8 5"
    await client.unbind()


async def test_a_cancelled_waiter_does_not_leak_its_window_slot(smsc: NodeSmsc) -> None:
    config = SessionConfig("outdial", "secret", window=1)
    client = await SmppClient.connect("127.0.0.1", smsc.port, config)
    tasks = [asyncio.create_task(client.submit(message(i))) for i in range(4)]
    await asyncio.sleep(0)  # the first is in flight, the other three queue
    tasks[1].cancel()
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], str) and isinstance(results[3], str)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[1:3])
    assert len(set(await asyncio.gather(*(client.submit(message(i)) for i in range(20))))) == 20
    await client.unbind()


async def test_the_test_smsc_throttles_holds_counts_logs_and_closes(tmp_path: Path) -> None:
    log = tmp_path / "submits.jsonl"
    smsc = NodeSmsc(port=free_port(), log=log).start()
    try:
        client = await SmppClient.connect("127.0.0.1", smsc.port, SessionConfig("outdial"))
        first = await client.submit(message(0))
        smsc.throttle(2)
        for _ in range(2):
            with pytest.raises(SubmitRejectedError) as info:
                await client.submit(message(1))
            assert info.value.status == Status.ESME_RTHROTTLED and info.value.retryable
        second = await client.submit(message(1))
        smsc.hold()
        held = asyncio.create_task(client.submit(message(2)))
        await until(lambda: smsc.counts().get(message(2).destination_addr) == 1)
        smsc.release()
        third = await client.submit(message(3))
        assert smsc.receipt("not-ours-42", "UNDELIV") == 1
        receipt = await next_of(client.events, ReceiptReceived)
        while isinstance(receipt, ReceiptReceived) and receipt.receipt.message_id != "not-ours-42":
            receipt = await next_of(client.events, ReceiptReceived)  # ours came first
        assert isinstance(receipt, ReceiptReceived)
        assert receipt.receipt.state is MessageState.UNDELIVERABLE
        assert smsc.counts() == {
            message(0).destination_addr: 1,
            message(1).destination_addr: 3,
            message(2).destination_addr: 1,
            message(3).destination_addr: 1,
        }
        assert smsc.stats() == (6, 3)
        assert smsc.close_sessions() == 1
        assert await next_of(client.events, Unbound) == Unbound(by_peer=True)
        with pytest.raises(SubmitNotAcknowledgedError):
            await held
        ids = [r["id"] for r in smsc.logged()]
        assert ids == [first, None, None, second, None, third]
        assert smsc.logged()[0]["text"] == message(0).short_message.decode()
    finally:
        smsc.stop()
