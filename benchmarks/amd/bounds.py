"""What any timing-only AMD could reach on a corpus: oracle bounds from the labels.

    python -m benchmarks.amd.bounds [--corpus var/amd-corpus] [--budget 1.0] [--json FILE]

A detector that only knows when talk starts and stops (ours, Asterisk's, any
talk/silence rule) cannot tell two calls apart while their talk/silence
patterns are the same. This tool gives such a detector every advantage: the
true talk segments from the labels, zero detection lag, and the freedom to
spend the whole false-machine budget (``--budget`` percent of people) on its
talk-length rule. Whatever it cannot reach, no timing rule can.

Machines: the earliest moment each machine's pattern stops looking like a
person's, by one of three events: talk that has lasted longer than all but the
budget of people ever talk at a stretch; talk that resumes after a first
utterance and pause that no person in the corpus matches (within
``--tolerance`` on both); or a third stretch of talk when no person has one.
The median of these moments, from the answer, bounds the machine latency.

People: a person can only be called human once the silence after their first
utterance has lasted longer than a machine's pause could. If every person is
called ``W`` after their first utterance (zero lag), each machine that pauses
longer than ``W`` before its pattern gave it away is called human. The table
gives, for each ``W``, how many machines that loses and the best accuracy left
even if everything else were perfect.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

Segments = list[tuple[float, float]]


def _segments(label: dict[str, Any]) -> Segments:
    return [(float(a), float(b)) for a, b in label["speech"]]


def talk_limit(people: list[Segments], budget: float) -> float:
    """The shortest stretch of talk that at most `budget` percent of people exceed."""
    longest = sorted((max(b - a for a, b in segs) for segs in people if segs), reverse=True)
    allowed = math.floor(len(people) * budget / 100.0)
    # Calling machine at a stretch of `limit` s catches every person who talks longer.
    return longest[allowed] if allowed < len(longest) else 0.0


def machine_bound(
    segs: Segments, people: list[Segments], limit: float, tolerance: float
) -> float | None:
    """The earliest time (s from the answer) this machine's pattern leaves every person's."""
    times: list[float] = []
    most_people_segments = max(len(p) for p in people)
    for i, (start, end) in enumerate(segs):
        if end - start > limit:
            times.append(start + limit)
        if i == 0:
            continue
        if i >= most_people_segments:
            times.append(start)
        elif i == 1:
            first = segs[0][1] - segs[0][0]
            pause = start - segs[0][1]
            alike = any(
                len(p) > 1
                and abs((p[0][1] - p[0][0]) - first) <= tolerance
                and abs((p[1][0] - p[0][1]) - pause) <= tolerance
                for p in people
            )
            if not alike:
                times.append(start)
    return min(times) if times else None


def machines_lost(machines: list[tuple[Segments, float | None]], wait: float) -> int:
    """Machines that fall silent for longer than `wait` before they gave themselves away."""
    lost = 0
    for segs, bound in machines:
        for (_, end), (start, _) in itertools.pairwise(segs):
            if start - end > wait and (bound is None or end + wait < bound):
                lost += 1
                break
    return lost


def bounds(
    labels: list[dict[str, Any]], budget: float, tolerance: float, waits: list[float]
) -> dict[str, Any]:
    people = [_segments(lab) for lab in labels if lab["class"] == "human"]
    machine_segs = [_segments(lab) for lab in labels if lab["class"] == "machine"]
    limit = talk_limit(people, budget)
    machines = [(segs, machine_bound(segs, people, limit, tolerance)) for segs in machine_segs]
    reached = sorted(b for _, b in machines if b is not None)
    never = len(machines) - len(reached)
    # Machines the oracle never tells apart count as infinitely late in the median.
    ordered = reached + [math.inf] * never
    median = statistics.median(ordered) if ordered else None
    rows = []
    for wait in waits:
        lost = machines_lost(machines, wait)
        rows.append(
            {
                "wait_ms": round(wait * 1000),
                "machines_lost": lost,
                "best_accuracy": round(100.0 * (len(labels) - lost) / len(labels), 2),
            }
        )
    return {
        "clips": len(labels),
        "people": len(people),
        "machines": len(machines),
        "budget_pct": budget,
        "tolerance_s": tolerance,
        "talk_limit_ms": round(limit * 1000),
        "machine_bound_ms": {
            "median": None if median is None or math.isinf(median) else round(median * 1000),
            "p95": round(1000 * reached[int(0.95 * (len(reached) - 1))]) if reached else None,
            "within_2500_pct": round(100.0 * sum(b <= 2.5 for b in reached) / len(machines), 2),
            "never": never,
        },
        "people_wait": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("var/amd-corpus"))
    parser.add_argument("--budget", type=float, default=1.0, help="false machines allowed, %%")
    parser.add_argument("--tolerance", type=float, default=0.1, help="seconds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    path = args.corpus / "labels.jsonl"
    if not path.exists():
        sys.exit(f"bounds: no {path}; build it with python -m benchmarks.amd.make_corpus")
    labels = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    waits = [w / 1000 for w in range(600, 1101, 50)]
    result = bounds(labels, args.budget, args.tolerance, waits)
    m = result["machine_bound_ms"]
    print(
        f"corpus {args.corpus}: {result['clips']} clips, {result['people']} people, "
        f"{result['machines']} machines; timing oracle (true talk segments, zero lag)"
    )
    print(
        f"talk-length rule: spending the {args.budget}% false-machine budget, machine only "
        f"after {result['talk_limit_ms']} ms of talk at a stretch"
    )
    print(
        f"machines: earliest possible decision after the answer median {m['median']} ms, "
        f"p95 {m['p95']} ms; {m['within_2500_pct']}% within 2500 ms; {m['never']} never "
        f"told apart by timing"
    )
    print("people decided W ms after their first utterance: machines lost, best accuracy")
    for row in result["people_wait"]:
        print(f"  W = {row['wait_ms']:>5} ms   {row['machines_lost']:>4}   {row['best_accuracy']}%")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
