"""The SMTP pool against Postfix's smtp-sink: 300 messages over 4 connections,
several per connection, each dumped by the sink exactly once and complete."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from carriers.email.smtp import (
    RelayConfig,
    SmtpNotAcknowledgedError,
    SmtpPermanentError,
    SmtpPool,
    SmtpTemporaryError,
)
from tests.integration.smtp_relays import SmtpSink, make_message, message_ids

pytestmark = pytest.mark.smtp


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    relay = SmtpSink(tmp_path).start()
    yield relay
    relay.stop()


def _payload(dump: bytes) -> bytes:
    """What the client sent, from a dump: after smtp-sink's own headers (ending
    with its three-line Received:), before the empty line it appends."""
    _head, sep, rest = dump.partition(b"\nReceived: ")
    assert sep, dump[:200]
    rest = rest.split(b"\n", 3)[3]  # the rest of the Received: header
    assert rest.endswith(b"\n\n")
    return rest[:-1]


def _return_path(n: int) -> str:
    return "" if n == 0 else f"bounce+{n}@outdial.test"  # one null sender (<>)


async def test_300_messages_over_4_connections_arrive_once_and_complete(sink: SmtpSink) -> None:
    config = RelayConfig(
        name="sink",
        host="127.0.0.1",
        port=sink.port,
        tls="none",
        connections=4,
        messages_per_connection=50,
        helo="client.outdial.test",
    )
    pool = SmtpPool(config)
    await pool.start()
    messages = [make_message(n, f"user{n}@dest{n % 7}.test") for n in range(300)]
    results = await asyncio.gather(
        *(
            pool.send(_return_path(n), f"user{n}@dest{n % 7}.test", data)
            for n, (_, data) in enumerate(messages)
        )
    )
    await pool.close()

    assert len(results) == 300
    assert all(r.reply.startswith("250 ") and r.queue_id is None for r in results)
    stats = pool.stats
    assert (stats.accepted, stats.connections_discarded, stats.open) == (300, 0, 0)
    # 300 messages at 50 a connection: at least 6 sessions, and at most 4 more
    # that were cut short when the work ran out; every one ended with our QUIT.
    assert 6 <= stats.connections_opened <= 9
    assert stats.connections_quit == stats.connections_opened
    sessions, quits, mesgs = sink.wait_counters(stats.connections_opened)
    assert (sessions, quits, mesgs) == (stats.connections_opened, stats.connections_opened, 300)

    dumps = sink.dumps()
    assert len(dumps) == 300
    seen = Counter(mid for dump in dumps for mid in message_ids(dump))
    assert seen == Counter({mid: 1 for mid, _ in messages})
    sent = {mid: data for mid, data in messages}
    for dump in dumps:
        (mid,) = message_ids(dump)
        n = int(mid[1:].split(".")[0])
        assert f"X-Mail-Args: <{_return_path(n)}>".encode() in dump
        assert dump.count(b"X-Rcpt-Args: ") == 1
        assert f"X-Rcpt-Args: <user{n}@dest{n % 7}.test>".encode() in dump
        assert _payload(dump) == sent[mid].replace(b"\r\n", b"\n")


@pytest.mark.parametrize(
    ("options", "outcome"),
    [
        (["-q", "."], "in doubt"),  # reads the content, disconnects without a reply
        (["-q", "RCPT"], "temporary None rcpt"),  # disconnects before any content
        (["-r", "RCPT"], "temporary 450 rcpt"),
        (["-f", "."], "permanent 500 data"),
        (["-Q", "MAIL"], "temporary 421 mail"),  # 421 and disconnect
    ],
)
async def test_sink_faults(tmp_path: Path, options: list[str], outcome: str) -> None:
    sink = SmtpSink(tmp_path, extra=options).start()
    try:
        pool = SmtpPool(RelayConfig(name="sink", host="127.0.0.1", port=sink.port, tls="none"))
        await pool.start()
        seen = []
        for n in range(3):
            try:
                await pool.send("b@outdial.test", f"u{n}@dest.test", make_message(n, "x")[1])
                seen.append("accepted")
            except SmtpNotAcknowledgedError:
                seen.append("in doubt")
            except (SmtpTemporaryError, SmtpPermanentError) as exc:
                kind = "temporary" if isinstance(exc, SmtpTemporaryError) else "permanent"
                seen.append(f"{kind} {exc.code} {exc.stage}")
        await pool.close()
    finally:
        sink.stop()
    assert seen == [outcome] * 3
    broken = outcome == "in doubt" or "None" in outcome or "421" in outcome
    assert pool.stats.connections_discarded == (3 if broken else 0)
    if outcome == "in doubt":  # each sent once, none re-sent by the pool
        assert sorted(mid for d in sink.dumps() for mid in message_ids(d)) == [
            f"<{n}.{os.getpid()}@outdial.test>" for n in range(3)
        ]
