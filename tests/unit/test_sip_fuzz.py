"""Fuzzing: whatever the input, parse() and StreamParser raise nothing but SipParseError.

Seeds are the RFC 4475 vectors (when the shared folder is present) and a few messages
written here; Hypothesis mutates them with byte flips, truncations, insertions, deletions
and line shuffles, and also builds SIP-looking text from grammar fragments. Set
OUTDIAL_FUZZ_EXAMPLES to raise the budget for a longer run.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carriers.sip.errors import SipParseError
from carriers.sip.message import Message, Request
from carriers.sip.parser import StreamParser, parse
from carriers.sip.validate import check_request

EXAMPLES = int(os.environ.get("OUTDIAL_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_BUILTIN = [
    b"INVITE sip:+15551230000@carrier.example.net;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bKabc;rport, SIP/2.0/TCP h;branch=x\r\n"
    b'From: "Dialer \\"1\\"" <sip:dialer@example.com>;tag=a1\r\n'
    b"To: <sip:+15551230000@carrier.example.net>\r\n"
    b"Call-ID: 1234@host\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
    b'Contact: <sip:d@[2001:db8::10]:5060>;expires=60, "x, y" <sips:u@h>;q=0.5\r\n'
    b"Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>\r\n"
    b"Date: Sat, 15 Oct 2005 04:44:56 GMT\r\nExpires: 30\r\n"
    b"Accept: application/sdp;q=1, */*;q=0\r\nRequire: timer\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n",
    b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: sip:c@d;tag=2\r\nCall-ID: x\r\nCSeq: 7 INVITE\r\n"
    b"Record-Route: <sip:rr@e;lr>\r\nl: 0\r\n\r\n",
]


def _seeds() -> list[bytes]:
    folder = Path(__file__).resolve().parents[3] / "shared" / "sip-torture" / "rfc4475"
    env = os.environ.get("OUTDIAL_SHARED")
    if not folder.is_dir() and env:
        folder = Path(env) / "sip-torture" / "rfc4475"
    vectors = sorted(folder.glob("*.dat")) if folder.is_dir() else []
    return _BUILTIN + [p.read_bytes() for p in vectors]


SEEDS = _seeds()


def _exercise(data: bytes) -> None:
    """Parse as a datagram and as a stream in odd chunks; touch every typed view."""
    try:
        message = parse(data)
    except SipParseError:
        pass
    else:
        _touch(message)
    parser = StreamParser()
    try:
        for i in range(0, len(data), 13):
            for message in parser.feed(data[i : i + 13]):
                _touch(message)
    except SipParseError:
        pass


def _touch(message: Message) -> None:
    # Eager validation on parse means these must not raise for the fields validated;
    # the optional ones may be absent (SipParseError then).
    for view in ("via", "contact", "route", "record_route", "max_forwards", "content_type"):
        try:
            getattr(message, view)
        except SipParseError:
            pass
    for view in ("top_via", "from_", "to", "call_id", "cseq"):
        try:
            getattr(message, view)
        except SipParseError as exc:  # only "missing", and it names the header
            assert exc.header is not None, view  # noqa: PT017
    if isinstance(message, Request):
        check_request(message)
    assert isinstance(bytes(message), bytes)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    _exercise(data)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_after_a_start_line(tail: bytes) -> None:
    _exercise(b"OPTIONS sip:a@b SIP/2.0\r\n" + tail)
    _exercise(b"SIP/2.0 200 OK\r\nVia: " + tail)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "dup", "swap"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            junk = draw(
                st.sampled_from([b" ", b"\r\n", b"\r\n ", b",", b";", b":", b'"', b"<", b">",
                                 b"\\", b"%", b"@", b"\x00", b"\xff", b"\xc3", b"=", b"["])
                | st.binary(min_size=1, max_size=4)
            )  # fmt: skip
            data[pos:pos] = junk
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "dup":
            end = min(len(data), pos + draw(st.integers(1, 40)))
            data[pos:pos] = data[pos:end]
        elif kind == "swap":
            lines = bytes(data).split(b"\r\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


@FUZZ
@given(_mutated())
def test_mutated_vectors(data: bytes) -> None:
    _exercise(data)


_FRAGMENTS = [
    "INVITE", "SIP/2.0", "SIP/2.0 ", " ", "  ", "\t", "\r\n", "\r\n ", ":", ";", ",", "=", "<",
    ">", '"', "\\", "@", "?", "&", "%", "%4", "%41", "[", "]", "[::1]", "::", "sip:", "sips:",
    "tel:", "a", "host", "5060", "99999", "0", "-1", "4294967296", "2147483648", "256",
    "Via", "v", "From", "f", "To", "t", "Contact", "m", "*", "Route", "Record-Route", "CSeq",
    "Call-ID", "i", "Max-Forwards", "Expires", "Date", "Content-Length", "l", "Content-Type",
    "c", "Require", "Accept", "branch", "tag", "lr", "SIP/2.0/UDP", "application/sdp",
    "Sat, 15 Oct 2005 04:44:56 GMT", "é", "\x00", "\x7f",
]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60))
def test_grammar_fragments(parts: list[str]) -> None:
    text = "".join(parts)
    _exercise(text.encode("utf-8"))
    _exercise(("OPTIONS sip:x@y SIP/2.0\r\n" + text + "\r\n\r\n").encode("utf-8"))
