"""The SMTP pool against aiosmtpd relays with scripted replies, in the test's own
event loop on loopback: greylisting (451 then 250), 550 at RCPT, 554 at DATA,
drops and timeouts before and after the content, STARTTLS with a self-signed
certificate and AUTH PLAIN/LOGIN, per-domain concurrency, rate limits."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from carriers.email.smtp import (
    RelayConfig,
    SmtpNotAcknowledgedError,
    SmtpPermanentError,
    SmtpPool,
    SmtpStage,
    SmtpTemporaryError,
)
from tests.integration.smtp_relays import (
    Authenticator,
    ScriptedHandler,
    make_message,
    self_signed_cert,
    server_tls_context,
    start_aiosmtpd,
)

pytestmark = pytest.mark.smtp

FROM = "bounce@outdial.test"


async def _relay(handler: ScriptedHandler, **kwargs: Any) -> tuple[asyncio.Server, int]:
    return await start_aiosmtpd(handler, **kwargs)


@pytest.fixture
async def relay() -> AsyncIterator[tuple[ScriptedHandler, int]]:
    handler = ScriptedHandler()
    server, port = await _relay(handler)
    yield handler, port
    server.close()


def _config(port: int, **kwargs: Any) -> RelayConfig:
    kwargs.setdefault("tls", "none")
    return RelayConfig(name="test", host="127.0.0.1", port=port, timeout=5.0, **kwargs)


async def _started(config: RelayConfig) -> SmtpPool:
    pool = SmtpPool(config)
    await pool.start()
    return pool


async def test_greylisted_451_is_temporary_then_a_resend_is_accepted_on_the_same_session(
    relay: tuple[ScriptedHandler, int],
) -> None:
    handler, port = relay
    handler.rcpt_script["grey@dest.test"] = ["451 4.7.1 Greylisted, try again in 1 second"]
    handler.data_reply = "250 2.0.0 Ok: queued as 3F2A1B9C"
    pool = await _started(_config(port, connections=1))
    mid, data = make_message(1, "grey@dest.test")
    with pytest.raises(SmtpTemporaryError) as caught:
        await pool.send(FROM, "grey@dest.test", data)
    err = caught.value
    assert (err.code, err.stage, err.enhanced) == (451, SmtpStage.RCPT, "4.7.1")
    assert err.reply == "451 4.7.1 Greylisted, try again in 1 second"
    assert not err.about_relay
    assert handler.received[mid] == 0

    accepted = await pool.send(FROM, "grey@dest.test", data)
    assert accepted.queue_id == "3F2A1B9C"
    assert accepted.reply == "250 2.0.0 Ok: queued as 3F2A1B9C"
    assert handler.received[mid] == 1
    # RSET after the refusal kept the session: one connection for both.
    assert (pool.stats.connections_opened, pool.stats.temporary_failures) == (1, 1)
    await pool.close()


async def test_550_at_rcpt_and_554_and_451_at_data(relay: tuple[ScriptedHandler, int]) -> None:
    handler, port = relay
    unknown = "550 5.1.1 <nobody@dest.test>: Recipient address rejected: User unknown"
    handler.rcpt_script["nobody@dest.test"] = [unknown]
    handler.data_script["spam@dest.test"] = ["554 5.7.1 Message rejected as spam"]
    handler.data_script["later@dest.test"] = ["451 4.3.0 Queue full, try later"]
    pool = await _started(_config(port, connections=1))

    with pytest.raises(SmtpPermanentError) as at_rcpt:
        await pool.send(FROM, "nobody@dest.test", make_message(1, "nobody@dest.test")[1])
    assert (at_rcpt.value.code, at_rcpt.value.stage) == (550, SmtpStage.RCPT)
    assert (at_rcpt.value.reply, at_rcpt.value.enhanced) == (unknown, "5.1.1")

    with pytest.raises(SmtpPermanentError) as at_data:
        await pool.send(FROM, "spam@dest.test", make_message(2, "spam@dest.test")[1])
    assert (at_data.value.code, at_data.value.stage) == (554, SmtpStage.DATA)
    assert at_data.value.reply == "554 5.7.1 Message rejected as spam"

    with pytest.raises(SmtpTemporaryError) as later:
        await pool.send(FROM, "later@dest.test", make_message(3, "later@dest.test")[1])
    assert (later.value.code, later.value.stage) == (451, SmtpStage.DATA)

    ok = await pool.send(FROM, "fine@dest.test", make_message(4, "fine@dest.test")[1])
    assert (ok.queue_id, ok.reply) == (None, "250 OK")  # aiosmtpd's default names no queue id
    stats = pool.stats
    assert (stats.permanent_failures, stats.temporary_failures, stats.accepted) == (2, 1, 1)
    assert (stats.connections_opened, stats.connections_discarded) == (1, 0)
    await pool.close()


async def test_drop_after_the_content_is_in_doubt_and_nothing_is_resent(
    relay: tuple[ScriptedHandler, int],
) -> None:
    handler, port = relay
    handler.data_script["doubt@dest.test"] = ["drop"]
    pool = await _started(_config(port, connections=2))
    outcomes: dict[str, str] = {}
    messages = [
        make_message(n, "doubt@dest.test" if n == 3 else f"u{n}@dest.test") for n in range(8)
    ]
    for n, (mid, data) in enumerate(messages):
        try:
            await pool.send(FROM, "doubt@dest.test" if n == 3 else f"u{n}@dest.test", data)
            outcomes[mid] = "accepted"
        except SmtpNotAcknowledgedError as exc:
            outcomes[mid] = f"in doubt at {exc.stage}, timed out {exc.timed_out}"
    assert (
        list(outcomes.values())
        == ["accepted"] * 3 + ["in doubt at data, timed out False"] + ["accepted"] * 4
    )
    # The relay got the in-doubt one (it dropped us after reading it) and the pool
    # did not send it again; every other message arrived exactly once.
    assert handler.received == {mid: 1 for mid, _ in messages}
    stats = pool.stats
    assert (stats.not_acknowledged, stats.connections_discarded, stats.accepted) == (1, 1, 7)
    await pool.close()


async def test_timeout_after_the_content_is_in_doubt(relay: tuple[ScriptedHandler, int]) -> None:
    handler, port = relay
    handler.data_script["slow@dest.test"] = ["sleep:3"]
    pool = await _started(_config(port, connections=1, data_timeout=0.3))
    with pytest.raises(SmtpNotAcknowledgedError) as caught:
        await pool.send(FROM, "slow@dest.test", make_message(1, "slow@dest.test")[1])
    assert caught.value.timed_out
    ok = await pool.send(FROM, "next@dest.test", make_message(2, "next@dest.test")[1])
    assert ok.reply == "250 OK"
    assert (pool.stats.connections_discarded, pool.stats.connections_opened) == (1, 2)
    await pool.close()


async def test_drop_before_the_content_is_temporary_not_in_doubt(
    relay: tuple[ScriptedHandler, int],
) -> None:
    handler, port = relay
    handler.rcpt_script["cut@dest.test"] = ["drop"]
    pool = await _started(_config(port, connections=1))
    mid, data = make_message(1, "cut@dest.test")
    with pytest.raises(SmtpTemporaryError) as caught:
        await pool.send(FROM, "cut@dest.test", data)
    assert (caught.value.code, caught.value.stage) == (None, SmtpStage.RCPT)
    assert handler.received[mid] == 0
    assert (await pool.send(FROM, "cut@dest.test", data)).reply == "250 OK"
    assert handler.received[mid] == 1
    await pool.close()


async def test_a_session_the_relay_closed_while_idle_is_replaced() -> None:
    handler = ScriptedHandler()
    server, port = await _relay(handler, timeout=0.3)  # aiosmtpd closes idle sessions
    pool = await _started(_config(port, connections=1))
    await pool.send(FROM, "a@dest.test", make_message(1, "a@dest.test")[1])
    await asyncio.sleep(0.8)
    await pool.send(FROM, "b@dest.test", make_message(2, "b@dest.test")[1])
    assert pool.stats.connections_opened == 2
    assert pool.stats.accepted == 2
    await pool.close()
    server.close()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = self_signed_cert(tmp_path)
    return server_tls_context(cert, key), ssl.create_default_context(cafile=str(cert))


@pytest.mark.parametrize(("excluded", "mechanism"), [([], "PLAIN"), (["PLAIN"], "LOGIN")])
async def test_starttls_and_auth(
    tls_files: tuple[ssl.SSLContext, ssl.SSLContext], excluded: list[str], mechanism: str
) -> None:
    server_ctx, client_ctx = tls_files
    handler = ScriptedHandler()
    auth = Authenticator(b"outdial", b"s3cret")
    server, port = await _relay(
        handler,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=auth,
        auth_required=True,
        auth_exclude_mechanism=excluded,
    )
    config = _config(
        port, tls="starttls", tls_context=client_ctx, username="outdial", password="s3cret"
    )
    pool = await _started(config)
    mid, data = make_message(1, "x@dest.test")
    assert (await pool.send(FROM, "x@dest.test", data)).reply == "250 OK"
    assert handler.received[mid] == 1 and handler.sessions_with_tls == 1
    assert auth.mechanisms == [mechanism]
    await pool.close()

    wrong = SmtpPool(
        _config(port, tls="starttls", tls_context=client_ctx, username="outdial", password="nope")
    )
    with pytest.raises(SmtpPermanentError) as caught:
        await wrong.start()
    assert (caught.value.code, caught.value.stage) == (535, SmtpStage.AUTH)
    assert caught.value.about_relay
    server.close()


async def test_implicit_tls_and_an_untrusted_certificate(
    tls_files: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls_files
    handler = ScriptedHandler()
    server, port = await _relay(handler, implicit_tls=server_ctx)
    pool = await _started(_config(port, tls="tls", tls_context=client_ctx))
    mid, data = make_message(1, "x@dest.test")
    assert (await pool.send(FROM, "x@dest.test", data)).reply == "250 OK"
    assert handler.received[mid] == 1
    await pool.close()

    untrusting = SmtpPool(_config(port, tls="tls"))  # the system CAs only
    with pytest.raises(SmtpTemporaryError) as caught:
        await untrusting.start()
    assert (caught.value.code, caught.value.stage) == (None, SmtpStage.CONNECT)
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.reply
    server.close()


async def test_starttls_required_but_not_offered_is_refused(
    relay: tuple[ScriptedHandler, int],
) -> None:
    _, port = relay
    pool = SmtpPool(_config(port, tls="starttls"))
    with pytest.raises(SmtpPermanentError) as caught:
        await pool.start()
    assert (caught.value.code, caught.value.stage) == (None, SmtpStage.CONNECT)
    assert "STARTTLS" in caught.value.reply


async def test_per_domain_concurrency(relay: tuple[ScriptedHandler, int]) -> None:
    handler, port = relay
    handler.data_delay = 0.05
    pool = await _started(_config(port, connections=6, per_domain_concurrency=2))
    rcpts = [f"u{n}@{'a' if n % 2 else 'b'}.test" for n in range(24)]
    await asyncio.gather(*(pool.send(FROM, r, make_message(n, r)[1]) for n, r in enumerate(rcpts)))
    assert handler.max_active == {"a.test": 2, "b.test": 2}
    assert handler.max_active_total == 4  # both domains at once, each at its limit
    assert pool.stats.accepted == 24
    await pool.close()


async def test_relay_rate_and_per_domain_rate(relay: tuple[ScriptedHandler, int]) -> None:
    handler, port = relay
    pool = await _started(_config(port, connections=4, rate=20.0))
    t0 = time.monotonic()
    await asyncio.gather(
        *(
            pool.send(FROM, f"r{n}@d{n}.test", make_message(n, f"r{n}@d{n}.test")[1])
            for n in range(20)
        )
    )
    # 20 a second with a burst of 2: the 20th waits at least 18/20 s.
    assert time.monotonic() - t0 >= 0.8
    await pool.close()

    pool = await _started(_config(port, connections=4, per_domain_rate=10.0))
    t0 = time.monotonic()
    slow = asyncio.gather(
        *(
            pool.send(FROM, f"s{n}@one.test", make_message(100 + n, f"s{n}@one.test")[1])
            for n in range(10)
        )
    )
    others = [f"o{n}@other{n}.test" for n in range(10)]
    await asyncio.gather(
        *(pool.send(FROM, r, make_message(200 + n, r)[1]) for n, r in enumerate(others))
    )
    others_done = time.monotonic() - t0
    await slow
    # 10 a second to one.test, a burst of 1: the 10th waits at least 9/10 s; other
    # domains are not held up behind it.
    assert time.monotonic() - t0 >= 0.8
    assert others_done < 0.5
    assert sum(handler.received.values()) == 40
    await pool.close()


async def test_close_lets_queued_sends_finish_and_refuses_new_ones(
    relay: tuple[ScriptedHandler, int],
) -> None:
    handler, port = relay
    handler.data_delay = 0.05
    pool = await _started(_config(port, connections=2))
    sends = [
        asyncio.create_task(pool.send(FROM, f"q{n}@dest.test", make_message(n, "q")[1]))
        for n in range(6)
    ]
    await asyncio.sleep(0.01)  # two in flight, four waiting for a session
    closing = asyncio.create_task(pool.close())
    await asyncio.sleep(0)
    with pytest.raises(SmtpTemporaryError, match="pool closed"):
        await pool.send(FROM, "late@dest.test", b"")
    await closing
    assert all(s.result().reply == "250 OK" for s in sends)
    assert (pool.stats.accepted, pool.stats.open, pool.stats.connections_quit) == (6, 0, 2)


async def test_a_reused_session_dead_at_mail_is_retried_once_on_a_new_one(
    relay: tuple[ScriptedHandler, int],
) -> None:
    handler, port = relay
    pool = await _started(_config(port, connections=1))
    await pool.send(FROM, "a@dest.test", make_message(1, "a@dest.test")[1])
    # The relay drops the reused session at MAIL without a reply (as if it had
    # closed it while idle and we had not seen the FIN yet): nothing was sent, so
    # the pool moves the transaction to a new session by itself.
    handler.mail_script["stale@outdial.test"] = ["drop"]
    mid, data = make_message(2, "b@dest.test")
    await pool.send("stale@outdial.test", "b@dest.test", data)
    assert handler.received[mid] == 1
    assert (pool.stats.stale_retries, pool.stats.connections_opened) == (1, 2)
    # On a session's first transaction the same drop is not retried.
    await pool.close()
    pool = await _started(_config(port, connections=1))
    handler.mail_script["stale@outdial.test"] = ["drop"]
    with pytest.raises(SmtpTemporaryError) as caught:
        await pool.send("stale@outdial.test", "c@dest.test", make_message(3, "c")[1])
    assert (caught.value.code, caught.value.stage) == (None, SmtpStage.MAIL)
    assert pool.stats.stale_retries == 0
    await pool.close()
