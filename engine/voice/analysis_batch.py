"""Call analysis batched across calls, once per media-clock tick.

Every call in analysis runs the tone detectors on a `FrameAnalysis` of its
frame (energies, Hann spectrum, peak). Computed frame by frame, that is one
FFT and a dozen small numpy calls per call; computed for all the calls of a
tick at once (`dsp.goertzel.analyze_frames` over the (n, 160) block), one
FFT over the block, like `RtpSession.receive_frames` decodes G.711.

A call's flow sees only its own frame, so the batch is demand-driven: a flow
asks `SharedFrameAnalysis.analyze(frame)` from inside its media handler; the
first ask of a tick from a subscribed endpoint analyses the frames of every
subscribed endpoint (`RtpEndpoint.last_frame`, set by the clock for every
endpoint before any handler runs) in one go, and the others' asks that tick
are lookups. An endpoint subscribes on its first ask (that frame is analysed
alone) and drops out after a tick without one. The results are those of
`analyze_frame`, bit for bit, so every detector decides exactly as before.

`OUTDIAL_ANALYSIS_BATCH=0` in the environment turns batching off (for
comparisons); outside the media clock (tools, tests) frames are analysed one
by one.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

from carriers.rtp.transport import RtpEndpoint, current_endpoint
from dsp.goertzel import FrameAnalysis, analyze_frame, analyze_frames

ENABLED = os.environ.get("OUTDIAL_ANALYSIS_BATCH", "1") != "0"
MIN_BATCH = 8
"""Fewer calls in analysis than this: frame by frame (measured crossover,
`benchmarks/analysis_micro`: 4 calls batched cost 28% more, 10 saved 16%)."""


class SharedFrameAnalysis:
    """`analyze_frame` for the calls of one media clock, batched per tick."""

    __slots__ = ("_results", "_subscribed", "batches", "enabled", "single")

    def __init__(self, enabled: bool = ENABLED) -> None:
        self.enabled = enabled
        # endpoint -> asked since the last batch
        self._subscribed: dict[RtpEndpoint, bool] = {}
        self._results: dict[RtpEndpoint, tuple[NDArray[Any], FrameAnalysis]] = {}
        self.batches = 0  # batched analyses run
        self.single = 0  # frames analysed alone

    def analyze(self, frame: NDArray[Any]) -> FrameAnalysis:
        endpoint = current_endpoint() if self.enabled else None
        if endpoint is None or endpoint.last_frame is not frame:
            self.single += 1
            return analyze_frame(frame)
        hit = self._results.get(endpoint)
        if (hit is None or hit[0] is not frame) and endpoint in self._subscribed:
            self._batch()  # the first ask of a new tick
            hit = self._results.get(endpoint)
        self._subscribed[endpoint] = True
        if hit is not None and hit[0] is frame:
            return hit[1]
        self.single += 1
        return analyze_frame(frame)

    def _batch(self) -> None:
        keep: list[RtpEndpoint] = []
        frames: list[NDArray[Any]] = []
        for ep, asked in self._subscribed.items():
            frame = ep.last_frame
            if asked and frame is not None and not ep.closed:
                keep.append(ep)
                frames.append(frame)
        self._subscribed = dict.fromkeys(keep, False)
        if not keep:
            self._results = {}
            return
        if len(frames) < MIN_BATCH:  # numpy's per-call overhead outweighs the batch
            analyses = [analyze_frame(frame) for frame in frames]
        else:
            analyses = analyze_frames(np.stack(frames))
        self._results = {
            ep: (frame, fa) for ep, frame, fa in zip(keep, frames, analyses, strict=True)
        }
        self.batches += 1


SHARED = SharedFrameAnalysis()
"""The daemon's one instance (one process, one media clock)."""
