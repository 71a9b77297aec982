"""The thin aiohttp layer: senders that perform the adapters' requests, and
webhook handlers for the daemon's HTTP listener.

Everything protocol-shaped is in `twilio.py` and `kannel.py`; this module only
moves bytes and maps outcomes to HTTP answers: a webhook whose signature is
missing or wrong gets 403, a malformed one 400, and only a checked, parsed one
reaches the callback.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import aiohttp
from aiohttp import web
from yarl import URL

from carriers.sms.http.errors import SendNotAcknowledgedError, SignatureError, WebhookError
from carriers.sms.http.kannel import (
    ALL_REPORTS,
    DeliveryReport,
    DlrType,
    KannelAccount,
    SendsmsReply,
    build_dlr_url,
    build_sendsms_request,
    parse_delivery_report,
    parse_sendsms_reply,
)
from carriers.sms.http.request import HttpRequest
from carriers.sms.http.twilio import (
    SIGNATURE_HEADER,
    InboundMessage,
    SentMessage,
    StatusCallback,
    TwilioAccount,
    build_send_request,
    parse_inbound_message,
    parse_send_response,
    parse_status_callback,
    read_signed_form,
)

__all__ = [
    "KannelSender",
    "TwilioSender",
    "kannel_dlr_handler",
    "perform",
    "twilio_inbound_handler",
    "twilio_status_handler",
]

T = TypeVar("T")
Callback = Callable[[T], Awaitable[None] | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def perform(
    session: aiohttp.ClientSession, request: HttpRequest, *, seconds: float
) -> tuple[int, bytes, dict[str, str]]:
    """Send ``request`` (``seconds`` at most, in all) and return (status, body,
    headers). The URL goes exactly as built (no re-encoding). No answer raises
    `SendNotAcknowledgedError`."""
    try:
        async with session.request(
            request.method,
            URL(request.url, encoded=True),
            headers=dict(request.headers),
            data=request.body or None,
            timeout=aiohttp.ClientTimeout(total=seconds),
            allow_redirects=False,
        ) as response:
            body = await response.read()
            return response.status, body, dict(response.headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SendNotAcknowledgedError(
            f"{request.method} {request.url.split('?', 1)[0]}: no answer ({exc!r})"
        ) from exc


class TwilioSender:
    """Sends through one account of a Twilio-shaped Messages API."""

    def __init__(
        self, session: aiohttp.ClientSession, account: TwilioAccount, *, timeout: float = 15.0
    ) -> None:
        self.session = session
        self.account = account
        self.timeout = timeout

    async def send(
        self,
        *,
        to: str,
        body: str,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
    ) -> SentMessage:
        """The message sid and first status, or `SendRejectedError` (see its
        ``retryable``), `BadResponseError` or `SendNotAcknowledgedError`."""
        request = build_send_request(
            self.account,
            to=to,
            body=body,
            from_=from_,
            messaging_service_sid=messaging_service_sid,
            status_callback=status_callback,
        )
        status, data, headers = await perform(self.session, request, seconds=self.timeout)
        return parse_send_response(status, data, headers)


class KannelSender:
    """Sends through one Kannel smsbox; ``dlr_base_url`` is our listener's
    delivery-report URL (None: ask for no reports)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        account: KannelAccount,
        *,
        dlr_base_url: str | None = None,
        dlr_mask: DlrType = ALL_REPORTS,
        timeout: float = 15.0,
    ) -> None:
        self.session = session
        self.account = account
        self.dlr_base_url = dlr_base_url
        self.dlr_mask = dlr_mask
        self.timeout = timeout

    async def send(
        self, *, to: str, text: str, reference: str, from_: str | None = None
    ) -> SendsmsReply:
        """Send ``text``; its delivery reports will carry ``reference`` (ours: Kannel
        has no message id to give back)."""
        dlr_url = None
        if self.dlr_base_url is not None:
            dlr_url = build_dlr_url(self.dlr_base_url, reference)
        request = build_sendsms_request(
            self.account, to=to, text=text, from_=from_, dlr_url=dlr_url, dlr_mask=self.dlr_mask
        )
        status, data, _ = await perform(self.session, request, seconds=self.timeout)
        return parse_sendsms_reply(status, data)


async def _deliver(callback: Callback[T], event: T) -> None:
    result = callback(event)
    if inspect.isawaitable(result):
        await result


def _twilio_handler(
    auth_token: str,
    parse: Callable[[Mapping[str, str]], T],
    callback: Callback[T],
    public_url: str | None,
) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        # The signature covers the URL the aggregator was given; behind a proxy
        # that is not the one we see, hence ``public_url``.
        url = public_url if public_url is not None else str(request.url)
        body = await request.read()
        try:
            form = read_signed_form(auth_token, url, body, request.headers.get(SIGNATURE_HEADER))
            event = parse(form)
        except SignatureError as exc:
            return web.Response(status=403, text=str(exc))
        except WebhookError as exc:
            return web.Response(status=400, text=str(exc))
        await _deliver(callback, event)
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    return handler


def twilio_status_handler(
    auth_token: str, on_status: Callback[StatusCallback], *, public_url: str | None = None
) -> Handler:
    """An aiohttp handler for status callbacks: verified, parsed, given to ``on_status``."""
    return _twilio_handler(auth_token, parse_status_callback, on_status, public_url)


def twilio_inbound_handler(
    auth_token: str, on_message: Callback[InboundMessage], *, public_url: str | None = None
) -> Handler:
    """An aiohttp handler for inbound messages; it answers empty TwiML (no auto-reply)."""
    return _twilio_handler(auth_token, parse_inbound_message, on_message, public_url)


def kannel_dlr_handler(
    on_report: Callback[DeliveryReport], *, secret: str | None = None
) -> Handler:
    """An aiohttp handler for Kannel's dlr-url calls. Kannel signs nothing, so with
    ``secret`` a ``key`` query parameter must equal it (put ``?key=...`` in the
    dlr base URL); without it, keep the listener off public networks."""

    async def handler(request: web.Request) -> web.StreamResponse:
        # Kannel puts every parameter in the dlr-url's query, whatever the method.
        query: Mapping[str, str] = request.query
        if secret is not None and not hmac.compare_digest(
            query.get("key", "").encode(), secret.encode()
        ):
            return web.Response(status=403, text="bad or missing key")
        try:
            report = parse_delivery_report(query)
        except WebhookError as exc:
            return web.Response(status=400, text=str(exc))
        await _deliver(on_report, report)
        return web.Response(text="OK")

    return handler
