"""A discrete-event model of an outbound campaign, to measure pacing algorithms.

The model: `agents` agents logged in for `hours`; each dial is answered by a
person (probability `answer_rate`), by a machine (`machines`), or not at all
(it rings until `ring_timeout_s`). AMD takes a fraction `amd_fp` of people for
machines and hangs up on them (Ofcom counts an estimate of those as
abandoned). A person answered when no agent is free within `connect_s` (2 s,
47 CFR 64.1200(a)(7)(i)) is an abandon: the safe-harbour message plays and the
call ends. Connected calls last a talk time, then the agent wraps up.

Common random numbers: every dial's outcome and durations are drawn up front
from the seed (`DialRecords`); the k-th call any algorithm places gets the
k-th record, so all algorithms face the same sequence of people, machines and
durations and differ only by when they dial.

The engine is event-driven (a heap of timestamped events, no wall clock, no
per-millisecond stepping). Policies are asked how many calls to place after
every event and on a pacing tick; `PacerPolicy` runs the real
`engine.voice.pacing.decide`. Baselines and the oracle bound are in
`engine.voice.simulate_baselines`.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from engine.voice.pacing import (
    AgentSnapshot,
    AgentState,
    DialMode,
    PacingConfig,
    PacingState,
    decide,
)
from engine.voice.pacing_stats import AbandonWindow, PacingPriors, PacingStats

READY, ON_CALL, WRAP_UP = AgentState.READY, AgentState.ON_CALL, AgentState.WRAP_UP


class Distribution(Protocol):
    """A duration distribution, in seconds."""

    @property
    def mean(self) -> float: ...

    def sample(self, rng: random.Random) -> float: ...


@dataclass(frozen=True, slots=True)
class Exponential:
    """Exponential with the given mean (memoryless: time spent says nothing)."""

    mean: float

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean)

    def __str__(self) -> str:
        return f"exp({self.mean:g}s)"


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Lognormal with the given mean and standard deviation (the `mean±sd` form)."""

    mean: float
    sd: float

    def sample(self, rng: random.Random) -> float:
        sigma2 = math.log(1.0 + (self.sd / self.mean) ** 2)
        return rng.lognormvariate(math.log(self.mean) - sigma2 / 2.0, math.sqrt(sigma2))

    def __str__(self) -> str:
        return f"{self.mean:g}s±{self.sd:g}s"


@dataclass(frozen=True, slots=True)
class Empirical:
    """Resampled from observed durations (for example a campaign's attempts CSV)."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    def sample(self, rng: random.Random) -> float:
        return self.values[int(rng.random() * len(self.values))]

    def __str__(self) -> str:
        return f"empirical(n={len(self.values)}, mean {self.mean:.1f}s)"


class Outcome(enum.Enum):
    HUMAN = "human"
    MACHINE = "machine"
    NO_ANSWER = "no_answer"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One campaign to simulate; `window_s` is the window the pacer's ledger counts over."""

    agents: int = 20
    answer_rate: float = 0.15
    machines: float = 0.3
    amd_fp: float = 0.01
    talk: Distribution = Exponential(180.0)
    wrap: Distribution = Exponential(30.0)
    ring: Distribution = LogNormal(10.0, 6.0)
    fail: Distribution | None = None
    ring_timeout_s: float = 25.0
    hours: float = 8.0
    seed: int = 1
    machines_to_agents: bool = False
    ofcom: bool = False
    connect_s: float = 2.0
    window_s: float = 1800.0
    tick_s: float = 0.2

    @property
    def horizon_s(self) -> float:
        return self.hours * 3600.0


@dataclass(frozen=True, slots=True)
class DialRecord:
    """What one dial will do: its outcome, ring time (to answer or give-up), talk and wrap."""

    outcome: Outcome
    ring_s: float
    talk_s: float
    wrap_s: float
    amd_fp: bool

    def reaches_agent(self, machines_to_agents: bool) -> bool:
        if self.outcome is Outcome.HUMAN:
            return not self.amd_fp
        return machines_to_agents and self.outcome is Outcome.MACHINE


class DialRecords:
    """The seeded sequence of dial records, drawn once and shared by every algorithm."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._rng = random.Random(scenario.seed)
        self._records: list[DialRecord] = []

    def __getitem__(self, index: int) -> DialRecord:
        while len(self._records) <= index:
            self._records.append(self._draw())
        return self._records[index]

    def _draw(self) -> DialRecord:
        s, rng = self.scenario, self._rng
        u, ring, talk, wrap, fp = rng.random(), s.ring.sample(rng), 0.0, 0.0, rng.random()
        talk, wrap = s.talk.sample(rng), s.wrap.sample(rng)
        give_up = s.ring_timeout_s if s.fail is None else min(s.fail.sample(rng), s.ring_timeout_s)
        outcome = Outcome.NO_ANSWER
        if u < s.answer_rate:
            outcome = Outcome.HUMAN
        elif u < s.answer_rate + s.machines:
            outcome = Outcome.MACHINE
        if outcome is not Outcome.NO_ANSWER and ring > s.ring_timeout_s:
            outcome = Outcome.NO_ANSWER  # they would have answered, but we gave up first
        if outcome is Outcome.NO_ANSWER:
            ring = give_up
        human = outcome is Outcome.HUMAN
        return DialRecord(outcome, ring, talk, wrap, human and fp < s.amd_fp)


@dataclass(slots=True)
class RunResult:
    """What one algorithm did over the run (raw; `simulate_metrics` summarises)."""

    name: str
    agents: int
    horizon_s: float
    dials: int = 0
    live_times: list[float] = field(default_factory=list)
    abandon_times: list[float] = field(default_factory=list)
    busy: list[tuple[float, float]] = field(default_factory=list)
    idle_waits: list[float] = field(default_factory=list)
    machine_verdicts: int = 0
    amd_false_positives: int = 0
    machine_drops: int = 0
    level: list[tuple[float, float]] = field(default_factory=list)


class Policy(Protocol):
    """How many calls to place now, given the simulated campaign."""

    name: str
    needs_tick: bool

    def dials(self, sim: CampaignSim, now: float) -> int: ...


class PacerPolicy:
    """Runs `engine.voice.pacing.decide` on the simulated state, as the daemon would."""

    def __init__(self, name: str, config: PacingConfig) -> None:
        self.name = name
        self.config = config
        self.needs_tick = config.mode is DialMode.PREDICTIVE
        self.last_level = 0.0

    def dials(self, sim: CampaignSim, now: float) -> int:
        decision = decide(self.config, sim.pacing_state(now), now)
        self.last_level = decision.level
        return decision.dial


class CampaignSim:
    """The event engine for one algorithm over one scenario."""

    _RESOLVE, _GIVE_UP, _TALK_END, _WRAP_END, _TICK = range(5)

    def __init__(self, scenario: Scenario, records: DialRecords, policy: Policy) -> None:
        s = scenario
        self.scenario, self.records, self.policy = s, records, policy
        self.stats = PacingStats(_priors(), ring_timeout_s=s.ring_timeout_s)
        self.ledger = AbandonWindow(s.window_s, s.amd_fp if s.ofcom else 0.0)
        self.state = [READY] * s.agents
        self.since = [0.0] * s.agents
        self.ready: deque[int] = deque(range(s.agents))
        self.ringing: dict[int, float] = {}
        self.waiting: deque[int] = deque()
        self.waiting_set: set[int] = set()
        self.result = RunResult(policy.name, s.agents, s.horizon_s)
        self._busy_from = [0.0] * s.agents
        self._talk_of = [0.0] * s.agents
        self._wrap_of = [0.0] * s.agents
        self._events: list[tuple[float, int, int, int]] = []
        # A ticking policy (predictive) is asked on the tick and when an agent
        # turns ready; the others after every event that changes what they count.
        every = {self._RESOLVE, self._GIVE_UP, self._WRAP_END}
        self._pace_on = {self._TICK, self._WRAP_END} if policy.needs_tick else every
        self._seq = 0

    def pacing_state(self, now: float) -> PacingState:
        """What the daemon would hand `decide`: agents, ringing ages, waiting, stats, ledger."""
        agents = tuple(
            AgentSnapshot(st, now - t) for st, t in zip(self.state, self.since, strict=True)
        )
        counts = self.ledger.counts(now)
        return PacingState(
            agents=agents,
            ringing=tuple(now - t for t in self.ringing.values()),
            waiting=len(self.waiting),
            stats=self.stats.snapshot(now),
            abandons=counts.abandons,
            live_answers=counts.live_answers,
            window_covered_s=counts.covered_s,
        )

    def run(self) -> RunResult:
        """Run to the horizon; busy time is counted up to it."""
        end = self.scenario.horizon_s
        self._pace(0.0)
        if self.policy.needs_tick:
            self._push(self.scenario.tick_s, self._TICK, 0)
        while self._events and self._events[0][0] < end:
            now, _, kind, arg = heapq.heappop(self._events)
            self._handle(now, kind, arg)
            if kind == self._TICK:
                self._push(now + self.scenario.tick_s, self._TICK, 0)
            if kind in self._pace_on:
                self._pace(now)
        for agent, st in enumerate(self.state):
            if st is not READY:
                self.result.busy.append((self._busy_from[agent], end))
        return self.result

    def _push(self, at: float, kind: int, arg: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, kind, arg))

    def _handle(self, now: float, kind: int, arg: int) -> None:
        if kind == self._RESOLVE:
            self._resolve(now, arg)
        elif kind == self._GIVE_UP:
            self._give_up(now, arg)
        elif kind == self._TALK_END:
            self._talk_end(now, arg)
        elif kind == self._WRAP_END:
            self._wrap_end(now, arg)

    def _pace(self, now: float) -> None:
        n = self.policy.dials(self, now)
        if isinstance(self.policy, PacerPolicy):
            level = self.policy.last_level
        else:
            level = (len(self.ringing) + len(self.waiting) + n) / self.scenario.agents
        self.result.level.append((now, level))
        for _ in range(n):
            index = self.result.dials
            self.result.dials += 1
            self.ringing[index] = now
            self.stats.on_dial(now)
            self._push(now + self.records[index].ring_s, self._RESOLVE, index)

    def _resolve(self, now: float, index: int) -> None:
        dial_at = self.ringing.pop(index)
        rec = self.records[index]
        reaches = rec.reaches_agent(self.scenario.machines_to_agents)
        self.stats.on_outcome(now, reaches and rec.outcome is Outcome.HUMAN, now - dial_at)
        if reaches:
            if self.ready:
                self._connect(now, index, self.ready.popleft())
            else:
                self.waiting.append(index)
                self.waiting_set.add(index)
                self._push(now + self.scenario.connect_s, self._GIVE_UP, index)
        elif rec.outcome is not Outcome.NO_ANSWER:
            self.result.machine_verdicts += 1
            self.result.amd_false_positives += rec.amd_fp
            self.ledger.on_machine_verdict(now)

    def _connect(self, now: float, index: int, agent: int) -> None:
        rec = self.records[index]
        self.waiting_set.discard(index)
        self.result.idle_waits.append(now - self.since[agent])
        self.state[agent], self.since[agent] = ON_CALL, now
        self._busy_from[agent] = now
        self._push(now + rec.talk_s, self._TALK_END, agent)
        self._talk_of[agent] = rec.talk_s
        self._wrap_of[agent] = rec.wrap_s
        if rec.outcome is Outcome.HUMAN:
            self.result.live_times.append(now)
            self.ledger.on_live_answer(now, False)

    def _give_up(self, now: float, index: int) -> None:
        if index not in self.waiting_set:
            return
        self.waiting_set.discard(index)
        self.waiting.remove(index)
        if self.records[index].outcome is Outcome.HUMAN:
            self.result.live_times.append(now)
            self.result.abandon_times.append(now)
            self.ledger.on_live_answer(now, True)
        else:
            self.result.machine_drops += 1

    def _talk_end(self, now: float, agent: int) -> None:
        self.stats.on_talk_end(self._talk_of[agent])
        self.state[agent], self.since[agent] = WRAP_UP, now
        self._push(now + self._wrap_of[agent], self._WRAP_END, agent)

    def _wrap_end(self, now: float, agent: int) -> None:
        self.stats.on_wrap_end(self._wrap_of[agent])
        self.result.busy.append((self._busy_from[agent], now))
        self.state[agent], self.since[agent] = READY, now
        if self.waiting:
            self._connect(now, self.waiting.popleft(), agent)
        else:
            self.ready.append(agent)


def _priors() -> PacingPriors:
    """Deliberately generic priors: the pacer must learn each scenario from its calls."""
    return PacingPriors()
