"""What an SMTP submission can end in, other than `Accepted` (carriers.email.smtp).

Three outcomes, each a decision for the caller:

- `SmtpTemporaryError`: not delivered, try again later. A 4xx reply (RFC 5321
  section 4.2.1: "the command was not accepted ... the error condition is
  temporary"), or the connection failed, timed out or spoke nonsense *before*
  the message content went out, so the relay cannot hold it (``code`` None).
- `SmtpPermanentError`: a 5xx reply, final for this message (store ``reply``,
  mark it bounced), unless `about_relay` says it was the relay refusing us
  (a wrong password, no STARTTLS), which is a configuration fault, not a bounce.
- `SmtpNotAcknowledgedError`: the content was sent, then the connection dropped
  or timed out before the reply to the final dot (RFC 5321 section 4.1.1.4). The
  relay may or may not have taken responsibility for it; re-sending risks a
  duplicate and not re-sending risks a loss, so the pool does neither.
"""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = [
    "SmtpError",
    "SmtpNotAcknowledgedError",
    "SmtpPermanentError",
    "SmtpReplyError",
    "SmtpStage",
    "SmtpTemporaryError",
]

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")


class SmtpStage(StrEnum):
    """Where in the session an outcome happened."""

    CONNECT = "connect"
    """TCP, implicit TLS, the greeting, EHLO/HELO, STARTTLS."""
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    """The DATA command and the reply to the message content."""


class SmtpError(Exception):
    """Base of every error the SMTP pool raises."""


class SmtpReplyError(SmtpError):
    """An outcome with a reply: ``code`` (None when the relay gave none: a
    connection failure or a refusal of ours), ``reply`` (the full reply as the
    relay sent it, code first, lines joined by a space: what a bounce stores),
    ``stage``, and ``enhanced`` (the RFC 3463 status code like ``5.1.1`` when the
    reply starts with one)."""

    def __init__(self, code: int | None, reply: str, stage: SmtpStage) -> None:
        super().__init__(f"{stage.value}: {reply}")
        self.code = code
        self.reply = reply
        self.stage = stage
        text = reply[4:] if code is not None and reply[:3] == str(code) else reply
        match = _ENHANCED.match(text)
        self.enhanced = match.group(1) if match else None

    @property
    def about_relay(self) -> bool:
        """True when the relay refused the session (connect, TLS, AUTH), not this
        message: pause the relay and fix its configuration rather than bounce."""
        return self.stage in (SmtpStage.CONNECT, SmtpStage.AUTH)


class SmtpTemporaryError(SmtpReplyError):
    """Not delivered and not in doubt: send it again later (with backoff)."""


class SmtpPermanentError(SmtpReplyError):
    """A 5xx reply: final (see `about_relay` before marking a message bounced)."""


class SmtpNotAcknowledgedError(SmtpError):
    """Content sent, no final reply: in doubt. ``reason`` says what happened,
    ``timed_out`` whether it was our timeout rather than the connection ending."""

    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(f"message content sent, no reply to it: {reason}")
        self.reason = reason
        self.timed_out = timed_out
        self.stage = SmtpStage.DATA
