"""The store's email methods: addresses on do-not-contact lists (a part of
`Store`, like messagestore.py; messages themselves are shared with SMS)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from engine.store import emaildnc
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
