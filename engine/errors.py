"""Errors of the engine's command layer, each with a stable machine code.

The control socket and the HTTP API send `code` and `message` to clients; the
CLI prints the message and exits non-zero.
"""

from __future__ import annotations


class OutdialError(Exception):
    """Base of every error a command can return to a client."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(OutdialError):
    """The named campaign, list, contact or entry does not exist."""

    code = "not_found"


class InvalidState(OutdialError):
    """The operation does not fit the current state (start a running campaign...)."""

    code = "invalid_state"


class BadRequest(OutdialError):
    """The request is malformed: missing or wrong argument, bad number, bad file."""

    code = "bad_request"


class Conflict(OutdialError):
    """The thing to create exists already."""

    code = "conflict"
