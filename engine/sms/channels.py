"""One SMS account as the sender sees it: `submit(outgoing, part)` -> carrier id.

An SMPP account sends each segment as its own submit_sm (with the
concatenation UDH), each acknowledged under its own id and followed by its
own receipt, so the store keeps the parts (message_parts). An HTTP
aggregator takes the whole text in one request and segments it itself: it is
part 0, "the whole message".

Every failure is a `SendFailure`: `retryable` (throttled, queue full, 429,
5xx: send the same again later), and `in_doubt` (no answer came: the carrier
may or may not hold it; sending again may duplicate it, and the store says so).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from carriers.sms.encoding import Encoding, SegmentedMessage, user_data_parts
from carriers.sms.http.client import KannelSender, TwilioSender
from carriers.sms.http.errors import (
    BadResponseError,
    SendNotAcknowledgedError,
    SendRejectedError,
)
from carriers.sms.http.kannel import KannelAccount
from carriers.sms.http.twilio import TwilioAccount
from carriers.sms.smpp.errors import (
    SmppStateError,
    SubmitNotAcknowledgedError,
    SubmitRejectedError,
)
from carriers.sms.smpp.events import SessionEvent
from carriers.sms.smpp.pdu import ShortMessage
from carriers.sms.smpp.session import SessionConfig
from engine.sms.config import HttpConfig, SmsAccountConfig

log = logging.getLogger("outdial.sms")

WHOLE = 0  # the part number of a message an aggregator segments itself
ESM_UDHI = 0x40  # esm_class: the short message starts with a user data header
DC_DEFAULT, DC_UCS2 = 0x00, 0x08
TON_INTERNATIONAL, TON_NETWORK, TON_ALPHANUMERIC = 1, 3, 5
NPI_E164, NPI_UNKNOWN = 1, 0
_DIGITS = re.compile(r"\+?[0-9]+")


class SendFailure(Exception):
    """``retry_after``: the carrier's own wait before a retry (HTTP Retry-After), if any."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        in_doubt: bool = False,
        retry_after: float | None = None,
        account_refused: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason, self.retryable, self.in_doubt = reason, retryable, in_doubt
        self.retry_after = retry_after
        # The carrier refused the account, not the message: retried, no try used up.
        self.account_refused = account_refused


@dataclass(frozen=True, slots=True)
class Outgoing:
    message_id: int
    to: str  # E.164
    sender: str
    text: str
    segmented: SegmentedMessage


BeforeSend = Callable[[], Awaitable[None]] | None


class Channel(Protocol):
    name: str
    whole_message: bool  # True: one request for the whole text (part 0)
    paused_until: float  # event loop time the carrier refused the account until

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def submit(self, out: Outgoing, part: int, before_send: BeforeSend = None) -> str:
        """Send `part`; ``before_send`` is awaited just before the request or PDU
        leaves (after any wait for the carrier's window or pacing)."""
        ...

    def describe(self) -> dict[str, Any]: ...


def source_address(sender: str) -> tuple[str, int, int]:
    """(address, ton, npi): E.164 international, a short code, or alphanumeric."""
    if _DIGITS.fullmatch(sender):
        digits = sender.lstrip("+")
        if sender.startswith("+") or len(digits) > 8:
            return digits, TON_INTERNATIONAL, NPI_E164
        return digits, TON_NETWORK, NPI_UNKNOWN
    return sender, TON_ALPHANUMERIC, NPI_UNKNOWN


def short_messages(out: Outgoing) -> tuple[ShortMessage, ...]:
    """The submit_sm bodies of every segment, in order (reference: the message id)."""
    seg = out.segmented
    parts = user_data_parts(seg, out.message_id % 256)
    source, ton, npi = source_address(out.sender)
    coding = DC_DEFAULT if seg.encoding is Encoding.GSM7 else DC_UCS2
    esm = ESM_UDHI if len(parts) > 1 else 0
    return tuple(
        ShortMessage(
            destination_addr=out.to.lstrip("+"),
            short_message=data,
            source_addr=source,
            source_addr_ton=ton,
            source_addr_npi=npi,
            dest_addr_ton=TON_INTERNATIONAL,
            dest_addr_npi=NPI_E164,
            esm_class=esm,
            registered_delivery=1,
            data_coding=coding,
        )
        for data in parts
    )


class SmppChannel:
    whole_message = False
    paused_until = 0.0  # never: a refused bind is the account's reconnect backoff

    def __init__(
        self, config: SmsAccountConfig, on_event: Callable[[str, SessionEvent], None]
    ) -> None:
        from carriers.sms.smpp.account import AccountConfig, SmppAccount

        self.name = config.name
        session = SessionConfig(
            config.system_id,
            config.password,
            config.system_type,
            window=config.window,
            response_timeout=config.response_timeout,
        )
        self.account = SmppAccount(
            AccountConfig(
                name=config.name,
                host=config.host,
                port=config.port,
                session=session,
                binds=config.binds,
                rate=config.rate,
                bind_rate=config.bind_rate,
            ),
            on_event=on_event,
        )
        self._parts: dict[int, tuple[ShortMessage, ...]] = {}

    async def start(self) -> None:
        await self.account.start()

    async def close(self) -> None:
        await self.account.close()

    async def submit(self, out: Outgoing, part: int, before_send: BeforeSend = None) -> str:
        parts = self._parts.get(out.message_id)
        if parts is None:
            parts = self._parts[out.message_id] = short_messages(out)
        try:
            carrier_id = await self.account.submit(parts[part - 1], before_send)
        except SubmitRejectedError as exc:
            raise SendFailure(str(exc), retryable=exc.retryable) from None
        except (SubmitNotAcknowledgedError, SmppStateError) as exc:
            raise SendFailure(str(exc), retryable=True, in_doubt=True) from None
        finally:
            if part == len(parts):
                self._parts.pop(out.message_id, None)
        return carrier_id

    def forget(self, message_id: int) -> None:
        self._parts.pop(message_id, None)

    def describe(self) -> dict[str, Any]:
        return {
            "type": "smpp",
            "bound": self.account.bound,
            "last_error": getattr(self.account, "last_error", None),
        }


class HttpChannel:
    whole_message = True

    def __init__(self, config: SmsAccountConfig, http: HttpConfig | None) -> None:
        self.name, self.config, self.http = config.name, config, http
        self.session: aiohttp.ClientSession | None = None
        self.paused_until = 0.0  # event loop time: refused (401/403) until then
        self.last_error: str | None = None
        self._twilio: TwilioSender | None = None
        self._kannel: KannelSender | None = None

    def webhook_url(self, kind: str) -> str | None:
        if self.http is None:
            return None
        return f"{self.http.public_url}/sms/{self.config.type}/{self.name}/{kind}"

    async def start(self) -> None:
        # aiohttp asks for gzip/deflate, so it must also decompress the answers: a
        # gzipped 201 read raw is "no message sid", an in-doubt resend, a duplicate.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        c = self.config
        if c.type == "twilio":
            account = TwilioAccount(c.account_sid, c.auth_token, c.url)
            self._twilio = TwilioSender(self.session, account, timeout=c.timeout)
        else:
            dlr = self.webhook_url("dlr")
            if dlr is not None and c.dlr_key:
                # ASCII (the config checks it) quotes as %2X..%7X: never one of
                # Kannel's %-escapes, which it substitutes anywhere in the URL.
                dlr += f"?key={quote(c.dlr_key, safe='')}"
            self._kannel = KannelSender(
                self.session,
                KannelAccount(c.url, c.username, c.password),
                dlr_base_url=dlr,
                timeout=c.timeout,
            )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def submit(self, out: Outgoing, part: int, before_send: BeforeSend = None) -> str:
        del part  # always the whole message
        if before_send is not None:
            await before_send()
        try:
            if self._twilio is not None:
                sent = await self._twilio.send(
                    to=out.to,
                    body=out.text,
                    from_=out.sender,
                    status_callback=self.webhook_url("status"),
                )
                return sent.sid
            assert self._kannel is not None
            await self._kannel.send(
                to=out.to, text=out.text, reference=str(out.message_id), from_=out.sender
            )
            return str(out.message_id)  # Kannel's reports carry our reference
        except SendRejectedError as exc:
            if exc.http_status in (401, 403):
                pause = self.config.refused_pause
                self.paused_until = asyncio.get_running_loop().time() + pause
                self.last_error = f"{exc} (refused the account: paused {pause:g} s)"
                log.error("sms: account %s: %s", self.name, self.last_error)
                raise SendFailure(self.last_error, retryable=True, retry_after=pause,
                                  account_refused=True) from None  # fmt: skip
            raise SendFailure(
                str(exc), retryable=exc.retryable, retry_after=exc.retry_after
            ) from None
        except (SendNotAcknowledgedError, BadResponseError) as exc:
            raise SendFailure(str(exc), retryable=True, in_doubt=True) from None

    def describe(self) -> dict[str, Any]:
        paused = self.paused_until - asyncio.get_running_loop().time()
        return {"type": self.config.type, "last_error": self.last_error,
                "paused_s": round(paused, 1) if paused > 0 else 0}  # fmt: skip


def make_channel(
    config: SmsAccountConfig,
    http: HttpConfig | None,
    on_smpp_event: Callable[[str, str, SessionEvent], None],
) -> Channel:
    if config.type == "smpp":
        name = config.name
        return SmppChannel(config, lambda bind, event: on_smpp_event(name, bind, event))
    return HttpChannel(config, http)
