"""The Twilio-shaped Messages API, sans-IO.

Sending is one form-encoded POST to
``{base}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP Basic auth
(account SID and auth token); the answer is the message resource as JSON, or
an error object ``{"code", "message", "more_info", "status"}``. Several
aggregators copy this shape, so the base URL is a parameter.

Status callbacks and inbound messages arrive as form-encoded POSTs signed with
``X-Twilio-Signature``: base64 of HMAC-SHA1, keyed with the auth token, over
the full URL Twilio was given followed by every POST parameter, sorted by name,
as name then value with no separators (Twilio, "Webhooks security").
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from carriers.sms.http.errors import (
    BadResponseError,
    SendRejectedError,
    SignatureError,
    WebhookError,
)
from carriers.sms.http.request import HttpRequest

__all__ = [
    "SIGNATURE_HEADER",
    "InboundMessage",
    "MessageStatus",
    "SentMessage",
    "StatusCallback",
    "TwilioAccount",
    "build_send_request",
    "compute_signature",
    "parse_form",
    "parse_inbound_message",
    "parse_send_response",
    "parse_status_callback",
    "read_signed_form",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Twilio-Signature"
API_VERSION = "2010-04-01"
_SNIPPET = 200


class MessageStatus(enum.Enum):
    """A message's status as Twilio names it; UNKNOWN keeps a status added later."""

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    READ = "read"
    CANCELED = "canceled"
    PARTIALLY_DELIVERED = "partially_delivered"
    RECEIVING = "receiving"
    RECEIVED = "received"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: str) -> MessageStatus:
        try:
            return cls(value.strip().lower())
        except ValueError:
            return cls.UNKNOWN

    @property
    def final(self) -> bool:
        """No further status callback will change the outcome."""
        return self in _FINAL


_FINAL = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.FAILED,
        MessageStatus.READ,
        MessageStatus.CANCELED,
    }
)


@dataclass(frozen=True, slots=True)
class TwilioAccount:
    """One account: its SID and auth token, and the API's base URL (another
    aggregator with the same shape, or a local fake, has its own)."""

    account_sid: str
    auth_token: str = field(repr=False)
    base_url: str = "https://api.twilio.com"

    @property
    def messages_url(self) -> str:
        sid = quote(self.account_sid, safe="")
        return f"{self.base_url.rstrip('/')}/{API_VERSION}/Accounts/{sid}/Messages.json"

    @property
    def authorization(self) -> str:
        """The HTTP Basic credentials (RFC 7617): SID as user, token as password."""
        raw = f"{self.account_sid}:{self.auth_token}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class SentMessage:
    """The API's answer to a send: the message sid and its first status."""

    sid: str
    status: MessageStatus
    raw_status: str
    num_segments: int | None = None
    error_code: int | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class StatusCallback:
    """One status callback: ``status`` of message ``message_sid`` changed."""

    message_sid: str
    status: MessageStatus
    raw_status: str
    error_code: int | None = None
    account_sid: str | None = None
    to: str | None = None
    from_: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message from a handset to one of the account's numbers."""

    message_sid: str
    from_: str
    to: str
    body: str
    num_segments: int = 1
    num_media: int = 0
    account_sid: str | None = None
    messaging_service_sid: str | None = None


def build_send_request(
    account: TwilioAccount,
    *,
    to: str,
    body: str,
    from_: str | None = None,
    messaging_service_sid: str | None = None,
    status_callback: str | None = None,
) -> HttpRequest:
    """The POST that sends ``body`` to ``to`` (E.164), from a number or sender id
    (``from_``) or through a messaging service (exactly one of the two)."""
    if (from_ is None) == (messaging_service_sid is None):
        raise ValueError("give exactly one of from_ and messaging_service_sid")
    if not to:
        raise ValueError("to is empty")
    params: list[tuple[str, str]] = [("To", to)]
    if from_ is not None:
        params.append(("From", from_))
    if messaging_service_sid is not None:
        params.append(("MessagingServiceSid", messaging_service_sid))
    params.append(("Body", body))
    if status_callback is not None:
        params.append(("StatusCallback", status_callback))
    return HttpRequest(
        method="POST",
        url=account.messages_url,
        headers=(
            ("Authorization", account.authorization),
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("Accept", "application/json"),
        ),
        body=urlencode(params).encode("ascii"),
    )


def _optional_int(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value.strip()))
            except ValueError:
                return None  # an HTTP-date: the caller's backoff decides
    return None


def _load_json(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def parse_send_response(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> SentMessage:
    """Read the answer to `build_send_request`.

    2xx with a message resource -> `SentMessage` (a resource already ``failed``
    raises `SendRejectedError`). 429 and 5xx raise a retryable
    `SendRejectedError` (with Retry-After when given); any other status raises
    a final one carrying Twilio's error ``code`` and ``message`` when the body
    has them. A 2xx we cannot read raises `BadResponseError`.
    """
    doc = _load_json(body)
    if 200 <= status < 300:
        if not isinstance(doc, dict) or not isinstance(doc.get("sid"), str) or not doc["sid"]:
            raise BadResponseError(
                f"HTTP {status} without a message sid: {body[:_SNIPPET]!r}", http_status=status
            )
        raw_status = str(doc.get("status") or "")
        message = SentMessage(
            sid=doc["sid"],
            status=MessageStatus.parse(raw_status),
            raw_status=raw_status,
            num_segments=_optional_int(doc.get("num_segments")),
            error_code=_optional_int(doc.get("error_code")),
            error_message=doc.get("error_message") if doc.get("error_message") else None,
        )
        if message.status in (MessageStatus.FAILED, MessageStatus.UNDELIVERED):
            raise SendRejectedError(
                f"message {message.sid} {raw_status}: "
                f"{message.error_code} {message.error_message or ''}".rstrip(),
                http_status=status,
                code=message.error_code,
            )
        return message
    code: int | None = None
    text = body[:_SNIPPET].decode("utf-8", "replace").strip()
    if isinstance(doc, dict):
        code = _optional_int(doc.get("code"))
        if isinstance(doc.get("message"), str):
            text = doc["message"]
    retryable = status == 429 or status >= 500
    label = f"HTTP {status}" + (f" error {code}" if code is not None else "")
    raise SendRejectedError(
        f"{label}: {text}" if text else label,
        http_status=status,
        code=code,
        retryable=retryable,
        retry_after=_retry_after(headers) if retryable else None,
    )


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """The pairs of an application/x-www-form-urlencoded body, in order, blanks kept."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookError("form body is not UTF-8", field="body") from exc
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise WebhookError(f"form body cannot be parsed: {exc}", field="body") from exc


def _pairs(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(params, Mapping):
        return [(str(k), str(v)) for k, v in params.items()]
    return [(str(k), str(v)) for k, v in params]


def compute_signature(
    auth_token: str, url: str, params: Mapping[str, str] | Iterable[tuple[str, str]] = ()
) -> str:
    """The ``X-Twilio-Signature`` for a POST of ``params`` to ``url``.

    Parameters are sorted by name (byte order, case-sensitive) and each name and
    value appended to the URL; a repeated name contributes each distinct value in
    sorted order, as Twilio's own validator does.
    """
    data = url + "".join(name + value for name, value in sorted(set(_pairs(params))))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """The URL as given, and with its default port added or removed: Twilio may
    sign either form of an https/http URL (its validator accepts both)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if default is None or parts.hostname is None:
        return variants
    host = parts.netloc.rpartition("@")[2]
    userinfo = parts.netloc[: len(parts.netloc) - len(host)]
    if parts.port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{host}:{default}")))
    elif parts.port == default:
        bare = host.rsplit(":", 1)[0]
        variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{bare}")))
    return variants


def verify_signature(
    auth_token: str,
    url: str,
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    signature: str | None,
) -> None:
    """Raise `SignatureError` unless ``signature`` is the one Twilio computes for
    this URL and these POST parameters. Compared in constant time."""
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    try:
        given = signature.strip().encode("ascii")
    except UnicodeEncodeError as exc:
        raise SignatureError(f"{SIGNATURE_HEADER} is not base64") from exc
    pairs = _pairs(params)
    matched = False
    for candidate in _url_variants(url):
        expected = compute_signature(auth_token, candidate, pairs).encode("ascii")
        # Every variant is compared, so the time taken does not say which one matched.
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the URL and parameters")


def read_signed_form(
    auth_token: str, url: str, body: bytes, signature: str | None
) -> dict[str, str]:
    """A webhook's form parameters, once its signature is checked against ``url``
    (the exact URL the aggregator was given, query string included). Raises
    `SignatureError` or `WebhookError`; a repeated name keeps its last value."""
    pairs = parse_form(body)
    verify_signature(auth_token, url, pairs, signature)
    return dict(pairs)


def _required(form: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = form.get(name)
        if value:
            return value
    raise WebhookError(f"{names[0]} is missing", field=names[0])


def _int_field(form: Mapping[str, str], name: str, default: int | None) -> int | None:
    value = form.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value.strip())
    except ValueError as exc:
        raise WebhookError(f"{name} is not an integer: {value!r}", field=name) from exc


def parse_status_callback(form: Mapping[str, str]) -> StatusCallback:
    """A status callback's parameters (MessageSid, MessageStatus, ErrorCode, ...).

    The older SmsSid/SmsStatus names are read when the newer ones are absent.
    """
    raw_status = _required(form, "MessageStatus", "SmsStatus")
    return StatusCallback(
        message_sid=_required(form, "MessageSid", "SmsSid"),
        status=MessageStatus.parse(raw_status),
        raw_status=raw_status,
        error_code=_int_field(form, "ErrorCode", None),
        account_sid=form.get("AccountSid") or None,
        to=form.get("To") or None,
        from_=form.get("From") or None,
    )


def parse_inbound_message(form: Mapping[str, str]) -> InboundMessage:
    """An inbound message webhook's parameters (From, To, Body, MessageSid, NumSegments)."""
    if "Body" not in form:
        raise WebhookError("Body is missing", field="Body")
    return InboundMessage(
        message_sid=_required(form, "MessageSid", "SmsMessageSid", "SmsSid"),
        from_=_required(form, "From"),
        to=_required(form, "To"),
        body=form["Body"],
        num_segments=_int_field(form, "NumSegments", 1) or 1,
        num_media=_int_field(form, "NumMedia", 0) or 0,
        account_sid=form.get("AccountSid") or None,
        messaging_service_sid=form.get("MessagingServiceSid") or None,
    )
