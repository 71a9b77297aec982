"""The inbound SMTP listener against real SMTP clients (smtplib, aiosmtplib) on loopback."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Callable

import aiosmtplib
import pytest

from carriers.email.bounce import Bounce, Reply, classify
from carriers.email.inbound import Envelope, InboundServer
from carriers.email.verp import verp_token
from tests.unit.mail_samples import HUMAN_REPLY, POSTFIX_DSN_5_1_1

DOMAIN = "outdial.example"


def ours(address: str) -> bool:
    return (
        verp_token(address, DOMAIN) is not None or verp_token(address, DOMAIN, "reply") is not None
    )


class Inbox:
    """The on_message callback: records what arrives, fails the first ``fail`` times."""

    def __init__(self, fail: int = 0) -> None:
        self.received: list[Envelope] = []
        self.calls = 0
        self.fail = fail

    async def __call__(self, envelope: Envelope) -> None:
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError("store unavailable")
        self.received.append(envelope)


async def serve(inbox: Inbox, **options: object) -> InboundServer:
    server = InboundServer(
        "127.0.0.1",
        0,
        inbox,
        accept_rcpt=ours,
        hostname="mx.outdial.example",
        **options,
    )
    await server.start()
    return server


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def server(inbox: Inbox) -> AsyncIterator[InboundServer]:
    server = await serve(inbox)
    yield server
    await server.stop()


def smtp_session(port: int, work: Callable[[smtplib.SMTP], object]) -> object:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("mail.example.net")
        return work(client)


async def in_thread(port: int, work: Callable[[smtplib.SMTP], object]) -> object:
    return await asyncio.to_thread(smtp_session, port, work)


async def test_dsn_to_the_verp_address_reaches_the_callback(
    server: InboundServer, inbox: Inbox
) -> None:
    assert server.port > 0
    # A line starting with a dot: smtplib stuffs it, the server must unstuff it.
    message = POSTFIX_DSN_5_1_1.replace(
        b"This is a MIME-encapsulated", b".This is a MIME-encapsulated"
    )
    refused = await in_thread(
        server.port, lambda c: c.sendmail("", ["bounce+c0ffee42@Outdial.Example"], message)
    )
    assert refused == {}
    [envelope] = inbox.received
    assert envelope.mail_from == ""  # the null reverse-path
    assert envelope.rcpt_tos == ("bounce+c0ffee42@Outdial.Example",)
    assert envelope.data == message
    assert envelope.peer is not None and envelope.peer[0] == "127.0.0.1"
    result = classify(
        envelope.data,
        envelope_from=envelope.mail_from,
        envelope_to=envelope.rcpt_tos[0],
        verp_domain=DOMAIN,
    )
    assert isinstance(result, Bounce) and result.hard and result.verp_token == "c0ffee42"
    assert result.recipients[0].address == "Nobody@Example.org"


async def test_refused_recipient_gets_550(server: InboundServer, inbox: Inbox) -> None:
    def send(client: smtplib.SMTP) -> object:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("", ["postmaster@outdial.example"], POSTFIX_DSN_5_1_1)
        return refused.value.recipients

    assert await in_thread(server.port, send) == {
        "postmaster@outdial.example": (
            550,
            b"5.1.1 <postmaster@outdial.example>: Recipient address rejected",
        )
    }
    # One refused among several: the message goes through for the accepted one only.
    rcpts = ["someone@elsewhere.example", "bounce+tok@outdial.example"]
    refused = await in_thread(server.port, lambda c: c.sendmail("", rcpts, POSTFIX_DSN_5_1_1))
    assert isinstance(refused, dict) and list(refused) == ["someone@elsewhere.example"]
    assert refused["someone@elsewhere.example"][0] == 550
    assert [e.rcpt_tos for e in inbox.received] == [("bounce+tok@outdial.example",)]


async def test_callback_error_gets_451_and_a_retry_succeeds() -> None:
    inbox = Inbox(fail=1)
    server = await serve(inbox)
    try:
        send = lambda c: c.sendmail("", ["bounce+retry1@outdial.example"], POSTFIX_DSN_5_1_1)  # noqa: E731

        def first(client: smtplib.SMTP) -> object:
            with pytest.raises(smtplib.SMTPDataError) as failed:
                send(client)
            return failed.value.smtp_code

        assert await in_thread(server.port, first) == 451
        assert inbox.received == []
        assert await in_thread(server.port, send) == {}  # the sender's retry
        assert inbox.calls == 2
        [envelope] = inbox.received
        assert envelope.data == POSTFIX_DSN_5_1_1
    finally:
        await server.stop()


async def test_oversized_message_gets_552() -> None:
    inbox = Inbox()
    server = await serve(inbox, max_size=2048)
    big = POSTFIX_DSN_5_1_1 + b"x" * 3000 + b"\r\n"
    rcpt = ["bounce+big@outdial.example"]
    try:
        # The client declares SIZE (RFC 1870): refused at MAIL.
        def declared(client: smtplib.SMTP) -> object:
            assert client.has_extn("size") and client.esmtp_features["size"] == "2048"
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("", rcpt, big)
            return refused.value.smtp_code

        assert await in_thread(server.port, declared) == 552

        # It does not: refused at the end of DATA, and the session carries on.
        def undeclared(client: smtplib.SMTP) -> object:
            client.mail("")
            client.rcpt(rcpt[0])
            code, _text = client.data(big)  # data() returns the final reply
            client.sendmail("", rcpt, b"Subject: small\r\n\r\nfits\r\n")
            return code

        assert await in_thread(server.port, undeclared) == 552
        assert [e.data for e in inbox.received] == [b"Subject: small\r\n\r\nfits\r\n"]
    finally:
        await server.stop()


async def test_reply_over_aiosmtplib_in_the_same_loop(server: InboundServer, inbox: Inbox) -> None:
    await aiosmtplib.send(
        HUMAN_REPLY,
        sender="sam@example.com",
        recipients=["reply+r3ply7@outdial.example"],
        hostname="127.0.0.1",
        port=server.port,
        start_tls=False,
    )
    [envelope] = inbox.received
    assert envelope.mail_from == "sam@example.com"
    result = classify(envelope.data, envelope_to=envelope.rcpt_tos[0], verp_local="reply")
    assert isinstance(result, Reply) and result.verp_token == "r3ply7"
    assert result.in_reply_to == "<campaign-7.contact-8@outdial.example>"


async def test_stop_closes_the_port_and_open_sessions(inbox: Inbox) -> None:
    server = await serve(inbox)
    port = server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await reader.readline()).startswith(b"220 mx.outdial.example")
    await asyncio.wait_for(server.stop(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the idle session was closed
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_stop_lets_a_message_being_handed_over_finish() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    received: list[Envelope] = []

    async def slow(envelope: Envelope) -> None:
        entered.set()
        await release.wait()
        received.append(envelope)

    server = InboundServer("127.0.0.1", 0, slow, hostname="mx.outdial.example")
    await server.start()
    port = server.port
    sending = asyncio.create_task(
        in_thread(
            port, lambda c: c.sendmail("", ["bounce+slow@outdial.example"], b"X: 1\r\n\r\nhi\r\n")
        )
    )
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # draining
    with pytest.raises(OSError):  # but no longer listening
        await asyncio.open_connection("127.0.0.1", port)
    release.set()
    assert await asyncio.wait_for(sending, 5) == {}  # the client got its 250
    await asyncio.wait_for(stopping, 5)
    assert len(received) == 1


async def test_recipient_check_failing_gets_451_and_too_many_get_452(inbox: Inbox) -> None:
    def flaky(address: str) -> bool:
        if address.startswith("boom"):
            raise RuntimeError("lookup failed")
        return True

    server = InboundServer("127.0.0.1", 0, inbox, accept_rcpt=flaky, max_recipients=2)
    await server.start()
    try:

        def send(client: smtplib.SMTP) -> object:
            client.mail("")
            return [
                client.rcpt(a)[0]
                for a in ("boom@x.example", "a@x.example", "b@x.example", "c@x.example")
            ]

        assert await in_thread(server.port, send) == [451, 250, 250, 452]
    finally:
        await server.stop()
