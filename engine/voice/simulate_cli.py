"""`outdial simulate`: run the pacing algorithms on a simulated campaign and compare them.

Prints a table (one row per algorithm: ours, progressive 1:1, fixed power,
a VICIdial ADAPT_TAPERED-style adaptive level, and the oracle bound), and
writes the same figures with per-minute series as JSON (`--json`) and a PNG
plot (`--plot`). See `engine.voice.simulate` for the model.

`--audit-days N` runs the simulated compliance audit instead
(`engine.compliance.audit`): N days of a predictive campaign over contacts
spread across the US zones and states, every call through the real hours,
limits and rules and into a real store, then prints the compliance report
(exit 1 when it is not OK).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.config import parse_duration
from engine.voice.pacing import DialMode, PacingConfig
from engine.voice.simulate import Distribution, Empirical, Exponential, LogNormal, Scenario
from engine.voice.simulate_metrics import ALGORITHMS, compare

EXIT_USAGE = 2


class SimulateUsageError(Exception):
    """A bad argument or input file: printed as `outdial simulate: error: ...`, exit 2."""


def parse_distribution(text: str) -> Distribution:
    """ "180s" (exponential, mean 180 s) or "10s±6s" / "10s+-6s" (lognormal, mean±sd)."""
    for sep in ("±", "+-"):
        if sep in text:
            mean_text, sd_text = text.split(sep, 1)
            mean, sd = parse_duration(mean_text), parse_duration(sd_text)
            if mean is None or sd is None or mean <= 0 or sd <= 0:
                raise argparse.ArgumentTypeError(f"expected MEAN±SD like 10s±6s, got {text!r}")
            return LogNormal(mean, sd)
    mean = parse_duration(text)
    if mean is None or mean <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 180s or MEAN±SD, got {text!r}")
    return Exponential(mean)


def _seconds(text: str) -> float:
    value = parse_duration(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 25s or 30m, got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return int(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="outdial simulate",
        description=(
            "Simulate a campaign and compare pacing algorithms on the same seeded calls. "
            "Durations: 180s (exponential mean), 10s±6s or 10s+-6s (lognormal mean±sd)."
        ),
    )
    add = p.add_argument
    add("--agents", type=_positive_int, default=20)
    add("--answer-rate", type=_probability, default=None, help="P(a person answers) (0.15)")
    add("--machines", type=_probability, default=None, help="P(a machine answers) (0.3)")
    add("--amd-fp", type=_probability, default=0.01, help="people AMD takes for machines")
    add("--talk", type=parse_distribution, default=None, help="talk time (180s)")
    add("--wrap", type=parse_distribution, default=Exponential(30.0), help="wrap-up (30s)")
    add("--ring", type=parse_distribution, default=None, help="dial to answer (10s±6s)")
    add("--ring-timeout", type=_seconds, default=None, help="give up after (25s)")
    add("--hours", type=_positive, default=8.0)
    add("--seed", type=int, default=1)
    add("--campaign", type=Path, help="campaign YAML: reads dialing: {mode, ratio, abandon_target}")
    add(
        "--attempts", type=Path, help="attempts CSV (outdial ctl report attempts CAMP --format csv)"
    )
    add("--algorithm", default="all", help=f"all, or a comma list of {', '.join(ALGORITHMS)}")
    add("--abandon-target", type=_probability, default=None, help="(0.03)")
    add("--max-ratio", type=_positive, default=5.0, help="cap on calls in flight per agent")
    add("--window", type=_seconds, default=1800.0, help="the pacer's ledger window (30m)")
    add("--ofcom", action="store_true", help="count the AMD false-positive estimate as abandons")
    add("--machines-to-agents", action="store_true", help="send machines to agents")
    add("--tick", type=_seconds, default=0.2, help="pacing tick (0.2s)")
    add("--json", type=Path, help="write the results as JSON here")
    add("--plot", type=Path, help="write a PNG plot here")
    add(
        "--audit-days",
        type=_positive_int,
        metavar="N",
        help="run the compliance audit over N simulated days and print the compliance report",
    )
    add(
        "--audit-contacts",
        type=_positive_int,
        metavar="N",
        help="contacts in the audit's list (default 250 per agent)",
    )
    add(
        "--audit-store",
        metavar="URL",
        help="keep the audit's store here (default: a temporary SQLite file)",
    )
    return p


def simulate_main(argv: Sequence[str]) -> int:
    """Entry point for `outdial simulate ARGS`; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse has printed the usage error (or --help)
        return int(exc.code or 0)
    try:
        scenario, config, notes = _inputs(args)
        algorithms = _algorithms(args.algorithm)
    except SimulateUsageError as exc:
        print(f"outdial simulate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for note in notes:
        print(f"outdial simulate: {note}", file=sys.stderr)
    if args.audit_days:
        return _audit(args, scenario, config)
    result = compare(scenario, config, algorithms)
    result = {"scenario": _describe(scenario), "config": _describe_config(config),
              "notes": notes, **result}  # fmt: skip
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        from engine.voice.simulate_plot import write_plot

        write_plot(result, args.plot)
    return 0


AUDIT_TICK_S = 1.0  # the audit paces at least this coarsely: 30 days of 0.2 s ticks is slow


def _audit(args: argparse.Namespace, scenario: Scenario, config: PacingConfig) -> int:
    """`--audit-days`: the audit with the scenario's call model; the report as a table."""
    import asyncio
    from dataclasses import replace

    from engine.compliance.audit import AuditPlan, audit
    from engine.ctl_compliance import format_compliance

    plan = AuditPlan(
        days=args.audit_days, contacts=args.audit_contacts or 250 * scenario.agents,
        seed=args.seed, scenario=replace(scenario, tick_s=max(scenario.tick_s, AUDIT_TICK_S)),
        pacing=config,
    )  # fmt: skip
    result = asyncio.run(audit(plan, args.audit_store))
    print(format_compliance(result["report"]))
    counts = result["audit"]
    print(
        f"audit: {counts['days']} days, {counts['agents']} agents, {counts['contacts']} contacts "
        f"(FL/OK/MD: {counts['contacts_by_rule_state']}); {counts.get('calls_placed', 0)} calls, "
        f"{counts.get('deferrals', 0)} deferrals (hours {counts.get('deferrals_hours', 0)}, "
        f"24 h call limit {counts.get('deferrals_call_limit', 0)}, attempt limits "
        f"{counts.get('deferrals_limits', 0)}); {counts['total_s']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0 if result["report"]["ok"] else 1


def _algorithms(text: str) -> tuple[str, ...]:
    if text == "all":
        return ALGORITHMS
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ALGORITHMS]
    if unknown or not names:
        raise SimulateUsageError(
            f"--algorithm: unknown {unknown} (known: all, {', '.join(ALGORITHMS)})"
        )
    return names


def _inputs(args: argparse.Namespace) -> tuple[Scenario, PacingConfig, list[str]]:
    notes: list[str] = []
    measured = read_attempts(args.attempts, notes) if args.attempts else {}
    dialing = read_campaign(args.campaign) if args.campaign else {}
    answer = _pick(args.answer_rate, measured.get("answer_rate"), 0.15)
    machines = _pick(args.machines, measured.get("machines"), 0.3)
    if answer + machines > 1.0:
        raise SimulateUsageError(f"--answer-rate + --machines is {answer + machines:g}, above 1")
    scenario = Scenario(
        agents=args.agents, answer_rate=answer, machines=machines, amd_fp=args.amd_fp,
        talk=_pick(args.talk, measured.get("talk"), Exponential(180.0)), wrap=args.wrap,
        ring=_pick(args.ring, measured.get("ring"), LogNormal(10.0, 6.0)),
        fail=measured.get("fail"),
        ring_timeout_s=_pick(args.ring_timeout, dialing.get("ring_timeout"), 25.0),
        hours=args.hours, seed=args.seed, machines_to_agents=args.machines_to_agents,
        ofcom=args.ofcom, window_s=args.window, tick_s=args.tick,
    )  # fmt: skip
    target = _pick(args.abandon_target, dialing.get("abandon_target"), 0.03)
    mode = dialing.get("mode", DialMode.PREDICTIVE)
    config = PacingConfig(mode, ratio=dialing.get("ratio", 1.0), abandon_target=target,
                          max_ratio=args.max_ratio, window_s=args.window)  # fmt: skip
    return scenario, config, notes


def _pick(flag: Any, measured: Any, default: Any) -> Any:
    """The command line wins, then what a file gave, then the default."""
    if flag is not None:
        return flag
    return measured if measured is not None else default


def read_campaign(path: Path) -> dict[str, Any]:
    """`dialing: {mode, ratio, abandon_target}` (and `ring_timeout`) from a campaign YAML."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SimulateUsageError(f"--campaign: cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SimulateUsageError(f"--campaign: {path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise SimulateUsageError(f"--campaign: {path}: expected a mapping at the top")
    out: dict[str, Any] = {}
    if "ring_timeout" in doc:
        out["ring_timeout"] = _file_duration(path, "ring_timeout", doc["ring_timeout"])
    dialing = doc.get("dialing") or {}
    if not isinstance(dialing, dict):
        raise SimulateUsageError(f"--campaign: {path}: dialing: expected a mapping")
    if "mode" in dialing:
        try:
            out["mode"] = DialMode(str(dialing["mode"]))
        except ValueError:
            known = ", ".join(m.value for m in DialMode)
            raise SimulateUsageError(
                f"--campaign: {path}: dialing.mode: {dialing['mode']!r} is not one of {known}"
            ) from None
    for key, low, high in (("ratio", 0.0, math.inf), ("abandon_target", 0.0, 1.0)):
        if key in dialing:
            out[key] = _file_number(path, f"dialing.{key}", dialing[key], low, high)
    return out


def _file_duration(path: Path, key: str, value: Any) -> float:
    seconds = parse_duration(str(value))
    if seconds is None or seconds <= 0:
        raise SimulateUsageError(f"--campaign: {path}: {key}: expected a duration, got {value!r}")
    return seconds


def _file_number(path: Path, key: str, value: Any, low: float, high: float) -> float:
    text = str(value).strip()
    number = float(text[:-1]) / 100.0 if text.endswith("%") else None
    try:
        number = float(text) if number is None else number
    except ValueError:
        raise SimulateUsageError(
            f"--campaign: {path}: {key}: expected a number, got {value!r}"
        ) from None
    if not low < number <= high:
        raise SimulateUsageError(f"--campaign: {path}: {key}: out of range: {value!r}")
    return number


_ATTEMPT_COLUMNS = ("result", "answered_at", "ended_at", "duration_ms")


def read_attempts(path: Path, notes: list[str]) -> dict[str, Any]:
    """Answer and machine rates, ring, give-up and talk times from an attempts CSV.

    Reads the columns `outdial ctl report attempts CAMP --format csv` writes
    (result, amd_result, created_at, invite_sent_at, ringing_at, answered_at,
    ended_at, duration_ms), each only if present, and says in `notes` what
    it could not measure (the flags or defaults are used for those).
    """
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise SimulateUsageError(f"--attempts: cannot read {path}: {exc.strerror}") from exc
    if not rows:
        raise SimulateUsageError(f"--attempts: {path}: no attempts in the file")
    columns = set(rows[0])
    missing = [c for c in _ATTEMPT_COLUMNS if c not in columns]
    if "result" in missing:
        raise SimulateUsageError(
            f"--attempts: {path}: no 'result' column (columns: {sorted(columns)})"
        )
    if missing:
        notes.append(f"{path}: no column {', '.join(missing)}: what needs it comes from the flags")
    notes.append(f"{path}: wrap-up times are not in attempts: using --wrap")
    start_col = next(
        (c for c in ("invite_sent_at", "created_at", "ringing_at") if c in columns), None
    )
    if start_col != "invite_sent_at":
        notes.append(
            f"{path}: ring time measured from {start_col or 'nothing'}, not invite_sent_at"
        )
    return _measure(rows, start_col, path, notes)


def _measure(
    rows: list[dict[str, str]], start_col: str | None, path: Path, notes: list[str]
) -> dict[str, Any]:
    humans = machines = 0
    ring: list[float] = []
    fail: list[float] = []
    talk: list[float] = []
    for row in rows:
        kind = _kind(row)
        humans += kind == "human"
        machines += kind == "machine"
        start = _time(row.get(start_col or "", ""))
        answered, ended = _time(row.get("answered_at", "")), _time(row.get("ended_at", ""))
        if kind != "fail" and start and answered:
            ring.append((answered - start).total_seconds())
        elif kind == "fail" and start and ended:
            fail.append((ended - start).total_seconds())
        duration = row.get("duration_ms") or ""
        if kind == "human" and duration.strip().isdigit():
            talk.append(int(duration) / 1000.0)
    out: dict[str, Any] = {"answer_rate": humans / len(rows), "machines": machines / len(rows)}
    for key, values in (("ring", ring), ("fail", fail), ("talk", talk)):
        good = tuple(v for v in values if v > 0)
        if len(good) >= 10:
            out[key] = Empirical(good)
        else:
            notes.append(f"{path}: only {len(good)} {key} times: using the flag or default")
    notes.append(f"{path}: {len(rows)} attempts: {humans} people, {machines} machines")
    return out


def _kind(row: dict[str, str]) -> str:
    result = (row.get("result") or "").strip().lower()
    amd = (row.get("amd_result") or "").strip().lower()
    if result == "machine" or amd == "machine":
        return "machine"
    if result == "answered":
        return "human"
    return "fail"


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def _describe(s: Scenario) -> dict[str, Any]:
    return {
        "agents": s.agents, "answer_rate": s.answer_rate, "machines": s.machines,
        "amd_fp": s.amd_fp, "talk": str(s.talk), "wrap": str(s.wrap), "ring": str(s.ring),
        "fail": None if s.fail is None else str(s.fail), "ring_timeout_s": s.ring_timeout_s,
        "hours": s.hours, "seed": s.seed, "machines_to_agents": s.machines_to_agents,
        "ofcom": s.ofcom, "connect_s": s.connect_s, "window_s": s.window_s, "tick_s": s.tick_s,
    }  # fmt: skip


def _describe_config(c: PacingConfig) -> dict[str, Any]:
    return {
        "mode": c.mode.value, "ratio": c.ratio, "abandon_target": c.abandon_target,
        "max_ratio": c.max_ratio, "window_s": c.window_s,
    }  # fmt: skip


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}%"


def format_table(result: dict[str, Any]) -> str:
    """The comparison as a fixed-width table, ours against the bound at the end."""
    head = (f"{'algorithm':24} {'dials':>7} {'live':>6} {'aband':>5} {'rate':>7} {'worst30':>8} "
            f"{'occup':>7} {'/oracle':>7} {'wait50':>7} {'wait95':>7} {'calls/ah':>8}")  # fmt: skip
    lines = [head]
    algos = result["algorithms"]
    bound = algos.get("oracle", {}).get("occupancy")
    for name, m in algos.items():
        vs = f"{m['occupancy'] / bound:.3f}" if bound else "-"
        lines.append(
            f"{name:24} {m['dials']:>7} {m['live_answers']:>6} {m['abandons']:>5} "
            f"{_pct(m['abandon_rate']):>7} {_pct(m['worst_30min_abandon_rate']):>8} "
            f"{_pct(m['occupancy']):>7} {vs:>7} {_wait(m['idle_wait_median_s']):>7} "
            f"{_wait(m['idle_wait_p95_s']):>7} {m['calls_per_agent_hour']:>8.2f}"
        )
    if "ours_vs_oracle_occupancy" in result:
        lines.append(f"ours/oracle occupancy: {result['ours_vs_oracle_occupancy']:.3f}")
    return "\n".join(lines)


def _wait(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"
