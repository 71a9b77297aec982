"""Playout (jitter) buffer for one 8 kHz, 20 ms G.711 stream, sans-IO.

Packets are filed by extended sequence number (RFC 3550 A.1 style 16-bit
unwrapping) and played out one slot per media tick.  Playout of a stream, or
of a new talkspurt after the buffer ran dry, starts ``delay`` seconds after
the arrival of its first packet; the delay adapts between ``min_delay`` and
``max_delay`` from the interarrival jitter measured as in RFC 3550 A.8.

The buffer grows and shrinks its delay the usual way for time-driven playout:

* an underrun (nothing buffered at a slot) stops playout without skipping the
  slot, so the next packet re-starts playout after a fresh prebuffer delay
  (this is also how a new talkspurt after silence suppression re-syncs);
* when the queue has stayed more than a frame above the target for a whole
  second (a sender clock faster than ours, or a delay spike that has passed),
  one frame is dropped; a queue longer than ``max_delay`` is cut at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from carriers.rtp.packet import RtpPacket

__all__ = ["JitterBuffer", "JitterStats"]

# RFC 3550 A.1: a jump beyond these is a restart, confirmed by a second packet.
MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
_MASK32: Final = 0xFFFFFFFF
_HISTORY_BITS: Final = 64  # played slots remembered to tell duplicates from late packets
_HISTORY_MASK: Final = (1 << _HISTORY_BITS) - 1
_SHRINK_WINDOW: Final = 50  # pops (one second) of excess depth before dropping a frame
_TIMED_PACKETS_BEFORE_ADAPTING: Final = 16
_MAX_FRAMES_HELD: Final = 512


class _State(enum.Enum):
    IDLE = enum.auto()  # nothing to play: no stream yet, or the buffer ran dry
    BUFFERING = enum.auto()  # waiting until start_at before the first slot
    PLAYING = enum.auto()


@dataclass(slots=True)
class JitterStats:
    """Counters of one buffer; ``missing`` slots are filled with silence by the caller."""

    played: int = 0
    missing: int = 0
    late_dropped: int = 0
    duplicates: int = 0
    discarded: int = 0  # frames dropped to shorten the delay
    resyncs: int = 0  # SSRC changes and confirmed sequence jumps


class JitterBuffer:
    """Time-driven playout buffer for one 8 kHz 20 ms stream.

    ``push(packet, arrival)`` files packets by sequence (16-bit wrap,
    duplicates, late packets whose slot was already played are dropped and
    counted); ``pop(now)`` is called once per media tick and returns the
    payload for the next playout slot, or ``None`` when there is nothing to
    play (the caller fills silence).  Playout starts ``delay`` seconds after
    the first packet's arrival; the delay adapts within
    ``min_delay..max_delay`` from the measured jitter.  A new SSRC or a
    confirmed sequence jump re-syncs the buffer; a new talkspurt after the
    buffer ran dry starts a fresh prebuffer.
    """

    __slots__ = (
        "_clock_rate",
        "_floor",
        "_frame",
        "_frames",
        "_highest",
        "_jitter",
        "_last_transit",
        "_max_delay",
        "_min_delay",
        "_next",
        "_played_any",
        "_played_mask",
        "_probe",
        "_ref_ext",
        "_ref_ts",
        "_retired_ssrc",
        "_retired_until",
        "_samples_per_frame",
        "_ssrc",
        "_start_at",
        "_state",
        "_target",
        "_timed",
        "_window_count",
        "_window_min",
        "stats",
    )

    def __init__(
        self,
        *,
        delay: float = 0.04,
        min_delay: float = 0.02,
        max_delay: float = 0.2,
        samples_per_frame: int = 160,
        clock_rate: int = 8000,
    ) -> None:
        if not 0 <= min_delay <= max_delay:
            raise ValueError("need 0 <= min_delay <= max_delay")
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._target = min(max(delay, min_delay), max_delay)
        self._samples_per_frame = samples_per_frame
        self._clock_rate = clock_rate
        self._frame = samples_per_frame / clock_rate
        self._jitter = 0.0
        self._timed = 0
        self.stats = JitterStats()
        self._ssrc: int | None = None
        self._retired_ssrc: int | None = None
        self._retired_until = 0.0
        self._frames: dict[int, bytes] = {}
        self._probe: RtpPacket | None = None
        self._ref_ext: int | None = None
        self._reset_stream(0)

    # ------------------------------------------------------------ properties

    @property
    def played(self) -> int:
        """Slots played from a received packet."""
        return self.stats.played

    @property
    def missing(self) -> int:
        """Slots whose packet was absent while later packets were buffered."""
        return self.stats.missing

    @property
    def late_dropped(self) -> int:
        """Packets that arrived after their slot had been played."""
        return self.stats.late_dropped

    @property
    def duplicates(self) -> int:
        """Packets received twice (buffered or already played)."""
        return self.stats.duplicates

    @property
    def delay(self) -> float:
        """Current target playout delay in seconds."""
        return self._target

    @property
    def jitter(self) -> float:
        """Interarrival jitter estimate (RFC 3550 A.8) in seconds."""
        return self._jitter

    @property
    def depth(self) -> int:
        """Number of frames currently held."""
        return len(self._frames)

    # ------------------------------------------------------------------ push

    def push(self, packet: RtpPacket, arrival: float) -> None:
        """File one received packet; ``arrival`` is the local receive time in seconds."""
        if packet.ssrc != self._ssrc:
            if packet.ssrc == self._retired_ssrc and arrival < self._retired_until:
                # The old stream's packets still in flight after a switch: its
                # buffered tail was discarded, so these are late, not a switch back.
                self.stats.late_dropped += 1
                return
            if self._ssrc is not None:
                self.stats.resyncs += 1
                self._retired_ssrc, self._retired_until = self._ssrc, arrival + self._max_delay
            self._ssrc = packet.ssrc
            self._reset_stream(packet.sequence)
            ext = packet.sequence
        else:
            ext = self._extend(packet.sequence)
            delta = ext - self._highest
            if delta > MAX_DROPOUT or delta < -MAX_MISORDER:
                ext = self._confirm_jump(packet, arrival)
                if ext < 0:
                    return
        self._file(packet, ext, arrival)

    def _extend(self, sequence: int) -> int:
        # Nearest extended value to the highest one seen: handles the 65535 -> 0 wrap.
        delta = ((sequence - self._highest) + 0x8000) & 0xFFFF
        return self._highest + delta - 0x8000

    def _confirm_jump(self, packet: RtpPacket, arrival: float) -> int:
        """RFC 3550 A.1: accept a big jump only when the next packet follows it."""
        probe = self._probe
        if probe is None or packet.sequence != (probe.sequence + 1) & 0xFFFF:
            self._probe = packet
            return -1
        self.stats.resyncs += 1
        self._reset_stream(probe.sequence)
        self._file(probe, probe.sequence, arrival)
        return self._extend(packet.sequence)

    def _reset_stream(self, sequence: int) -> None:
        self._frames = {}
        self._state = _State.IDLE
        self._highest = sequence
        self._next = sequence
        self._floor = sequence  # lowest slot not yet played (meaningful once one was)
        self._played_any = False
        self._played_mask = 0
        self._probe = None
        self._ref_ext = None
        self._ref_ts = 0
        self._last_transit = 0.0
        self._start_at = 0.0
        self._window_count = 0
        self._window_min = 1 << 30

    def _file(self, packet: RtpPacket, ext: int, arrival: float) -> None:
        self._measure(packet.timestamp, ext, arrival)
        if ext > self._highest:
            self._highest = ext
        if self._played_any and ext < self._floor:
            behind = self._floor - 1 - ext
            if behind < _HISTORY_BITS and (self._played_mask >> behind) & 1:
                self.stats.duplicates += 1
            else:
                self.stats.late_dropped += 1
            return
        if ext in self._frames:
            self.stats.duplicates += 1
            return
        self._frames[ext] = packet.payload
        if len(self._frames) > _MAX_FRAMES_HELD:  # nobody is popping: bound the memory
            self._trim()
        if self._state is _State.IDLE:
            self._state = _State.BUFFERING
            self._start_at = arrival + self._target
            self._next = ext
        elif self._state is _State.BUFFERING and ext < self._next:
            self._next = ext  # reordered ahead of the packet that opened the buffer

    def _trim(self) -> None:
        # Keep the newest half (amortised O(1) per packet) and play on from there.
        cutoff = self._highest - _MAX_FRAMES_HELD // 2
        kept = {ext: payload for ext, payload in self._frames.items() if ext > cutoff}
        self.stats.discarded += len(self._frames) - len(kept)
        self._frames = kept
        self._next = max(self._next, min(kept))
        self._floor = max(self._floor, self._next) if self._state is _State.PLAYING else self._floor

    def _measure(self, timestamp: int, ext: int, arrival: float) -> None:
        """RFC 3550 A.8 interarrival jitter, in seconds, over packets whose
        timestamps advance one frame per sequence number; anything else (a new
        talkspurt, an RFC 4733 event) re-anchors the measurement."""
        ref = self._ref_ext
        if (
            ref is not None
            and (timestamp - self._ref_ts) & _MASK32
            == ((ext - ref) * self._samples_per_frame) & _MASK32
        ):
            transit = arrival - (ext - ref) * self._frame
            self._jitter += (abs(transit - self._last_transit) - self._jitter) / 16
            self._last_transit = transit
            self._timed += 1
            if self._timed >= _TIMED_PACKETS_BEFORE_ADAPTING:
                # Enough headroom for ~3 mean deviations plus one frame of tick phase.
                wanted = self._frame + 3 * self._jitter
                self._target = min(max(wanted, self._min_delay), self._max_delay)
        else:
            self._ref_ext, self._ref_ts, self._last_transit = ext, timestamp, arrival

    # ------------------------------------------------------------------- pop

    def pop(self, now: float) -> bytes | None:
        """Payload of the next playout slot, or None (silence) for this tick."""
        state = self._state
        if state is not _State.PLAYING:
            if state is _State.IDLE or now < self._start_at:
                return None
            self._state = _State.PLAYING
        slot = self._next
        payload = self._frames.pop(slot, None)
        if payload is None:
            if not self._frames:
                # Underrun: keep the slot, so a delayed packet is still played
                # after a fresh prebuffer (the delay grows instead of losing it).
                self._state = _State.IDLE
                return None
            self.stats.missing += 1
        else:
            self.stats.played += 1
        self._next = self._floor = slot + 1
        self._played_any = True
        self._played_mask = ((self._played_mask << 1) | (payload is not None)) & _HISTORY_MASK
        self._adapt_depth()
        return payload

    def _adapt_depth(self) -> None:
        queued = self._highest - self._next + 1  # slots until the newest packet, holes included
        target_frames = max(1, round(self._target / self._frame))
        if queued * self._frame > self._max_delay:
            self._skip_to(self._highest - target_frames + 1)
            return
        if queued < self._window_min:
            self._window_min = queued
        self._window_count += 1
        if self._window_count >= _SHRINK_WINDOW:
            if self._window_min > target_frames + 1:
                self._skip_to(self._next + 1)
            self._window_count = 0
            self._window_min = 1 << 30

    def _skip_to(self, slot: int) -> None:
        for dropped in range(self._next, slot):
            if self._frames.pop(dropped, None) is not None:
                self.stats.discarded += 1
            self._played_mask = (self._played_mask << 1) & _HISTORY_MASK
        self._next = self._floor = max(self._next, slot)
