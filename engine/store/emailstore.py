"""The store's email methods: addresses on do-not-contact lists (a part of
`Store`, like messagestore.py; messages themselves are shared with SMS)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from engine.store import emaildb, emaildnc
from engine.store.types import DncHit

if TYPE_CHECKING:
    from engine.store.writer import Writer


def _now() -> datetime:
    return datetime.now(UTC)


class EmailMethods:
    _writer: Writer

    async def dnc_add_address(
        self,
        address: str,
        *,
        list: str,
        source: str = "manual",
        expires_at: datetime | None = None,
        note: str | None = None,
        campaign: str | None = None,
    ) -> str:
        """Put an address on a list (replacing its entry there); returns it cleaned."""
        return await self._writer.run(
            partial(emaildnc.add, list_name=list, address=address, source=source,
                    expires_at=expires_at, note=note, now=_now(), campaign=campaign)
        )  # fmt: skip

    async def dnc_remove_address(self, address: str, *, list: str) -> bool:
        return await self._writer.run(partial(emaildnc.remove, list_name=list, address=address))

    async def dnc_check_address(self, address: str) -> list[dict[str, Any]]:
        return await self._writer.run(partial(emaildnc.check, address=address, now=_now()))

    async def dnc_addresses(
        self, addresses: Collection[str], now: datetime, lists: Sequence[str] | None = None
    ) -> dict[str, DncHit]:
        if not addresses:
            return {}
        return await self._writer.run(
            partial(emaildnc.listed, addresses=tuple(addresses), now=now, lists=lists)
        )

    async def email_outbound(self, message_id: int) -> dict[str, Any] | None:
        return await self._writer.run(partial(emaildb.outbound, message_id=message_id))

    async def email_by_refs(self, refs: Sequence[str], since: datetime) -> int | None:
        return await self._writer.run(partial(emaildb.by_refs, refs=tuple(refs), since=since))

    async def email_last_to(self, address: str, since: datetime) -> int | None:
        return await self._writer.run(partial(emaildb.last_to, address=address, since=since))

    async def record_email_inbound(self, values: dict[str, Any], parent_id: int | None) -> int:
        work = partial(emaildb.record_inbound, values=values, parent_id=parent_id, now=_now())
        return await self._writer.write_wait(work, "record_email_inbound")

    async def message_event(self, message_id: int, label: str, detail: Any) -> None:
        """An event on a message's history that does not change its status
        (a soft bounce, a delayed-delivery notice)."""
        work = partial(emaildb.event, message_id=message_id, label=label, detail=detail,
                       now=_now())  # fmt: skip
        await self._writer.write_wait(work, f"message_event {message_id}")
