"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for one audio stream, sans-IO.

``parse_sdp`` turns a body into value objects, ``SessionDescription.to_bytes``
writes one back, and ``build_offer`` / ``negotiate`` / ``answer_offer`` carry
the two sides of an offer/answer exchange down to the single codec, DTMF
payload type, remote address and direction the RTP layer needs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from carriers.sip.errors import SipError

__all__ = [
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT",
    "Codec",
    "Direction",
    "MediaDescription",
    "NegotiatedMedia",
    "SdpError",
    "SessionDescription",
    "answer_offer",
    "build_offer",
    "negotiate",
    "parse_sdp",
]


class SdpError(SipError):
    """A malformed SDP body or a failed offer/answer.

    ``line`` is the 1-based line number of the offending line when parsing.
    ``status`` is what a UAS answers an offer that raised this with: 488 Not
    Acceptable Here (RFC 3261 section 13.3.1.1 / RFC 3264 section 6).
    """

    def __init__(self, message: str, *, line: int | None = None, status: int = 488) -> None:
        super().__init__(f"SDP line {line}: {message}" if line is not None else message)
        self.line = line
        self.status = status


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format: a=rtpmap (and a=fmtp) for one payload type."""

    payload_type: int
    name: str
    clock_rate: int = 8000
    fmtp: str | None = None
    channels: int = 1


PCMU = Codec(0, "PCMU")
PCMA = Codec(8, "PCMA")
TELEPHONE_EVENT = Codec(101, "telephone-event", 8000, "0-16")

# RFC 3551 section 6, tables 4 and 5: payload types usable without a=rtpmap,
# written as "<pt> <encoding>/<clock>[/<channels>]" like an a=rtpmap value.
_RFC3551_TABLE = """
0 PCMU/8000  3 GSM/8000  4 G723/8000  5 DVI4/8000  6 DVI4/16000  7 LPC/8000  8 PCMA/8000
9 G722/8000  10 L16/44100/2  11 L16/44100  12 QCELP/8000  13 CN/8000  14 MPA/90000
15 G728/8000  16 DVI4/11025  17 DVI4/22050  18 G729/8000  25 CelB/90000  26 JPEG/90000
28 nv/90000  31 H261/90000  32 MPV/90000  33 MP2T/90000  34 H263/90000
"""


def _static_table() -> dict[int, Codec]:
    words = _RFC3551_TABLE.split()
    table: dict[int, Codec] = {}
    for pt, encoding in zip(words[::2], words[1::2], strict=True):
        name, clock, *channels = encoding.split("/")
        table[int(pt)] = Codec(
            int(pt), name, int(clock), channels=int(channels[0]) if channels else 1
        )
    return table


STATIC_PAYLOAD_TYPES: dict[int, Codec] = _static_table()

# The audio codecs the media layer can carry (dsp/ does G.711 only).
_G711 = frozenset({"pcmu", "pcma"})
_DTMF = "telephone-event"


class Direction(enum.Enum):
    """Media direction attribute (RFC 3264 section 5.1), from the writer's view."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reverse(self) -> Direction:
        """The same stream seen from the other end: sendonly <-> recvonly."""
        return Direction.from_flags(sends=self.receives, receives=self.sends)

    def intersect(self, other: Direction) -> Direction:
        """Only what both allow: sends if both send, receives if both receive."""
        return Direction.from_flags(
            sends=self.sends and other.sends, receives=self.receives and other.receives
        )


_DIRECTIONS = {d.value: d for d in Direction}


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One m= section.

    ``formats`` holds the payload types of an RTP m= line; a line whose fmt
    list is not all numbers (``m=image 0 udptl t38``) keeps it in
    ``format_tokens`` instead, with ``formats`` empty. ``codecs`` are the
    formats resolved through a=rtpmap or RFC 3551's static table, in m= order.
    ``direction`` is the effective one: media-level, else session-level.
    """

    media: str
    port: int
    proto: str
    formats: tuple[int, ...]
    codecs: tuple[Codec, ...]
    direction: Direction
    connection: str | None = None
    ptime: int | None = None
    attributes: tuple[tuple[str, str | None], ...] = ()
    format_tokens: tuple[str, ...] = ()

    def codec_for(self, payload_type: int) -> Codec | None:
        """The codec carried under ``payload_type``, if it is known."""
        for codec in self.codecs:
            if codec.payload_type == payload_type:
                return codec
        return None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body. ``attributes`` are session-level a= lines other than direction."""

    origin_username: str
    session_id: int
    session_version: int
    origin_address: str
    connection: str | None
    media: tuple[MediaDescription, ...]
    session_name: str = "-"
    direction: Direction = Direction.SENDRECV
    attributes: tuple[tuple[str, str | None], ...] = ()

    def to_bytes(self) -> bytes:
        """Serialise with CRLF line ends (RFC 4566 section 5), in RFC 4566's line order."""
        lines = [
            "v=0",
            f"o={self.origin_username} {self.session_id} {self.session_version} "
            f"IN {_addrtype(self.origin_address)} {self.origin_address}",
            f"s={self.session_name}",
        ]
        if self.connection is not None:
            lines.append(f"c=IN {_addrtype(self.connection)} {self.connection}")
        lines.append("t=0 0")
        lines.extend(_attribute_lines(self.attributes))
        if self.direction is not Direction.SENDRECV:
            lines.append(f"a={self.direction.value}")
        for media in self.media:
            lines.extend(_media_lines(media))
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _attribute_lines(attributes: Iterable[tuple[str, str | None]]) -> list[str]:
    return [f"a={name}" if value is None else f"a={name}:{value}" for name, value in attributes]


def _media_lines(media: MediaDescription) -> list[str]:
    fmts = media.formats if media.formats else media.format_tokens
    lines = [" ".join([f"m={media.media} {media.port} {media.proto}", *map(str, fmts)])]
    if media.connection is not None:
        lines.append(f"c=IN {_addrtype(media.connection)} {media.connection}")
    for codec in media.codecs:
        channels = f"/{codec.channels}" if codec.channels != 1 else ""
        lines.append(f"a=rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}{channels}")
    lines.extend(f"a=fmtp:{c.payload_type} {c.fmtp}" for c in media.codecs if c.fmtp is not None)
    if media.ptime is not None:
        lines.append(f"a=ptime:{media.ptime}")
    lines.extend(_attribute_lines(media.attributes))
    lines.append(f"a={media.direction.value}")
    return lines


# --- parsing -------------------------------------------------------------------


def _number(text: str, line: int, what: str, upper: int | None = None) -> int:
    # ASCII digits only: int() would also take "+1", "1_0" and non-ASCII digits.
    if not (text.isascii() and text.isdigit()) or (upper is not None and int(text) > upper):
        raise SdpError(f"bad {what} {text!r}", line=line)
    return int(text)


def _connection_address(value: str, line: int) -> str:
    # RFC 4566 section 5.7: c=<nettype> <addrtype> <connection-address>
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value!r}", line=line)
    return parts[2]


@dataclass(slots=True)
class _MediaBuilder:
    """Mutable accumulator for one m= section while its lines are read."""

    media: str
    port: int
    proto: str
    formats: tuple[int, ...]
    format_tokens: tuple[str, ...]
    connection: str | None = None
    ptime: int | None = None
    direction: Direction | None = None
    rtpmap: dict[int, Codec] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    unused: list[tuple[str, str | None]] = field(default_factory=list)

    def build(self, session_direction: Direction) -> MediaDescription:
        codecs: list[Codec] = []
        for pt in self.formats:
            codec = self.rtpmap.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
            if codec is None:
                continue
            fmtp = self.fmtp.pop(pt, None)
            codecs.append(replace(codec, fmtp=fmtp) if fmtp is not None else codec)
        # fmtp lines for formats we cannot resolve are kept verbatim.
        leftover = [("fmtp", f"{pt} {params}") for pt, params in self.fmtp.items()]
        return MediaDescription(
            media=self.media,
            port=self.port,
            proto=self.proto,
            formats=self.formats,
            codecs=tuple(codecs),
            direction=self.direction or session_direction,
            connection=self.connection,
            ptime=self.ptime,
            attributes=tuple(self.unused + leftover + self.attributes),
            format_tokens=self.format_tokens,
        )


def _parse_media_line(value: str, line: int) -> _MediaBuilder:
    # RFC 4566 section 5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ...
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"bad m= line {value!r}", line=line)
    port = _number(parts[1].partition("/")[0], line, "m= port", 65535)
    fmts = parts[3:]
    if all(f.isascii() and f.isdigit() for f in fmts):
        formats = tuple(_number(f, line, "payload type", 127) for f in fmts)
        return _MediaBuilder(parts[0], port, parts[2], formats, ())
    return _MediaBuilder(parts[0], port, parts[2], (), tuple(fmts))


def _parse_rtpmap(value: str, line: int) -> Codec:
    # RFC 4566 section 6: a=rtpmap:<pt> <encoding name>/<clock rate>[/<params>]
    pt_text, _, encoding = value.partition(" ")
    pieces = encoding.strip().split("/")
    if len(pieces) not in (2, 3) or not pieces[0]:
        raise SdpError(f"bad a=rtpmap {value!r}", line=line)
    channels = _number(pieces[2], line, "rtpmap channels") if len(pieces) == 3 else 1
    return Codec(
        payload_type=_number(pt_text, line, "rtpmap payload type", 127),
        name=pieces[0],
        clock_rate=_number(pieces[1], line, "rtpmap clock rate"),
        channels=channels,
    )


def _parse_ptime(value: str, line: int) -> int:
    whole, dot, fraction = value.strip().partition(".")
    if dot and not (fraction.isascii() and fraction.isdigit()):
        raise SdpError(f"bad a=ptime {value!r}", line=line)
    return _number(whole, line, "ptime")


def _media_attribute(media: _MediaBuilder, name: str, value: str | None, line: int) -> None:
    match name, value:
        case ("rtpmap", str(text)):
            codec = _parse_rtpmap(text, line)
            if codec.payload_type in media.formats:
                media.rtpmap[codec.payload_type] = codec
            else:
                media.unused.append((name, text))
        case ("fmtp", str(text)):
            # RFC 4566 section 6: a=fmtp:<format> <params>; the format is a
            # token (e.g. on m=application), so only numeric ones are ours.
            fmt, _, params = text.partition(" ")
            if fmt.isascii() and fmt.isdigit() and int(fmt) in media.formats:
                media.fmtp[int(fmt)] = params.strip()
            else:
                media.unused.append((name, text))
        case ("ptime", str(text)):
            media.ptime = _parse_ptime(text, line)
        case (direction, None) if direction in _DIRECTIONS:
            media.direction = _DIRECTIONS[direction]
        case _:
            media.attributes.append((name, value))


@dataclass(slots=True)
class _SessionBuilder:
    origin: tuple[str, int, int, str] | None = None
    session_name: str = "-"
    connection: str | None = None
    direction: Direction = Direction.SENDRECV
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[_MediaBuilder] = field(default_factory=list)


def _parse_origin(value: str, line: int) -> tuple[str, int, int, str]:
    # RFC 4566 section 5.2: o=<username> <sess-id> <sess-version> IN <addrtype> <address>
    parts = value.split()
    if len(parts) != 6 or parts[3] != "IN" or parts[4] not in ("IP4", "IP6"):
        raise SdpError(f"bad o= line {value!r}", line=line)
    session_id = _number(parts[1], line, "o= session id")
    version = _number(parts[2], line, "o= session version")
    return parts[0], session_id, version, parts[5]


def _session_line(session: _SessionBuilder, kind: str, value: str, line: int) -> None:
    current = session.media[-1] if session.media else None
    match kind:
        case "v" if value.strip() != "0":
            raise SdpError(f"unsupported SDP version {value!r}", line=line)
        case "o":
            session.origin = _parse_origin(value, line)
        case "s":
            session.session_name = value
        case "c" if current is None:
            session.connection = _connection_address(value, line)
        case "c" if current is not None and current.connection is None:
            current.connection = _connection_address(value, line)
        case "m":
            session.media.append(_parse_media_line(value, line))
        case "a":
            name, colon, attr_value = value.partition(":")
            attr = (name.strip(), attr_value if colon else None)
            if current is not None:
                _media_attribute(current, attr[0], attr[1], line)
            elif attr[1] is None and attr[0] in _DIRECTIONS:
                session.direction = _DIRECTIONS[attr[0]]
            else:
                session.attributes.append(attr)
        case _:
            pass  # t=, b=, i=, k=, ... and unknown types: RFC 4566 section 5 says ignore


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body.

    Accepts CRLF or bare LF line ends and skips blank lines and line types it
    does not use. Raises ``SdpError`` naming the line number for a malformed
    line, and for a body without v= or o=.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("not UTF-8", line=data.count(b"\n", 0, exc.start) + 1) from None
    session = _SessionBuilder()
    seen_version = False
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip():
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isascii() or not line[0].isalpha():
            raise SdpError(f"not a <type>=<value> line: {line[:40]!r}", line=number)
        if not seen_version and line[0] != "v":
            raise SdpError("SDP must start with v=", line=number)
        seen_version = True
        _session_line(session, line[0], line[2:], number)
    if session.origin is None:
        raise SdpError("SDP has no o= line" if seen_version else "empty SDP")
    username, session_id, version, address = session.origin
    return SessionDescription(
        origin_username=username,
        session_id=session_id,
        session_version=version,
        origin_address=address,
        connection=session.connection,
        media=tuple(m.build(session.direction) for m in session.media),
        session_name=session.session_name,
        direction=session.direction,
        attributes=tuple(session.attributes),
    )


# --- offer/answer ----------------------------------------------------------------


def build_offer(
    address: str,
    port: int,
    *,
    codecs: Sequence[Codec] = (PCMU, PCMA, TELEPHONE_EVENT),
    session_id: int,
    session_version: int = 1,
    direction: Direction = Direction.SENDRECV,
    ptime: int = 20,
) -> SessionDescription:
    """An offer (RFC 3264 section 5) with one audio stream at ``address``:``port``.

    ``codecs`` are listed in preference order; their payload types must differ.
    """
    formats = tuple(codec.payload_type for codec in codecs)
    if len(set(formats)) != len(formats):
        raise SdpError(f"duplicate payload types in offer: {formats}")
    audio = MediaDescription(
        media="audio",
        port=port,
        proto="RTP/AVP",
        formats=formats,
        codecs=tuple(codecs),
        direction=direction,
        ptime=ptime,
    )
    return SessionDescription(
        origin_username="-",
        session_id=session_id,
        session_version=session_version,
        origin_address=address,
        connection=address,
        media=(audio,),
    )


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """What the RTP layer needs once offer and answer agree.

    ``codec`` and ``dtmf_payload_type`` carry the answer's payload type
    numbers; ``direction`` is from our point of view; ``remote_port`` 0 means
    the stream is disabled.
    """

    remote_address: str
    remote_port: int
    codec: Codec
    dtmf_payload_type: int | None
    direction: Direction
    ptime: int


_DEFAULT_PTIME = 20


def _same_format(a: Codec, b: Codec) -> bool:
    # RFC 4855 section 3: encoding names compare case-insensitively.
    return a.name.lower() == b.name.lower() and a.clock_rate == b.clock_rate


def _dtmf_for(codecs: Iterable[Codec], audio: Codec) -> Codec | None:
    # RFC 4733 section 2.1: telephone-event must share the audio codec's clock.
    for codec in codecs:
        if codec.name.lower() == _DTMF and codec.clock_rate == audio.clock_rate:
            return codec
    return None


def _first_audio(session: SessionDescription, role: str) -> int:
    for index, media in enumerate(session.media):
        if media.media == "audio":
            return index
    raise SdpError(f"{role} has no audio m= line")


def _remote_address(session: SessionDescription, media: MediaDescription, role: str) -> str:
    address = media.connection or session.connection
    if address is None:
        raise SdpError(f"{role} audio stream has no c= address")
    return address


def _remote_direction(media: MediaDescription, address: str) -> Direction:
    """The peer's direction, with RFC 2543-style hold (c=0.0.0.0) read as 'do not send to me'.

    RFC 3264 section 8.4 keeps 0.0.0.0 meaning hold for old peers.
    """
    if address == "0.0.0.0":  # noqa: S104 - an SDP value, not a bind address
        return media.direction.intersect(Direction.SENDONLY)
    return media.direction


def negotiate(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """Result of our ``offer`` and their ``answer`` (RFC 3264 sections 6 and 7).

    Uses the first audio m= line (m= lines pair up by position); the codec is
    the answer's first G.711 format that we offered. ``SdpError`` if the
    stream is rejected (port 0) or no common codec remains.
    """
    index = _first_audio(offer, "offer")
    if index >= len(answer.media) or answer.media[index].media != "audio":
        raise SdpError(f"answer does not answer the audio m= line #{index + 1}")
    ours, theirs = offer.media[index], answer.media[index]
    if theirs.port == 0:
        raise SdpError("answerer rejected the audio stream (port 0)")
    codec = next(
        (
            c
            for c in theirs.codecs
            if c.name.lower() in _G711 and any(_same_format(c, o) for o in ours.codecs)
        ),
        None,
    )
    if codec is None:
        offered, answered = _names(ours.codecs), _names(theirs.codecs)
        raise SdpError(f"no common audio codec: offered {offered}, answered {answered}")
    address = _remote_address(answer, theirs, "answer")
    dtmf = _dtmf_for(theirs.codecs, codec)
    return NegotiatedMedia(
        remote_address=address,
        remote_port=theirs.port,
        codec=codec,
        dtmf_payload_type=dtmf.payload_type if dtmf is not None else None,
        direction=ours.direction.intersect(_remote_direction(theirs, address).reverse()),
        ptime=theirs.ptime or ours.ptime or _DEFAULT_PTIME,
    )


def _names(codecs: Iterable[Codec]) -> str:
    return ", ".join(f"{c.name}/{c.clock_rate}" for c in codecs) or "none"


def _pick_codecs(
    offered: MediaDescription, supported: Sequence[Codec]
) -> tuple[Codec, Codec | None] | None:
    """First offered audio codec we support, and the offered telephone-event to go with it."""
    for codec in offered.codecs:
        if codec.name.lower() == _DTMF:
            continue
        if any(_same_format(codec, s) for s in supported):
            dtmf = _dtmf_for(offered.codecs, codec)
            wanted = dtmf is not None and any(_same_format(dtmf, s) for s in supported)
            return codec, dtmf if wanted else None
    return None


def _accept(
    theirs: MediaDescription, supported: Sequence[Codec], port: int, direction: Direction
) -> MediaDescription:
    """Our m= line answering their audio stream: one codec, then telephone-event if shared."""
    picked = _pick_codecs(theirs, supported)
    if picked is None:
        offered, ours = _names(theirs.codecs), _names(supported)
        raise SdpError(f"no common audio codec: offered {offered}, we support {ours}")
    codec, dtmf = picked
    chosen = (codec,) if dtmf is None else (codec, dtmf)
    # RFC 3264 section 8.2: a stream offered with port 0 is answered with port 0.
    return MediaDescription(
        media="audio",
        port=port if theirs.port else 0,
        proto=theirs.proto,
        formats=tuple(c.payload_type for c in chosen),
        codecs=chosen,
        direction=direction if theirs.port else Direction.INACTIVE,
        ptime=theirs.ptime or _DEFAULT_PTIME,
    )


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 section 6: a rejected stream keeps its place with port 0 and
    # at least one of the offered formats.
    return MediaDescription(
        media=media.media,
        port=0,
        proto=media.proto,
        formats=media.formats,
        codecs=media.codecs,
        direction=Direction.INACTIVE,
        format_tokens=media.format_tokens,
    )


def answer_offer(
    offer: SessionDescription,
    address: str,
    port: int,
    *,
    supported: Sequence[Codec] = (PCMU, PCMA, TELEPHONE_EVENT),
    session_id: int,
    session_version: int,
    direction: Direction | None = None,
) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer their offer (an incoming call, or a re-INVITE for hold/unhold).

    The first audio m= line is accepted with the first offered codec we
    support plus telephone-event if offered, in their payload type numbers;
    every other m= line is rejected with port 0, in order (RFC 3264 section 6).
    Our direction is the reverse of theirs (RFC 3264 section 6.1), narrowed by
    ``direction`` when given. ``SdpError`` if no audio stream can be accepted.
    """
    index = _first_audio(offer, "offer")
    theirs = offer.media[index]
    remote_address = _remote_address(offer, theirs, "offer")
    ours = _remote_direction(theirs, remote_address).reverse()
    if direction is not None:
        ours = ours.intersect(direction)
    accepted = _accept(theirs, supported, port, ours)
    answer = SessionDescription(
        origin_username="-",
        session_id=session_id,
        session_version=session_version,
        origin_address=address,
        connection=address,
        media=tuple(accepted if i == index else _rejected(m) for i, m in enumerate(offer.media)),
    )
    codec, *dtmf = accepted.codecs
    negotiated = NegotiatedMedia(
        remote_address=remote_address,
        remote_port=theirs.port,
        codec=codec,
        dtmf_payload_type=dtmf[0].payload_type if dtmf else None,
        direction=accepted.direction,
        ptime=accepted.ptime or _DEFAULT_PTIME,
    )
    return answer, negotiated
