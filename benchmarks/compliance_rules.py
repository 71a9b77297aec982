"""Campaign rules, filter and limits: the cost per contact, and the compile time.

    .venv/bin/python -m benchmarks.compliance_rules [--contacts 100000] [--runs 5] [--seed 1]

100,000 synthetic contacts (state, balance, segment, zip, language columns;
0-5 attempts, a last result and time, local times across four US zones).
Per contact the dial loop's work: the filter, the attempt limits, the
before_call rules and the after_call rules (on a drawn result); the contexts
are built outside the timed loop (their cost is printed on its own line).
The baseline is the same logic written by hand in Python, timed in the same
run: the ratio is what the compiled conditions cost over plain code.
Figures are medians of `--runs` runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import yaml

from engine.compliance.rules import (
    AttemptLimits,
    Filter,
    RuleContext,
    RuleSet,
    parse_filter,
    parse_limits,
    parse_rules,
    parse_sort,
)
from engine.config import _Node

CAMPAIGN = """\
filter: "state in ['CA', 'NY', 'TX', 'FL'] and balance >= 100 and language != 'fr'"
sort: [{column: balance, order: desc}, {column: last_attempt_at, order: asc}]
limits: {per_contact: {total: 6, per_day: 2}, per_number: {total: 3, per_day: 1}}
rules:
  - when: before_call
    if: "attempts >= 2 and segment == 'vip'"
    then: {caller_id: "+15550100"}
  - when: before_call
    if: "local_hour < 9 and segment in ['gold', 'silver']"
    then: {priority: 5}
  - when: before_call
    if: "last_result == 'machine' and minutes_since_last_attempt < 120"
    then: {skip: "machine recently"}
  - when: after_call
    if: "result == 'busy' and attempts < 4"
    then: {retry_in: 15m}
  - when: after_call
    if: "result in ['invalid_number', 'rejected'] or (result == 'no_answer' and attempts >= 5)"
    then: {uncallable: "unreachable"}
"""
ZONES = [ZoneInfo(z) for z in ("America/New_York", "America/Chicago", "America/Denver",
                                "America/Los_Angeles")]  # fmt: skip
STATES = ["CA", "NY", "TX", "FL", "WA", "OH", "IL", "GA"]
SEGMENTS = ["vip", "gold", "silver", "standard", "standard", "standard"]
RESULTS = ["busy", "no_answer", "machine", "answered", "invalid_number", "rejected", None]


def campaign() -> _Node:
    root = yaml.compose(CAMPAIGN)
    assert isinstance(root, yaml.MappingNode)
    return _Node("bench.yaml", root, "")


def contexts(n: int, seed: int) -> list[RuleContext]:
    rng = random.Random(seed)
    base = datetime(2026, 3, 3, 15, 0, tzinfo=ZoneInfo("UTC"))
    out = []
    for i in range(n):
        now = (base + timedelta(minutes=rng.randrange(600))).astimezone(rng.choice(ZONES))
        attempts = rng.randrange(6)
        last = None if attempts == 0 else rng.choice(RESULTS[:-1])
        attributes = {
            "state": rng.choice(STATES), "balance": str(rng.randrange(0, 5000)),
            "segment": rng.choice(SEGMENTS), "zip": f"{rng.randrange(100000):05d}",
            "language": rng.choice(["en", "en", "es", "fr"]), "id": str(i),
        }  # fmt: skip
        out.append(RuleContext(
            now=now, attributes=attributes, attempts=attempts,
            attempts_today=min(attempts, rng.randrange(3)),
            number_attempts=attempts // 2, number_attempts_today=rng.randrange(2),
            last_result=last,
            last_attempt_at=None if attempts == 0 else now - timedelta(minutes=rng.randrange(600)),
            result=rng.choice(RESULTS),
        ))  # fmt: skip
    return out


def compiled(flt: Filter, limits: AttemptLimits, rules: RuleSet) -> Callable[[RuleContext], int]:
    def one(c: RuleContext) -> int:
        if not flt.matches(c.attributes) or limits.check(c) is not None:
            return 0
        rules.before_call(c)
        rules.after_call(c)
        return 1

    return one


def every_stage(flt: Filter, limits: AttemptLimits, rules: RuleSet) -> Callable[[RuleContext], int]:
    """Every stage on every contact, none skipped (the worst case per contact)."""

    def one(c: RuleContext) -> int:
        flt.matches(c.attributes)
        limits.check(c)
        rules.before_call(c)
        rules.after_call(c)
        return 1

    return one


def by_hand(c: RuleContext) -> int:
    """The same filter, limits and rules as plain Python (the baseline)."""
    a = c.attributes
    if not (a.get("state") in ("CA", "NY", "TX", "FL") and float(a["balance"]) >= 100):
        return 0
    if a.get("language") == "fr":
        return 0
    if c.attempts >= 6 or c.attempts_today >= 2 or c.number_attempts >= 3:
        return 0
    if c.number_attempts_today >= 1:
        return 0
    caller_id = priority = skip = None
    if c.attempts >= 2 and a.get("segment") == "vip":
        caller_id = "+15550100"
    if c.now.hour < 9 and a.get("segment") in ("gold", "silver"):
        priority = 5
    if c.last_result == "machine" and c.last_attempt_at is not None:
        if (c.now - c.last_attempt_at).total_seconds() / 60 < 120:
            skip = "machine recently"
    retry = uncallable = None
    if c.result == "busy" and c.attempts < 4:
        retry = 900.0
    if c.result in ("invalid_number", "rejected") or (c.result == "no_answer" and c.attempts >= 5):
        uncallable = "unreachable"
    del caller_id, priority, skip, retry, uncallable
    return 1


def time_per_item(fn: Callable[[RuleContext], int], items: list[RuleContext], runs: int) -> float:
    """Median seconds per item over `runs` passes."""
    per: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        for c in items:
            fn(c)
        per.append((time.perf_counter() - start) / len(items))
    return statistics.median(per)


def compile_time(runs: int) -> tuple[float, float]:
    """Median seconds: the whole snippet (YAML compose + parse), and parsing only."""
    whole, parse = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        m = campaign()
        t1 = time.perf_counter()
        parse_rules(m), parse_filter(m), parse_sort(m), parse_limits(m)
        t2 = time.perf_counter()
        whole.append(t2 - t0)
        parse.append(t2 - t1)
    return statistics.median(whole), statistics.median(parse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    m = campaign()
    rules, flt, limits, sort = parse_rules(m), parse_filter(m), parse_limits(m), parse_sort(m)
    assert flt is not None
    assert sort is not None
    items = contexts(args.contacts, args.seed)
    one = compiled(flt, limits, rules)
    dialled = sum(map(one, items))
    assert dialled == sum(map(by_hand, items)), "the hand-written baseline disagrees"

    runs = args.runs
    full = time_per_item(every_stage(flt, limits, rules), items, runs)
    loop = time_per_item(one, items, runs)
    hand = time_per_item(by_hand, items, runs)
    parts = {
        "filter": time_per_item(lambda c: flt.matches(c.attributes), items, runs),
        "limits": time_per_item(lambda c: limits.check(c) is None, items, runs),
        "before_call (3 rules)": time_per_item(lambda c: rules.before_call(c) is None, items, runs),
        "after_call (2 rules)": time_per_item(lambda c: rules.after_call(c) is None, items, runs),
        "sort key (2 keys)": time_per_item(lambda c: len(sort.key(c)), items, runs),
        "building a RuleContext": time_per_item(rebuild, items, runs),
    }
    t0 = time.perf_counter()
    sorted(items, key=sort.key)
    sort_all = time.perf_counter() - t0
    whole, parse_only = compile_time(max(runs, 20))

    us = 1e6
    print(f"compliance rules: {args.contacts:,} contacts, median of {runs} runs, {len(rules)} "
          f"rules + filter + limits; {dialled:,} pass the filter and the limits")  # fmt: skip
    print(
        f"  per contact, every stage (filter, limits, before_call, after_call): {full * us:6.2f} us"
    )
    print(
        f"  per contact, as the dial loop (stops at filter / limits):         {loop * us:6.2f} us"
    )
    print(f"  per contact, that loop written by hand (baseline):                {hand * us:6.2f} us"
          f"  (compiled / hand = {loop / hand:.1f}x)")  # fmt: skip
    for name, seconds in parts.items():
        print(f"    {name:<24} {seconds * us:6.2f} us")
    print(f"  sorting all {args.contacts:,} by the sort keys: {sort_all * 1e3:.0f} ms")
    print(f"  compile: {parse_only * 1e3:.2f} ms for rules + filter + sort + limits "
          f"({whole * 1e3:.2f} ms with YAML compose)")  # fmt: skip


def rebuild(c: RuleContext) -> int:
    RuleContext(c.now, c.attributes, c.attempts, c.attempts_today, c.number_attempts,
                c.number_attempts_today, c.last_result, c.last_attempt_at, c.result)  # fmt: skip
    return 1


if __name__ == "__main__":
    main()
