"""Several concurrency steps of `benchmarks.sip_load` in one process, with
per-step diagnostics, to see whether a step costs more after other steps.

    python -m benchmarks.sip_longrun --steps 300,300,300 --hold 5

For each step, besides sip_load's figures, over the measured window: CPU per
100 calls, minor page faults, garbage collections per generation and the time
spent in them, the media clock's time per tick, and, before the ramp, the
number of objects the collector tracks.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import sip_load
from carriers.rtp.session import RtpSession
from carriers.rtp.transport import MediaClock


class _GcTimer:
    def __init__(self) -> None:
        self.start = 0.0
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.start = time.perf_counter()
        else:
            spent = time.perf_counter() - self.start
            generation = info["generation"]
            self.count[generation] += 1
            self.seconds[generation] += spent
            self.longest = max(self.longest, spent)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


GC = _GcTimer()


class TimedClock(MediaClock):
    """MediaClock that accounts the time of each step."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step_seconds = 0.0
        self.step_calls = 0
        self.steps = 0

    def _step(self, now: float) -> None:
        t0 = time.perf_counter()
        super()._step(now)
        self.step_seconds += time.perf_counter() - t0
        self.step_calls += len(self._handlers)
        self.steps += 1

    def reset_lateness(self) -> None:
        super().reset_lateness()
        self.step_seconds = 0.0
        self.step_calls = 0
        self.steps = 0
        GC.reset()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.faults0 = usage.ru_minflt
        self.received0 = 0

    def lateness_percentiles(self) -> dict[str, float]:
        out = super().lateness_percentiles()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        CLOCKS.append(
            {
                "step_us_per_call_frame": round(
                    1e6 * self.step_seconds / max(1, self.step_calls), 3
                ),
                "minflt": usage.ru_minflt - self.faults0,
                "gc_count": list(GC.count),
                "gc_ms": [round(1000 * s, 1) for s in GC.seconds],
                "gc_longest_ms": round(1000 * GC.longest, 1),
            }
        )
        return out


def _caches() -> dict[str, int]:
    from carriers.sip import message, parser

    found = {}
    for module in (message, parser):
        for name, value in vars(module).items():
            if hasattr(value, "cache_info") and value.__module__ == module.__name__:
                found[name] = value.cache_info().currsize
    return found


CLOCKS: list[dict[str, Any]] = []


def _step_before_fix(self: MediaClock, now: float) -> None:
    """MediaClock._step as it was before the fix: RtpSession.send_frames holds
    one datagram list per call at once (for A/B runs, --send-frames)."""
    entries = self._active_entries()
    if not entries:
        return
    self.frames += 1
    sessions = [endpoint.session for endpoint, _ in entries]
    received = RtpSession.receive_frames(sessions, now)
    for (endpoint, _), frame in zip(entries, received, strict=True):
        endpoint.last_frame = frame
    outgoing = [self._call(entry, frame) for entry, frame in zip(entries, received, strict=True)]
    packets = RtpSession.send_frames(sessions, outgoing)
    for (endpoint, _), datagrams in zip(entries, packets, strict=True):
        endpoint.send(datagrams)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="outdial-longrun-"))
    sip_load.MediaClock = TimedClock  # type: ignore[misc]
    port = args.sip_port
    steps = []
    previous: Counter[str] | None = None
    for n in args.steps:
        gc.collect()
        objects = gc.get_objects()
        tracked = len(objects)
        census = Counter(type(o).__name__ for o in objects)
        del objects
        step = await sip_load.concurrency_step(workdir, n, args.ramp, args.hold, port)
        port += 10
        step.update(CLOCKS[-1])
        step["gc_tracked_before"] = tracked
        if previous is not None:
            grown = census - previous
            step["census_growth"] = dict(grown.most_common(8))
        previous = census
        step["caches"] = _caches()
        print(json.dumps(step), flush=True)
        steps.append(step)
        await asyncio.sleep(3)
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="300,300,300")
    parser.add_argument("--ramp", type=float, default=100.0)
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio, not uvloop")
    parser.add_argument(
        "--send-frames", action="store_true", help="the media clock's send path before the fix"
    )
    parser.add_argument("--rtp-ports", default="30000-38000", help="our RTP port range")
    parser.add_argument("--sip-port", type=int, default=40000, help="SIPp's first port")
    args = parser.parse_args(argv)
    low, high = (int(x) for x in args.rtp_ports.split("-"))
    sip_load.RTP_PORTS = range(low, high)
    if args.send_frames:
        MediaClock._step = _step_before_fix  # type: ignore[method-assign]
    args.steps = [int(x) for x in args.steps.split(",") if x]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {0})
    gc.callbacks.append(GC)
    if args.asyncio:
        asyncio.run(main_async(args))
    else:
        import uvloop

        uvloop.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
