"""`outdial ctl sms ...`: send one message, preview a text, show a message with
its history and thread, list messages, report a campaign's totals (see
`engine.ctl`; the functions are in `engine.sms_commands`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.ctl import SubParsers

_MESSAGE_COLUMNS = (
    "id",
    "direction",
    "campaign",
    "address",
    "sender",
    "status",
    "segments",
    "carrier_id",
    "tries",
    "in_doubt",
    "keyword",
    "replies",
    "created_at",
    "error",
)


def _data(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"--data {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _show_sent(result: Any, _: argparse.Namespace) -> None:
    print(
        f"message {result['id']} to {result['to']} queued: {result['segments']} segment(s), "
        f"{result['encoding']}"
    )


def _show_preview(result: Any, _: argparse.Namespace) -> None:
    print(result["summary"])


def _show_message(result: Any, _: argparse.Namespace) -> None:
    from engine.ctl import format_mapping, format_table

    fields = {k: v for k, v in result.items() if k not in ("history", "thread")}
    print(format_mapping(fields))
    print("\nhistory:")
    print(format_table(result["history"], ("at", "status", "detail")))
    if len(result["thread"]) > 1:
        print("\nthread:")
        print(
            format_table(
                result["thread"], ("id", "direction", "created_at", "status", "keyword", "body")
            )
        )


def _show_messages(result: Any, args: argparse.Namespace) -> None:
    from engine.ctl import _print_json, format_csv, format_table

    match args.format:
        case "json":
            _print_json(result)
        case "csv":
            if result:
                print(format_csv(result))
        case _:
            print(format_table(result, _MESSAGE_COLUMNS))


def add_sms_parsers(sub: SubParsers) -> None:
    from engine.ctl import CtlRequest, _drop_none, _leaf, _positive_int, _show_mapping

    group = sub.add_parser("sms", help="SMS: send, preview, show, list, report")
    ssub = group.add_subparsers(dest="ctl_action", required=True, metavar="ACTION")
    p = _leaf(
        ssub,
        "send",
        "send one SMS without a campaign (stored before it answers)",
        lambda a: CtlRequest(
            "sms.send",
            _drop_none(
                number=a.number,
                text=a.text,
                template=a.template,
                data=_data(a.data),
                sender=a.sender,
                account=a.account,
            ),
            _show_sent,
        ),
    )
    p.add_argument("number")
    p.add_argument("text", nargs="?", help="the message (or --template)")
    p.add_argument("--template", help="one of the daemon config's sms.templates")
    p.add_argument("--data", action="append", metavar="KEY=VALUE", help="a template column")
    p.add_argument("--sender", help="our sender (default sms.default_sender)")
    p.add_argument("--account", help="SMS account (default sms.default_account)")
    p = _leaf(
        ssub,
        "preview",
        "encoding, segments, what forces UCS-2, split URLs",
        lambda a: CtlRequest("sms.preview", {"text": a.text, "smart": a.smart}, _show_preview),
    )
    p.add_argument("text")
    p.add_argument("--smart", action="store_true", help="smart encoding (look-alikes to GSM-7)")
    p = _leaf(
        ssub,
        "show",
        "one message: status history and thread",
        lambda a: CtlRequest("sms.show", {"id": a.id}, _show_message),
    )
    p.add_argument("id", type=_positive_int)
    p = _leaf(
        ssub,
        "list",
        "messages, newest first",
        lambda a: CtlRequest(
            "sms.list",
            _drop_none(
                campaign=a.campaign,
                number=a.number,
                notifications=a.notifications or None,
                limit=a.limit,
            ),
            _show_messages,
        ),
    )
    p.add_argument("--campaign")
    p.add_argument("--number")
    p.add_argument("--notifications", action="store_true", help="only those without a campaign")
    p.add_argument("--limit", type=_positive_int)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p = _leaf(
        ssub,
        "report",
        "message totals of a campaign (default: the notifications)",
        lambda a: CtlRequest("sms.report", _drop_none(campaign=a.campaign), _show_mapping),
    )
    p.add_argument("campaign", nargs="?")
