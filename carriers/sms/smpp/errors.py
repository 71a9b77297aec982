"""Errors raised by the SMPP core: one base class, subclasses naming the field at fault."""

from __future__ import annotations

__all__ = [
    "SmppDecodeError",
    "SmppEncodeError",
    "SmppError",
    "SmppFramingError",
    "SmppStateError",
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
