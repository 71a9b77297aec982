"""`outdial ctl agent ...`, `outdial ctl callbacks` and `report abandons`:
the agent side of the control-socket client (see `engine.ctl`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.control import ControlClient

if TYPE_CHECKING:
    from engine.ctl import CtlRequest, SubParsers


def _agent_events(path: Path, agent: str) -> int:
    """Print the events about one agent (offers with contact data, calls
    coming, bridged, ended, states, wrap-ups) as JSON lines until Ctrl-C."""

    async def stream() -> None:
        async with ControlClient(path) as client:
            async for event in client.events():
                if event.get("agent") == agent:
                    sys.stdout.write(json.dumps(event) + "\n")
                    sys.stdout.flush()

    try:
        asyncio.run(stream())
    except KeyboardInterrupt:
        return 0
    return 1


def add_agent_parsers(sub: SubParsers) -> None:
    from engine.ctl import CtlRequest, _drop_none, _leaf, _positive_int, _show_mapping

    def show_list(result: Any, args: argparse.Namespace) -> None:
        from engine.ctl import format_table

        if isinstance(result, list):
            rows = [{k: v for k, v in r.items() if not isinstance(v, dict | list)} for r in result]
            print(format_table(rows, list(rows[0]) if rows else []))
        else:
            _show_mapping(result, args)

    def one(cmd: str) -> Any:
        return lambda a: CtlRequest(cmd, {"agent": a.agent}, _show_mapping)

    group = sub.add_parser("agent", help="agents: login, logout, ready, not-ready, wrapup...")
    asub = group.add_subparsers(dest="ctl_action", required=True, metavar="ACTION")
    p = _leaf(asub, "login", "call the agent's phone and keep the leg up",
              lambda a: CtlRequest("agent.login", _drop_none(agent=a.agent,
                                   not_ready=a.not_ready or None), _show_mapping))  # fmt: skip
    p.add_argument("agent")
    p.add_argument("--not-ready", action="store_true", help="log in not ready")
    for action, cmd, text in (
        ("logout", "agent.logout", "hang up the agent's leg"),
        ("ready", "agent.ready", "ready for calls"),
        ("hangup", "agent.hangup", "end the customer call (the agent goes to wrap-up)"),
    ):
        _leaf(asub, action, text, one(cmd)).add_argument("agent")
    p = _leaf(asub, "add", "add an agent (stored; the config file is not changed)",
              lambda a: CtlRequest("agent.add", _drop_none(
                  agent=a.agent, name=a.name, username=a.username, password=a.password,
                  uri=a.uri, campaigns=a.campaign), _show_mapping))  # fmt: skip
    p.add_argument("agent")
    p.add_argument("--name")
    p.add_argument("--username", help="digest user of the phone (default: the id)")
    p.add_argument("--password", help="digest password of the phone")
    p.add_argument("--uri", help="static SIP URI of a phone that does not register")
    p.add_argument("--campaign", action="append", help="a campaign they may work (repeat)")
    _leaf(asub, "remove", "remove an agent added by command", one("agent.remove")).add_argument(
        "agent"
    )
    p = _leaf(asub, "not-ready", "not ready, with a reason code",
              lambda a: CtlRequest("agent.not_ready", {"agent": a.agent, "reason": a.reason},
                                   _show_mapping))  # fmt: skip
    p.add_argument("agent")
    p.add_argument("reason")
    p = _leaf(asub, "wrapup", "enter the wrap-up code; --callback, --dnc",
              lambda a: CtlRequest("agent.wrapup", _drop_none(
                  agent=a.agent, code=a.code, callback=a.callback, mine=a.mine or None,
                  dnc=a.dnc or None), _show_mapping))  # fmt: skip
    p.add_argument("agent")
    p.add_argument("code", nargs="?", help="wrap-up code (omit during the call to note only)")
    p.add_argument("--callback", metavar="TIME", help="ISO-8601 time or delay (2h, 1d)")
    p.add_argument("--mine", action="store_true", help="the callback is for this agent")
    p.add_argument("--dnc", action="store_true", help="add the number to the DNC list")
    preview = asub.add_parser("preview", help="accept or skip the offered record")
    psub = preview.add_subparsers(dest="ctl_preview", required=True, metavar="ACTION")
    _leaf(psub, "accept", "dial the offered record", one("agent.preview_accept")).add_argument(
        "agent"
    )
    _leaf(psub, "skip", "skip the offered record", one("agent.preview_skip")).add_argument("agent")
    p = _leaf(asub, "status", "one agent, or all",
              lambda a: CtlRequest("agent.status", _drop_none(agent=a.agent),
                                   show_list))  # fmt: skip
    p.add_argument("agent", nargs="?")
    p = _leaf(asub, "history", "stored state changes",
              lambda a: CtlRequest("agent.history", _drop_none(agent=a.agent, limit=a.limit),
                                   show_list))  # fmt: skip
    p.add_argument("agent", nargs="?")
    p.add_argument("--limit", type=_positive_int, metavar="N")
    p = asub.add_parser("events", help="the events of one agent as JSON lines until Ctrl-C")
    p.add_argument("agent")
    p.set_defaults(ctl_stream=_agent_events)
    p = _leaf(sub, "callbacks", "scheduled callbacks",
              lambda a: CtlRequest("callback.list", _drop_none(campaign=a.campaign),
                                   show_list))  # fmt: skip
    p.add_argument("campaign", nargs="?")


def abandons_request(a: argparse.Namespace) -> CtlRequest:
    from engine.ctl import CtlRequest, _show_attempts

    return CtlRequest("report.abandons", {"campaign": a.campaign}, _show_attempts)
