"""Per-frame call analysis CPU per call, frame by frame vs batched per tick.

N calls, each with what `AnalysisFlow` runs while it listens: the default
AMD detector and a `ToneAnalyzer` (beep, SIT, fax), fed a voicemail greeting
(espeak-ng, with pauses) at a different offset per call. Per tick:

- frame by frame (before): `tones.feed(frame)` + `amd.feed(frame)` per call;
- batched (after): each call asks `SharedFrameAnalysis.analyze(frame)` from
  inside its handler, as on the media clock (the first ask of a tick runs
  `analyze_frames` over the (N, 160) block), then `tones.feed_analysis` and
  `amd.feed`.

Both paths must report the same events and AMD decisions (checked).

    python -m benchmarks.analysis_micro [--n 1,100,300] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import carriers.rtp.transport as transport
from dsp.amd import make_amd
from dsp.tones import ToneAnalyzer
from engine.voice.analysis_batch import SharedFrameAnalysis

FRAME = 160


def greeting_pcm() -> NDArray[np.int16]:
    work = Path(tempfile.mkdtemp(prefix="outdial-micro-"))
    raw, pcm = work / "g.wav", work / "g.s16"
    text = ("Hi, you have reached Sam Miller. I can't take your call right now. "
            "Please leave your name and number and I will call you back.")  # fmt: skip
    subprocess.run(["espeak-ng", "-v", "en-us+f3", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-e", "signed", "-b", "16",
                    "-t", "raw", str(pcm), "pad", "0.5", "1"], check=True)  # fmt: skip
    audio = np.frombuffer(pcm.read_bytes(), dtype=np.int16)
    noise = np.random.default_rng(1).normal(0, 30, len(audio))  # a line's noise floor
    return np.clip(audio + noise, -32768, 32767).astype(np.int16)


class _Endpoint:
    """What `SharedFrameAnalysis` reads of an `RtpEndpoint`."""

    def __init__(self) -> None:
        self.last_frame: NDArray[np.int16] | None = None
        self.closed = False


def _run(frames: NDArray[np.int16], batched: bool) -> tuple[float, list[Any]]:
    """Seconds of CPU for every tick of `frames` (ticks, N, 160); the events."""
    n = frames.shape[1]
    amds = [make_amd("default", {}) for _ in range(n)]
    tones = [ToneAnalyzer(dtmf=False, beep=True, sit=True, fax=True, progress=False)
             for _ in range(n)]  # fmt: skip
    shared = SharedFrameAnalysis(enabled=True)
    endpoints = [_Endpoint() for _ in range(n)]
    events: list[Any] = []
    t0 = time.process_time()
    for tick, block in enumerate(frames):
        t = tick * 0.02
        rows = list(block)
        if batched:
            for ep, row in zip(endpoints, rows, strict=True):
                ep.last_frame = row
        for i, row in enumerate(rows):
            if batched:
                transport._current = endpoints[i]  # type: ignore[assignment]
                found = tones[i].feed_analysis(shared.analyze(row), t)
                transport._current = None
            else:
                found = tones[i].feed(row, t)
            decision = amds[i].feed(row, t)
            if found or decision:
                events.append((i, tick, found, decision))
    return time.process_time() - t0, events


def run_micro(ns: list[int], seconds: float = 4.0, repeats: int = 3) -> list[dict[str, Any]]:
    audio = greeting_pcm()
    ticks = round(seconds / 0.02)
    total = len(audio) // FRAME
    results = []
    for n in ns:
        offsets = np.linspace(0, total - ticks - 1, n).astype(int) if n > 1 else np.array([0])
        idx = (offsets[None, :] + np.arange(ticks)[:, None]) * FRAME
        frames = audio[idx[..., None] + np.arange(FRAME)]  # (ticks, n, 160)
        best: dict[bool, float] = {}
        events: dict[bool, list[Any]] = {}
        for _ in range(repeats):
            for batched in (False, True):
                cpu, ev = _run(frames, batched)
                best[batched] = min(best.get(batched, cpu), cpu)
                events[batched] = ev
        per = {b: 1e6 * best[b] / (ticks * n) for b in best}
        results.append({
            "n_calls": n,
            "us_per_call_frame_before": round(per[False], 2),
            "us_per_call_frame_batched": round(per[True], 2),
            "saving_pct": round(100 * (1 - per[True] / per[False]), 1),
            "cpu_pct_of_core_before": round(per[False] * n * 50 / 1e4, 2),
            "cpu_pct_of_core_batched": round(per[True] * n * 50 / 1e4, 2),
            "same_events_and_decisions": events[False] == events[True],
            "events": len(events[True]),
        })  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="1,100,300")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {0})
    for r in run_micro([int(x) for x in args.n.split(",")], args.seconds, args.repeats):
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
