"""RTP and minimal RTCP packets (RFC 3550), sans-IO.

``parse_rtp`` / ``build_rtp`` handle the full RTP fixed header of RFC 3550
section 5.1 (padding, CSRC list, header extension of section 5.3.1).
``parse_rtcp`` and the ``build_*`` helpers cover SR, RR, SDES CNAME and BYE
(sections 6.4-6.6) in compound packets (section 6.1); other RTCP packet types
are returned opaque.  The parsers raise nothing but ``RtpParseError``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from carriers.rtp.errors import RtpBuildError, RtpParseError

__all__ = [
    "RTCP_APP",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtpPacket",
    "SenderReport",
    "SourceDescription",
    "UnknownRtcp",
    "build_bye",
    "build_receiver_report",
    "build_rtp",
    "build_sdes",
    "build_sender_report",
    "is_rtcp",
    "parse_rtcp",
    "parse_rtp",
]

RTP_VERSION: Final = 2
_FIXED: Final = struct.Struct("!BBHII")  # RFC 3550 5.1: V/P/X/CC, M/PT, seq, ts, SSRC
_EXT_HEADER: Final = struct.Struct("!HH")  # RFC 3550 5.3.1: profile-defined, length in words
_U32: Final = struct.Struct("!I")
_MAX_U32: Final = 0xFFFFFFFF

# RFC 3550 section 12.1: RTCP packet types.
RTCP_SR: Final = 200
RTCP_RR: Final = 201
RTCP_SDES: Final = 202
RTCP_BYE: Final = 203
RTCP_APP: Final = 204
_SDES_CNAME: Final = 1
_RTCP_HEADER: Final = struct.Struct("!BBH")
_SR_INFO: Final = struct.Struct("!IQIII")  # SSRC, NTP, RTP ts, packet count, octet count
_REPORT_BLOCK: Final = struct.Struct("!IIIIII")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP data packet (RFC 3550 5.1); padding is not represented."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    """(16-bit profile-defined value, data whose length is a multiple of 4)."""


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP datagram; raise ``RtpParseError`` if it is malformed.

    Padding (RFC 3550 5.1, P bit) is stripped from the payload.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    size = len(data)
    if size < 12:
        raise RtpParseError(f"RTP packet of {size} bytes is shorter than the 12-byte header")
    first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if first == 0x80:  # the common case: V=2, no padding, no extension, no CSRC
        return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, data[12:], second > 0x7F)
    if first >> 6 != RTP_VERSION:
        raise RtpParseError(f"RTP version {first >> 6}, expected 2")
    offset = 12
    csrc_count = first & 0x0F
    csrcs: tuple[int, ...] = ()
    if csrc_count:
        offset += 4 * csrc_count
        if size < offset:
            raise RtpParseError(f"CSRC list of {csrc_count} entries truncated")
        csrcs = struct.unpack_from(f"!{csrc_count}I", data, 12)
    extension = None
    if first & 0x10:
        if size < offset + 4:
            raise RtpParseError("header extension truncated")
        profile, words = _EXT_HEADER.unpack_from(data, offset)
        start, offset = offset + 4, offset + 4 + 4 * words
        if size < offset:
            raise RtpParseError(f"header extension of {words} words truncated")
        extension = (profile, data[start:offset])
    end = size
    if first & 0x20:
        # RFC 3550 5.1: the last octet counts the padding octets, itself included.
        padding = data[-1]
        end -= padding
        if padding == 0 or end < offset:
            raise RtpParseError(f"invalid padding count {padding}")
    return RtpPacket(
        second & 0x7F,
        sequence,
        timestamp,
        ssrc,
        data[offset:end],
        second > 0x7F,
        csrcs,
        extension,
    )


def _check_range(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise RtpBuildError(f"{name} {value} outside 0..{maximum}")


def build_rtp(p: RtpPacket) -> bytes:
    """Serialise an ``RtpPacket`` (no padding); ``RtpBuildError`` on a bad field."""
    _check_range("payload type", p.payload_type, 0x7F)
    _check_range("sequence", p.sequence, 0xFFFF)
    _check_range("timestamp", p.timestamp, _MAX_U32)
    _check_range("SSRC", p.ssrc, _MAX_U32)
    if len(p.csrcs) > 15:
        raise RtpBuildError(f"{len(p.csrcs)} CSRCs, at most 15 fit the CC field")
    first = 0x80 | len(p.csrcs)
    parts = [b""]
    for csrc in p.csrcs:
        _check_range("CSRC", csrc, _MAX_U32)
        parts.append(_U32.pack(csrc))
    if p.extension is not None:
        profile, ext_data = p.extension
        _check_range("extension profile value", profile, 0xFFFF)
        if len(ext_data) % 4 or len(ext_data) > 4 * 0xFFFF:
            raise RtpBuildError("extension data must be a multiple of 4 bytes, < 256 KiB")
        first |= 0x10
        parts.append(_EXT_HEADER.pack(profile, len(ext_data) // 4))
        parts.append(bytes(ext_data))
    second = p.payload_type | (0x80 if p.marker else 0)
    parts[0] = _FIXED.pack(first, second, p.sequence, p.timestamp, p.ssrc)
    parts.append(p.payload)
    return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 section 4: RTCP when the second octet is 192..223 (RTCP types)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


# --------------------------------------------------------------------- RTCP


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """Reception report block (RFC 3550 6.4.1)."""

    ssrc: int
    fraction_lost: int  # 8-bit fixed point, lost/expected * 256
    cumulative_lost: int  # signed 24-bit: duplicates can make it negative
    highest_sequence: int  # extended highest sequence number received
    jitter: int  # interarrival jitter in timestamp units
    last_sr: int = 0  # middle 32 bits of the last SR's NTP timestamp
    delay_since_last_sr: int = 0  # in units of 1/65536 s


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RTCP SR (RFC 3550 6.4.1); ``ntp_timestamp`` is the 64-bit fixed-point value."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RTCP RR (RFC 3550 6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """RTCP SDES (RFC 3550 6.5): the CNAME of each chunk (other items dropped)."""

    cnames: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class Bye:
    """RTCP BYE (RFC 3550 6.6)."""

    ssrcs: tuple[int, ...]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """An RTCP packet type this module does not interpret (APP, feedback...)."""

    packet_type: int
    count: int
    body: bytes


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp


def _rtcp_header(count: int, packet_type: int, body_length: int) -> bytes:
    # RFC 3550 6.4.1: length is the packet size in 32-bit words minus one.
    return _RTCP_HEADER.pack(0x80 | count, packet_type, (4 + body_length) // 4 - 1)


def _pack_blocks(reports: Sequence[ReportBlock]) -> bytes:
    if len(reports) > 31:
        raise RtpBuildError(f"{len(reports)} report blocks, at most 31 fit the RC field")
    out = []
    for r in reports:
        if not -(1 << 23) <= r.cumulative_lost < 1 << 23:
            raise RtpBuildError(f"cumulative lost {r.cumulative_lost} outside 24 bits")
        _check_range("fraction lost", r.fraction_lost, 0xFF)
        lost = (r.fraction_lost << 24) | (r.cumulative_lost & 0xFFFFFF)
        out.append(
            _pack_or_raise(
                _REPORT_BLOCK,
                r.ssrc,
                lost,
                r.highest_sequence,
                r.jitter,
                r.last_sr,
                r.delay_since_last_sr,
            )
        )
    return b"".join(out)


def _pack_or_raise(fmt: struct.Struct, *values: int) -> bytes:
    try:
        return fmt.pack(*values)
    except struct.error as exc:
        raise RtpBuildError(str(exc)) from exc


def build_sdes(ssrc: int, cname: str) -> bytes:
    """One SDES packet with a single chunk carrying a CNAME (RFC 3550 6.5.1)."""
    text = cname.encode()
    if len(text) > 255:
        raise RtpBuildError("CNAME longer than 255 octets")
    chunk = _pack_or_raise(_U32, ssrc) + bytes((_SDES_CNAME, len(text))) + text
    # RFC 3550 6.5: the item list ends with at least one null octet, then the
    # chunk is padded with nulls to a 32-bit boundary.
    chunk += b"\x00" * (4 - len(chunk) % 4)
    return _rtcp_header(1, RTCP_SDES, len(chunk)) + chunk


def build_receiver_report(
    ssrc: int, reports: Sequence[ReportBlock] = (), *, cname: str | None = None
) -> bytes:
    """An RR, followed by an SDES CNAME (a compound packet) when ``cname`` is given."""
    body = _pack_or_raise(_U32, ssrc) + _pack_blocks(reports)
    packet = _rtcp_header(len(reports), RTCP_RR, len(body)) + body
    return packet if cname is None else packet + build_sdes(ssrc, cname)


def build_sender_report(
    ssrc: int,
    *,
    ntp_timestamp: int,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    reports: Sequence[ReportBlock] = (),
    cname: str | None = None,
) -> bytes:
    """An SR, followed by an SDES CNAME (a compound packet) when ``cname`` is given."""
    info = _pack_or_raise(
        _SR_INFO,
        ssrc,
        ntp_timestamp,
        rtp_timestamp,
        packet_count & _MAX_U32,
        octet_count & _MAX_U32,
    )
    body = info + _pack_blocks(reports)
    packet = _rtcp_header(len(reports), RTCP_SR, len(body)) + body
    return packet if cname is None else packet + build_sdes(ssrc, cname)


def build_bye(ssrcs: Iterable[int], reason: str | None = None) -> bytes:
    """A BYE packet (RFC 3550 6.6) for the given sources."""
    sources = tuple(ssrcs)
    if len(sources) > 31:
        raise RtpBuildError("at most 31 sources in one BYE")
    body = b"".join(_pack_or_raise(_U32, s) for s in sources)
    if reason is not None:
        text = reason.encode()
        if len(text) > 255:
            raise RtpBuildError("BYE reason longer than 255 octets")
        body += bytes((len(text),)) + text
        body += b"\x00" * (-len(body) % 4)
    return _rtcp_header(len(sources), RTCP_BYE, len(body)) + body


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if len(body) < offset + count * _REPORT_BLOCK.size:
        raise RtpParseError(f"{count} report blocks truncated")
    blocks = []
    for index in range(count):
        ssrc, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(
            body, offset + index * _REPORT_BLOCK.size
        )
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:  # sign-extend the 24-bit two's complement field
            cumulative -= 1 << 24
        blocks.append(ReportBlock(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    cnames = []
    offset = 0
    for _ in range(count):
        if len(body) < offset + 4:
            raise RtpParseError("SDES chunk truncated")
        (ssrc,) = _U32.unpack_from(body, offset)
        position = offset + 4
        while True:
            if position >= len(body):
                raise RtpParseError("SDES item list not terminated")
            item_type = body[position]
            if item_type == 0:  # end of the item list
                break
            if position + 2 > len(body) or position + 2 + body[position + 1] > len(body):
                raise RtpParseError("SDES item truncated")
            text = body[position + 2 : position + 2 + body[position + 1]]
            if item_type == _SDES_CNAME:
                cnames.append((ssrc, text.decode("utf-8", errors="replace")))
            position += 2 + len(text)
        offset = position + 1 + (-(position + 1) % 4)  # skip null octets to 32-bit boundary
    return SourceDescription(tuple(cnames))


def _parse_bye(body: bytes, count: int) -> Bye:
    if len(body) < 4 * count:
        raise RtpParseError("BYE source list truncated")
    ssrcs = struct.unpack_from(f"!{count}I", body)
    reason = None
    if len(body) > 4 * count:
        length = body[4 * count]
        text = body[4 * count + 1 : 4 * count + 1 + length]
        if len(text) != length:
            raise RtpParseError("BYE reason truncated")
        reason = text.decode("utf-8", errors="replace")
    return Bye(ssrcs, reason)


def _parse_one_rtcp(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    match packet_type:
        case 200:  # RTCP_SR
            if len(body) < _SR_INFO.size:
                raise RtpParseError("SR sender info truncated")
            ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
            blocks = _parse_blocks(body, _SR_INFO.size, count)
            return SenderReport(ssrc, ntp, rtp_ts, packets, octets, blocks)
        case 201:  # RTCP_RR
            if len(body) < 4:
                raise RtpParseError("RR truncated")
            return ReceiverReport(_U32.unpack_from(body)[0], _parse_blocks(body, 4, count))
        case 202:  # RTCP_SDES
            return _parse_sdes(body, count)
        case 203:  # RTCP_BYE
            return _parse_bye(body, count)
        case _:
            return UnknownRtcp(packet_type, count, body)


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a (compound) RTCP datagram into its packets, in order.

    Raises ``RtpParseError`` (and nothing else) on any malformed packet.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    if len(data) < 4:
        raise RtpParseError("RTCP datagram shorter than one header")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise RtpParseError("trailing bytes after the last RTCP packet")
        first, packet_type, words = _RTCP_HEADER.unpack_from(data, offset)
        if first >> 6 != RTP_VERSION:
            raise RtpParseError(f"RTCP version {first >> 6}, expected 2")
        end = offset + 4 * (words + 1)
        if end > len(data):
            raise RtpParseError("RTCP packet length exceeds the datagram")
        body_end = end
        if first & 0x20:
            # RFC 3550 6.4.1: padding count in the packet's last octet.
            padding = data[end - 1]
            body_end -= padding
            if padding == 0 or body_end < offset + 4:
                raise RtpParseError(f"invalid RTCP padding count {padding}")
        packets.append(_parse_one_rtcp(packet_type, first & 0x1F, data[offset + 4 : body_end]))
        offset = end
    return packets
