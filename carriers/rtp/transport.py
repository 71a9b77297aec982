"""The asyncio side of RTP: UDP sockets, port allocation and the media clock.

This is the only module of ``carriers.rtp`` that touches sockets or the
clock.  It feeds datagrams into sans-IO ``RtpSession`` objects and drives all
of them from one shared 20 ms ``MediaClock``, in batches.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from carriers.rtp.errors import RtpError
from carriers.rtp.session import FRAME_SAMPLES, RtpSession

__all__ = ["FrameHandler", "MediaClock", "PortAllocator", "RtpEndpoint", "current_endpoint"]

log = logging.getLogger(__name__)

FrameHandler = Callable[["RtpEndpoint", npt.NDArray[np.int16]], npt.NDArray[np.int16] | None]
"""handler(endpoint, received_frame) -> outgoing frame (160 int16) or None for silence."""

_BIND_ATTEMPTS: Final = 16


class PortAllocator:
    """Even RTP ports from ``[low, high)``; the odd port above each stays free for RTCP.

    Released ports go to the back of the queue, so a port is reused as late
    as possible and stray packets of an old call rarely reach a new one.
    """

    def __init__(self, low: int = 20000, high: int = 30000) -> None:
        first = low + (low & 1)
        if not 0 < first < high - 1 <= 65535:
            raise ValueError(f"no even port with its RTCP neighbour in [{low}, {high})")
        self.low = low
        self.high = high
        self._free: deque[int] = deque(range(first, high - 1, 2))
        self._used: set[int] = set()

    def allocate(self) -> int:
        """Take a free even port; ``RtpError`` when the range is exhausted."""
        if not self._free:
            raise RtpError(f"all RTP ports in [{self.low}, {self.high}) are in use")
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        """Give a port back; ``RtpError`` if it was not allocated."""
        if port not in self._used:
            raise RtpError(f"port {port} was not allocated")
        self._used.remove(port)
        self._free.append(port)

    @property
    def available(self) -> int:
        """Ports that can still be allocated."""
        return len(self._free)


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession, loop: asyncio.AbstractEventLoop) -> None:
        self.session = session
        self.time = loop.time
        self.errors = 0

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # IPv6 addresses come as 4-tuples; the session keys on (host, port).
        self.session.receive(data, addr if len(addr) == 2 else addr[:2], self.time())

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the peer is gone or not ready yet;
        # the call layer's media timeout decides what that means.
        self.errors += 1


class RtpEndpoint:
    """One UDP socket per call, feeding an ``RtpSession`` with ``loop.time()``."""

    def __init__(
        self,
        transport: asyncio.DatagramTransport,
        protocol: _RtpProtocol,
        session: RtpSession,
        local_port: int,
        allocator: PortAllocator,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._allocator = allocator
        self.session = session
        self.local_port = local_port
        self.closed = False
        # The frame the media clock played out for this endpoint on its
        # current tick, set for every endpoint before any handler runs, so a
        # bridge handler can forward the other leg's audio of the same tick.
        self.last_frame: npt.NDArray[np.int16] | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        allocator: PortAllocator,
        session_factory: Callable[[int], RtpSession],
    ) -> RtpEndpoint:
        """Bind a socket on ``host`` at the next free port and create its session.

        A port that turns out to be taken by another process goes back to the
        allocator and the next one is tried.
        """
        loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        for _ in range(_BIND_ATTEMPTS):
            port = allocator.allocate()
            try:
                session = session_factory(port)
                transport, protocol = await loop.create_datagram_endpoint(
                    functools.partial(_RtpProtocol, session, loop), local_addr=(host, port)
                )
            except OSError as exc:
                allocator.release(port)
                last_error = exc
                continue
            except BaseException:
                allocator.release(port)
                raise
            return cls(transport, protocol, session, port, allocator)
        raise RtpError(f"could not bind an RTP port on {host}: {last_error}") from last_error

    def send(self, datagrams: list[bytes]) -> None:
        """Send datagrams to the session's current remote (SDP or latched)."""
        remote = self.session.remote
        if remote is None or self.closed:
            return
        sendto = self._transport.sendto
        for datagram in datagrams:
            sendto(datagram, remote)

    def close(self) -> None:
        """Close the socket and release the port (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._transport.close()
        self._allocator.release(self.local_port)

    @property
    def socket_errors(self) -> int:
        """ICMP errors reported on the socket (port unreachable...)."""
        return self._protocol.errors


_current: RtpEndpoint | None = None


def current_endpoint() -> RtpEndpoint | None:
    """The endpoint whose frame handler the media clock is running now (None
    outside a handler). With `RtpEndpoint.last_frame`, already set for every
    endpoint of the tick, it lets per-call code that sees only its frame
    batch work across calls (`engine.voice.analysis_batch`)."""
    return _current


class MediaClock:
    """One shared 20 ms clock for every call.

    Each tick, for every registered endpoint, it plays out the received frame
    (``RtpSession.receive_frames``, batched), calls
    ``handler(endpoint, received_frame) -> outgoing_pcm | None``, encodes and
    packetises (``RtpSession.send_frames``, batched) and sends.  Ticks are
    scheduled on absolute deadlines ``start + n * period`` with
    ``loop.call_at``, so they never drift; each tick's lateness (actual minus
    deadline) is kept in a bounded ring.  A tick more than a frame late
    processes the missed frames too, at most ``MAX_CATCH_UP`` at once; frames
    beyond that are skipped (and counted) so the clock gets back to real time.
    """

    MAX_CATCH_UP: Final = 5
    LATENESS_RING: Final = 4096

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, period: float = 0.02) -> None:
        if period <= 0:
            raise ValueError("period must be positive")
        self._loop = loop
        self.period = period
        self._handlers: dict[RtpEndpoint, FrameHandler] = {}
        self._entries: list[tuple[RtpEndpoint, FrameHandler]] | None = None
        self._lateness = np.zeros(self.LATENESS_RING, dtype=np.float64)
        self._ticks = 0
        self._start = 0.0
        self._index = 0
        self._timer: asyncio.TimerHandle | None = None
        self.frames = 0  # frames processed
        self.skipped_frames = 0
        self.handler_errors = 0

    def add(self, endpoint: RtpEndpoint, handler: FrameHandler) -> None:
        """Register (or re-register) an endpoint and its per-frame handler."""
        self._handlers[endpoint] = handler
        self._entries = None

    def remove(self, endpoint: RtpEndpoint) -> None:
        """Unregister an endpoint; unknown endpoints are ignored."""
        if self._handlers.pop(endpoint, None) is not None:
            self._entries = None

    @property
    def active(self) -> int:
        """Number of registered endpoints."""
        return len(self._handlers)

    def sessions(self) -> list[RtpSession]:
        """The sessions of the registered endpoints (for statistics)."""
        return [endpoint.session for endpoint in self._handlers]

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._timer is not None

    def start(self) -> None:
        """Start ticking (from within the running loop unless one was given)."""
        if self._timer is not None:
            return
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        self._loop = loop
        self._start = loop.time()
        self._index = 1
        self._timer = loop.call_at(self._start + self.period, self._on_tick)

    async def stop(self) -> None:
        """Stop ticking; registered endpoints stay registered."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.sleep(0)

    def reset_lateness(self) -> None:
        """Forget recorded lateness, to measure a window from now on."""
        self._ticks = 0

    def lateness_percentiles(self) -> dict[str, float]:
        """Tick lateness over the last ``LATENESS_RING`` ticks, in milliseconds."""
        count = min(self._ticks, self.LATENESS_RING)
        if count == 0:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0, "ticks": 0}
        sample = self._lateness[:count] * 1000.0
        p50, p99 = np.percentile(sample, [50, 99])
        return {
            "p50": float(p50),
            "p99": float(p99),
            "max": float(sample.max()),
            "ticks": self._ticks,
        }

    def _on_tick(self) -> None:
        loop = self._loop
        assert loop is not None
        period = self.period
        deadline = self._start + self._index * period
        lateness = loop.time() - deadline
        self._lateness[self._ticks % self.LATENESS_RING] = lateness
        self._ticks += 1
        due = 1 + max(0, math.floor(lateness / period))
        frames = min(due, self.MAX_CATCH_UP)
        self.skipped_frames += due - frames
        try:
            for k in range(frames):
                self._step(deadline + k * period)
        finally:
            self._index += due
            if self._timer is not None:  # not stopped by a handler
                self._timer = loop.call_at(self._start + self._index * period, self._on_tick)

    def _active_entries(self) -> list[tuple[RtpEndpoint, FrameHandler]]:
        entries = self._entries
        if entries is None or any(endpoint.closed for endpoint, _ in entries):
            for endpoint in [e for e in self._handlers if e.closed]:
                del self._handlers[endpoint]
            entries = self._entries = list(self._handlers.items())
        return entries

    def _step(self, now: float) -> None:
        entries = self._active_entries()
        if not entries:
            return
        self.frames += 1
        sessions = [endpoint.session for endpoint, _ in entries]
        received = RtpSession.receive_frames(sessions, now)
        for (endpoint, _), frame in zip(entries, received, strict=True):
            endpoint.last_frame = frame
        outgoing = [
            self._call(entry, frame) for entry, frame in zip(entries, received, strict=True)
        ]
        payloads = RtpSession.encode_frames(sessions, outgoing)
        # One call at a time: each call's datagram list is freed once sent, so
        # a tick leaves no container per call for the garbage collector to
        # count (RtpSession.send_frames would hold one per call at once).
        for (endpoint, _), session, payload in zip(entries, sessions, payloads, strict=True):
            endpoint.send(session.send_payload(payload))

    def _call(
        self, entry: tuple[RtpEndpoint, FrameHandler], frame: npt.NDArray[np.int16]
    ) -> npt.NDArray[np.int16] | None:
        global _current
        endpoint, handler = entry
        _current = endpoint
        try:
            out = handler(endpoint, frame)
        except Exception:
            # One call's bug must not stall every other call's media.
            self.handler_errors += 1
            log.exception("media handler failed for RTP port %d", endpoint.local_port)
            return None
        finally:
            _current = None
        if out is not None and np.shape(out) != (FRAME_SAMPLES,):
            self.handler_errors += 1
            log.error("media handler returned shape %s, need (160,)", np.shape(out))
            return None
        return out
