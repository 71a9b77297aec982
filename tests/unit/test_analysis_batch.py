"""Batched frame analysis: `analyze_frames` equals `analyze_frame` row by row,
bit for bit, and `SharedFrameAnalysis` hands each call the analysis of its
own frame, batching the subscribed calls' frames once per tick."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import carriers.rtp.transport as transport
from dsp.goertzel import FrameAnalysis, FrameError, analyze_frame, analyze_frames
from dsp.tones import ToneAnalyzer, dtmf_tone
from engine.voice.analysis_batch import SharedFrameAnalysis


def _frames() -> np.ndarray[Any, np.dtype[np.int16]]:
    rng = np.random.default_rng(5)
    t = np.arange(160 * 50) / 8000
    parts = [
        np.sin(2 * np.pi * 700 * t) * 6000 + rng.normal(0, 300, len(t)),
        np.sin(2 * np.pi * 1004 * t) * 80,  # near the -70 dBFS floor
        rng.normal(0, 4000, len(t)),
        rng.normal(0, 1, len(t)),  # below the floor: no spectrum
        np.zeros(len(t)),
        dtmf_tone("159#", on_ms=60, off_ms=40).astype(np.float64)[: len(t)],
        np.full(len(t), 32767.0),
    ]
    sig = np.concatenate([np.resize(p, len(t)) for p in parts])
    frames: np.ndarray[Any, np.dtype[np.int16]] = np.clip(sig, -32768, 32767).astype(np.int16)
    return frames.reshape(-1, 160)


def _same(a: FrameAnalysis, b: FrameAnalysis) -> bool:
    spectra = (a.spectrum is None and b.spectrum is None) or (
        a.spectrum is not None and b.spectrum is not None
        and np.array_equal(a.spectrum, b.spectrum)
    )  # fmt: skip
    return bool(
        spectra and np.array_equal(a.x, b.x) and a.blocks == b.blocks and a.energy == b.energy
        and a.level_db == b.level_db and a.total == b.total and a.peak_hz == b.peak_hz
        and a.peak_purity == b.peak_purity
    )  # fmt: skip


@pytest.mark.parametrize("n", [1, 3, 64, 350])
def test_analyze_frames_is_analyze_frame_bit_for_bit(n: int) -> None:
    frames = _frames()
    rng = np.random.default_rng(n)
    block = frames[rng.integers(0, len(frames), n)]
    for row, fa in zip(block, analyze_frames(block), strict=True):
        assert _same(fa, analyze_frame(row))


def test_analyze_frames_checks_the_shape() -> None:
    with pytest.raises(FrameError):
        analyze_frames(np.zeros((2, 80), np.int16))


class _Endpoint:
    def __init__(self) -> None:
        self.last_frame: Any = None
        self.closed = False


def test_shared_analysis_batches_per_tick_and_keeps_every_event() -> None:
    frames = _frames()
    n, ticks = 10, 60
    endpoints = [_Endpoint() for _ in range(n)]
    shared = SharedFrameAnalysis(enabled=True)
    alone = [ToneAnalyzer() for _ in range(n)]
    batched = [ToneAnalyzer() for _ in range(n)]
    events_alone, events_batched = [], []
    for tick in range(ticks):
        rows = [frames[(tick + 40 * i) % len(frames)].copy() for i in range(n)]
        for ep, row in zip(endpoints, rows, strict=True):
            ep.last_frame = row
        for i, row in enumerate(rows):
            if i == 9 and tick >= 30:
                continue  # this call stops asking: it drops out of the batch
            t = tick * 0.02
            events_alone += alone[i].feed(row, t)
            transport._current = endpoints[i]  # type: ignore[assignment]
            try:
                events_batched += batched[i].feed_analysis(shared.analyze(row), t)
            finally:
                transport._current = None
    assert events_batched == events_alone and events_alone
    assert shared.batches == ticks - 1  # every tick after the first
    assert shared.single == n  # each call's first frame only
    assert len(shared._subscribed) == n - 1  # call 9 dropped out


def test_shared_analysis_outside_the_clock_analyses_alone() -> None:
    shared = SharedFrameAnalysis(enabled=True)
    frame = _frames()[3]
    assert _same(shared.analyze(frame), analyze_frame(frame))
    assert shared.single == 1 and shared.batches == 0
