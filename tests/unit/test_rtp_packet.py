"""RTP/RTCP packet parsing and building (RFC 3550 5.1, 6.4-6.6; RFC 5761 4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carriers.rtp.errors import RtpBuildError, RtpError, RtpParseError
from carriers.rtp.packet import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtpPacket,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    build_bye,
    build_receiver_report,
    build_rtp,
    build_sdes,
    build_sender_report,
    is_rtcp,
    parse_rtcp,
    parse_rtp,
)

U32 = st.integers(0, 0xFFFFFFFF)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=U32,
    ssrc=U32,
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrcs=st.lists(U32, max_size=15).map(tuple),
    extension=st.none()
    | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
)


# A hand-assembled packet, field by field from the RFC 3550 5.1 diagram.
HAND_BUILT = (
    bytes(
        [
            0b1011_0010,  # V=2, P=1, X=1, CC=2
            0b1000_1000,  # M=1, PT=8
            0x12,
            0x34,  # sequence 0x1234
            0xDE,
            0xAD,
            0xBE,
            0xEF,  # timestamp
            0x01,
            0x02,
            0x03,
            0x04,  # SSRC
            0,
            0,
            0,
            7,  # CSRC 7
            0,
            0,
            0,
            9,  # CSRC 9
            0xBE,
            0xDE,
            0,
            1,  # extension profile 0xBEDE, one 32-bit word
            1,
            2,
            3,
            4,  # extension data
        ]
    )
    + b"hello"
    + b"\x00\x00\x03"
)  # payload, then 3 octets of padding


def test_parse_hand_built_packet() -> None:
    p = parse_rtp(HAND_BUILT)
    assert p == RtpPacket(
        payload_type=8,
        sequence=0x1234,
        timestamp=0xDEADBEEF,
        ssrc=0x01020304,
        payload=b"hello",
        marker=True,
        csrcs=(7, 9),
        extension=(0xBEDE, b"\x01\x02\x03\x04"),
    )


def test_build_simple_packet_byte_by_byte() -> None:
    data = build_rtp(RtpPacket(0, 65535, 160, 0xCAFEBABE, b"\xff" * 3, marker=True))
    assert data == b"\x80\x80\xff\xff\x00\x00\x00\xa0\xca\xfe\xba\xbe\xff\xff\xff"


def test_trailing_bytes_are_payload() -> None:
    base = build_rtp(RtpPacket(0, 1, 2, 3, b"ab"))
    assert parse_rtp(base + b"cd").payload == b"abcd"


@given(packets)
def test_parse_build_round_trip(p: RtpPacket) -> None:
    assert parse_rtp(build_rtp(p)) == p


@given(packets)
def test_build_is_canonical(p: RtpPacket) -> None:
    data = build_rtp(p)
    assert build_rtp(parse_rtp(data)) == data
    assert len(data) == 12 + 4 * len(p.csrcs) + len(p.payload) + (
        0 if p.extension is None else 4 + len(p.extension[1])
    )


@given(packets, st.integers(1, 255))
def test_padding_is_removed(p: RtpPacket, pad: int) -> None:
    data = bytearray(build_rtp(p))
    data[0] |= 0x20
    data += bytes(pad - 1) + bytes([pad])
    assert parse_rtp(bytes(data)) == p


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00" + bytes(9),  # 11 bytes
        b"\x40\x00" + bytes(10),  # version 1
        b"\xc0\x00" + bytes(10),  # version 3
        b"\x00\x00" + bytes(10),  # version 0
        b"\x81\x00" + bytes(10),  # CC=1 without the CSRC
        b"\x8f\x00" + bytes(60),  # CC=15, 60 bytes short of 72
        b"\x90\x00" + bytes(10),  # X without the extension header
        b"\x90\x00" + bytes(10) + b"\x00\x00\x00\x02" + bytes(4),  # extension of 2 words, has 1
        b"\xa0\x00" + bytes(10),  # P with a zero count (last byte of header)
        b"\xa0\x00" + bytes(9) + b"\x05",  # P counting past the header
        b"\xa0\x00" + bytes(10) + b"\x00",  # P with count 0
    ],
)
def test_malformed_rtp_raises_parse_error(data: bytes) -> None:
    with pytest.raises(RtpParseError):
        parse_rtp(data)


def test_parse_error_is_an_rtp_error() -> None:
    assert issubclass(RtpParseError, RtpError)
    assert issubclass(RtpBuildError, RtpError)


@settings(max_examples=1000)
@given(st.binary(max_size=120))
def test_fuzz_only_parse_error_escapes(data: bytes) -> None:
    for parser in (parse_rtp, parse_rtcp):
        try:
            parser(data)
        except RtpParseError:
            pass


@settings(max_examples=500)
@given(packets, st.data())
def test_fuzz_mutated_valid_packets(p: RtpPacket, data: st.DataObject) -> None:
    raw = bytearray(build_rtp(p))
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4))
    mutated = raw[:cut]
    for position, value in flips:
        if mutated:
            mutated[position % len(mutated)] = value
    try:
        parse_rtp(bytes(mutated))
    except RtpParseError:
        pass


@pytest.mark.parametrize(
    "bad",
    [
        RtpPacket(128, 0, 0, 0, b""),
        RtpPacket(0, 65536, 0, 0, b""),
        RtpPacket(0, 0, 2**32, 0, b""),
        RtpPacket(0, 0, 0, -1, b""),
        RtpPacket(0, 0, 0, 0, b"", csrcs=tuple(range(16))),
        RtpPacket(0, 0, 0, 0, b"", extension=(0, b"abc")),
        RtpPacket(0, 0, 0, 0, b"", extension=(65536, b"")),
    ],
)
def test_build_rejects_out_of_range_fields(bad: RtpPacket) -> None:
    with pytest.raises(RtpBuildError):
        build_rtp(bad)


def test_is_rtcp_demultiplexes_on_second_octet() -> None:
    assert is_rtcp(build_receiver_report(1))
    assert is_rtcp(b"\x80\xc8")  # SR, 200
    assert is_rtcp(b"\x80\xdf")  # 223: upper end of RFC 5761's range
    assert not is_rtcp(b"\x80\xe0")
    assert not is_rtcp(b"\x80\xbf")
    assert not is_rtcp(build_rtp(RtpPacket(0, 1, 2, 3, b"x", marker=True)))  # 0x80
    assert not is_rtcp(build_rtp(RtpPacket(8, 1, 2, 3, b"x")))
    assert not is_rtcp(b"\x80")


# ------------------------------------------------------------------- RTCP

BLOCK = ReportBlock(
    ssrc=0x11223344,
    fraction_lost=25,
    cumulative_lost=-3,
    highest_sequence=0x0001FFFF,
    jitter=42,
    last_sr=0xAABBCCDD,
    delay_since_last_sr=65536,
)


def test_receiver_report_layout() -> None:
    data = build_receiver_report(0xDEADBEEF, [BLOCK])
    # RFC 3550 6.4.2: header (RC=1, PT=201, length 7 words - 1), SSRC, one block.
    assert data[:4] == bytes([0x81, 201, 0, 7])
    assert len(data) == 32
    assert data[4:8] == b"\xde\xad\xbe\xef"
    assert data[12] == 25  # fraction lost
    assert data[13:16] == b"\xff\xff\xfd"  # -3 in 24-bit two's complement
    assert parse_rtcp(data) == [ReceiverReport(0xDEADBEEF, (BLOCK,))]


def test_sender_report_with_cname_is_compound() -> None:
    data = build_sender_report(
        7,
        ntp_timestamp=0x0123456789ABCDEF,
        rtp_timestamp=1000,
        packet_count=50,
        octet_count=8000,
        reports=[BLOCK],
        cname="outdial@example.test",
    )
    assert data[1] == 200
    (length,) = struct.unpack_from("!H", data, 2)
    sdes_offset = 4 * (length + 1)
    assert sdes_offset == 28 + 24
    assert data[sdes_offset + 1] == 202
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [
        SenderReport(7, 0x0123456789ABCDEF, 1000, 50, 8000, (BLOCK,)),
        SourceDescription(((7, "outdial@example.test"),)),
    ]


@pytest.mark.parametrize("cname", ["", "a", "ab", "abc", "abcd", "x" * 255])
def test_sdes_chunk_is_null_terminated_and_aligned(cname: str) -> None:
    data = build_sdes(99, cname)
    assert len(data) % 4 == 0
    assert data[-1] == 0  # the item list ends with a null octet
    assert parse_rtcp(data) == [SourceDescription(((99, cname),))]


def test_bye_and_unknown_packets() -> None:
    app = bytes([0x80, 204, 0, 2]) + b"\x00\x00\x00\x01" + b"NAME"
    data = build_receiver_report(5, cname="c") + build_bye([5, 6], "done") + app
    assert parse_rtcp(data) == [
        ReceiverReport(5),
        SourceDescription(((5, "c"),)),
        Bye((5, 6), "done"),
        UnknownRtcp(204, 0, b"\x00\x00\x00\x01NAME"),
    ]
    assert parse_rtcp(build_bye([1])) == [Bye((1,))]


def test_rtcp_padding_on_last_packet() -> None:
    padded = bytes([0xA0, 201, 0, 2]) + b"\x00\x00\x00\x05" + b"\x00\x00\x00\x04"
    assert parse_rtcp(padded) == [ReceiverReport(5)]


@given(
    ssrc=U32,
    blocks=st.lists(
        st.builds(
            ReportBlock,
            ssrc=U32,
            fraction_lost=st.integers(0, 255),
            cumulative_lost=st.integers(-(2**23), 2**23 - 1),
            highest_sequence=U32,
            jitter=U32,
            last_sr=U32,
            delay_since_last_sr=U32,
        ),
        max_size=31,
    ),
    cname=st.none() | st.text(max_size=60),
)
def test_rtcp_round_trip(ssrc: int, blocks: list[ReportBlock], cname: str | None) -> None:
    parsed = parse_rtcp(build_receiver_report(ssrc, blocks, cname=cname))
    assert parsed[0] == ReceiverReport(ssrc, tuple(blocks))
    if cname is not None:
        assert parsed[1] == SourceDescription(((ssrc, cname),))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc9\x00",  # short header
        b"\x40\xc9\x00\x01" + bytes(4),  # version 1
        b"\x80\xc9\x00\x05" + bytes(4),  # length beyond the datagram
        b"\x81\xc9\x00\x01" + bytes(4),  # RC=1 without the block
        b"\x80\xc8\x00\x01" + bytes(4),  # SR without sender info
        b"\x80\xc9\x00\x01" + bytes(4) + b"\x80",  # trailing partial header
        b"\x81\xca\x00\x01" + bytes(4),  # SDES chunk without items terminator
        b"\x81\xca\x00\x02" + bytes(4) + b"\x01\x09ab",  # SDES item truncated
        b"\x82\xcb\x00\x01" + bytes(4),  # BYE with 2 sources, has 1
        b"\x81\xcb\x00\x02" + bytes(4) + b"\x09abc",  # BYE reason truncated
        b"\xa0\xc9\x00\x01" + bytes(4),  # padding count 0
        b"\xa0\xc9\x00\x01" + bytes(3) + b"\x09",  # padding beyond the packet
    ],
)
def test_malformed_rtcp_raises_parse_error(data: bytes) -> None:
    with pytest.raises(RtpParseError):
        parse_rtcp(data)


def test_rtcp_builders_reject_bad_values() -> None:
    with pytest.raises(RtpBuildError):
        build_receiver_report(2**32)
    with pytest.raises(RtpBuildError):
        build_receiver_report(1, [BLOCK] * 32)
    with pytest.raises(RtpBuildError):
        build_sdes(1, "x" * 256)
    bad_block = ReportBlock(1, 0, 2**23, 0, 0)
    with pytest.raises(RtpBuildError):
        build_receiver_report(1, [bad_block])
