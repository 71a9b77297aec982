"""RFC 4733 telephone-events (DTMF over RTP), sans-IO.

The named-event payload (RFC 4733 2.3) is four octets: event code, E(nd) bit,
R(eserved) bit and 6-bit volume, then a 16-bit duration in timestamp units.
Every packet of one event carries the event's start timestamp (2.3.5), which
is what the receiver keys on to drop retransmissions.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

from carriers.rtp.errors import RtpBuildError, RtpParseError
from carriers.rtp.packet import RtpPacket

__all__ = [
    "DIGITS",
    "DtmfEvent",
    "DtmfReceiver",
    "DtmfSender",
    "decode_event_payload",
    "digit_to_event",
    "encode_event_payload",
    "event_to_digit",
]

DIGITS: Final = "0123456789*#ABCD"
"""RFC 4733 3.2 table 7: event codes 0..15 in this order."""

_PAYLOAD: Final = struct.Struct("!BBH")
_REMEMBERED_EVENTS: Final = 32  # start timestamps kept to recognise retransmissions


def digit_to_event(d: str) -> int:
    """Event code of a DTMF digit (``0-9 * # A-D``, letters in either case)."""
    index = DIGITS.find(d.upper()) if len(d) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF digit: {d!r}")
    return index


def event_to_digit(e: int) -> str:
    """DTMF digit of an event code 0..15."""
    if not 0 <= e < len(DIGITS):
        raise ValueError(f"event {e} is not a DTMF digit")
    return DIGITS[e]


def encode_event_payload(event_code: int, end: bool, volume: int, duration: int) -> bytes:
    """Four-octet RFC 4733 2.3 payload; ``volume`` is -dBm0 (0..63)."""
    if not 0 <= event_code <= 0xFF or not 0 <= volume <= 0x3F or not 0 <= duration <= 0xFFFF:
        raise RtpBuildError(
            f"event {event_code}, volume {volume}, duration {duration} out of range"
        )
    return _PAYLOAD.pack(event_code, (0x80 if end else 0) | volume, duration)


def decode_event_payload(payload: bytes) -> tuple[int, bool, int, int]:
    """``(event, end, volume, duration)`` of an RFC 4733 payload (R bit ignored)."""
    if len(payload) < 4:
        raise RtpParseError(f"telephone-event payload of {len(payload)} bytes, need 4")
    event, flags, duration = _PAYLOAD.unpack_from(payload)
    return event, bool(flags & 0x80), flags & 0x3F, duration


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One received digit; ``volume`` is -dBm0, ``start_timestamp`` the RTP timestamp."""

    digit: str
    duration_ms: int
    volume: int
    start_timestamp: int


@dataclass(slots=True)
class _Partial:
    timestamp: int
    event: int
    volume: int
    duration: int


class DtmfReceiver:
    """Turns telephone-event packets into digits, each reported exactly once.

    An event is reported when its first end packet arrives, or when a packet
    of a new event arrives while the previous one never saw its end (RFC 4733
    2.5.2.2 lets a receiver end an event on a new timestamp).  Redundant end
    packets and retransmissions are recognised by their start timestamp.  An
    event whose start packets were lost is still reported from whichever
    packet arrives.  When one packet completes two events, the second is
    returned by the next call (or by ``flush``).
    """

    __slots__ = ("_clock_rate", "_current", "_done", "_done_order", "_queue")

    def __init__(self, *, clock_rate: int = 8000) -> None:
        self._clock_rate = clock_rate
        self._current: _Partial | None = None
        self._done: set[int] = set()
        self._done_order: deque[int] = deque()
        self._queue: deque[DtmfEvent] = deque()

    def on_packet(self, packet: RtpPacket) -> DtmfEvent | None:
        """Feed one telephone-event packet; returns a completed digit or None."""
        try:
            event, end, volume, duration = decode_event_payload(packet.payload)
        except RtpParseError:
            return self._next_queued()
        timestamp = packet.timestamp
        if event >= len(DIGITS) or timestamp in self._done:
            return self._next_queued()
        current = self._current
        if current is not None and current.timestamp != timestamp:
            self._complete(current)
            current = None
        if current is None:
            current = self._current = _Partial(timestamp, event, volume, duration)
        elif duration > current.duration:
            current.duration = duration
        if end:
            self._complete(current)
        return self._next_queued()

    def flush(self) -> list[DtmfEvent]:
        """Every digit not yet returned, including one whose end never arrived."""
        if self._current is not None:
            self._complete(self._current)
        events = list(self._queue)
        self._queue.clear()
        return events

    def _complete(self, partial: _Partial) -> None:
        self._current = None
        self._done.add(partial.timestamp)
        self._done_order.append(partial.timestamp)
        if len(self._done_order) > _REMEMBERED_EVENTS:
            self._done.discard(self._done_order.popleft())
        duration_ms = partial.duration * 1000 // self._clock_rate
        self._queue.append(
            DtmfEvent(DIGITS[partial.event], duration_ms, partial.volume, partial.timestamp)
        )

    def _next_queued(self) -> DtmfEvent | None:
        return self._queue.popleft() if self._queue else None


# One media tick's worth of sender output: (payload, marker, new_timestamp), or
# None for a silent gap tick.
_Tick = tuple[bytes, bool, bool] | None


class DtmfSender:
    """Schedules queued digits as RFC 4733 packets, one per 20 ms media tick.

    Each digit yields a first packet with the marker bit (and a request to
    take a new event timestamp), packets with a growing duration every tick
    (RFC 4733 2.5.1.2), ``end_repeats`` identical end packets (2.5.1.4), then
    ``gap_ms`` of ticks with no event (``next_payload`` returns None and the
    caller sends audio).
    """

    __slots__ = ("_clock_rate", "_end_repeats", "_pending", "_samples_per_tick", "_ticks", "volume")

    def __init__(
        self,
        *,
        volume: int = 10,
        samples_per_tick: int = 160,
        clock_rate: int = 8000,
        end_repeats: int = 3,
    ) -> None:
        if not 0 <= volume <= 0x3F:
            raise ValueError("volume is -dBm0 in 0..63")
        self.volume = volume
        self._samples_per_tick = samples_per_tick
        self._clock_rate = clock_rate
        self._end_repeats = max(1, end_repeats)
        self._pending: deque[tuple[int, int, int]] = deque()  # (event, samples, gap ticks)
        self._ticks: deque[_Tick] = deque()

    def queue(self, digits: str, *, duration_ms: int = 100, gap_ms: int = 60) -> None:
        """Queue digits to send after anything already queued."""
        events = [digit_to_event(d) for d in digits]  # validate all before queueing any
        samples = duration_ms * self._clock_rate // 1000
        if not 0 < samples <= 0xFFFF or gap_ms < 0:
            raise ValueError(f"tone of {duration_ms} ms / gap {gap_ms} ms not representable")
        tick_ms = 1000 * self._samples_per_tick / self._clock_rate
        gap_ticks = -(-gap_ms // tick_ms)  # ceiling
        self._pending.extend((event, samples, int(gap_ticks)) for event in events)

    def next_payload(self) -> tuple[bytes, bool, bool] | None:
        """This tick's event payload ``(payload, marker, new_timestamp)``, or None."""
        if not self._ticks:
            if not self._pending:
                return None
            self._schedule(*self._pending.popleft())
        return self._ticks.popleft()

    @property
    def busy(self) -> bool:
        """True while a digit or its trailing gap is still to be sent."""
        return bool(self._ticks) or bool(self._pending)

    def _schedule(self, event: int, samples: int, gap_ticks: int) -> None:
        step = self._samples_per_tick
        elapsed = 0
        while elapsed < samples:
            first = elapsed == 0
            elapsed = min(elapsed + step, samples)
            end = elapsed == samples
            payload = encode_event_payload(event, end, self.volume, elapsed)
            self._ticks.append((payload, first, first))
        for _ in range(self._end_repeats - 1):
            self._ticks.append((payload, False, False))
        self._ticks.extend([None] * gap_ticks)
