"""SIP message model: URIs, addresses, Via, CSeq, header fields, requests and responses.

Value types are immutable; ``Request`` and ``Response`` carry header fields as text in a
``Headers`` multi-map and expose typed views (``via``, ``from_``, ``cseq``...) that parse
the text on demand through LRU-cached parse functions in ``carriers.sip.parser``.
Serialisation (``__bytes__``) is the inverse of ``parser.parse`` (RFC 3261 section 7).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TypeVar
from urllib.parse import unquote

from carriers.sip.errors import SipParseError

__all__ = [
    "URI",
    "AbsoluteURI",
    "Address",
    "CSeq",
    "Headers",
    "Message",
    "Params",
    "Request",
    "Response",
    "SipURI",
    "Via",
    "canonical_header_name",
    "get_param",
    "make_response",
    "quote_string",
    "reason_phrase",
    "set_param",
]

Params = tuple[tuple[str, str | None], ...]
"""Ordered ``;name=value`` parameters; a flag parameter (``;lr``) has the value None.
Values are kept as received: a quoted-string value keeps its quotes."""


def get_param(params: Params, name: str) -> str | None:
    """Value of the first parameter called ``name`` (case-insensitive, RFC 3261 19.1.4).

    A flag parameter gives ``""``; an absent one gives None.
    """
    lname = name.lower()
    for pname, value in params:
        if pname.lower() == lname:
            return "" if value is None else value
    return None


def set_param(params: Params, name: str, value: str | None) -> Params:
    """Return ``params`` with ``name`` set to ``value``: replaced in place (dropping later
    duplicates) when present, appended otherwise."""
    lname = name.lower()
    out: list[tuple[str, str | None]] = []
    found = False
    for pname, pvalue in params:
        if pname.lower() == lname:
            if not found:
                out.append((name, value))
                found = True
        else:
            out.append((pname, pvalue))
    if not found:
        out.append((name, value))
    return tuple(out)


def _format_params(params: Params) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


def _bracket(host: str) -> str:
    # RFC 3261 25.1: an IPv6 address appears as an IPv6reference ("[" addr "]").
    return f"[{host}]" if ":" in host else host


_QUOTE_NEEDED = re.compile(r'["\\\x00-\x08\x0a-\x1f\x7f]')


def _escape_char(m: re.Match[str]) -> str:
    ch = m.group()
    # quoted-pair cannot carry CR or LF (RFC 3261 25.1): they become a space.
    return " " if ch in "\r\n" else "\\" + ch


def quote_string(text: str) -> str:
    """``text`` as an RFC 3261 quoted-string: '"' and '\\' and control characters are
    escaped with quoted-pair; CR and LF, which quoted-pair cannot carry, become spaces."""
    return '"' + _QUOTE_NEEDED.sub(_escape_char, text) + '"'


@dataclass(frozen=True, slots=True)
class SipURI:
    """A sip: or sips: URI (RFC 3261 19.1). %-escapes are kept as received.

    ``host`` holds an IPv6 address without its brackets; ``host_port`` and ``str()`` add them.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: Params = ()
    scheme: str = "sip"

    def param(self, name: str) -> str | None:
        """URI parameter ``name`` ("" for a flag, None if absent)."""
        return get_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> SipURI:
        """Copy with URI parameter ``name`` set (None makes it a flag)."""
        return replace(self, params=set_param(self.params, name, value))

    @property
    def host_port(self) -> str:
        """``host`` or ``host:port``, an IPv6 host in brackets."""
        host = _bracket(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def user_unescaped(self) -> str | None:
        """The user part with %-escapes decoded (RFC 3261 19.1.4 compares it this way)."""
        return None if self.user is None else unquote(self.user)

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user if self.password is None else f"{self.user}:{self.password}"
            userinfo += "@"
        text = f"{self.scheme}:{userinfo}{self.host_port}{_format_params(self.params)}"
        if self.headers:
            text += "?" + "&".join(f"{n}={v or ''}" for n, v in self.headers)
        return text


@dataclass(frozen=True, slots=True)
class AbsoluteURI:
    """Any non-SIP URI (tel:, urn:, http:, soap.beep: ...): the scheme (lower-cased) and the
    rest of the text, kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


URI = SipURI | AbsoluteURI


@dataclass(frozen=True, slots=True)
class Address:
    """A name-addr / addr-spec with header parameters (From, To, Contact, Route...).

    ``display_name`` is the unquoted, unescaped text (None when absent).
    """

    uri: URI
    display_name: str | None = None
    params: Params = ()

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 19.3), None if absent."""
        return get_param(self.params, "tag")

    def param(self, name: str) -> str | None:
        """Header parameter ``name`` ("" for a flag, None if absent)."""
        return get_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> Address:
        """Copy with header parameter ``name`` set (None makes it a flag)."""
        return replace(self, params=set_param(self.params, name, value))

    def __str__(self) -> str:
        # Always the name-addr form, so URI parameters can never be mistaken for header
        # parameters (RFC 3261 20.10).
        display = "" if self.display_name is None else quote_string(self.display_name) + " "
        return f"{display}<{self.uri}>{_format_params(self.params)}"


@dataclass(frozen=True, slots=True)
class Via:
    """One via-parm (RFC 3261 20.42). ``host`` holds an IPv6 address without brackets."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    @property
    def branch(self) -> str | None:
        """The branch parameter (RFC 3261 8.1.1.7), None if absent."""
        return get_param(self.params, "branch")

    @property
    def host_port(self) -> str:
        """The sent-by as text: ``host`` or ``host:port``, an IPv6 host in brackets."""
        host = _bracket(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    def param(self, name: str) -> str | None:
        """Via parameter ``name`` ("" for a flag, None if absent)."""
        return get_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> Via:
        """Copy with Via parameter ``name`` set (None makes it a flag)."""
        return replace(self, params=set_param(self.params, name, value))

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.host_port}{_format_params(self.params)}"


@dataclass(frozen=True, slots=True)
class CSeq:
    """The CSeq header field (RFC 3261 20.16)."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


# --- header names ---------------------------------------------------------------

# RFC 3261 7.3.3 and the registering RFCs (3265, 3515, 3892, 4028, 3841, 4474).
_COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
    "v": "via", "o": "event", "r": "refer-to", "b": "referred-by", "u": "allow-events",
    "x": "session-expires", "a": "accept-contact", "j": "reject-contact",
    "d": "request-disposition", "y": "identity", "n": "identity-info",
}  # fmt: skip

_WELL_KNOWN = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Transfer-Encoding", "Content-Type", "CSeq", "Date", "Diversion", "Error-Info",
    "Event", "Expires", "From", "History-Info", "Identity", "Identity-Info", "In-Reply-To",
    "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
    "P-Asserted-Identity", "P-Charging-Vector", "P-Preferred-Identity", "Path", "Priority",
    "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Remote-Party-ID", "Replaces",
    "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server",
    "Service-Route", "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via",
    "Warning", "WWW-Authenticate",
)  # fmt: skip

_CANONICAL = {name.lower(): name for name in _WELL_KNOWN}
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


@lru_cache(maxsize=1024)
def _canon(name: str) -> tuple[str, str] | None:
    """(lookup key, spelling to store) for a header name, None if it is not a token."""
    if not _TOKEN_RE.fullmatch(name):
        return None
    lower = name.lower()
    lower = _COMPACT.get(lower, lower)
    canonical = _CANONICAL.get(lower)
    return (lower, name) if canonical is None else (lower, canonical)


def _key(name: str) -> str:
    canon = _canon(name)
    return name.lower() if canon is None else canon[0]


def canonical_header_name(name: str) -> str:
    """The spelling ``Headers`` stores for ``name`` (compact forms expanded)."""
    canon = _canon(name)
    if canon is None:
        raise ValueError(f"invalid SIP header name {name!r}")
    return canon[1]


class Headers:
    """Ordered multi-map of header fields. Names are canonicalised on entry: compact forms
    expanded (i->Call-ID, m->Contact, e->Content-Encoding, l->Content-Length, c->Content-Type,
    f->From, s->Subject, k->Supported, t->To, v->Via, o->Event, r->Refer-To, b->Referred-By,
    u->Allow-Events, x->Session-Expires, plus a, j, d, y, n), well-known names written in their
    usual capitalisation (Call-ID, CSeq, WWW-Authenticate, P-Asserted-Identity, ...), unknown
    ones kept as given; lookups are case-insensitive and accept compact forms.

    Values of comma-separated list headers (Via, Route, Record-Route, Contact unless '*',
    Allow, Supported, Require, Proxy-Require, Unsupported, Accept, Accept-Encoding,
    Accept-Language, Allow-Events, Content-Encoding, In-Reply-To) are split at top-level
    commas into separate entries by the parser; add()/set() store the value as given.
    add(), prepend() and set() raise ValueError for an invalid name or a value containing
    CR or LF (which would let text inject header fields).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []  # (lookup key, name, value)
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _trusted(cls, items: list[tuple[str, str, str]]) -> Headers:
        """Wrap (key, name, value) triples the parser has already validated."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    @staticmethod
    def _entry(name: str, value: str) -> tuple[str, str, str]:
        canon = _canon(name)
        if canon is None:
            raise ValueError(f"invalid SIP header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"CR/LF in the value of header {name!r}")
        return canon[0], canon[1], value

    def get(self, name: str) -> str | None:
        """Value of the first field called ``name``, None if absent."""
        key = _key(name)
        for k, _, value in self._items:
            if k == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Values of every field called ``name``, in order."""
        key = _key(name)
        return [value for k, _, value in self._items if k == key]

    def add(self, name: str, value: str) -> None:
        """Append a field at the end."""
        self._items.append(self._entry(name, value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before the first field of that name, or at the start (pushing a
        Via, RFC 3261 8.1.1.7)."""
        entry = self._entry(name, value)
        for index, (k, _, _) in enumerate(self._items):
            if k == entry[0]:
                self._items.insert(index, entry)
                return
        self._items.insert(0, entry)

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one field, at the place of the first
        (appended when absent)."""
        entry = self._entry(name, value)
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == entry[0]:
                if not placed:
                    out.append(entry)
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append(entry)
        self._items = out

    def remove(self, name: str) -> None:
        """Remove every field called ``name`` (no error if there is none)."""
        key = _key(name)
        self._items = [item for item in self._items if item[0] != key]

    def count(self, name: str) -> int:
        """How many fields are called ``name``."""
        key = _key(name)
        return sum(1 for k, _, _ in self._items if k == key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(k == key for k, _, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        """An independent copy."""
        return Headers._trusted(list(self._items))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [i[1:] for i in self._items] == [i[1:] for i in other._items]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


# --- messages -------------------------------------------------------------------

_T = TypeVar("_T")


def _typed(headers: Headers, name: str, parse: Callable[[str], _T]) -> _T:
    value = headers.get(name)
    if value is None:
        raise SipParseError(f"missing {name} header", header=name)
    return _typed_value(value, name, parse)


def _typed_value(value: str, name: str, parse: Callable[[str], _T]) -> _T:
    try:
        return parse(value)
    except SipParseError as exc:
        if exc.header == name:
            raise
        message = f"malformed {name} header: {exc}"
        raise SipParseError(message, status=exc.status, header=name) from None


class _TypedHeaders:
    """Typed views of the header fields common to requests and responses."""

    __slots__ = ()
    headers: Headers

    @property
    def via(self) -> list[Via]:
        """Every Via, topmost first ([] if there is none)."""
        from carriers.sip.parser import _via_cached

        return [v for value in self.headers.get_all("Via") for v in _via_cached(value)]

    @property
    def top_via(self) -> Via:
        """The topmost Via (RFC 3261 8.1.1.7); SipParseError if there is none."""
        from carriers.sip.parser import _via_cached

        return _typed(self.headers, "Via", _via_cached)[0]

    @property
    def from_(self) -> Address:
        """The From address."""
        from carriers.sip.parser import _address_cached

        return _typed(self.headers, "From", _address_cached)

    @property
    def to(self) -> Address:
        """The To address."""
        from carriers.sip.parser import _address_cached

        return _typed(self.headers, "To", _address_cached)

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        from carriers.sip.parser import _call_id

        return _typed(self.headers, "Call-ID", _call_id)

    @property
    def cseq(self) -> CSeq:
        """The CSeq."""
        from carriers.sip.parser import _cseq_cached

        return _typed(self.headers, "CSeq", _cseq_cached)

    def _address_list(self, name: str) -> list[Address]:
        from carriers.sip.parser import _addresses_cached

        return [
            addr
            for value in self.headers.get_all(name)
            for addr in _typed_value(value, name, _addresses_cached)
        ]

    @property
    def contact(self) -> list[Address]:
        """Every Contact address ([] if absent or for the REGISTER wildcard ``*``)."""
        return self._address_list("Contact")

    @property
    def route(self) -> list[Address]:
        """Every Route address, in order."""
        return self._address_list("Route")

    @property
    def record_route(self) -> list[Address]:
        """Every Record-Route address, in order."""
        return self._address_list("Record-Route")

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0-255), None if absent."""
        from carriers.sip.parser import _max_forwards

        value = self.headers.get("Max-Forwards")
        return None if value is None else _typed_value(value, "Max-Forwards", _max_forwards)

    @property
    def content_type(self) -> str | None:
        """Lower-cased ``type/subtype`` of Content-Type without parameters, None if absent."""
        from carriers.sip.parser import _media_type

        value = self.headers.get("Content-Type")
        return None if value is None else _typed_value(value, "Content-Type", _media_type)


def _serialise(start_line: str, headers: Headers, body: bytes) -> bytes:
    # RFC 3261 7.4.1/18.3: Content-Length is always written, computed from the body, so a
    # stale value given by the caller can never mis-frame the message.
    lines = [start_line]
    for key, name, value in headers._items:
        if key != "content-length":
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8") + body


@dataclass(slots=True)
class Request(_TypedHeaders):
    """A SIP request. ``bytes(request)`` serialises it (RFC 3261 7.1)."""

    method: str
    uri: URI
    headers: Headers
    body: bytes = b""

    def __bytes__(self) -> bytes:
        return _serialise(f"{self.method} {self.uri} SIP/2.0", self.headers, self.body)


@dataclass(slots=True)
class Response(_TypedHeaders):
    """A SIP response. ``bytes(response)`` serialises it (RFC 3261 7.2)."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def __bytes__(self) -> bytes:
        return _serialise(f"SIP/2.0 {self.status} {self.reason}", self.headers, self.body)


Message = Request | Response


# RFC 3261 section 21, plus 199 (RFC 6228), 202 (RFC 6665), 204 (RFC 5839), 422 (RFC 4028),
# 489 (RFC 6665), 494 (RFC 3329) and 580 (RFC 3312).
_REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}  # fmt: skip

_CLASS_REASONS = {
    1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error", 5: "Server Error",
    6: "Global Failure",
}  # fmt: skip


def reason_phrase(status: int) -> str:
    """The standard reason phrase for ``status``; for a code without one, the name of its
    class (RFC 3261 21: an unknown code is treated as the x00 of its class)."""
    phrase = _REASONS.get(status)
    if phrase is not None:
        return phrase
    return _CLASS_REASONS.get(status // 100, "Unknown")


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response to ``request`` (RFC 3261 8.2.6).

    Copies every Via in order, From, To, Call-ID and CSeq (whatever of them the request
    has, so a 400 can answer a request missing some); adds ``;tag=to_tag`` to To unless it
    already carries a tag (8.2.6.2); then appends ``headers``. Content-Type is not added.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"SIP status code out of range: {status}")
    out = Headers()
    for via in request.headers.get_all("Via"):
        out.add("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "To" and to_tag is not None and not _has_tag(value):
            # Appending keeps the request's To text byte for byte; on an addr-spec the
            # ";tag" is a header parameter per RFC 3261 20.10.
            value = f"{value};tag={to_tag}"
        out.add(name, value)
    for name, value in headers:
        out.add(name, value)
    return Response(status, reason_phrase(status) if reason is None else reason, out, body)


def _has_tag(to_value: str) -> bool:
    from carriers.sip.parser import _address_cached

    try:
        return _address_cached(to_value).tag is not None
    except SipParseError:
        return True  # unparseable: leave the field exactly as the peer sent it
