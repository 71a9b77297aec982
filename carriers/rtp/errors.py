"""Errors of the RTP package: one base class, one subclass per failure kind."""

from __future__ import annotations

__all__ = ["RtpBuildError", "RtpError", "RtpParseError"]


class RtpError(Exception):
    """Base class of every error raised by ``carriers.rtp``."""


class RtpParseError(RtpError):
    """A datagram is not a well-formed RTP or RTCP packet.

    The parsers raise nothing else on malformed input, so the sans-IO core can
    catch this one error at its edge and count the datagram as discarded.
    """


class RtpBuildError(RtpError, ValueError):
    """A packet cannot be serialised: a field is out of its wire range.

    This is a programming error on the caller's side, hence also a ValueError.
    """
