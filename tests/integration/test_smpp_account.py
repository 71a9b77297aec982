"""SmppAccount against the node SMSC: binds shared, faults survived, rates held."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator

import pytest

from carriers.sms.smpp.account import AccountConfig, EventHandler, SmppAccount
from carriers.sms.smpp.errors import (
    SmppStateError,
    SubmitNotAcknowledgedError,
    SubmitRejectedError,
)
from carriers.sms.smpp.events import (
    Bound,
    LinkClosed,
    ReceiptReceived,
    SessionEvent,
    Unbound,
)
from carriers.sms.smpp.pdu import ShortMessage, Status
from carriers.sms.smpp.receipt import MessageState
from carriers.sms.smpp.session import SessionConfig
from tests.integration.smsc import NodeSmsc, free_port, run_smsc

pytestmark = pytest.mark.smsc

FAST = {"reconnect_initial": 0.05, "reconnect_max": 0.2}


@pytest.fixture
def smsc() -> Iterator[NodeSmsc]:
    yield from run_smsc("--password", "secret")


def config(port: int, **overrides: object) -> AccountConfig:
    values: dict[str, object] = {
        "name": "acme",
        "host": "127.0.0.1",
        "port": port,
        "session": SessionConfig("outdial", "secret", window=10, response_timeout=5.0),
        "binds": 2,
        **FAST,
        **overrides,
    }
    return AccountConfig(**values)  # type: ignore[arg-type]


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, SessionEvent]] = []

    def __call__(self, label: str, event: SessionEvent) -> None:
        self.seen.append((label, event))

    def of(self, kind: type) -> list[tuple[str, SessionEvent]]:
        return [(label, e) for label, e in self.seen if isinstance(e, kind)]


@pytest.fixture
def events() -> Events:
    return Events()


def message(i: int, *, receipt: bool = False) -> ShortMessage:
    return ShortMessage(
        destination_addr=f"4477009{i:05d}",
        short_message=f"Reminder {i}".encode(),
        source_addr="Clinic",
        source_addr_ton=5,
        registered_delivery=1 if receipt else 0,
    )


async def until(predicate: Callable[[], bool]) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("condition not met within 5 s")


async def started(cfg: AccountConfig, events: EventHandler | None = None) -> SmppAccount:
    account = SmppAccount(cfg, on_event=events, rng=random.Random(5))
    await account.start()
    await account.wait_bound(5.0)
    await until(lambda: account.bound == cfg.binds)
    return account


async def test_two_binds_share_two_hundred_submits(smsc: NodeSmsc, events: Events) -> None:
    account = await started(config(smsc.port), events)
    assert {label for label, _ in events.of(Bound)} == {"acme#1", "acme#2"}
    ids = await asyncio.gather(*(account.submit(message(i)) for i in range(200)))
    assert len(set(ids)) == 200
    by_bind = account.stats.submits_by_bind
    assert set(by_bind) == {"acme#1", "acme#2"} and sum(by_bind.values()) == 200
    assert min(by_bind.values()) >= 50  # least outstanding spreads, not one bind
    counts = smsc.counts()
    assert sum(counts.values()) == 200 and set(counts.values()) == {1}
    assert set(counts) == {message(i).destination_addr for i in range(200)}
    assert account.stats.submits == 200 and account.stats.unacknowledged == 0
    await account.close()


async def test_a_drop_mid_window_fails_the_unacknowledged_and_the_account_rebinds(
    smsc: NodeSmsc, events: Events
) -> None:
    cfg = config(smsc.port, session=SessionConfig("outdial", "secret", window=5))
    account = await started(cfg, events)
    smsc.hold()
    tasks = [asyncio.create_task(account.submit(message(i))) for i in range(15)]
    # Both windows fill with 10 held submits; the other 5 wait for room.
    await until(lambda: sum(smsc.counts().values()) == 10)
    smsc.release()
    smsc.drop()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    unacked = [r for r in results if isinstance(r, SubmitNotAcknowledgedError)]
    sent = [r for r in results if isinstance(r, str)]
    assert len(unacked) == 10 and len(sent) == 5, results
    assert account.stats.links_lost == 2 and account.stats.reconnects >= 1
    assert len(events.of(LinkClosed)) == 2
    # The 5 that never went out were sent on the new binds, not failed.
    counts = smsc.counts()
    assert sum(counts.values()) == 15 and set(counts.values()) == {1}
    await until(lambda: account.bound == 2)
    assert account.stats.reconnects == 2
    assert len(set(await asyncio.gather(*(account.submit(message(i)) for i in range(20))))) == 20
    await account.close()


async def test_an_smsc_unbind_is_followed_by_a_rebind(smsc: NodeSmsc, events: Events) -> None:
    account = await started(config(smsc.port), events)
    assert smsc.close_sessions() == 2
    await until(lambda: len(events.of(Unbound)) == 2)
    assert all(e == Unbound(by_peer=True) for _, e in events.of(Unbound))
    await until(lambda: account.bound == 2 and account.stats.reconnects == 2)
    assert await account.submit(message(1))
    await account.close()


async def test_an_smsc_down_at_start_is_waited_for(events: Events) -> None:
    port = free_port()
    account = SmppAccount(config(port), on_event=events, rng=random.Random(1))
    await account.start()  # returns at once, no SMSC yet
    await asyncio.sleep(0.3)
    assert account.bound == 0 and account.stats.bind_failures >= 4
    assert account.last_error is not None and f"127.0.0.1:{port}" in account.last_error
    with pytest.raises(TimeoutError, match=r"no bind up within 0\.1s"):
        await account.wait_bound(0.1)

    smsc = await asyncio.to_thread(NodeSmsc(["--password", "secret"], port=port).start)
    try:
        await account.wait_bound(5.0)
        assert await account.submit(message(1))
        await until(lambda: account.bound == 2)
        assert account.last_error is None
        await account.close()
    finally:
        smsc.stop()


async def test_a_wrong_password_keeps_retrying_and_says_why(smsc: NodeSmsc) -> None:
    cfg = config(smsc.port, session=SessionConfig("outdial", "wrong"), binds=1)
    account = SmppAccount(cfg, rng=random.Random(2))
    await account.start()
    await until(lambda: account.stats.bind_failures >= 3)
    assert account.bound == 0
    assert account.last_error is not None and "ESME_RINVPASWD" in account.last_error
    with pytest.raises(TimeoutError, match="ESME_RINVPASWD"):
        await account.wait_bound(0.05)
    await account.close()


async def test_throttling_is_retryable_and_rests_the_bind(smsc: NodeSmsc) -> None:
    cfg = config(smsc.port, binds=1, throttle_pause=0.1, throttle_pause_max=0.4)
    account = await started(cfg)
    smsc.throttle(5)
    loop = asyncio.get_running_loop()
    took: list[float] = []  # how long each attempt was held back, then answered
    rejected: list[SubmitRejectedError] = []
    message_id = ""
    while not message_id:
        start = loop.time()
        try:
            message_id = await account.submit(message(7))
        except SubmitRejectedError as exc:
            rejected.append(exc)
        took.append(loop.time() - start)
    assert len(rejected) == 5 and len(took) == 6 and account.stats.throttled == 5
    assert all(e.retryable and e.status == Status.ESME_RTHROTTLED for e in rejected)
    # The first went at once; each retry waited out the bind's rest, whose ceiling
    # doubles 0.1, 0.2, 0.4, 0.4, 0.4 s, each jittered into its upper half.
    assert took[0] < 0.05, took
    assert all(t >= 0.045 for t in took[1:]), took
    assert sum(took[1:]) >= 0.7, took
    assert smsc.counts() == {message(7).destination_addr: 6}
    await account.close()


async def test_one_throttled_burst_rests_the_bind_once(smsc: NodeSmsc) -> None:
    cfg = config(smsc.port, binds=1, throttle_pause=0.2, throttle_pause_max=5.0)
    account = await started(cfg)
    smsc.throttle(10)
    results = await asyncio.gather(
        *(account.submit(message(i)) for i in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, SubmitRejectedError) and r.retryable for r in results)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await account.submit(message(99))
    # Ten throttle answers to one window are one rest (<= 0.2 s), not ten doublings.
    assert 0.05 <= loop.time() - start < 1.0
    await account.close()


@pytest.mark.parametrize(
    "limits", [{"rate": 50.0}, {"bind_rate": 25.0}], ids=["account-50/s", "bind-25/s"]
)
async def test_rate_limits_pace_a_hundred_submits(smsc: NodeSmsc, limits: dict[str, float]) -> None:
    account = await started(config(smsc.port, **limits))
    loop = asyncio.get_running_loop()
    start = loop.time()
    ids = await asyncio.gather(*(account.submit(message(i)) for i in range(100)))
    elapsed = loop.time() - start
    assert len(set(ids)) == 100
    assert elapsed >= 1.6, elapsed  # 50/s with a burst of a few: about 1.9 s
    await account.close()


async def test_a_receipt_for_an_unknown_id_reaches_on_event(smsc: NodeSmsc, events: Events) -> None:
    account = await started(config(smsc.port), events)
    assert smsc.receipt("no-such-id-7", "UNDELIV") == 2
    await until(lambda: len(events.of(ReceiptReceived)) == 2)
    labels = set()
    for label, event in events.of(ReceiptReceived):
        assert isinstance(event, ReceiptReceived)
        assert event.receipt.message_id == "no-such-id-7"
        assert event.receipt.state is MessageState.UNDELIVERABLE
        labels.add(label)
    assert labels == {"acme#1", "acme#2"}
    assert account.bound == 2 and await account.submit(message(3, receipt=True))
    await account.close()


async def test_a_failing_event_handler_does_not_break_the_bind(smsc: NodeSmsc) -> None:
    def handler(label: str, event: SessionEvent) -> None:
        raise RuntimeError("engine bug")

    account = await started(config(smsc.port, binds=1), handler)
    assert smsc.receipt("x1", "DELIVRD") == 1
    assert await account.submit(message(1, receipt=True))
    assert account.bound == 1 and account.stats.links_lost == 0
    await account.close()


async def test_close_unbinds_every_bind_and_stops_reconnecting(
    smsc: NodeSmsc, events: Events
) -> None:
    account = await started(config(smsc.port), events)
    smsc.hold()
    waiting = [asyncio.create_task(account.submit(message(i))) for i in range(25)]
    await until(lambda: sum(smsc.counts().values()) == 20)  # 2 windows of 10 held
    await account.close()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    # Sent and held: the unbind ends them unanswered; never sent: the account is closed.
    assert sum(isinstance(r, SubmitNotAcknowledgedError) for r in results) == 20
    assert sum(isinstance(r, SmppStateError) for r in results) == 5
    assert [e for _, e in events.of(Unbound)] == [Unbound(by_peer=False)] * 2
    assert account.bound == 0
    made = account.stats.binds_made
    await asyncio.sleep(0.3)  # several reconnect delays: none is tried
    assert account.stats.binds_made == made and account.bound == 0
    assert smsc.command("mo 447700900123 Clinic hello") == "sent mo 0"  # no session left
    with pytest.raises(SmppStateError):
        await account.submit(message(1))


async def test_a_cancelled_submit_does_not_leak_its_place(smsc: NodeSmsc) -> None:
    cfg = config(smsc.port, binds=1, session=SessionConfig("outdial", "secret", window=1))
    account = await started(cfg)
    tasks = [asyncio.create_task(account.submit(message(i))) for i in range(4)]
    await asyncio.sleep(0)  # the first is in flight, the other three wait for a bind
    tasks[1].cancel()
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], str) and isinstance(results[3], str)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[1:3])
    assert len(set(await asyncio.gather(*(account.submit(message(i)) for i in range(20))))) == 20
    assert smsc.stats() == (22, 22)
    await account.close()
