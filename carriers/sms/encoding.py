"""GSM 03.38 (3GPP TS 23.038) and UCS-2 encoding, segmentation and preview of SMS text.

Pure and sans-IO. The character tables come from the ``gsm0338`` package (its basic
table and single-shift extension table, keyed by Unicode character name); this module
builds its own character -> septet maps from them because it needs per-character costs
(one septet, or two for an escape pair) to count and split, and the position of the
first character that does not fit, which a whole-string codec does not give. U+001B is
left out of the encodable set: 0x1B is the escape to the extension table, not a
character.

- GSM-7: 160 septets in one segment, 153 per segment when concatenated (the 6-octet
  concatenation UDH takes 7 septets, 3GPP TS 23.040 9.2.3.24.1). An extension
  character costs two septets and its escape pair is never split across segments.
- UCS-2: 70 code units alone, 67 concatenated. Text is sent as UTF-16BE: a character
  outside the BMP is a surrogate pair, counts as two code units, and the pair is never
  split across segments.
- Smart encoding replaces look-alike punctuation and spaces with GSM ones only when the
  whole message then fits GSM-7; otherwise the text is sent as written, in UCS-2.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from gsm0338.charset import BASIC_CHARACTER_SET, BASIC_CHARACTER_SET_EXTENSION

from carriers.sms.errors import SmsEncodingError, UdhParseError, UnencodableCharacterError

__all__ = [
    "ESCAPE",
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "SMART_REPLACEMENTS",
    "Concatenation",
    "Encoding",
    "Preview",
    "SegmentedMessage",
    "concatenation_udh",
    "decode_gsm7",
    "decode_ucs2",
    "encode_gsm7",
    "encode_ucs2",
    "gsm7_septets",
    "is_gsm7",
    "pack_septets",
    "parse_concatenation",
    "preview",
    "segment",
    "ucs2_units",
    "unpack_septets",
    "user_data_parts",
]

ESCAPE = 0x1B
CR = 0x0D
GSM7_SINGLE = 160
GSM7_CONCATENATED = 153
UCS2_SINGLE = 70
UCS2_CONCATENATED = 67
IEI_CONCAT_8BIT = 0x00
IEI_CONCAT_16BIT = 0x08


class Encoding(enum.Enum):
    """The two alphabets an SMS is sent in (TS 23.038 clause 4, data coding 0x00/0x08)."""

    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


def _table(names: Mapping[int, str]) -> dict[str, int]:
    return {unicodedata.lookup(name): code for code, name in names.items() if code != ESCAPE}


#: Character -> septet of the GSM 7-bit default alphabet (TS 23.038 6.2.1), escape excluded.
GSM7_BASIC: Mapping[str, int] = _table(BASIC_CHARACTER_SET)
#: Character -> septet after the escape of the default extension table (TS 23.038 6.2.1.1).
GSM7_EXTENSION: Mapping[str, int] = _table(BASIC_CHARACTER_SET_EXTENSION)
_DECODE_BASIC = {code: char for char, code in GSM7_BASIC.items()}
# Whole-string fast paths (set and str.translate run in C): the characters GSM-7
# can carry, the extension ones, and each as its unpacked septet(s) in a str whose
# code points are the septet values (so .encode("latin-1") gives the octets).
_GSM7_CHARS = frozenset(GSM7_BASIC) | frozenset(GSM7_EXTENSION)
_GSM7_ESCAPED = frozenset(GSM7_EXTENSION)
_TO_SEPTETS = {ord(c): chr(code) for c, code in GSM7_BASIC.items()} | {
    ord(c): chr(ESCAPE) + chr(code) for c, code in GSM7_EXTENSION.items()
}
_DECODE_EXTENSION = {code: char for char, code in GSM7_EXTENSION.items()}

#: Look-alikes that smart encoding replaces (only when the result is all GSM-7).
SMART_REPLACEMENTS: Mapping[str, str] = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u2035\u02bc\u00b4\u0060", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    **dict.fromkeys("\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006", " "),
    **dict.fromkeys("\u2007\u2008\u2009\u200a\u202f\u205f\u3000\t", " "),
    **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", ""),
    "\u2026": "...",
    "\u2022": "-",
    "\u2039": "<",
    "\u203a": ">",
    "\u2044": "/",
    "\u00d7": "x",
    "\u02c6": "^",
    "\u02dc": "~",
}

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


# --- character classes and costs ---------------------------------------------------


def is_gsm7(text: str) -> bool:
    """True when every character is in the basic or the extension table."""
    return _GSM7_CHARS.issuperset(text)


def _septet_cost(char: str) -> int:
    if char in GSM7_BASIC:
        return 1
    if char in GSM7_EXTENSION:
        return 2
    return 0


def _ucs2_cost(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def gsm7_septets(text: str) -> int:
    """Septets ``text`` takes in GSM-7 (two per extension character)."""
    return len(encode_gsm7(text))


def ucs2_units(text: str) -> int:
    """UTF-16 code units ``text`` takes in UCS-2 (two per character outside the BMP)."""
    return sum(_ucs2_cost(c) for c in text)


# --- codecs --------------------------------------------------------------------------


def encode_gsm7(text: str) -> bytes:
    """Unpacked GSM-7: one septet per octet, extension characters as ESC + code.

    Raises UnencodableCharacterError naming the first character outside both tables.
    """
    if not _GSM7_CHARS.issuperset(text):
        for position, char in enumerate(text):
            if char not in _GSM7_CHARS:
                raise UnencodableCharacterError(char, position, Encoding.GSM7.value)
    return text.translate(_TO_SEPTETS).encode("latin-1")


def decode_gsm7(septets: bytes) -> str:
    """Unpacked GSM-7 to text, leniently as TS 23.038 6.2.1.1 asks of a receiver.

    An escape followed by a code the extension table does not define shows the basic
    table's character for that code; ESC ESC (reserved for a further extension table)
    and a dangling escape at the end show a space. Septet values above 0x7F are masked.
    """
    out: list[str] = []
    escaped = False
    for value in septets:
        code = value & 0x7F
        if escaped:
            escaped = False
            if code == ESCAPE:
                out.append(" ")
            else:
                out.append(_DECODE_EXTENSION.get(code) or _DECODE_BASIC[code])
        elif code == ESCAPE:
            escaped = True
        else:
            out.append(_DECODE_BASIC[code])
    if escaped:
        out.append(" ")
    return "".join(out)


def encode_ucs2(text: str) -> bytes:
    """UTF-16BE with surrogate pairs; a lone surrogate in ``text`` is an error."""
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError as exc:  # only a lone surrogate can fail
        raise UnencodableCharacterError(text[exc.start], exc.start, Encoding.UCS2.value) from None


def decode_ucs2(data: bytes) -> str:
    """UTF-16BE to text; an odd trailing octet or a broken pair becomes U+FFFD."""
    return data.decode("utf-16-be", errors="replace")


# --- septet packing (TS 23.038 6.1.2.1.1) ----------------------------------------------


def pack_septets(septets: bytes, *, fill_bits: int = 0, cr_padding: bool = False) -> bytes:
    """Pack septets LSB first into octets, after ``fill_bits`` zero bits.

    ``fill_bits`` aligns the text on a septet boundary after a UDH (1 for the 6-octet
    concatenation UDH). With ``cr_padding`` (TS 23.038 6.1.2.3.1, for receivers that
    infer the septet count from the octet count) seven spare bits at the end are filled
    with CR instead of zeros, which would read as '@'; and a text that really ends in CR
    exactly on an octet boundary gets a second CR, which the spec deems harmless.
    """
    if not 0 <= fill_bits <= 6:
        raise SmsEncodingError(f"fill_bits must be 0..6, not {fill_bits}")
    values = bytearray(septets)
    if cr_padding:
        total = fill_bits + 7 * len(values)
        if (-total) % 8 == 7:
            values.append(CR)
        elif total % 8 == 0 and values and values[-1] == CR:
            values.append(CR)
    acc = 0
    nbits = fill_bits
    out = bytearray()
    for value in values:
        if value > 0x7F:
            raise SmsEncodingError(f"septet value {value:#x} is not 7-bit")
        acc |= value << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int | None = None, *, fill_bits: int = 0) -> bytes:
    """Inverse of pack_septets.

    With ``count`` (the UDL of an SMS, in septets) exactly that many are read. Without
    it, as many as the octets hold; a CR that fills the last seven bits is padding
    (TS 23.038 6.1.2.3.1) and is dropped.
    """
    available = (8 * len(data) - fill_bits) // 7 if data else 0
    wanted = available if count is None else count
    if wanted > available:
        raise SmsEncodingError(f"{len(data)} octets hold {available} septets, not {count}")
    value = int.from_bytes(data, "little") >> fill_bits
    out = bytes((value >> (7 * i)) & 0x7F for i in range(wanted))
    if count is None and out and out[-1] == CR and (fill_bits + 7 * wanted) % 8 == 0:
        out = out[:-1]
    return out


# --- segmentation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentedMessage:
    """A text split into the segments it is sent in.

    ``text`` is what is sent (after smart replacements), ``segments`` its pieces,
    ``units`` the septets (GSM-7) or UTF-16 code units (UCS-2) each piece takes,
    ``starts`` the index in ``text`` of each piece's first character, and
    ``replacements`` the (position in the original, original, replacement) triples
    smart encoding applied.
    """

    text: str
    encoding: Encoding
    segments: tuple[str, ...]
    units: tuple[int, ...]
    starts: tuple[int, ...]
    replacements: tuple[tuple[int, str, str], ...] = ()

    @property
    def capacity(self) -> int:
        """Units one segment of this message can hold (160/153 or 70/67)."""
        single = len(self.segments) == 1
        if self.encoding is Encoding.GSM7:
            return GSM7_SINGLE if single else GSM7_CONCATENATED
        return UCS2_SINGLE if single else UCS2_CONCATENATED

    def payloads(self) -> tuple[bytes, ...]:
        """Each segment encoded: unpacked GSM-7 septets, or UTF-16BE."""
        encode = encode_gsm7 if self.encoding is Encoding.GSM7 else encode_ucs2
        return tuple(encode(part) for part in self.segments)


def _apply_smart(text: str) -> tuple[str, tuple[tuple[int, str, str], ...]]:
    out: list[str] = []
    done: list[tuple[int, str, str]] = []
    for position, char in enumerate(text):
        replacement = SMART_REPLACEMENTS.get(char)
        if replacement is None:
            out.append(char)
        else:
            out.append(replacement)
            done.append((position, char, replacement))
    return "".join(out), tuple(done)


def _choose(
    text: str, encoding: Encoding | None, smart: bool
) -> tuple[str, Encoding, tuple[tuple[int, str, str], ...]]:
    if encoding is Encoding.UCS2:
        encode_ucs2(text)  # raises on a lone surrogate
        return text, Encoding.UCS2, ()
    if is_gsm7(text):
        return text, Encoding.GSM7, ()
    if smart:
        replaced, done = _apply_smart(text)
        if is_gsm7(replaced):
            return replaced, Encoding.GSM7, done
    if encoding is Encoding.GSM7:
        encode_gsm7(text)  # raises naming the first character that does not fit
    encode_ucs2(text)
    return text, Encoding.UCS2, ()


def _boundaries(costs: list[int], single: int, multi: int) -> list[tuple[int, int, int]]:
    total = sum(costs)
    if total <= single:
        return [(0, len(costs), total)]
    parts: list[tuple[int, int, int]] = []
    start = used = 0
    for index, cost in enumerate(costs):
        # A character's units (escape pair, surrogate pair) are never split.
        if used + cost > multi:
            parts.append((start, index, used))
            start, used = index, 0
        used += cost
    parts.append((start, len(costs), used))
    return parts


def _even_boundaries(length: int, single: int, multi: int) -> list[tuple[int, int, int]]:
    """_boundaries for a text whose every character costs one unit."""
    if length <= single:
        return [(0, length, length)]
    return [(a, min(a + multi, length), min(multi, length - a)) for a in range(0, length, multi)]


def segment(
    text: str, encoding: Encoding | None = None, *, smart: bool = False
) -> SegmentedMessage:
    """Split ``text`` into SMS segments.

    ``encoding`` None picks GSM-7 when every character fits it, else UCS-2; asking for
    GSM-7 raises UnencodableCharacterError (a ValueError) naming the first character
    that does not fit. ``smart`` replaces look-alikes (SMART_REPLACEMENTS) only when the
    whole message then fits GSM-7.
    """
    sent, chosen, done = _choose(text, encoding, smart)
    if chosen is Encoding.GSM7:
        if _GSM7_ESCAPED.isdisjoint(sent):  # one septet a character: fixed-size pieces
            parts = _even_boundaries(len(sent), GSM7_SINGLE, GSM7_CONCATENATED)
        else:
            costs = [_septet_cost(c) for c in sent]
            parts = _boundaries(costs, GSM7_SINGLE, GSM7_CONCATENATED)
    elif not sent or max(sent) <= "\uffff":  # all in the BMP: one code unit a character
        parts = _even_boundaries(len(sent), UCS2_SINGLE, UCS2_CONCATENATED)
    else:
        costs = [_ucs2_cost(c) for c in sent]
        parts = _boundaries(costs, UCS2_SINGLE, UCS2_CONCATENATED)
    if len(parts) > 255:
        raise SmsEncodingError(f"message needs {len(parts)} segments; concatenation allows 255")
    return SegmentedMessage(
        text=sent,
        encoding=chosen,
        segments=tuple(sent[a:b] for a, b, _ in parts),
        units=tuple(units for _, _, units in parts),
        starts=tuple(a for a, _, _ in parts),
        replacements=done,
    )


# --- concatenation UDH (TS 23.040 9.2.3.24.1 and 9.2.3.24.8) ----------------------------


@dataclass(frozen=True, slots=True)
class Concatenation:
    """A concatenated segment's place: ``reference`` (8 or 16 bits), ``total``, ``sequence``.

    ``payload`` is the user data after the UDH; ``fill_bits`` the padding before the
    first septet when that payload is packed GSM-7.
    """

    reference: int
    total: int
    sequence: int
    reference_bits: int
    payload: bytes
    fill_bits: int


def concatenation_udh(reference: int, total: int, sequence: int) -> bytes:
    """The 6-octet UDH (UDHL included) with the 8-bit-reference IE 0x00."""
    if not 0 <= reference <= 0xFF:
        raise SmsEncodingError(f"8-bit reference must be 0..255, not {reference}")
    if not 1 <= sequence <= total <= 0xFF:
        raise SmsEncodingError(f"need 1 <= sequence ({sequence}) <= total ({total}) <= 255")
    return bytes((5, IEI_CONCAT_8BIT, 3, reference, total, sequence))


def parse_concatenation(user_data: bytes) -> Concatenation | None:
    """Read the concatenation IE (0x00 or 0x08) from user data that starts with a UDH.

    Returns None when the UDH has no concatenation IE, or only one whose total or
    sequence is 0 or whose sequence exceeds the total (the receiver ignores such an IE,
    TS 23.040 9.2.3.24.1). Raises UdhParseError when the lengths do not fit the data.
    """
    if not user_data:
        raise UdhParseError("empty user data: no UDH length")
    end = 1 + user_data[0]
    if end > len(user_data):
        raise UdhParseError(f"UDH length {user_data[0]} exceeds the {len(user_data)} octets")
    found: Concatenation | None = None
    position = 1
    while position < end:
        if position + 2 > end:
            raise UdhParseError(f"truncated information element at octet {position}")
        iei, length = user_data[position], user_data[position + 1]
        body = user_data[position + 2 : position + 2 + length]
        if position + 2 + length > end:
            raise UdhParseError(f"IE {iei:#04x} of length {length} runs past the UDH")
        found = _concatenation_ie(iei, body, user_data[end:], end) or found
        position += 2 + length
    return found


def _concatenation_ie(iei: int, body: bytes, payload: bytes, header: int) -> Concatenation | None:
    if iei == IEI_CONCAT_8BIT and len(body) == 3:
        reference, bits, (total, sequence) = body[0], 8, body[1:]
    elif iei == IEI_CONCAT_16BIT and len(body) == 4:
        reference, bits, (total, sequence) = int.from_bytes(body[:2], "big"), 16, body[2:]
    else:
        return None
    if total == 0 or sequence == 0 or sequence > total:
        return None
    fill = (7 - (8 * header) % 7) % 7
    return Concatenation(reference, total, sequence, bits, payload, fill)


def user_data_parts(
    message: SegmentedMessage, reference: int, *, packed: bool = False
) -> tuple[bytes, ...]:
    """The user data of each segment: the concatenation UDH (when more than one) + text.

    GSM-7 text is unpacked septets (as SMPP short_message carries them) unless
    ``packed``, where it is packed after the fill bits that align it past the UDH.
    """
    payloads = message.payloads()
    total = len(payloads)
    parts = []
    for sequence, payload in enumerate(payloads, start=1):
        udh = concatenation_udh(reference, total, sequence) if total > 1 else b""
        if packed and message.encoding is Encoding.GSM7:
            payload = pack_septets(payload, fill_bits=(7 - (8 * len(udh)) % 7) % 7)
        parts.append(udh + payload)
    return tuple(parts)


# --- preview ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    """What an operator should know about a text before sending it."""

    encoding: Encoding
    segment_count: int
    capacity: int
    characters_per_segment: tuple[int, ...]
    units_per_segment: tuple[int, ...]
    forced_ucs2: tuple[tuple[int, str], ...]
    replacements: tuple[tuple[int, str, str], ...]
    warnings: tuple[str, ...]

    def summary(self) -> str:
        """A few human-readable lines."""
        unit = "septets" if self.encoding is Encoding.GSM7 else "UCS-2 code units"
        lines = [
            f"{self.encoding.value}, {self.segment_count} segment(s) of up to "
            f"{self.capacity} {unit}",
            "characters per segment: " + ", ".join(map(str, self.characters_per_segment)),
            f"{unit} per segment: " + ", ".join(map(str, self.units_per_segment)),
        ]
        if self.forced_ucs2:
            forced = ", ".join(f"{c!r} (U+{ord(c):04X}) at {p}" for p, c in self.forced_ucs2)
            lines.append(f"UCS-2 forced by: {forced}")
        if self.replacements:
            done = ", ".join(f"{o!r}->{r!r} at {p}" for p, o, r in self.replacements)
            lines.append(f"smart encoding replaced: {done}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _split_urls(message: SegmentedMessage) -> tuple[str, ...]:
    warnings = []
    for match in _URL.finditer(message.text):
        url = match.group().rstrip(".,;:!?)]}'\"")
        start, end = match.start(), match.start() + len(url)
        for index, boundary in enumerate(message.starts[1:], start=1):
            if start < boundary < end:
                warnings.append(
                    f"URL {url!r} at position {start} is split across segments "
                    f"{index} and {index + 1}"
                )
                break
    return tuple(warnings)


def preview(text: str, *, smart: bool = False) -> Preview:
    """Encoding, segments, the characters that forced UCS-2 and split-URL warnings.

    Positions of forcing characters and replacements are indices into ``text``; URL
    positions are indices into the text as sent.
    """
    message = segment(text, smart=smart)
    forced: tuple[tuple[int, str], ...] = ()
    if message.encoding is Encoding.UCS2:
        forced = tuple((p, c) for p, c in enumerate(text) if not is_gsm7(c))
    return Preview(
        encoding=message.encoding,
        segment_count=len(message.segments),
        capacity=message.capacity,
        characters_per_segment=tuple(len(s) for s in message.segments),
        units_per_segment=message.units,
        forced_ucs2=forced,
        replacements=message.replacements,
        warnings=_split_urls(message),
    )
