"""A small in-process event bus: the engine publishes, subscribers (the
control socket's `events` stream, later the HTTP API) each get a queue."""

from __future__ import annotations

import asyncio
import time
from typing import Any

Event = dict[str, Any]


class EventBus:
    """Fan-out of engine events to bounded per-subscriber queues.

    A subscriber that falls `maxsize` events behind loses the oldest ones
    (counted in `dropped`) rather than slowing the dialer down.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self.dropped = 0

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self.maxsize)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    def publish(self, kind: str, **fields: Any) -> None:
        event: Event = {"event": kind, "ts": round(time.time(), 3), **fields}
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
