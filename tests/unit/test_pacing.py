"""The pacing core: decide() on hand-built states, the estimator, the abandon window."""

from __future__ import annotations

import random

import pytest

from engine.voice.pacing import (
    AgentSnapshot,
    AgentState,
    DialMode,
    PacingConfig,
    PacingState,
    budget_used,
    decide,
)
from engine.voice.pacing_stats import AbandonWindow, PacingPriors, PacingStats

READY, ON_CALL, WRAP_UP = AgentState.READY, AgentState.ON_CALL, AgentState.WRAP_UP
PREDICTIVE = PacingConfig(DialMode.PREDICTIVE, window_s=1800.0)


def trained_stats(p_live: float = 0.3, talk: float = 60.0, wrap: float = 30.0) -> PacingStats:
    """An estimator fed with a known campaign: ring ~10 s, wrap 30 s +- 3 s."""
    rng = random.Random(7)
    stats = PacingStats(ring_timeout_s=25.0)
    for _ in range(3000):
        human = rng.random() < p_live
        stats.on_outcome(0.0, human, rng.uniform(5.0, 15.0) if human else None)
    for _ in range(500):
        stats.on_talk_end(rng.expovariate(1.0 / talk))
        stats.on_wrap_end(rng.gauss(wrap, 3.0))
    return stats


STATS = trained_stats().snapshot(0.0)


def state(
    agents: list[tuple[AgentState, float]],
    ringing: tuple[float, ...] = (),
    waiting: int = 0,
    abandons: float = 0.0,
    live: float = 1000.0,
) -> PacingState:
    return PacingState(
        agents=tuple(AgentSnapshot(s, t) for s, t in agents),
        ringing=ringing,
        waiting=waiting,
        stats=STATS,
        abandons=abandons,
        live_answers=live,
    )


def test_no_agents_dials_nothing_in_every_mode() -> None:
    for mode in DialMode:
        decision = decide(PacingConfig(mode, ratio=2.0), state([]), 0.0)
        assert decision.dial == 0
        assert "no agents" in decision.reason


def test_progressive_and_power_fill_up_to_ratio_times_ready() -> None:
    agents = [(READY, 3.0)] * 4 + [(ON_CALL, 10.0)] * 6
    progressive = decide(PacingConfig(DialMode.PROGRESSIVE), state(agents, (1.0,)), 0.0)
    assert progressive.dial == 3  # 4 ready x 1.0 - 1 ringing
    power = decide(PacingConfig(DialMode.POWER, ratio=2.5), state(agents, (1.0, 2.0)), 0.0)
    assert power.dial == 8  # 4 x 2.5 - 2 ringing
    assert power.level == pytest.approx(10 / 10)
    waiting = decide(PacingConfig(DialMode.POWER, ratio=2.5), state(agents, (), waiting=3), 0.0)
    assert waiting.dial == 7


def test_max_ratio_caps_calls_in_flight() -> None:
    agents = [(READY, 0.0)] * 4
    power = decide(PacingConfig(DialMode.POWER, ratio=9.0, max_ratio=3.0), state(agents), 0.0)
    assert power.dial == 12
    uncapped = decide(PREDICTIVE, state(agents), 0.0)
    assert uncapped.dial > 5
    pred = decide(PacingConfig(DialMode.PREDICTIVE, max_ratio=1.5), state(agents, (0.0,) * 5), 0.0)
    assert pred.dial == 1  # 1.5 x 4 agents - 5 ringing
    capped = decide(PacingConfig(DialMode.PREDICTIVE, max_ratio=1.25), state(agents), 0.0)
    assert capped.dial == 5
    assert capped.level == pytest.approx(1.25)


def test_all_agents_in_wrap_up() -> None:
    early = state([(WRAP_UP, 1.0)] * 10)
    late = state([(WRAP_UP, 27.0)] * 10)
    assert decide(PacingConfig(DialMode.PROGRESSIVE), late, 0.0).dial == 0
    soon = decide(PREDICTIVE, late, 0.0).dial
    later = decide(PREDICTIVE, early, 0.0).dial
    # Agents about to finish wrap-up (30 s +- 3 s) are dialled for ahead of
    # time; agents who just started are not (a call answers within ~15 s).
    assert soon >= 10
    assert later <= 2
    assert soon > later


def test_burst_of_answers_waiting_stops_dialling() -> None:
    busy = [(ON_CALL, 20.0)] * 8 + [(WRAP_UP, 28.0)] * 2
    calm = decide(PREDICTIVE, state(busy), 0.0).dial
    burst = decide(PREDICTIVE, state(busy, waiting=3), 0.0)
    assert calm > 0
    assert burst.dial == 0


def test_more_ringing_calls_mean_fewer_new_ones() -> None:
    agents = [(READY, 0.0)] * 10
    none = decide(PREDICTIVE, state(agents), 0.0).dial
    some = decide(PREDICTIVE, state(agents, (5.0,) * 15), 0.0).dial
    assert none > 10  # predictive dials ahead of a 30% answer rate
    assert some < none


def test_ledger_at_or_over_the_limit_backs_off_to_progressive() -> None:
    agents = [(READY, 0.0)] * 6 + [(WRAP_UP, 28.0)] * 4
    for abandons in (29.0, 30.0, 45.0):  # 1000 live answers, 3% target: 30 allowed
        decision = decide(PREDICTIVE, state(agents, (1.0,), abandons=abandons), 0.0)
        assert decision.dial == 5  # 6 ready - 1 ringing: progressive 1:1
        assert "progressive 1:1" in decision.reason
    fresh = decide(PREDICTIVE, state(agents, (1.0,), abandons=0.0), 0.0)
    assert fresh.dial > 5


def test_budget_is_spent_faster_while_under_target() -> None:
    agents = [(READY, 0.0)] * 5 + [(ON_CALL, 30.0)] * 15 + [(WRAP_UP, 25.0)] * 5
    dials = [decide(PREDICTIVE, state(agents, abandons=a), 0.0).dial for a in (0, 10, 20, 28)]
    assert dials == sorted(dials, reverse=True)
    assert dials[0] > dials[-1]


def test_a_new_campaign_counts_the_answers_it_will_take() -> None:
    fresh = PacingState((AgentSnapshot(READY, 0.0),) * 10, (), 0, STATS, 0.0, 0.0, 0.0)
    # 10 agents x 1800 s / 90 s per call: ~200 answers expected; the allowance
    # is taken two standard deviations low: 3% x (200 - 2 sqrt(200)) = 5.2.
    assert budget_used(PREDICTIVE, fresh) == pytest.approx(1 / 5.15, rel=0.1)
    full = PacingState((AgentSnapshot(READY, 0.0),) * 10, (), 0, STATS, 0.0, 0.0, 1800.0)
    assert budget_used(PREDICTIVE, full) == float("inf")


def test_estimator_uses_priors_then_converges() -> None:
    priors = PacingPriors(p_live=0.15, talk_mean_s=120.0, wrap_mean_s=20.0)
    stats = PacingStats(priors, ring_timeout_s=25.0)
    before = stats.snapshot(0.0)
    assert before.p_live == pytest.approx(0.15)
    assert before.talk_mean_s == pytest.approx(120.0, rel=0.02)
    rng = random.Random(3)
    for i in range(4000):
        human = rng.random() < 0.4
        stats.on_outcome(float(i), human, rng.uniform(4.0, 12.0) if human else None)
    for _ in range(500):
        stats.on_talk_end(rng.expovariate(1.0 / 45.0))
        stats.on_wrap_end(rng.uniform(10.0, 20.0))
    after = stats.snapshot(5000.0)
    assert after.p_live == pytest.approx(0.4, abs=0.03)
    assert after.talk_mean_s == pytest.approx(45.0, rel=0.15)
    assert after.wrap_mean_s == pytest.approx(15.0, rel=0.1)
    assert 4.0 <= after.horizons_s[0] < after.horizons_s[-1] <= 12.5
    # A call ringing past every answer seen (12 s) will not be answered.
    assert after.ring_live[int(13.0 / 0.5)].max() < 0.01


def test_residual_life_conditions_on_time_in_state() -> None:
    snap = trained_stats(wrap=30.0).snapshot(0.0)
    # Wrap-up 30 s +- 3 s: just started, unlikely to end within ~20 s; near 30 s, likely.
    assert snap.wrap_free[1].max() < 0.05
    assert snap.wrap_free[28].min() > 0.5
    # Exponential talk is memoryless: the elapsed time changes little.
    assert snap.talk_free[10] == pytest.approx(snap.talk_free[200], abs=0.02)


def test_snapshot_is_cached_until_stale() -> None:
    stats = PacingStats(refresh_s=30.0)
    first = stats.snapshot(0.0)
    stats.on_outcome(1.0, True, 8.0)
    assert stats.snapshot(5.0) is first
    assert stats.snapshot(31.0) is not first


def test_abandon_window_counts_the_trailing_window() -> None:
    window = AbandonWindow(window_s=100.0)
    for t in range(0, 200, 2):
        window.on_live_answer(float(t), abandoned=t % 20 == 0)
    counts = window.counts(199.0)
    assert counts.live_answers == 50  # answers at 100..198
    assert counts.abandons == 5  # at 100, 120, ..., 180
    assert counts.rate == pytest.approx(0.1)
    assert counts.covered_s == 100.0


def test_abandon_window_adds_the_ofcom_false_positive_estimate() -> None:
    window = AbandonWindow(window_s=86400.0, amd_fp_rate=0.02)
    for t in range(100):
        window.on_live_answer(float(t), abandoned=t < 2)
    for t in range(500):
        window.on_machine_verdict(float(t))
    counts = window.counts(600.0)
    assert counts.estimated_false_positives == pytest.approx(10.0)
    assert counts.abandons == pytest.approx(12.0)
    assert counts.live_answers == pytest.approx(110.0)
    assert counts.covered_s == 600.0
