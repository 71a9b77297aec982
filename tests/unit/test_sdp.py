"""SDP parsing/serialising and RFC 3264 offer/answer for one audio stream."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carriers.sip.errors import SipError
from carriers.sip.sdp import (
    PCMA,
    PCMU,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT,
    Codec,
    Direction,
    MediaDescription,
    NegotiatedMedia,
    SdpError,
    SessionDescription,
    answer_offer,
    build_offer,
    negotiate,
    parse_sdp,
)

# SIPp's uas scenario answer, verbatim.
SIPP_ANSWER = (
    b"v=0\r\no=callee 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 25006 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n"
)

# The shape Asterisk (chan_pjsip) offers.
ASTERISK_OFFER = b"""v=0\r
o=- 1822467932 1822467932 IN IP4 203.0.113.5\r
s=Asterisk\r
c=IN IP4 203.0.113.5\r
t=0 0\r
m=audio 17872 RTP/AVP 0 8 3 101\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:3 GSM/8000\r
a=rtpmap:101 telephone-event/8000\r
a=fmtp:101 0-16\r
a=ptime:20\r
a=maxptime:150\r
a=sendrecv\r
"""

# RFC 3264 section 10.1: Alice's offer and Bob's answer.
RFC3264_OFFER = b"""v=0\r
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com\r
s=\r
c=IN IP4 host.atlanta.example.com\r
t=0 0\r
m=audio 49170 RTP/AVP 0 8 97\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:97 iLBC/8000\r
m=video 51372 RTP/AVP 31 32\r
a=rtpmap:31 H261/90000\r
a=rtpmap:32 MPV/90000\r
"""
RFC3264_ANSWER = b"""v=0\r
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com\r
s=\r
c=IN IP4 host.biloxi.example.com\r
t=0 0\r
m=audio 49174 RTP/AVP 0\r
a=rtpmap:0 PCMU/8000\r
m=video 49170 RTP/AVP 32\r
a=rtpmap:32 MPV/90000\r
"""

# A browser (WebRTC) offer, trimmed: many codecs, several telephone-event clocks.
WEBRTC_OFFER = b"""v=0
o=- 4110450848 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE audio
a=msid-semantic: WMS ge4c4Pm0lXOc
m=audio 50000 UDP/TLS/RTP/SAVPF 111 103 9 0 8 13 110 126
c=IN IP4 198.51.100.20
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:gNL2mgx7rK1BVi0r
a=mid:audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:103 ISAC/16000
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=sendrecv
"""


def _sdp(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def _audio_sdp(
    *media_lines: str, c: str = "IN IP4 192.0.2.7", m: str = "m=audio 4000 RTP/AVP 0 8 101"
) -> bytes:
    return _sdp(
        "v=0",
        "o=peer 1 1 IN IP4 192.0.2.7",
        "s=-",
        f"c={c}",
        "t=0 0",
        m,
        "a=rtpmap:101 telephone-event/8000",
        *media_lines,
    )


# --- parsing real-world bodies -----------------------------------------------------


def test_parse_sipp_answer() -> None:
    sdp = parse_sdp(SIPP_ANSWER)
    assert (sdp.origin_username, sdp.session_id, sdp.session_version) == (
        "callee",
        53655765,
        2353687637,
    )
    assert sdp.origin_address == sdp.connection == "127.0.0.1"
    assert sdp.session_name == "-"
    (audio,) = sdp.media
    assert audio == MediaDescription(
        media="audio",
        port=25006,
        proto="RTP/AVP",
        formats=(0, 101),
        codecs=(PCMU, Codec(101, "telephone-event", 8000)),
        direction=Direction.SENDRECV,
        ptime=20,
    )


def test_parse_asterisk_offer() -> None:
    (audio,) = parse_sdp(ASTERISK_OFFER).media
    assert audio.formats == (0, 8, 3, 101)
    assert audio.codecs == (PCMU, PCMA, Codec(3, "GSM"), TELEPHONE_EVENT)
    assert audio.attributes == (("maxptime", "150"),)
    assert audio.ptime == 20


def test_parse_webrtc_offer_lf_only_and_foreign_attributes() -> None:
    sdp = parse_sdp(WEBRTC_OFFER)
    assert sdp.connection is None
    assert sdp.attributes == (("group", "BUNDLE audio"), ("msid-semantic", " WMS ge4c4Pm0lXOc"))
    (audio,) = sdp.media
    assert audio.connection == "198.51.100.20"
    assert audio.proto == "UDP/TLS/RTP/SAVPF"
    assert audio.codecs[0] == Codec(111, "opus", 48000, "minptime=10;useinbandfec=1", channels=2)
    assert ("rtcp-mux", None) in audio.attributes
    assert ("rtcp", "9 IN IP4 0.0.0.0") in audio.attributes


def test_static_payload_types_without_rtpmap() -> None:
    sdp = parse_sdp(
        _sdp(
            "v=0",
            "o=- 5 5 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=audio 4000 RTP/AVP 18 0 8 9 96",
            "a=fmtp:18 annexb=no",
            "a=fmtp:96 mode=30",
        )
    )
    (audio,) = sdp.media
    # RFC 3551 table 4: 0 PCMU, 8 PCMA, 9 G722, 18 G729, all at 8000 Hz.
    assert audio.codecs == (
        Codec(18, "G729", 8000, "annexb=no"),
        PCMU,
        PCMA,
        Codec(9, "G722", 8000),
    )
    # 96 is dynamic with no rtpmap: listed as a format, not a codec; its fmtp kept.
    assert audio.formats[-1] == 96
    assert audio.codec_for(96) is None
    assert ("fmtp", "96 mode=30") in audio.attributes


def test_ipv6_addresses_round_trip() -> None:
    body = _sdp(
        "v=0",
        "o=- 1 1 IN IP6 2001:db8::1",
        "s=-",
        "c=IN IP6 2001:db8::1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "c=IN IP6 2001:db8::2",
        "a=rtpmap:0 PCMU/8000",
        "a=sendrecv",
    )
    sdp = parse_sdp(body)
    assert sdp.connection == "2001:db8::1"
    assert sdp.media[0].connection == "2001:db8::2"
    assert sdp.to_bytes() == body


def test_session_level_direction_applies_unless_media_overrides() -> None:
    sdp = parse_sdp(
        _sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "a=sendonly",
            "m=audio 4000 RTP/AVP 0",
            "m=audio 4002 RTP/AVP 0",
            "a=inactive",
        )
    )
    assert sdp.direction is Direction.SENDONLY
    assert [m.direction for m in sdp.media] == [Direction.SENDONLY, Direction.INACTIVE]


def test_multiple_media_lines_and_non_rtp_formats() -> None:
    sdp = parse_sdp(
        _sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=audio 4000 RTP/AVP 8",
            "m=video 0 RTP/AVP 31",
            "m=image 4002 udptl t38",
            "a=T38FaxVersion:0",
            "a=fmtp:t38 x",
        )
    )
    audio, video, image = sdp.media
    assert audio.codecs == (PCMA,)
    assert (video.port, video.codecs) == (0, (Codec(31, "H261", 90000),))
    assert (image.formats, image.format_tokens) == ((), ("t38",))
    assert image.attributes == (("fmtp", "t38 x"), ("T38FaxVersion", "0"))
    assert parse_sdp(sdp.to_bytes()) == sdp


def test_unknown_lines_blank_lines_and_port_count_are_tolerated() -> None:
    body = (
        b"v=0\n\no=- 1 1 IN IP4 192.0.2.1\ns=x\ni=info\nc=IN IP4 192.0.2.1\nb=AS:64\n"
        b"t=3034423619 3042462419\nr=7d 1h 0 25h\nz=2882844526 -1h\nx=whatever\n"
        b"m=audio 4000/2 RTP/AVP 0\nb=CT:100\nk=prompt\n\n"
    )
    (audio,) = parse_sdp(body).media
    assert (audio.port, audio.codecs) == (4000, (PCMU,))


@pytest.mark.parametrize(
    ("line_no", "bad"),
    [
        (1, "x=0"),
        (1, "v=1"),
        (2, "o=- notanumber 1 IN IP4 192.0.2.1"),
        (2, "o=- 1 1 IN IP4"),
        (2, "o=- 1 1 XX IP4 192.0.2.1"),
        (4, "c=IN IP4"),
        (4, "c=IN IPX 192.0.2.1"),
        (6, "m=audio"),
        (6, "m=audio http RTP/AVP 0"),
        (6, "m=audio 70000 RTP/AVP 0"),
        (6, "m=audio 4000 RTP/AVP 0 128"),
        (7, "a=rtpmap:0 PCMU"),
        (7, "a=rtpmap:x PCMU/8000"),
        (7, "a=rtpmap:0 PCMU/fast"),
        (7, "a=rtpmap:0 /8000"),
        (7, "a=ptime:twenty"),
        (3, "garbage"),
        (3, "s"),
        (6, "m=audio \uff14\uff10\uff10\uff10 RTP/AVP 0"),
    ],
)
def test_malformed_lines_are_named_by_number(line_no: int, bad: str) -> None:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "a=sendrecv",
    ]
    lines[line_no - 1] = bad
    with pytest.raises(SdpError) as info:
        parse_sdp(_sdp(*lines))
    assert info.value.line == line_no
    assert f"line {line_no}" in str(info.value)


def test_missing_origin_and_bad_encoding() -> None:
    with pytest.raises(SdpError, match="o="):
        parse_sdp(b"v=0\r\ns=-\r\n")
    with pytest.raises(SdpError, match="empty"):
        parse_sdp(b"\r\n")
    with pytest.raises(SdpError) as info:
        parse_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=\xff\r\n")
    assert info.value.line == 3
    assert isinstance(info.value, SipError)


@given(st.binary(max_size=300))
def test_parse_raises_nothing_but_sdp_error(data: bytes) -> None:
    try:
        parse_sdp(data)
    except SdpError:
        pass


@given(st.lists(st.sampled_from([*SIPP_ANSWER.split(b"\r\n"), b"m=audio 1 RTP/AVP 8", b"a=x:"])))
def test_shuffled_real_lines_raise_nothing_but_sdp_error(lines: list[bytes]) -> None:
    try:
        parse_sdp(b"\r\n".join(lines))
    except SdpError:
        pass


# --- serialising -----------------------------------------------------------------------


def test_build_offer_bytes() -> None:
    offer = build_offer("192.0.2.10", 30000, session_id=42)
    assert offer.to_bytes() == (
        b"v=0\r\n"
        b"o=- 42 1 IN IP4 192.0.2.10\r\n"
        b"s=-\r\n"
        b"c=IN IP4 192.0.2.10\r\n"
        b"t=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    assert parse_sdp(offer.to_bytes()) == offer


def test_build_offer_hold_and_duplicate_payload_types() -> None:
    held = build_offer(
        "192.0.2.10", 30000, session_id=1, session_version=2, direction=Direction.SENDONLY
    )
    assert b"a=sendonly\r\n" in held.to_bytes()
    assert b"o=- 1 2 IN IP4" in held.to_bytes()
    with pytest.raises(SdpError, match="duplicate"):
        build_offer("192.0.2.10", 1, codecs=(PCMU, Codec(0, "PCMA")), session_id=1)


def test_parse_of_sipp_answer_round_trips_semantically() -> None:
    sdp = parse_sdp(SIPP_ANSWER)
    assert parse_sdp(sdp.to_bytes()) == sdp


_TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=12
)
_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FF, blacklist_characters="\x7f"),
    max_size=20,
)
_RESERVED = {"rtpmap", "fmtp", "ptime", *(d.value for d in Direction)}
_ADDRESS = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z]{1,8}\.example\.(com|net)", fullmatch=True),
)


@st.composite
def _media(draw: st.DrawFn) -> MediaDescription:
    if draw(st.booleans()):  # a non-RTP stream: fmt tokens that are not all numbers
        tokens = tuple(
            draw(st.lists(_TOKEN.filter(lambda t: not t.isdigit()), min_size=1, max_size=3))
        )
        formats: tuple[int, ...] = ()
        codecs: tuple[Codec, ...] = ()
    else:
        pts = draw(st.lists(st.integers(0, 127), min_size=1, max_size=6, unique=True))
        codecs = tuple(
            Codec(
                pt,
                draw(_TOKEN),
                draw(st.integers(1, 192000)),
                draw(st.none() | _TEXT.map(str.strip).filter(bool)),
                draw(st.integers(1, 8)),
            )
            for pt in pts
            if pt in STATIC_PAYLOAD_TYPES or draw(st.booleans())
        )
        formats, tokens = tuple(pts), ()
    attributes = draw(
        st.lists(
            st.tuples(_TOKEN.filter(lambda n: n not in _RESERVED), st.none() | _TEXT), max_size=4
        )
    )
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video", "image", "application"])),
        port=draw(st.integers(0, 65535)),
        proto=draw(st.sampled_from(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "udptl"])),
        formats=formats,
        codecs=codecs,
        direction=draw(st.sampled_from(Direction)),
        connection=draw(st.none() | _ADDRESS),
        ptime=draw(st.none() | st.integers(1, 1000)),
        attributes=tuple(attributes),
        format_tokens=tokens,
    )


@st.composite
def _sessions(draw: st.DrawFn) -> SessionDescription:
    return SessionDescription(
        origin_username=draw(_TOKEN),
        session_id=draw(st.integers(0, 2**64)),
        session_version=draw(st.integers(0, 2**64)),
        origin_address=draw(_ADDRESS),
        connection=draw(st.none() | _ADDRESS),
        media=tuple(draw(st.lists(_media(), max_size=3))),
        session_name=draw(_TEXT),
        direction=draw(st.sampled_from(Direction)),
        attributes=tuple(
            draw(
                st.lists(
                    st.tuples(_TOKEN.filter(lambda n: n not in _RESERVED), st.none() | _TEXT),
                    max_size=3,
                )
            )
        ),
    )


@given(_sessions())
def test_round_trip(sdp: SessionDescription) -> None:
    data = sdp.to_bytes()
    assert parse_sdp(data) == sdp
    assert parse_sdp(data.replace(b"\r\n", b"\n")) == sdp


# --- direction ----------------------------------------------------------------------------


def test_direction_reverse_and_intersect() -> None:
    assert Direction.SENDONLY.reverse() is Direction.RECVONLY
    assert Direction.RECVONLY.reverse() is Direction.SENDONLY
    assert Direction.SENDRECV.reverse() is Direction.SENDRECV
    assert Direction.INACTIVE.reverse() is Direction.INACTIVE
    assert Direction.SENDONLY.intersect(Direction.RECVONLY) is Direction.INACTIVE
    assert Direction.SENDRECV.intersect(Direction.RECVONLY) is Direction.RECVONLY


# --- we offer, they answer -------------------------------------------------------------------


def test_negotiate_with_sipp_answer() -> None:
    offer = build_offer("192.0.2.10", 30000, session_id=1)
    result = negotiate(offer, parse_sdp(SIPP_ANSWER))
    assert result == NegotiatedMedia(
        remote_address="127.0.0.1",
        remote_port=25006,
        codec=PCMU,
        dtmf_payload_type=101,
        direction=Direction.SENDRECV,
        ptime=20,
    )


def test_negotiate_rfc3264_example() -> None:
    result = negotiate(parse_sdp(RFC3264_OFFER), parse_sdp(RFC3264_ANSWER))
    assert (result.remote_address, result.remote_port) == ("host.biloxi.example.com", 49174)
    assert result.codec == PCMU
    assert result.dtmf_payload_type is None
    assert result.ptime == 20


def test_negotiate_uses_answer_order_and_payload_numbers() -> None:
    offer = build_offer("192.0.2.10", 30000, session_id=1)
    answer = parse_sdp(
        _audio_sdp("a=rtpmap:8 PCMA/8000", "a=ptime:30", m="m=audio 4000 RTP/AVP 8 0 101")
    )
    result = negotiate(offer, answer)
    assert result.codec == PCMA
    assert result.ptime == 30
    renumbered = parse_sdp(_audio_sdp(m="m=audio 4000 RTP/AVP 0 97").replace(b":101 ", b":97 "))
    assert negotiate(offer, renumbered).dtmf_payload_type == 97


@pytest.mark.parametrize(
    ("answer_line", "c", "ours"),
    [
        ("a=sendrecv", "IN IP4 192.0.2.7", Direction.SENDRECV),
        ("a=sendonly", "IN IP4 192.0.2.7", Direction.RECVONLY),
        ("a=recvonly", "IN IP4 192.0.2.7", Direction.SENDONLY),
        ("a=inactive", "IN IP4 192.0.2.7", Direction.INACTIVE),
        ("a=sendrecv", "IN IP4 0.0.0.0", Direction.RECVONLY),  # RFC 2543 hold
    ],
)
def test_negotiate_directions(answer_line: str, c: str, ours: Direction) -> None:
    offer = build_offer("192.0.2.10", 30000, session_id=1)
    assert negotiate(offer, parse_sdp(_audio_sdp(answer_line, c=c))).direction is ours


def test_negotiate_our_hold_limits_direction() -> None:
    offer = build_offer("192.0.2.10", 30000, session_id=1, direction=Direction.SENDONLY)
    # Even a sloppy sendrecv answer cannot make us receive on a stream we hold.
    assert negotiate(offer, parse_sdp(_audio_sdp("a=sendrecv"))).direction is Direction.SENDONLY


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (_audio_sdp(m="m=audio 0 RTP/AVP 0"), "rejected"),
        (_audio_sdp(m="m=audio 4000 RTP/AVP 3 101"), "no common audio codec"),
        (_audio_sdp(m="m=audio 4000 RTP/AVP 101"), "no common audio codec"),
        (_audio_sdp(m="m=video 4000 RTP/AVP 31"), "audio m= line"),
        (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n", "audio m= line"),
        (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n", "c="),
    ],
)
def test_negotiation_errors(answer: bytes, message: str) -> None:
    offer = build_offer("192.0.2.10", 30000, session_id=1)
    with pytest.raises(SdpError, match=message):
        negotiate(offer, parse_sdp(answer))


def test_negotiate_rejects_codec_we_did_not_offer() -> None:
    offer = build_offer("192.0.2.10", 30000, codecs=(PCMU, TELEPHONE_EVENT), session_id=1)
    with pytest.raises(SdpError, match="no common audio codec"):
        negotiate(offer, parse_sdp(_audio_sdp(m="m=audio 4000 RTP/AVP 8")))


# --- they offer, we answer ---------------------------------------------------------------------


def test_answer_asterisk_offer() -> None:
    answer, result = answer_offer(
        parse_sdp(ASTERISK_OFFER), "192.0.2.10", 30002, session_id=9, session_version=1
    )
    assert answer.to_bytes() == (
        b"v=0\r\no=- 9 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"m=audio 30002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    assert result == NegotiatedMedia("203.0.113.5", 17872, PCMU, 101, Direction.SENDRECV, 20)
    # Our answer, read back as the offerer would, agrees with what we concluded.
    theirs = negotiate(parse_sdp(ASTERISK_OFFER), parse_sdp(answer.to_bytes()))
    assert (theirs.codec, theirs.dtmf_payload_type) == (result.codec, result.dtmf_payload_type)


def test_answer_rfc3264_offer_rejects_video_in_place() -> None:
    answer, result = answer_offer(
        parse_sdp(RFC3264_OFFER), "192.0.2.10", 30002, session_id=9, session_version=1
    )
    audio, video = answer.media
    assert (audio.port, audio.formats) == (30002, (0,))
    # RFC 3264 section 6: same position, port 0, the offered formats kept.
    assert (video.media, video.port, video.formats) == ("video", 0, (31, 32))
    assert result.codec == PCMU
    assert result.dtmf_payload_type is None


def test_answer_uses_their_payload_numbers_and_first_supported_codec() -> None:
    offer = parse_sdp(WEBRTC_OFFER)
    answer, result = answer_offer(offer, "192.0.2.10", 30002, session_id=1, session_version=1)
    # opus, ISAC and G722 are not ours; PCMU is their first G.711; DTMF at 8 kHz is 126.
    assert result.codec == PCMU
    assert result.dtmf_payload_type == 126
    assert answer.media[0].formats == (0, 126)
    assert answer.media[0].proto == "UDP/TLS/RTP/SAVPF"
    assert result.remote_address == "198.51.100.20"


def test_answer_prefers_their_order_over_ours() -> None:
    offer = parse_sdp(_audio_sdp(m="m=audio 4000 RTP/AVP 8 0 101"))
    _, result = answer_offer(offer, "192.0.2.10", 1, session_id=1, session_version=1)
    assert result.codec == PCMA


def test_answer_without_dtmf_when_we_do_not_support_it() -> None:
    offer = parse_sdp(ASTERISK_OFFER)
    answer, result = answer_offer(
        offer, "192.0.2.10", 1, supported=(PCMA,), session_id=1, session_version=1
    )
    assert result.codec == PCMA
    assert result.dtmf_payload_type is None
    assert answer.media[0].formats == (8,)


@pytest.mark.parametrize(
    ("offer_line", "c", "ours"),
    [
        ("a=sendrecv", "IN IP4 192.0.2.7", Direction.SENDRECV),
        ("a=sendonly", "IN IP4 192.0.2.7", Direction.RECVONLY),
        ("a=recvonly", "IN IP4 192.0.2.7", Direction.SENDONLY),
        ("a=inactive", "IN IP4 192.0.2.7", Direction.INACTIVE),
        ("a=sendrecv", "IN IP4 0.0.0.0", Direction.RECVONLY),
    ],
)
def test_answer_reverses_hold_offers(offer_line: str, c: str, ours: Direction) -> None:
    answer, result = answer_offer(
        parse_sdp(_audio_sdp(offer_line, c=c)), "192.0.2.10", 1, session_id=1, session_version=2
    )
    assert result.direction is ours
    assert f"a={ours.value}\r\n".encode() in answer.to_bytes()


def test_answer_with_our_own_direction() -> None:
    offer = parse_sdp(_audio_sdp("a=sendrecv"))
    _, held = answer_offer(
        offer, "192.0.2.10", 1, session_id=1, session_version=2, direction=Direction.SENDONLY
    )
    assert held.direction is Direction.SENDONLY
    # We may not receive on a stream they only receive on (RFC 3264 section 6.1).
    _, narrowed = answer_offer(
        parse_sdp(_audio_sdp("a=recvonly")),
        "192.0.2.10",
        1,
        session_id=1,
        session_version=2,
        direction=Direction.SENDRECV,
    )
    assert narrowed.direction is Direction.SENDONLY


def test_answer_disabled_stream_keeps_port_zero() -> None:
    answer, result = answer_offer(
        parse_sdp(_audio_sdp(m="m=audio 0 RTP/AVP 0")),
        "192.0.2.10",
        1,
        session_id=1,
        session_version=2,
    )
    assert answer.media[0].port == 0
    assert result.remote_port == 0
    assert result.direction is Direction.INACTIVE


def test_answer_second_audio_line_rejected() -> None:
    offer = parse_sdp(
        _audio_sdp("m=audio 4002 RTP/AVP 8", "a=sendrecv", m="m=audio 4000 RTP/AVP 0")
    )
    answer, _ = answer_offer(offer, "192.0.2.10", 1, session_id=1, session_version=2)
    assert [m.port for m in answer.media] == [1, 0]


def test_answer_errors() -> None:
    with pytest.raises(SdpError, match="no common audio codec"):
        answer_offer(
            parse_sdp(_audio_sdp(m="m=audio 4000 RTP/AVP 3 101")),
            "192.0.2.10",
            1,
            session_id=1,
            session_version=1,
        )
    with pytest.raises(SdpError, match="no audio"):
        answer_offer(
            parse_sdp(_audio_sdp(m="m=image 4000 udptl t38")),
            "192.0.2.10",
            1,
            session_id=1,
            session_version=1,
        )
