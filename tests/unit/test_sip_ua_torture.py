"""The RFC 4475 vectors fed to the user agent itself, as if they arrived on
the wire: what it answers (or rightly does not answer) to each."""

from __future__ import annotations

import csv

import pytest

from carriers.sip.message import Response
from carriers.sip.parser import parse
from tests.unit.sipfake import TRUNK, make_ua
from tests.unit.test_sip_torture import VECTOR_DIR

if VECTOR_DIR is None:
    pytest.fail("RFC 4475 vectors not found (../shared/sip-torture)", pytrace=False)
VECTORS = VECTOR_DIR

# RFC 4475's expected answer for each request that reaches a UA. None: the
# message is not answered (a response, or an ACK) or the UA simply processes it.
EXPECTED = {
    "insuf.dat": 400,
    "unkscm.dat": 416,
    "novelsc.dat": 416,
    "bext01.dat": 420,
    "invut.dat": 415,
    "multi01.dat": 400,
    "mcl01.dat": 400,
    "sdp01.dat": 406,
    "zeromf.dat": 200,  # OPTIONS with Max-Forwards 0 to the UA itself: answered
    "badinv01.dat": 400,
    "clerr.dat": 400,
    "ncl.dat": 400,
    "scalar02.dat": 400,
    "quotbal.dat": 400,
    "baddate.dat": 400,
    "regbadct.dat": 400,
    "badaspec.dat": 400,
    "baddn.dat": 400,
    "mismatch01.dat": 400,
    "mismatch02.dat": 400,
}


def index() -> list[dict[str, str]]:
    with (VECTORS / "INDEX.tsv").open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


def answers(name: str) -> list[tuple[int, bytes]]:
    """(status, raw bytes) of every response the UA sent. A 400 to a request
    too broken to parse echoes its (broken) headers, so it is read raw."""
    ua = make_ua()
    ua.receive((VECTORS / name).read_bytes(), TRUNK, 0.0)
    out = []
    for data, target in ua.datagrams_to_send():
        assert target.host == TRUNK.host
        start = data.split(b"\r\n", 1)[0].split(b" ")
        assert start[0] == b"SIP/2.0", f"{name}: the UA sent a request"
        out.append((int(start[1]), data))
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ua_answers_as_rfc_4475_says(name: str) -> None:
    replies = answers(name)
    assert [status for status, _ in replies] == [EXPECTED[name]], replies
    raw = (VECTORS / name).read_bytes()
    ids = [line for line in raw.split(b"\r\n") if line.lower().startswith((b"call-id:", b"i:"))]
    for line in ids[:1]:  # insuf.dat has none, and still gets its 400
        assert line.split(b":", 1)[1].strip() in replies[0][1]  # answers that very request


def test_bext01_lists_the_unsupported_extensions() -> None:
    ((_, data),) = answers("bext01.dat")
    reply = parse(data)
    assert isinstance(reply, Response)
    unsupported = ",".join(reply.headers.get_all("Unsupported"))
    assert "nothingSupportsThis" in unsupported
    assert "nothingSupportsThisEither" in unsupported


@pytest.mark.parametrize("name", [row["file"] for row in index() if row["file"] not in EXPECTED])
def test_every_other_vector_is_handled_without_error(name: str) -> None:
    """Valid requests get a sensible status, responses and ACKs get nothing;
    no vector makes the UA raise."""
    raw = (VECTORS / name).read_bytes()
    replies = answers(name)
    first_line = raw.split(b"\r\n", 1)[0]
    if first_line.startswith(b"SIP/2.0") or first_line.startswith(b"ACK "):
        assert replies == []
    for status, data in replies:
        assert 200 <= status < 700
        assert isinstance(parse(data), Response)
