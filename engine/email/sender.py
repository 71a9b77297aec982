"""The email sender: a stored message -> composed, DKIM-signed, submitted to
its relay; the outcome stored.

Per message: the RFC 5322 message is built from the stored subject, parts,
Message-ID and creation time (so a retry sends the same message), signed
with the sending domain's key off the event loop, `submitting` is
committed, then one SMTP transaction with the message's VERP return path
(`bounce+TOKEN@domain`). 250: `submitted` with the relay's queue id. 4xx (or
the relay unreachable): `deferred` to a retry time, doubling, until the
retry attempts are used (`failed`). 5xx: `bounced` with the relay's reply,
and the address on the bounce list. No answer after the message went:
`deferred` with `in_doubt` (the relay may hold it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from carriers.email.smtp import (
    SmtpNotAcknowledgedError,
    SmtpPermanentError,
    SmtpPool,
    SmtpTemporaryError,
)
from carriers.email.verp import verp_address
from engine.email.compose import build_message
from engine.email.tokens import BOUNCE, UNSUBSCRIBE, make_token
from engine.messaging import MessageTasks

if TYPE_CHECKING:
    from carriers.email.dkim import DkimKey
    from carriers.email.signer import Signer
    from engine.bus import EventBus
    from engine.email.config import EmailConfig
    from engine.store import Store

log = logging.getLogger("outdial.email")

DEFAULT_RETRY = (5, 60.0)


@dataclass(slots=True)
class EmailPending:
    id: int
    address: str
    sender: str
    relay: str
    subject: str
    text: str | None
    html: str | None
    message_ref: str
    created_at: datetime
    campaign: str | None = None
    tries: int = 0
    in_doubt: bool = False
    not_before: datetime | None = None
    reply_to: str | None = None

    @classmethod
    def of(cls, row: dict[str, Any]) -> EmailPending:
        created = row["created_at"]
        if isinstance(created, str):
            created = datetime.fromisoformat(created)
        return cls(
            id=int(row["id"]), address=row["address"], sender=row["sender"],
            relay=row["account"], subject=row.get("subject") or "", text=row.get("body") or None,
            html=row.get("html"), message_ref=row.get("message_ref") or "",
            created_at=created, campaign=row.get("campaign"), tries=int(row.get("tries") or 0),
            in_doubt=bool(row.get("in_doubt")), not_before=row.get("next_attempt_at"),
        )  # fmt: skip


class EmailSender(MessageTasks):
    what = "email"

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        cfg: EmailConfig,
        pools: dict[str, SmtpPool],
        signer: Signer | None,
        keys: dict[str, DkimKey],
        secret: bytes,
        unsubscribe_base: str | None,
        retry_of: Callable[[str | None], tuple[int, float]],
        reply_to_of: Callable[[str | None], str | None],
    ) -> None:
        super().__init__()
        self.store, self.bus, self.cfg = store, bus, cfg
        self.pools, self.signer, self.keys = pools, signer, keys
        self.secret, self.unsubscribe_base = secret, unsubscribe_base
        self.retry_of, self.reply_to_of = retry_of, reply_to_of
        self._slots = {name: asyncio.Semaphore(max(4, relay.connections * 4))
                       for name, relay in cfg.relays.items()}  # fmt: skip
        self.counts = {"submitted": 0, "bounced": 0, "deferred": 0, "failed": 0}

    def verp(self, message_id: int) -> str:
        token = make_token(self.secret, BOUNCE, message_id)
        return verp_address(token, self.cfg.domain, self.cfg.bounce_local)

    def compose(self, message: EmailPending) -> bytes:
        """The message as sent: built from what the store holds (so a retry is
        the same message)."""
        unsubscribe = None
        reply_to = self.reply_to_of(message.campaign)
        if message.campaign is not None:  # bulk mail: RFC 8058 one-click; not on notifications
            token = make_token(self.secret, UNSUBSCRIBE, message.id)
            mailto = f"unsubscribe+{token}@{self.cfg.domain}" if self.cfg.inbound else None
            if self.unsubscribe_base is not None:
                unsubscribe = (f"{self.unsubscribe_base}/u/{token}", mailto)
        if reply_to is None and self.cfg.inbound is not None:
            reply_to = f"reply+{make_token(self.secret, BOUNCE, message.id)}@{self.cfg.domain}"
        return build_message(
            sender=message.sender, to=message.address, subject=message.subject,
            text=message.text, html=message.html, message_id=message.message_ref,
            date=message.created_at, reply_to=reply_to, unsubscribe=unsubscribe,
        )  # fmt: skip

    async def _signed(self, message: EmailPending) -> bytes:
        data = self.compose(message)
        domain = message.sender.rpartition("@")[2].strip(">").lower()
        key = self.keys.get(domain)
        if key is None or self.signer is None:
            return data
        header: bytes = await self.signer.sign(data, key)
        return header + data

    async def _deliver(self, message: EmailPending) -> None:
        pool = self.pools.get(message.relay)
        if pool is None:
            await self.store.message_status(
                message.id, "failed", f"no relay {message.relay!r} in the config",
                error=f"no relay {message.relay!r}",
            )  # fmt: skip
            return
        data = await self._signed(message)
        async with self._slots[message.relay]:
            if self.closing:
                return
            await self.store.message_status(message.id, "submitting", None, tries="+1")
            message.tries += 1
            try:
                accepted = await pool.send(self.verp(message.id), message.address, data)
            except SmtpPermanentError as exc:
                if exc.about_relay:  # the relay refused us (AUTH, TLS), not this message
                    log.error("email: relay %s refused us: %s", message.relay, exc)
                    self._deferred(message, str(exc), in_doubt=False)
                else:
                    await self._bounced(message, exc)
                return
            except SmtpNotAcknowledgedError as exc:
                self._deferred(message, str(exc), in_doubt=True)
                return
            except SmtpTemporaryError as exc:
                self._deferred(message, str(exc), in_doubt=False)
                return
        self.store.set_message_status(message.id, "submitted", {"reply": accepted.reply},
                                      carrier_id=accepted.queue_id)  # fmt: skip
        self.counts["submitted"] += 1
        self.bus.publish("email.submitted", id=message.id, to=message.address,
                         campaign=message.campaign, queue_id=accepted.queue_id)  # fmt: skip

    async def _bounced(self, message: EmailPending, exc: SmtpPermanentError) -> None:
        reply = str(exc)
        self.store.set_message_status(message.id, "bounced", {"stage": exc.stage, "hard": True},
                                      error=reply)  # fmt: skip
        self.counts["bounced"] += 1
        await self.store.dnc_add_address(message.address, list=self.cfg.bounce_list,
                                         source="bounce", note=reply[:500],
                                         campaign=message.campaign)  # fmt: skip
        self.bus.publish("email.bounced", id=message.id, to=message.address,
                         campaign=message.campaign, reply=reply, hard=True)  # fmt: skip

    def _deferred(self, message: EmailPending, reason: str, *, in_doubt: bool) -> None:
        attempts, after = self.retry_of(message.campaign)
        fields: dict[str, Any] = {"error": reason}
        if in_doubt:
            fields["in_doubt"] = 1
            message.in_doubt = True
        if message.tries >= attempts:
            self.store.set_message_status(message.id, "failed", reason, **fields)
            self.counts["failed"] += 1
            self.bus.publish("email.failed", id=message.id, to=message.address, reason=reason)
            return
        message.not_before = datetime.now(UTC) + timedelta(
            seconds=after * (2 ** (message.tries - 1))
        )
        fields["next_attempt_at"] = message.not_before
        self.store.set_message_status(message.id, "deferred", reason, **fields)
        self.counts["deferred"] += 1
        self.bus.publish("email.deferred", id=message.id, to=message.address, reason=reason,
                         in_doubt=message.in_doubt)  # fmt: skip
        self.reschedule(message)
