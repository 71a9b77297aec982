"""Call progress on early media: busy, reorder, ringback (NA and Europe), SIT, fax.

A frame is "on" when most of its energy lies in 300..700 Hz, where every
progress tone of both regions lives.  Runs of on and off frames become
segments whose edges are placed to 5 ms; each on segment also gets a
signature, from a coherent 80 ms DFT (12.5 Hz resolution) at the tone
frequencies: 480+620 Hz, 440+480 Hz, 400+450 Hz, 350+440 Hz (dial) or one
tone near 400/425/440/450 Hz.  The cadence of the last segments is then
matched against the plans below, with `tolerance` relative and `slack_ms`
absolute error on each duration.

North America (ANSI T1.401, Telcordia GR-506 "precise tone plan"):
  busy     480+620 Hz  0.5 on 0.5 off
  reorder  480+620 Hz  0.25 on 0.25 off
  ringback 440+480 Hz  2 on 4 off
Europe (ITU-T E.180 and its Supplement 2; ETSI TR 101 041 / CEPT):
  busy     425 Hz 0.5 on 0.5 off (also 400 and 440 Hz; UK 400 Hz 0.375/0.375)
  reorder  425 Hz 0.25/0.25 (congestion; UK 400 Hz 0.4/0.35/0.225/0.525)
  ringback 425 Hz 1 on 4 off (France 440 Hz 1.5/3.5; UK 400+450 Hz
           0.4 on 0.2 off 0.4 on 2 off)
Busy and reorder are confirmed after two cycles, ringback after one (its on
time, then `ringback_min_off_ms` of silence).  The event is reported at
confirmation, while the tone goes on (`end` None), once per kind and region
until the cadence changes.

Special information tones (the three rising tones before an intercept
announcement) are found by `SitDetector`, from the single-tone segments of
`dsp.goertzel.ToneTracker`; the North American code table is below.  Fax
calling and answer tones (T.30 CNG and CED), also heard on early media, are
found by `FaxDetector` at the end; `dsp.tones` re-exports both.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from dsp.goertzel import (
    BLOCKS,
    FRAME,
    FRAME_S,
    SAMPLE_RATE,
    FrameAnalysis,
    GoertzelBank,
    ToneEvent,
    ToneSegment,
    ToneTracker,
    analyze_frame,
    falling_edge,
    make_params,
    rising_edge,
)

_FREQS: Final = np.array([350.0, 400.0, 425.0, 440.0, 450.0, 480.0, 620.0])
_F350, _F400, _F425, _F440, _F450, _F480, _F620 = range(7)
_BANK: Final = GoertzelBank(_FREQS, FRAME)
_WINDOW_FRAMES: Final = 4  # 80 ms coherent window
_DUALS: Final = (("na_busy", _F480, _F620), ("na_ring", _F440, _F480),
                 ("uk_ring", _F400, _F450), ("dial", _F350, _F440))  # fmt: skip

# (kind, region, signature, [(on s, off s or None = ringback_min_off), ...])
_PLANS: Final = (
    ("busy", "na", "na_busy", ((0.5, 0.5), (0.5, 0.5))),
    ("reorder", "na", "na_busy", ((0.25, 0.25), (0.25, 0.25))),
    ("ringback", "na", "na_ring", ((2.0, None),)),
    ("busy", "eu", "single", ((0.5, 0.5), (0.5, 0.5))),
    ("busy", "eu", "single", ((0.375, 0.375), (0.375, 0.375))),
    ("reorder", "eu", "single", ((0.25, 0.25), (0.25, 0.25))),
    ("reorder", "eu", "single", ((0.4, 0.35), (0.225, 0.525))),
    ("ringback", "eu", "single", ((1.0, None),)),
    ("ringback", "eu", "single", ((1.5, None),)),
    ("ringback", "eu", "uk_ring", ((0.4, 0.2), (0.4, None))),
)


@dataclass(frozen=True, slots=True)
class ProgressParams:
    """Thresholds of the call progress detector."""

    min_level_dbfs: float = -45.0
    min_band_share: float = 0.8  # of a frame's energy in 300..700 Hz to count as "on"
    min_signature_share: float = 0.7  # of an 80 ms window's energy at the tone frequencies
    min_dual_share: float = 0.15  # each tone of a dual tone
    tolerance: float = 0.2  # relative error allowed on each on/off duration
    slack_ms: float = 40.0  # absolute error allowed on each duration
    ringback_min_off_ms: float = 1000.0  # silence after a ringback burst that confirms it
    quiet_margin_db: float = 10.0  # off frames must be this much below the tone


@dataclass(slots=True)
class _Segment:
    on: bool
    start: float
    end: float
    signature: str | None


class ProgressDetector:
    """Busy, reorder and ringback by cadence (North America and Europe)."""

    def __init__(self, **params: float) -> None:
        self.params = p = make_params(ProgressParams, params)
        self._sample = 0
        self._window: deque[tuple[NDArray[np.complex128], float]] = deque(maxlen=_WINDOW_FRAMES)
        self._history: deque[_Segment] = deque(maxlen=8)
        self._on = False
        self._first: tuple[tuple[float, ...], float] = ((), 0.0)
        self._last: tuple[tuple[float, ...], float] = ((), 0.0)
        self._ref = 0.0
        self._level = -120.0
        self._votes: Counter[str] = Counter()
        self._off_start: float | None = None
        self._loud = 0
        self._emitted: tuple[str, str] | None = None
        self._max_open = max(p.ringback_min_off_ms / 1000.0, 1.0) + 0.1

    def feed(self, frame: NDArray[Any], t: float) -> ToneEvent | None:
        """Feed one frame starting at `t`; returns busy/reorder/ringback when confirmed."""
        return self.feed_analysis(analyze_frame(frame), t)

    def feed_analysis(self, fa: FrameAnalysis, t: float) -> ToneEvent | None:
        """`feed` on a frame already analysed (how `ToneAnalyzer` shares the work)."""
        p = self.params
        on = (
            fa.spectrum is not None
            and fa.level_db >= p.min_level_dbfs
            and float(fa.spectrum[6:15].sum()) >= p.min_band_share * fa.total
        )
        event = None
        if on:
            self._loud = 0
            self._on_frame(fa, t)
        else:
            self._window.clear()
            if self._on:
                self._end_on(fa, t)
            # Two loud frames between bursts (speech, noise) break the cadence; one
            # may hold a burst's ragged edge.
            self._loud = self._loud + 1 if fa.level_db > self._level - p.quiet_margin_db else 0
            if self._off_start is not None:
                if self._loud >= 2:
                    self._history.clear()
                    self._off_start = None
                elif t + FRAME_S - self._off_start <= self._max_open:
                    event = self._confirm(t + FRAME_S - self._off_start)
        self._sample += FRAME
        return event

    def _on_frame(self, fa: FrameAnalysis, t: float) -> None:
        if not self._on:
            self._on = True
            if self._off_start is not None:
                self._history.append(_Segment(False, self._off_start, t, None))
                self._off_start = None
            self._first = (fa.blocks, t)
            self._ref, self._level = 0.0, -120.0
            self._votes.clear()
        self._last = (fa.blocks, t)
        self._ref = max(self._ref, fa.energy / BLOCKS)
        self._level = max(self._level, fa.level_db)
        rotation = np.exp(-2j * np.pi * _FREQS * (self._sample / SAMPLE_RATE))
        y = _BANK.dft(fa.x) * rotation
        self._window.append((y, fa.energy))
        if len(self._window) == _WINDOW_FRAMES:
            signature = self._signature()
            if signature is not None:
                self._votes[signature] += 1

    def _signature(self) -> str | None:
        p = self.params
        x = np.zeros(len(_FREQS), dtype=np.complex128)
        energy = 0.0
        for y, e in self._window:
            x = x + y
            energy += e
        n = FRAME * _WINDOW_FRAMES
        share = (2.0 / (n * energy)) * (x.real * x.real + x.imag * x.imag)
        for name, a, b in _DUALS:
            if min(share[a], share[b]) >= p.min_dual_share and (
                share[a] + share[b] >= p.min_signature_share
            ):
                return name
        if max(share[_F400], share[_F425], share[_F440], share[_F450]) >= p.min_signature_share:
            return "single"
        return None

    def _end_on(self, fa: FrameAnalysis, t: float) -> None:
        self._on = False
        blocks, t0 = self._first
        start = rising_edge(list(blocks), t0, self._ref, 0.25)
        blocks, t1 = self._last
        end = falling_edge([*blocks, *fa.blocks], t1, self._ref, 0.25)
        total = sum(self._votes.values())
        signature = None
        if total:
            best, count = self._votes.most_common(1)[0]
            signature = best if 2 * count > total else None
        self._history.append(_Segment(True, start, end, signature))
        self._off_start = end

    def _confirm(self, open_off: float) -> ToneEvent | None:
        """Match the plans against the history plus the silence going on now."""
        segments = list(self._history)
        for kind, region, signature, plan in _PLANS:
            need = 2 * len(plan) - 1  # on, off, ..., on: the last off is the open one
            if len(segments) < need:
                continue
            tail = segments[-need:]
            if not all(s.on == (i % 2 == 0) for i, s in enumerate(tail)):
                continue
            if any(s.on and s.signature != signature for s in tail):
                continue
            if self._matches(tail, plan, open_off):
                if self._emitted == (kind, region):
                    return None
                self._emitted = (kind, region)
                return ToneEvent(kind, tail[0].start, None, region)
        return None

    def _matches(
        self, tail: list[_Segment], plan: tuple[tuple[float, float | None], ...], open_off: float
    ) -> bool:
        p = self.params
        slack = p.slack_ms / 1000.0
        for i, (on, off) in enumerate(plan):
            seg = tail[2 * i]
            if abs((seg.end - seg.start) - on) > p.tolerance * on + slack:
                return False
            last = i == len(plan) - 1
            gap = open_off if last else tail[2 * i + 1].end - tail[2 * i + 1].start
            if off is None:
                if gap < p.ringback_min_off_ms / 1000.0:
                    return False
            elif last:
                if gap < off * (1 - p.tolerance) - slack:
                    return False
            elif abs(gap - off) > p.tolerance * off + slack:
                return False
        return True


# --- Special information tones ---------------------------------------------------
# ANSI T1.209 / Telcordia (Bellcore) SIT: three segments, the first two Low or High
# in frequency and Short (276 ms) or Long (380 ms); the third always 1776.7 Hz,
# 380 ms.  Segment 1: 913.8 / 985.2 Hz, segment 2: 1370.6 / 1428.5 Hz.  Codes
# (segment 1, segment 2; L/H = frequency, S/L = duration):
#   intercept (IC)                low-short,  low-short
#   vacant code (VC)              high-long,  low-short
#   reorder (RO', intra-LATA)     low-short,  high-long
#   reorder (RO'', inter-LATA)    high-short, low-long
#   no circuit (NC', intra-LATA)  high-long,  high-long
#   no circuit (NC'', inter-LATA) low-long,   low-long
#   ineffective other (IO)        low-long,   high-short
#   reserved for future use       high-short, high-short  -> "unknown"
# ITU-T E.180 section 6 (the generic SIT): 950/1400/1800 +-50 Hz, 330 +-70 ms each,
# up to 30 ms between segments; such a SIT is found and reported as "unknown".
_SIT_CODES: Final = {
    ("low", "short", "low", "short"): "intercept",
    ("high", "long", "low", "short"): "vacant_code",
    ("low", "short", "high", "long"): "reorder",
    ("high", "short", "low", "long"): "reorder",
    ("high", "long", "high", "long"): "no_circuit",
    ("low", "long", "low", "long"): "no_circuit",
    ("low", "long", "high", "short"): "ineffective_other",
}


@dataclass(frozen=True, slots=True)
class SitParams:
    """SIT segment tables (ANSI T1.209 / Telcordia; ITU-T E.180 bands)."""

    seg1_low_hz: float = 913.8
    seg1_high_hz: float = 985.2
    seg2_low_hz: float = 1370.6
    seg2_high_hz: float = 1428.5
    seg3_hz: float = 1776.7
    band_hz: float = 60.0  # a segment is found within this of its frequencies (E.180 +-50)
    classify_hz: float = 25.0  # and classified Low/High only within this of the nominal
    short_ms: float = 276.0
    long_ms: float = 380.0
    min_segment_ms: float = 180.0  # E.180: 330 +- 70 ms, less measuring slack
    max_segment_ms: float = 480.0
    max_gap_ms: float = 80.0  # E.180 allows 30 ms; a frame mixes two segments; 2 lost frames
    bridge_frames: float = 2  # non-tonal frames (lost packets) bridged inside a segment
    dropout_frames: float = 6  # frames of digital silence (a burst of lost packets) bridged
    min_level_dbfs: float = -45.0
    min_purity: float = 0.7
    max_step_hz: float = 25.0
    edge_threshold: float = 0.25


class SitDetector:
    """Three-segment special information tone, classified into its NA code.

    Reported when the third segment ends (usually when the announcement
    starts), with start and end of the whole SIT and the code as value.
    Inside a segment, up to `bridge_frames` non-tonal frames and up to
    `dropout_frames` of digital silence (lost packets) are bridged; between
    segments, `max_gap_ms` allows for a lost frame or two.
    """

    def __init__(self, **params: float) -> None:
        self.params = p = make_params(SitParams, params)
        bridge = int(max(p.bridge_frames, p.dropout_frames))
        self._tracker = ToneTracker(p.max_step_hz, bridge, p.edge_threshold, 1e9)
        self._segments: deque[ToneSegment] = deque(maxlen=3)

    def feed(self, frame: NDArray[Any], t: float) -> ToneEvent | None:
        """Feed one frame starting at `t`; returns a SIT once its last segment ended."""
        return self.feed_analysis(analyze_frame(frame), t)

    def feed_analysis(self, fa: FrameAnalysis, t: float) -> ToneEvent | None:
        """`feed` on a frame already analysed (how `ToneAnalyzer` shares the work)."""
        p = self.params
        tonal = (
            fa.spectrum is not None
            and fa.level_db >= p.min_level_dbfs
            and fa.peak_purity >= p.min_purity
            and p.seg1_low_hz - p.band_hz <= fa.peak_hz <= p.seg3_hz + p.band_hz
        )
        # Line noise never falls to digital silence: such frames are lost packets.
        lost = fa.spectrum is None or self._tracker.gap < p.bridge_frames
        seg = self._tracker.step(fa, t, tonal, lost)
        if seg is None:
            return None
        self._segments.append(seg)
        if len(self._segments) < 3:
            return None
        event = self._match(*self._segments)
        if event is not None:
            self._segments.clear()
        return event

    def _match(self, s1: ToneSegment, s2: ToneSegment, s3: ToneSegment) -> ToneEvent | None:
        p = self.params
        bands = [(p.seg1_low_hz, p.seg1_high_hz), (p.seg2_low_hz, p.seg2_high_hz)]
        bands.append((p.seg3_hz, p.seg3_hz))
        for seg, (low, high) in zip((s1, s2, s3), bands, strict=True):
            if not low - p.band_hz <= seg.freq <= high + p.band_hz:
                return None
        g12, g23 = s2.start - s1.end, s3.start - s2.end
        if max(g12, g23) > p.max_gap_ms / 1000.0:
            return None
        # A frame mixing two segments belongs to neither: give each half the gap.
        durations = (
            s1.duration + max(g12, 0.0) / 2,
            s2.duration + (max(g12, 0.0) + max(g23, 0.0)) / 2,
            s3.duration + max(g23, 0.0) / 2,
        )
        if not all(p.min_segment_ms <= d * 1000.0 <= p.max_segment_ms for d in durations):
            return None
        first = self._classify(s1.freq, durations[0], p.seg1_low_hz, p.seg1_high_hz)
        second = self._classify(s2.freq, durations[1], p.seg2_low_hz, p.seg2_high_hz)
        code = _SIT_CODES.get((*first, *second), "unknown")
        return ToneEvent("sit", s1.start, s3.end, code)

    def _classify(self, freq: float, duration: float, low: float, high: float) -> tuple[str, str]:
        p = self.params
        ms = duration * 1000.0
        length = "short" if ms < (p.short_ms + p.long_ms) / 2 else "long"
        if abs(freq - low) <= p.classify_hz:
            return ("low", length)
        if abs(freq - high) <= p.classify_hz:
            return ("high", length)
        return ("?", length)


# --- Fax -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FaxParams:
    """Fax calling and answer tones (ITU-T T.30 section 4; V.25 for the answer tone)."""

    cng_hz: float = 1100.0  # T.30 CNG: 1100 +- 38 Hz, 0.5 s on / 3 s off
    cng_tol_hz: float = 38.0
    cng_min_ms: float = 400.0  # reported once this much of a burst was heard
    ced_hz: float = 2100.0  # T.30 CED: 2100 +- 15 Hz, 2.6..4 s (phase reversals: V.25)
    ced_tol_hz: float = 25.0  # T.30's 15 Hz plus 10 Hz of measuring slack
    ced_min_ms: float = 500.0
    min_level_dbfs: float = -45.0
    min_purity: float = 0.7
    max_step_hz: float = 20.0
    bridge_frames: float = 1  # a phase reversal breaks one frame's spectrum


class FaxDetector:
    """Fax CNG (1100 Hz) and CED (2100 Hz), reported while the tone is still on.

    CNG is reported once per burst after `cng_min_ms`, CED once after
    `ced_min_ms`; both with `end` None and the measured frequency.
    """

    def __init__(self, **params: float) -> None:
        self.params = p = make_params(FaxParams, params)
        self._tracker = ToneTracker(p.max_step_hz, int(p.bridge_frames), 0.25, 1e9)
        self._reported = False

    def feed(self, frame: NDArray[Any], t: float) -> ToneEvent | None:
        """Feed one frame starting at `t`; returns CNG or CED once confirmed."""
        return self.feed_analysis(analyze_frame(frame), t)

    def feed_analysis(self, fa: FrameAnalysis, t: float) -> ToneEvent | None:
        """`feed` on a frame already analysed (how `ToneAnalyzer` shares the work)."""
        p = self.params
        kind = self._kind(fa.peak_hz)
        tonal = (
            kind is not None
            and fa.spectrum is not None
            and fa.level_db >= p.min_level_dbfs
            and fa.peak_purity >= p.min_purity
        )
        if self._tracker.step(fa, t, tonal) is not None or not self._tracker.active:
            self._reported = False
            return None
        kind = self._kind(self._tracker.freq)
        if self._reported or kind is None:
            return None
        start = self._tracker.start
        needed = p.cng_min_ms if kind == "fax_cng" else p.ced_min_ms
        if t + FRAME_S - start < needed / 1000.0:
            return None
        self._reported = True
        return ToneEvent(kind, start, None, None, round(self._tracker.freq, 1))

    def _kind(self, hz: float) -> str | None:
        p = self.params
        if abs(hz - p.cng_hz) <= p.cng_tol_hz:
            return "fax_cng"
        if abs(hz - p.ced_hz) <= p.ced_tol_hz:
            return "fax_ced"
        return None
