"""`outdial ctl`: operate a running daemon through its control socket.

Each subcommand becomes one request of the command layer (`engine.commands`);
the result is printed for people (aligned tables, `key: value` blocks) or as
JSON/CSV when asked. Errors print as `outdial: error: <message> (<code>)` and
exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from engine.control import ControlClient, ControlError, DaemonUnavailable, request_sync
from engine.ctl_agents import abandons_request, add_agent_parsers
from engine.ctl_compliance import add_compliance_parsers
from engine.ctl_email import add_email_parsers
from engine.ctl_sms import add_sms_parsers

DEFAULT_SOCKET = Path("var/outdial.sock")
EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130

Printer = Callable[[Any, argparse.Namespace], None]
if TYPE_CHECKING:
    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


@dataclass(frozen=True, slots=True)
class CtlRequest:
    """What a `ctl` subcommand sends, and how its result is printed."""

    cmd: str
    args: dict[str, Any]
    show: Printer


Builder = Callable[[argparse.Namespace], CtlRequest]


def _abs(path: str) -> str:
    """Paths go to the daemon absolute: it may run in another directory."""
    return os.path.abspath(os.path.expanduser(path))


def _attr(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _drop_none(**args: Any) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v is not None}


# ------------------------------------------------------------------ printing


def _cell(value: Any) -> str:
    match value:
        case None:
            return "-"
        case bool():
            return "yes" if value else "no"
        case float():
            return f"{value:.4g}" if abs(value) < 1 else f"{value:,.2f}".rstrip("0").rstrip(".")
        case dict():
            return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
        case list() | tuple():
            return ", ".join(_cell(v) for v in value) or "-"
        case _:
            return str(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Iterable[str]) -> str:
    """Rows under a header, columns padded to their widest cell; numbers
    right-aligned. Only columns that some row has are shown."""
    cols = [c for c in columns if any(c in r for r in rows)]
    if not rows or not cols:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(cols)]
    right = [
        all(_numeric(r.get(c)) or r.get(c) is None for r in rows)
        and any(_numeric(r.get(c)) for r in rows)
        for c in cols
    ]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line([c.upper() for c in cols]), *(line(c) for c in cells)])


def format_mapping(data: Mapping[str, Any], indent: int = 0) -> str:
    """`key: value` lines, keys aligned; nested objects indented, lists of
    objects as tables."""
    pad = " " * indent
    width = max((len(str(k)) for k in data), default=0) + 1
    out: list[str] = []
    for key, value in data.items():
        label = f"{pad}{key + ':':<{width}}"
        if isinstance(value, dict) and value:
            out.append(f"{pad}{key}:")
            out.append(format_mapping(value, indent + 2))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append(f"{pad}{key}:")
            table = format_table(value, _columns(value))
            out.extend(f"{pad}  {row}" for row in table.splitlines())
        else:
            out.append(f"{label} {_cell(value)}".rstrip())
    return "\n".join(out)


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def format_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV with a header of every column met; nested objects flattened."""
    flat = [_flatten(r) for r in rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(flat), lineterminator="\n")
    writer.writeheader()
    for row in flat:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue().rstrip("\n")


def _print_json(result: Any) -> None:
    print(json.dumps(result, indent=2))


def _show_mapping(result: Any, _: argparse.Namespace) -> None:
    print(format_mapping(result) if isinstance(result, dict) else _cell(result))


_CAMPAIGN_COLUMNS = (
    "name", "state", "list", "trunk", "lines", "in_flight",
    "total", "processed", "pending", "retry", "deferred", "done", "skipped", "failed",
)  # fmt: skip


def _show_campaigns(result: Any, _: argparse.Namespace) -> None:
    rows = [{**{k: v for k, v in c.items() if k != "progress"}, **c.get("progress", {})}
            for c in result]  # fmt: skip
    print(format_table(rows, _CAMPAIGN_COLUMNS))


def _show_state(result: Any, _: argparse.Namespace) -> None:
    print(f"campaign {result['campaign']}: {result['state']}")


def _show_import(result: Any, _: argparse.Namespace) -> None:
    where = f" into {result['list']}" if "list" in result else ""
    counts = f"{result['duplicates']} duplicates, {result['invalid']} invalid"
    if result.get("warnings"):
        counts += f", {result['warnings']} with a number dropped"
    print(f"imported {result['imported']} of {result['rows']} rows{where} ({counts}) "
          f"in {result['seconds']:.1f} s")  # fmt: skip
    rejected = result["duplicates"] or result["invalid"] or result.get("warnings")
    if result.get("error_path") and rejected:
        print(f"rejected rows: {result['error_path']}")


def _show_added(result: Any, _: argparse.Namespace) -> None:
    print(f"added contact {result['contact_id']} to {result['list']}")


def _show_exported(result: Any, _: argparse.Namespace) -> None:
    print(f"wrote {result['rows']} contacts of {result['list']} to {result['file']}")


def _dnc_what(result: Mapping[str, Any]) -> str:
    return str(result["number"]) if "number" in result else f"contact {result['contact_id']}"


def _dnc_list_name(result: Mapping[str, Any]) -> str:
    name = result.get("list", "internal")
    return "the do-not-contact list" if name == "internal" else f"do-not-contact list {name}"


def _show_dnc_added(result: Any, _: argparse.Namespace) -> None:
    until = f", until {result['expires_at']}" if result.get("expires_at") else ""
    print(f"{_dnc_what(result)} is on {_dnc_list_name(result)} "
          f"(source {result['source']}{until})")  # fmt: skip


def _show_dnc_removed(result: Any, _: argparse.Namespace) -> None:
    print(f"{_dnc_what(result)} removed from {_dnc_list_name(result)}")


def _show_dnc_check(result: Any, _: argparse.Namespace) -> None:
    what = _dnc_what(result)
    if not result.get("listed"):
        print(f"{what}: not on any do-not-contact list")
        return
    for entry in result.get("lists", []):
        details = [entry["kind"], f"source {entry['source']}", f"since {entry['added_at']}"]
        if entry.get("expires_at"):
            details.append(f"until {entry['expires_at']}")
        if entry.get("via") != "number" and "number" in result:
            details.append(f"via {entry['via']}")
        if entry.get("note"):
            details.append(f"note {entry['note']}")
        print(f"{what}: on do-not-contact list {entry['list']} ({', '.join(details)})")


def _show_dnc_lists(result: Any, _: argparse.Namespace) -> None:
    print(format_table(result, ("name", "kind", "numbers", "contacts", "expired", "created_at")))


def _show_dnc_created(result: Any, _: argparse.Namespace) -> None:
    print(f"created do-not-contact list {result['name']} (kind {result['kind']})")


def _show_dnc_exported(result: Any, _: argparse.Namespace) -> None:
    print(f"wrote {result['rows']} entries of {result['list']} to {result['file']}")


def _show_summary(result: Any, args: argparse.Namespace) -> None:
    match args.format:
        case "json":
            _print_json(result)
        case "csv":
            print(format_csv([result]))
        case _:
            print(format_mapping(result))


_ATTEMPT_COLUMNS = (
    "id", "contact_id", "number", "trunk", "result", "sip_status", "reason",
    "created_at", "local_time", "duration_ms", "ivr_summary",
)  # fmt: skip


def _show_attempts(result: Any, args: argparse.Namespace) -> None:
    match args.format:
        case "json":
            _print_json(result)
        case "csv":
            if result:
                print(format_csv(result))
        case _:
            print(format_table(result, _ATTEMPT_COLUMNS))


# ------------------------------------------------------------------- parser


def _leaf(sub: SubParsers, name: str, help_text: str, build: Builder) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(ctl_build=build)
    return parser


def _campaign_parsers(sub: SubParsers) -> None:
    group = sub.add_parser("campaign", help="list, show, load, start, pause, resume, stop")
    csub = group.add_subparsers(dest="ctl_action", required=True, metavar="ACTION")
    _leaf(csub, "list", "list campaigns with their progress",
          lambda a: CtlRequest("campaign.list", {}, _show_campaigns))  # fmt: skip
    _leaf(csub, "show", "show one campaign",
          lambda a: CtlRequest("campaign.show", {"name": a.name}, _show_mapping),
          ).add_argument("name")  # fmt: skip
    _leaf(csub, "load", "load or reload a campaign file",
          lambda a: CtlRequest("campaign.load", {"path": _abs(a.file)}, _show_state),
          ).add_argument("file")  # fmt: skip
    for action, text in (("start", "start placing calls"),
                         ("pause", "stop placing new calls; calls in progress finish"),
                         ("resume", "resume a paused campaign"),
                         ("stop", "pause and mark stopped")):  # fmt: skip
        _leaf(csub, action, text, _by_name(f"campaign.{action}")).add_argument("name")


def _by_name(cmd: str) -> Builder:
    return lambda a: CtlRequest(cmd, {"name": a.name}, _show_state)


def _contacts_import(a: argparse.Namespace) -> CtlRequest:
    args = _drop_none(list=a.list, file=_abs(a.file), phone_columns=a.phone_column,
                      region=a.region, encoding=a.encoding,
                      error_file=_abs(a.errors) if a.errors else None)  # fmt: skip
    return CtlRequest("contacts.import", args, _show_import)


def _contacts_add(a: argparse.Namespace) -> CtlRequest:
    attributes = dict(a.attr) if a.attr else None
    args = _drop_none(list=a.list, phones=a.phones, attributes=attributes,
                      priority=a.priority, top=a.top or None, region=a.region)  # fmt: skip
    return CtlRequest("contacts.add", args, _show_added)


def _contacts_parsers(sub: SubParsers) -> None:
    group = sub.add_parser("contacts", help="import, add, export contacts")
    csub = group.add_subparsers(dest="ctl_action", required=True, metavar="ACTION")
    p = _leaf(csub, "import", "import a CSV file into a contact list", _contacts_import)
    p.add_argument("list")
    p.add_argument("file", help="CSV file with a header row")
    p.add_argument("--phone-column", action="append", metavar="C",
                   help="column holding a phone number (repeat for several)")  # fmt: skip
    p.add_argument("--region", help="region of national numbers (default US)")
    p.add_argument("--errors", metavar="FILE", help="write rejected rows here (CSV)")
    p.add_argument("--encoding", help="file encoding (default utf-8)")
    p = _leaf(csub, "add", "add one contact", _contacts_add)
    p.add_argument("list")
    p.add_argument("phones", nargs="+", metavar="PHONE")
    p.add_argument("--attr", action="append", type=_attr, metavar="KEY=VALUE")
    p.add_argument("--priority", type=_int, help="higher is dialled first (default 0)")
    p.add_argument("--top", action="store_true", help="put ahead of every contact of the list")
    p.add_argument("--region", help="region of national numbers (default US)")
    p = _leaf(csub, "show", "one contact with its state in each campaign",
              lambda a: CtlRequest("contacts.show", {"contact_id": a.contact_id},
                                   lambda r, _: _print_json(r)))  # fmt: skip
    p.add_argument("contact_id", type=_int)
    p = _leaf(csub, "export", "write a list with each contact's latest result",
              lambda a: CtlRequest("contacts.export", {"list": a.list, "file": _abs(a.file)},
                                   _show_exported))  # fmt: skip
    p.add_argument("list")
    p.add_argument("file")


def _dnc_target(p: argparse.ArgumentParser, region: bool = True) -> None:
    p.add_argument("number", nargs="?", help="phone number (or give --contact)")
    p.add_argument("--contact", type=_positive_int, metavar="ID",
                   help="a contact (all its numbers) instead of a number")  # fmt: skip
    if region:
        p.add_argument("--region", help="region of a national number (default US)")


def _dnc_args(a: argparse.Namespace, **more: Any) -> dict[str, Any]:
    if (a.number is None) == (a.contact is None):
        raise SystemExit("outdial: error: give a NUMBER or --contact ID (one of them)")
    return _drop_none(number=a.number, contact_id=a.contact, region=a.region, **more)


_LIST_HELP = "do-not-contact list (default internal)"


def _dnc_parsers(sub: SubParsers) -> None:
    group = sub.add_parser("dnc", help="do-not-contact lists: add, remove, check, lists, "
                           "create, import, export")  # fmt: skip
    dsub = group.add_subparsers(dest="ctl_action", required=True, metavar="ACTION")
    p = _leaf(dsub, "add", "add a number or a contact to a list",
              lambda a: CtlRequest("dnc.add", _dnc_args(a, list=a.list, expires=a.expires,
                                   source=a.source, note=a.note), _show_dnc_added))  # fmt: skip
    _dnc_target(p)
    p.add_argument("--list", help=_LIST_HELP)
    p.add_argument("--expires", metavar="ISO|DURATION",
                   help="until an ISO-8601 time, or for a duration (30d, 12h, 90m)")  # fmt: skip
    p.add_argument("--source", help="where the request came from (default manual)")
    p.add_argument("--note", help="free text kept with the entry")
    p = _leaf(dsub, "remove", "remove a number or a contact from a list",
              lambda a: CtlRequest("dnc.remove", _dnc_args(a, list=a.list),
                                   _show_dnc_removed))  # fmt: skip
    _dnc_target(p)
    p.add_argument("--list", help=_LIST_HELP)
    p = _leaf(dsub, "check", "every list that blocks a number or a contact, and why",
              lambda a: CtlRequest("dnc.check", _dnc_args(a), _show_dnc_check))  # fmt: skip
    _dnc_target(p)
    _leaf(dsub, "lists", "the do-not-contact lists",
          lambda a: CtlRequest("dnc.lists", {}, _show_dnc_lists))  # fmt: skip
    p = _leaf(dsub, "create", "create a do-not-contact list",
              lambda a: CtlRequest("dnc.create", {"list": a.list, "kind": a.kind},
                                   _show_dnc_created))  # fmt: skip
    p.add_argument("list")
    p.add_argument("--kind", required=True, choices=("internal", "optout", "national", "other"))
    p = _leaf(dsub, "import", "add every number (or contact id) of a CSV file to a list",
              lambda a: CtlRequest("dnc.import", _drop_none(
                  file=_abs(a.file), list=a.list, column=a.column, source=a.source,
                  region=a.region, error_file=_abs(a.errors) if a.errors else None),
                  _show_import))  # fmt: skip
    p.add_argument("file")
    p.add_argument("--list", help=_LIST_HELP)
    p.add_argument("--column", metavar="C", help="column of the numbers (default: the first)")
    p.add_argument("--source", help="source recorded (default import; a source column wins)")
    p.add_argument("--region", help="region of national numbers (default US)")
    p.add_argument("--errors", metavar="FILE", help="write rejected rows here (CSV)")
    p = _leaf(dsub, "export", "write a list's entries as CSV (the import format)",
              lambda a: CtlRequest("dnc.export", {"list": a.list, "file": _abs(a.file)},
                                   _show_dnc_exported))  # fmt: skip
    p.add_argument("list")
    p.add_argument("file")


def _report_parsers(sub: SubParsers) -> None:
    group = sub.add_parser("report", help="campaign reports: summary, attempts")
    rsub = group.add_subparsers(dest="ctl_action", required=True, metavar="ACTION")
    p = _leaf(rsub, "summary", "counts per result, connect rate, ring and talk time",
              lambda a: CtlRequest("report.summary", {"campaign": a.campaign},
                                   _show_summary))  # fmt: skip
    p.add_argument("campaign")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p = _leaf(rsub, "attempts", "every attempt of a campaign",
              lambda a: CtlRequest("report.attempts",
                                   _drop_none(campaign=a.campaign, limit=a.limit),
                                   _show_attempts))  # fmt: skip
    p.add_argument("campaign")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="at most N attempts")
    p = _leaf(rsub, "abandons", "the abandon ledger of a campaign", abandons_request)
    p.add_argument("campaign")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")


def add_ctl_parser(subparsers: SubParsers) -> argparse.ArgumentParser:
    """Add `outdial ctl ...` to the top-level subparsers; returns its parser."""
    ctl: argparse.ArgumentParser = subparsers.add_parser(
        "ctl",
        help="operate a running daemon through its control socket",
        description="Send one command to a running `outdial run` and print the result.",
    )
    where = ctl.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, help=f"control socket (default {DEFAULT_SOCKET})")
    where.add_argument("--config", type=Path, help="daemon config file naming control_socket")
    ctl.add_argument("--json", action="store_true", help="print the raw JSON result")
    sub = ctl.add_subparsers(dest="ctl_command", required=True, metavar="COMMAND")
    _leaf(sub, "status", "daemon status, campaigns, calls in flight",
          lambda a: CtlRequest("status", {}, _show_mapping))  # fmt: skip
    _campaign_parsers(sub)
    _contacts_parsers(sub)
    _dnc_parsers(sub)
    add_compliance_parsers(sub)
    _report_parsers(sub)
    add_agent_parsers(sub)
    add_sms_parsers(sub)
    add_email_parsers(sub)
    sub.add_parser("events", help="print every daemon event as a JSON line until Ctrl-C")
    return ctl


# -------------------------------------------------------------------- run


def _config_socket(config: Path) -> Path:
    """control_socket of a daemon config file (default when it names none)."""
    from engine import config as config_module

    load_config = getattr(config_module, "load_config", None)
    if load_config is not None:
        return Path(load_config(config).control_socket)
    import yaml  # fallback while the full config loader is not there

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise config_module.ConfigError(str(config), None, "-", str(exc)) from exc
    value = data.get("control_socket") if isinstance(data, dict) else None
    return Path(value) if isinstance(value, str) else DEFAULT_SOCKET


def socket_path(args: argparse.Namespace) -> Path:
    """--socket, else control_socket of --config, else the default."""
    if getattr(args, "socket", None) is not None:
        return Path(args.socket)
    if getattr(args, "config", None) is not None:
        return _config_socket(Path(args.config))
    return DEFAULT_SOCKET


def _fail(message: str) -> int:
    print(f"outdial: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _no_daemon(path: Path) -> int:
    return _fail(f"no outdial daemon at {path} (is `outdial run` running?)")


async def _stream_events(path: Path) -> None:
    async with ControlClient(path) as client:
        async for event in client.events():
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()


def _run_events(path: Path) -> int:
    try:
        asyncio.run(_stream_events(path))
    except KeyboardInterrupt:
        return EXIT_OK
    except DaemonUnavailable:
        return _no_daemon(path)
    except ControlError as exc:
        return _fail(f"{exc.message} ({exc.code})")
    return _fail("the daemon closed the event stream")


def run_ctl(args: argparse.Namespace) -> int:
    """Run a parsed `outdial ctl` command line; returns the exit status."""
    from engine.config import ConfigError

    try:
        path = socket_path(args)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.ctl_command == "events":
        return _run_events(path)
    stream = getattr(args, "ctl_stream", None)
    if stream is not None:
        try:
            return int(stream(path, args.agent))
        except DaemonUnavailable:
            return _no_daemon(path)
    request: CtlRequest = args.ctl_build(args)
    try:
        result = request_sync(path, request.cmd, **request.args)
    except DaemonUnavailable:
        return _no_daemon(path)
    except ControlError as exc:
        return _fail(f"{exc.message} ({exc.code})")
    except KeyboardInterrupt:
        print("outdial: interrupted; the daemon finishes the command on its own", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        if args.json:
            _print_json(result)
        else:
            request.show(result, args)
    except BrokenPipeError:  # `outdial ctl ... | head`
        sys.stderr.close()
    return EXIT_OK
