"""One SMS campaign's loop: due contacts -> checked -> a stored message -> the sender.

Per contact, in the campaign's order: the first number (of `phone_columns`)
not on one of its do-not-contact lists, inside its sending hours in the
contact's own zone (else `deferred` until they open), the text filled from
its columns (a missing column skips the contact, with the reason), at most
`max_segments` segments; then, paced to the campaign's messages/s and
segments/s, the message row (committed, the contact `sending`) and the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from carriers.sms.encoding import segment
from carriers.sms.errors import SmsEncodingError
from carriers.sms.pacing import TokenBucket
from engine.compliance.campaign import calling_hours
from engine.compliance.locate import LocateError
from engine.errors import InvalidState
from engine.sms.sender import Pending
from engine.sms.template import TemplateError
from engine.store.messagedb import DuplicateMessage

if TYPE_CHECKING:
    from engine.bus import EventBus
    from engine.sms.campaign import SmsCampaignConfig
    from engine.sms.sender import Sender
    from engine.store import DialCandidate, Store

log = logging.getLogger("outdial.sms")

RUNNING, PAUSED, STOPPED, COMPLETED = "running", "paused", "stopped", "completed"
BATCH = 500  # contacts read per pass
RESYNC_EVERY = 2.0  # seconds between picking up contacts added to the list
IDLE_WAIT = 0.5
WAITING_STATES = ("pending", "retry", "deferred", "sending", "in_flight")


class SmsCampaignRunner:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        sender: Sender,
        cfg: SmsCampaignConfig,
        legal_hours: str,
    ) -> None:
        self.store, self.bus, self.sender = store, bus, sender
        self.legal_hours = legal_hours
        self.state = STOPPED
        self._task: asyncio.Task[None] | None = None
        self._creating: set[int] = set()  # contacts whose message is being written
        self.counts = {"queued": 0, "skipped": 0, "deferred": 0}
        self.configure(cfg)

    def configure(self, cfg: SmsCampaignConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
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

    # -------------------------------------------------------------- state

    async def start(self) -> None:
        if self.state == RUNNING:
            raise InvalidState(f"campaign {self.name!r} is already running")
        await self.store.set_campaign_state(self.name, RUNNING)
        self.state = RUNNING
        self.bus.publish("campaign.state", campaign=self.name, state=RUNNING, channel="sms")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def set_state(self, state: str) -> None:
        self.state = state
        await self.store.set_campaign_state(self.name, state)
        self.bus.publish("campaign.state", campaign=self.name, state=state, channel="sms")
        task = self._task
        if task is not None and state != RUNNING and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None

    async def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "channel": "sms",
            "state": self.state,
            "progress": await self.store.progress(self.name),
            "messages": await self.store.message_report(self.name),
            "sending": len(self._creating),
        }

    # --------------------------------------------------------------- loop

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        synced_at = -RESYNC_EVERY
        try:
            while self.state == RUNNING:
                if loop.time() - synced_at >= RESYNC_EVERY:
                    await self.store.sync_campaign_contacts(self.name)
                    synced_at = loop.time()
                due = await self.store.due_contacts(
                    self.name, datetime.now(UTC), BATCH, exclude=self._creating
                )
                if not due:
                    if await self._finished():
                        await self.set_state(COMPLETED)
                        return
                    await asyncio.sleep(IDLE_WAIT)
                    continue
                await self._pass(due)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sms campaign %s: the loop stopped", self.name)
            self.state = PAUSED
            await self.store.set_campaign_state(self.name, PAUSED)

    async def _finished(self) -> bool:
        if self._creating:
            return False
        progress = await self.store.progress(self.name)
        return not any(progress.get(s, 0) for s in WAITING_STATES)

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
            writes.append(asyncio.get_running_loop().create_task(self._create(values)))
        if writes:
            await asyncio.gather(*writes)

    async def _create(self, values: dict[str, Any]) -> None:
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
            if row["status"] in ("queued", "submitting"):
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

    def _skip(self, candidate: DialCandidate, reason: str) -> None:
        self.counts["skipped"] += 1
        self.store.set_contact_state(
            self.name,
            candidate.contact_id,
            state="skipped",
            skip_reason=reason,
            last_result="skipped",
        )
        self.bus.publish(
            "sms.skipped", campaign=self.name, contact_id=candidate.contact_id, reason=reason
        )

    async def shutdown(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
