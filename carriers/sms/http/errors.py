"""Errors raised by the HTTP aggregator adapters (one base class, under SmsError)."""

from __future__ import annotations

from carriers.sms.errors import SmsError

__all__ = [
    "BadResponseError",
    "SendNotAcknowledgedError",
    "SendRejectedError",
    "SignatureError",
    "SmsHttpError",
    "WebhookError",
]


class SmsHttpError(SmsError):
    """Base of every error in carriers.sms.http."""


class SendRejectedError(SmsHttpError):
    """The aggregator answered and refused the message.

    ``http_status`` is the HTTP status; ``code`` the aggregator's own error code
    (Twilio's ``code`` such as 21211, Kannel's leading number) when it gave one;
    ``retryable`` (HTTP 429 and 5xx, Kannel's "Sending failed") means: back off
    and send the same message again; ``retry_after`` is the server's Retry-After
    in seconds when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int,
        code: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


class BadResponseError(SmsHttpError):
    """A success status whose body we cannot read (not JSON, no message sid): the
    aggregator may have taken the message, so it is not safe to assume either way."""

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


class SendNotAcknowledgedError(SmsHttpError):
    """No answer came (connection refused or lost, timeout): nothing says the
    message was taken. Safe to send again, at the risk of a duplicate."""


class WebhookError(SmsHttpError, ValueError):
    """A status callback, inbound message or delivery report that is malformed.

    ``field`` names the parameter at fault as the aggregator spells it
    (``MessageSid``, ``type``). A webhook handler answers it with HTTP 400.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class SignatureError(SmsHttpError):
    """A webhook whose ``X-Twilio-Signature`` is missing or does not match: it
    did not come from the account's aggregator (or was altered), so it must be
    ignored. A webhook handler answers it with HTTP 403."""
