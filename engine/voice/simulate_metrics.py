"""Run every algorithm on one scenario and summarise what each did.

Abandon rate = abandons / calls answered by a person (47 CFR 64.1200(a)(7)),
reported overall, per 30-minute period, and for the worst sliding 30-minute
window (every window [s, s + 30 min] inside the run); the Ofcom rate adds the
estimate of AMD false positives (machine verdicts x the configured rate) to
both. Occupancy = agent time on calls and wrap-up / logged-in time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from engine.voice.pacing import DialMode, PacingConfig
from engine.voice.simulate import CampaignSim, DialRecords, PacerPolicy, RunResult, Scenario
from engine.voice.simulate_baselines import AdaptTaperedPolicy, oracle_run

WINDOW_S = 1800.0
ALGORITHMS = ("predictive", "progressive", "power", "vicidial_adapt_tapered", "oracle")


def power_ratio(scenario: Scenario, config: PacingConfig) -> float:
    """The fixed power ratio: 1 / P(a dial reaches an agent), capped by max_ratio."""
    reach = scenario.answer_rate * (1.0 - scenario.amd_fp)
    if scenario.machines_to_agents:
        reach += scenario.machines
    return min(config.max_ratio, 1.0 / max(reach, 1e-6))


def run_algorithm(
    name: str, scenario: Scenario, records: DialRecords, config: PacingConfig, power: float
) -> RunResult:
    """One algorithm over the scenario's shared records."""
    if name == "oracle":
        return oracle_run(scenario, records)
    if name == "vicidial_adapt_tapered":
        policy = AdaptTaperedPolicy(config.abandon_target, config.max_ratio)
        return CampaignSim(scenario, records, policy).run()
    modes = {
        "predictive": replace(config, window_s=scenario.window_s),
        "progressive": PacingConfig(DialMode.PROGRESSIVE, max_ratio=config.max_ratio),
        "power": PacingConfig(DialMode.POWER, ratio=power, max_ratio=config.max_ratio),
    }
    if name not in modes:
        raise ValueError(f"unknown algorithm {name!r} (known: {', '.join(ALGORITHMS)})")
    return CampaignSim(scenario, records, PacerPolicy(name, modes[name])).run()


def compare(
    scenario: Scenario, config: PacingConfig, algorithms: Sequence[str] = ALGORITHMS
) -> dict[str, Any]:
    """Every algorithm on the same records; the summary of each, and ours against the bound."""
    records = DialRecords(scenario)
    power = power_ratio(scenario, config)
    runs = {name: run_algorithm(name, scenario, records, config, power) for name in algorithms}
    out: dict[str, Any] = {
        "algorithms": {name: summarize(run, scenario) for name, run in runs.items()},
        "power_ratio": round(power, 3),
        "window_s": scenario.window_s,
    }
    algos = out["algorithms"]
    if "predictive" in algos and "oracle" in algos and algos["oracle"]["occupancy"] > 0:
        out["ours_vs_oracle_occupancy"] = round(
            algos["predictive"]["occupancy"] / algos["oracle"]["occupancy"], 4
        )
    out["series"] = {name: series(run) for name, run in runs.items()}
    return out


def summarize(run: RunResult, scenario: Scenario) -> dict[str, Any]:
    """The figures for one run (see the module doc)."""
    live = np.asarray(run.live_times)
    abandons = np.asarray(run.abandon_times)
    waits = np.asarray(run.idle_waits)
    fp = run.machine_verdicts * scenario.amd_fp
    worst, worst_at = worst_window(live, abandons, run.horizon_s)
    hours = run.horizon_s / 3600.0
    return {
        "algorithm": run.name,
        "dials": run.dials,
        "live_answers": len(live),
        "abandons": len(abandons),
        "abandon_rate": _ratio(len(abandons), len(live)),
        "abandon_rate_per_30min": per_period(live, abandons, run.horizon_s),
        "worst_30min_abandon_rate": worst,
        "worst_30min_window_start_s": worst_at,
        "ofcom_abandon_rate": _ratio(len(abandons) + fp, len(live) + fp),
        "occupancy": round(
            busy_time(run.busy, 0.0, run.horizon_s) / (run.agents * run.horizon_s), 5
        ),
        "idle_wait_median_s": round(float(np.median(waits)), 2) if len(waits) else None,
        "idle_wait_p95_s": round(float(np.percentile(waits, 95)), 2) if len(waits) else None,
        "calls_per_agent_hour": round(len(waits) / (run.agents * hours), 3),
        "connected_calls": len(waits),
        "machine_verdicts": run.machine_verdicts,
        "amd_false_positives": run.amd_false_positives,
        "machine_drops": run.machine_drops,
    }


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 5) if den else None


def _count(times: np.ndarray[Any, Any], start: Any, end: Any) -> Any:
    """Events with start <= t < end (vectorised over start and end)."""
    return np.searchsorted(times, end, "left") - np.searchsorted(times, start, "left")


def per_period(
    live: np.ndarray[Any, Any], abandons: np.ndarray[Any, Any], horizon_s: float
) -> list[dict[str, Any]]:
    """Abandons, live answers and their rate in each 30-minute period."""
    edges = np.arange(0.0, horizon_s + 1e-9, WINDOW_S)
    if edges[-1] < horizon_s:
        edges = np.append(edges, horizon_s)
    lives = _count(live, edges[:-1], edges[1:])
    drops = _count(abandons, edges[:-1], edges[1:])
    return [
        {"start_s": float(s), "live_answers": int(n), "abandons": int(a), "rate": _ratio(a, n)}
        for s, n, a in zip(edges[:-1], lives, drops, strict=True)
    ]


def worst_window(
    live: np.ndarray[Any, Any], abandons: np.ndarray[Any, Any], horizon_s: float
) -> tuple[float | None, float | None]:
    """The highest abandon rate over any 30-minute window inside the run, and its start.

    The rate only changes where a window edge crosses an event, so the
    windows starting at, or ending at, each live answer cover every case.
    """
    if not len(live):
        return None, None
    span = min(WINDOW_S, horizon_s)
    starts = np.clip(np.concatenate((live, live - span + 1e-9, [0.0])), 0.0, horizon_s - span)
    lives = _count(live, starts, starts + span)
    drops = _count(abandons, starts, starts + span)
    rates = np.where(lives > 0, drops / np.maximum(lives, 1), 0.0)
    best = int(np.argmax(rates))
    return round(float(rates[best]), 5), round(float(starts[best]), 1)


def busy_time(busy: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Total agent time on calls and wrap-up inside [start, end)."""
    return float(sum(max(0.0, min(b, end) - max(a, start)) for a, b in busy))


def series(run: RunResult, step_s: float = 60.0) -> dict[str, list[float | None]]:
    """Per-minute dial level, occupancy, and trailing 30-minute abandon rate (for plots)."""
    edges = np.arange(0.0, run.horizon_s + step_s, step_s)
    t_level = np.asarray([t for t, _ in run.level])
    v_level = np.asarray([v for _, v in run.level])
    bins = np.minimum((t_level / step_s).astype(int), len(edges) - 2) if len(t_level) else t_level
    sums = np.bincount(bins.astype(int), v_level, len(edges) - 1) if len(t_level) else None
    counts = np.bincount(bins.astype(int), None, len(edges) - 1) if len(t_level) else None
    level: list[float | None] = [None] * (len(edges) - 1)
    if sums is not None and counts is not None:
        level = [round(float(s / c), 4) if c else None for s, c in zip(sums, counts, strict=True)]
    occupancy = _busy_fraction(run, edges)
    live, drops = np.asarray(run.live_times), np.asarray(run.abandon_times)
    ends = edges[1:]
    lives = _count(live, ends - WINDOW_S, ends)
    aband = _count(drops, ends - WINDOW_S, ends)
    rate = [round(float(a / n), 5) if n else None for a, n in zip(aband, lives, strict=True)]
    return {"t_min": [float(e / 60.0) for e in ends], "level": level,
            "occupancy": occupancy, "abandon_rate_30min": rate}  # fmt: skip


def _busy_fraction(run: RunResult, edges: np.ndarray[Any, Any]) -> list[float | None]:
    """Busy share of the agents in each interval: B(t) = sum of (t - start)+ - (t - end)+."""
    if not run.busy:
        return [0.0] * (len(edges) - 1)
    starts = np.sort(np.asarray([a for a, _ in run.busy]))
    ends = np.sort(np.asarray([b for _, b in run.busy]))
    cum_s, cum_e = (
        np.concatenate(([0.0], np.cumsum(starts))),
        np.concatenate(([0.0], np.cumsum(ends))),
    )
    ns, ne = np.searchsorted(starts, edges), np.searchsorted(ends, edges)
    total = (ns * edges - cum_s[ns]) - (ne * edges - cum_e[ne])
    width = np.diff(edges) * run.agents
    return [round(float(x), 4) for x in np.diff(total) / width]


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
