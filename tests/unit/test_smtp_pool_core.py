"""The SMTP pool's pure parts: DATA's wire form, queue ids, outcomes, config checks."""

from __future__ import annotations

import pytest

from carriers.email.smtp import (
    RelayConfig,
    SmtpPermanentError,
    SmtpPool,
    SmtpStage,
    SmtpTemporaryError,
    dot_stuffed,
    parse_queue_id,
)


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"", b".\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\nb", b"a\r\nb\r\n.\r\n"),  # bare LF, no final line break
        (b"a\rb\r\n", b"a\r\nb\r\n.\r\n"),  # bare CR
        (b".\r\n..x\r\n.y", b"..\r\n...x\r\n..y\r\n.\r\n"),
        (b"x.\r\n .\r\n", b"x.\r\n .\r\n.\r\n"),  # a dot not at a line start stays
    ],
)
def test_dot_stuffed(data: bytes, wire: bytes) -> None:
    assert dot_stuffed(data) == wire


@pytest.mark.parametrize(
    ("reply", "queue_id"),
    [
        ("2.0.0 Ok: queued as 4ZqW8x1Yc9z9sVD", "4ZqW8x1Yc9z9sVD"),
        ("2.0.0 Ok: queued as <ABC123>", "ABC123"),
        ("OK id=1tXyZ-000Abc-2D", "1tXyZ-000Abc-2D"),
        ("2.0.0 Ok", None),
        ("OK", None),
    ],
)
def test_parse_queue_id(reply: str, queue_id: str | None) -> None:
    assert parse_queue_id(reply) == queue_id


def test_outcomes_carry_code_reply_stage_and_enhanced_code() -> None:
    err = SmtpPermanentError(550, "550 5.1.1 User unknown", SmtpStage.RCPT)
    assert (err.code, err.enhanced, err.about_relay) == (550, "5.1.1", False)
    assert str(err) == "rcpt: 550 5.1.1 User unknown"
    assert SmtpPermanentError(535, "535 5.7.8 Bad credentials", SmtpStage.AUTH).about_relay
    no_reply = SmtpTemporaryError(None, "ConnectionRefusedError: ...", SmtpStage.CONNECT)
    assert (no_reply.code, no_reply.enhanced, no_reply.about_relay) == (None, None, True)
    assert SmtpTemporaryError(451, "451 Try later", SmtpStage.MAIL).enhanced is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tls": "none", "username": "u", "password": "p"}, "in the clear"),
        ({"username": "u"}, "go together"),
        ({"tls": "ssl"}, "tls must be"),
        ({"connections": 0}, "connections"),
        ({"messages_per_connection": 0}, "messages_per_connection"),
        ({"per_domain_concurrency": 0}, "per_domain_concurrency"),
        ({"rate": 0.0}, "rate"),
        ({"data_timeout": 0}, "data_timeout"),
        ({"port": 0}, "port"),
    ],
)
def test_relay_config_refuses(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RelayConfig(name="r", host="127.0.0.1", **kwargs)  # type: ignore[arg-type]


def test_plain_auth_only_when_allowed_and_the_password_not_shown() -> None:
    config = RelayConfig(
        name="r", host="h", tls="none", username="u", password="hunter2", allow_plain_auth=True
    )
    assert "hunter2" not in repr(config)


async def test_send_refuses_bad_addresses_and_an_unstarted_pool() -> None:
    pool = SmtpPool(RelayConfig(name="r", host="127.0.0.1", tls="none"))
    for rcpt in ("no-domain", "a@b\r\nRSET", "<a@b>", "a b@c"):
        with pytest.raises(ValueError, match=r"address|domain"):
            await pool.send("x@y.test", rcpt, b"")
    with pytest.raises(ValueError, match="address"):
        await pool.send("x@y\nz", "a@b.test", b"")
    with pytest.raises(RuntimeError, match="not started"):
        await pool.send("", "a@b.test", b"")
