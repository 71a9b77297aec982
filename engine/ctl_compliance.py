"""`outdial ctl compliance report`: the compliance report for people (a
table per legal window, then each finding), as JSON, or the windows as CSV
(see `engine.ctl`; the report itself is `engine.store.compliancedb.report`).
`compliance samples` and `compliance mark`: the recorded AMD sample an
operator marks (engine.amd_commands)."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.ctl import SubParsers


def _percent(rate: Any) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}%"


_WINDOW_COLUMNS = (
    "from", "to", "live_answers", "abandons", "machines", "fp_estimate", "rate", "over",
    "calls_placed", "outside_hours", "repeats_72h",
)  # fmt: skip


def _window_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"from": w["from"], "to": w["to"], "live_answers": w["live_answers"],
         "abandons": w["abandons"], "machines": w["machines"],
         "fp_estimate": w["amd_false_positive_estimate"], "rate": _percent(w["abandon_rate"]),
         "over": w["over_limit"], "calls_placed": w["calls_placed"],
         "outside_hours": w["outside_hours"], "repeats_72h": w["repeat_calls_72h"]}
        for w in result["windows"]
    ]  # fmt: skip


def _counts(title: str, counts: Mapping[str, int], key: str) -> list[str]:
    from engine.ctl import format_table

    if not counts:
        return [f"{title}: none"]
    rows = [{key: k, "count": n} for k, n in counts.items()]
    return [f"{title}:", *("  " + ln for ln in format_table(rows, (key, "count")).splitlines())]


def format_compliance(r: Mapping[str, Any]) -> str:
    """The compliance report for people: the windows, then each finding."""
    from engine.ctl import _cell, format_table

    out = [
        f"compliance report: campaign {r['campaign']} ({r['jurisdiction']}: {r['rule']}; "
        f"windows of {r['window']}, limit {_percent(r['limit'])})",
        f"from {r['from']} to {r['to']}",
        "",
        format_table(_window_rows(r), _WINDOW_COLUMNS),
        "",
        f"calls placed: {r['calls_placed']}; outside 08:00-21:00 local time: "
        f"{r['calls_outside_hours']} (must be 0)",
    ]
    out += [f"  {c['at']}  {c['number']}  local {c['local_time']}" for c in r["outside_hours"]]
    out.append(f"repeat calls within 72 h of an abandon: {r['repeat_calls_72h']} (must be 0)")
    out += [f"  {c['number']}: abandoned {c['abandon_at']}, called {c['called_at']} "
            f"(attempt {c['attempt_id']}, {c['campaign']}, agent {_cell(c['agent'])})"
            for c in r["repeat_calls"]]  # fmt: skip
    out += _counts("skips by rule", r["skips"], "rule")
    out += _counts("deferrals by rule", r["deferrals"], "rule")
    out += _counts("opt-outs by source", r["opt_outs"], "source")
    if r.get("opt_outs_without_campaign"):
        out.append(f"opt-outs recorded without a campaign: {r['opt_outs_without_campaign']}")
    fp = r.get("amd_false_positive")
    if fp is not None:
        out.append(_fp_line(fp))
    out += [f"note: {n}" for n in r.get("notes", [])]
    out.append("result: " + ("OK" if r["ok"] else "NOT OK"))
    return "\n".join(out)


def _fp_line(fp: Mapping[str, Any]) -> str:
    interval = fp.get("interval_95")
    within = f", 95% interval {_percent(interval[0])}-{_percent(interval[1])}" if interval else ""
    applied = "" if fp.get("applied", True) else " (not applied: not a UK campaign)"
    return (
        f"AMD false-positive rate: {_percent(fp['rate'])} ({fp['source']}){applied}; "
        f"marked samples: {fp['marked']} ({fp['person']} person, {fp['machine']} machine"
        f"{within}), {fp['unmarked']} unmarked; the sample is used from {fp['min_marks']} marks"
    )


def show_compliance(result: Any, args: argparse.Namespace) -> None:
    from engine.ctl import _print_json, format_csv

    match args.format:
        case "json":
            _print_json(result)
        case "csv":
            source = (result.get("amd_false_positive") or {}).get("source")
            print(format_csv([{"campaign": result["campaign"], **w,
                               "amd_false_positive_source": source}
                              for w in result["windows"]]))  # fmt: skip
        case _:
            print(format_compliance(result))


_SAMPLE_COLUMNS = ("attempt_id", "number", "recorded_at", "mark", "marked_by", "marked_at", "path")


def format_samples(result: Mapping[str, Any]) -> str:
    """A campaign's AMD samples: the counts, then one row per sample."""
    from engine.ctl import format_table

    c = result["counts"]
    marked = c["person"] + c["machine"]
    head = (
        f"AMD samples of {result['campaign']}: {c['unmarked']} unmarked, {marked} marked "
        f"({c['person']} person, {c['machine']} machine); the estimate replaces the "
        f"configured rate from {result['min_marks']} marks"
    )
    return "\n".join([head, "", format_table(result["samples"], _SAMPLE_COLUMNS)])


def show_samples(result: Any, args: argparse.Namespace) -> None:
    from engine.ctl import _print_json, format_csv

    match args.format:
        case "json":
            _print_json(result)
        case "csv":
            print(format_csv(result["samples"]))
        case _:
            print(format_samples(result))


def show_mark(result: Any, _args: argparse.Namespace) -> None:
    again = f" (was {result['previous']})" if result.get("previous") else ""
    print(f"attempt {result['attempt_id']} ({result['number']}, {result['campaign']}): "
          f"{result['mark']}{again}, marked by {result['marked_by']}")  # fmt: skip


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return ""


def add_compliance_parsers(sub: SubParsers) -> None:
    """`outdial ctl compliance report CAMPAIGN [--from T] [--to T] [--format F]`."""
    from engine.ctl import CtlRequest, _drop_none, _leaf, _positive_int

    group = sub.add_parser("compliance", help="compliance: report, AMD samples")
    csub = group.add_subparsers(dest="ctl_action", required=True, metavar="ACTION")
    p = _leaf(csub, "report", "abandon rate per legal window, calling hours, 72 h repeats, "
              "skips, deferrals, opt-outs",
              lambda a: CtlRequest("compliance.report", _drop_none(
                  campaign=a.campaign, since=a.since, until=a.until),
                  show_compliance))  # fmt: skip
    p.add_argument("campaign")
    p.add_argument("--from", dest="since", metavar="T",
                   help="ISO-8601 date or time, or a duration back (30d); default: the "
                   "campaign's creation")  # fmt: skip
    p.add_argument("--to", dest="until", metavar="T", help="ISO-8601 date or time (default now)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p = _leaf(csub, "samples", "the recorded AMD samples of a campaign, unmarked first",
              lambda a: CtlRequest("compliance.amd_samples", _drop_none(
                  campaign=a.campaign, unmarked=a.unmarked or None, limit=a.limit),
                  show_samples))  # fmt: skip
    p.add_argument("campaign")
    p.add_argument("--unmarked", action="store_true", help="only samples not marked yet")
    p.add_argument("--limit", type=_positive_int, help="at most this many")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p = _leaf(csub, "mark", "mark an AMD sample: person (AMD was wrong) or machine",
              lambda a: CtlRequest("compliance.amd_mark", {
                  "attempt": a.attempt, "mark": a.mark, "by": a.by or _operator()},
                  show_mark))  # fmt: skip
    p.add_argument("attempt", type=_positive_int, help="the attempt id of the sample")
    p.add_argument("mark", help="person or machine")
    p.add_argument("--by", metavar="NAME", help="the operator (default: your login name)")
