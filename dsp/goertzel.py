"""Spectral core shared by the tone detectors: one analysis per 20 ms frame.

Every detector in `dsp.tones` and `dsp.progress` looks at the same few numbers
of a frame: its energy in 5 ms blocks (to place tone edges inside the frame),
a Hann-windowed power spectrum with its strongest peak (frequency by
interpolation, purity as the share of energy in the peak's main lobe), and for
DTMF and the progress tones a DFT at a handful of exact frequencies.
`analyze_frame` computes the first two once so that `ToneAnalyzer` can hand
the same `FrameAnalysis` to every detector; `GoertzelBank` evaluates the DFT
at arbitrary frequencies as one matrix product: the value the Goertzel
recurrence would reach after N samples, for all frequencies at once, without
a per-sample Python loop.

Levels are in dBFS where 0 dBFS is the mean power of a full-scale sine
(ITU-T G.100.1 "dBov"), so a tone of peak amplitude A is 20 log10(A / 32768).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, TypeVar

import numpy as np
from numpy.typing import NDArray

SAMPLE_RATE: Final = 8000
FRAME: Final = 160
FRAME_S: Final = FRAME / SAMPLE_RATE
BLOCK: Final = 40  # 5 ms: the resolution at which edges are placed inside a frame
BLOCK_S: Final = BLOCK / SAMPLE_RATE
BLOCKS: Final = FRAME // BLOCK
BIN_HZ: Final = SAMPLE_RATE / FRAME  # 50 Hz spectral grid of one frame
FULL_SCALE_POWER: Final = 32768.0**2 / 2.0  # mean power of a full-scale sine = 0 dBFS

_HANN: Final = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(FRAME) / FRAME)  # periodic
_FLOOR_POWER: Final = FULL_SCALE_POWER * 10.0 ** (-70.0 / 10.0)


class ToneError(ValueError):
    """Base error of the tone detectors."""


class ToneParamError(ToneError):
    """An unknown detector parameter, or a value it cannot take; names it."""


class FrameError(ToneError):
    """A frame that is not 160 samples of 8 kHz audio."""


@dataclass(frozen=True, slots=True)
class ToneEvent:
    """A tone found in the audio; times in seconds of analysis time."""

    kind: str  # "dtmf" | "sit" | "fax_cng" | "fax_ced" | "busy" | "reorder" | "ringback" | "beep"
    start: float
    end: float | None  # None while still on (events reported at onset)
    value: str | None  # DTMF digit, SIT code, progress region ("na", "eu"), else None
    frequency: float | None = None  # measured Hz of single tones (beep, fax)


def dbfs_to_power(dbfs: float) -> float:
    """Mean power (int16 scale) of a level in dBFS."""
    return float(FULL_SCALE_POWER * 10.0 ** (dbfs / 10.0))


def dbfs_to_amplitude(dbfs: float) -> float:
    """Peak amplitude (int16 scale) of a sine at `dbfs`."""
    return float(32768.0 * 10.0 ** (dbfs / 20.0))


P = TypeVar("P")


def make_params(cls: type[P], overrides: Mapping[str, Any]) -> P:
    """Build a parameter dataclass, naming any unknown or non-numeric parameter."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for name, value in overrides.items():
        if name not in known:
            raise ToneParamError(f"unknown parameter {name!r} for {cls.__name__}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ToneParamError(f"parameter {name!r} must be a number, got {value!r}")
    return cls(**{k: float(v) for k, v in overrides.items()})


def as_frame(frame: NDArray[Any]) -> NDArray[np.float64]:
    """The frame as float64, checked to be FRAME samples long."""
    if frame.shape != (FRAME,):
        raise FrameError(f"expected {FRAME} samples, got shape {frame.shape}")
    return frame.astype(np.float64)


class GoertzelBank:
    """DFT of a block of samples at arbitrary frequencies, optionally windowed.

    `dft(x)` returns sum_n w[n] x[n] exp(-j 2 pi f n / fs) for every f: what a
    bank of Goertzel filters would hold after len(x) samples, computed as one
    matrix product.  Rows of a 2-D `x` are transformed independently.
    """

    __slots__ = ("basis", "freqs", "length")

    def __init__(
        self,
        freqs: NDArray[np.float64] | list[float],
        length: int,
        window: NDArray[Any] | None = None,
    ) -> None:
        self.freqs = np.asarray(freqs, dtype=np.float64)
        self.length = length
        n = np.arange(length, dtype=np.float64)
        basis = np.exp(-2j * np.pi * np.outer(n, self.freqs) / SAMPLE_RATE)
        if window is not None:
            basis *= np.asarray(window, dtype=np.float64)[:, None]
        self.basis: NDArray[np.complex128] = basis

    def dft(self, x: NDArray[np.float64]) -> NDArray[np.complex128]:
        return np.asarray(x @ self.basis, dtype=np.complex128)


@dataclass(slots=True)
class FrameAnalysis:
    """What the detectors need to know of one frame; computed once per frame."""

    x: NDArray[np.float64]
    blocks: tuple[float, ...]  # energy (sum of squares) of each 5 ms block
    energy: float  # sum of squares of the frame
    level_db: float  # dBFS
    spectrum: NDArray[np.float64] | None  # |rfft(hann * x)|^2, 81 bins; None below -70 dBFS
    total: float  # sum of `spectrum`
    peak_hz: float  # interpolated frequency of the strongest bin in 300..3500 Hz
    peak_purity: float  # share of the windowed energy in that peak's main lobe

    def lobe(self, hz: float) -> float:
        """Windowed energy within one bin either side of `hz` (0 outside the band)."""
        if self.spectrum is None:
            return 0.0
        k = round(hz / BIN_HZ)
        if k < 1 or k > FRAME // 2 - 1:
            return 0.0
        return float(self.spectrum[k - 1 : k + 2].sum())

    def clutter_db(self, hz: float, harmonics: int = 5) -> float:
        """Strongest bin away from `hz` and its harmonics, in dB re the peak bin.

        White noise spreads evenly (its strongest bin stays well below a tone
        at any usable SNR); a voice puts its other harmonics there.
        """
        s = self.spectrum
        k = round(hz / BIN_HZ)
        if s is None or not 1 <= k < FRAME // 2:
            return 0.0
        peak = float(s[k - 1 : k + 2].max())
        rest = s.copy()
        rest[:3] = 0.0  # below 100 Hz: hum and DC, not voice
        for h in range(1, harmonics + 1):
            m = round(h * hz / BIN_HZ)
            rest[max(m - 2, 0) : m + 3] = 0.0
        other = float(rest.max())
        return -120.0 if other <= 0 or peak <= 0 else 10.0 * math.log10(other / peak)

    def harmonic(self, hz: float, tolerance_hz: float) -> float:
        """Energy of a spectral peak within `tolerance_hz` of `hz`, else 0."""
        s = self.spectrum
        k = round(hz / BIN_HZ)
        if s is None or k < 2 or k > FRAME // 2 - 3:
            return 0.0
        m = max((k - 1, k, k + 1), key=lambda i: float(s[i]))
        if s[m - 1] > s[m] or s[m + 1] > s[m]:
            return 0.0  # the slope of something else's peak
        freq, lobe = _interpolate(m, math.sqrt(s[m - 1]), math.sqrt(s[m]), math.sqrt(s[m + 1]), s)
        return lobe if abs(freq - hz) <= tolerance_hz else 0.0


def _interpolate(
    k: int, left: float, mid: float, right: float, spectrum: NDArray[np.float64]
) -> tuple[float, float]:
    """Frequency of a peak at bin k, and the energy of its 4-bin main lobe.

    Hann window, tone at k + d: |X[k+1]| / |X[k]| = (1 + d) / (2 - d), so
    d = (2a - 1) / (a + 1) with a the ratio of the larger neighbour.
    """
    if right >= left:
        a = right / mid if mid > 0 else 0.0
        offset = (2.0 * a - 1.0) / (a + 1.0)
    else:
        a = left / mid if mid > 0 else 0.0
        offset = -(2.0 * a - 1.0) / (a + 1.0)
    offset = min(max(offset, -1.0), 1.0)
    lo = k - 1 if offset <= 0 else k
    return (k + offset) * BIN_HZ, float(spectrum[lo - 1 : lo + 3].sum())


_PEAK_LO, _PEAK_HI = 6, 70  # 300 .. 3500 Hz


def analyze_frame(frame: NDArray[Any]) -> FrameAnalysis:
    """Energy, 5 ms block energies, Hann power spectrum and its main peak."""
    x = as_frame(frame)
    sq = x * x
    blocks = sq.reshape(BLOCKS, BLOCK).sum(axis=1).tolist()
    energy = sum(blocks)
    mean = energy / FRAME
    if mean < _FLOOR_POWER:
        level = -120.0 if mean <= 0 else 10.0 * math.log10(mean / FULL_SCALE_POWER)
        return FrameAnalysis(x, tuple(blocks), energy, level, None, 0.0, 0.0, 0.0)
    mag = np.abs(np.fft.rfft(x * _HANN))
    spectrum = mag * mag
    total = float(spectrum.sum())
    k = _PEAK_LO + int(np.argmax(spectrum[_PEAK_LO:_PEAK_HI]))
    freq, lobe = _interpolate(k, float(mag[k - 1]), float(mag[k]), float(mag[k + 1]), spectrum)
    purity = lobe / total if total > 0 else 0.0
    level = 10.0 * math.log10(mean / FULL_SCALE_POWER)
    return FrameAnalysis(x, tuple(blocks), energy, level, spectrum, total, freq, purity)


def analyze_frames(block: NDArray[Any]) -> list[FrameAnalysis]:
    """`analyze_frame` of every row of an (n, 160) block, with one numpy
    operation per step for all rows (the FFT of every loud row at once);
    each result equals `analyze_frame(block[i])` bit for bit."""
    if block.ndim != 2 or block.shape[1] != FRAME:
        raise FrameError(f"expected (n, {FRAME}) samples, got shape {block.shape}")
    n = block.shape[0]
    x = block.astype(np.float64)
    sq = x * x
    blocks = sq.reshape(n, BLOCKS, BLOCK).sum(axis=2)
    energy = blocks[:, 0] + blocks[:, 1] + blocks[:, 2] + blocks[:, 3]  # as sum() of 4 in order
    mean = energy / FRAME
    loud = np.flatnonzero(mean >= _FLOOR_POWER)
    out: list[FrameAnalysis | None] = [None] * n
    if len(loud):
        mag = np.abs(np.fft.rfft(x[loud] * _HANN, axis=1))
        spectra = mag * mag
        totals = spectra.sum(axis=1)
        ks = _PEAK_LO + np.argmax(spectra[:, _PEAK_LO:_PEAK_HI], axis=1)
        rows = np.arange(len(loud))
        left, mid, right = mag[rows, ks - 1], mag[rows, ks], mag[rows, ks + 1]
        upper = right >= left
        a = np.divide(np.where(upper, right, left), mid, out=np.zeros_like(mid), where=mid > 0)
        offset = np.where(upper, 1.0, -1.0) * ((2.0 * a - 1.0) / (a + 1.0))
        offset = np.minimum(np.maximum(offset, -1.0), 1.0)
        lo = np.where(offset <= 0, ks - 1, ks)
        lobes = spectra[rows, lo - 1] + spectra[rows, lo]  # the 4-bin sum, in order
        lobes = lobes + spectra[rows, lo + 1] + spectra[rows, lo + 2]
        freqs = (ks + offset) * BIN_HZ
        for j, i in enumerate(loud.tolist()):
            total, lobe, m = float(totals[j]), float(lobes[j]), float(mean[i])
            purity = lobe / total if total > 0 else 0.0
            level = 10.0 * math.log10(m / FULL_SCALE_POWER)
            out[i] = FrameAnalysis(
                x[i], tuple(blocks[i].tolist()), float(energy[i]), level, spectra[j], total,
                float(freqs[j]), purity,
            )  # fmt: skip
    for i in np.flatnonzero(mean < _FLOOR_POWER).tolist():
        m = float(mean[i])
        level = -120.0 if m <= 0 else 10.0 * math.log10(m / FULL_SCALE_POWER)
        out[i] = FrameAnalysis(x[i], tuple(blocks[i].tolist()), float(energy[i]), level, None,
                               0.0, 0.0, 0.0)  # fmt: skip
    return out  # type: ignore[return-value]


def rising_edge(blocks: list[float], t0: float, ref: float, threshold: float) -> float:
    """Time a tone began, from block energies ending with its first steady block.

    `blocks` are consecutive 5 ms block energies starting at `t0`; the last one
    is known to be inside the tone.  Walks back while blocks stay above
    `threshold * ref`, then places the edge inside the first block by its
    share of the steady energy `ref`.
    """
    i = len(blocks) - 1
    while i > 0 and blocks[i - 1] >= threshold * ref:
        i -= 1
    share = min(1.0, blocks[i] / ref) if ref > 0 else 1.0
    return t0 + (i + 1.0 - share) * BLOCK_S


def falling_edge(blocks: list[float], t0: float, ref: float, threshold: float) -> float:
    """Time a tone ended, from block energies starting with its last steady block."""
    i = 0
    while i + 1 < len(blocks) and blocks[i + 1] >= threshold * ref:
        i += 1
    share = min(1.0, blocks[i] / ref) if ref > 0 else 1.0
    return t0 + (i + share) * BLOCK_S


@dataclass(frozen=True, slots=True)
class ToneSegment:
    """A finished run of frames carrying one steady single tone."""

    start: float
    end: float
    freq: float  # mean of the per-frame peak frequencies
    min_freq: float
    max_freq: float
    frames: int
    unsteady: int  # interior frames whose 5 ms envelope was not flat
    level_db: float  # loudest frame, dBFS
    levels: tuple[float, ...] = ()  # dBFS of each frame, in order
    freqs: tuple[float, ...] = ()  # peak Hz of each frame, in order

    @property
    def duration(self) -> float:
        return self.end - self.start


class ToneTracker:
    """Follows one single tone across frames and cuts it into `ToneSegment`s.

    The caller decides per frame whether the frame is tonal (pure enough, in
    its band); the tracker joins consecutive tonal frames whose peak stays
    within `max_step_hz` of the previous one, bridges up to `bridge_frames`
    non-tonal frames (a phase reversal, a lost packet; see `step`), and places both edges
    to 5 ms from the block energies around them.
    """

    __slots__ = (
        "_after",
        "_bridge",
        "_edge",
        "_first_unsteady",
        "_flat",
        "_fmax",
        "_fmin",
        "_freqs",
        "_fsum",
        "_gap",
        "_last",
        "_last_freq",
        "_last_t",
        "_last_unsteady",
        "_level",
        "_levels",
        "_max_step",
        "_n",
        "_prev",
        "_prev_t",
        "_ref",
        "_start_blocks",
        "_start_t0",
        "_unsteady",
        "active",
    )

    def __init__(
        self, max_step_hz: float, bridge_frames: int = 0, edge_threshold: float = 0.25,
        flat_ratio: float = 2.0,
    ) -> None:  # fmt: skip
        self._max_step = max_step_hz
        self._bridge = bridge_frames
        self._edge = edge_threshold
        self._flat = flat_ratio
        self._prev: tuple[float, ...] = (0.0,) * BLOCKS
        self._prev_t = -1.0
        self.active = False
        self._reset_run()

    def _reset_run(self) -> None:
        self.active = False
        self._start_blocks: list[float] = []
        self._start_t0 = 0.0
        self._fsum = self._fmin = self._fmax = self._last_freq = 0.0
        self._n = self._gap = self._unsteady = 0
        self._first_unsteady = self._last_unsteady = False
        self._ref = 0.0
        self._level = -120.0
        self._last: tuple[float, ...] = ()
        self._last_t = 0.0
        self._after: tuple[float, ...] = ()
        self._levels: list[float] = []
        self._freqs: list[float] = []

    def step(
        self, fa: FrameAnalysis, t: float, tonal: bool, bridgeable: bool = True
    ) -> ToneSegment | None:
        """Advance by one frame starting at `t`; returns a segment when one ends.

        A non-tonal frame is bridged only if `bridgeable` (the caller may allow
        only quiet frames: a lost packet, not speech); a tonal frame more than
        two bins away from the run's tone is another tone, which ends the run
        at once and begins its own (a lost frame between two SIT segments).
        """
        finished = None
        step = abs(fa.peak_hz - self._last_freq)
        if tonal and self.active and step <= self._max_step:
            self._add(fa, t)
        else:
            if self.active:
                if self._gap == 0:
                    self._after = fa.blocks
                self._gap += 1
                other = tonal and step > max(self._max_step, 2 * BIN_HZ)
                if other or not bridgeable or self._gap > self._bridge:
                    finished = self._finish()
            if tonal and not self.active:
                self._begin(fa, t)
        self._prev, self._prev_t = fa.blocks, t
        return finished

    def _begin(self, fa: FrameAnalysis, t: float) -> None:
        contiguous = abs(self._prev_t + FRAME_S - t) < 1e-6
        prev = self._prev if contiguous else (0.0,) * BLOCKS
        self.active = True
        self._start_blocks = [*prev, *fa.blocks]
        self._start_t0 = t - FRAME_S
        self._fmin = self._fmax = fa.peak_hz
        self._add(fa, t)
        self._first_unsteady = self._last_unsteady

    def _add(self, fa: FrameAnalysis, t: float) -> None:
        self._gap = 0
        self._n += 1
        f = fa.peak_hz
        self._fsum += f
        self._fmin, self._fmax, self._last_freq = min(self._fmin, f), max(self._fmax, f), f
        low, high = min(fa.blocks), max(fa.blocks)
        self._last_unsteady = high > self._flat * low
        self._unsteady += self._last_unsteady
        self._ref = max(self._ref, fa.energy / BLOCKS)
        self._level = max(self._level, fa.level_db)
        self._levels.append(fa.level_db)
        self._freqs.append(f)
        self._last, self._last_t = fa.blocks, t

    @property
    def start(self) -> float:
        """Start edge of the current run (meaningful while `active`)."""
        return rising_edge(self._start_blocks, self._start_t0, self._ref, self._edge)

    @property
    def gap(self) -> int:
        """Non-tonal frames bridged since the current run's last tonal one."""
        return self._gap

    @property
    def last_freq(self) -> float:
        """Peak frequency of the current run's last tonal frame."""
        return self._last_freq

    @property
    def frames(self) -> int:
        """Frames in the current run."""
        return self._n

    @property
    def freq(self) -> float:
        return self._fsum / self._n if self._n else 0.0

    def _finish(self) -> ToneSegment:
        end = falling_edge([*self._last, *self._after], self._last_t, self._ref, self._edge)
        interior = self._unsteady - self._first_unsteady - (self._last_unsteady and self._n > 1)
        seg = ToneSegment(
            self.start, end, self.freq, self._fmin, self._fmax, self._n, max(0, interior),
            self._level, tuple(self._levels), tuple(self._freqs),
        )  # fmt: skip
        self._reset_run()
        return seg
