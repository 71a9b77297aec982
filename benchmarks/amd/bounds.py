"""What a timing-only AMD could reach on a corpus: oracle bounds from the labels.

    python -m benchmarks.amd.bounds [--corpus var/amd-corpus] [--budget 1.0]
        [--tolerance 0.1] [--json FILE]

A detector that only knows when talk starts and stops (ours, Asterisk's, any
talk/silence rule) cannot tell two calls apart while their talk/silence
patterns are the same. This tool gives such a detector the advantages no real
one has: the true talk segments from the labels (each a spoken sentence),
zero detection lag, the voicemail beep as a giveaway the moment it starts, and
the whole false-machine budget (``--budget`` percent of people) spent on its
talk-length rule. It is a bound for rules of that family (one talk-length
limit, resumptions matched against the corpus's people within
``--tolerance``), not for every rule: a rule that memorises when each clip's
first word starts can go lower on the corpus it was fitted on, but does not
carry over to a corpus built with another seed.

Machines: the earliest moment each machine's pattern stops looking like a
person's, by one of four events: talk that has lasted longer than all but the
budget of people ever talk at a stretch; talk that resumes after a first
utterance and pause that no person in the corpus matches (within
``--tolerance`` on both); a third stretch of talk when no person has one; the
beep. The median of these moments, from the answer, bounds the machine latency
(machines never told apart count as infinitely late).

People: a person can only be called human once the silence after their first
utterance has lasted longer than a machine's pause could. If a person is
called ``W`` after their first utterance (zero lag), each machine that falls
silent for longer than ``W`` before its pattern gave it away is called human.
The tables give, for each ``W``, how many machines that loses and the best
accuracy left (counting the talk-length rule's own false machines) if
everything else were right; the second table waits ``W`` only after a first
utterance of at least ``--split`` seconds and ``--short-wait`` after a shorter
one (a lone "Hello?" is what a pausing machine also says).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from benchmarks.amd.evaluate import read_labels

Segments = list[tuple[float, float]]


def _segments(label: dict[str, Any]) -> Segments:
    return [(float(a), float(b)) for a, b in label["speech"]]


def _longest(segs: Segments) -> float:
    return max((b - a for a, b in segs), default=0.0)


def _wait(segs: Segments, wait: float, short_wait: float | None, split: float) -> float:
    """The silence that makes this talk a person's: longer after a short first utterance."""
    short = short_wait is not None and bool(segs) and segs[0][1] - segs[0][0] < split
    return short_wait if short and short_wait is not None else wait


def talk_limit(people: list[Segments], budget: float) -> float:
    """The shortest stretch of talk that at most `budget` percent of people exceed."""
    longest = sorted((_longest(segs) for segs in people if segs), reverse=True)
    allowed = math.floor(len(people) * budget / 100.0)
    # Calling machine at a stretch of `limit` s catches every person who talks longer.
    return longest[allowed] if allowed < len(longest) else 0.0


def machine_bound(
    segs: Segments,
    people: list[Segments],
    limit: float,
    tolerance: float,
    beep: float | None = None,
) -> float | None:
    """The earliest time (s from the answer) this machine's pattern leaves every person's."""
    times: list[float] = [] if beep is None else [beep]
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


def machines_lost(
    machines: list[tuple[Segments, float | None]],
    wait: float,
    short_wait: float | None = None,
    split: float = 0.0,
) -> int:
    """Machines that fall silent for longer than the wait before they gave themselves away.

    The wait is `wait`, or `short_wait` when the first utterance lasted less
    than `split` seconds. The silence after the last segment lasts until the
    machine gives itself away (its beep) or for ever.
    """
    lost = 0
    for segs, bound in machines:
        if not segs:
            continue
        limit = _wait(segs, wait, short_wait, split)
        starts = [start for start, _ in segs[1:]] + [math.inf]
        for (_, end), start in zip(segs, starts, strict=True):
            if start - end > limit and (bound is None or end + limit < bound):
                lost += 1
                break
    return lost


def _wait_rows(
    labels: list[dict[str, Any]],
    people: list[Segments],
    machines: list[tuple[Segments, float | None]],
    false_machines: int,
    waits: list[float],
    short_wait: float | None = None,
    split: float = 0.0,
) -> list[dict[str, Any]]:
    rows = []
    for wait in waits:
        lost = machines_lost(machines, wait, short_wait, split)
        waited = [_wait(p, wait, short_wait, split) for p in people if p]
        rows.append(
            {
                "wait_ms": round(wait * 1000),
                "people_median_ms": round(1000 * statistics.median(waited)) if waited else None,
                "machines_lost": lost,
                "best_accuracy": round(
                    100.0 * (len(labels) - lost - false_machines) / len(labels), 2
                ),
            }
        )
    return rows


def bounds(
    labels: list[dict[str, Any]],
    budget: float,
    tolerance: float,
    waits: list[float],
    short_wait: float = 1.0,
    split: float = 0.5,
) -> dict[str, Any]:
    people = [_segments(lab) for lab in labels if lab["class"] == "human"]
    limit = talk_limit(people, budget)
    false_machines = sum(1 for p in people if _longest(p) > limit)
    machines = []
    for lab in labels:
        if lab["class"] == "machine":
            segs = _segments(lab)
            bound = machine_bound(segs, people, limit, tolerance, lab.get("beep_start"))
            machines.append((segs, bound))
    reached = sorted(b for _, b in machines if b is not None)
    never = len(machines) - len(reached)
    # Machines the oracle never tells apart count as infinitely late in the median.
    ordered = reached + [math.inf] * never
    median = statistics.median(ordered) if ordered else None
    return {
        "clips": len(labels),
        "people": len(people),
        "machines": len(machines),
        "budget_pct": budget,
        "tolerance_s": tolerance,
        "talk_limit_ms": round(limit * 1000),
        "false_machines": false_machines,
        "machine_bound_ms": {
            "median": None if median is None or math.isinf(median) else round(median * 1000),
            "within_2500_pct": round(100.0 * sum(b <= 2.5 for b in reached) / len(machines), 2),
            "never": never,
        },
        "people_wait": _wait_rows(labels, people, machines, false_machines, waits),
        "people_wait_split": {
            "split_s": split,
            "short_wait_ms": round(short_wait * 1000),
            "rows": _wait_rows(labels, people, machines, false_machines, waits, short_wait, split),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("var/amd-corpus"))
    parser.add_argument("--budget", type=float, default=1.0, help="false machines allowed, %%")
    parser.add_argument("--tolerance", type=float, default=0.1, help="seconds")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--split", type=float, default=0.5, help="seconds")
    parser.add_argument("--short-wait", type=float, default=1.0, help="seconds")
    args = parser.parse_args(argv)
    labels = read_labels(args.corpus)
    waits = [w / 1000 for w in range(600, 1101, 50)]
    result = bounds(labels, args.budget, args.tolerance, waits, args.short_wait, args.split)
    m = result["machine_bound_ms"]
    print(
        f"corpus {args.corpus}: {result['clips']} clips, {result['people']} people, "
        f"{result['machines']} machines; timing oracle (true talk segments, zero lag)"
    )
    print(
        f"talk-length rule: spending the {args.budget}% false-machine budget, machine only "
        f"after {result['talk_limit_ms']} ms of talk at a stretch "
        f"({result['false_machines']} people called machine)"
    )
    print(
        f"machines: earliest decision after the answer median {m['median']} ms; "
        f"{m['within_2500_pct']}% within 2500 ms; {m['never']} never told apart by timing"
    )
    split = result["people_wait_split"]
    print(
        f"people decided W ms after their first utterance (or {split['short_wait_ms']} ms "
        f"after one shorter than {args.split} s): people median, machines lost, best accuracy"
    )
    for row, srow in zip(result["people_wait"], split["rows"], strict=True):
        print(
            f"  W = {row['wait_ms']:>5} ms   {row['people_median_ms']:>5} {row['machines_lost']:>4}"
            f" {row['best_accuracy']:>6}%   (or: {srow['people_median_ms']:>5}"
            f" {srow['machines_lost']:>4} {srow['best_accuracy']:>6}%)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
