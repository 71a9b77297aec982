"""A reduced, in-process replay of `benchmarks.sip_load`'s concurrency steps:
no sockets, no SIPp, no real clock, so its work can be counted exactly.

Each round does what one concurrency step does to our code: a fresh sans-IO
`UserAgent` places N calls through a scripted carrier (180, 200 with SDP, ACK;
200 to BYE, built from the raw request text, without our parser), every
answered call gets an `RtpSession` on the real `MediaClock._step` path, the
carrier sends one 20 ms mu-law packet per call per tick, the calls are held
for `--hold` simulated seconds, then hung up, and the round's objects are
dropped with their timers still pending, as `SipEndpoint.close()` does.

    python -m benchmarks.sip_replay --rounds 3 --calls 300 --hold 2

Under callgrind, `os.getppid()` marks the phases (`--dump-before=getppid`
writes one profile per phase: ramp, hold window, teardown, for each round):

    valgrind --tool=callgrind --dump-before=getppid --callgrind-out-file=/tmp/cg.%p \\
        .venv/bin/python -m benchmarks.sip_replay --rounds 3 --calls 300 --hold 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import struct
import sys
import time
from typing import Any

import numpy as np

from carriers.rtp.session import RtpSession
from carriers.rtp.transport import MediaClock
from carriers.sip.call import CallSpec
from carriers.sip.events import CallAnswered, CallEnded
from carriers.sip.message import Address, SipURI
from carriers.sip.sdp import build_offer
from carriers.sip.transaction import Target
from carriers.sip.ua import UserAgent

HOST = "127.0.0.1"
PERIOD = 0.02
TONE = (np.sin(2 * np.pi * 1000 * np.arange(160) / 8000) * 6000).astype(np.int16)
CARRIER_PAYLOAD = bytes([0x7F, 0x55] * 80)  # a mu-law tone-like frame
_RTP = struct.Struct("!BBHII")


def _answer_sdp(port: int) -> bytes:
    return (
        "v=0\r\no=carrier 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
        "c=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
        "a=sendrecv\r\n"
    ).encode()


class Carrier:
    """SIPp's answer.xml, in-process, from the raw text of our requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.calls = 0

    def _reply(self, head: list[str], status: str, tag: str, body: bytes = b"") -> bytes:
        lines = [f"SIP/2.0 {status}"]
        for line in head[1:]:
            name = line.split(":", 1)[0].strip().lower()
            if name in ("via", "from", "call-id", "cseq"):
                lines.append(line)
            elif name == "to":
                lines.append(line if ";tag=" in line else f"{line};tag={tag}")
        lines.append(f"Contact: <sip:{HOST}:{self.port};transport=UDP>")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def answer(self, data: bytes) -> list[bytes]:
        head = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        method = head[0].split(" ", 1)[0]
        call_id = next(line for line in head if line.lower().startswith("call-id"))
        tag = f"{os.getpid()}SIPpTag01{abs(hash(call_id)) % 10**6}"
        if method == "INVITE":
            self.calls += 1
            return [
                self._reply(head, "180 Ringing", tag),
                self._reply(head, "200 OK", tag, _answer_sdp(self.port + 2000)),
            ]
        if method == "BYE":
            return [self._reply(head, "200 OK", tag)]
        return []  # ACK


class FakeEndpoint:
    """What MediaClock needs of an RtpEndpoint, without a socket."""

    def __init__(self, session: RtpSession, port: int) -> None:
        self.session = session
        self.local_port = port
        self.closed = False
        self.sent = 0
        self.last_frame: Any = None
        self.ssrc = random.getrandbits(32)
        self.seq = 0
        self.ts = 0

    def send(self, datagrams: list[bytes]) -> None:
        self.sent += len(datagrams)

    def carrier_packet(self) -> bytes:
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 160) & 0xFFFFFFFF
        return _RTP.pack(0x80, 0, self.seq, self.ts, self.ssrc) + CARRIER_PAYLOAD


class Round:
    def __init__(self, calls: int, seed: int, now: float, carrier_port: int) -> None:
        self.n = calls
        self.now = now
        self.rng = random.Random(seed)
        self.ua = UserAgent(host=HOST, port=5070, rng=random.Random(seed))
        self.carrier = Carrier(carrier_port)
        self.trunk = Target(HOST, carrier_port)
        self.clock = MediaClock(period=PERIOD)
        self.endpoints: dict[str, FakeEndpoint] = {}
        self.answered = 0
        self.ended = 0

    def pump(self) -> None:
        ua = self.ua
        while True:
            out = ua.datagrams_to_send()
            events = []
            while (event := ua.next_event()) is not None:
                events.append(event)
            if not out and not events:
                break
            for data, _target in out:
                for reply in self.carrier.answer(data):
                    ua.receive(reply, self.trunk, self.now)
            for event in events:
                if isinstance(event, CallAnswered) and event.media is not None:
                    endpoint = self.endpoints[event.call_id]
                    endpoint.session.set_remote(
                        (event.media.remote_address, event.media.remote_port)
                    )
                    self.answered += 1
                    self.clock.add(endpoint, lambda _ep, _frame: TONE)  # type: ignore[arg-type]
                elif isinstance(event, CallEnded):
                    self.ended += 1
                    endpoint = self.endpoints[event.call_id]
                    self.clock.remove(endpoint)  # type: ignore[arg-type]

    def timers(self) -> None:
        when = self.ua.get_timer()
        if when is not None and when <= self.now:
            self.ua.handle_timer(self.now)
            self.pump()

    def tick(self) -> None:
        now = self.now
        for endpoint in self.clock._handlers:
            endpoint.session.receive(endpoint.carrier_packet(), (HOST, 1), now - 0.001)  # type: ignore[attr-defined]
        self.clock._step(now)
        self.timers()
        self.now = now + PERIOD

    def place(self, port: int) -> None:
        rng = self.rng
        session = RtpSession(
            local_port=port, remote=None, payload_type=0, codec="PCMU",
            dtmf_payload_type=101, rng=rng,
        )  # fmt: skip
        number = SipURI(host=HOST, port=self.trunk.port, user=f"1555{rng.randrange(10**7):07d}")
        spec = CallSpec(
            request_uri=number,
            from_addr=Address(SipURI(host=HOST, user="bench")),
            to_addr=Address(number),
            target=self.trunk,
            offer=build_offer(HOST, port, session_id=rng.getrandbits(31)),
            max_duration=None,
            session_expires=None,
        )
        call_id = self.ua.new_call_id()
        self.endpoints[call_id] = FakeEndpoint(session, port)
        self.ua.place_call(spec, self.now, call_id=call_id)
        self.pump()

    def ramp(self, rate: float) -> None:
        due = 0.0
        port = 30000
        placed = 0
        while placed < self.n:
            due += rate * PERIOD
            while placed < min(self.n, int(due)):
                self.place(port)
                port += 2
                placed += 1
            self.tick()
        for _ in range(int(2.0 / PERIOD)):  # settle, as sip_load does
            self.tick()

    def hold(self, seconds: float) -> None:
        for _ in range(int(seconds / PERIOD)):
            self.tick()

    def teardown(self) -> None:
        for call_id in list(self.endpoints):
            self.ua.hangup(call_id, self.now)
            self.pump()
        for endpoint in self.endpoints.values():
            endpoint.closed = True
        self.tick()


class GcStats:
    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._t0 = 0.0
        self.full_sizes: list[int] = []  # objects a full collection examines
        self.full_ms: list[float] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if info["generation"] == 2:
                self.full_sizes.append(len(gc.get_objects()))
            self._t0 = time.perf_counter()
        else:
            if info["generation"] == 2:
                self.full_ms.append(1000 * (time.perf_counter() - self._t0))
            self.count[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._t0


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    stats = GcStats()
    gc.callbacks.append(stats)
    out = []
    now = 1000.0
    for index in range(args.rounds):
        if args.collect:
            gc.collect()
        if args.freeze:
            gc.collect()
            gc.freeze()
        tracked0 = len(gc.get_objects()) if args.census else None
        rnd = Round(args.calls, seed=index + 1, now=now, carrier_port=40000 + 10 * index)
        os.getppid()  # marker: ramp
        rnd.ramp(args.ramp)
        os.getppid()  # marker: hold window
        c0, g0, s0 = time.process_time(), list(stats.count), list(stats.seconds)
        full0 = len(stats.full_ms)
        tracked_hold = len(gc.get_objects()) if args.census else None
        rnd.hold(args.hold)
        cpu = time.process_time() - c0
        g1, s1 = list(stats.count), list(stats.seconds)
        full1 = len(stats.full_ms)
        os.getppid()  # marker: teardown
        rnd.teardown()
        now = rnd.now + 5.0
        row = {
            "round": index + 1,
            "calls": args.calls,
            "answered": rnd.answered,
            "ended": rnd.ended,
            "hold_cpu_us_per_call_frame": round(1e6 * cpu / (args.calls * args.hold / PERIOD), 3),
            "hold_gc_count": [b - a for a, b in zip(g0, g1, strict=True)],
            "hold_gc_ms": [round(1000 * (b - a), 2) for a, b in zip(s0, s1, strict=True)],
            "hold_full_gc": [
                {"objects": size, "ms": round(ms, 1)}
                for size, ms in zip(
                    stats.full_sizes[full0:full1], stats.full_ms[full0:full1], strict=True
                )
            ],
            "gc_tracked_round_start": tracked0,
            "gc_tracked_hold_start": tracked_hold,
            "heap": len(rnd.ua._heap),
        }
        del rnd
        out.append(row)
        print(json.dumps(row), flush=True)
    os.getppid()  # marker: end
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--hold", type=float, default=2.0, help="simulated seconds")
    parser.add_argument("--ramp", type=float, default=100.0, help="calls per simulated second")
    parser.add_argument("--collect", action="store_true", help="gc.collect() before each round")
    parser.add_argument(
        "--freeze", action="store_true", help="gc.collect(); gc.freeze() before each round"
    )
    parser.add_argument("--census", action="store_true", help="count tracked objects")
    args = parser.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
