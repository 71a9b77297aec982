"""The thin asyncio TCP transport around `SmppSession`.

It feeds received bytes and the loop's clock into the session, writes what the
session wants sent, re-arms one `loop.call_at` at `get_timer()`, and turns the
session's events into awaited results: `await submit(...)` returns the SMSC's
message id or raises. Everything else (receipts, mobile-originated messages,
notices, the end of the link) goes to `events` (an `asyncio.Queue`) and, if
given, to `on_event`.

Not done here, by design: reconnect and backoff. When the link ends, every
outstanding submit fails with `SubmitNotAcknowledgedError` and the client is
finished. `carriers.sms.smpp.account.SmppAccount` owns several clients (one per
bind), makes a new one after a backoff when a link ends, spreads submits over
them and applies the account's and each bind's rate limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Awaitable, Callable

from carriers.sms.smpp.errors import (
    SmppBindError,
    SmppStateError,
    SubmitNotAcknowledgedError,
    SubmitRejectedError,
)
from carriers.sms.smpp.events import (
    BindFailed,
    Bound,
    LinkClosed,
    SessionEvent,
    SubmitAccepted,
    SubmitFailed,
    SubmitRejected,
    Unbound,
)
from carriers.sms.smpp.pdu import ShortMessage
from carriers.sms.smpp.session import SessionConfig, SmppSession

READ_SIZE = 65536


class SmppClient:
    """One SMPP bind over one TCP connection."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        on_event: Callable[[SessionEvent], None] | None = None,
    ) -> None:
        self.session = SmppSession(config)
        self.events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._bound: asyncio.Future[str] = self._loop.create_future()
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._submits: dict[int, asyncio.Future[str]] = {}
        # Submitters waiting for a window slot, first come first served; each slot
        # that frees wakes one of them (not all: 3,000 queued submits must not
        # mean 3,000 wake-ups per response). ``_reserved`` counts the woken ones
        # that have not run yet, so a newcomer cannot take their slot.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._reserved = 0
        self.close_reason = ""

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        config: SessionConfig,
        *,
        on_event: Callable[[SessionEvent], None] | None = None,
        connect_timeout: float = 10.0,
    ) -> SmppClient:
        """Open the TCP connection and bind; raises `SmppBindError` or `OSError`."""
        client = cls(config, on_event=on_event)
        async with asyncio.timeout(connect_timeout):
            client._reader, client._writer = await asyncio.open_connection(host, port)
        sock = client._writer.get_extra_info("socket")
        if sock is not None:
            # One small PDU per request: Nagle would hold each behind the last ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client._read_task = asyncio.create_task(client._read_loop())
        client.session.bind(client._loop.time())
        client._pump()
        try:
            await client._bound
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def closed(self) -> bool:
        return self.session.closed

    async def submit(
        self, message: ShortMessage, before_send: Callable[[], Awaitable[None]] | None = None
    ) -> str:
        """Submit one message, waiting for room in the window first. Returns the SMSC's
        message id; raises `SubmitRejectedError` (check ``retryable``) or
        `SubmitNotAcknowledgedError`, or `SmppStateError` once the bind has ended.

        ``before_send`` is awaited once the window has room for this message (the
        slot is held for it) and just before the PDU is written: the caller's
        "about to send" (a durable `submitting`) is then never written for a
        message still waiting, so only a message it was written for can be in doubt.
        """
        await self._slot()
        if before_send is not None:
            self._reserved += 1  # the slot stays ours while the caller's write commits
            try:
                await before_send()
            except BaseException:
                self._reserved -= 1
                self._wake()  # the slot goes to the next in line
                raise
            self._reserved -= 1
        if self.session.closed or self._finished.done():
            raise SmppStateError(f"the bind has ended: {self.close_reason or 'unbound'}")
        handle = self.session.submit(message, self._loop.time())
        result: asyncio.Future[str] = self._loop.create_future()
        self._submits[handle] = result
        self._pump()
        return await result

    async def _slot(self) -> None:
        queue_behind = bool(self._waiters)
        while not self.session.closed and (
            queue_behind or self.session.window_free - self._reserved <= 0
        ):
            waiter: asyncio.Future[None] = self._loop.create_future()
            # A woken waiter that lost its slot goes back to the front of the line.
            (self._waiters.append if queue_behind else self._waiters.appendleft)(waiter)
            queue_behind = False
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._reserved -= 1  # woken, then cancelled: pass the slot on
                    self._wake()
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
            self._reserved -= 1

    def _wake(self) -> None:
        if self.session.closed:
            free = len(self._waiters)  # wake everyone: each one raises
        else:
            free = self.session.window_free - self._reserved
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._reserved += 1
                free -= 1

    async def unbind(self) -> None:
        """Unbind cleanly (outstanding submits may still be answered), then close.
        The session's response timeout bounds the wait for unbind_resp."""
        self.session.unbind(self._loop.time())
        self._pump()
        await asyncio.shield(self._finished)
        await self.close()

    async def close(self) -> None:
        """Drop the connection; outstanding submits fail as not acknowledged."""
        self.session.connection_lost("closed by us")
        self._pump()
        await self._shutdown()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._finished)

    # --- the loop side ----------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while not self.session.closed:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    break
                self.session.receive(data, self._loop.time())
                self._pump()
        except (ConnectionError, OSError) as exc:
            self.session.connection_lost(f"connection lost: {exc}")
        self.session.connection_lost("connection closed by the SMSC")
        self._pump()

    def _pump(self) -> None:
        data = self.session.data_to_send()
        if data and self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)
        while (event := self.session.next_event()) is not None:
            self._dispatch(event)
        self._wake()
        self._arm_timer()
        if self.session.closed and not self._finished.done():
            self._finished.set_result(None)
            self._shutdown_task = self._loop.create_task(self._shutdown())

    def _dispatch(self, event: SessionEvent) -> None:
        match event:
            case SubmitAccepted(handle, message_id):
                self._settle(handle, message_id, None)
                return
            case SubmitRejected(handle, status, retryable):
                error = SubmitRejectedError(
                    f"submit_sm rejected: {event.status_name}", status=status, retryable=retryable
                )
                self._settle(handle, None, error)
                return
            case SubmitFailed(handle, reason):
                self._settle(handle, None, SubmitNotAcknowledgedError(reason))
                return
            case Bound(system_id):
                if not self._bound.done():
                    self._bound.set_result(system_id)
            case BindFailed(status, reason):
                self.close_reason = f"bind failed: {reason}"
                if not self._bound.done():
                    self._bound.set_exception(SmppBindError(self.close_reason, status=status))
            case LinkClosed(reason):
                self.close_reason = reason
                self._fail_bind(reason)
            case Unbound(by_peer):
                self.close_reason = "unbound by the SMSC" if by_peer else "unbound"
                self._fail_bind(self.close_reason)
        self.events.put_nowait(event)
        if self._on_event is not None:
            self._on_event(event)

    def _settle(self, handle: int, value: str | None, error: Exception | None) -> None:
        future = self._submits.pop(handle, None)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            assert value is not None
            future.set_result(value)

    def _fail_bind(self, reason: str) -> None:
        if not self._bound.done():
            self._bound.set_exception(SmppBindError(reason, status=None))

    def _arm_timer(self) -> None:
        when = self.session.get_timer()
        if self._timer is not None:
            # Still the right one (most pumps leave the oldest request alone);
            # uvloop keeps timers to the millisecond, and firing a few ms off
            # is harmless: handle_timer acts on what has expired, then re-arms.
            if when is not None and abs(self._timer.when() - when) < 0.005:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(self._loop.time())
        self._pump()

    async def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        task = self._read_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
