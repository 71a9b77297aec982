"""`outdial ctl compliance report`: the compliance report for people (a
table per legal window, then each finding), as JSON, or the windows as CSV
(see `engine.ctl`; the report itself is `engine.store.compliancedb.report`)."""

from __future__ import annotations

import argparse
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
    out += [f"note: {n}" for n in r.get("notes", [])]
    out.append("result: " + ("OK" if r["ok"] else "NOT OK"))
    return "\n".join(out)


def show_compliance(result: Any, args: argparse.Namespace) -> None:
    from engine.ctl import _print_json, format_csv

    match args.format:
        case "json":
            _print_json(result)
        case "csv":
            print(format_csv([{"campaign": result["campaign"], **w} for w in result["windows"]]))
        case _:
            print(format_compliance(result))


def add_compliance_parsers(sub: SubParsers) -> None:
    """`outdial ctl compliance report CAMPAIGN [--from T] [--to T] [--format F]`."""
    from engine.ctl import CtlRequest, _drop_none, _leaf

    group = sub.add_parser("compliance", help="compliance: report")
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
