"""RFC 4475 torture vectors: every file in shared/sip-torture/rfc4475 against the parser.

Expectations come from the text of RFC 4475 (section numbers in INDEX.tsv), checked
against the raw bytes of each vector rather than against the parser's own output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from carriers.sip.errors import SipParseError
from carriers.sip.message import AbsoluteURI, Message, Request, Response, SipURI
from carriers.sip.parser import StreamParser, parse
from carriers.sip.validate import check_request


def _vector_dir() -> Path | None:
    candidates = [Path(__file__).resolve().parents[3] / "shared" / "sip-torture" / "rfc4475"]
    env = os.environ.get("OUTDIAL_SHARED")
    if env:
        candidates += [Path(env) / "sip-torture" / "rfc4475", Path(env)]
    for candidate in candidates:
        if (candidate / "INDEX.tsv").is_file():
            return candidate
    return None


VECTOR_DIR = _vector_dir()
MISSING = "RFC 4475 vectors not found"


def _index() -> list[tuple[str, str, str]]:
    if VECTOR_DIR is None:
        return [(MISSING, "-", "missing")]
    rows = []
    for line in (VECTOR_DIR / "INDEX.tsv").read_text().splitlines()[1:]:
        if line.strip():
            name, section, cls, _what = line.split("\t", 3)
            rows.append((name, section, cls))
    return rows


INDEX = _index()


def _load(name: str) -> bytes:
    if VECTOR_DIR is None:
        pytest.fail(
            "the RFC 4475 vectors are missing: expected them in ../shared/sip-torture/rfc4475 "
            "beside the repository, or set OUTDIAL_SHARED to the shared/ folder"
        )
    return (VECTOR_DIR / name).read_bytes()


def _raw_head(data: bytes) -> str:
    return data.split(b"\r\n\r\n", 1)[0].decode("utf-8").replace("\r\n", "\n")


def _raw_body(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


def _req(data: bytes) -> Request:
    message = parse(data)
    assert isinstance(message, Request)
    return message


# --- 3.1.1 valid messages ----------------------------------------------------------------


def check_wsinv(data: bytes) -> None:
    m = _req(data)
    assert m.method == "INVITE"
    assert isinstance(m.uri, SipURI)
    assert (m.uri.user, m.uri.host, m.uri.param("unknownparam")) == (
        "vivekg",
        "chair-dnrc.example.com",
        "",
    )
    assert m.to.display_name is None
    assert m.to.tag == "1918181833n"
    assert str(m.to.uri) == "sip:vivekg@chair-dnrc.example.com"
    assert m.from_.display_name == 'J Rosenberg \\"'  # "J Rosenberg \\\"" unescaped
    assert m.from_.tag == "98asjd8"
    assert m.max_forwards == 68
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert (m.cseq.number, m.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    folded = m.headers.get("NewFangledHeader")
    assert folded is not None
    assert folded.split() == "newfangled value continued newfangled value".split()
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (route,) = m.route
    assert isinstance(route.uri, SipURI)
    assert route.uri.params == (("lr", None), ("unknownwith", "value"), ("unknown-no-value", None))
    (contact,) = m.contact
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert m.content_type == "application/sdp"
    assert m.body == _raw_body(data) and len(m.body) == 150


def check_intmeth(data: bytes) -> None:
    m = _req(data)
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == method
    assert isinstance(m.uri, SipURI)
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.uri.host == "example.com"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert isinstance(m.to.uri, SipURI)
    assert m.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.param("fromParam''~+*_!.-%") == '"работающий"'
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert (m.cseq.number, m.cseq.method) == (139122385, method)
    assert m.max_forwards == 255
    raw_value = bytes.fromhex("efbbbf e5a4a7 e5819c e99bbb").decode("utf-8")
    assert m.headers.get("extensionHeader-!.%*+_`'~") == raw_value
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"


def check_esc01(data: bytes) -> None:
    m = _req(data)
    assert isinstance(m.uri, SipURI)
    assert m.uri.user == "sips%3Auser%40example.com"  # escapes kept as received
    assert m.uri.user_unescaped == "sips:user@example.com"
    assert m.uri.host == "example.net"
    assert isinstance(m.to.uri, SipURI)
    assert m.to.uri.user_unescaped == "user"
    assert isinstance(m.from_.uri, SipURI)
    assert m.from_.uri.user_unescaped == "I have spaces"
    (contact,) = m.contact
    assert isinstance(contact.uri, SipURI)
    assert contact.uri.user_unescaped == "caller"
    assert contact.uri.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))
    assert m.content_type == "application/sdp"  # compact "C:"
    assert len(m.body) == 150


def check_escnull(data: bytes) -> None:
    m = _req(data)
    assert isinstance(m.to.uri, SipURI)
    assert m.to.uri.user == "null-%00-null"
    assert m.to.uri.user_unescaped == "null-\x00-null"
    users = [c.uri.user for c in m.contact if isinstance(c.uri, SipURI)]
    assert users == ["%00", "%00%00"]
    assert m.body == b""


def check_esc02(data: bytes) -> None:
    m = _req(data)
    assert m.method == "RE%47IST%45R"  # not REGISTER: methods are not unescaped
    assert m.cseq.method == "RE%47IST%45R"
    assert m.to.display_name == "%Z%45"
    hosts = [c.uri.host for c in m.contact if isinstance(c.uri, SipURI)]
    assert hosts == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"


def check_lwsdisp(data: bytes) -> None:
    m = _req(data)
    assert m.from_.display_name == "caller"
    assert m.from_.tag == "323"


def check_longreq(data: bytes) -> None:
    m = _req(data)
    head = _raw_head(data)
    via_lines = re.findall(r"(?im)^(?:via|v)[ \t]*:[ \t]*(.*)$", head)
    assert len(m.via) == len(via_lines) == 34
    assert all(v.transport == "TCP" for v in m.via)
    assert [v.host for v in m.via[:-1]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    last = m.via[-1]
    assert last.host == "host.example.com"
    assert last.param("received") == "192.0.2.5"
    raw_branch = re.search(r"branch=(\w+)", via_lines[-1])
    assert raw_branch is not None and last.branch == raw_branch.group(1)
    assert m.to.display_name == ("I have a user name of " + "extreme" * 10 + " proportion")
    assert isinstance(m.to.uri, SipURI) and m.to.uri.port == 6000
    assert len(m.to.uri.params) == 3
    raw_tag = re.search(r"(?m)^F: .*?;tag=(\d+)", head)
    assert raw_tag is not None and m.from_.tag == raw_tag.group(1)
    assert len(m.from_.params) == 3
    raw_callid = re.search(r"(?m)^Call-ID: (\S+)", head)
    assert raw_callid is not None and m.call_id == raw_callid.group(1)
    assert len(m.call_id) > 100
    name = re.search(r"(?m)^(Unknown-Long\S+):[ ]?(.*)$", head)
    assert name is not None
    assert m.headers.get(name.group(1)) == name.group(2)
    (contact,) = m.contact
    assert isinstance(contact.uri, SipURI)
    assert contact.uri.user == "amazinglylongcallername" * 5
    assert len(m.body) == 150


def check_dblreq(data: bytes) -> None:
    m = _req(data)
    assert m.method == "REGISTER"
    assert m.body == b""
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    first = data[: data.index(b"\r\n\r\n") + 4]
    assert parse(first) == m  # the trailing INVITE is ignored entirely


def check_semiuri(data: bytes) -> None:
    m = _req(data)
    assert isinstance(m.uri, SipURI)
    assert (m.uri.user, m.uri.host, m.uri.params) == ("user;par=u%40example.net", "example.com", ())
    assert m.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def check_transports(data: bytes) -> None:
    m = _req(data)
    assert [v.transport for v in m.via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert [v.host for v in m.via] == [f"t{n}.example.com" for n in range(1, 6)]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def check_mpart01(data: bytes) -> None:
    m = _req(data)
    assert m.method == "MESSAGE"
    assert m.body == _raw_body(data)
    assert len(m.body) == 553
    assert m.body.startswith(b"--7a9cbec02ceef655\r\n") and m.body.endswith(b"--\r\n")
    assert m.content_type == "multipart/mixed"
    assert m.top_via.param("rport") == ""
    assert m.headers.get("Content-Transfer-Encoding") == "binary"


def check_unreason(data: bytes) -> None:
    m = parse(data)
    assert isinstance(m, Response)
    assert m.status == 200
    raw_reason = data.split(b"\r\n", 1)[0][len(b"SIP/2.0 200 ") :].decode("utf-8")
    assert m.reason == raw_reason
    assert m.reason.startswith("= 2**3 * 5**2 ") and "девяносто" in m.reason
    assert len(m.body) == 154


def check_noreason(data: bytes) -> None:
    m = parse(data)
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (100, "")
    assert m.cseq.method == "INVITE"


# --- 3.2 - 3.4 semantic vectors: parse, then what a UA answers -----------------------------


def _answer(data: bytes) -> tuple[int, str, dict[str, str]] | None:
    rejection = check_request(_req(data))
    if rejection is None:
        return None
    return rejection.status, rejection.reason, dict(rejection.headers)


def check_badbranch(data: bytes) -> None:
    assert _req(data).top_via.branch == "z9hG4bK"
    assert _answer(data) is None


def check_insuf(data: bytes) -> None:
    m = _req(data)
    assert "To" not in m.headers and "From" not in m.headers and "Call-ID" not in m.headers
    answer = _answer(data)
    assert answer is not None
    status, reason, _ = answer
    assert status == 400
    assert all(name in reason for name in ("To", "From", "Call-ID"))


def check_unkscm(data: bytes) -> None:
    m = _req(data)
    assert isinstance(m.uri, AbsoluteURI)
    assert m.uri.scheme == "nobodyknowsthisscheme"
    assert m.uri.opaque == "totallyopaquecontent"
    assert _answer(data) == (416, "Unsupported URI Scheme", {})


def check_novelsc(data: bytes) -> None:
    m = _req(data)
    assert isinstance(m.uri, AbsoluteURI)
    assert (m.uri.scheme, m.uri.opaque) == ("soap.beep", "//192.0.2.103:3002")
    # RFC 4475 3.3.3: an element that never accepts this scheme treats it as unknown.
    answer = _answer(data)
    assert answer is not None and answer[0] == 416


def check_unksm2(data: bytes) -> None:
    m = _req(data)
    assert [type(a.uri).__name__ for a in (m.to, m.from_, *m.contact)] == ["AbsoluteURI"] * 3
    assert [a.uri.scheme for a in (m.to, m.from_, *m.contact)] == ["isbn", "http", "name"]
    assert m.from_.tag == "3234233"
    assert _answer(data) is None


def check_bext01(data: bytes) -> None:
    answer = _answer(data)
    assert answer is not None
    status, _, headers = answer
    assert status == 420
    # Only Require matters to a UA; the Proxy-Require tags are not listed.
    raw = re.search(r"(?m)^Require: (.*)$", _raw_head(data))
    assert raw is not None
    expected = [t.strip() for t in raw.group(1).split(",")]
    assert [t.strip() for t in headers["Unsupported"].split(",")] == expected
    assert "noProxiesSupportThis" not in headers["Unsupported"]


def check_invut(data: bytes) -> None:
    m = _req(data)
    assert m.content_type == "application/unknownformat"
    assert m.body == _raw_body(data)
    answer = _answer(data)
    assert answer is not None
    assert answer[0] == 415
    assert "application/sdp" in answer[2]["Accept"]


def check_regaut01(data: bytes) -> None:
    m = _req(data)
    assert m.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    assert _answer(data) is None


def check_multi01(data: bytes) -> None:
    m = _req(data)
    assert len(m.headers.get_all("To")) == 2 and len(m.headers.get_all("CSeq")) == 2
    answer = _answer(data)
    assert answer is not None and answer[0] == 400


def check_mcl01(data: bytes) -> None:
    m = _req(data)
    assert m.headers.get_all("Content-Length") == ["13", "5"]
    answer = _answer(data)
    assert answer is not None and answer[0] == 400
    with pytest.raises(SipParseError):  # unrecoverable framing on a stream (RFC 4475 3.3.9)
        StreamParser().feed(data)


def check_bcast(data: bytes) -> None:
    m = parse(data)
    assert isinstance(m, Response)
    assert m.status == 200
    assert [v.host for v in m.via] == ["192.0.2.198", "255.255.255.255"]
    assert len(m.body) == 154


def check_zeromf(data: bytes) -> None:
    assert _req(data).max_forwards == 0
    assert _answer(data) is None  # a UA processes it as if Max-Forwards were positive


def check_cparam01(data: bytes) -> None:
    (contact,) = _req(data).contact
    assert isinstance(contact.uri, SipURI)
    assert contact.params == (("unknownparam", None),)  # a header parameter (addr-spec)
    assert contact.uri.params == ()
    assert _answer(data) is None


def check_cparam02(data: bytes) -> None:
    (contact,) = _req(data).contact
    assert isinstance(contact.uri, SipURI)
    assert contact.params == ()
    assert contact.uri.params == (("unknownparam", None),)  # a URI parameter (inside <>)
    assert _answer(data) is None


def check_regescrt(data: bytes) -> None:
    (contact,) = _req(data).contact
    assert isinstance(contact.uri, SipURI)
    assert contact.uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)
    assert _answer(data) is None


def check_sdp01(data: bytes) -> None:
    answer = _answer(data)
    assert answer is not None and answer[0] == 406


def check_inv2543(data: bytes) -> None:
    m = _req(data)
    assert m.top_via.branch is None
    assert m.from_.tag is None
    assert m.max_forwards is None
    # To is an addr-spec, so ";user=phone" is a header parameter (RFC 3261 20.10).
    assert isinstance(m.to.uri, SipURI) and m.to.uri.params == ()
    assert m.to.param("user") == "phone"
    assert isinstance(m.from_.uri, SipURI) and m.from_.uri.param("user") == "phone"
    (rr,) = m.record_route
    assert isinstance(rr.uri, SipURI) and rr.uri.param("maddr") == "ss1.example.com"
    assert m.body == _raw_body(data)  # no Content-Length: the rest of the datagram
    assert _answer(data) is None


VALID: dict[str, Callable[[bytes], None]] = {
    name[len("check_") :]: fn for name, fn in globals().items() if name.startswith("check_")
}

# --- 3.1.2 invalid messages: SipParseError naming the faulty header ------------------------

INVALID: dict[str, set[str | None]] = {
    "badinv01": {"Via", "Contact"},
    "clerr": {"Content-Length"},
    "ncl": {"Content-Length"},
    "scalar02": {"CSeq", "Max-Forwards", "Expires", "Contact"},
    "scalarlg": {"CSeq"},
    "quotbal": {"To"},
    "ltgtruri": {None},
    "lwsruri": {None},
    "lwsstart": {None},
    "trws": {None},
    "escruri": {None},
    "baddate": {"Date"},
    "regbadct": {"Contact"},
    "badaspec": {"To"},
    "baddn": {"From", "To"},
    "badvers": {None},
    "mismatch01": {"CSeq"},
    "mismatch02": {"CSeq"},
    "bigcode": {None},
}


@pytest.mark.parametrize(("name", "section", "cls"), INDEX, ids=[row[0] for row in INDEX])
def test_vector(name: str, section: str, cls: str) -> None:
    data = _load(name)
    stem = name.removesuffix(".dat")
    if cls == "invalid":
        assert stem in INVALID, f"no expectation written for invalid vector {name}"
        with pytest.raises(SipParseError) as info:
            parse(data)
        assert info.value.header in INVALID[stem], str(info.value)
        assert info.value.status in (400, 505)
    else:
        assert cls in ("valid", "semantic"), f"unknown class {cls!r} in INDEX.tsv"
        assert stem in VALID, f"no expectation written for {cls} vector {name} ({section})"
        VALID[stem](data)


def test_index_lists_every_vector() -> None:
    if VECTOR_DIR is None:
        _load(MISSING)
    assert VECTOR_DIR is not None
    on_disk = {p.name for p in VECTOR_DIR.glob("*.dat")}
    assert on_disk == {row[0] for row in INDEX}


def test_badvers_is_version_not_supported() -> None:
    with pytest.raises(SipParseError) as info:
        parse(_load("badvers.dat"))
    assert info.value.status == 505  # RFC 4475 3.1.2.16


def _stream_messages(data: bytes, chunk: int) -> list[Message]:
    parser = StreamParser()
    out: list[Message] = []
    for i in range(0, len(data), chunk):
        out += parser.feed(data[i : i + chunk])
    return out


@pytest.mark.parametrize(
    "name",
    [r[0] for r in INDEX if r[2] != "invalid"],
    ids=[r[0] for r in INDEX if r[2] != "invalid"],
)
def test_stream_framing_matches_datagram(name: str) -> None:
    data = _load(name)
    if b"\r\ncontent-length" not in data.lower() and b"\r\nl:" not in data.lower():
        with pytest.raises(SipParseError):  # RFC 3261 18.3: mandatory on streams
            StreamParser().feed(data)
        return
    if name == "mcl01.dat":
        return  # conflicting lengths: checked in check_mcl01
    expected = parse(data)
    length = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", data)
    assert length is not None
    data = data[: data.index(b"\r\n\r\n") + 4 + int(length.group(1))]  # dblreq: 1st only
    # One message's worth of bytes, fed one byte at a time and in odd-sized chunks.
    whole = _stream_messages(data, len(data))
    assert whole[0] == expected
    assert _stream_messages(bytes(data), 1)[0] == expected
    assert _stream_messages(data, 7)[0] == expected


@pytest.mark.parametrize("name", [r[0] for r in INDEX if r[2] == "invalid"])
def test_invalid_vectors_fail_on_a_stream_too(name: str) -> None:
    data = _load(name)
    if name == "clerr.dat":
        # On a stream a Content-Length beyond the data just means "more to come".
        assert _stream_messages(data, 5) == []
        return
    with pytest.raises(SipParseError):
        _stream_messages(data + b"\r\n\r\n" * 2, 5)
