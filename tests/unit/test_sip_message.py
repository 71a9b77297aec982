"""SIP message layer: parser (whole, byte by byte, trailing bytes), model, serialisation,
make_response, Headers, check_request, and Hypothesis round trips parse(bytes(m)) == m."""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carriers.sip.errors import SipError, SipParseError
from carriers.sip.message import (
    AbsoluteURI,
    Address,
    CSeq,
    Headers,
    Message,
    Request,
    Response,
    SipURI,
    Via,
    get_param,
    make_response,
    reason_phrase,
    set_param,
)
from carriers.sip.parser import (
    StreamParser,
    parse,
    parse_address,
    parse_addresses,
    parse_cseq,
    parse_uri,
    parse_via,
)
from carriers.sip.validate import Rejection, check_request

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
INVITE = (
    b"INVITE sip:+15551230000@carrier.example.net:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Outdial" <sip:dialer@example.com>;tag=1928301774\r\n'
    b"To: <sip:+15551230000@carrier.example.net>\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:dialer@192.0.2.10:5060>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)
RINGING = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;received=198.51.100.7\r\n"
    b'From: "Outdial" <sip:dialer@example.com>;tag=1928301774\r\n'
    b"To: <sip:+15551230000@carrier.example.net>;tag=a6c85cf\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _stream(data: bytes, chunk: int) -> list[Message]:
    parser = StreamParser()
    out: list[Message] = []
    for i in range(0, len(data), chunk):
        out += parser.feed(data[i : i + chunk])
    return out


# --- whole, byte by byte, trailing bytes -------------------------------------------------


def test_parse_invite_whole() -> None:
    m = parse(INVITE)
    assert isinstance(m, Request)
    assert m.method == "INVITE"
    assert m.uri == SipURI(
        "carrier.example.net", "+15551230000", port=5060, params=(("transport", "udp"),)
    )
    assert m.top_via == Via(
        "UDP", "192.0.2.10", 5060, (("branch", "z9hG4bK776asdhds"), ("rport", None))
    )
    assert m.from_ == Address(SipURI("example.com", "dialer"), "Outdial", (("tag", "1928301774"),))
    assert m.to.tag is None
    assert m.call_id == "a84b4c76e66710@192.0.2.10"
    assert m.cseq == CSeq(314159, "INVITE")
    assert m.max_forwards == 70
    assert m.content_type == "application/sdp"
    assert m.headers.get_all("Allow") == ["INVITE", "ACK", "CANCEL", "BYE"]
    assert m.body == SDP


def test_parse_response_whole() -> None:
    m = parse(RINGING)
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (180, "Ringing")
    assert m.to.tag == "a6c85cf"
    assert m.top_via.param("received") == "198.51.100.7"
    assert m.body == b""


@pytest.mark.parametrize("data", [INVITE, RINGING], ids=["invite", "180"])
def test_stream_byte_by_byte_matches_datagram(data: bytes) -> None:
    expected = parse(data)
    assert _stream(data, 1) == [expected]
    assert _stream(data, 3) == [expected]


@pytest.mark.parametrize("data", [INVITE, RINGING], ids=["invite", "180"])
def test_trailing_bytes_after_content_length_are_ignored(data: bytes) -> None:
    assert parse(data + b"garbage that is not SIP\r\n\r\n") == parse(data)


def test_leading_crlf_ignored() -> None:
    assert parse(b"\r\n\r\n" + INVITE) == parse(INVITE)


def test_stream_several_messages_and_keepalives() -> None:
    # RFC 5626 3.5.1: CRLF keep-alives between messages.
    data = b"\r\n\r\n" + INVITE + b"\r\n" + RINGING + b"\r\n\r\n" + INVITE
    for chunk in (1, 2, 17, len(data)):
        assert _stream(data, chunk) == [parse(INVITE), parse(RINGING), parse(INVITE)]


def test_stream_waits_for_the_body() -> None:
    parser = StreamParser()
    assert parser.feed(INVITE[:-5]) == []
    assert parser.feed(INVITE[-5:]) == [parse(INVITE)]


def test_stream_requires_content_length() -> None:
    data = RINGING.replace(b"Content-Length: 0\r\n", b"")
    assert parse(data).body == b""  # fine on a datagram
    with pytest.raises(SipParseError) as info:
        StreamParser().feed(data)
    assert info.value.header == "Content-Length"


def test_stream_error_is_sticky() -> None:
    parser = StreamParser()
    with pytest.raises(SipParseError):
        parser.feed(b"BAD  LINE\r\n\r\n")
    with pytest.raises(SipParseError):
        parser.feed(INVITE)


def test_stream_limits() -> None:
    with pytest.raises(SipParseError) as info:
        StreamParser().feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 70_000)
    assert info.value.status == 513
    big = RINGING.replace(b"Content-Length: 0", b"Content-Length: 2000000")
    with pytest.raises(SipParseError):
        StreamParser().feed(big)
    ok = StreamParser().feed(
        b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 60_000 + b"\r\nl: 0\r\n\r\n"
    )
    assert len(ok) == 1


# --- header names, compact forms, folding, lists ----------------------------------------

# RFC 3261 7.3.3 and RFCs 3265, 3515, 3892, 4028.
COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
    "x": "Session-Expires",
}  # fmt: skip


@pytest.mark.parametrize(("short", "long"), COMPACT.items())
def test_compact_forms_expand(short: str, long: str) -> None:
    h = Headers([(short.upper(), "1")])
    assert list(h) == [(long, "1")]
    assert h.get(short) == "1" and h.get(long.upper()) == "1" and long.lower() in h


def test_compact_headers_in_a_message() -> None:
    data = (
        b"OPTIONS sip:a@example.com SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
        b"f: <sip:b@example.com>;tag=9\r\nt: sip:a@example.com\r\ni: cid\r\n"
        b"CSeq: 2 OPTIONS\r\nm: <sip:b@h>\r\nk: timer\r\nc: text/plain\r\nl: 2\r\n\r\nhi"
    )
    m = parse(data)
    assert [name for name, _ in m.headers] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Supported", "Content-Type",
    ]  # fmt: skip
    assert (m.call_id, m.from_.tag, m.body) == ("cid", "9", b"hi")


def test_well_known_capitalisation_and_unknown_names() -> None:
    h = Headers([("call-id", "1"), ("CSEQ", "1 A"), ("www-authenticate", "x"), ("X-Odd-Case", "y")])
    h.add("p-asserted-identity", "<sip:a@b>")
    h.add("record-route", "<sip:p;lr>")
    assert [n for n, _ in h] == [
        "Call-ID", "CSeq", "WWW-Authenticate", "X-Odd-Case", "P-Asserted-Identity", "Record-Route",
    ]  # fmt: skip
    assert h.get("x-odd-case") == "y"


def test_folding_and_lws_around_colon() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\nVia  :\r\n  SIP/2.0/UDP\r\n\th;branch=z9hG4bK2\r\n"
        b"From\t: <sip:c@d>\r\n ;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1\r\n OPTIONS\r\n"
        b"Subject: one\r\n two\r\nl: 0\r\n\r\n"
    )
    m = parse(data)
    assert (m.top_via.transport, m.top_via.host, m.top_via.branch) == ("UDP", "h", "z9hG4bK2")
    assert m.from_.tag == "1"
    assert m.cseq == CSeq(1, "OPTIONS")
    subject = m.headers.get("Subject")
    assert subject is not None and subject.split() == ["one", "two"]


def test_continuation_before_any_header_is_an_error() -> None:
    with pytest.raises(SipParseError):
        parse(b"OPTIONS sip:a@b SIP/2.0\r\n folded\r\nl: 0\r\n\r\n")


def test_comma_lists_split_at_top_level_only() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/TCP b:5061;branch=z9hG4bK2\r\n"
        b'Contact: "Doe, John" <sip:j@h1>;q=0.5, <sip:x@h2;a=b>;p="1,2"\r\n'
        b"Route: <sip:p1;lr>,<sip:p2;lr>\r\n"
        b"Supported: timer,100rel\r\n"
        b'WWW-Authenticate: Digest realm="a", nonce="b"\r\n'
        b"From: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
    )
    m = parse(data)
    assert m.headers.get_all("Via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/TCP b:5061;branch=z9hG4bK2",
    ]
    assert [(v.host, v.port) for v in m.via] == [("a", None), ("b", 5061)]
    assert [c.display_name for c in m.contact] == ["Doe, John", None]
    assert m.contact[1].param("p") == '"1,2"'
    assert [str(r.uri) for r in m.route] == ["sip:p1;lr", "sip:p2;lr"]
    assert m.headers.get_all("Supported") == ["timer", "100rel"]
    assert m.headers.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']


def test_contact_star_is_not_split_and_has_no_addresses() -> None:
    data = (
        b"REGISTER sip:r SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@r>;tag=1\r\n"
        b"To: <sip:a@r>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\nl: 0\r\n\r\n"
    )
    m = parse(data)
    assert m.headers.get_all("Contact") == ["*"]
    assert m.contact == []


def test_added_list_values_are_stored_as_given() -> None:
    h = Headers([("Allow", "INVITE, BYE")])
    assert h.get_all("Allow") == ["INVITE, BYE"]
    r = Request("OPTIONS", SipURI("h"), Headers([("Contact", "<sip:a@b>, <sip:c@d>")]))
    assert [a.uri for a in r.contact] == [SipURI("b", "a"), SipURI("d", "c")]


# --- quoted strings, addresses, URIs, IPv6 ------------------------------------------------


def test_quoted_display_name_escapes() -> None:
    a = parse_address('"a \\"b\\" \\\\ c" <sip:x@y>;tag=1')
    assert a.display_name == 'a "b" \\ c'
    assert str(a) == '"a \\"b\\" \\\\ c" <sip:x@y>;tag=1'
    assert parse_address(str(a)) == a


def test_address_forms() -> None:
    assert parse_address("sip:a@b;tag=1") == Address(SipURI("b", "a"), None, (("tag", "1"),))
    assert parse_address("<sip:a@b;lr>") == Address(SipURI("b", "a", params=(("lr", None),)))
    assert parse_address("Bob Smith<sip:a@b>").display_name == "Bob Smith"
    assert parse_address('""<tel:+1555>') == Address(AbsoluteURI("tel", "+1555"), "")
    assert str(Address(SipURI("b", "a"))) == "<sip:a@b>"
    assert parse_addresses("<sip:a@b>, sip:c@d") == [
        Address(SipURI("b", "a")),
        Address(SipURI("d", "c")),
    ]


@pytest.mark.parametrize(
    "text",
    [
        '"unterminated <sip:a@b>',
        "< sip:a@b>",
        "<sip:a@b",
        "sip:a@b?x=y",
        "Bell, Alexander <sip:a@b>",
        "<sip:a@b>;;",
        "<sip:a@b> junk",
        "sip:a b@c",
        "",
        '"x" sip:a@b',
    ],
)
def test_bad_addresses(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_address(text)


def test_uri_forms() -> None:
    u = parse_uri("SIPS:alice:secret@Example.COM:5061;transport=tls;lr?subject=hi&priority=urgent")
    assert u == SipURI(
        "Example.COM", "alice", "secret", 5061, (("transport", "tls"), ("lr", None)),
        (("subject", "hi"), ("priority", "urgent")), "sips",
    )  # fmt: skip
    assert u.param("TRANSPORT") == "tls" and u.param("lr") == "" and u.param("x") is None
    assert str(SipURI("10.0.0.1", "alice", port=5060, params=(("transport", "udp"),))) == (
        "sip:alice@10.0.0.1:5060;transport=udp"
    )
    assert parse_uri("tel:+1-201-555-0123;phone-context=x") == AbsoluteURI(
        "tel", "+1-201-555-0123;phone-context=x"
    )
    escaped = parse_uri("sip:%61lice@h")
    assert isinstance(escaped, SipURI) and escaped.user_unescaped == "alice"


@pytest.mark.parametrize(
    "text",
    ["sip:", "sip:a@", "sip:a b@c", "sip:h:99999", "sip:h;=x", "sip:[::g]", "sip:h?", "<sip:h>",
     "sip:a%zz@h", "1tel:x", "sip:a@b@c", "tel:", "x:a b"],
)  # fmt: skip
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_ipv6_in_uri_and_via() -> None:
    data = (
        b"OPTIONS sip:alice@[2001:db8::1]:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK1;received=2001:db8::10\r\n"
        b"From: <sip:b@[::1]>;tag=1\r\nTo: <sip:alice@[2001:db8::1]>\r\nCall-ID: x\r\n"
        b"CSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
    )
    m = parse(data)
    assert isinstance(m, Request) and isinstance(m.uri, SipURI)
    assert (m.uri.host, m.uri.port, m.uri.host_port) == ("2001:db8::1", 5060, "[2001:db8::1]:5060")
    assert str(m.uri) == "sip:alice@[2001:db8::1]:5060"
    via = m.top_via
    assert (via.host, via.port, via.param("received")) == ("2001:db8::9", 5070, "2001:db8::10")
    assert str(via) == "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK1;received=2001:db8::10"
    assert m.from_.uri == SipURI("::1", "b")
    assert parse(bytes(m)) == m


def test_via_forms() -> None:
    (v,) = parse_via("SIP / 2.0 / udp host.example.com : 5060 ; branch = z9hG4bKx ; rport")
    assert v == Via("UDP", "host.example.com", 5060, (("branch", "z9hG4bKx"), ("rport", None)))
    assert str(v) == "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bKx;rport"
    assert v.branch == "z9hG4bKx" and v.with_param("rport", "5062").param("rport") == "5062"
    for bad in (
        "SIP/2.0 UDP h",
        "SIP/3.0/UDP h",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP h;",
        "SIP/2.0/UDP h:x",
    ):
        with pytest.raises(SipParseError) as info:
            parse_via(bad)
        assert info.value.header == "Via"


def test_cseq_forms() -> None:
    assert parse_cseq("0009\r\n INVITE".replace("\r\n", "")) == CSeq(9, "INVITE")
    assert str(CSeq(1, "BYE")) == "1 BYE"
    assert parse_cseq(str(2**31 - 1) + " ACK").number == 2**31 - 1
    for bad in (str(2**31) + " ACK", "1", "x INVITE", "-1 INVITE", "1 IN VITE"):
        with pytest.raises(SipParseError):
            parse_cseq(bad)


def test_params_helpers() -> None:
    params = (("Tag", "a"), ("lr", None))
    assert (
        get_param(params, "tag") == "a"
        and get_param(params, "LR") == ""
        and get_param(params, "x") is None
    )
    assert set_param(params, "TAG", "b") == (("TAG", "b"), ("lr", None))
    assert set_param(params, "q", "1") == (("Tag", "a"), ("lr", None), ("q", "1"))
    assert Address(SipURI("h")).with_param("tag", "x").tag == "x"


# --- parse errors ------------------------------------------------------------------------

_OK_HEAD = (
    "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\n"
    "To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n"
)


def test_reference_message_parses() -> None:
    assert isinstance(parse((_OK_HEAD + "l: 0\r\n\r\n").encode()), Request)


@pytest.mark.parametrize(
    ("extra", "header"),
    [
        ("Max-Forwards: 256", "Max-Forwards"),
        ("Max-Forwards: -1", "Max-Forwards"),
        ("Expires: 4294967296", "Expires"),
        ("Content-Length: 4294967296", "Content-Length"),
        ("Content-Length: 1x", "Content-Length"),
        ("Content-Length: 5", "Content-Length"),  # more than the data
        ("Date: Sat, 15 Oct 2005 04:44:56 UTC", "Date"),
        ("Date: Sat, 15 Oct 2005 25:44:56 GMT", "Date"),
        ("Date: sat, 15 Oct 2005 04:44:56 GMT", "Date"),  # RFC 3261 25.1: case-sensitive
        ("Date: Sat, 15 Oct 05 04:44:56 GMT", "Date"),
        ("Contact: <sip:a@b", "Contact"),
        ("Route: sip:a@b, ,sip:c@d", "Route"),
        ("Record-Route: <sip:p;lr>;;", "Record-Route"),
        ("Call-ID: a b", "Call-ID"),
        ("Call-ID:", "Call-ID"),
        ("To: <sip:x@y>", "To"),  # second To is fine to parse; see below
        ("Bad Name: x", None),
        ("NoColon", None),
        ("\xe9t\xe9: x", None),
    ],
)
def test_header_errors(extra: str, header: str | None) -> None:
    data = (_OK_HEAD + extra + "\r\n\r\n").encode()
    if extra.startswith("To:"):
        assert parse(data).headers.get_all("To") == ["<sip:a@b>", "<sip:x@y>"]
        return
    with pytest.raises(SipParseError) as info:
        parse(data)
    assert info.value.header == header
    assert info.value.status == 400
    assert "line 7" in str(info.value) or header in (None, "Content-Length")


@pytest.mark.parametrize(
    "start",
    [
        "OPTIONS  sip:a@b SIP/2.0",
        "OPTIONS sip:a@b SIP/2.0 ",
        "OPTIONS sip:a@b",
        "OPTIONS <sip:a@b> SIP/2.0",
        "OPTIONS sip:a@b?x=y SIP/2.0",
        "OPT:IONS sip:a@b SIP/2.0",
        "SIP/2.0 99 Low",
        "SIP/2.0 700 High",
        "SIP/2.0 2000 OK",
        "SIP/2.0  200 OK",
        "SIP/2.0 2x0 OK",
        "HTTP/1.1 200 OK",
        "",
    ],
)
def test_start_line_errors(start: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse((start + "\r\nl: 0\r\n\r\n").encode())
    assert info.value.header is None


def test_version_errors_say_505() -> None:
    with pytest.raises(SipParseError) as info:
        parse(b"OPTIONS sip:a@b SIP/3.0\r\nl: 0\r\n\r\n")
    assert info.value.status == 505


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0",  # no end of head
        b"OPTIONS sip:a@b SIP/2.0\nl: 0\r\n\r\n",  # bare LF
        b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\xfe\r\n\r\n",  # not UTF-8
        b"OPTIONS sip:a@b SIP/2.0\r\nX: \xed\xa0\x80\r\n\r\n",  # UTF-8-encoded surrogate
        b"OPTIONS sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n",  # bare CR
    ],
)
def test_framing_errors(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse(data)


def test_utf8_allowed_in_reason_and_quoted_strings() -> None:
    data = (
        "SIP/2.0 486 Occupé\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        'From: "Jörg" <sip:j@h>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n'
    ).encode()
    m = parse(data)
    assert isinstance(m, Response)
    assert (m.reason, m.from_.display_name) == ("Occupé", "Jörg")


def test_cseq_method_must_match_request() -> None:
    with pytest.raises(SipParseError) as info:
        parse((_OK_HEAD.replace("1 OPTIONS", "1 INVITE") + "\r\n").encode())
    assert info.value.header == "CSeq"


def test_no_content_length_body_is_rest_of_datagram() -> None:
    assert parse((_OK_HEAD + "\r\nhello\r\n").encode()).body == b"hello\r\n"


def test_errors_are_sip_errors() -> None:
    assert issubclass(SipParseError, SipError)
    e = SipParseError("x", status=420, header="Require")
    assert (e.status, e.header, str(e)) == (420, "Require", "x")


# --- typed accessors and serialisation -----------------------------------------------------


def test_accessors_name_missing_or_malformed_headers() -> None:
    r = Request("OPTIONS", SipURI("h"), Headers([("To", "<sip:a@b"), ("CSeq", "x")]))
    for view, header in (("from_", "From"), ("to", "To"), ("cseq", "CSeq"), ("call_id", "Call-ID"),
                         ("top_via", "Via")):  # fmt: skip
        with pytest.raises(SipParseError) as info:
            getattr(r, view)
        assert info.value.header == header
    assert r.via == [] and r.contact == [] and r.max_forwards is None and r.content_type is None


def test_content_type_view() -> None:
    r = Request("X", SipURI("h"), Headers([("c", "Application/SDP ; charset=x")]))
    assert r.content_type == "application/sdp"


def test_serialise_writes_content_length_last() -> None:
    h = Headers([("Content-Length", "999"), ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("l", "3")])
    h.add("Max-Forwards", "70")
    data = bytes(Request("BYE", SipURI("h", "u"), h, b"abc"))
    assert data == (
        b"BYE sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n"
        b"Content-Length: 3\r\n\r\nabc"
    )
    assert bytes(Response(100, "", Headers())) == b"SIP/2.0 100 \r\nContent-Length: 0\r\n\r\n"


def test_parsed_message_round_trips_and_drops_single_content_length() -> None:
    m = parse(INVITE)
    assert "Content-Length" not in m.headers
    assert parse(bytes(m)) == m
    assert bytes(parse(bytes(m))) == bytes(m)


# --- Headers ---------------------------------------------------------------------------


def test_headers_operations() -> None:
    h = Headers([("Via", "v1"), ("To", "t"), ("Via", "v2"), ("X-A", "1")])
    assert len(h) == 4 and h.get("via") == "v1" and h.get_all("v") == ["v1", "v2"]
    h.prepend("Via", "v0")
    assert [v for n, v in h if n == "Via"] == ["v0", "v1", "v2"]
    assert [n for n, _ in h] == ["Via", "Via", "To", "Via", "X-A"]
    h.prepend("Route", "r")  # no Route yet: at the start
    assert next(iter(h)) == ("Route", "r")
    h.set("via", "only")
    assert [n for n, _ in h] == ["Route", "Via", "To", "X-A"] and h.get_all("Via") == ["only"]
    h.set("Subject", "s")
    assert list(h)[-1] == ("Subject", "s")
    c = h.copy()
    h.remove("x-a")
    assert "X-A" not in h and "X-A" in c and c != h
    assert 42 not in h
    assert h.get("absent") is None and h.get_all("absent") == []
    h.remove("absent")
    assert Headers([("i", "1")]) == Headers([("Call-ID", "1")])
    assert Headers([("A", "1"), ("B", "2")]) != Headers([("B", "2"), ("A", "1")])


@pytest.mark.parametrize(
    ("name", "value"), [("X", "a\r\nVia: injected"), ("X", "a\nb"), ("Bad Name", "x"), ("", "x")]
)
def test_headers_reject_injection(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=r"header"):
        Headers().add(name, value)


# --- make_response and reason phrases ----------------------------------------------------


def test_make_response_copies_rfc3261_8_2_6_headers() -> None:
    request = parse(
        INVITE.replace(b"Max-Forwards", b"Via: SIP/2.0/UDP p;branch=z9hG4bK9\r\nMax-Forwards")
    )
    assert isinstance(request, Request)
    r = make_response(request, 180, to_tag="tt", headers=[("Contact", "<sip:me@h>")])
    assert (r.status, r.reason) == (180, "Ringing")
    assert r.headers.get_all("Via") == request.headers.get_all("Via") and len(r.via) == 2
    assert r.from_ == request.from_ and r.call_id == request.call_id and r.cseq == request.cseq
    assert r.to.tag == "tt" and r.to.uri == request.to.uri
    assert [n for n, _ in r.headers] == ["Via", "Via", "From", "To", "Call-ID", "CSeq", "Contact"]
    assert "Content-Type" not in r.headers and r.body == b""
    assert make_response(request, 200, "Fine", body=b"x").reason == "Fine"
    assert parse(bytes(r)) == r


def test_make_response_keeps_existing_to_tag_and_handles_addr_spec() -> None:
    request = Request("BYE", SipURI("h"), Headers([("To", "sip:a@b;tag=old"), ("CSeq", "2 BYE")]))
    assert make_response(request, 200, to_tag="new").to.tag == "old"
    request.headers.set("To", "sip:a@b")
    to = make_response(request, 200, to_tag="new").to
    assert to.tag == "new" and to.uri == SipURI("b", "a")
    # a request missing mandatory headers can still be answered (RFC 4475 3.3.1)
    bare = make_response(Request("INVITE", SipURI("h"), Headers()), 400)
    assert bare.reason == "Bad Request" and len(bare.headers) == 0
    with pytest.raises(ValueError, match="range"):
        make_response(request, 99)


@pytest.mark.parametrize(
    ("code", "phrase"),
    [(100, "Trying"), (180, "Ringing"), (181, "Call Is Being Forwarded"), (183, "Session Progress"),
     (199, "Early Dialog Terminated"), (200, "OK"), (204, "No Notification"),
     (302, "Moved Temporarily"), (401, "Unauthorized"), (407, "Proxy Authentication Required"),
     (408, "Request Timeout"), (415, "Unsupported Media Type"), (416, "Unsupported URI Scheme"),
     (420, "Bad Extension"), (422, "Session Interval Too Small"),
     (481, "Call/Transaction Does Not Exist"), (486, "Busy Here"), (487, "Request Terminated"),
     (488, "Not Acceptable Here"), (494, "Security Agreement Required"),
     (503, "Service Unavailable"), (504, "Server Time-out"), (580, "Precondition Failure"),
     (600, "Busy Everywhere"), (603, "Decline"), (604, "Does Not Exist Anywhere")],
)  # fmt: skip
def test_reason_phrases(code: int, phrase: str) -> None:
    assert reason_phrase(code) == phrase


def test_unknown_codes_get_their_class_phrase() -> None:
    assert reason_phrase(499) == reason_phrase(498) != ""
    assert reason_phrase(499) != reason_phrase(599)


# --- check_request ---------------------------------------------------------------------


def _request(extra: str = "", method: str = "INVITE", body: bytes = b"") -> Request:
    head = _OK_HEAD.replace("OPTIONS", method) + extra
    m = parse(head.encode() + b"\r\n" + body)
    assert isinstance(m, Request)
    return m


def test_check_request_accepts_a_good_invite() -> None:
    assert check_request(_request("Content-Type: application/sdp\r\n", body=SDP)) is None
    assert check_request(_request("Require: timer, 100rel\r\n")) is None
    assert check_request(_request("Accept: application/*\r\n")) is None
    assert check_request(_request("Accept: */*, text/plain;q=0\r\n")) is None


def test_check_request_rejections() -> None:
    assert check_request(_request("Require: foo\r\n")) == Rejection(
        420, "Bad Extension", (("Unsupported", "foo"),)
    )
    assert check_request(_request("Require: foo\r\n"), supported=frozenset({"foo"})) is None
    assert check_request(_request("Proxy-Require: foo\r\n")) is None
    assert check_request(_request("Require: foo\r\n", method="CANCEL")) is None
    assert check_request(_request("Accept: application/sdp;q=0\r\n")) == Rejection(
        406, "Not Acceptable"
    )
    assert check_request(_request("Accept:\r\n", method="OPTIONS")) == Rejection(
        406, "Not Acceptable"
    )
    assert check_request(_request("Accept: text/plain\r\n", method="BYE")) is None
    rejection = check_request(_request("Content-Type: text/html\r\n", body=b"<p>"))
    assert rejection is not None and rejection.status == 415
    missing_type = check_request(_request(body=b"v=0"))
    assert missing_type is not None and missing_type.status == 400
    two_ct = check_request(_request("Content-Type: a/b\r\nContent-Type: a/b\r\n"))
    assert two_ct is not None and "Content-Type" in two_ct.reason


def test_check_request_schemes_and_ack() -> None:
    tel = Request("INVITE", AbsoluteURI("tel", "+15551230000"), _request().headers)
    assert check_request(tel) is None
    mailto = Request("INVITE", AbsoluteURI("mailto", "a@b"), _request().headers)
    rejection = check_request(mailto)
    assert rejection is not None and rejection.status == 416
    # RFC 3261 17: an ACK is never answered, whatever is wrong with it.
    assert check_request(Request("ACK", AbsoluteURI("mailto", "a@b"), Headers())) is None


def test_check_request_hand_built_malformed() -> None:
    h = _request().headers.copy()
    h.set("From", "<sip:broken")
    rejection = check_request(Request("INVITE", SipURI("h"), h))
    assert rejection is not None and rejection.status == 400 and "From" in rejection.reason


# --- Hypothesis round trips ----------------------------------------------------------------

UNRESERVED = string.ascii_letters + string.digits + "-_.!~*'()"
TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
CALL_ID_CHARS = TOKEN_CHARS + '()<>:\\"/[]?{}'
ROUND_TRIP = settings(
    max_examples=int(os.environ.get("OUTDIAL_ROUNDTRIP_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _chars(alphabet: str, min_size: int = 1, max_size: int = 8) -> st.SearchStrategy[str]:
    escape = st.integers(0, 255).map(lambda b: f"%{b:02X}") | st.integers(0, 255).map(
        lambda b: f"%{b:02x}"
    )
    return st.lists(
        st.sampled_from(list(alphabet)) | escape, min_size=min_size, max_size=max_size
    ).map("".join)


# Any character UTF-8 can carry, except CR and LF (which quoted-pair cannot carry either).
TEXT_CHARS = st.characters(codec="utf-8", exclude_characters="\r\n")
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=10)
hosts = st.one_of(
    st.from_regex(r"\A[a-z0-9]([a-z0-9_-]{0,8}[a-z0-9])?(\.[a-z][a-z0-9-]{0,6}){0,3}\Z"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
ports = st.none() | st.integers(0, 65535)
uri_params = st.lists(
    st.tuples(_chars(UNRESERVED + "[]/:&+$"), st.none() | _chars(UNRESERVED + "[]/:&+$")),
    max_size=3,
).map(tuple)
uri_headers = st.lists(
    st.tuples(_chars(UNRESERVED + "[]/?:+$"), _chars(UNRESERVED + "[]/?:+$", min_size=0)),
    max_size=2,
).map(tuple)


@st.composite
def sip_uris(draw: st.DrawFn, with_headers: bool = True) -> SipURI:
    user = draw(st.none() | _chars(UNRESERVED + "&=+$,;?/"))
    password = None if user is None else draw(st.none() | _chars(UNRESERVED + "&=+$,", 0))
    return SipURI(
        draw(hosts), user, password, draw(ports), draw(uri_params),
        draw(uri_headers) if with_headers else (), draw(st.sampled_from(["sip", "sips"])),
    )  # fmt: skip


absolute_uris = st.builds(
    AbsoluteURI,
    st.from_regex(r"\A[a-z][a-z0-9+.-]{0,8}\Z").filter(lambda s: s not in ("sip", "sips")),
    _chars(UNRESERVED + ";/?:@&=+$,"),
)
quoted_values = st.text(TEXT_CHARS, max_size=8).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
gen_params = st.lists(
    st.tuples(
        tokens, st.none() | st.text(TOKEN_CHARS + ":[]", min_size=1, max_size=8) | quoted_values
    ),
    max_size=3,
).map(tuple)
display_names = st.none() | st.text(TEXT_CHARS, max_size=12)
addresses = st.builds(Address, sip_uris() | absolute_uris, display_names, gen_params)
vias = st.builds(
    Via,
    st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"]) | tokens.map(str.upper),
    hosts,
    ports,
    st.tuples(st.tuples(st.just("branch"), tokens.map(lambda t: "z9hG4bK" + t))).flatmap(
        lambda branch: gen_params.map(lambda rest: branch + rest)
    ),
)
methods = st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "PRACK", "UPDATE"]) | tokens
call_ids = st.tuples(
    st.text(CALL_ID_CHARS, min_size=1, max_size=12),
    st.none() | st.text(CALL_ID_CHARS, min_size=1, max_size=12),
).map(lambda p: p[0] if p[1] is None else f"{p[0]}@{p[1]}")
free_text = st.text(TEXT_CHARS, max_size=20).map(lambda s: s.strip(" \t"))
dates = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC),
).map(lambda d: format_datetime(d, usegmt=True))


@dataclass(frozen=True)
class Parts:
    """The values a generated message was built from, to compare with its typed views."""

    vias: list[Via]
    from_: Address
    to: Address
    call_id: str
    cseq: CSeq
    contacts: list[Address]
    routes: list[Address]
    fields: list[tuple[str, str]]


@st.composite
def header_sets(draw: st.DrawFn, method: str) -> Parts:
    via_list = draw(st.lists(vias, min_size=1, max_size=3))
    from_ = draw(addresses).with_param("tag", draw(tokens))
    to, call_id = draw(addresses), draw(call_ids)
    cseq = CSeq(draw(st.integers(0, 2**31 - 1)), method)
    contacts, routes = draw(st.lists(addresses, max_size=2)), draw(st.lists(addresses, max_size=2))
    fields = [("Via", str(v)) for v in via_list]
    fields += [("From", str(from_)), ("To", str(to)), ("i", call_id), ("CSeq", str(cseq))]
    fields += [("m", str(c)) for c in contacts] + [("Route", str(r)) for r in routes]
    fields += [("Supported", t) for t in draw(st.lists(tokens, max_size=2))]
    fields += [("X-" + n, v) for n, v in draw(st.lists(st.tuples(tokens, free_text), max_size=3))]
    if draw(st.booleans()):
        fields.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    if draw(st.booleans()):
        fields.append(("Expires", str(draw(st.integers(0, 2**32 - 1)))))
    if draw(st.booleans()):
        fields.append(("Date", draw(dates)))
    shuffled = list(draw(st.permutations(fields)))

    def in_order(names: tuple[str, ...], values: list[Address] | list[Via]) -> list[Any]:
        by_text = {str(v): v for v in values}  # equal text, equal value
        return [by_text[v] for n, v in shuffled if n in names]

    return Parts(
        in_order(("Via",), via_list), from_, to, call_id, cseq,
        in_order(("m",), contacts), in_order(("Route",), routes), shuffled,
    )  # fmt: skip


bodies = st.binary(max_size=120)
reasons = st.text(TEXT_CHARS, max_size=20)


@st.composite
def requests(draw: st.DrawFn) -> tuple[Request, Parts]:
    method = draw(methods)
    parts = draw(header_sets(method))
    body = draw(bodies)
    fields = parts.fields + ([("Content-Type", "application/sdp")] if body else [])
    uri = draw(sip_uris(with_headers=False) | absolute_uris)
    return Request(method, uri, Headers(fields), body), parts


@st.composite
def responses(draw: st.DrawFn) -> tuple[Response, Parts]:
    parts = draw(header_sets(draw(methods)))
    status = draw(st.integers(100, 699))
    return Response(status, draw(reasons), Headers(parts.fields), draw(bodies)), parts


def _check_views(m: Message, parts: Parts) -> None:
    assert m.via == parts.vias
    assert m.from_ == parts.from_ and m.to == parts.to
    assert m.call_id == parts.call_id and m.cseq == parts.cseq
    assert m.contact == parts.contacts and m.route == parts.routes


@ROUND_TRIP
@given(requests())
def test_request_round_trip(case: tuple[Request, Parts]) -> None:
    request, parts = case
    data = bytes(request)
    parsed = parse(data)
    assert parsed == request
    _check_views(parsed, parts)
    assert isinstance(parsed, Request)
    assert parse(data + b"trailing junk") == request
    assert _stream(data, 1) == [request]


@ROUND_TRIP
@given(responses())
def test_response_round_trip(case: tuple[Response, Parts]) -> None:
    response, parts = case
    parsed = parse(bytes(response))
    assert parsed == response
    _check_views(parsed, parts)
    assert _stream(bytes(response) * 2, 64) == [response, response]


@ROUND_TRIP
@given(sip_uris() | absolute_uris)
def test_uri_round_trip(uri: SipURI | AbsoluteURI) -> None:
    assert parse_uri(str(uri)) == uri


@ROUND_TRIP
@given(addresses)
def test_address_round_trip(address: Address) -> None:
    assert parse_address(str(address)) == address
    assert parse_addresses(f"{address}, {address}") == [address, address]


@ROUND_TRIP
@given(st.lists(vias, min_size=1, max_size=3))
def test_via_round_trip(via_list: list[Via]) -> None:
    assert parse_via(", ".join(str(v) for v in via_list)) == via_list
