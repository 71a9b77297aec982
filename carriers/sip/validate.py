"""What a UAS answers to a request that parsed but must be refused (RFC 3261 8.2).

``check_request`` runs the checks of RFC 3261 8.2.2-8.2.3 in the order the RFC gives
them and returns the rejection to send, or None when the request may be processed.
The torture cases of RFC 4475 section 3.3 map onto these checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from carriers.sip.errors import SipParseError
from carriers.sip.message import AbsoluteURI, Request, SipURI

__all__ = ["Rejection", "check_request"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A response to send instead of processing the request."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


# RFC 3261 8.1.1: To, From, CSeq, Call-ID and Via are what a UAS needs to answer at all.
# Max-Forwards is mandatory for a UAC too, but 8.2 asks a UAS to be lenient about it.
_MANDATORY = ("To", "From", "Call-ID", "CSeq", "Via")
# RFC 3261 7.3.1: header fields that may appear only once (RFC 4475 3.3.8, 3.3.9).
_SINGLE_VALUED = (
    "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type",
)  # fmt: skip
_BODY_METHODS = frozenset({"INVITE", "UPDATE", "PRACK", "ACK"})
_SDP = "application/sdp"


def check_request(
    request: Request,
    *,
    supported: frozenset[str] = frozenset({"timer", "100rel"}),
    accepted_types: frozenset[str] = frozenset({_SDP}),
    schemes: frozenset[str] = frozenset({"sip", "sips", "tel"}),
) -> Rejection | None:
    """The rejection a UA sends for ``request``, or None if it may be processed.

    - 400 when To, From, Call-ID, CSeq or Via is missing (the reason names them), when a
      single-valued header appears more than once, when a typed header is malformed, or
      when a body has no Content-Type (RFC 3261 20.15);
    - 416 when the Request-URI scheme is not in ``schemes`` (8.2.2.1);
    - 420 with ``Unsupported`` when Require lists an option tag not in ``supported``
      (8.2.2.3; Proxy-Require is for proxies and ignored; not checked on CANCEL);
    - 415 with ``Accept`` when an INVITE, UPDATE or PRACK carries a body whose type is not
      in ``accepted_types`` (8.2.3);
    - 406 when an INVITE or OPTIONS has an Accept header that excludes application/sdp
      (RFC 4475 3.3.15: the answer could not carry a session description).

    An ACK is never answered (RFC 3261 17.1.1.3): for an ACK this always returns None.
    """
    if request.method == "ACK":
        return None
    rejection = _check_headers(request)
    if rejection is not None:
        return rejection
    uri = request.uri
    scheme = uri.scheme if isinstance(uri, SipURI | AbsoluteURI) else ""
    if scheme not in schemes:
        return Rejection(416, "Unsupported URI Scheme")
    if request.method != "CANCEL":
        rejection = _check_require(request, supported)
        if rejection is not None:
            return rejection
    rejection = _check_body(request, accepted_types)
    if rejection is not None:
        return rejection
    return _check_accept(request)


def _check_headers(request: Request) -> Rejection | None:
    headers = request.headers
    missing = [name for name in _MANDATORY if name not in headers]
    if missing:
        noun = "header" if len(missing) == 1 else "headers"
        return Rejection(400, f"Missing {', '.join(missing)} {noun}")
    repeated = [name for name in _SINGLE_VALUED if headers.count(name) > 1]
    if repeated:
        return Rejection(400, "Multiple " + ", ".join(repeated) + " values")
    try:
        # Typed views raise on malformed values; parse() has already checked these, but
        # a request may also have been built by hand.
        _ = (request.from_, request.to, request.call_id, request.top_via)
        if request.cseq.method != request.method:
            return Rejection(400, "CSeq method does not match the request method")
        content_type = request.content_type
    except SipParseError as exc:
        return Rejection(400, f"Malformed {exc.header or 'header'}")
    if request.body and content_type is None:
        return Rejection(400, "Missing Content-Type header")
    return None


def _tokens(values: list[str]) -> list[str]:
    return [t.strip(" \t") for value in values for t in value.split(",") if t.strip(" \t")]


def _check_require(request: Request, supported: frozenset[str]) -> Rejection | None:
    unknown = [tag for tag in _tokens(request.headers.get_all("Require")) if tag not in supported]
    if not unknown:
        return None
    return Rejection(420, "Bad Extension", (("Unsupported", ", ".join(unknown)),))


def _check_body(request: Request, accepted_types: frozenset[str]) -> Rejection | None:
    if not request.body or request.method not in _BODY_METHODS:
        return None
    if request.content_type in accepted_types:
        return None
    accept = ", ".join(sorted(accepted_types))
    return Rejection(415, "Unsupported Media Type", (("Accept", accept),))


def _accepts_sdp(values: list[str]) -> bool:
    """Whether Accept values admit application/sdp (wildcards honoured, q=0 excluded)."""
    for entry in _tokens(values):
        media, _, params = entry.partition(";")
        media = media.replace(" ", "").replace("\t", "").lower()
        if media not in (_SDP, "application/*", "*/*"):
            continue
        pairs = (p.partition("=") for p in params.split(";"))
        qvalues = [value for name, _, value in pairs if name.strip().lower() == "q"]
        if not qvalues or not _is_zero(qvalues[0].strip()):
            return True
    return False


def _is_zero(qvalue: str) -> bool:
    try:
        return float(qvalue) == 0.0
    except ValueError:
        return False


def _check_accept(request: Request) -> Rejection | None:
    if request.method not in ("INVITE", "OPTIONS") or "Accept" not in request.headers:
        return None
    # RFC 3261 20.1: an Accept header that is present but empty accepts nothing.
    if _accepts_sdp(request.headers.get_all("Accept")):
        return None
    return Rejection(406, "Not Acceptable")
