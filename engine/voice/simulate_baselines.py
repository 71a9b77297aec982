"""Baselines for the pacing simulator: a VICIdial-style adaptive dial level, and the oracle bound.

Progressive 1:1 and fixed-ratio power dialing run through `pacing.decide`
itself (`PacerPolicy`); the two here are not `decide` modes.
"""

from __future__ import annotations

import heapq
import math

from engine.voice.simulate import CampaignSim, DialRecords, Outcome, RunResult, Scenario


class AdaptTaperedPolicy:
    """VICIdial's ADAPT_TAPERED dial method, reimplemented from its description.

    Sources (descriptions only, no code): VICIdial's docs/PREDICTIVE.txt
    (2006-08-29, "PREDICTIVE Summary and Overview"): the dial level is the
    number of lines dialled per active agent; every 15 s the average
    difference between agents waiting and calls waiting over those 15 s,
    less the "dial level difference target", adjusts the level (scaled by
    the "adapt intensity modifier"); the drop rate is measured out of the
    calls answered that day; ADAPT_TAPERED "allows for running over the
    dropped percentage in the first half of the shift ... and gets more
    strict as the shift goes on"; the level never drops below 1.0 and never
    exceeds the "maximum adapt dial level". Convoso's help page on the same
    methods: tapered allows a higher drop rate in the first half of the shift
    and throttles down towards the end to get back to the limit. With
    "available only tally" (recommended for predictive by VICIdial tuning
    guides) lines = level x agents waiting for a call.

    Our reading: allowed drop rate = limit x (2 - 2t/T) over the first half
    of the shift (T), the limit over the second half; each 15 s the level
    moves by level x (agents waiting - calls waiting - target) / agents x
    `intensity`; once a minute, when the day's drop rate is over the allowed
    one, the level is cut by the relative excess.
    """

    needs_tick = True

    def __init__(
        self,
        limit: float = 0.03,
        max_level: float = 5.0,
        intensity: float = 1.0,
        diff_target: float = 0.0,
        name: str = "vicidial_adapt_tapered",
    ) -> None:
        self.name = name
        self.limit, self.max_level = limit, max_level
        self.intensity, self.diff_target = intensity, diff_target
        self.level = 1.0
        self._samples: list[float] = []
        self._next_sample = 0.0
        self._next_adjust = 15.0
        self._next_drop_check = 60.0

    def dials(self, sim: CampaignSim, now: float) -> int:
        self._adapt(sim, now)
        ready = len(sim.ready)
        in_flight = len(sim.ringing) + len(sim.waiting)
        cap = math.floor(self.max_level * sim.scenario.agents) - in_flight
        return max(0, min(cap, math.ceil(self.level * ready - 1e-9) - in_flight))

    def _adapt(self, sim: CampaignSim, now: float) -> None:
        if now >= self._next_sample:  # once a second: agents waiting - calls waiting
            self._samples.append(len(sim.ready) - len(sim.waiting))
            self._next_sample = now + 1.0
        if now >= self._next_adjust and self._samples:
            diff = sum(self._samples) / len(self._samples) - self.diff_target
            step = self.level * diff / sim.scenario.agents * self.intensity
            self.level = min(self.max_level, max(1.0, self.level + step))
            self._samples.clear()
            self._next_adjust = now + 15.0
        if now >= self._next_drop_check:
            self._check_drops(sim, now)
            self._next_drop_check = now + 60.0

    def _check_drops(self, sim: CampaignSim, now: float) -> None:
        live = len(sim.result.live_times)
        if live < 20:  # too few answers today to judge a rate
            return
        drop = len(sim.result.abandon_times) / live
        shift = sim.scenario.horizon_s
        allowed = self.limit * max(1.0, 2.0 - 2.0 * now / shift)
        if drop > allowed:
            self.level = max(1.0, self.level * (1.0 - (drop - allowed) / drop))


def oracle_run(scenario: Scenario, records: DialRecords) -> RunResult:
    """The bound: an oracle that knows every call's outcome and durations in advance.

    It takes the people in the record sequence in order (everything else it
    dials costs no agent time) and places each one's call exactly its ring
    time before an agent frees, so the person answers as the agent is ready:
    no agent waits after the first answers and nobody is abandoned, so it
    needs none of the abandon budget. No causal algorithm facing the same
    records can keep agents busier, so its occupancy is the ceiling (it
    ignores the line cap, which only lowers it).
    """
    s = scenario
    result = RunResult("oracle", s.agents, s.horizon_s)
    free: list[tuple[float, int]] = [(0.0, agent) for agent in range(s.agents)]
    ready_since = [0.0] * s.agents
    index = 0
    while True:
        rec = records[index]
        index += 1
        if rec.outcome is Outcome.NO_ANSWER:
            continue
        if not rec.reaches_agent(s.machines_to_agents):
            result.machine_verdicts += 1
            result.amd_false_positives += rec.amd_fp
            continue
        at, agent = heapq.heappop(free)
        answer = max(at, rec.ring_s)
        if answer >= s.horizon_s:
            break
        result.idle_waits.append(answer - ready_since[agent])
        if rec.outcome is Outcome.HUMAN:
            result.live_times.append(answer)
        done = answer + rec.talk_s + rec.wrap_s
        result.busy.append((answer, min(done, s.horizon_s)))
        ready_since[agent] = done
        heapq.heappush(free, (done, agent))
    result.dials = index
    result.live_times.sort()
    return result
