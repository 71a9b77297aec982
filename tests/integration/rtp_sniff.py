"""What a SIPp peer was sent, seen on the wire: an AF_PACKET capture on the
loopback interface (root, as in CI) of the RTP arriving at one UDP port,
split by the sender's port (one flow per outdial call), with each flow's
audio decoded and its dominant frequency measured.

SIPp cannot record what it hears; the kernel can show it to us. The
decoder is the ITU-T G.711 formula written out here, not outdial's tables.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def ulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law to linear (ITU-T G.711 section 2, by the formula)."""
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return np.where(sign != 0, 0x84 - magnitude, magnitude - 0x84).astype(np.float64)


@dataclass
class Flow:
    """The RTP one sender port sent to the watched port."""

    packets: list[tuple[float, int, bytes]] = field(default_factory=list)  # (time, pt, payload)

    def audio(self, since: float = 0.0, until: float = float("inf")) -> np.ndarray:
        parts = [ulaw_decode(p) for t, pt, p in self.packets if pt == 0 and since <= t < until]
        return np.concatenate(parts) if parts else np.zeros(0)

    def events(self) -> list[tuple[float, bytes]]:
        """RFC 4733 payloads (payload types 96-127) with their arrival times."""
        return [(t, p) for t, pt, p in self.packets if 96 <= pt <= 127]

    def first_audio_time(self, freq: float, tolerance: float = 25.0, level: float = 500.0) -> float:
        """Arrival time of the first 20 ms packet whose audio is `freq` Hz."""
        for t, pt, payload in self.packets:
            if pt != 0:
                continue
            pcm = ulaw_decode(payload)
            if np.sqrt(np.mean(pcm**2)) > level and abs(dominant(pcm) - freq) <= tolerance:
                return t
        raise AssertionError(f"no {freq:g} Hz audio in the flow")


def dominant(pcm: np.ndarray, rate: int = 8000) -> float:
    """The strongest frequency of `pcm` (Hz), from a windowed FFT."""
    if len(pcm) < 32:
        return 0.0
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    spectrum[:3] = 0  # DC
    return float(np.argmax(spectrum) * rate / len(pcm))


class RtpSniffer:
    """Capture UDP datagrams to `port` on lo in a thread until `stop()`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.flows: dict[int, Flow] = {}
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RtpSniffer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            if addr[2] == PACKET_OUTGOING:
                continue  # loopback shows each packet leaving and arriving
            self._take(frame, time.monotonic())

    def _take(self, frame: bytes, at: float) -> None:
        if len(frame) < 14 + 20 + 8 + 12 or frame[12:14] != b"\x08\x00":
            return
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:
            return
        src, dst = struct.unpack("!HH", ip[ihl : ihl + 4])
        if dst != self.port:
            return
        rtp = ip[ihl + 8 :]
        if len(rtp) < 12 or rtp[0] >> 6 != 2:
            return
        cc = rtp[0] & 0x0F
        payload = rtp[12 + 4 * cc :]
        self.flows.setdefault(src, Flow()).packets.append((at, rtp[1] & 0x7F, payload))

    def __enter__(self) -> RtpSniffer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
