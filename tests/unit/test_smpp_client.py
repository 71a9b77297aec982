"""The asyncio client's window queue, without a socket: the session is fed by hand."""

from __future__ import annotations

import asyncio

import pytest

from carriers.sms.smpp.client import SmppClient
from carriers.sms.smpp.errors import SmppStateError, SubmitNotAcknowledgedError
from carriers.sms.smpp.pdu import BindResp, CommandId, MessageIdResp, Pdu, ShortMessage, encode
from carriers.sms.smpp.session import SessionConfig

MSG = ShortMessage("447700900123", b"hello")


def bound_client(window: int) -> SmppClient:
    client = SmppClient(SessionConfig("outdial", window=window))
    client.session.bind(asyncio.get_running_loop().time())
    feed(client, Pdu(CommandId.BIND_TRANSCEIVER_RESP, 1, 0, BindResp("SMSC")))
    client.session.data_to_send()
    return client


def feed(client: SmppClient, pdu: Pdu) -> None:
    client.session.receive(encode(pdu), asyncio.get_running_loop().time())
    client._pump()


def answer(client: SmppClient, sequence: int, message_id: str) -> None:
    feed(client, Pdu(CommandId.SUBMIT_SM_RESP, sequence, 0, MessageIdResp(message_id)))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_are_served_in_order() -> None:
    client = bound_client(window=1)
    tasks = [asyncio.create_task(client.submit(MSG)) for _ in range(3)]
    for sequence, message_id in ((2, "a"), (3, "b"), (4, "c")):
        await settle()
        assert client.session.outstanding == 1
        answer(client, sequence, message_id)
    assert await asyncio.gather(*tasks) == ["a", "b", "c"]
    await client.close()


async def test_a_woken_waiter_cancelled_before_it_runs_passes_its_slot_on() -> None:
    client = bound_client(window=1)
    first, second, third = (asyncio.create_task(client.submit(MSG)) for _ in range(3))
    await settle()
    answer(client, 2, "a")  # frees the slot: wakes `second`
    second.cancel()
    await settle()
    assert await first == "a"
    assert second.cancelled()
    assert client.session.outstanding == 1  # `third` got the slot
    answer(client, 3, "c")
    assert await third == "c"
    await client.close()


async def test_closing_fails_the_in_flight_and_the_queued() -> None:
    client = bound_client(window=1)
    tasks = [asyncio.create_task(client.submit(MSG)) for _ in range(3)]
    await settle()
    client.session.connection_lost("connection closed by the SMSC")
    client._pump()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], SubmitNotAcknowledgedError)
    assert all(isinstance(r, SmppStateError) for r in results[1:])
    with pytest.raises(SmppStateError, match="closed by the SMSC"):
        await client.submit(MSG)
    await client.close()


async def test_before_send_runs_once_the_window_has_room_and_holds_the_slot() -> None:
    """The sender's "about to send" write: never for a message still waiting for
    the window; while it is awaited no other submit takes its slot; one that
    fails passes the slot on and writes nothing."""
    client = bound_client(window=1)
    calls: list[str] = []
    gate = asyncio.Event()

    def hook(name: str, *, wait: bool = False, fail: bool = False):  # type: ignore[no-untyped-def]
        async def before_send() -> None:
            calls.append(name)
            if wait:
                await gate.wait()
            if fail:
                raise RuntimeError("the store is down")

        return before_send

    first = asyncio.create_task(client.submit(MSG, hook("first")))
    second = asyncio.create_task(client.submit(MSG, hook("second", wait=True)))
    third = asyncio.create_task(client.submit(MSG, hook("third", fail=True)))
    fourth = asyncio.create_task(client.submit(MSG, hook("fourth")))
    await settle()
    assert calls == ["first"] and client.session.outstanding == 1
    answer(client, 2, "a")
    await settle()
    assert calls == ["first", "second"]  # the slot is second's while its write runs
    assert client.session.outstanding == 0 and not third.done()
    gate.set()
    await settle()
    assert client.session.outstanding == 1
    answer(client, 3, "b")
    await settle()
    with pytest.raises(RuntimeError, match="store is down"):
        await third
    assert calls == ["first", "second", "third", "fourth"] and client.session.outstanding == 1
    answer(client, 4, "d")  # third wrote nothing: fourth's PDU is the next sequence
    assert list(await asyncio.gather(first, second, fourth)) == ["a", "b", "d"]
    await client.close()
