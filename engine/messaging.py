"""What the message channels (SMS, email) share: a campaign's state and its
loop over due contacts, and the stored-message handoff to a sender.

A message campaign's loop: pick up contacts added to the list (every
RESYNC_EVERY s), read the next due contacts in the campaign's order, hand
them to the channel's `_pass` (checks, text, the stored message), and mark
the campaign completed once no contact is pending, retrying, deferred or
sending. Pause and stop end the loop; messages already written are still
delivered by the sender (nothing written is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidState

if TYPE_CHECKING:
    from engine.bus import EventBus
    from engine.store import DialCandidate, Store

log = logging.getLogger("outdial.messaging")

RUNNING, PAUSED, STOPPED, COMPLETED = "running", "paused", "stopped", "completed"
BATCH = 500  # contacts read per pass
RESYNC_EVERY = 2.0  # seconds between picking up contacts added to the list
IDLE_WAIT = 0.5
WAITING_STATES = ("pending", "retry", "deferred", "sending", "in_flight")


class MessageCampaignRunner:
    """The loop and state of one message campaign; a channel subclasses it
    with `_pass` (and `channel`)."""

    channel = ""

    def __init__(self, store: Store, bus: EventBus, name: str) -> None:
        self.store, self.bus, self.name = store, bus, name
        self.state = STOPPED
        self._task: asyncio.Task[None] | None = None
        self._creating: set[int] = set()  # contacts whose message is being written
        self.counts = {"queued": 0, "skipped": 0, "deferred": 0}

    async def start(self) -> None:
        if self.state == RUNNING:
            raise InvalidState(f"campaign {self.name!r} is already running")
        await self.store.set_campaign_state(self.name, RUNNING)
        self.state = RUNNING
        self.bus.publish("campaign.state", campaign=self.name, state=RUNNING,
                         channel=self.channel)  # fmt: skip
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def set_state(self, state: str) -> None:
        self.state = state
        await self.store.set_campaign_state(self.name, state)
        self.bus.publish("campaign.state", campaign=self.name, state=state, channel=self.channel)
        task = self._task
        if task is not None and state != RUNNING and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None

    async def pause(self) -> None:
        if self.state != RUNNING:
            raise InvalidState(f"campaign {self.name!r} is {self.state}, not running")
        await self.set_state(PAUSED)

    async def resume(self) -> None:
        if self.state != PAUSED:
            raise InvalidState(f"campaign {self.name!r} is {self.state}, not paused")
        await self.start()

    async def stop(self) -> None:
        if self.state in (STOPPED, COMPLETED):
            raise InvalidState(f"campaign {self.name!r} is already {self.state}")
        await self.set_state(STOPPED)

    async def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "channel": self.channel,
            "state": self.state,
            "progress": await self.store.progress(self.name),
            "messages": await self.store.message_report(self.name),
            "sending": len(self._creating),
        }

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
            log.exception("%s campaign %s: the loop stopped", self.channel, self.name)
            self.state = PAUSED
            await self.store.set_campaign_state(self.name, PAUSED)

    async def _finished(self) -> bool:
        if self._creating:
            return False
        progress = await self.store.progress(self.name)
        return not any(progress.get(s, 0) for s in WAITING_STATES)

    async def _pass(self, due: list[DialCandidate]) -> None:
        raise NotImplementedError

    def _skip(self, candidate: DialCandidate, reason: str) -> None:
        self.counts["skipped"] += 1
        self.store.set_contact_state(self.name, candidate.contact_id, state="skipped",
                                     skip_reason=reason, last_result="skipped")  # fmt: skip
        self.bus.publish(f"{self.channel}.skipped", campaign=self.name,
                         contact_id=candidate.contact_id, reason=reason)  # fmt: skip

    async def shutdown(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class MessageTasks:
    """One background task per message a sender owes a carrier (SMS and email
    senders subclass it with `_deliver` and `what`). A message id is owned by
    one task at a time; a retry hands the id to its own new task."""

    what = "message"

    def __init__(self) -> None:
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.closing = False

    @property
    def active(self) -> int:
        return len(self._tasks)

    def owns(self, message_id: int) -> bool:
        return message_id in self._tasks

    def schedule(self, message: Any) -> None:
        """Deliver `message` (it has an `id`) in the background, once: a message
        already owned is left."""
        if message.id in self._tasks or self.closing:
            return
        task = asyncio.get_running_loop().create_task(self._run(message))
        self._tasks[message.id] = task
        task.add_done_callback(partial(self._forget, message.id))

    def reschedule(self, message: Any) -> None:
        """From inside the message's own task: a new task owns it (its retry)."""
        if not self.closing:
            self._tasks.pop(message.id, None)
            self.schedule(message)

    def _forget(self, message_id: int, task: asyncio.Task[None]) -> None:
        if self._tasks.get(message_id) is task:  # a retry may own the id by now
            del self._tasks[message_id]

    async def drain(self, grace: float) -> None:
        """Stop taking messages; let those being submitted finish for `grace` s.
        Messages waiting for a retry time stay deferred in the store."""
        self.closing = True
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self, message: Any) -> None:
        try:
            if message.not_before is not None:  # a retry (or a restart's deferred row)
                wait = (message.not_before - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    await asyncio.sleep(wait)
            await self._deliver(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: delivering message %s failed", self.what, message.id)

    async def _deliver(self, message: Any) -> None:
        raise NotImplementedError
