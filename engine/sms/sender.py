"""The sender: takes a stored outbound message to the carrier and records what
happened, whatever message it is (a campaign's, a notification, a keyword's
confirmation).

For each message: `submitting` is committed when the carrier's window (or
pacing) has room for its first PDU and just before that PDU leaves, then every
segment the carrier has not yet accepted is submitted (a segment it accepted
has a message_parts row, so after a crash only the others go again), each
accepted segment is recorded as soon as it is accepted (the last one in the
same write as the message's `submitted` status: one group write fewer a
message), and the message becomes `submitted`. A refusal is `rejected` with
the carrier's words; a temporary failure (throttled, queue full, 429/5xx, no
answer) is `deferred` to a retry time, up to the retry attempts, then
`failed`. No answer to a PDU that left sets `in_doubt`: the carrier may hold it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from carriers.sms.encoding import SegmentedMessage, segment
from engine.messaging import MessageTasks
from engine.sms.channels import WHOLE, Channel, Outgoing, SendFailure

if TYPE_CHECKING:
    from engine.bus import EventBus
    from engine.store import Store

log = logging.getLogger("outdial.sms")

DEFAULT_RETRY = (3, 60.0)  # attempts, seconds: notifications and keyword replies


@dataclass(slots=True)
class Pending:
    """An outbound message the sender owes the carrier (a messages row)."""

    id: int
    address: str
    sender: str
    account: str
    body: str
    tries: int = 0
    in_doubt: bool = False
    campaign: str | None = None
    contact_id: int | None = None
    not_before: datetime | None = None
    seg: SegmentedMessage | None = None  # the body's segments, when the creator has them

    @classmethod
    def of(cls, row: dict[str, Any]) -> Pending:
        return cls(
            id=int(row["id"]),
            address=row["address"],
            sender=row["sender"],
            account=row["account"],
            body=row["body"],
            tries=int(row.get("tries") or 0),
            in_doubt=bool(row.get("in_doubt")),
            campaign=row.get("campaign"),
            contact_id=row.get("contact_id"),
            not_before=row.get("next_attempt_at"),
        )


class Sender(MessageTasks):
    """Delivers `Pending` messages through their account's channel, a bounded
    number at a time per account, each in its own task."""

    what = "sms"

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        channels: dict[str, Channel],
        retry_of: Callable[[str | None], tuple[int, float]],
        concurrency: dict[str, int],
    ) -> None:
        super().__init__()
        self.store, self.bus, self.channels = store, bus, channels
        self.retry_of = retry_of
        self._slots = {name: asyncio.Semaphore(n) for name, n in concurrency.items()}
        self.counts = {"submitted": 0, "rejected": 0, "failed": 0, "retried": 0}

    async def _deliver(self, message: Pending) -> None:
        channel = self.channels.get(message.account)
        if channel is None:
            await self.store.message_status(
                message.id,
                "failed",
                f"no SMS account {message.account!r} in the config",
                error=f"no SMS account {message.account!r}",
            )
            return
        seg = message.seg if message.seg is not None else segment(message.body)
        out = Outgoing(message.id, message.address, message.sender, message.body, seg)
        parts = [WHOLE] if channel.whole_message else list(range(1, len(seg.segments) + 1))
        async with self._slots[message.account]:
            paused = channel.paused_until - asyncio.get_running_loop().time()
            if paused > 0:  # the carrier refused the account (401/403): wait, no try spent
                await asyncio.sleep(paused)  # (a stop cancels it after its grace)
            if self.closing:
                return
            done = await self.store.parts_done(message.id) if message.tries else set()
            todo = [part for part in parts if part not in done]
            first: str | None = None
            marked = written = False

            async def before_send() -> None:
                # `submitting` commits when the carrier's window has room and the
                # PDU (or request) goes right after: a message still waiting for
                # the window is never marked, so never taken as in doubt.
                nonlocal marked, written
                if not marked:
                    await self.store.message_status(message.id, "submitting", None, tries="+1")
                    message.tries += 1
                    marked = True
                written = True

            try:
                for i, part in enumerate(todo):
                    written = False
                    carrier_id = await channel.submit(out, part, before_send)
                    first = first or carrier_id
                    if i < len(todo) - 1:
                        self.store.record_part(message.id, part, message.account, carrier_id)
                    else:  # the last one: its row and `submitted` in one write
                        self.store.message_submitted(
                            message.id, part, message.account, carrier_id, {"carrier_id": first}
                        )
            except SendFailure as failure:
                if not written:  # it never left: not in doubt, and still one try spent
                    failure.in_doubt = False
                self._failed(message, failure, spent=not marked)
                return
        if not todo:  # every part was accepted before (a crash before `submitted`)
            self.store.set_message_status(message.id, "submitted", {"carrier_id": first})
        self.counts["submitted"] += 1
        self.bus.publish(
            "sms.submitted",
            id=message.id,
            to=message.address,
            campaign=message.campaign,
            carrier_id=first,
            segments=len(parts),
        )

    def _failed(self, message: Pending, failure: SendFailure, *, spent: bool = False) -> None:
        """`spent`: the try is counted here (it failed before `submitting`)."""
        attempts, after = self.retry_of(message.campaign)
        fields: dict[str, Any] = {"error": failure.reason}
        if spent:
            fields["tries"] = "+1"
            message.tries += 1
        if failure.in_doubt:
            fields["in_doubt"] = 1
            message.in_doubt = True
        if not failure.retryable:
            status = "rejected"
        elif message.tries >= attempts and not failure.account_refused:
            status = "failed"
        else:
            status = "deferred"
            # Never sooner than the carrier asked (a 429's Retry-After); a refused
            # account is tried again when its pause ends.
            delay = max(after * (2 ** (message.tries - 1)), failure.retry_after or 0.0)
            if failure.account_refused:
                delay = failure.retry_after or after
            message.not_before = datetime.now(UTC) + timedelta(seconds=delay)
            fields["next_attempt_at"] = message.not_before
        self.store.set_message_status(message.id, status, failure.reason, **fields)
        self.counts["retried" if status == "deferred" else status] += 1
        self.bus.publish(
            f"sms.{status if status != 'deferred' else 'retry'}",
            id=message.id,
            to=message.address,
            campaign=message.campaign,
            reason=failure.reason,
            in_doubt=message.in_doubt,
        )
        if status == "deferred":
            self.reschedule(message)
