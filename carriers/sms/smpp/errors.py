"""Errors raised by the SMPP core: one base class, subclasses naming the field at fault."""

from __future__ import annotations

__all__ = [
    "SmppBindError",
    "SmppDecodeError",
    "SmppEncodeError",
    "SmppError",
    "SmppFramingError",
    "SmppStateError",
    "SubmitNotAcknowledgedError",
    "SubmitRejectedError",
]

_RINVCMDLEN = 0x00000002
_RSYSERR = 0x00000008


class SmppError(Exception):
    """Base of every error in carriers.sms.smpp."""


class SmppFramingError(SmppError):
    """The byte stream cannot be split into PDUs (a bad command_length): the
    connection cannot be resynchronised and must be closed."""

    status = _RINVCMDLEN


class SmppDecodeError(SmppError):
    """A well-framed PDU whose body is malformed.

    ``field`` names the offending field as the spec spells it (``destination_addr``,
    ``sar_total_segments``); ``status`` is the command_status to answer it with;
    ``command_id`` and ``sequence`` are filled in by the stream decoder.
    """

    def __init__(self, message: str, *, field: str, status: int = _RSYSERR) -> None:
        super().__init__(message)
        self.field = field
        self.status = status
        self.command_id: int | None = None
        self.sequence: int | None = None


class SmppEncodeError(SmppError, ValueError):
    """A value that does not fit its field (too long, not ASCII, out of range)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class SmppStateError(SmppError):
    """An operation the session's state does not allow (submit before bind, after unbind)."""


class SmppBindError(SmppError):
    """The SMSC refused the bind (``status``), or it was never answered (``status`` None)."""

    def __init__(self, message: str, *, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class SubmitRejectedError(SmppError):
    """submit_sm_resp carried an error status. ``retryable`` (ESME_RTHROTTLED,
    ESME_RMSGQFUL) means: back off and submit the same message again."""

    def __init__(self, message: str, *, status: int, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class SubmitNotAcknowledgedError(SmppError):
    """No submit_sm_resp came (timeout, connection lost, unbind): the message was
    not acknowledged, so nothing says it was sent. Safe to re-submit, at the risk
    of a duplicate if the SMSC did take it."""
