"""Pacing: how many calls to place now, for progressive, power and predictive dialing.

`decide(config, state, now)` is a pure function of what the dial loop observes
(agents and their time in state, calls ringing and their ages, answered calls
waiting, the measured distributions, the abandon ledger); the loop calls it
every 100-200 ms and places `Decision.dial` calls. No clock, no I/O, no
randomness here.

Predictive dialing (see `_RiskCurve.calls_within`): for each forecast horizon t
(quantiles of the dial-to-answer time) it forecasts the agents free by
t + 2 s (ready now, plus each busy agent's probability of being ready by then,
from the talk and wrap-up distributions conditioned on the time already spent)
and the people answering by t (answered calls waiting, plus each ringing
call's probability of a live answer by then, conditioned on its age). A new
call answered at t is abandoned when answers outnumber free agents; with a
normal approximation of that difference, the n-th new call's probability of
being abandoned if a person answers it is computed for every n at once, and
the pacer dials the calls whose risk stays under a limit. The limit is the
abandon budget spent adaptively: high while the ledger is well under the
target, falling as it fills, and progressive 1:1 once it nears the target
(47 CFR 64.1200(a)(7): abandons over live answers, per campaign per 30 days;
Ofcom: per 24 h).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from engine.voice.pacing_stats import (
    RING_BIN_S,
    SERVICE_BIN_S,
    FloatArray,
    PacingSnapshot,
)

__all__ = [
    "AgentSnapshot", "AgentState", "Decision", "DialMode", "PacingConfig", "PacingState",
    "budget_used", "decide",
]  # fmt: skip


class DialMode(enum.Enum):
    """How calls are paced (preview and agentless are paced elsewhere)."""

    PROGRESSIVE = "progressive"
    POWER = "power"
    PREDICTIVE = "predictive"


class AgentState(enum.StrEnum):
    """The states of an agent that pacing counts (not ready and logged out are left out)."""

    READY = "ready"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"


@dataclass(frozen=True, slots=True)
class PacingConfig:
    """A campaign's pacing settings.

    `ratio`: progressive, calls per ready agent (1.0); power, the fixed ratio.
    `abandon_target`: the abandon rate to hold; the caller clamps it to the
    jurisdiction's legal limit. `max_ratio`: cap on calls in flight per agent.
    `window_s`: the legal window the ledger counts over (30 days US, 24 h UK).
    Predictive spends the abandon budget adaptively. With `used` the share of
    the window's allowance (target x live answers) that one more abandon would
    reach: at `used` >= 1 it falls back to progressive 1:1; otherwise each new
    call may carry a probability of abandon (if a person answers it) of
    target x max(`risk_floor`, `risk_gain` x (1 - used / `backoff_at`)), so
    it dials hard while the ledger is well under the target and ever more
    gently as it fills.
    `projection_s`: when the window has less than this much history, the
    live answers expected over the rest of it count in the denominator.
    `warmup_outcomes`: predictive dials progressive 1:1 until this many calls
    (and at least one per agent) have an outcome, so the first burst is not
    paced on priors alone.
    """

    mode: DialMode
    ratio: float = 1.0
    abandon_target: float = 0.03
    max_ratio: float = 5.0
    window_s: float = 30 * 86400.0
    backoff_at: float = 0.6
    risk_gain: float = 2.0
    risk_floor: float = 0.1
    projection_s: float = 1800.0
    warmup_outcomes: int = 30

    def __post_init__(self) -> None:
        if self.ratio <= 0 or self.max_ratio <= 0:
            raise ValueError("ratio and max_ratio must be above 0")
        if not 0 <= self.abandon_target < 1:
            raise ValueError(f"abandon_target must be in [0, 1), got {self.abandon_target}")
        if not 0 < self.backoff_at <= 1 or self.risk_gain < 0 or self.risk_floor < 0:
            raise ValueError("backoff_at must be in (0, 1], risk_gain and risk_floor >= 0")


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """One logged-in agent who takes calls: its state and seconds in that state."""

    state: AgentState
    in_state_s: float


@dataclass(frozen=True, slots=True)
class PacingState:
    """What the dial loop observes now.

    `ringing`: the age in seconds of every call placed and not yet answered
    or failed. `waiting`: calls answered by a person and waiting for an agent.
    `abandons` / `live_answers`: the ledger over the legal window (with
    Ofcom's AMD false-positive estimate where it applies, so they may be
    fractional). `window_covered_s`: how much of the window has history.
    """

    agents: tuple[AgentSnapshot, ...]
    ringing: tuple[float, ...]
    waiting: int
    stats: PacingSnapshot
    abandons: float = 0.0
    live_answers: float = 0.0
    window_covered_s: float = math.inf


@dataclass(frozen=True, slots=True)
class Decision:
    """Calls to place now, the dial level (calls in flight per agent), and why.

    `risk` is the abandon-probability limit a predictive call was held to
    (0 outside predictive); `budget_used` the share of the abandon budget the
    next abandon would take (see `budget_used`).
    """

    dial: int
    level: float
    reason: str
    risk: float = 0.0
    budget_used: float = 0.0


def decide(config: PacingConfig, state: PacingState, now: float) -> Decision:
    """How many calls to place now (see the module doc)."""
    agents = len(state.agents)
    if agents == 0:
        return Decision(0, 0.0, "no agents ready or busy: nothing to dial for")
    in_flight = len(state.ringing) + state.waiting
    room = max(0, math.floor(config.max_ratio * agents + 1e-9) - in_flight)
    ready = sum(1 for a in state.agents if a.state is AgentState.READY)
    if config.mode is not DialMode.PREDICTIVE:
        dial = min(room, _ratio_calls(config.ratio, ready, in_flight))
        return Decision(
            dial, (in_flight + dial) / agents, f"{config.mode.value} {config.ratio:g}:1"
        )
    return _predictive(config, state, room, ready)


def _ratio_calls(ratio: float, ready: int, in_flight: int) -> int:
    """Calls that bring calls in flight up to ratio x ready agents."""
    return max(0, math.ceil(ratio * ready - 1e-9) - in_flight)


def budget_used(config: PacingConfig, state: PacingState, pending: float = 0.0) -> float:
    """The share of the window's abandon allowance that one more abandon would reach
    (on top of `pending`, the abandons expected from calls already in flight).

    Allowance = target x live answers over the window; while the window has
    less than `projection_s` of history, the live answers the agents can take
    over the rest of it (agents / mean talk+wrap) count too, so a campaign
    that has just started is not held to its first few answers.
    """
    live = state.live_answers
    missing = min(config.projection_s, config.window_s) - state.window_covered_s
    if missing > 0:
        live += missing * len(state.agents) / max(state.stats.cycle_s, 1.0)
    # The window slides: the answers in it later may be fewer than now
    # (Poisson noise), so the allowance is taken two standard deviations low.
    allowance = config.abandon_target * max(0.0, live - 2.0 * math.sqrt(live))
    if allowance <= 0:
        return math.inf
    return (state.abandons + pending + 1.0) / allowance


def _predictive(config: PacingConfig, state: PacingState, room: int, ready: int) -> Decision:
    agents = len(state.agents)
    in_flight = len(state.ringing) + state.waiting
    floor = min(room, _ratio_calls(1.0, ready, in_flight))
    if state.stats.outcomes < max(config.warmup_outcomes, agents):
        reason = f"warming up ({state.stats.outcomes} outcomes measured): progressive 1:1"
        return Decision(floor, (in_flight + floor) / agents, reason)
    curve = _risk_curve(state)
    # The abandons the calls already in flight are expected to cause count
    # against the budget now: they can no longer be called back.
    used = budget_used(config, state, curve.expected_short())
    if used >= 1.0:
        reason = f"abandons would reach {used:.0%} of the allowance: progressive 1:1"
        return Decision(floor, (in_flight + floor) / agents, reason, 0.0, used)
    share = max(config.risk_floor, config.risk_gain * (1.0 - used / config.backoff_at))
    risk = share * config.abandon_target
    blocked = state.waiting > 0 and ready == 0
    dial = max(floor, 0 if blocked else curve.calls_within(risk, room))
    reason = f"predictive: each call under {risk:.2%} risk of abandon"
    return Decision(dial, (in_flight + dial) / agents, reason, risk, used)


def _risk_curve(state: PacingState) -> _RiskCurve:
    """Forecast margins (agents free minus answers) at each horizon, before new calls."""
    free_mu, free_var = _supply(state, state.stats)
    ans_mu, ans_var = _demand(state, state.stats)
    return _RiskCurve(
        (free_mu - ans_mu).tolist(), (free_var + ans_var).tolist(),
        state.stats.new_call_live.tolist(),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _RiskCurve:
    """Per-horizon margin (free agents minus answers), its variance, and P(live) of a new call."""

    margin: list[float]
    variance: list[float]
    new_live: list[float]

    def calls_within(self, risk: float, room: int) -> int:
        """The number of new calls each carrying a risk of abandon (if answered) <= `risk`.

        For the n-th new call answered at horizon t_k: it costs an abandon when
        the answers by t_k (waiting, ringing, the n earlier new calls and itself)
        outnumber the agents free by t_k + 2 s. Supply and demand are sums of
        independent Bernoullis, their difference taken as normal with a
        continuity correction; the risk is averaged over the equally likely
        horizons. It grows with n: an exponential then binary search finds the
        first n over the limit.
        """
        if room <= 0 or self.risk(0) > risk:
            return 0
        ok, bad = 0, 1
        while bad < room and self.risk(bad) <= risk:
            ok, bad = bad, 2 * bad
        if bad >= room:
            if self.risk(room - 1) <= risk:
                return room
            bad = room - 1
        while bad - ok > 1:
            mid = (ok + bad) // 2
            ok, bad = (mid, bad) if self.risk(mid) <= risk else (ok, mid)
        return bad

    def expected_short(self) -> float:
        """Expected answers left without an agent at the worst horizon: E[(answers - free)+]."""
        worst = 0.0
        for m, v in zip(self.margin, self.variance, strict=True):
            sd = math.sqrt(v + 0.25)
            z = (m - 0.5) / sd
            pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
            worst = max(worst, sd * pdf - (m - 0.5) * 0.5 * math.erfc(z / math.sqrt(2.0)))
        return worst

    def risk(self, n: int) -> float:
        """P(abandon | answered) of a new call placed after n others (see above).

        One more answer at t_k adds to every later count too, so it costs an
        abandon if any later horizon runs short (the call connects and pushes
        a later one out): the risk at t_k is the worst from t_k on.
        """
        total = worst = 0.0
        for m, v, q in zip(
            reversed(self.margin), reversed(self.variance), reversed(self.new_live), strict=True
        ):
            sd = math.sqrt(v + n * q * (1.0 - q) + 0.25)
            worst = max(worst, 0.5 * math.erfc((m - n * q - 0.5) / (sd * math.sqrt(2.0))))
            total += worst
        return total / len(self.margin)


def _supply(state: PacingState, snap: PacingSnapshot) -> tuple[FloatArray, FloatArray]:
    """Mean and variance of the agents free by each horizon + 2 s."""
    ready = 0
    talk: list[float] = []
    wrap: list[float] = []
    for a in state.agents:
        if a.state is AgentState.READY:
            ready += 1
        elif a.state is AgentState.ON_CALL:
            talk.append(a.in_state_s)
        else:
            wrap.append(a.in_state_s)
    p = np.concatenate(
        (_rows(snap.talk_free, talk, SERVICE_BIN_S), _rows(snap.wrap_free, wrap, SERVICE_BIN_S))
    )
    return ready + p.sum(axis=0), p.sum(axis=0) - (p * p).sum(axis=0)


def _demand(state: PacingState, snap: PacingSnapshot) -> tuple[FloatArray, FloatArray]:
    """Mean and variance of the people answering by each horizon (waiting ones included)."""
    p = _rows(snap.ring_live, state.ringing, RING_BIN_S)
    return state.waiting + p.sum(axis=0), p.sum(axis=0) - (p * p).sum(axis=0)


def _rows(table: FloatArray, ages: list[float] | tuple[float, ...], bin_s: float) -> FloatArray:
    """The table's rows for each age (ages past the table use its last row)."""
    if not ages:
        return np.zeros((0, table.shape[1]))
    idx = np.minimum((np.asarray(ages) * (1.0 / bin_s)).astype(np.intp), len(table) - 1)
    return np.asarray(table.take(idx, axis=0), dtype=np.float64)
