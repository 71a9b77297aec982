"""Errors raised by the SMS carriers package (one base class)."""

from __future__ import annotations

__all__ = ["SmsEncodingError", "SmsError", "UdhParseError", "UnencodableCharacterError"]


class SmsError(Exception):
    """Base of every error in carriers.sms."""


class SmsEncodingError(SmsError, ValueError):
    """Text or user data that cannot be encoded, decoded or segmented as asked."""


class UnencodableCharacterError(SmsEncodingError):
    """A character the requested encoding cannot carry.

    ``character`` is the offending character, ``position`` its index (in code points)
    in the text the caller passed, ``encoding`` the name of the encoding asked for.
    """

    def __init__(self, character: str, position: int, encoding: str) -> None:
        super().__init__(
            f"character {character!r} (U+{ord(character):04X}) at position {position} "
            f"cannot be encoded in {encoding}"
        )
        self.character = character
        self.position = position
        self.encoding = encoding


class UdhParseError(SmsEncodingError):
    """A User Data Header whose length fields do not fit the user data."""
