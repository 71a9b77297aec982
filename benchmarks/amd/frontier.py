"""Operating points of the default AMD mode: accuracy against decision latency.

    python -m benchmarks.amd.frontier [--corpus var/amd-corpus]
        [--grid NAME=V1,V2,... ...] [--json FILE]

Runs the whole analysis (AMD next to the fax, SIT and beep detectors, as
``benchmarks.amd.evaluate`` does) once per combination of the parameter values
given with ``--grid`` (by default the two timing thresholds that set the
trade-off) and prints one row per combination: accuracy, false machine on
people, missed machines, and the people and machine decision latencies. Rows
that keep accuracy >= 97% and false machine <= 1% are marked, so a campaign
can pick the fastest point its users accept (``amd: parameters:`` in the
campaign file). Compare with ``benchmarks.amd.bounds``: what no timing rule
can beat on the same corpus.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.amd.evaluate import mode_metrics, read_labels, run
from dsp.amd import make_amd
from engine.voice.amd_cli import parse_sets

DEFAULT_GRID = {
    "after_greeting_silence_ms": ["800", "850", "900", "950", "1000"],
    "greeting_ms": ["2600", "2800", "3000", "3200"],
}


def _grid(specs: list[str]) -> dict[str, list[str]]:
    if not specs:
        return DEFAULT_GRID
    grid: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not values:
            raise ValueError(f"--grid {spec!r}: expected NAME=V1,V2,...")
        grid[name.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("var/amd-corpus"))
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    try:
        grid = _grid(args.grid)
        combos = itertools.product(*grid.values())
        points = [dict(zip(grid, combo, strict=True)) for combo in combos]
        parsed = [parse_sets([f"{k}={v}" for k, v in point.items()]) for point in points]
        for overrides in parsed:
            make_amd("default", overrides)
    except ValueError as exc:
        parser.error(str(exc))
    labels = read_labels(args.corpus)
    names = list(grid)
    header = "".join(f"{n:>28}" for n in names)
    print(f"corpus {args.corpus}: {len(labels)} clips, {len(points)} operating points")
    print(f"{header}{'acc %':>8}{'FM %':>7}{'miss %':>8}{'people ms':>12}{'machine ms':>12}")
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for point, overrides in zip(points, parsed, strict=True):
        runs = run(args.corpus, ["default"], overrides, args.jobs, labels)
        pairs = [(lab, r["modes"]["default"]) for lab, r in zip(labels, runs, strict=True)]
        m = mode_metrics(pairs)
        ok = (m["accuracy"] or 0) >= 97.0 and (m["false_machine"] or 0) <= 1.0
        rows.append({"parameters": point, "meets_accuracy_targets": ok, **m})
        people = m["human_latency_ms"]["median"]
        machines = m["machine_latency_ms"]["median"]
        cells = "".join(f"{point[n]:>28}" for n in names)
        print(
            f"{cells}{m['accuracy']:>8}{m['false_machine']:>7}{m['missed_machine']:>8}"
            f"{people:>12}{machines:>12}{'  ok' if ok else ''}",
            flush=True,
        )
    good = [r for r in rows if r["meets_accuracy_targets"]]
    if good:
        fastest_people = min(good, key=lambda r: r["human_latency_ms"]["median"])
        fastest_machines = min(good, key=lambda r: r["machine_latency_ms"]["median"])
        print(
            f"\nwith accuracy >= 97% and false machine <= 1%: fastest people "
            f"{fastest_people['human_latency_ms']['median']} ms at {fastest_people['parameters']}"
            f"; fastest machines {fastest_machines['machine_latency_ms']['median']} ms at "
            f"{fastest_machines['parameters']}"
        )
    else:
        print("\nno point keeps accuracy >= 97% and false machine <= 1%")
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"corpus": str(args.corpus), "rows": rows}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
