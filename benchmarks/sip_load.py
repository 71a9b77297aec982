"""SIP + RTP load: how many concurrent calls, and how many calls per second,
one outdial process holds against a SIPp carrier that streams audio.

Our process is pinned to core 0, SIPp to core 1, so "one core" is literal.
Every call runs the real stack: the SIP user agent over UDP, one RTP socket
per call, the shared 20 ms media clock receiving, decoding, encoding and
sending audio in both directions.

Phase 1 (concurrency): for each step, ramp up N calls, hold them for a
measured window, and record the media clock's lateness (p50/p99/max), RTP
loss on the calls' receive side, kernel UDP receive-buffer drops, our CPU and
SIPp's CPU over the same window. A step passes when every call was answered,
p99 lateness <= 20 ms and no packet was lost.

Phase 2 (setup rate): short calls placed at a fixed rate for a while; a rate
passes when every call was answered and ended cleanly with p99 lateness
<= 20 ms.

    python -m benchmarks.sip_load [--steps 250,500,750,1000] [--rates 50,100,150]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from carriers.rtp.session import RtpSession
from carriers.rtp.transport import MediaClock, PortAllocator, RtpEndpoint
from carriers.sip.call import CallSpec
from carriers.sip.events import CallAnswered, CallEnded
from carriers.sip.message import Address, SipURI
from carriers.sip.sdp import build_offer
from carriers.sip.transaction import Target
from carriers.sip.transport import CallEvent, SipEndpoint

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "config" / "sipp" / "answer.xml"
HOST = "127.0.0.1"
RTP_PORTS = range(30000, 38000)
TONE = (np.sin(2 * np.pi * 1000 * np.arange(160) / 8000) * 6000).astype(np.int16)


def udp_drops(ports: range) -> int:
    """Datagrams the kernel dropped on our sockets (receive buffer full), from
    /proc/net/udp's per-socket counter. SIPp never reads its -mp socket, so a
    system-wide count would mostly be SIPp discarding our RTP by design."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        port = int(fields[1].split(":")[1], 16)
        if port in ports:
            total += int(fields[-1])
    return total


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class LiveCall:
    endpoint: RtpEndpoint
    call_id: str = ""
    answered: bool = False
    ended: CallEnded | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Sipp:
    def __init__(self, workdir: Path, calls: int, port: int, media_port: int) -> None:
        tone = workdir / "tone.ul"
        if not tone.exists():
            subprocess.run(
                ["sox", "-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul", str(tone),
                 "synth", "2", "sine", "700", "vol", "0.4"],
                check=True,
            )  # fmt: skip
        self.port = port
        cmd = [
            "sipp", "-sf", str(SCENARIO), "-i", HOST, "-p", str(port), "-mi", HOST,
            "-mp", str(media_port), "-d", "0", "-m", str(calls), "-nostdin",
            "-key", "audio", f"{tone},-1,0", "-max_socket", "65000",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.sched_setaffinity(self.proc.pid, {1})
        time.sleep(0.5)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def finish(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Driver:
    """Places and tracks calls through one SipEndpoint and one MediaClock."""

    def __init__(self, sip: SipEndpoint, clock: MediaClock, allocator: PortAllocator) -> None:
        self.sip = sip
        self.clock = clock
        self.allocator = allocator
        self.rng = random.Random(7)
        self.calls: list[LiveCall] = []

    async def place(self, trunk_port: int, hold: float | None) -> LiveCall:
        rng = self.rng
        endpoint = await RtpEndpoint.open(
            HOST,
            self.allocator,
            lambda port: RtpSession(
                local_port=port, remote=None, payload_type=0, codec="PCMU",
                dtmf_payload_type=101, rng=rng,
            ),
        )  # fmt: skip
        live = LiveCall(endpoint)
        number = SipURI(host=HOST, port=trunk_port, user=f"1555{rng.randrange(10**7):07d}")
        spec = CallSpec(
            request_uri=number,
            from_addr=Address(SipURI(host=HOST, user="bench")),
            to_addr=Address(number),
            target=Target(HOST, trunk_port),
            offer=build_offer(HOST, endpoint.local_port, session_id=rng.getrandbits(31)),
            max_duration=hold,
            session_expires=None,
        )

        def on_event(event: CallEvent) -> None:
            if isinstance(event, CallAnswered) and event.media is not None:
                media = event.media
                endpoint.session.set_remote((media.remote_address, media.remote_port))
                live.answered = True
                self.clock.add(endpoint, lambda _ep, _frame: TONE)
            elif isinstance(event, CallEnded):
                live.ended = event
                self.clock.remove(endpoint)
                live.done.set()

        live.call_id = self.sip.place_call(spec, on_event).call_id
        self.calls.append(live)
        return live

    async def place_at_rate(
        self, count: int, rate: float, trunk_port: int, hold: float | None
    ) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(count):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.place(trunk_port, hold)
        return loop.time() - start

    def close_all(self) -> None:
        for live in self.calls:
            live.endpoint.close()
        self.calls.clear()


def _loss(calls: list[LiveCall]) -> tuple[int, int]:
    lost = sum(max(0, c.endpoint.session.stats.lost) for c in calls)
    received = sum(c.endpoint.session.stats.received for c in calls)
    return lost, received


async def concurrency_step(
    workdir: Path, n: int, rate: float, hold: float, base_port: int
) -> dict[str, Any]:
    sipp = Sipp(workdir, n, base_port, base_port + 2000)
    sip = await SipEndpoint.open(HOST, 0, rng=random.Random(n))
    clock = MediaClock()
    clock.start()
    driver = Driver(sip, clock, PortAllocator(RTP_PORTS.start, RTP_PORTS.stop))
    ramp = await driver.place_at_rate(n, rate, base_port, None)
    await asyncio.sleep(2.0)  # let the last answers and jitter buffers settle
    answered = sum(c.answered for c in driver.calls)
    lost0, recv0 = _loss(driver.calls)
    drops0, cpu0, sipp0 = udp_drops(RTP_PORTS), time.process_time(), sipp.cpu()
    clock.reset_lateness()
    wall0 = time.monotonic()
    await asyncio.sleep(hold)
    wall = time.monotonic() - wall0
    cpu, sipp_cpu = time.process_time() - cpu0, sipp.cpu() - sipp0
    lateness = clock.lateness_percentiles()
    lost1, recv1 = _loss(driver.calls)
    drops = udp_drops(RTP_PORTS) - drops0
    rss = rss_mib()
    for live in driver.calls:
        sip.hangup(live.call_id)
    await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in driver.calls)), timeout=60)
    await clock.stop()
    driver.close_all()
    await sip.close()
    sipp_rc = sipp.finish()
    result = {
        "calls": n,
        "answered": answered,
        "ramp_cps": round(n / ramp, 1) if ramp else None,
        "p50_ms": round(lateness["p50"], 2),
        "p99_ms": round(lateness["p99"], 2),
        "max_ms": round(lateness["max"], 2),
        "rtp_received": recv1 - recv0,
        "rtp_lost": lost1 - lost0,
        "our_udp_drops": drops,
        "cpu_pct": round(100 * cpu / wall, 1),
        "cpu_pct_per_100_calls": round(100 * cpu / wall / (n / 100), 2),
        "sipp_cpu_pct": round(100 * sipp_cpu / wall, 1),
        "rss_mib": round(rss, 1),
        "sipp_exit": sipp_rc,
    }
    result["passed"] = (
        answered == n and lateness["p99"] <= 20.0 and result["rtp_lost"] == 0 and drops == 0
    )
    return result


async def rate_step(
    workdir: Path, rate: float, seconds: float, hold: float, base_port: int
) -> dict[str, Any]:
    n = int(rate * seconds)
    sipp = Sipp(workdir, n, base_port, base_port + 2000)
    sip = await SipEndpoint.open(HOST, 0, rng=random.Random(int(rate)))
    clock = MediaClock()
    clock.start()
    driver = Driver(sip, clock, PortAllocator(RTP_PORTS.start, RTP_PORTS.stop))
    cpu0, sipp0, wall0 = time.process_time(), sipp.cpu(), time.monotonic()
    elapsed = await driver.place_at_rate(n, rate, base_port, hold)
    await asyncio.wait_for(
        asyncio.gather(*(c.done.wait() for c in driver.calls)), timeout=hold + 60
    )
    wall = time.monotonic() - wall0
    cpu, sipp_cpu = time.process_time() - cpu0, sipp.cpu() - sipp0
    lateness = clock.lateness_percentiles()
    answered = sum(1 for c in driver.calls if c.ended and c.ended.answered_at is not None)
    clean = sum(1 for c in driver.calls if c.ended and c.ended.ended_by == "local")
    await clock.stop()
    driver.close_all()
    await sip.close()
    sipp_rc = sipp.finish()
    result = {
        "target_cps": rate,
        "achieved_cps": round(n / elapsed, 1),
        "calls": n,
        "answered": answered,
        "ended_cleanly": clean,
        "p99_ms": round(lateness["p99"], 2),
        "cpu_pct": round(100 * cpu / wall, 1),
        "sipp_cpu_pct": round(100 * sipp_cpu / wall, 1),
        "sipp_exit": sipp_rc,
    }
    result["passed"] = (
        answered == n and clean == n and lateness["p99"] <= 20.0 and sipp_rc == 0
        and result["achieved_cps"] >= 0.97 * rate
    )  # fmt: skip
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="outdial-bench-"))
    report: dict[str, Any] = {"concurrency": [], "setup_rate": []}
    port = 40000
    for n in args.steps:
        step = await concurrency_step(workdir, n, args.ramp, args.hold, port)
        port += 10
        report["concurrency"].append(step)
        print(json.dumps(step), flush=True)
        await asyncio.sleep(3)  # SIPp's timewait and socket release
        if not step["passed"] and not args.keep_going:
            break
    for rate in args.rates:
        step = await rate_step(workdir, rate, args.rate_seconds, args.rate_hold, port)
        port += 10
        report["setup_rate"].append(step)
        print(json.dumps(step), flush=True)
        await asyncio.sleep(3)
        if not step["passed"] and not args.keep_going:
            break
    held = [s["calls"] for s in report["concurrency"] if s["passed"]]
    rates = [s["target_cps"] for s in report["setup_rate"] if s["passed"]]
    report["max_concurrent_calls"] = max(held) if held else 0
    report["max_setup_rate_cps"] = max(rates) if rates else 0
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="250,500,750,1000,1250,1500")
    parser.add_argument("--ramp", type=float, default=100.0, help="calls/s while ramping up")
    parser.add_argument("--hold", type=float, default=10.0, help="measured window, seconds")
    parser.add_argument("--rates", default="50,100,150,200")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--rate-hold", type=float, default=2.0, help="call length in phase 2")
    parser.add_argument("--keep-going", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    args.steps = [int(x) for x in args.steps.split(",") if x]
    args.rates = [float(x) for x in args.rates.split(",") if x]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {0})
    try:
        import uvloop

        report = uvloop.run(main_async(args))
    except ImportError:
        report = asyncio.run(main_async(args))
    held = report["max_concurrent_calls"]
    print(f"max concurrent calls (p99 lateness <= 20 ms, no RTP loss): {held}")
    print(f"max call setup rate held: {report['max_setup_rate_cps']} calls/s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
