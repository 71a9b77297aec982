"""Kannel's smsbox HTTP interface, sans-IO: the ``sendsms`` URL, its reply, and the
delivery-report callback.

A send is one GET of ``/cgi-bin/sendsms`` with the sendsms-user's credentials.
Kannel returns no message id: delivery reports are matched through the
``dlr-url`` we give, which carries our own reference and the escapes Kannel
substitutes when it calls back (``%d`` the report type, ``%A`` the SMSC's
answer, ``%T`` the time, ``%p``/``%P`` the report's sender (our message's
receiver) and receiver, ``%i`` the smsc-id,
``%F`` the SMSC's message id). Kannel URL-encodes the values it substitutes.

Text that fits GSM 03.38 goes as ``coding=0`` in UTF-8 (Kannel converts it);
anything else as ``coding=2`` (UCS-2) with the text in UTF-16BE and
``charset=UTF-16BE``, so no character depends on Kannel's charset guess.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from carriers.sms.encoding import is_gsm7
from carriers.sms.http.errors import SendRejectedError, WebhookError
from carriers.sms.http.request import HttpRequest

__all__ = [
    "DLR_PARAMETERS",
    "DeliveryReport",
    "DlrType",
    "KannelAccount",
    "SendsmsReply",
    "build_dlr_url",
    "build_sendsms_request",
    "parse_delivery_report",
    "parse_sendsms_reply",
]


class DlrType(enum.IntFlag):
    """Kannel's dlr-mask bits, and the ``%d`` of one delivery report."""

    DELIVERED = 1  # delivered to the handset (the SMSC's receipt)
    UNDELIVERED = 2  # not delivered to the handset
    QUEUED_ON_SMSC = 4  # buffered at the SMSC (intermediate)
    DELIVERED_TO_SMSC = 8  # the SMSC accepted it (submit acknowledged)
    NOT_DELIVERED_TO_SMSC = 16  # the SMSC refused it

    @property
    def final(self) -> bool:
        """This report ends the message: delivered, undelivered or refused."""
        final = DlrType.DELIVERED | DlrType.UNDELIVERED | DlrType.NOT_DELIVERED_TO_SMSC
        return bool(self & final)


ALL_REPORTS = (
    DlrType.DELIVERED
    | DlrType.UNDELIVERED
    | DlrType.QUEUED_ON_SMSC
    | DlrType.DELIVERED_TO_SMSC
    | DlrType.NOT_DELIVERED_TO_SMSC
)

# Our query parameter -> the escape Kannel substitutes into the dlr-url. A report
# travels from the handset back to us, so in it %p (sender) is the number we sent
# to and %P (receiver) is the sender we sent from: seen so against a real Kannel.
DLR_PARAMETERS: tuple[tuple[str, str], ...] = (
    ("type", "%d"),
    ("answer", "%A"),
    ("ts", "%T"),
    ("to", "%p"),
    ("from", "%P"),
    ("smsc", "%i"),
    ("smsc_id", "%F"),
)
REFERENCE_PARAMETER = "ref"


@dataclass(frozen=True, slots=True)
class KannelAccount:
    """A sendsms-user on one smsbox: ``base_url`` like ``http://127.0.0.1:13013``."""

    base_url: str
    username: str
    password: str = field(repr=False)
    path: str = "/cgi-bin/sendsms"
    smsc: str | None = None  # route to one smsc-id (Kannel's ``smsc`` parameter)


@dataclass(frozen=True, slots=True)
class SendsmsReply:
    """smsbox took the message: ``code`` 0 accepted for delivery, 3 queued for later
    delivery (bearerbox will send it when an SMSC link is up)."""

    code: int
    text: str

    @property
    def queued(self) -> bool:
        return self.code == 3


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One call of the dlr-url: report ``type`` for the message we called ``reference``."""

    reference: str
    type: DlrType
    answer: str = ""
    timestamp: int | None = None
    from_: str | None = None
    to: str | None = None
    smsc: str | None = None
    smsc_message_id: str | None = None


def build_dlr_url(base_url: str, reference: str) -> str:
    """``base_url`` (our listener's delivery-report URL) with our reference and the
    Kannel escapes appended. The escapes stay literal here: Kannel substitutes them.

    ``reference`` must be printable ASCII: Kannel scans the whole URL for ``%x``
    escapes, and a percent-encoded non-ASCII byte (``%C3``, ``%F0``) would read as
    one (``%C`` coding, ``%F`` the SMSC id); ASCII encodes with a digit after ``%``.
    """
    if not reference or not reference.isascii() or not reference.isprintable():
        raise ValueError(f"reference {reference!r} must be non-empty printable ASCII")
    parts = urlsplit(base_url)
    ours = f"{REFERENCE_PARAMETER}={quote(reference, safe='')}"
    escapes = "&".join(f"{name}={escape}" for name, escape in DLR_PARAMETERS)
    query = "&".join(q for q in (parts.query, ours, escapes) if q)
    return urlunsplit(parts._replace(query=query))


def build_sendsms_request(
    account: KannelAccount,
    *,
    to: str,
    text: str,
    from_: str | None = None,
    dlr_url: str | None = None,
    dlr_mask: DlrType = ALL_REPORTS,
) -> HttpRequest:
    """The GET that sends ``text`` to ``to``. With ``dlr_url`` (see `build_dlr_url`),
    Kannel calls it for each report type in ``dlr_mask``."""
    if not to:
        raise ValueError("to is empty")
    params: list[tuple[str, str | bytes]] = [
        ("username", account.username),
        ("password", account.password),
        ("to", to),
    ]
    if from_ is not None:
        params.append(("from", from_))
    if is_gsm7(text):
        params += [("coding", "0"), ("charset", "UTF-8"), ("text", text.encode("utf-8"))]
    else:
        params += [("coding", "2"), ("charset", "UTF-16BE"), ("text", text.encode("utf-16-be"))]
    if account.smsc is not None:
        params.append(("smsc", account.smsc))
    if dlr_url is not None:
        params += [("dlr-mask", str(int(dlr_mask))), ("dlr-url", dlr_url)]
    query = urlencode(params, quote_via=quote)
    url = f"{account.base_url.rstrip('/')}{account.path}?{query}"
    return HttpRequest(method="GET", url=url)


_REPLY = re.compile(r"^\s*(\d+)\s*:\s*(.*?)\s*$", re.DOTALL)


def parse_sendsms_reply(status: int, body: bytes) -> SendsmsReply:
    """Read smsbox's answer: ``0: Accepted for delivery`` and ``3: Queued for later
    delivery`` (HTTP 202) are success; anything else raises `SendRejectedError`,
    retryable for 5xx and 503 ("Sending failed.": bearerbox could not take it)."""
    text = body.decode("utf-8", "replace").strip()
    match = _REPLY.match(text)
    code = int(match.group(1)) if match else None
    if 200 <= status < 300 and match is not None and code in (0, 3):
        return SendsmsReply(code=int(match.group(1)), text=match.group(2))
    if 200 <= status < 300 and code is None and text.lower().startswith("sent"):
        return SendsmsReply(code=0, text=text)  # Kannel before 1.4 answered "Sent."
    raise SendRejectedError(
        f"Kannel sendsms HTTP {status}: {text[:200] or '(empty)'}",
        http_status=status,
        code=code,
        retryable=status >= 500,
    )


def parse_delivery_report(query: Mapping[str, str]) -> DeliveryReport:
    """A dlr-url call's query parameters (as `build_dlr_url` named them)."""
    reference = query.get(REFERENCE_PARAMETER)
    if not reference:
        raise WebhookError(f"{REFERENCE_PARAMETER} is missing", field=REFERENCE_PARAMETER)
    raw_type = query.get("type", "")
    try:
        value = int(raw_type)
    except ValueError as exc:
        raise WebhookError(f"type is not an integer: {raw_type!r}", field="type") from exc
    if value <= 0 or value & ~int(ALL_REPORTS):
        raise WebhookError(f"type {value} is not a Kannel report type", field="type")
    raw_ts = query.get("ts", "")
    timestamp: int | None
    try:
        timestamp = int(raw_ts) if raw_ts else None
    except ValueError:
        timestamp = None  # an unsubstituted escape or a bad clock: not worth losing the report
    return DeliveryReport(
        reference=reference,
        type=DlrType(value),
        answer=query.get("answer", ""),
        timestamp=timestamp,
        from_=query.get("from") or None,
        to=query.get("to") or None,
        smsc=query.get("smsc") or None,
        smsc_message_id=query.get("smsc_id") or None,
    )
