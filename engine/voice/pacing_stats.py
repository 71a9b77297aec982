"""What the predictive pacer measures: outcome, ring, talk and wrap-up times, and abandons.

Two mutable but pure helpers (no clock, no I/O: time comes in as `now`) that the
dial loop feeds as calls progress:

- `PacingStats` keeps the recent distributions (P(a dial reaches a live person),
  time from dial to that answer, talk time, wrap-up time) as sliding-window
  histograms blended with prior pseudo-observations, and turns them into a
  frozen `PacingSnapshot` of lookup tables that `pacing.decide` reads: for a
  call ringing for g seconds, the probability it is answered by a person
  within each forecast horizon; for an agent in a state for e seconds, the
  probability it is free by each horizon (residual life, conditioned on the
  time already spent in the state).
- `AbandonWindow` counts abandons and live answers over the trailing legal
  window (47 CFR 64.1200(a)(7): per campaign per 30 days; Ofcom: 24 hours,
  with an estimate of AMD false positives added).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

RING_BIN_S = 0.5  # resolution of the ring-age tables
SERVICE_BIN_S = 1.0  # resolution of the talk and wrap-up tables
TALK_BINS = 1800  # talk tables cover 30 min; longer calls use the last row
WRAP_BINS = 900  # wrap-up tables cover 15 min
HORIZONS = 8  # forecast points: the quantile midpoints of the answer time
UPPER_Z = 2.0  # how many standard errors above the measured P(live) the pacer assumes
CONNECT_S = 2.0  # 47 CFR 64.1200(a)(7)(i): a person must reach an agent within 2 s


@dataclass(frozen=True, slots=True)
class PacingPriors:
    """What the pacer assumes before it has measured enough (`weight` observations).

    Each prior counts as `weight` observations in the sliding windows, so it
    fades as real observations arrive and is negligible after a few hundred.
    Talk is taken as exponential and wrap-up as lognormal; the defaults lean
    slow (agents free later than they may), which under-dials for the first
    minutes rather than abandons.
    """

    p_live: float = 0.15
    ring_mean_s: float = 12.0
    ring_sd_s: float = 6.0
    talk_mean_s: float = 180.0
    wrap_mean_s: float = 45.0
    wrap_sd_s: float = 15.0
    weight: float = 20.0


@dataclass(frozen=True, slots=True)
class PacingSnapshot:
    """Frozen lookup tables built from the measured distributions.

    `horizons_s[k]` are the forecast points (quantile midpoints of the time from
    dial to a live answer, equally likely). Tables are indexed by the age of a
    call in `RING_BIN_S` bins, or an agent's time in state in `SERVICE_BIN_S`
    bins, then by horizon:

    - `ring_live[g, k]`: P(a call ringing g bins is answered by a person within
      `horizons_s[k]` more seconds | it is still ringing);
    - `talk_free[e, k]` / `wrap_free[e, k]`: P(an agent on a call / in wrap-up for
      e bins is ready within `horizons_s[k] + CONNECT_S` seconds).
    """

    p_live: float
    horizons_s: FloatArray
    ring_live: FloatArray
    talk_free: FloatArray
    wrap_free: FloatArray
    ring_live_mean_s: float
    talk_mean_s: float
    wrap_mean_s: float
    outcomes: int
    talks: int
    wraps: int

    @property
    def new_call_live(self) -> FloatArray:
        """P(a call placed now is answered by a person within each horizon)."""
        return np.asarray(self.ring_live[0], dtype=np.float64)

    @property
    def cycle_s(self) -> float:
        """Mean agent time per connected call: talk plus wrap-up."""
        return self.talk_mean_s + self.wrap_mean_s


class _SlidingHistogram:
    """Counts of the last `size` observations in fixed bins, per channel, plus priors.

    Channels share one window, so their relative weights are the recent mix
    (for outcomes: channel 1 = answered by a person, channel 0 = anything else).
    """

    def __init__(self, prior: FloatArray, bin_s: float, size: int) -> None:
        self.bin_s = bin_s
        self.prior = prior
        self.counts = np.zeros_like(prior)
        self.recent: deque[tuple[int, int]] = deque()
        self.size = size
        self.n = 0

    def add(self, value_s: float, channel: int = 0) -> None:
        b = min(int(max(value_s, 0.0) / self.bin_s), self.counts.shape[1] - 1)
        self.counts[channel, b] += 1.0
        self.recent.append((channel, b))
        self.n += 1
        if len(self.recent) > self.size:
            self.counts[self.recent.popleft()] -= 1.0

    def weights(self) -> FloatArray:
        return np.asarray(self.prior + self.counts, dtype=np.float64)


def _lognormal_weights(mean: float, sd: float, bins: int, bin_s: float) -> FloatArray:
    """Probability mass of a lognormal(mean, sd) in each bin (the last takes the tail)."""
    sigma2 = math.log(1.0 + (sd / mean) ** 2)
    mu = math.log(mean) - sigma2 / 2.0
    edges = np.arange(1, bins) * bin_s
    z = (np.log(edges) - mu) / math.sqrt(sigma2)
    cdf = np.concatenate(([0.0], 0.5 * (1.0 + _erf(z / math.sqrt(2.0))), [1.0]))
    return np.diff(cdf)


def _exponential_weights(mean: float, bins: int, bin_s: float) -> FloatArray:
    edges = np.arange(bins + 1) * bin_s
    cdf = 1.0 - np.exp(-edges / mean)
    cdf[-1] = 1.0
    return np.diff(cdf)


def _erf(x: FloatArray) -> FloatArray:
    from scipy.special import erf

    return np.asarray(erf(x), dtype=np.float64)


def _survival(weights: FloatArray) -> FloatArray:
    """Weight of observations at or beyond each bin edge (edges 0..bins)."""
    return np.asarray(weights.sum() - np.concatenate(([0.0], np.cumsum(weights))))


def _horizons(live: FloatArray) -> FloatArray:
    """Quantile midpoints of the dial-to-live-answer time, `HORIZONS` of them."""
    cdf = np.concatenate(([0.0], np.cumsum(live) / live.sum()))
    edges = np.arange(len(cdf)) * RING_BIN_S
    q = (np.arange(HORIZONS) + 0.5) / HORIZONS
    return np.asarray(np.interp(q, cdf, edges), dtype=np.float64)


def _ring_table(live: FloatArray, other: FloatArray, horizons: FloatArray) -> FloatArray:
    """P(answered by a person within each horizon | still ringing at each age bin)."""
    cum_live = np.concatenate(([0.0], np.cumsum(live)))
    unresolved = _survival(live + other)[:-1]
    ages = np.arange(len(live), dtype=np.float64)
    ends = ages[:, None] + horizons[None, :] / RING_BIN_S
    later = np.interp(ends, np.arange(len(cum_live)), cum_live) - cum_live[:-1, None]
    return np.asarray(later / np.maximum(unresolved, 1e-12)[:, None], dtype=np.float64)


def _within(weights: FloatArray, reach_s: FloatArray, rows: int) -> FloatArray:
    """P(the state ends within each `reach_s` | it has lasted each of `rows` bins)."""
    surv = _survival(weights)
    edges = np.arange(len(surv), dtype=np.float64)
    start = np.arange(rows, dtype=np.float64)
    ends = start[:, None] + reach_s[None, :] / SERVICE_BIN_S
    left = np.interp(ends, edges, surv, right=0.0)
    return np.asarray(1.0 - left / np.maximum(surv[:rows], 1e-300)[:, None], dtype=np.float64)


def _talk_table(talk: FloatArray, wrap: FloatArray, reach_s: FloatArray) -> FloatArray:
    """P(an agent on a call is ready within each reach | elapsed talk bin).

    The agent is ready once the rest of the call and the whole wrap-up are
    over: the residual talk time (from the talk histogram, conditioned on the
    time already spent) convolved with the wrap-up distribution.
    """
    span = math.ceil(float(reach_s.max()) / SERVICE_BIN_S) + 1
    rows = len(talk) - span
    surv = np.concatenate((_survival(talk), np.zeros(span + 1)))
    idx = np.arange(rows)[:, None] + np.arange(span + 1)[None, :]
    ends_in = (surv[idx[:, :-1]] - surv[idx[:, 1:]]) / np.maximum(surv[:rows], 1e-300)[:, None]
    wrap_cdf = 1.0 - _survival(wrap) / wrap.sum()
    edges = np.arange(len(wrap_cdf), dtype=np.float64) * SERVICE_BIN_S
    left = reach_s[None, :] - (np.arange(span)[:, None] + 0.5) * SERVICE_BIN_S
    wrap_by = np.interp(left, edges, wrap_cdf, left=0.0, right=1.0)
    return np.asarray(ends_in @ wrap_by, dtype=np.float64)


def _mean(weights: FloatArray, bin_s: float) -> float:
    centres = (np.arange(len(weights)) + 0.5) * bin_s
    return float((weights * centres).sum() / weights.sum())


class PacingStats:
    """The measured distributions the pacer forecasts with, fed by the dial loop.

    Mutable but pure: every method takes the time it happens at. Outcomes,
    talk times and wrap-up times each keep a sliding window of the most
    recent observations (`window` outcomes, `service_window` talks and
    wrap-ups), blended with `priors` so the first decisions are sane.
    `snapshot(now)` returns frozen tables, rebuilt at most every `refresh_s`
    seconds unless enough new observations arrived (early in a campaign).
    """

    def __init__(
        self,
        priors: PacingPriors | None = None,
        ring_timeout_s: float = 30.0,
        window: int = 3000,
        service_window: int = 500,
        refresh_s: float = 30.0,
    ) -> None:
        p = priors or PacingPriors()
        self.priors = p
        self.ring_timeout_s = ring_timeout_s
        self.refresh_s = refresh_s
        self.dials = 0
        ring_bins = math.ceil(ring_timeout_s / RING_BIN_S) + 2
        ring = _lognormal_weights(p.ring_mean_s, p.ring_sd_s, ring_bins, RING_BIN_S)
        timeout = np.zeros(ring_bins)
        timeout[-1] = 1.0
        other = (1.0 - p.p_live) * (0.5 * ring + 0.5 * timeout)
        outcome_prior = p.weight * np.vstack((other, p.p_live * ring))
        self._outcomes = _SlidingHistogram(outcome_prior, RING_BIN_S, window)
        talk = _exponential_weights(p.talk_mean_s, TALK_BINS, SERVICE_BIN_S)
        self._talk = _SlidingHistogram(p.weight * talk[None, :], SERVICE_BIN_S, service_window)
        wrap = _lognormal_weights(p.wrap_mean_s, p.wrap_sd_s, WRAP_BINS, SERVICE_BIN_S)
        self._wrap = _SlidingHistogram(p.weight * wrap[None, :], SERVICE_BIN_S, service_window)
        self._cached: PacingSnapshot | None = None
        self._cached_at = -math.inf
        self._cached_n = 0

    def on_dial(self, now: float) -> None:
        """A call was placed."""
        self.dials += 1

    def on_outcome(self, now: float, human: bool, ring_s: float | None) -> None:
        """A call stopped ringing: answered by a person who goes to an agent
        (`human`), or anything else (machine, AMD verdict machine, busy, no
        answer...). `ring_s` is the time from dial to that outcome; None means
        it rang until the ring timeout."""
        seconds = self.ring_timeout_s if ring_s is None else min(ring_s, self.ring_timeout_s)
        self._outcomes.add(seconds, 1 if human else 0)

    def on_talk_end(self, talk_s: float) -> None:
        """An agent's call ended after `talk_s` seconds connected."""
        self._talk.add(talk_s)

    def on_wrap_end(self, wrap_s: float) -> None:
        """An agent finished wrap-up after `wrap_s` seconds."""
        self._wrap.add(wrap_s)

    @property
    def observations(self) -> int:
        return self._outcomes.n + self._talk.n + self._wrap.n

    def snapshot(self, now: float) -> PacingSnapshot:
        """The tables for `decide`, rebuilt when stale (see the class doc)."""
        n = self.observations
        fresh = now - self._cached_at < self.refresh_s and n - self._cached_n < max(20, n // 10)
        if self._cached is not None and fresh:
            return self._cached
        self._cached = self._build()
        self._cached_at, self._cached_n = now, n
        return self._cached

    def _build(self) -> PacingSnapshot:
        other, live = self._outcomes.weights()
        talk, wrap = self._talk.weights()[0], self._wrap.weights()[0]
        horizons = _horizons(live)
        weight = float(live.sum() + other.sum())
        p_live = float(live.sum()) / weight
        # Forecast with an upper credible bound of P(live): overestimating
        # answers costs a little idle time, underestimating them costs
        # abandons, and early in a campaign the estimate rests on few calls.
        upper = min(1.0, p_live + UPPER_Z * math.sqrt(p_live * (1.0 - p_live) / weight))
        scale = upper / p_live if p_live > 0 else 1.0
        reach = horizons + CONNECT_S
        wrap_rows = WRAP_BINS - math.ceil(float(reach.max())) - 1
        return PacingSnapshot(
            p_live=p_live,
            horizons_s=horizons,
            ring_live=np.minimum(_ring_table(live, other, horizons) * scale, 1.0),
            talk_free=_talk_table(talk, wrap, reach),
            wrap_free=_within(wrap, reach, wrap_rows),
            ring_live_mean_s=_mean(live, RING_BIN_S),
            talk_mean_s=_mean(talk, SERVICE_BIN_S),
            wrap_mean_s=_mean(wrap, SERVICE_BIN_S),
            outcomes=self._outcomes.n,
            talks=self._talk.n,
            wraps=self._wrap.n,
        )


@dataclass(frozen=True, slots=True)
class AbandonCounts:
    """Abandons and live answers over the trailing window, as the rule counts them.

    `abandons` and `live_answers` include `estimated_false_positives` (Ofcom)
    when the window has an AMD false-positive rate; `covered_s` is how much of
    the window has history (less than `window_s` early in a campaign).
    """

    abandons: float
    live_answers: float
    machine_verdicts: int
    estimated_false_positives: float
    covered_s: float

    @property
    def rate(self) -> float:
        return self.abandons / self.live_answers if self.live_answers else 0.0


class AbandonWindow:
    """Trailing-window abandon counter (times must not go backwards).

    47 CFR 64.1200(a)(7): abandoned calls over calls answered by a live person,
    per campaign over 30 days. Ofcom's persistent-misuse statement (Annex,
    calculating the abandoned call rate): per campaign over 24 hours, with a
    reasoned estimate of AMD false positives (people the detector took for
    machines and hung up on) counted as abandoned live calls: here machine
    verdicts x `amd_fp_rate`, added to both abandons and live answers.
    """

    def __init__(self, window_s: float, amd_fp_rate: float = 0.0, start: float = 0.0) -> None:
        self.window_s = window_s
        self.amd_fp_rate = amd_fp_rate
        self.start = start
        self._lives: deque[float] = deque()
        self._abandons: deque[float] = deque()
        self._machines: deque[float] = deque()

    def on_live_answer(self, now: float, abandoned: bool) -> None:
        """A person answered; `abandoned` if no agent took the call within 2 s."""
        self._lives.append(now)
        if abandoned:
            self._abandons.append(now)

    def on_late_abandon(self, now: float) -> None:
        """A call already counted as a live answer (bridged) became an
        abandon (the agent's leg dropped): the abandon alone counts."""
        self._abandons.append(now)

    def on_machine_verdict(self, now: float) -> None:
        """AMD said machine and the call was not sent to an agent."""
        self._machines.append(now)

    def counts(self, now: float) -> AbandonCounts:
        """The counts over (now - window_s, now]."""
        since = now - self.window_s
        for times in (self._lives, self._abandons, self._machines):
            while times and times[0] <= since:
                times.popleft()
        fp = len(self._machines) * self.amd_fp_rate
        return AbandonCounts(
            abandons=len(self._abandons) + fp,
            live_answers=len(self._lives) + fp,
            machine_verdicts=len(self._machines),
            estimated_false_positives=fp,
            covered_s=min(self.window_s, max(0.0, now - self.start)),
        )
