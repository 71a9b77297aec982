"""One SMPP account: several binds kept up, submits spread over them, rate-limited.

`SmppClient` is one bind over one TCP connection that ends for good when the
link does. `SmppAccount` owns ``binds`` of them and keeps each slot bound: a
slot whose connect or bind fails, or whose link ends, waits a backoff delay
(`carriers.sms.pacing.Backoff`: ``reconnect_initial`` doubling to
``reconnect_max``, jittered) and tries again, forever, until `close`. A wrong
password is retried the same way; `last_error` says why nothing is bound.

`submit` waits for a bound bind with room in its window, takes the one with
the fewest submits outstanding, reserves a token from the account's and the
bind's `TokenBucket` (a slot in time, not a poll), and sends. What it raises is
what the caller must decide on:

- `SubmitRejectedError` with ``retryable`` (ESME_RTHROTTLED 0x58, ESME_RMSGQFUL
  0x14): the SMSC did not take it; submit it again later. The bind that was
  told so rests for ``throttle_pause`` seconds (doubling while the SMSC keeps
  saying it, up to ``throttle_pause_max``) and other binds carry the traffic.
- `SubmitNotAcknowledgedError`: sent, but the link died or timed out before the
  submit_sm_resp. The SMSC may or may not hold it: re-submitting risks a
  duplicate, not re-submitting risks a loss, so the account does neither.
- `SmppStateError`: the account is closed (or cannot submit at all).

A submit that had not gone out when its bind died is not an error: it waits
for the next bound bind. The submit outcome events stay inside; everything
else a bind reports (receipts, mobile-originated messages, Bound, BindFailed,
LinkClosed, Unbound, notices) goes to ``on_event(bind_label, event)``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from carriers.sms.pacing import Backoff, TokenBucket
from carriers.sms.smpp.client import SmppClient
from carriers.sms.smpp.errors import (
    SmppError,
    SmppStateError,
    SubmitNotAcknowledgedError,
    SubmitRejectedError,
)
from carriers.sms.smpp.events import SessionEvent, SubmitAccepted, SubmitFailed, SubmitRejected
from carriers.sms.smpp.pdu import ShortMessage
from carriers.sms.smpp.session import BindMode, SessionConfig, SessionState

log = logging.getLogger("outdial.smpp")

EventHandler = Callable[[str, SessionEvent], None]

STABLE_LINK = 10
"""A link bound for this many reconnect_initial (at most reconnect_max) resets the
backoff when it ends; a shorter one counts as one more failure."""


@dataclass(frozen=True)
class AccountConfig:
    name: str
    host: str
    port: int
    session: SessionConfig
    """system_id, password, window, mode, timeouts: the same for every bind."""
    binds: int = 1
    """TCP connections, each one bind, kept up."""
    rate: float | None = None
    """submit_sm a second for the whole account (None: unlimited)."""
    bind_rate: float | None = None
    """submit_sm a second on each bind (None: unlimited)."""
    reconnect_initial: float = 1.0
    """Seconds before the first retry; doubles up to reconnect_max, jittered."""
    reconnect_max: float = 60.0
    throttle_pause: float = 1.0
    """Seconds a bind rests after ESME_RTHROTTLED/ESME_RMSGQFUL; doubles while they go on."""
    throttle_pause_max: float = 10.0
    connect_timeout: float = 10.0
    """Seconds for the TCP connect (the bind itself waits session.response_timeout)."""

    def __post_init__(self) -> None:
        if self.binds < 1:
            raise ValueError("binds must be at least 1")
        for name in ("rate", "bind_rate"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None")
        if not 0 < self.reconnect_initial <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_initial <= reconnect_max")
        if not 0 < self.throttle_pause <= self.throttle_pause_max:
            raise ValueError("need 0 < throttle_pause <= throttle_pause_max")


@dataclass
class AccountStats:
    """Counters since the account was made (a live object: read, do not write)."""

    binds_made: int = 0
    """Successful binds, the first ones included."""
    reconnects: int = 0
    """Successful binds of a slot that had been bound before."""
    bind_failures: int = 0
    """Connects or binds that failed (refused, timed out, wrong password)."""
    links_lost: int = 0
    """Bound links that ended without our close (drop, SMSC unbind, dead link)."""
    submits: int = 0
    """submit_sm accepted by the SMSC."""
    throttled: int = 0
    """submit_sm answered ESME_RTHROTTLED or ESME_RMSGQFUL."""
    rejected: int = 0
    """submit_sm answered with any other error status."""
    unacknowledged: int = 0
    """submit_sm sent and never answered (SubmitNotAcknowledgedError)."""
    submits_by_bind: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class _Bind:
    """One slot: a label, its current client (None while down) and its pacing."""

    label: str
    index: int
    reconnect: Backoff
    throttle: Backoff
    bucket: TokenBucket | None
    client: SmppClient | None = None
    in_flight: int = 0
    """Submits given this bind and not finished: pacing, sent, or awaiting a response."""
    paused_until: float = 0.0
    bound_at: float = 0.0
    ever_bound: bool = False
    last_error: str | None = None
    error_at: float = 0.0
    task: asyncio.Task[None] | None = None

    @property
    def is_bound(self) -> bool:
        client = self.client
        return client is not None and client.session.state is SessionState.BOUND


class _NotSent(Exception):
    """The bind ended before the submit_sm went out: pick another bind."""


class SmppAccount:
    """Keeps ``config.binds`` binds up and spreads submits over them."""

    def __init__(
        self,
        config: AccountConfig,
        *,
        on_event: EventHandler | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.stats = AccountStats()
        self._on_event = on_event
        rng = rng if rng is not None else random.Random()
        self._bucket = TokenBucket(config.rate) if config.rate is not None else None
        self._binds = [
            _Bind(
                label=f"{config.name}#{i + 1}",
                index=i,
                reconnect=Backoff(config.reconnect_initial, config.reconnect_max, rng),
                throttle=Backoff(config.throttle_pause, config.throttle_pause_max, rng),
                bucket=TokenBucket(config.bind_rate) if config.bind_rate is not None else None,
            )
            for i in range(config.binds)
        ]
        # Submitters waiting for a bind, first come first served. `_wake` hands
        # each one a bind with room (already counted in its in_flight), so one
        # freed slot wakes one waiter, not all of them.
        self._waiters: deque[asyncio.Future[_Bind]] = deque()
        self._turn = 0
        self._pause_timer: asyncio.TimerHandle | None = None
        self._any_bound = asyncio.Event()
        self._started = False
        self._closing = False

    # --- the interface ----------------------------------------------------------

    async def start(self) -> None:
        """Start keeping the binds up in the background; returns at once."""
        if self._started or self._closing:
            return
        self._started = True
        for bind in self._binds:
            bind.task = asyncio.create_task(self._keep_bound(bind), name=f"smpp {bind.label}")
            bind.task.add_done_callback(functools.partial(self._keeper_ended, bind.label))

    async def wait_bound(self, timeout: float) -> None:  # noqa: ASYNC109 (the engine's interface)
        """Return once at least one bind is up; `TimeoutError` (naming the last
        error) if none is within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._any_bound.wait()
        except TimeoutError:
            raise TimeoutError(
                f"SMPP account {self.config.name}: no bind up within {timeout:g}s"
                f" (last error: {self.last_error or 'none yet'})"
            ) from None

    @property
    def bound(self) -> int:
        """Binds up now."""
        return sum(bind.is_bound for bind in self._binds)

    @property
    def last_error(self) -> str | None:
        """Why the latest bind that is down went down (or never came up), or None
        while every bind is up."""
        down = [b for b in self._binds if not b.is_bound and b.last_error is not None]
        if not down:
            return None
        latest = max(down, key=lambda b: b.error_at)
        return f"{latest.label}: {latest.last_error}"

    async def submit(
        self, message: ShortMessage, before_send: Callable[[], Awaitable[None]] | None = None
    ) -> str:
        """Submit on the least busy bound bind; returns the SMSC's message id. See
        the module docstring for what each error means to the caller.
        ``before_send``: awaited when the PDU is about to be written (after the
        pacing and the window's room; `SmppClient.submit`); it may be awaited again
        if that bind ends before the write and another one takes the message."""
        if self.config.session.mode is BindMode.RECEIVER:
            raise SmppStateError(f"SMPP account {self.config.name} binds as receiver only")
        while True:
            bind = await self._acquire()
            try:
                await self._pace(bind)
                return await self._submit_on(bind, message, before_send)
            except _NotSent:
                continue
            finally:
                bind.in_flight -= 1
                self._wake()

    async def close(self) -> None:
        """Stop reconnecting, fail the submits still waiting for a bind with
        `SmppStateError`, and unbind every bind cleanly (submits already sent may
        still be answered until the unbind_resp)."""
        self._closing = True
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(SmppStateError(f"SMPP account {self.config.name} closed"))
        tasks = [b.task for b in self._binds if b.task is not None and not b.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        clients = [b.client for b in self._binds if b.client is not None]
        await asyncio.gather(*(self._unbind(c) for c in clients), return_exceptions=True)
        for bind in self._binds:
            bind.client = None
        self._any_bound.clear()

    # --- keeping a bind up ------------------------------------------------------

    async def _keep_bound(self, bind: _Bind) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            client = await self._connect(bind)
            if client is None:
                await asyncio.sleep(self._retry_delay(bind))
                continue
            self._on_bound(bind, client, loop.time())
            await client.wait_closed()
            if self._closing:
                return
            self._on_lost(bind, client, loop.time())
            await asyncio.sleep(self._retry_delay(bind))

    def _keeper_ended(self, label: str, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("SMPP %s: the bind keeper died; this slot stays down", label, exc_info=exc)

    async def _connect(self, bind: _Bind) -> SmppClient | None:
        c = self.config
        try:
            return await SmppClient.connect(
                c.host,
                c.port,
                c.session,
                on_event=functools.partial(self._relay, bind.label),
                connect_timeout=c.connect_timeout,
            )
        except (OSError, TimeoutError, SmppError) as exc:
            reason = str(exc) or type(exc).__name__
        except Exception as exc:  # a bug must not end the reconnecting
            log.exception("SMPP %s: unexpected error while binding", bind.label)
            reason = f"{type(exc).__name__}: {exc}"
        self.stats.bind_failures += 1
        self._note_error(bind, f"bind to {c.host}:{c.port} failed: {reason}")
        return None

    def _retry_delay(self, bind: _Bind) -> float:
        delay = bind.reconnect.next_delay()
        log.warning("SMPP %s: %s; retrying in %.2fs", bind.label, bind.last_error, delay)
        return delay

    def _on_bound(self, bind: _Bind, client: SmppClient, now: float) -> None:
        bind.client = client
        bind.bound_at = now
        bind.paused_until = 0.0
        bind.throttle.reset()
        self.stats.binds_made += 1
        if bind.ever_bound:
            self.stats.reconnects += 1
        bind.ever_bound = True
        log.info("SMPP %s: bound to %s", bind.label, client.session.smsc_system_id)
        self._any_bound.set()
        self._wake()

    def _on_lost(self, bind: _Bind, client: SmppClient, now: float) -> None:
        bind.client = None
        self.stats.links_lost += 1
        self._note_error(bind, f"link lost: {client.close_reason or 'closed'}")
        # A link that stayed up a while earns a quick retry; one that flaps right
        # after each bind keeps climbing the backoff instead of hammering the SMSC.
        c = self.config
        if now - bind.bound_at >= min(c.reconnect_max, STABLE_LINK * c.reconnect_initial):
            bind.reconnect.reset()
        if self.bound == 0:
            self._any_bound.clear()

    def _note_error(self, bind: _Bind, reason: str) -> None:
        bind.last_error = reason
        bind.error_at = asyncio.get_running_loop().time()

    async def _unbind(self, client: SmppClient) -> None:
        if client.closed:
            return
        try:
            await client.unbind()
        except (OSError, SmppError):
            await client.close()

    def _relay(self, label: str, event: SessionEvent) -> None:
        if self._on_event is None or isinstance(
            event, SubmitAccepted | SubmitRejected | SubmitFailed
        ):
            return
        try:
            self._on_event(label, event)
        except Exception:  # the handler's bug must not kill the bind's read loop
            log.exception("SMPP %s: on_event handler failed on %r", label, event)

    # --- spreading submits ------------------------------------------------------

    async def _acquire(self) -> _Bind:
        if self._closing:
            raise SmppStateError(f"SMPP account {self.config.name} closed")
        loop = asyncio.get_running_loop()
        if not self._waiters:
            bind = self._pick(loop.time())
            if bind is not None:
                bind.in_flight += 1
                return bind
        waiter: asyncio.Future[_Bind] = loop.create_future()
        self._waiters.append(waiter)
        self._arm_pause_timer(loop.time())
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                waiter.result().in_flight -= 1  # handed a bind, then cancelled: pass it on
                self._wake()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _pick(self, now: float) -> _Bind | None:
        """The bound, unpaused bind with window room and the fewest outstanding;
        ties go round the binds in turn."""
        window = self.config.session.window
        ready = [
            b for b in self._binds if b.is_bound and b.paused_until <= now and b.in_flight < window
        ]
        if not ready:
            return None
        n = len(self._binds)
        bind = min(ready, key=lambda b: (b.in_flight, (b.index - self._turn) % n))
        self._turn = (bind.index + 1) % n
        return bind

    def _wake(self) -> None:
        if self._closing:
            return
        now = asyncio.get_running_loop().time()
        while self._waiters:
            bind = self._pick(now)
            if bind is None:
                break
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            bind.in_flight += 1
            waiter.set_result(bind)
        self._arm_pause_timer(now)

    def _arm_pause_timer(self, now: float) -> None:
        """While submitters wait and some bound bind only rests, wake them when it
        may take traffic again."""
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        if not self._waiters or self._closing:
            return
        resting = [b.paused_until for b in self._binds if b.is_bound and b.paused_until > now]
        if resting:
            loop = asyncio.get_running_loop()
            self._pause_timer = loop.call_at(min(resting), self._wake)

    async def _pace(self, bind: _Bind) -> None:
        now = asyncio.get_running_loop().time()
        wait = 0.0
        if self._bucket is not None:
            wait = self._bucket.reserve(now)
        if bind.bucket is not None:
            wait = max(wait, bind.bucket.reserve(now))
        if wait > 0:
            await asyncio.sleep(wait)

    async def _submit_on(
        self,
        bind: _Bind,
        message: ShortMessage,
        before_send: Callable[[], Awaitable[None]] | None = None,
    ) -> str:
        client = bind.client
        resting = bind.paused_until > asyncio.get_running_loop().time()
        if client is None or not bind.is_bound or resting:
            raise _NotSent  # a bind told to slow down takes no more, even those it was given
        try:
            message_id = await client.submit(message, before_send)
        except SmppStateError:
            # SmppClient raises this only before anything was written.
            raise _NotSent from None
        except SubmitRejectedError as exc:
            if exc.retryable:
                self.stats.throttled += 1
                self._rest(bind, exc)
            else:
                self.stats.rejected += 1
            raise
        except SubmitNotAcknowledgedError:
            self.stats.unacknowledged += 1
            raise
        bind.throttle.reset()
        self.stats.submits += 1
        by_bind = self.stats.submits_by_bind
        by_bind[bind.label] = by_bind.get(bind.label, 0) + 1
        return message_id

    def _rest(self, bind: _Bind, exc: SubmitRejectedError) -> None:
        """Back the bind off after a throttle answer. Answers to submits sent before
        the rest began do not lengthen it: only a throttle after resuming does."""
        now = asyncio.get_running_loop().time()
        if now < bind.paused_until:
            return
        pause = bind.throttle.next_delay()
        bind.paused_until = now + pause
        log.info("SMPP %s: %s; resting %.2fs", bind.label, exc, pause)
        self._arm_pause_timer(now)


__all__ = ["AccountConfig", "AccountStats", "SmppAccount"]
