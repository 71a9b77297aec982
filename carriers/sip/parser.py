"""SIP grammar and parser (RFC 3261 sections 7, 19, 20 and 25).

``parse`` turns one datagram into a ``Request`` or ``Response`` and raises nothing but
``SipParseError``; ``StreamParser`` frames messages on a TCP/TLS byte stream. The header
fields a UA acts on (Via, From, To, Contact, Route, Record-Route, CSeq, Call-ID,
Max-Forwards, Expires, Date, Content-Length) are validated eagerly, so a message that
parses never fails later in a typed accessor; the per-value parse functions are LRU-cached
and shared with those accessors, so the work is done once.

Parsing is liberal where RFC 3261 asks it to be (LWS around separators, folded lines,
compact and odd-case header names, leading zeros) and strict where RFC 4475 shows that
leniency is unsafe (Request-Line spacing, unterminated quotes, URIs that need <>).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from carriers.sip.errors import SipParseError
from carriers.sip.message import (
    URI,
    AbsoluteURI,
    Address,
    CSeq,
    Headers,
    Message,
    Params,
    Request,
    Response,
    SipURI,
    Via,
    _canon,
)

__all__ = [
    "StreamParser",
    "parse",
    "parse_address",
    "parse_addresses",
    "parse_cseq",
    "parse_uri",
    "parse_via",
]

# --- grammar (RFC 3261 25.1) -----------------------------------------------------------

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"  # noqa: S105 (a grammar rule, not a secret)
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_PCHAR = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})"  # paramchar
_HCHAR = rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})"  # hnv-unreserved / unreserved / escaped
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+"  # IPv6reference / hostname / IPv4address
_QUOTED = r'"(?:[^"\\]|\\.)*+"'

_TOKEN_RE = re.compile(_TOKEN)
_SCHEME_RE = re.compile(r"[a-z][a-z0-9+\-.]*")
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})++")
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*+")
_HOSTPORT_RE = re.compile(
    rf"({_HOST})(?::([0-9]{{1,5}}))?"
    rf"((?:;{_PCHAR}++(?:={_PCHAR}++)?)*+)"
    rf"(?:\?({_HCHAR}++={_HCHAR}*+(?:&{_HCHAR}++={_HCHAR}*+)*+))?"
)
# absoluteURI: uric characters (RFC 2396), plus "[", "]" and "#" seen in the wild.
_OPAQUE_RE = re.compile(rf"(?:[{_UNRESERVED};/?:@&=+$,\[\]#]|{_ESC})++")
_PARAM_RE = re.compile(
    rf"[ \t]*;[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*({_QUOTED}|[A-Za-z0-9\-.!%*_+`'~:\[\]]+))?[ \t]*",
    re.S,
)
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*+)"', re.S)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)
# Unquoted display-name: *(token LWS); non-ASCII letters tolerated (common in the wild).
_DISPLAY_WORD = r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]++"
_DISPLAY_RE = re.compile(rf"{_DISPLAY_WORD}(?:[ \t]++{_DISPLAY_WORD})*+")
_ADDR_SPEC_RE = re.compile(r"[^; \t]+")
_ELEMENT_RE = re.compile(r'(?:[^",<]++|"(?:[^"\\]|\\.)*+"|<[^>]*+>)*+', re.S)
_VIA_RE = re.compile(
    rf"[Ss][Ii][Pp][ \t]*/[ \t]*2\.0[ \t]*/[ \t]*({_TOKEN})[ \t]+({_HOST})"
    rf"(?:[ \t]*:[ \t]*([0-9]{{1,5}}))?"
)
_CSEQ_RE = re.compile(rf"([0-9]+)[ \t]+({_TOKEN})")
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID_RE = re.compile(rf"{_WORD}(?:@{_WORD})?")
_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{1,2}) "  # one-digit days seen in the wild
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
_MEDIA_TYPE_RE = re.compile(rf"({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*(?:;.*)?", re.S)
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)

_UINT32 = 2**32 - 1

# --- URIs ------------------------------------------------------------------------------


def _split_params(text: str, sep: str) -> Params:
    out: list[tuple[str, str | None]] = []
    for item in text.split(sep):
        name, eq, value = item.partition("=")
        out.append((name, value if eq else None))
    return tuple(out)


def _parse_sip_uri(rest: str, scheme: str) -> SipURI:
    user = password = None
    at = rest.find("@")
    if at >= 0:
        user, colon, pw = rest[:at].partition(":")
        password = pw if colon else None
        if not _USER_RE.fullmatch(user):
            raise SipParseError(f"invalid user part in URI: {user!r}")
        if password is not None and not _PASSWORD_RE.fullmatch(password):
            raise SipParseError("invalid password in URI")
        rest = rest[at + 1 :]
    m = _HOSTPORT_RE.fullmatch(rest)
    if m is None:
        raise SipParseError(f"invalid host, port, parameters or headers in URI: {rest!r}")
    host, port_text, params_text, headers_text = m.groups()
    if host[0] == "[":
        host = _ipv6(host[1:-1])
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise SipParseError(f"port out of range in URI: {port}")
    params = _split_params(params_text[1:], ";") if params_text else ()
    headers = _split_params(headers_text, "&") if headers_text else ()
    return SipURI(host, user, password, port, params, headers, scheme)


def _ipv6(text: str) -> str:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        raise SipParseError(f"invalid IPv6 reference [{text}]") from None
    return text


@lru_cache(maxsize=4096)
def _uri_cached(text: str) -> URI:
    colon = text.find(":")
    scheme = text[:colon].lower()
    if colon <= 0 or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError(f"URI without a valid scheme: {text[:40]!r}")
    if scheme in ("sip", "sips"):
        return _parse_sip_uri(text[colon + 1 :], scheme)
    if not _OPAQUE_RE.fullmatch(text, colon + 1):
        raise SipParseError(f"invalid characters in {scheme}: URI")
    return AbsoluteURI(scheme, text[colon + 1 :])


def parse_uri(text: str) -> URI:
    """Parse a URI: a ``SipURI`` for sip:/sips:, an ``AbsoluteURI`` for any other scheme.

    No whitespace is allowed (RFC 3261 25.1); %-escapes are validated but kept as given.
    """
    return _uri_cached(text)


# --- parameters, quoted strings, comma lists ---------------------------------------------


def _parse_params(text: str, pos: int) -> Params:
    """generic-params from ``pos`` to the end of ``text`` (LWS allowed around ; and =)."""
    out: list[tuple[str, str | None]] = []
    end = len(text)
    while pos < end:
        m = _PARAM_RE.match(text, pos)
        if m is None:
            raise SipParseError(f"malformed parameter at {text[pos : pos + 30]!r}")
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    return tuple(out)


def _unquote(content: str) -> str:
    return _QUOTED_PAIR_RE.sub(r"\1", content) if "\\" in content else content


def _split_commas(value: str) -> list[str] | None:
    """Split at commas outside quoted strings and <>; None if a quote or < is unclosed."""
    if "," not in value:
        return [value]
    out: list[str] = []
    pos, end = 0, len(value)
    while True:
        m = _ELEMENT_RE.match(value, pos)
        assert m is not None  # the pattern can match the empty string
        stop = m.end()
        out.append(value[pos:stop].strip(" \t"))
        if stop >= end:
            return out
        if value[stop] != ",":
            return None
        pos = stop + 1


def _split_strict(value: str) -> list[str]:
    """Comma list of a header whose elements must all be well formed (Via, Contact...)."""
    elements = _split_commas(value)
    if elements is None:
        raise SipParseError("unterminated quoted string or unbalanced '<'")
    if any(not element for element in elements):
        raise SipParseError("empty element in comma-separated list")
    return elements


def _split_lenient(value: str) -> list[str]:
    """Comma list of an informational header: empty elements dropped, never an error."""
    elements = _split_commas(value)
    if elements is None:
        return [value]
    kept = [element for element in elements if element]
    return kept or [""]


# --- addresses -------------------------------------------------------------------------


def _name_addr_start(s: str) -> tuple[str | None, int]:
    """Display name and the index of '<' (-1 for an addr-spec)."""
    if s[0] == '"':
        m = _QUOTED_RE.match(s)
        if m is None:
            raise SipParseError("unterminated quoted string in display name")
        lt = m.end()
        while lt < len(s) and s[lt] in " \t":
            lt += 1
        if lt >= len(s) or s[lt] != "<":
            raise SipParseError("quoted display name not followed by <URI>")
        return _unquote(m.group(1)), lt
    lt = s.find("<")
    if lt <= 0:
        return None, lt
    name = s[:lt].rstrip(" \t")
    if not _DISPLAY_RE.fullmatch(name):
        raise SipParseError(f"display name {name!r} must be a quoted string")
    return name, lt


@lru_cache(maxsize=8192)
def _address_cached(text: str) -> Address:
    s = text.strip(" \t")
    if not s:
        raise SipParseError("empty address")
    display, lt = _name_addr_start(s)
    if lt >= 0:
        gt = s.find(">", lt + 1)
        if gt < 0:
            raise SipParseError("'<' without '>' in address")
        inner = s[lt + 1 : gt]
        if not inner or inner[0] in " \t" or inner[-1] in " \t":
            raise SipParseError("whitespace inside <> of an address (RFC 3261 25.1 LAQUOT)")
        return Address(_uri_cached(inner), display, _parse_params(s, gt + 1))
    m = _ADDR_SPEC_RE.match(s)
    if m is None:
        raise SipParseError("address without a URI")
    uri_text = m.group()
    if "?" in uri_text or "," in uri_text:
        # RFC 3261 20: a URI containing a comma, question mark or semicolon must be in <>.
        raise SipParseError("URI with headers or ',' must be enclosed in <>")
    return Address(_uri_cached(uri_text), None, _parse_params(s, m.end()))


def parse_address(text: str) -> Address:
    """Parse a name-addr or addr-spec with header parameters.

    For an addr-spec the ``;`` parameters after the URI are header parameters, not URI
    parameters (RFC 3261 20.10).
    """
    return _address_cached(text)


@lru_cache(maxsize=4096)
def _addresses_cached(text: str) -> tuple[Address, ...]:
    if text.strip(" \t") == "*":  # Contact: * (REGISTER, RFC 3261 10.2.2)
        return ()
    return tuple(_address_cached(element) for element in _split_strict(text))


def parse_addresses(text: str) -> list[Address]:
    """Parse a comma list of addresses (Contact, Route, Record-Route); ``*`` gives []."""
    return list(_addresses_cached(text))


# --- Via, CSeq and scalar header fields ------------------------------------------------


def _via_one(text: str) -> Via:
    m = _VIA_RE.match(text)
    if m is None:
        raise SipParseError("malformed Via: expected 'SIP/2.0/transport host'", header="Via")
    transport, host, port_text = m.groups()
    if host[0] == "[":
        host = _ipv6(host[1:-1])
    port = None if port_text is None else int(port_text)
    if port is not None and port > 65535:
        raise SipParseError(f"Via port out of range: {port}", header="Via")
    try:
        params = _parse_params(text, m.end())
    except SipParseError as exc:
        raise SipParseError(f"malformed Via: {exc}", header="Via") from None
    return Via(transport.upper(), host, port, params)


@lru_cache(maxsize=4096)
def _via_cached(text: str) -> tuple[Via, ...]:
    try:
        elements = _split_strict(text)
    except SipParseError as exc:
        raise SipParseError(f"malformed Via: {exc}", header="Via") from None
    return tuple(_via_one(element) for element in elements)


def parse_via(text: str) -> list[Via]:
    """Parse a Via value (one via-parm or a comma list of them), topmost first."""
    return list(_via_cached(text))


def _uint(text: str, limit: int, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise SipParseError(f"{what} is not a non-negative integer: {text[:30]!r}", header=what)
    digits = text.lstrip("0") or "0"
    if len(digits) > 10 or int(digits) > limit:
        raise SipParseError(f"{what} value too large: {text[:30]}", header=what)
    return int(digits)


@lru_cache(maxsize=4096)
def _cseq_cached(text: str) -> CSeq:
    m = _CSEQ_RE.fullmatch(text)
    if m is None:
        raise SipParseError(f"malformed CSeq: {text[:40]!r}", header="CSeq")
    # RFC 3261 8.1.1.5: the sequence number must be less than 2**31.
    return CSeq(_uint(m.group(1), 2**31 - 1, "CSeq"), m.group(2))


def parse_cseq(text: str) -> CSeq:
    """Parse a CSeq value (``1*DIGIT LWS method``, number below 2**31)."""
    return _cseq_cached(text)


def _call_id(text: str) -> str:
    if not _CALL_ID_RE.fullmatch(text):
        raise SipParseError(f"malformed Call-ID: {text[:40]!r}", header="Call-ID")
    return text


def _max_forwards(text: str) -> int:
    return _uint(text, 255, "Max-Forwards")


def _expires(text: str) -> int:
    return _uint(text, _UINT32, "Expires")  # delta-seconds, RFC 3261 20.19


def _content_length(text: str) -> int:
    return _uint(text, _UINT32, "Content-Length")


def _date(text: str) -> str:
    # RFC 3261 20.17: rfc1123-date, always in GMT.
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise SipParseError(f"Date is not an RFC 1123 GMT date: {text[:40]!r}", header="Date")
    day, hour, minute, second = (int(g) for g in m.groups())
    if not (1 <= day <= 31 and hour < 24 and minute < 60 and second <= 60):
        raise SipParseError(f"Date out of range: {text!r}", header="Date")
    return text


@lru_cache(maxsize=256)
def _media_type(text: str) -> str:
    m = _MEDIA_TYPE_RE.fullmatch(text)
    if m is None:
        raise SipParseError(f"malformed media type: {text[:40]!r}", header="Content-Type")
    return f"{m.group(1)}/{m.group(2)}".lower()


def _check_cseq_method(text: str, method: str) -> None:
    cseq_method = _cseq_cached(text).method
    if cseq_method != method:
        # RFC 3261 8.1.1.5 / RFC 4475 3.1.2.17: the CSeq method must match the request's.
        raise SipParseError(f"CSeq method {cseq_method[:30]!r} does not match {method[:30]!r}")


_VALIDATORS: dict[str, Callable[[str], object]] = {
    "via": _via_cached,
    "from": _address_cached,
    "to": _address_cached,
    "contact": _addresses_cached,
    "route": _address_cached,
    "record-route": _address_cached,
    "cseq": _cseq_cached,
    "call-id": _call_id,
    "max-forwards": _max_forwards,
    "expires": _expires,
    "date": _date,
    "content-length": _content_length,
}
_STRICT_LISTS = frozenset({"via", "contact", "route", "record-route"})
_LENIENT_LISTS = frozenset(
    {
        "allow", "supported", "require", "proxy-require", "unsupported", "accept",
        "accept-encoding", "accept-language", "allow-events", "content-encoding",
    }
)  # fmt: skip


# --- messages --------------------------------------------------------------------------


@dataclass(slots=True)
class _Head:
    """A parsed start line and header section, waiting for its body."""

    method: str | None
    uri: URI | None
    status: int
    reason: str
    items: list[tuple[str, str, str]]
    lengths: list[int]

    def build(self, body: bytes) -> Message:
        if len(self.lengths) == 1:
            # The body length is authoritative and __bytes__ rewrites Content-Length, so
            # a lone Content-Length is not kept; duplicates are, for validate (400).
            self.items = [item for item in self.items if item[0] != "content-length"]
        headers = Headers._trusted(self.items)
        if self.method is not None and self.uri is not None:
            return Request(self.method, self.uri, headers, body)
        return Response(self.status, self.reason, headers, body)


def _check_version(version: str) -> None:
    if version.upper() != "SIP/2.0":
        if _VERSION_RE.fullmatch(version):
            raise SipParseError(f"unsupported SIP version {version}", status=505)
        raise SipParseError(f"malformed SIP version {version[:20]!r}")


def _request_line(line: str) -> tuple[str, URI]:
    # RFC 3261 7.1: Method SP Request-URI SP SIP-Version, exactly one SP each (RFC 4475
    # 3.1.2.8-3.1.2.10 reject extra or trailing SP and LWS inside the URI).
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("malformed Request-Line: expected 'METHOD SP Request-URI SP SIP/2.0'")
    method, uri_text, version = parts
    _check_version(version)
    if not _TOKEN_RE.fullmatch(method):
        raise SipParseError(f"invalid method {method[:30]!r}")
    if uri_text[0] == "<":
        raise SipParseError("Request-URI must not be enclosed in <>")
    try:
        uri = _uri_cached(uri_text)
    except SipParseError as exc:
        raise SipParseError(f"bad Request-URI: {exc}") from None
    if isinstance(uri, SipURI) and uri.headers:
        raise SipParseError("headers are not allowed in a Request-URI (RFC 3261 19.1.1)")
    return method, uri


def _status_line(line: str) -> tuple[int, str]:
    # RFC 3261 7.2: SIP-Version SP Status-Code SP Reason-Phrase (which may be empty).
    parts = line.split(" ", 2)
    _check_version(parts[0])
    code = parts[1] if len(parts) > 1 else ""
    if len(code) != 3 or not (code.isascii() and code.isdigit()) or not "100" <= code <= "699":
        raise SipParseError(f"invalid status code {code[:20]!r}")
    return int(code), parts[2] if len(parts) > 2 else ""


def _unfold(lines: list[str]) -> list[tuple[str, str, int]]:
    """(raw name, raw value, line number) per field, continuation lines joined (7.3.1)."""
    fields: list[tuple[str, str, int]] = []
    for index in range(1, len(lines)):
        line = lines[index]
        if not line:
            raise SipParseError(f"line {index + 1}: empty line inside the header section")
        if line[0] in " \t":
            if not fields:
                raise SipParseError(f"line {index + 1}: continuation line without a header")
            name, value, number = fields[-1]
            fields[-1] = (name, value + line, number)
            continue
        colon = line.find(":")
        if colon < 0:
            raise SipParseError(f"line {index + 1}: header line without ':'")
        fields.append((line[:colon], line[colon + 1 :], index + 1))
    return fields


def _header_fields(
    fields: list[tuple[str, str, int]], method: str | None
) -> tuple[list[tuple[str, str, str]], list[int]]:
    items: list[tuple[str, str, str]] = []
    lengths: list[int] = []
    for raw_name, raw_value, number in fields:
        canon = _canon(raw_name.rstrip(" \t"))
        if canon is None:
            raise SipParseError(f"line {number}: invalid header name {raw_name[:40]!r}")
        key, name = canon
        value = raw_value.strip(" \t")
        elements = [value]
        try:
            if key in _STRICT_LISTS:
                elements = [value] if value == "*" else _split_strict(value)
            elif key in _LENIENT_LISTS:
                elements = _split_lenient(value)
            elif key == "in-reply-to":
                elements = [e.strip(" \t") for e in value.split(",") if e.strip(" \t")] or [""]
            validator = _VALIDATORS.get(key)
            for element in elements:
                if validator is not None:
                    validator(element)
                    if key == "content-length":
                        lengths.append(_content_length(element))
                    elif key == "cseq" and method is not None:
                        _check_cseq_method(element, method)
                items.append((key, name, element))
        except SipParseError as exc:
            raise SipParseError(
                f"line {number}: {name}: {exc}", status=exc.status, header=name
            ) from None
    return items, lengths


def _parse_head(head: bytes) -> _Head:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"invalid UTF-8 at byte {exc.start} of the header") from None
    lines = text.split("\r\n")
    if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
        raise SipParseError("bare CR or LF in the header section")
    start = lines[0]
    method: str | None = None
    uri: URI | None = None
    status, reason = 0, ""
    if start[:4].upper() == "SIP/":
        status, reason = _status_line(start)
    else:
        method, uri = _request_line(start)
    items, lengths = _header_fields(_unfold(lines), method)
    return _Head(method, uri, status, reason, items, lengths)


def parse(data: bytes) -> Message:
    """Parse one datagram into a Request or Response; raise SipParseError for bad input.

    Leading CRLFs are ignored (RFC 3261 7.5). The body is framed by Content-Length and
    octets after it are ignored (RFC 4475 3.1.1.8); without Content-Length it is the rest
    of the datagram (RFC 3261 18.3). A single Content-Length field is consumed by the
    framing (``len(body)`` stands for it and ``__bytes__`` rewrites it); several are kept,
    the body then being the rest of the datagram, so ``check_request`` answers 400
    (RFC 4475 3.3.9). A datagram that ends right after its last header line is accepted
    with no body.
    """
    data = bytes(data)
    size = len(data)
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    if start >= size:
        raise SipParseError("empty message")
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        head_end, body_start = end, end + 4
    elif data.endswith(b"\r\n"):
        head_end, body_start = size - 2, size
    else:
        raise SipParseError("message head not terminated by an empty line")
    head = _parse_head(data[start:head_end])
    lengths = head.lengths
    if lengths and all(n == lengths[0] for n in lengths):
        if body_start + lengths[0] > size:
            raise SipParseError(
                f"Content-Length {lengths[0]} exceeds the {size - body_start} octets received",
                header="Content-Length",
            )
        return head.build(data[body_start : body_start + lengths[0]])
    return head.build(data[body_start:])


class StreamParser:
    """TCP/TLS framing: ``feed`` bytes in arbitrary chunks, get complete messages.

    Content-Length is mandatory on streams (RFC 3261 18.3); CRLF keep-alives between
    messages are skipped (RFC 5626 3.5.1); a head over 64 KiB or a body over 1 MiB is an
    error (status 513). A framing error is not recoverable on a stream: after the first
    SipParseError every later ``feed`` raises too, and the connection should be closed.
    """

    MAX_HEAD = 64 * 1024
    MAX_BODY = 1024 * 1024

    __slots__ = ("_buf", "_failed", "_head", "_need", "_scanned")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: _Head | None = None
        self._need = 0
        self._scanned = 0
        self._failed: SipParseError | None = None

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return the messages they complete, in order."""
        if self._failed is not None:
            raise SipParseError(f"stream already failed: {self._failed}", status=400)
        self._buf += data
        out: list[Message] = []
        try:
            while (message := self._next()) is not None:
                out.append(message)
        except SipParseError as exc:
            self._failed = exc
            self._buf.clear()
            raise
        return out

    def _next(self) -> Message | None:
        buf = self._buf
        if self._head is None and not self._read_head():
            return None
        if len(buf) < self._need:
            return None
        body = bytes(buf[: self._need])
        del buf[: self._need]
        head, self._head = self._head, None
        assert head is not None
        return head.build(body)

    def _read_head(self) -> bool:
        buf = self._buf
        skip = 0
        while buf.startswith(b"\r\n", skip):
            skip += 2
        if skip:
            del buf[:skip]
            self._scanned = 0
        end = buf.find(b"\r\n\r\n", max(self._scanned - 3, 0))
        if end < 0:
            if len(buf) > self.MAX_HEAD:
                raise SipParseError("message head over 64 KiB", status=513)
            self._scanned = len(buf)
            return False
        if end > self.MAX_HEAD:
            raise SipParseError("message head over 64 KiB", status=513)
        head = _parse_head(bytes(buf[:end]))
        lengths = head.lengths
        if not lengths:
            raise SipParseError(
                "Content-Length is mandatory on a stream (RFC 3261 18.3)", header="Content-Length"
            )
        if any(n != lengths[0] for n in lengths):
            raise SipParseError("conflicting Content-Length values", header="Content-Length")
        if lengths[0] > self.MAX_BODY:
            raise SipParseError("message body over 1 MiB", status=513, header="Content-Length")
        del buf[: end + 4]
        self._scanned = 0
        self._head, self._need = head, lengths[0]
        return True
