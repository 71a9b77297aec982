"""The store's message methods (SMS, email): a part of `Store`, kept apart so
that store.py stays readable. Writes on the sender's path are group-committed
like the dialer's; see messagedb.py for the status vocabulary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from engine.store import messagedb

if TYPE_CHECKING:
    from engine.store.queries import CampaignIds
    from engine.store.types import DncHit
    from engine.store.writer import Writer


def _now() -> datetime:
    return datetime.now(UTC)


class MessageMethods:
    _writer: Writer
    _ids: CampaignIds

    async def create_message(self, values: Mapping[str, Any], campaign: str | None = None) -> int:
        """Write an outbound message (status queued, or `values["status"]`);
        returns its id once committed. For a campaign the contact becomes
        `sending` in the same commit; a second message for the same contact
        raises `messagedb.DuplicateMessage`."""
        work = partial(
            messagedb.create, ids=self._ids, values=dict(values), campaign=campaign, now=_now()
        )
        return await self._writer.write_wait(work, "create_message")

    async def create_message_unless_listed(
        self, values: Mapping[str, Any], lists: Sequence[str]
    ) -> int | DncHit:
        """A notification, unless its address is on one of `lists` (its hit
        is returned then, nothing written): check and write in one group
        commit. NotFound if a list does not exist."""
        work = partial(messagedb.create_unless_listed, values=dict(values), lists=tuple(lists),
                       now=_now())  # fmt: skip
        return await self._writer.write_wait(work, "create_message")

    async def message_status(
        self, message_id: int, status: str, detail: Any = None, **fields: Any
    ) -> None:
        """Set a message's status and wait for the commit (the sender's
        `submitting`, which must be durable before the PDU leaves)."""
        work = partial(
            messagedb.set_status,
            message_id=message_id,
            status=status,
            now=_now(),
            detail=detail,
            fields=fields,
        )
        await self._writer.write_wait(work, f"message_status {message_id}")

    def set_message_status(
        self, message_id: int, status: str, detail: Any = None, **fields: Any
    ) -> None:
        """`message_status` queued for the next group commit, not awaited."""
        work = partial(
            messagedb.set_status,
            message_id=message_id,
            status=status,
            now=_now(),
            detail=detail,
            fields=fields,
        )
        self._writer.write(work, f"set_message_status {message_id}")

    def record_part(self, message_id: int, part: int, account: str, carrier_id: str) -> None:
        """Segment `part` accepted under `carrier_id` (next group commit)."""
        work = partial(
            messagedb.record_part,
            message_id=message_id,
            part=part,
            account=account,
            carrier_id=carrier_id,
            now=_now(),
        )
        self._writer.write(work, f"record_part {message_id}/{part}")

    def message_submitted(
        self, message_id: int, part: int, account: str, carrier_id: str, detail: Any = None
    ) -> None:
        """The last segment owed accepted: its part row and the message's
        `submitted` status in one write (next group commit)."""
        work = partial(messagedb.submitted, message_id=message_id, part=part, account=account,
                       carrier_id=carrier_id, now=_now(), detail=detail)  # fmt: skip
        self._writer.write(work, f"message_submitted {message_id}")

    async def parts_done(self, message_id: int) -> set[int]:
        return await self._writer.run(partial(messagedb.parts_done, message_id=message_id))

    async def open_messages(
        self, channel: str, after_id: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        return await self._writer.run(
            partial(messagedb.open_messages, channel=channel, after_id=after_id, limit=limit)
        )

    async def reconcile_messages(self, channel: str) -> list[int]:
        """After a restart: `submitting` messages become queued and in doubt."""
        return await self._writer.run(partial(messagedb.in_doubt, channel=channel, now=_now()))

    async def apply_receipt(
        self, account: str, carrier_id: str, status: str, detail: Any, error: str | None = None
    ) -> dict[str, Any] | None:
        work = partial(
            messagedb.apply_receipt,
            account=account,
            carrier_id=carrier_id,
            status=status,
            now=_now(),
            detail=detail,
            error=error,
        )
        return await self._writer.write_wait(work, f"apply_receipt {carrier_id}")

    async def record_inbound(
        self, values: Mapping[str, Any], thread_since: datetime
    ) -> dict[str, Any]:
        work = partial(
            messagedb.record_inbound, values=dict(values), thread_since=thread_since, now=_now()
        )
        return await self._writer.write_wait(work, "record_inbound")

    async def close_threads(self, channel: str, quiet_since: datetime) -> list[int]:
        work = partial(
            messagedb.close_threads, channel=channel, quiet_since=quiet_since, now=_now()
        )
        return await self._writer.run(work)

    async def message(self, message_id: int) -> dict[str, Any]:
        return await self._writer.run(partial(messagedb.message, message_id=message_id))

    async def messages(self, **filters: Any) -> list[dict[str, Any]]:
        return await self._writer.run(partial(messagedb.messages_of, **filters))

    async def message_report(self, campaign: str | None) -> dict[str, Any]:
        return await self._writer.run(partial(messagedb.report, campaign=campaign))
