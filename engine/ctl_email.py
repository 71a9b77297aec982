"""`outdial ctl email ...`: send one email, list emails, unsubscribe a
message's address (see `engine.ctl`; the functions are engine.email_commands;
`sms show ID` shows any message, an email too)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from engine.ctl_sms import _data, _show_messages

if TYPE_CHECKING:
    from engine.ctl import SubParsers


def _show_sent(result: Any, _: argparse.Namespace) -> None:
    print(f"message {result['id']} to {result['to']} queued: {result['subject']!r}")


def add_email_parsers(sub: SubParsers) -> None:
    from engine.ctl import CtlRequest, _drop_none, _leaf, _positive_int, _show_mapping

    group = sub.add_parser("email", help="email: send, list, unsubscribe")
    esub = group.add_subparsers(dest="ctl_action", required=True, metavar="ACTION")
    p = _leaf(esub, "send", "send one email without a campaign (stored before it answers)",
              lambda a: CtlRequest("email.send", _drop_none(
                  address=a.address, template=a.template, subject=a.subject, text=a.text,
                  html=a.html, data=_data(a.data), sender=a.sender, relay=a.relay),
                  _show_sent))  # fmt: skip
    p.add_argument("address")
    p.add_argument("--template", help="one of the daemon config's email.templates")
    p.add_argument("--data", action="append", metavar="KEY=VALUE", help="a template column")
    p.add_argument("--subject")
    p.add_argument("--text", help="the text part")
    p.add_argument("--html", help="the HTML part")
    p.add_argument("--sender", help="From (default email.from)")
    p.add_argument("--relay", help="SMTP relay (default email.default_relay)")
    p = _leaf(esub, "list", "emails, newest first",
              lambda a: CtlRequest("email.list", _drop_none(
                  campaign=a.campaign, address=a.address,
                  notifications=a.notifications or None, limit=a.limit),
                  _show_messages))  # fmt: skip
    p.add_argument("--campaign")
    p.add_argument("--address")
    p.add_argument("--notifications", action="store_true", help="only those without a campaign")
    p.add_argument("--limit", type=_positive_int)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p = _leaf(esub, "unsubscribe", "unsubscribe a message's address, as its link does",
              lambda a: CtlRequest("email.unsubscribe", {"id": a.id}, _show_mapping))  # fmt: skip
    p.add_argument("id", type=_positive_int)
