"""HTTP Digest authentication for SIP, sans-IO.

Implements the client side of RFC 3261 section 22 as updated by RFC 8760 (which
brings in RFC 7616's SHA-256 and SHA-512/256 algorithms), plus a server-side
verifier for tests and the test registrar. Nothing here touches the network or
the clock; the client nonce comes from an injected ``random.Random`` (pass a
``random.SystemRandom`` in production so cnonces are unpredictable).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from carriers.sip.errors import SipError

__all__ = [
    "AuthError",
    "Challenge",
    "Credentials",
    "DigestSession",
    "choose_challenge",
    "compute_response",
    "parse_authorization",
    "parse_challenge",
    "supported_algorithms",
    "verify_authorization",
]


class AuthError(SipError):
    """A Digest challenge or credentials header that cannot be used."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A trunk's username and password; ``realm=None`` answers any realm."""

    username: str
    password: str
    realm: str | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge from a WWW-Authenticate (401) or Proxy-Authenticate (407)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False


# RFC 7616 section 6.1 (IANA "HTTP Digest Hash Algorithms"): canonical spelling of
# each algorithm token we know, keyed by its lower-case form. Tokens compare
# case-insensitively (RFC 7616 section 3.3).
_CANONICAL_ALGORITHMS = {
    name.lower(): name
    for name in (
        "MD5",
        "MD5-sess",
        "SHA-256",
        "SHA-256-sess",
        "SHA-512-256",
        "SHA-512-256-sess",
    )
}

# Base algorithm -> (hashlib name, strength rank used by choose_challenge).
_HASHES: dict[str, tuple[str, int]] = {
    "MD5": ("md5", 1),
    "SHA-256": ("sha256", 2),
    "SHA-512-256": ("sha512_256", 3),
}


def _hash_available(hashlib_name: str) -> bool:
    # SHA-512/256 comes from OpenSSL and is missing from some builds.
    try:
        hashlib.new(hashlib_name)
    except ValueError:
        return False
    return True


_AVAILABLE = frozenset(base for base, (name, _) in _HASHES.items() if _hash_available(name))


def supported_algorithms() -> tuple[str, ...]:
    """Canonical algorithm names this build can answer, strongest first."""
    bases = sorted(_AVAILABLE, key=lambda base: -_HASHES[base][1])
    return tuple(name for base in bases for name in (base, f"{base}-sess"))


def _normalise_algorithm(token: str) -> str:
    token = token.strip()
    return _CANONICAL_ALGORITHMS.get(token.lower(), token)


def _split_algorithm(algorithm: str) -> tuple[str, bool]:
    """Canonical name -> (base algorithm, is_session_variant); AuthError if unsupported."""
    canonical = _normalise_algorithm(algorithm)
    base, sess = (canonical[:-5], True) if canonical.endswith("-sess") else (canonical, False)
    if base not in _AVAILABLE or canonical.lower() not in _CANONICAL_ALGORITHMS:
        raise AuthError(f"unsupported digest algorithm {algorithm!r}")
    return base, sess


def _hasher(base: str) -> Callable[[str], str]:
    name = _HASHES[base][0]

    def digest(text: str) -> str:
        return hashlib.new(name, text.encode("utf-8")).hexdigest()

    return digest


# --- header syntax ------------------------------------------------------------
# RFC 3261 section 25.1 / RFC 7235 section 2.1: challenge = scheme 1*SP auth-param
# *(COMMA auth-param); auth-param = token EQUAL (token / quoted-string), with
# LWS allowed around "=" and ",". Unquoted values are read up to the next comma
# or whitespace, which also accepts servers that forget to quote nonces.
_SCHEME = re.compile(r"[ \t\r\n]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?:[ \t\r\n]+|$)")
_PARAM = re.compile(
    r"""[ \t\r\n]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t\r\n]*=[ \t\r\n]*"""
    r"""(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))[ \t\r\n]*"""
)
_SEPARATOR = re.compile(r"[ \t\r\n]*,")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def _parse_params(value: str) -> tuple[str, dict[str, str]]:
    """Split 'Scheme k=v, k="v"' into (scheme, {lower-cased key: unescaped value})."""
    scheme_match = _SCHEME.match(value)
    if scheme_match is None:
        raise AuthError(f"no authentication scheme in {value!r}")
    params: dict[str, str] = {}
    pos = scheme_match.end()
    # Empty list elements (", ,") are allowed by the #rule (RFC 7230 section 7).
    while (sep := _SEPARATOR.match(value, pos)) is not None:
        pos = sep.end()
    while pos < len(value) and value[pos:].strip():
        param = _PARAM.match(value, pos)
        if param is None:
            raise AuthError(f"malformed auth-param at offset {pos} in {value!r}")
        name = param.group(1).lower()
        if name in params:
            # RFC 7235 section 2.2: each parameter name MUST occur only once.
            raise AuthError(f"duplicate auth-param {name!r}")
        quoted, token = param.group(2), param.group(3)
        params[name] = _QUOTED_PAIR.sub(r"\1", quoted) if quoted is not None else token
        pos = param.end()
        if pos < len(value) and _SEPARATOR.match(value, pos) is None:
            raise AuthError(f"expected ',' at offset {pos} in {value!r}")
        while (sep := _SEPARATOR.match(value, pos)) is not None:
            pos = sep.end()
    return scheme_match.group(1), params


def _quote(text: str) -> str:
    """quoted-string with quoted-pair escapes (RFC 3261 section 25.1)."""
    if "\r" in text or "\n" in text:
        raise AuthError("CR/LF cannot appear in a Digest parameter")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge:
    """Parse one WWW-Authenticate / Proxy-Authenticate value into a ``Challenge``.

    Raises ``AuthError`` for a non-Digest scheme, a missing realm or nonce, or
    malformed syntax. ``proxy`` records that it came from a 407.
    """
    scheme, params = _parse_params(value)
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported authentication scheme {scheme!r}")
    if "realm" not in params or "nonce" not in params:
        raise AuthError("Digest challenge without realm or nonce")
    # qop-options is a quoted, comma-separated list of tokens (RFC 7616 section 3.3).
    qop_tokens = (token.strip().lower() for token in params.get("qop", "").split(","))
    qop = tuple(token for token in qop_tokens if token)
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=_normalise_algorithm(params.get("algorithm", "MD5")),
        qop=qop,
        opaque=params.get("opaque"),
        # RFC 7616 section 3.3: stale is "true" case-insensitively, anything else false.
        stale=params.get("stale", "").strip().lower() == "true",
        proxy=proxy,
    )


def _usable(challenge: Challenge) -> bool:
    try:
        _split_algorithm(challenge.algorithm)
    except AuthError:
        return False
    return not challenge.qop or _choose_qop(challenge.qop) is not None


def choose_challenge(challenges: Sequence[Challenge]) -> Challenge | None:
    """Pick the challenge to answer among several offered in one 401/407.

    RFC 8760 section 2.4 lets the UAC apply local policy; ours is the strongest
    hash we support (SHA-512/256 over SHA-256 over MD5, each -sess variant equal
    to its base), ties going to the challenge listed first, which RFC 8760 says
    the server orders by its own preference. Challenges with an unsupported
    algorithm or only unknown qop values are ignored; ``None`` if none is usable.
    """
    best: Challenge | None = None
    best_rank = 0
    for challenge in challenges:
        if not _usable(challenge):
            continue
        rank = _HASHES[_split_algorithm(challenge.algorithm)[0]][1]
        if rank > best_rank:
            best, best_rank = challenge, rank
    return best


def _choose_qop(offered: Sequence[str]) -> str | None:
    # RFC 7616 section 3.4: "auth" is cheapest and protects what SIP proxies
    # need; "auth-int" only when it is all the server accepts.
    lowered = [token.lower() for token in offered]
    for candidate in ("auth", "auth-int"):
        if candidate in lowered:
            return candidate
    return None


def compute_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str | None,
    cnonce: str | None,
    qop: str | None,
    body: bytes = b"",
) -> str:
    """The Digest ``response`` value as lower-case hex (RFC 7616 section 3.4.1).

    With ``qop`` None the RFC 2069 form H(HA1:nonce:HA2) is used (RFC 2617
    section 3.2.2.1); with "auth" or "auth-int", nc and cnonce are required.
    """
    base, sess = _split_algorithm(algorithm)
    h = _hasher(base)
    if qop is not None and qop not in ("auth", "auth-int"):
        raise AuthError(f"unsupported qop {qop!r}")
    if (qop is not None or sess) and not cnonce:
        raise AuthError("cnonce is required with qop or a -sess algorithm")
    if qop is not None and not nc:
        raise AuthError("nc is required with qop")
    ha1 = h(f"{username}:{realm}:{password}")
    if sess:
        # RFC 7616 section 3.4.2: the session key folds in both nonces.
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        # RFC 7616 section 3.4.3: A2 covers the body's hash, with the same algorithm.
        body_hash = hashlib.new(_HASHES[base][0], body).hexdigest()
        ha2 = h(f"{method}:{uri}:{body_hash}")
    else:
        ha2 = h(f"{method}:{uri}")
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def parse_authorization(value: str) -> dict[str, str]:
    """Parameters of a Digest Authorization / Proxy-Authorization value.

    Keys are lower-cased, quoted values unescaped. ``AuthError`` for another
    scheme or malformed syntax.
    """
    scheme, params = _parse_params(value)
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported authentication scheme {scheme!r}")
    return params


def verify_authorization(value: str, *, method: str, password: str, body: bytes = b"") -> bool:
    """Server side: does this Authorization value carry the right response?

    Recomputes the response from the header's own username, realm, nonce, uri,
    qop, nc, cnonce and algorithm. Checking that the nonce is one the server
    issued (and still fresh) is the caller's job. Malformed or unsupported
    headers verify as False.
    """
    try:
        params = parse_authorization(value)
        qop = params.get("qop")
        expected = compute_response(
            algorithm=params.get("algorithm", "MD5"),
            username=params["username"],
            realm=params["realm"],
            password=password,
            method=method,
            uri=params["uri"],
            nonce=params["nonce"],
            nc=params.get("nc"),
            cnonce=params.get("cnonce"),
            qop=qop.lower() if qop is not None else None,
            body=body,
        )
        given = params["response"].lower()
    except (AuthError, KeyError):
        return False
    return hmac.compare_digest(expected, given)


@dataclass(slots=True)
class _NonceUse:
    """Mutable per-realm state: the last challenge answered and its nonce count."""

    challenge: Challenge
    count: int = 0


class DigestSession:
    """Digest state for one trunk's credentials.

    Remembers the last challenge per realm and the nonce count (RFC 7616
    section 3.4: nc increments per request with the same nonce and restarts at
    1 with a new nonce), so later requests can be pre-authorised with the
    cached nonce: ``authorize(session.cached_challenge(), ...)``.
    """

    __slots__ = ("_credentials", "_last_realm", "_realms", "_rng")

    def __init__(self, credentials: Credentials, rng: random.Random) -> None:
        self._credentials = credentials
        self._rng = rng
        self._realms: dict[str, _NonceUse] = {}
        self._last_realm: str | None = None

    def authorize(
        self, challenge: Challenge, method: str, uri: str, body: bytes = b""
    ) -> tuple[str, str]:
        """Answer ``challenge`` for a request; returns (header name, header value).

        The header is Proxy-Authorization for a 407's challenge, Authorization
        otherwise. qop=auth is used when offered, auth-int (hashing ``body``)
        only when auth is not; with no qop the RFC 2069 form is sent. Raises
        ``AuthError`` on a realm the credentials are not for, or an
        unsupported algorithm or qop.
        """
        creds = self._credentials
        if creds.realm is not None and creds.realm != challenge.realm:
            raise AuthError(f"credentials are for realm {creds.realm!r}, not {challenge.realm!r}")
        qop = _choose_qop(challenge.qop) if challenge.qop else None
        if challenge.qop and qop is None:
            raise AuthError(f"no supported qop in {challenge.qop!r}")
        algorithm = _normalise_algorithm(challenge.algorithm)
        _split_algorithm(algorithm)  # fail before touching any state
        nc = self._next_nonce_count(challenge)
        cnonce = f"{self._rng.getrandbits(64):016x}"
        sess = algorithm.endswith("-sess")
        response = compute_response(
            algorithm=algorithm,
            username=creds.username,
            realm=challenge.realm,
            password=creds.password,
            method=method,
            uri=uri,
            nonce=challenge.nonce,
            nc=nc if qop else None,
            cnonce=cnonce if qop or sess else None,
            qop=qop,
            body=body,
        )
        value = _format_authorization(
            creds.username, challenge, algorithm, uri, response, qop, nc, cnonce
        )
        name = "Proxy-Authorization" if challenge.proxy else "Authorization"
        return name, value

    def _next_nonce_count(self, challenge: Challenge) -> str:
        # RFC 7616 section 3.4: nc counts requests sent with this nonce, as 8 hex digits.
        use = self._realms.get(challenge.realm)
        if use is None or use.challenge.nonce != challenge.nonce:
            use = _NonceUse(challenge)
            self._realms[challenge.realm] = use
        else:
            use.challenge = challenge
        self._last_realm = challenge.realm
        use.count += 1
        return f"{use.count:08x}"

    def should_retry(self, challenge: Challenge, previous_failed: bool) -> bool:
        """Whether to resend the request answering ``challenge``.

        After a first 401/407 (``previous_failed`` False): yes, if the challenge
        is one we can answer. After our credentials were rejected: only when
        the server says stale=true (RFC 7616 section 3.3: the nonce, not the
        password, was wrong) and hands us a nonce we have not used, so a server
        that keeps repeating itself cannot loop us forever.
        """
        creds = self._credentials
        if creds.realm is not None and creds.realm != challenge.realm:
            return False
        if not _usable(challenge):
            return False
        if not previous_failed:
            return True
        if not challenge.stale:
            return False
        use = self._realms.get(challenge.realm)
        return use is None or use.challenge.nonce != challenge.nonce

    def cached_challenge(self, realm: str | None = None) -> Challenge | None:
        """The last challenge answered for ``realm`` (default: the latest realm), if any."""
        key = realm if realm is not None else self._last_realm
        if key is None:
            return None
        use = self._realms.get(key)
        return use.challenge if use is not None else None

    def forget(self, realm: str) -> None:
        """Drop the cached nonce for ``realm`` (e.g. after the server rejected it)."""
        self._realms.pop(realm, None)
        if self._last_realm == realm:
            self._last_realm = None


def _format_authorization(
    username: str,
    challenge: Challenge,
    algorithm: str,
    uri: str,
    response: str,
    qop: str | None,
    nc: str,
    cnonce: str,
) -> str:
    # RFC 7616 section 3.4: algorithm, qop and nc are tokens and MUST NOT be
    # quoted; everything else is a quoted-string.
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if qop is not None:
        parts += [f"cnonce={_quote(cnonce)}", f"qop={qop}", f"nc={nc}"]
    elif algorithm.endswith("-sess"):
        parts.append(f"cnonce={_quote(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)
