"""One email campaign's pass over due contacts (the loop and the campaign's
state are engine/messaging.py's): the contact's address (the first valid one
of its address columns), not on the campaign's do-not-contact lists, the
one-click unsubscribe list or the bounce list; its subject and parts from the
template (a missing column skips the contact, with the reason); then, paced
to messages/s, the stored message (committed, the contact `sending`) and the
sender."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from carriers.sms.pacing import TokenBucket
from engine.errors import BadRequest
from engine.messaging import MessageCampaignRunner
from engine.sms.template import TemplateError
from engine.store.emaildnc import clean
from engine.store.messagedb import DuplicateMessage

if TYPE_CHECKING:
    from engine.bus import EventBus
    from engine.email.campaign import EmailCampaignConfig
    from engine.email.sender import EmailSender
    from engine.store import DialCandidate, Store

log = logging.getLogger("outdial.email")


def message_ref(domain: str) -> str:
    """A new Message-ID on the sending domain (RFC 5322 3.6.4)."""
    return f"<{uuid.uuid4().hex}@{domain}>"


class EmailCampaignRunner(MessageCampaignRunner):
    channel = "email"

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        sender: EmailSender,
        cfg: EmailCampaignConfig,
        domain: str,
        bounce_list: str,
    ) -> None:
        super().__init__(store, bus, cfg.name)
        self.sender, self.domain, self.bounce_list = sender, domain, bounce_list
        self.configure(cfg)

    def configure(self, cfg: EmailCampaignConfig) -> None:
        self.cfg = cfg
        self.bucket = TokenBucket(cfg.messages_per_second) if cfg.messages_per_second else None

    def _address(self, candidate: DialCandidate) -> tuple[str | None, str]:
        for column in self.cfg.address_columns:
            raw = candidate.attributes.get(column)
            if raw and raw.strip():
                try:
                    return clean(raw), ""
                except BadRequest:
                    return None, f"{column}: {raw.strip()!r} is not an email address"
        return None, f"no email address in {', '.join(self.cfg.address_columns)}"

    async def _pass(self, due: list[DialCandidate]) -> None:
        now = datetime.now(UTC)
        lists = self.cfg.checked_dnc_lists(self.bounce_list)
        found = {c.contact_id: self._address(c) for c in due}
        addresses = {a for a, _ in found.values() if a is not None}
        blocked = await self.store.dnc_addresses(addresses, now, lists=lists)
        people = await self.store.dnc_contacts([c.contact_id for c in due], now, lists=lists)
        loop = asyncio.get_running_loop()
        writes: list[asyncio.Task[None]] = []
        for candidate in due:
            if self.state != "running":
                break
            address, why = found[candidate.contact_id]
            hit = people.get(candidate.contact_id) or (blocked.get(address) if address else None)
            if address is None or hit is not None:
                self._skip(candidate, hit.reason if hit is not None else why)
                continue
            try:
                subject, text, html = self.cfg.template.render(candidate.attributes)
            except TemplateError as exc:
                self._skip(candidate, f"message: {exc}")
                continue
            if self.bucket is not None:
                wait = self.bucket.reserve(loop.time())
                if wait > 0:
                    await asyncio.sleep(wait)
            self._creating.add(candidate.contact_id)
            values = {
                "channel": "email", "contact_id": candidate.contact_id, "address": address,
                "sender": self.cfg.sender, "account": self.cfg.relay, "body": text or "",
                "html": html, "subject": subject, "message_ref": message_ref(self.domain),
                "template": self.cfg.template_name, "segments": 1,
                "created_at": datetime.now(UTC),
            }  # fmt: skip
            writes.append(loop.create_task(self._create(values)))
        if writes:
            await asyncio.gather(*writes)

    async def _create(self, values: dict[str, Any]) -> None:
        from engine.email.sender import EmailPending

        contact_id = int(values["contact_id"])
        try:
            message_id = await self.store.create_message(values, campaign=self.name)
        except DuplicateMessage as dup:
            log.info("email campaign %s: contact %s already has message %s", self.name,
                     contact_id, dup.message_id)  # fmt: skip
            self._creating.discard(contact_id)
            row = await self.store.email_outbound(dup.message_id)
            if row is not None and row["status"] in ("queued", "submitting", "deferred"):
                self.sender.schedule(EmailPending.of(row))
            return
        self.counts["queued"] += 1
        self.sender.schedule(EmailPending.of({
            **values, "id": message_id, "campaign": self.name,
        }))  # fmt: skip
        self._creating.discard(contact_id)
