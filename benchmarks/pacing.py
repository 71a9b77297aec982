"""Pacing on the standard scenarios: ours against progressive, power, VICIdial-style and the bound.

    .venv/bin/python benchmarks/pacing.py [--jobs 2] [--hours 8] [--seed 1] [--json OUT]

18 scenarios: 5, 20 and 100 agents; 10%, 30% and 60% of dials answered by a
person (30% by machines, hung up on after AMD; 1% of people taken for
machines); talk exponential with mean 60 s or 300 s; wrap-up 30 s ± 10 s
(lognormal); dial to answer 10 s ± 6 s; 25 s ring timeout; 8 hours. Every
algorithm sees the same seeded calls. The pacer's ledger counts over 30 min
(stricter than the 30 days of 47 CFR 64.1200(a)(7)), and the abandon columns
are the overall rate and the worst sliding 30-minute window.

Columns: occupancy (talk + wrap / logged-in time) and abandon rate of each
algorithm; ours/oracle is our occupancy over the oracle's; `ok` means ours
held 3% on every 30-minute window; the last column marks each baseline
(see `verdict`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from engine.voice.pacing import DialMode, PacingConfig
from engine.voice.simulate import Exponential, LogNormal, Scenario
from engine.voice.simulate_metrics import compare

AGENTS = (5, 20, 100)
ANSWER = (0.1, 0.3, 0.6)
TALK = (60.0, 300.0)
TARGET = 0.03
BASELINES = ("progressive", "power", "vicidial_adapt_tapered")
SHORT = {"progressive": "prog", "power": "power", "vicidial_adapt_tapered": "vici"}


def scenario(agents: int, answer: float, talk: float, hours: float, seed: int) -> Scenario:
    return Scenario(
        agents=agents, answer_rate=answer, machines=0.3, amd_fp=0.01,
        talk=Exponential(talk), wrap=LogNormal(30.0, 10.0), ring=LogNormal(10.0, 6.0),
        ring_timeout_s=25.0, hours=hours, seed=seed,
    )  # fmt: skip


def run_one(job: tuple[int, float, float, float, int]) -> dict[str, Any]:
    agents, answer, talk, hours, seed = job
    started = time.perf_counter()
    result = compare(scenario(agents, answer, talk, hours, seed), PacingConfig(DialMode.PREDICTIVE))
    result.pop("series")
    result["key"] = {"agents": agents, "answer_rate": answer, "talk_s": talk}
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def verdict(result: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether ours held the target on every window, and a mark per baseline.

    `+`: ours has more occupancy at no more abandon (dominates); `c`: the
    baseline held 3% and ours has more occupancy (at a higher abandon rate,
    still within the limit); `x`: the baseline held 3% and has more
    occupancy than ours (a loss); `o`: the baseline broke 3% on some window
    and has more occupancy (it buys it with abandons the rule forbids).
    """
    algos = result["algorithms"]
    ours = algos["predictive"]
    ok = (ours["worst_30min_abandon_rate"] or 0.0) <= TARGET
    marks = []
    for name in BASELINES:
        other = algos[name]
        compliant = (other["worst_30min_abandon_rate"] or 0.0) <= TARGET
        more = ours["occupancy"] > other["occupancy"]
        if more and (ours["abandon_rate"] or 0.0) <= (other["abandon_rate"] or 0.0):
            mark = "+"
        elif compliant:
            mark = "c" if more else "x"
        else:
            mark = "+" if more else "o"
        marks.append(f"{SHORT[name]}:{mark}")
    return ok, marks


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def format_rows(results: list[dict[str, Any]]) -> str:
    head = (
        "agents answer talk | ours occ  ab%  worst% /oracle ok | prog occ | power occ   ab% worst%"
        " | vici occ   ab% worst% | vs baselines"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        a, k = r["algorithms"], r["key"]
        ok, marks = verdict(r)
        ours, prog, power, vici = (a[n] for n in ("predictive", *BASELINES))
        lines.append(
            f"{k['agents']:>6} {k['answer_rate']:>6.0%} {k['talk_s']:>4.0f} | "
            f"{_pct(ours['occupancy']):>8} {_pct(ours['abandon_rate']):>4} "
            f"{_pct(ours['worst_30min_abandon_rate']):>6} {r['ours_vs_oracle_occupancy']:>7.3f} "
            f"{'yes' if ok else 'NO':>2} | {_pct(prog['occupancy']):>8} | "
            f"{_pct(power['occupancy']):>9} {_pct(power['abandon_rate']):>5} "
            f"{_pct(power['worst_30min_abandon_rate']):>6} | {_pct(vici['occupancy']):>8} "
            f"{_pct(vici['abandon_rate']):>5} {_pct(vici['worst_30min_abandon_rate']):>6} | "
            f"{' '.join(marks)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--hours", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--from-json", type=Path, help="reprint the table of an earlier --json")
    args = p.parse_args(argv)
    if args.from_json:
        print(format_rows(json.loads(args.from_json.read_text())))
        return 0
    jobs = [(n, a, t, args.hours, args.seed) for n, a, t in itertools.product(AGENTS, ANSWER, TALK)]
    jobs.sort(key=lambda j: -j[0] / j[1])  # the slowest (many agents, few answers) first
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_one, jobs))
    order = {j[:3]: i for i, j in enumerate(itertools.product(AGENTS, ANSWER, TALK))}
    results.sort(
        key=lambda r: order[(r["key"]["agents"], r["key"]["answer_rate"], r["key"]["talk_s"])]
    )
    print(format_rows(results))
    ratios = [r["ours_vs_oracle_occupancy"] for r in results]
    held = sum(verdict(r)[0] for r in results)
    median = sorted(ratios)[len(ratios) // 2]
    print(
        f"\nours/oracle occupancy: min {min(ratios):.3f}, median {median:.3f}; "
        f"3% held on every 30-min window in {held}/{len(results)} scenarios; "
        f"{time.perf_counter() - started:.0f} s on {args.jobs} processes"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
