"""One SMS campaign's pass over due contacts: checked -> a stored message -> the
sender (the loop and the campaign's state are engine/messaging.py's).

Per contact, in the campaign's order: the first number (of `phone_columns`)
not on one of its do-not-contact lists, inside its sending hours in the
contact's own zone (else `deferred` until they open), the text filled from
its columns (a missing column skips the contact, with the reason), at most
`max_segments` segments; then, paced to the campaign's messages/s and
segments/s, the message row (committed, the contact `sending`) and the sender.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from carriers.sms.encoding import SegmentedMessage, segment
from carriers.sms.errors import SmsEncodingError
from carriers.sms.pacing import TokenBucket
from engine.compliance.campaign import calling_hours
from engine.compliance.locate import LocateError
from engine.messaging import COMPLETED, PAUSED, RUNNING, STOPPED, MessageCampaignRunner
from engine.sms.sender import Pending
from engine.sms.template import TemplateError
from engine.store.messagedb import DuplicateMessage

if TYPE_CHECKING:
    from engine.bus import EventBus
    from engine.sms.campaign import SmsCampaignConfig
    from engine.sms.sender import Sender
    from engine.store import DialCandidate, Store

log = logging.getLogger("outdial.sms")

__all__ = ["COMPLETED", "PAUSED", "RUNNING", "STOPPED", "SmsCampaignRunner"]


class SmsCampaignRunner(MessageCampaignRunner):
    channel = "sms"

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        sender: Sender,
        cfg: SmsCampaignConfig,
        legal_hours: str,
    ) -> None:
        super().__init__(store, bus, cfg.name)
        self.sender = sender
        self.legal_hours = legal_hours
        self.configure(cfg)

    def configure(self, cfg: SmsCampaignConfig) -> None:
        self.cfg = cfg
        self.hours = calling_hours(cfg.hours, str(cfg.file), self.legal_hours)
        self.locator = cfg.hours.locator()
        self.messages_bucket = (
            TokenBucket(cfg.messages_per_second) if cfg.messages_per_second else None
        )
        self.segments_bucket = (
            TokenBucket(cfg.segments_per_second, max(1.0, cfg.segments_per_second / 10))
            if cfg.segments_per_second
            else None
        )

    async def _pass(self, due: list[DialCandidate]) -> None:
        now = datetime.now(UTC)
        lists = self.cfg.checked_dnc_lists
        numbers = {n for c in due for n in c.phones}
        blocked = await self.store.dnc_numbers(numbers, now, lists=lists)
        people = await self.store.dnc_contacts([c.contact_id for c in due], now, lists=lists)
        writes: list[asyncio.Task[None]] = []
        for candidate in due:
            if self.state != RUNNING:
                break
            hit = people.get(candidate.contact_id)
            if hit is not None:
                self._skip(candidate, hit.reason)
                continue
            number, why = self._number(candidate, blocked)
            if number is None:
                self._skip(candidate, why)
                continue
            if not self._in_hours(candidate, number, now):
                continue
            try:
                text = self._text(candidate)
                seg = segment(text, smart=self.cfg.smart_encoding)
            except (TemplateError, SmsEncodingError) as exc:
                self._skip(candidate, f"message: {exc}")
                continue
            if len(seg.segments) > self.cfg.max_segments:
                self._skip(
                    candidate,
                    f"message: {len(seg.segments)} segments, the campaign "
                    f"allows {self.cfg.max_segments}",
                )
                continue
            await self._pace(len(seg.segments))
            self._creating.add(candidate.contact_id)
            values = {
                "channel": "sms",
                "contact_id": candidate.contact_id,
                "address": number,
                "sender": self.cfg.sender,
                "account": self.cfg.account,
                "body": seg.text,
                "encoding": seg.encoding.value,
                "segments": len(seg.segments),
                "template": self.cfg.template_name,
            }
            writes.append(asyncio.get_running_loop().create_task(self._create(values, seg)))
        if writes:
            await asyncio.gather(*writes)

    async def _create(self, values: dict[str, Any], seg: SegmentedMessage | None = None) -> None:
        contact_id = int(values["contact_id"])
        try:
            message_id = await self.store.create_message(values, campaign=self.name)
        except DuplicateMessage as dup:  # the contact was left "retry" by a crash
            log.info(
                "sms campaign %s: contact %s already has message %s",
                self.name,
                contact_id,
                dup.message_id,
            )
            row = await self.store.message(dup.message_id)
            self._creating.discard(contact_id)
            if row["status"] in ("queued", "submitting", "deferred"):
                self.sender.schedule(Pending.of({**row, "campaign": self.name}))
            return
        self.counts["queued"] += 1
        self.sender.schedule(
            Pending(
                id=message_id,
                address=values["address"],
                sender=values["sender"],
                account=values["account"],
                body=values["body"],
                campaign=self.name,
                contact_id=contact_id,
                seg=seg,
            )
        )
        self._creating.discard(contact_id)

    async def _pace(self, segments: int) -> None:
        loop = asyncio.get_running_loop()
        wait = 0.0
        if self.messages_bucket is not None:
            wait = max(wait, self.messages_bucket.reserve(loop.time()))
        if self.segments_bucket is not None:
            for _ in range(segments):
                wait = max(wait, self.segments_bucket.reserve(loop.time()))
        if wait > 0:
            await asyncio.sleep(wait)

    def _number(self, candidate: DialCandidate, blocked: dict[str, Any]) -> tuple[str | None, str]:
        wanted = self.cfg.phone_columns
        numbers = [
            n
            for n, col in zip(candidate.phones, candidate.columns or candidate.phones, strict=False)
            if not wanted or col in wanted
        ]
        if not numbers:
            columns = ", ".join(wanted) if wanted else "any column"
            return None, f"no phone number in {columns}"
        for number in numbers:
            if number not in blocked:
                return number, ""
        hit = blocked[numbers[0]]
        return None, f"{numbers[0]}: {hit.reason}"

    def _in_hours(self, candidate: DialCandidate, number: str, now: datetime) -> bool:
        try:
            locale = self.locator.locate(candidate.attributes, number)
        except LocateError as exc:
            self._skip(candidate, f"bad contact data: {exc}")
            return False
        verdict = self.hours.verdict(locale, now)
        if verdict.callable:
            return True
        why = f"not sendable now: {number}: {verdict.reason}; from {verdict.until.isoformat()}"
        self.counts["deferred"] += 1
        self.store.set_contact_state(
            self.name,
            candidate.contact_id,
            state="deferred",
            next_attempt_at=verdict.until,
            skip_reason=why,
        )
        return False

    def _text(self, candidate: DialCandidate) -> str:
        if self.cfg.template is not None:
            return self.cfg.template.render(candidate.attributes)
        column = self.cfg.message_column
        assert column is not None
        text = candidate.attributes.get(column, "")
        if not text.strip():
            raise TemplateError(f"missing column {column!r}")
        return text
