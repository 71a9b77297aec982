"""The `outdial` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from carriers.sip.errors import SipError, SipParseError
from carriers.sip.message import Address, SipURI
from carriers.sip.parser import parse_address, parse_uri
from dsp.wav import WavError, load_media_audio
from engine.config import ConfigError, load_trunks
from engine.ctl import add_ctl_parser, run_ctl
from engine.errors import OutdialError
from engine.voice.testcall import TestCallOptions, run_test_call

T = TypeVar("T")
EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE = 0, 2, 3


class UsageError(Exception):
    """Bad arguments: printed as `outdial: error: ...`, exit 2."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _call_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "call",
        help="place one test call through a trunk and print a JSON report",
        description=(
            "Place one call and print one JSON object: result, sip_status, reason, "
            "ringing_ms, answer_ms, duration_ms, codec, rtp, dtmf_received. The call "
            "ends when the far end hangs up, when --max-duration passes, or once "
            "--play and --dtmf have been sent."
        ),
    )
    trunk = p.add_mutually_exclusive_group(required=True)
    trunk.add_argument("--trunk-uri", help="ad-hoc trunk, e.g. sip:carrier.example:5060")
    trunk.add_argument("--trunk", help="trunk name from --config")
    p.add_argument("--config", type=Path, help="daemon config file holding --trunk")
    p.add_argument("--transport", choices=["udp", "tcp"], help="override the trunk's transport")
    p.add_argument("--user", help="digest auth username")
    p.add_argument("--password", help="digest auth password")
    p.add_argument("--from", dest="from_addr", help='caller ID: "Name <sip:user@host>"')
    p.add_argument("--asserted-identity", help="P-Asserted-Identity, e.g. <sip:+12125550100@host>")
    p.add_argument("--privacy", help="Privacy header value, e.g. id")
    p.add_argument("--play", type=Path, help="WAV to play once answered (any common WAV)")
    p.add_argument("--record", type=Path, help="write what the far end sent (8 kHz WAV)")
    p.add_argument("--ring-timeout", type=_positive, default=60.0, help="seconds (default 60)")
    p.add_argument("--max-duration", type=_positive, default=30.0, help="seconds (default 30)")
    p.add_argument("--dtmf", default="", help="digits to send (RFC 4733) once answered")
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("number", help="number or user part to dial")


def _test_call_options(args: argparse.Namespace) -> TestCallOptions:
    username, password, realm, transport = args.user, args.password, None, "UDP"
    if args.trunk:
        if args.config is None:
            raise UsageError("--trunk needs --config FILE")
        trunks = load_trunks(args.config)
        if args.trunk not in trunks:
            known = ", ".join(sorted(trunks)) or "none"
            raise UsageError(f"no trunk {args.trunk!r} in {args.config} (known: {known})")
        cfg = trunks[args.trunk]
        uri, transport, realm = cfg.uri, cfg.transport, cfg.realm
        username = username or cfg.username
        password = password or cfg.password
        from_text = args.from_addr or cfg.caller_id
    else:
        try:
            parsed = parse_uri(args.trunk_uri)
        except SipParseError as exc:
            raise UsageError(f"--trunk-uri: not a SIP URI: {exc}") from exc
        if not isinstance(parsed, SipURI):
            raise UsageError(f"--trunk-uri: expected sip:host[:port], got {args.trunk_uri!r}")
        uri = parsed
        transport = (uri.param("transport") or "udp").upper()
        from_text = args.from_addr
    if args.transport:
        transport = args.transport.upper()
    if (username is None) != (password is None):
        raise UsageError("--user and --password go together")
    from_addr: Address | None = None
    if from_text:
        try:
            from_addr = parse_address(from_text)
        except SipParseError as exc:
            raise UsageError(f"--from: expected 'Name <sip:user@host>': {exc}") from exc
    pai: Address | None = None
    if args.asserted_identity:
        try:
            pai = parse_address(args.asserted_identity)
        except SipParseError as exc:
            raise UsageError(f"--asserted-identity: expected <sip:user@host>: {exc}") from exc
    play = None
    if args.play is not None:
        try:
            play = load_media_audio(args.play.read_bytes())
        except OSError as exc:
            raise UsageError(f"--play: cannot read {args.play}: {exc.strerror}") from exc
        except WavError as exc:
            raise UsageError(f"--play: {args.play}: {exc}") from exc
    if args.record is not None and not args.record.parent.exists():
        raise UsageError(f"--record: directory {args.record.parent} does not exist")
    bad = set(args.dtmf.upper()) - set("0123456789*#ABCD")
    if bad:
        raise UsageError(f"--dtmf: not DTMF digits: {''.join(sorted(bad))}")
    try:
        socket.getaddrinfo(uri.host.strip("[]"), uri.port or 5060)
    except OSError as exc:
        raise UsageError(f"trunk host {uri.host!r} does not resolve: {exc}") from exc
    return TestCallOptions(
        trunk=uri, number=args.number, transport=transport, username=username,
        password=password, realm=realm, from_addr=from_addr, play=play, record=args.record,
        ring_timeout=args.ring_timeout, max_duration=args.max_duration,
        dtmf=args.dtmf.upper(), seed=args.seed, asserted_identity=pai, privacy=args.privacy,
    )  # fmt: skip


def _run_call(args: argparse.Namespace) -> int:
    opts = _test_call_options(args)
    report = _run_async(run_test_call(opts))
    print(json.dumps(report))
    if report["result"] == "carrier_timeout":
        print(
            f"outdial: trunk {opts.trunk} did not answer the INVITE (no response within timer B)",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    return EXIT_OK


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon in the foreground",
        description="Run campaigns from the config; stop with SIGTERM or Ctrl-C.",
    )
    p.add_argument("--config", type=Path, default=Path("config/outdial.yaml"))


def _run_daemon(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.daemon import run_daemon
    from engine.logs import configure

    config = load_config(args.config)
    configure(config.log.level, config.log.format)
    return _run_async(run_daemon(config))


def _analysis_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "amd",
        help="answering-machine detection on recordings",
        description=(
            "Analyse each WAV as the audio of an answered call and print one JSON object per "
            "file: file, result (human, machine, notsure, fax, sit, silence), cause, "
            "decided_ms, beep_end_ms, sit."
        ),
    )
    p.add_argument("--mode", choices=["default", "asterisk"], default="default")
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
        help="override a detector parameter (repeatable)",
    )  # fmt: skip
    p.add_argument("files", nargs="+", type=Path)
    t = sub.add_parser(
        "tones",
        help="list DTMF, SIT, fax and call-progress tones in recordings",
        description="Print, for each WAV, its tones with their times as JSON.",
    )
    t.add_argument("files", nargs="+", type=Path)


def _simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Listed here for `outdial --help`; main() hands everything after
    # `simulate` to engine.voice.simulate_cli, which has its own parser.
    sub.add_parser(
        "simulate",
        add_help=False,
        help="compare pacing algorithms on a simulated campaign (outdial simulate --help)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="outdial", description="outdial outbound engine")
    sub = parser.add_subparsers(dest="command", required=True)
    _call_parser(sub)
    _run_parser(sub)
    add_ctl_parser(sub)
    _analysis_parsers(sub)
    _simulate_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        from engine.voice.simulate_cli import simulate_main

        return simulate_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "call":
            return _run_call(args)
        if args.command == "run":
            return _run_daemon(args)
        if args.command == "ctl":
            return run_ctl(args)
        if args.command == "amd":
            from engine.voice.amd_cli import amd_main

            return amd_main(args.files, args.mode, args.sets)
        if args.command == "tones":
            from engine.voice.analysis_cli import tones_main

            return tones_main(args.files)
    except (UsageError, ConfigError) as exc:
        print(f"outdial: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OutdialError as exc:
        print(f"outdial: error: {exc.message}", file=sys.stderr)
        return 1
    except SipError as exc:
        print(f"outdial: error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
