"""Errors raised by the SIP core (one base class, RFC 3261 status hints on parse errors)."""

from __future__ import annotations

__all__ = ["SipError", "SipParseError"]


class SipError(Exception):
    """Base of every error in carriers.sip."""


class SipParseError(SipError):
    """A message, header or URI that cannot be parsed.

    ``status`` is the response a UAS should send if the input was a request (400 unless
    a more precise code applies, e.g. 505 for an unknown SIP version, RFC 3261 8.2.2);
    ``header`` names the offending header field in its canonical spelling, or is None
    when the fault is in the start line or the framing.
    """

    def __init__(self, message: str, *, status: int = 400, header: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.header = header
