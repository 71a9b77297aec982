"""The daemon's HTTP listener (aiohttp): today the SMS aggregators' webhooks;
the HTTP API extends the same server.

Routes, per SMS account of the `sms:` section:

- `POST /sms/twilio/{account}/status`  status callbacks (X-Twilio-Signature checked)
- `POST /sms/twilio/{account}/inbound` inbound messages (the same check)
- `GET|POST /sms/kannel/{account}/dlr` Kannel delivery reports (`key` = the account's dlr_key)
- `GET|POST /sms/kannel/{account}/mo`  Kannel sms-service get-url for inbound messages:
  `...?key=KEY&from=%p&to=%P&text=%b&coding=%c&charset=%C`, with `max-messages = 0`
- `GET /health`                         200 while the daemon runs

Kannel substitutes a UCS-2 message's text as its UTF-16BE bytes, URL-encoded
(`%a` even splits them at 0x20 bytes), so the MO route decodes `text` from
bytes with `charset` (`%C`, or UTF-16BE for `coding` 2; UTF-8 when neither
comes). The sms-service needs `max-messages = 0`: every answer (HELP, the STOP
confirmation) goes through sendsms, stored and tracked, and without it smsbox
texts the customer "<Empty reply from service provider>" for our empty answer
(and "Could not fetch content" for a 403), both seen against Kannel 1.4.5.

The signature covers the URL the aggregator was given, so `http.public_url`
must be the address the aggregator calls (behind a proxy, the proxy's).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus, unquote_to_bytes

from aiohttp import web

from carriers.sms.http.client import (
    kannel_dlr_handler,
    twilio_inbound_handler,
    twilio_status_handler,
)
from carriers.sms.http.kannel import DeliveryReport, DlrType
from carriers.sms.http.twilio import InboundMessage, MessageStatus, StatusCallback
from engine.config import ConfigError

if TYPE_CHECKING:
    from engine.app import App
    from engine.sms.config import HttpConfig, SmsAccountConfig
    from engine.sms.service import SmsService

log = logging.getLogger("outdial.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# How long a webhook for an id not yet recorded waits for the send's answer: the
# aggregator may call back (a status, Kannel's type 8 or 16) before it reaches us.
RECEIPT_PATIENCE = 5.0

_TWILIO_STATUS = {
    MessageStatus.DELIVERED: "delivered",
    MessageStatus.READ: "delivered",
    MessageStatus.UNDELIVERED: "undelivered",
    MessageStatus.FAILED: "undelivered",
    MessageStatus.CANCELED: "undelivered",
}


def _kannel_status(report: DeliveryReport) -> str:
    if report.type & DlrType.DELIVERED:
        return "delivered"
    if report.type & (DlrType.UNDELIVERED | DlrType.NOT_DELIVERED_TO_SMSC):
        return "undelivered"
    return "submitted"  # intermediate (queued on / delivered to the SMSC)


def kannel_mo_fields(raw_query: str) -> dict[str, str]:
    """The MO call's query parameters, ``text`` decoded from its bytes with
    ``charset`` (Kannel's %C) or, failing that, UTF-16BE for ``coding`` 2 (%c),
    else UTF-8. ValueError names an unknown charset or undecodable text."""
    raw: dict[str, bytes] = {}
    for pair in raw_query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            raw[unquote_plus(name)] = unquote_to_bytes(value.replace("+", " "))
    fields = {k: v.decode("utf-8", "replace") for k, v in raw.items() if k != "text"}
    if "text" in raw:
        default = "UTF-16BE" if fields.get("coding", "").strip() == "2" else "UTF-8"
        charset = fields.get("charset", "").strip() or default
        try:
            fields["text"] = raw["text"].decode(charset)
        except LookupError:
            raise ValueError(f"unknown charset {charset!r}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"text is not {charset}: {exc.reason}") from None
    return fields


class WebServer:
    def __init__(self, app: App, config: HttpConfig) -> None:
        self.app, self.config = app, config
        self.web = web.Application(client_max_size=256 * 1024)
        self.web.router.add_get("/health", self._health)
        sms = app.sms
        if sms is not None and sms.cfg is not None:
            for account in sms.cfg.accounts.values():
                self._sms_routes(sms, account)
        if app.email is not None and app.email.enabled:
            from engine.email.web import add_email_routes

            add_email_routes(self.web.router, app.email)
        self._runner: web.AppRunner | None = None
        self.port = config.port

    def _sms_routes(self, sms: SmsService, account: SmsAccountConfig) -> None:
        name, base = account.name, f"/sms/{account.type}/{account.name}"
        public = f"{self.config.public_url}{base}"
        router = self.web.router
        if account.type == "twilio":

            async def on_status(event: StatusCallback) -> None:
                status = _TWILIO_STATUS.get(event.status, "submitted")
                error = f"error {event.error_code}" if event.error_code else None
                await sms.on_receipt(
                    name,
                    event.message_sid,
                    status,
                    {"status": event.raw_status},
                    error,
                    patience=RECEIPT_PATIENCE,
                )

            async def on_message(event: InboundMessage) -> None:
                await sms.on_inbound(name, event.from_, event.to, event.body,
                                     segments=max(1, event.num_segments),
                                     carrier_id=event.message_sid)  # fmt: skip

            router.add_post(
                f"{base}/status",
                twilio_status_handler(account.auth_token, on_status, public_url=f"{public}/status"),
            )
            router.add_post(
                f"{base}/inbound",
                twilio_inbound_handler(
                    account.auth_token, on_message, public_url=f"{public}/inbound"
                ),
            )
        elif account.type == "kannel":

            async def on_report(report: DeliveryReport) -> None:
                status = _kannel_status(report)
                # The SMSC's words (%A: "NACK/0x0000000b/Invalid Destination Address",
                # "id:... stat:UNDELIV err:..."), stored as the message's error.
                error = (report.answer or f"report type {int(report.type)}")[:500]
                await sms.on_receipt(
                    name,
                    report.reference,
                    status,
                    {"type": int(report.type), "answer": report.answer},
                    error if status == "undelivered" else None,
                    patience=RECEIPT_PATIENCE,
                )

            dlr = kannel_dlr_handler(on_report, secret=account.dlr_key)
            router.add_get(f"{base}/dlr", dlr)
            router.add_post(f"{base}/dlr", dlr)
            mo = self._kannel_mo(sms, name, account.dlr_key)
            router.add_get(f"{base}/mo", mo)
            router.add_post(f"{base}/mo", mo)

    @staticmethod
    def _kannel_mo(sms: SmsService, account: str, key: str | None) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            # Kannel puts every parameter in the URL's query, whatever the method.
            if key is not None and not hmac.compare_digest(
                request.query.get("key", "").encode(), key.encode()
            ):
                return web.Response(status=403, text="bad or missing key")
            try:
                query = kannel_mo_fields(request.rel_url.raw_query_string)
            except ValueError as exc:
                return web.Response(status=400, text=str(exc))
            missing = [p for p in ("from", "to", "text") if p not in query]
            if missing:
                return web.Response(status=400, text=f"missing {', '.join(missing)}")
            await sms.on_inbound(account, query["from"], query["to"], query["text"])
            return web.Response(text="")  # nothing to text back (max-messages = 0)

        return handler

    async def _health(self, request: web.Request) -> web.StreamResponse:
        del request
        return web.json_response({"status": "ok"})

    async def start(self) -> None:
        self._runner = web.AppRunner(self.web, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:  # in use, or not an address of this host
            await self._runner.cleanup()
            raise ConfigError(
                str(self.app.config.path),
                None,
                "http.listen",
                f"cannot listen on {self.config.listen}: {exc.strerror or exc}",
            ) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("http listening on %s:%s", self.config.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
