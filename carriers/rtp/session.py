"""One call's RTP media session (RFC 3550, RFC 3551 PCMU/PCMA, RFC 4733), sans-IO.

The SIP layer creates one ``RtpSession`` per call once SDP is negotiated.
Datagrams come in through ``receive(data, addr, now)``; every 20 ms the media
clock calls ``tick(now, outgoing_pcm)`` (or the two halves
``receive_frame``/``send_frame``, or their batch forms over many sessions),
which plays out one received frame and returns the datagrams to send.
Nothing here touches a socket or reads the clock.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import numpy.typing as npt

from carriers.rtp.dtmf import DtmfEvent, DtmfReceiver, DtmfSender
from carriers.rtp.errors import RtpError, RtpParseError
from carriers.rtp.jitter import MAX_DROPOUT, MAX_MISORDER, JitterBuffer
from carriers.rtp.packet import RtpPacket, is_rtcp, parse_rtp
from dsp.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

__all__ = ["CODECS", "FRAME_SAMPLES", "STATIC_PAYLOAD_TYPES", "RtpSession", "RtpStats"]

FRAME_SAMPLES: Final = 160  # 20 ms at 8 kHz (RFC 3551 4.5.14: G.711 default ptime)
CLOCK_RATE: Final = 8000
STATIC_PAYLOAD_TYPES: Final = {"PCMU": 0, "PCMA": 8}  # RFC 3551 table 4
_MASK32: Final = 0xFFFFFFFF
_HEADER: Final = struct.Struct("!BBHII")

Pcm = npt.NDArray[np.int16]
_Encoder = Callable[[npt.ArrayLike], npt.NDArray[np.uint8]]
_Decoder = Callable[[bytes | npt.NDArray[np.uint8]], npt.NDArray[np.int16]]


@dataclass(frozen=True, slots=True)
class _Codec:
    name: str
    encode: _Encoder
    decode: _Decoder
    silence: int  # the code of a zero sample


CODECS: Final = {
    "PCMU": _Codec("PCMU", ulaw_encode, ulaw_decode, ULAW_SILENCE),
    "PCMA": _Codec("PCMA", alaw_encode, alaw_decode, ALAW_SILENCE),
}


@dataclass(slots=True)
class RtpStats:
    """Counters of one session.

    ``lost`` is expected minus received (RFC 3550 A.3; negative with
    duplicates), ``jitter_ms`` the RFC 3550 A.8 interarrival jitter,
    ``late`` packets dropped by the jitter buffer, ``bytes_*`` RTP payload
    octets (the RFC 3550 6.4.1 octet count).
    """

    sent: int = 0
    received: int = 0
    lost: int = 0
    jitter_ms: float = 0.0
    late: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    discarded: int = 0  # malformed, unexpected payload type, or an unconfirmed jump
    rtcp_received: int = 0


class _SourceState:
    """RFC 3550 A.1 sequence tracking and A.8 jitter for the current remote SSRC."""

    __slots__ = (
        "bad_seq",
        "base_seq",
        "carried_lost",
        "cycles",
        "jitter",
        "max_seq",
        "received",
        "transit",
    )

    def __init__(self, sequence: int) -> None:
        self.carried_lost = 0  # lost before a confirmed sequence restart
        self.jitter = 0.0  # in timestamp units
        self.transit: float | None = None
        self._init_seq(sequence)

    def _init_seq(self, sequence: int) -> None:
        # RFC 3550 A.1 init_seq, counting the packet that starts the run.
        self.base_seq = sequence
        self.max_seq = sequence
        self.cycles = 0
        self.received = 1
        self.bad_seq = -1

    def lost(self) -> int:
        """Cumulative lost per RFC 3550 A.3: expected minus received."""
        expected = self.cycles + self.max_seq - self.base_seq + 1
        return self.carried_lost + expected - self.received

    def update_seq(self, sequence: int) -> bool:
        """RFC 3550 A.1 ``update_seq``; False for a packet not to be counted."""
        udelta = (sequence - self.max_seq) & 0xFFFF
        if udelta < MAX_DROPOUT:
            if sequence < self.max_seq:  # sequence number wrapped: one more cycle
                self.cycles += 0x10000
            self.max_seq = sequence
        elif udelta <= 0x10000 - MAX_MISORDER:
            # A very large jump: the source restarted if the next packet follows it.
            if sequence != self.bad_seq:
                self.bad_seq = (sequence + 1) & 0xFFFF
                return False
            self.carried_lost = self.lost()
            self._init_seq(sequence)
            return True
        # In order, a small gap, a duplicate or a reordered packet: all count.
        self.received += 1
        return True

    def update_jitter(self, timestamp: int, arrival: float) -> None:
        """RFC 3550 A.8: J += (|D(i-1, i)| - J) / 16, in timestamp units."""
        transit = arrival * CLOCK_RATE - timestamp
        if self.transit is not None:
            # Differences are taken modulo 2**32 so a timestamp wrap is no jump.
            d = (transit - self.transit + 2**31) % 2**32 - 2**31
            self.jitter += (abs(d) - self.jitter) / 16
        self.transit = transit


class RtpSession:
    """RTP media of one call: receive, jitter buffer, G.711, RFC 4733, symmetric RTP."""

    __slots__ = (
        "_codec",
        "_digits",
        "_dtmf_events",
        "_dtmf_rx",
        "_dtmf_tx",
        "_event_ts",
        "_first_sent",
        "_jitter",
        "_latched_ssrc",
        "_lost_before",
        "_previous_ssrc",
        "_remote",
        "_seq",
        "_silence_payload",
        "_source",
        "_source_ssrc",
        "_ts",
        "codec",
        "dtmf_payload_type",
        "local_port",
        "payload_type",
        "ssrc",
        "stats",
        "symmetric",
    )

    def __init__(
        self,
        *,
        local_port: int,
        remote: tuple[str, int] | None,
        payload_type: int,
        codec: str,
        dtmf_payload_type: int | None,
        rng: random.Random,
        symmetric: bool = True,
        jitter_buffer: JitterBuffer | None = None,
    ) -> None:
        self.configure(payload_type=payload_type, codec=codec, dtmf_payload_type=dtmf_payload_type)
        self.local_port = local_port
        self.symmetric = symmetric
        self._remote = remote
        # RFC 3550 5.1: SSRC, initial sequence number and timestamp are random.
        self.ssrc = rng.getrandbits(32)
        self._seq = rng.getrandbits(16)
        self._ts = rng.getrandbits(32)
        self._event_ts = self._ts
        self._first_sent = True
        self._jitter = jitter_buffer if jitter_buffer is not None else JitterBuffer()
        self._dtmf_rx = DtmfReceiver(clock_rate=CLOCK_RATE)
        self._dtmf_tx = DtmfSender(samples_per_tick=FRAME_SAMPLES, clock_rate=CLOCK_RATE)
        self._digits: list[str] = []
        self._dtmf_events: list[DtmfEvent] = []
        self._latched_ssrc: int | None = None
        self._previous_ssrc: int | None = None
        self._source: _SourceState | None = None
        self._source_ssrc: int | None = None
        self._lost_before = 0
        self.stats = RtpStats()

    # ---------------------------------------------------------- addressing

    @property
    def remote(self) -> tuple[str, int] | None:
        """Where media is sent: the SDP address, or the latched source."""
        return self._remote

    def set_remote(self, remote: tuple[str, int]) -> None:
        """New SDP address (answer or re-INVITE); symmetric latching may happen again."""
        self._remote = remote
        self._latched_ssrc = self._previous_ssrc = None

    def configure(self, *, payload_type: int, codec: str, dtmf_payload_type: int | None) -> None:
        """Apply the codec the SDP negotiation chose (it is known only once the
        answer arrives, after the socket and the offer were made)."""
        codec_info = CODECS.get(codec.upper())
        if codec_info is None:
            raise RtpError(f"unsupported codec {codec!r}; expected one of {sorted(CODECS)}")
        self._codec = codec_info
        self.codec = codec_info.name
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self._silence_payload = bytes((codec_info.silence,)) * FRAME_SAMPLES

    def _latch(self, ssrc: int, addr: tuple[str, int]) -> None:
        # RFC 4961 symmetric RTP: send where the peer's media comes from.  Latch on
        # the first valid packet and again only when the SSRC changes, so a
        # stray packet from elsewhere cannot steer the stream.
        # Packets of the previously latched SSRC still in flight do not latch back.
        if ssrc != self._latched_ssrc and ssrc != self._previous_ssrc:
            self._previous_ssrc = self._latched_ssrc
            self._latched_ssrc = ssrc
            if addr != self._remote:
                self._remote = addr

    # ------------------------------------------------------------- receive

    def receive(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """Feed one datagram received from ``addr`` at local time ``now`` (seconds)."""
        stats = self.stats
        if is_rtcp(data):  # RFC 5761 demultiplexing (rtcp-mux); reports not used yet
            stats.rtcp_received += 1
            return
        try:
            packet = parse_rtp(data)
        except RtpParseError:
            stats.discarded += 1
            return
        payload_type = packet.payload_type
        audio = payload_type == self.payload_type
        if not audio and payload_type != self.dtmf_payload_type:
            stats.discarded += 1
            return
        if self.symmetric:
            self._latch(packet.ssrc, addr)
        if not self._count(packet):
            stats.discarded += 1
            return
        stats.bytes_received += len(packet.payload)
        if audio:
            source = self._source
            assert source is not None  # set by _count
            source.update_jitter(packet.timestamp, now)
            stats.jitter_ms = source.jitter * 1000 / CLOCK_RATE
            self._jitter.push(packet, now)
        else:
            self._receive_event(packet, now)
        stats.late = self._jitter.late_dropped

    def _count(self, packet: RtpPacket) -> bool:
        """RFC 3550 A.1/A.3 per-source statistics; False drops the packet."""
        source = self._source
        if source is None or packet.ssrc != self._source_ssrc:
            if source is not None:  # a new source: keep what the old one lost
                self._lost_before += source.lost()
            source = self._source = _SourceState(packet.sequence)
            self._source_ssrc = packet.ssrc
        elif not source.update_seq(packet.sequence):
            return False
        self.stats.received += 1
        self.stats.lost = self._lost_before + source.lost()
        return True

    def _receive_event(self, packet: RtpPacket, now: float) -> None:
        # The event occupies a playout slot in the shared sequence space: file
        # silence there so the audio buffer does not count it as lost.
        self._jitter.push(replace(packet, payload=self._silence_payload, marker=False), now)
        event = self._dtmf_rx.on_packet(packet)
        if event is not None:
            self._digits.append(event.digit)
            self._dtmf_events.append(event)

    # ----------------------------------------------------------------- DTMF

    def send_dtmf(self, digits: str) -> None:
        """Queue RFC 4733 digits; they replace audio packets while being sent."""
        if self.dtmf_payload_type is None:
            raise RtpError("no telephone-event payload type was negotiated")
        self._dtmf_tx.queue(digits)

    @property
    def dtmf_received(self) -> str:
        """Digits received so far, in order."""
        return "".join(self._digits)

    @property
    def dtmf_events(self) -> tuple[DtmfEvent, ...]:
        """Received digits with their durations and volumes."""
        return tuple(self._dtmf_events)

    @property
    def dtmf_sending(self) -> bool:
        """True while queued digits are still being sent."""
        return self._dtmf_tx.busy

    # ----------------------------------------------------------------- tick

    def tick(self, now: float, outgoing_pcm: Pcm | None) -> tuple[Pcm, list[bytes]]:
        """One 20 ms media step: (received frame, datagrams to send).

        The frame is 160 int16 samples, silence where nothing was received.
        ``outgoing_pcm`` None sends comfort silence so the far end's media
        timeout and NAT bindings stay alive.
        """
        return self.receive_frame(now), self.send_frame(outgoing_pcm)

    def receive_frame(self, now: float) -> Pcm:
        """Play out the next received frame (first half of ``tick``)."""
        payload = self._jitter.pop(now)
        if payload is None:
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)
        if len(payload) != FRAME_SAMPLES:  # a peer ignoring ptime: fit to one frame
            payload = (payload + self._silence_payload)[:FRAME_SAMPLES]
        return self._codec.decode(payload)

    def send_frame(self, outgoing_pcm: Pcm | None) -> list[bytes]:
        """Encode and packetise one outgoing frame (second half of ``tick``)."""
        if outgoing_pcm is None:
            return self._send_payload(self._silence_payload)
        if len(outgoing_pcm) != FRAME_SAMPLES:
            raise ValueError(f"outgoing frame of {len(outgoing_pcm)} samples, need 160")
        return self._send_payload(self._codec.encode(outgoing_pcm).tobytes())

    def _send_payload(self, payload: bytes) -> list[bytes]:
        timestamp = self._ts
        # The media clock runs whether or not a packet goes out (RFC 3550 5.1).
        self._ts = (timestamp + FRAME_SAMPLES) & _MASK32
        if self._remote is None:
            return []
        payload_type = self.payload_type
        marker = self._first_sent  # RFC 3551 4.1: first packet of the stream
        if self._dtmf_tx.busy:
            event = self._dtmf_tx.next_payload()
            if event is not None and self.dtmf_payload_type is not None:
                payload, marker, new_event = event
                if new_event:  # RFC 4733 2.3.5: every packet carries the start time
                    self._event_ts = timestamp
                timestamp = self._event_ts
                payload_type = self.dtmf_payload_type
        self._first_sent = False
        sequence = self._seq
        self._seq = (sequence + 1) & 0xFFFF
        stats = self.stats
        stats.sent += 1
        stats.bytes_sent += len(payload)
        second = payload_type | 0x80 if marker else payload_type
        return [_HEADER.pack(0x80, second, sequence, timestamp, self.ssrc) + payload]

    # ---------------------------------------------------------------- batch

    @staticmethod
    def receive_frames(sessions: Sequence[RtpSession], now: float) -> Pcm:
        """``receive_frame`` for many sessions: row i of an (n, 160) array is
        session i's frame, decoded with one table lookup per codec."""
        count = len(sessions)
        payloads = []
        silent = []
        for index, session in enumerate(sessions):
            payload = session._jitter.pop(now)
            if payload is None or len(payload) != FRAME_SAMPLES:
                if payload is None:
                    silent.append(index)
                    payload = session._silence_payload
                else:
                    payload = (payload + session._silence_payload)[:FRAME_SAMPLES]
            payloads.append(payload)
        codes = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(count, FRAME_SAMPLES)
        frames = _decode_rows(sessions, codes)
        if silent:
            frames[silent] = 0
        return frames

    @staticmethod
    def send_frames(
        sessions: Sequence[RtpSession], outgoing: Sequence[Pcm | None]
    ) -> list[list[bytes]]:
        """``send_frame`` for many sessions, encoding with one lookup per codec."""
        encoded = RtpSession.encode_frames(sessions, outgoing)
        return [
            session.send_payload(payload)
            for session, payload in zip(sessions, encoded, strict=True)
        ]

    @staticmethod
    def encode_frames(
        sessions: Sequence[RtpSession], outgoing: Sequence[Pcm | None]
    ) -> list[bytes | None]:
        """The encoding half of ``send_frames``: session i's G.711 payload, or
        None where ``outgoing[i]`` is None (comfort silence); ``send_payload``
        packetises it. The media clock packetises and sends one session at a
        time, so that a tick does not hold one list per call at once (which,
        past ~700 calls, started a garbage collection on every tick)."""
        present = [i for i, pcm in enumerate(outgoing) if pcm is not None]
        frames = [pcm for pcm in outgoing if pcm is not None]
        encoded: list[bytes | None] = [None] * len(sessions)
        if present:
            block = np.stack(frames).astype(np.int16, copy=False)
            if block.shape[1] != FRAME_SAMPLES:
                raise ValueError(f"outgoing frames of {block.shape[1]} samples, need 160")
            codes = _encode_rows([sessions[i] for i in present], block).tobytes()
            for row, index in enumerate(present):
                encoded[index] = codes[row * FRAME_SAMPLES : (row + 1) * FRAME_SAMPLES]
        return encoded

    def send_payload(self, payload: bytes | None) -> list[bytes]:
        """Packetise one payload from ``encode_frames`` (None: comfort silence)."""
        return self._send_payload(self._silence_payload if payload is None else payload)


def _codec_groups(sessions: Sequence[RtpSession]) -> list[tuple[_Codec, list[int] | None]]:
    """Rows per codec; ``None`` rows means every session uses that codec."""
    first = sessions[0]._codec if sessions else CODECS["PCMU"]
    if all(s._codec is first for s in sessions):
        return [(first, None)]
    groups: dict[str, list[int]] = {}
    for index, session in enumerate(sessions):
        groups.setdefault(session._codec.name, []).append(index)
    return [(CODECS[name], rows) for name, rows in groups.items()]


def _decode_rows(sessions: Sequence[RtpSession], codes: npt.NDArray[np.uint8]) -> Pcm:
    frames = np.empty(codes.shape, dtype=np.int16)
    for codec, rows in _codec_groups(sessions):
        if rows is None:
            frames[:] = codec.decode(codes)
        else:
            frames[rows] = codec.decode(codes[rows])
    return frames


def _encode_rows(sessions: Sequence[RtpSession], block: Pcm) -> npt.NDArray[np.uint8]:
    codes = np.empty(block.shape, dtype=np.uint8)
    for codec, rows in _codec_groups(sessions):
        if rows is None:
            codes[:] = codec.encode(block)
        else:
            codes[rows] = codec.encode(block[rows])
    return codes
