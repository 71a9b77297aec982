"""Streaming tone detectors over 20 ms frames: DTMF, beep, and all together.

Each detector is fed 160-sample int16 frames at 8 kHz with `feed(frame, t)`
(`t`: seconds of analysis time at the frame's first sample) and returns a
`ToneEvent` or None.  `ToneAnalyzer` runs all of them, and the call progress,
SIT and fax detectors of `dsp.progress`, on one shared `FrameAnalysis` per frame.

Every threshold is a keyword parameter of the constructor; the defaults and
the standard each one comes from are in the `...Params` dataclasses below.
"""

from __future__ import annotations

import cmath
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from dsp.goertzel import (
    BIN_HZ,
    BLOCK_S,
    BLOCKS,
    FRAME,
    FRAME_S,
    SAMPLE_RATE,
    FrameAnalysis,
    ToneError,
    ToneEvent,
    ToneParamError,
    ToneSegment,
    ToneTracker,
    analyze_frame,
    dbfs_to_amplitude,
    dbfs_to_power,
    falling_edge,
    make_params,
    rising_edge,
)
from dsp.progress import FaxDetector, ProgressDetector, SitDetector

__all__ = [
    "BeepDetector",
    "DtmfDetector",
    "FaxDetector",
    "ProgressDetector",
    "SitDetector",
    "ToneAnalyzer",
    "ToneError",
    "ToneEvent",
    "ToneParamError",
    "analyze_tones",
    "dtmf_tone",
]

# --- DTMF ----------------------------------------------------------------------
# ITU-T Q.23: the 4 x 4 keypad of one low-group and one high-group frequency.
_ROWS: Final = (697.0, 770.0, 852.0, 941.0)
_COLS: Final = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYS: Final = ("123A", "456B", "789C", "*0#D")
_DTMF_HZ: Final = np.array(_ROWS + _COLS)
_HALF: Final = FRAME // 2  # analysis hops by 10 ms: windows of two halves
_HANN160: Final = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(FRAME) / FRAME)
_HANN80: Final = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(_HALF) / _HALF)
_E80: Final = np.exp(-2j * np.pi * np.outer(np.arange(_HALF), _DTMF_HZ) / SAMPLE_RATE)
# One product per frame gives, for each half: its part of a Hann-160 DFT as the
# first half of a window, as the second half, and its own Hann-80 DFT (phase).
_DTMF_BASIS: Final = np.hstack(
    [_HANN160[:_HALF, None] * _E80, _HANN160[_HALF:, None] * _E80, _HANN80[:, None] * _E80]
)
_DTMF_HANN_SQ: Final = np.stack([_HANN160[:_HALF] ** 2, _HANN160[_HALF:] ** 2], axis=1)
_ROTATE: Final = np.exp(-2j * np.pi * _DTMF_HZ * _HALF / SAMPLE_RATE)  # 80-sample shift
_HANN_SUM: Final = float(_HANN160.sum())
_HANN_SQ_SUM: Final = float((_HANN160**2).sum())


@dataclass(frozen=True, slots=True)
class DtmfParams:
    """DTMF receiver thresholds (ITU-T Q.24, and its North American variant)."""

    min_tone_dbfs: float = -42.0  # each tone; Q.24 operates down to about -25 dBm0 (-28 dBFS)
    freq_tolerance: float = 0.025  # Q.24: operate within 1.5%, never beyond 3.5%; cut between
    normal_twist_db: float = 8.2  # low group louder: 8 dB (Q.24 North America) + 0.2 dB margin
    reverse_twist_db: float = 4.2  # high group louder: 4 dB + 0.2 dB margin
    min_purity: float = 0.85  # share of the window's energy in the two tones (talk-off guard)
    min_band_share: float = 0.5  # of a frame in 600..1750 Hz before the DTMF analysis runs
    max_drift: float = 0.004  # frequency change between windows 10 ms apart; voices glide
    min_balance: float = 0.25  # energy ratio of a window's halves: the tone fills it
    min_windows: float = 2  # consecutive 20 ms windows (10 ms hop) agreeing on the digit
    min_on_ms: float = 35.0  # Q.24: accept 40 ms, reject well below; 5 ms edge resolution
    min_off_ms: float = 35.0  # pause that separates two digits; shorter gaps are bridged
    edge_threshold: float = 0.25  # block energy (of the steady level) still inside a tone


@dataclass(slots=True)
class _Half:
    t: float
    proj: NDArray[np.complex128] | None  # 24 projections, None when silent
    hann_energy: tuple[float, float]  # Hann-weighted energy as first / second half
    energy: float


@dataclass(slots=True)
class _DigitRun:
    digit: str
    first_ws: float
    last_ws: float
    streak: int
    best_streak: int
    ref: float  # steady mean block energy
    offsets: tuple[float, float]  # relative frequency error of both tones, last window


class DtmfDetector:
    """In-band DTMF receiver (ITU-T Q.23/Q.24) with talk-off protection.

    Windows of 20 ms hop by 10 ms.  In each, a Hann-windowed DFT at the eight
    frequencies gives the strongest tone of each group; the phase advance of
    that frequency from one 10 ms half to the next gives its exact frequency
    (which also corrects its amplitude for the window's roll-off).  A window
    holds a digit when both tones are within `freq_tolerance`, loud enough,
    within the twist limits, and carry `min_purity` of its energy; and it
    counts toward the `min_windows` streak only if both frequencies held
    still since the last window (`max_drift`: a keypad does, a voice
    glides).  A digit is reported when it ends (start and end placed to 5 ms from the block
    energies), if it lasted `min_on_ms`; gaps shorter than `min_off_ms` are
    bridged.  Normal twist is the low group louder (Q.24 convention).
    """

    def __init__(self, **params: float) -> None:
        self.params = p = make_params(DtmfParams, params)
        self._min_amp = dbfs_to_amplitude(p.min_tone_dbfs)
        self._floor = 2.0 * dbfs_to_power(p.min_tone_dbfs) * _HALF / 4.0
        self._prev: _Half | None = None
        self._blocks: dict[int, float] = {}
        self._run: _DigitRun | None = None

    def feed(self, frame: NDArray[Any], t: float) -> ToneEvent | None:
        """Feed one frame starting at `t`; returns a digit once it has ended."""
        return self.feed_analysis(analyze_frame(frame), t)

    def feed_analysis(self, fa: FrameAnalysis, t: float) -> ToneEvent | None:
        """`feed` on a frame already analysed (how `ToneAnalyzer` shares the work)."""
        event = None
        base = round(t / BLOCK_S)
        for i, e in enumerate(fa.blocks):
            self._blocks[base + i] = e
        if len(self._blocks) > 96:  # keep the last ~240 ms for edge placement
            self._blocks = {k: v for k, v in self._blocks.items() if k > base - 48}
        a, b = self._halves(fa, t)
        for h1, h2 in ((self._prev, a), (a, b)):
            if h1 is None or abs(h1.t + _HALF / SAMPLE_RATE - h2.t) > 1e-6:
                continue
            found = self._classify(h1, h2)
            if found is not None:
                event = self._on_digit(found, h1.t, h1.energy + h2.energy) or event
        self._prev = b
        # The last window ended at last_ws + 20 ms; once min_off has passed since,
        # plus a frame for a same-digit window that would bridge, the digit is over.
        run = self._run
        if run is not None and t - run.last_ws >= self.params.min_off_ms / 1000.0 + FRAME_S:
            event = self._finish(run) or event
            self._run = None
        return event

    def _halves(self, fa: FrameAnalysis, t: float) -> tuple[_Half, _Half]:
        ea = fa.blocks[0] + fa.blocks[1]
        eb = fa.blocks[2] + fa.blocks[3]
        dt = _HALF / SAMPLE_RATE
        band = 0.0 if fa.spectrum is None else float(fa.spectrum[12:36].sum())
        if fa.energy < self._floor or band < self.params.min_band_share * fa.total:
            return _Half(t, None, (0.0, 0.0), ea), _Half(t + dt, None, (0.0, 0.0), eb)
        halves = fa.x.reshape(2, _HALF)
        proj = halves @ _DTMF_BASIS
        hen = ((halves * halves) @ _DTMF_HANN_SQ).tolist()
        return (
            _Half(t, proj[0], (hen[0][0], hen[0][1]), ea),
            _Half(t + dt, proj[1], (hen[1][0], hen[1][1]), eb),
        )

    def _classify(self, h1: _Half, h2: _Half) -> tuple[str, float, float] | None:
        p = self.params
        if h1.proj is None or h2.proj is None:
            return None
        if min(h1.energy, h2.energy) < p.min_balance * max(h1.energy, h2.energy):
            return None
        x = h1.proj[:8] + h2.proj[8:16] * _ROTATE
        power = (x.real * x.real + x.imag * x.imag).tolist()
        r = max(range(4), key=power.__getitem__)
        c = 4 + max(range(4), key=lambda i: power[4 + i])
        window_energy = h1.hann_energy[0] + h2.hann_energy[1]
        amps = []
        offsets = []
        share = 0.0
        for k in (r, c):
            # Phase advance over 80 samples, less the nominal one: the offset.
            turn = h2.proj[16 + k] * h1.proj[16 + k].conjugate() * _ROTATE[k]
            offset_hz = cmath.phase(turn) * SAMPLE_RATE / (2.0 * math.pi * _HALF)
            offsets.append(offset_hz / _DTMF_HZ[k])
            if abs(offsets[-1]) > p.freq_tolerance:
                return None
            gain = _hann_gain(offset_hz / (SAMPLE_RATE / FRAME))
            amps.append(2.0 * math.sqrt(power[k]) / (_HANN_SUM * gain))
            share += 2.0 * power[k] * _HANN_SQ_SUM / (_HANN_SUM**2 * gain * gain)
        if min(amps) < self._min_amp or share < p.min_purity * window_energy:
            return None
        twist = 20.0 * math.log10(amps[0] / amps[1])
        if twist > p.normal_twist_db or -twist > p.reverse_twist_db:
            return None
        return _KEYS[r][c - 4], offsets[0], offsets[1]

    def _on_digit(
        self, found: tuple[str, float, float], ws: float, energy: float
    ) -> ToneEvent | None:
        digit, offsets = found[0], found[1:]
        run = self._run
        ref = energy / BLOCKS
        event = None
        if run is not None and run.digit == digit:
            if abs(ws - run.last_ws - _HALF / SAMPLE_RATE) < 1e-6:
                drift = max(abs(a - b) for a, b in zip(offsets, run.offsets, strict=True))
                # A keypad holds its frequencies; a voice glides: start over.
                run.streak = 1 if drift > self.params.max_drift else run.streak + 1
            else:
                gap = self._start_edge(ws, ref) - self._end_edge(run)
                if gap >= self.params.min_off_ms / 1000.0:
                    event = self._finish(run)
                    self._run = _DigitRun(digit, ws, ws, 1, 1, ref, offsets)
                    return event
                run.streak = 1
            run.offsets = offsets
            run.last_ws = ws
            run.best_streak = max(run.best_streak, run.streak)
            run.ref = max(run.ref, ref)
            return None
        if run is not None:
            event = self._finish(run)
        self._run = _DigitRun(digit, ws, ws, 1, 1, ref, offsets)
        return event

    def _block_list(self, first: float, count: int) -> list[float]:
        base = round(first / BLOCK_S)
        return [self._blocks.get(base + i, 0.0) for i in range(count)]

    def _start_edge(self, ws: float, ref: float) -> float:
        # The first valid window holds the tone at least over its last 12.5 ms.
        first = ws - 2 * BLOCK_S
        return rising_edge(self._block_list(first, 5), first, ref, self.params.edge_threshold)

    def _end_edge(self, run: _DigitRun) -> float:
        first = run.last_ws + BLOCK_S
        blocks = self._block_list(first, 5)
        return falling_edge(blocks, first, run.ref, self.params.edge_threshold)

    def _finish(self, run: _DigitRun) -> ToneEvent | None:
        start = self._start_edge(run.first_ws, run.ref)
        end = self._end_edge(run)
        if run.best_streak < self.params.min_windows:
            return None
        if end - start < self.params.min_on_ms / 1000.0 - 1e-9:
            return None
        return ToneEvent("dtmf", start, end, run.digit)


def _hann_gain(bins: float) -> float:
    """Response of a periodic Hann window `bins` away from its centre (1 at 0)."""
    nu = min(abs(bins), 0.95)
    if nu < 1e-6:
        return 1.0
    return math.sin(math.pi * nu) / (math.pi * nu * (1.0 - nu * nu))


def dtmf_tone(
    digits: str,
    *,
    on_ms: float = 100,
    off_ms: float = 60,
    level_dbfs: float = -10.0,
    twist_db: float = 0.0,
    freq_error: float = 0.0,
) -> NDArray[np.int16]:
    """DTMF digits as 8 kHz int16: each `on_ms` of tone then `off_ms` of silence.

    `level_dbfs` is the level of each tone; a positive `twist_db` lowers the
    high-group tone (normal twist), a negative one the low-group tone
    (reverse twist).  `freq_error` shifts both frequencies (0.014 = +1.4%).
    """
    on = round(on_ms * SAMPLE_RATE / 1000.0)
    off = round(off_ms * SAMPLE_RATE / 1000.0)
    n = np.arange(on) / SAMPLE_RATE
    amp = dbfs_to_amplitude(level_dbfs)
    low_amp = amp * 10.0 ** (min(twist_db, 0.0) / 20.0)
    high_amp = amp * 10.0 ** (-max(twist_db, 0.0) / 20.0)
    parts: list[NDArray[np.float64]] = []
    for d in digits:
        row = next((i for i, keys in enumerate(_KEYS) if d.upper() in keys), None)
        if row is None or len(d) != 1:
            raise ToneParamError(f"not a DTMF digit: {d!r}")
        col = _KEYS[row].index(d.upper())
        lo, hi = _ROWS[row] * (1 + freq_error), _COLS[col] * (1 + freq_error)
        tone = low_amp * np.sin(2 * np.pi * lo * n) + high_amp * np.sin(2 * np.pi * hi * n)
        parts += [tone, np.zeros(off)]
    pcm = np.concatenate(parts) if parts else np.zeros(0)
    return np.clip(np.rint(pcm), -32768, 32767).astype(np.int16)


# --- Beep ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BeepParams:
    """Answering-machine beep: one steady tone, 400..2000 Hz, held >= 100 ms."""

    min_hz: float = 395.0  # 400 Hz less 1.25%: voices sit just below (392 Hz in Asterisk prompts)
    max_hz: float = 2050.0  # 2000 Hz plus 2.5%
    min_level_dbfs: float = -45.0
    min_purity: float = 0.7  # energy in the peak and its 2nd/3rd harmonics vs the frame's
    max_subharmonic: float = 0.1  # energy at f/2 and 3f/2 vs f: a voice's 2nd harmonic is no beep
    harmonic_tol_hz: float = 15.0  # a harmonic's peak lies this close to k * f
    max_step_hz: float = 30.0  # frame-to-frame glide of the peak
    max_glide: float = 0.03  # (max - min) / mean frequency over the beep
    flat_ratio: float = 2.0  # max/min 5 ms block energy in a steady frame (two tones beat)
    max_unsteady: float = 0.1  # share of interior frames allowed to beat
    min_ms: float = 100.0
    max_ms: float = 2500.0
    max_clutter_db: float = -13.0  # strongest other bin vs the peak (median over the beep);
    # -13 rather than -15 dB: noise at 5-10 dB SNR reaches -15, and voices are
    # also told apart by what follows them (quiet_ms)
    max_level_range_db: float = 3.0  # a beep holds its level; a voiced syllable swells
    voice_max_hz: float = 500.0  # below this, sustained female/child voicing looks pure,
    voice_min_ms: float = 0.0  # so a beep there may be made to last longer (0: off)
    edge_tolerance_ms: float = 10.0  # measured duration may fall this short of min_ms
    edge_threshold: float = 0.25
    neighbour_purity: float = 0.4  # a tone this pure right before/after: part of a sequence
    lost_frames: float = 2  # quiet frames (lost packets) bridged inside a beep and before it
    dropout_frames: float = 6  # frames of digital silence (a burst of lost packets) bridged
    quiet_ms: float = 160.0  # after a beep a machine records (silence); speech goes on
    quiet_margin_db: float = 6.0  # above the noise floor a frame is no longer quiet
    floor_rise_db_s: float = 3.0  # the noise floor follows a quieter frame at once, a louder slowly


class BeepDetector:
    """Voicemail beep: a single pure tone, reported once the quiet after it is heard.

    A frame is tonal when its spectral peak lies in the beep band and the
    peak's main lobe (plus its 2nd and 3rd harmonics, if it needs them) holds
    `min_purity` of the energy, with little energy at half the peak's
    frequency (which would make the peak a voice's harmonic).  A run of tonal
    frames is a beep when it lasted `min_ms`, kept its frequency (`max_glide`)
    and level (`max_level_range_db`), did not beat (two close tones such as
    ringback 440+480 Hz have an envelope that is not flat over 5 ms blocks),
    kept the rest of its spectrum low (`max_clutter_db`: a voice's other
    harmonics stand out of white noise), and was not one of a sequence of
    tones (SIT segments, chimes).  Dual tones further apart (busy 480+620 Hz)
    fail purity.  Up to `lost_frames` quiet frames inside a beep (lost
    packets) are bridged, and a tone that begins that soon after another one
    is still in sequence with it.

    A machine starts recording after its beep, so the `quiet_ms` after the
    tone must hold no sound above the adaptive noise floor (`quiet_margin_db`)
    and no other tone; a held vowel is followed by more speech, a SIT segment
    by the next one.  Start and end are placed to 5 ms; the event is returned
    on the frame that completes the quiet, about `quiet_ms` + 20 ms after
    the beep's end.

    Known limit: a pure sung or synthetic vowel of 100+ ms in 400..2000 Hz,
    followed by a pause, is physically a beep; so is a fax CNG burst (1100 Hz,
    0.5 s, then 3 s of silence), which `FaxDetector` reports first.
    """

    def __init__(self, **params: float) -> None:
        self.params = p = make_params(BeepParams, params)
        bridge = int(max(p.lost_frames, p.dropout_frames))
        self._tracker = ToneTracker(p.max_step_hz, bridge, p.edge_threshold, p.flat_ratio)
        self._clutter: list[float] = []  # per frame of the tracker's current run
        self._recent: deque[FrameAnalysis] = deque(maxlen=1 + int(p.lost_frames))
        self._in_sequence = False  # the current run began right after another tone
        self._floor = math.inf  # noise floor: mean power per sample (int16 scale)
        self._rise = 10.0 ** (p.floor_rise_db_s * FRAME_S / 10.0)
        self._margin = 10.0 ** (p.quiet_margin_db / 10.0)
        self._pending: ToneEvent | None = None  # a beep waiting for the quiet after it
        self._resumed = False  # its tone came back: the current run continues it

    def feed(self, frame: NDArray[Any], t: float) -> ToneEvent | None:
        """Feed one frame starting at `t`; returns a beep once the quiet after it is heard."""
        return self.feed_analysis(analyze_frame(frame), t)

    def feed_analysis(self, fa: FrameAnalysis, t: float) -> ToneEvent | None:
        """`feed` on a frame already analysed (how `ToneAnalyzer` shares the work)."""
        tonal = self._tonal(fa)
        quiet = not tonal and self._quiet(fa, fa.energy / FRAME)
        seg = self._tracker.step(fa, t, tonal, self._bridgeable(fa, quiet))
        clutter, in_sequence = self._clutter, self._in_sequence
        if tonal:  # the frame joined a run, or began one
            if self._tracker.frames == 1:
                self._clutter = []
                self._in_sequence = any(self._other_tone(f, fa) for f in self._recent)
            self._clutter.append(fa.clutter_db(fa.peak_hz))
        pending = self._pending
        if pending is not None and tonal and pending.frequency is not None:
            # The same tone again after a dropout: the beep goes on, wait for its end.
            self._resumed |= abs(fa.peak_hz - pending.frequency) <= self.params.max_step_hz
        event = None if self._resumed else self._wait_quiet(quiet, t)
        if seg is not None:
            event = self._on_segment(seg, clutter, in_sequence, fa, t) or event
        self._recent.append(fa)
        if fa.spectrum is not None:  # digital silence (a lost packet) says nothing of noise
            self._floor = min(fa.energy / FRAME, self._floor * self._rise)
        return event

    def _on_segment(
        self, seg: ToneSegment, clutter: list[float], in_sequence: bool, fa: FrameAnalysis,
        t: float,
    ) -> ToneEvent | None:  # fmt: skip
        """Judge a finished run; a beep then waits for the quiet after it."""
        held, resumed = self._pending, self._resumed
        if held is not None and not resumed:
            return None  # a remnant of the pending beep's last frame, which began a run
        self._pending, self._resumed = None, False
        # SIT segments and chimes are tone sequences, not beeps.
        if in_sequence or self._other_tone(fa, seg):
            return None
        beep = self._judge(seg, clutter)
        if held is not None:  # the resumed tone: one beep from the first part's start
            beep = ToneEvent("beep", held.start, seg.end, None, held.frequency)
        if beep is None or not self._quiet_after(fa, t, seg.end):
            return None
        self._pending = beep
        return self._wait_quiet(True, t)

    def _bridgeable(self, fa: FrameAnalysis, quiet: bool) -> bool:
        """Whether a non-tonal frame may lie inside the current beep.

        A lost packet: digital silence (line noise never falls that low), or
        up to `lost_frames` quiet frames; or up to as many frames where the
        tone still dominates but noise spoilt its purity.
        """
        tracker, p = self._tracker, self.params
        if fa.spectrum is None:
            return True
        if tracker.gap >= p.lost_frames:
            return False
        held = abs(fa.peak_hz - tracker.last_freq) <= p.max_step_hz
        return quiet or (held and fa.peak_purity >= p.neighbour_purity)

    def _wait_quiet(self, quiet: bool, t: float) -> ToneEvent | None:
        """The pending beep once `quiet_ms` of quiet followed it; dropped on a sound."""
        beep = self._pending
        if beep is None or beep.end is None:
            return None
        if not quiet:
            self._pending = None
        elif t + FRAME_S >= beep.end + self.params.quiet_ms / 1000.0 - 1e-9:
            self._pending = None
            return beep
        return None

    def _quiet(self, fa: FrameAnalysis, power: float) -> bool:
        """Whether mean `power` of (part of) `fa` is no sound above the noise floor."""
        return fa.spectrum is None or power <= self._floor * self._margin

    def _quiet_after(self, fa: FrameAnalysis, t: float, end: float) -> bool:
        """Whether the blocks of `fa` from a block after `end` on are quiet."""
        first = max(0, math.ceil((end + BLOCK_S - t) / BLOCK_S - 1e-6))
        if first >= BLOCKS:
            return True
        return self._quiet(fa, sum(fa.blocks[first:]) / ((BLOCKS - first) * BLOCK_S * SAMPLE_RATE))

    def _other_tone(self, fa: FrameAnalysis | None, tone: FrameAnalysis | ToneSegment) -> bool:
        """Whether `fa` holds a different tone about as loud as `tone`."""
        if fa is None or fa.spectrum is None or fa.peak_purity < self.params.neighbour_purity:
            return False
        if isinstance(tone, ToneSegment):
            freq, level = tone.freq, tone.level_db
        else:
            freq, level = tone.peak_hz, tone.level_db
        # Two bins apart: the ragged edge of the same tone is no other tone.
        return abs(fa.peak_hz - freq) > 2 * BIN_HZ and fa.level_db > level - 6.0

    def _tonal(self, fa: FrameAnalysis) -> bool:
        p = self.params
        f = fa.peak_hz
        if fa.spectrum is None or fa.level_db < p.min_level_dbfs or not p.min_hz <= f <= p.max_hz:
            return False
        peak = fa.peak_purity * fa.total
        if fa.peak_purity < p.min_purity:
            # Harmonics of a beep sit exactly at 2f and 3f; another tone does not.
            tol = p.harmonic_tol_hz
            harmonics = fa.harmonic(2 * f, tol) + fa.harmonic(3 * f, tol)
            if peak + harmonics < p.min_purity * fa.total:
                return False
        return fa.lobe(0.5 * f) + fa.lobe(1.5 * f) <= p.max_subharmonic * peak

    def _judge(self, seg: ToneSegment, clutter: list[float]) -> ToneEvent | None:
        p = self.params
        ms = seg.duration * 1000.0
        if not p.min_ms - p.edge_tolerance_ms <= ms <= p.max_ms:
            return None
        freqs = seg.freqs[1:-1] if len(seg.freqs) > 2 else seg.freqs  # edges mix
        if max(freqs) - min(freqs) > p.max_glide * seg.freq:
            return None
        if seg.unsteady > p.max_unsteady * max(seg.frames - 2, 1):
            return None
        if seg.freq < p.voice_max_hz and ms < p.voice_min_ms - p.edge_tolerance_ms:
            return None
        inner = seg.levels[1:-1] if len(seg.levels) > 2 else seg.levels
        if max(inner) - min(inner) > p.max_level_range_db:
            return None
        cluttered = clutter[1:-1] if len(clutter) > 2 else clutter
        if not cluttered or float(np.median(cluttered)) > p.max_clutter_db:
            return None
        return ToneEvent("beep", seg.start, seg.end, None, round(seg.freq, 1))


# --- All together ---------------------------------------------------------------


Detector = DtmfDetector | BeepDetector | SitDetector | FaxDetector | ProgressDetector


class ToneAnalyzer:
    """Runs the chosen detectors on one shared analysis of each frame."""

    def __init__(
        self, *, dtmf: bool = True, beep: bool = True, sit: bool = True, fax: bool = True,
        progress: bool = True,
    ) -> None:  # fmt: skip
        chosen: list[Detector] = []
        if dtmf:
            chosen.append(DtmfDetector())
        if beep:
            chosen.append(BeepDetector())
        if sit:
            chosen.append(SitDetector())
        if fax:
            chosen.append(FaxDetector())
        if progress:
            chosen.append(ProgressDetector())
        self.detectors: tuple[Detector, ...] = tuple(chosen)

    def feed(self, frame: NDArray[Any], t: float) -> list[ToneEvent]:
        """Feed one frame starting at `t`; returns the events it completed."""
        return self.feed_analysis(analyze_frame(frame), t)

    def feed_analysis(self, fa: FrameAnalysis, t: float) -> list[ToneEvent]:
        """`feed` on a frame already analysed (`dsp.goertzel.analyze_frames`
        analyses many calls' frames at once)."""
        events = []
        for detector in self.detectors:
            event = detector.feed_analysis(fa, t)
            if event is not None:
                events.append(event)
        return events


def analyze_tones(pcm: NDArray[Any]) -> list[ToneEvent]:
    """All tone events of a whole 8 kHz int16 signal, in order of report.

    The signal is cut into 160-sample frames (the last one padded with
    silence) and followed by 300 ms of silence so tones that run to the end
    are still reported.
    """
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ToneError(f"expected a mono signal, got shape {pcm.shape}")
    frames = -(-len(pcm) // FRAME) + round(0.3 / FRAME_S)
    padded = np.zeros(frames * FRAME, dtype=np.int16)
    padded[: len(pcm)] = np.clip(pcm, -32768, 32767)
    analyzer = ToneAnalyzer()
    events: list[ToneEvent] = []
    for i in range(frames):
        events += analyzer.feed(padded[i * FRAME : (i + 1) * FRAME], i * FRAME_S)
    return events
