"""A sans-IO REGISTER server for agents' phones (RFC 3261 section 10.3).

Shaped like the user agent core: `handle_request(request, source, now)` returns
the response to send, `handle_timer(now)` expires bindings when `get_timer()`
says so, and `next_event()` hands out `Registered`, `Unregistered` and
`RegistrationRejected`. It never reads the clock (``now`` is an argument: the
same monotonic time the `UserAgent` is fed) and its nonces and tags come from
the injected ``random.Random`` (pass ``random.SystemRandom()`` in production).
`UserAgent.registrar` plugs it into the SIP core; the daemon then finds where
an agent's phone is with `binding(username)`.

Policies, and why:

- One phone per agent. An address-of-record (the agent's username) has at
  most one binding. By default the last registration wins
  (``ContactPolicy.REPLACE``): a REGISTER from another device, or from the
  same phone at a new address, replaces the binding, and `Unregistered`
  (reason "replaced") is emitted before the new `Registered`. With
  ``ContactPolicy.REFUSE`` a different contact is refused with 403 while the
  current binding is alive. A REGISTER listing several contacts binds the one
  with the highest ``q`` (the last listed on a tie).
- Call-ID/CSeq ordering (10.3 step 7) applies to the agent's binding whatever
  its contact, so a delayed older REGISTER of the same Call-ID can neither
  refresh nor replace a newer one: it fails with 500 and changes nothing.
- Digest (RFC 3261 22.4 with RFC 8760): the 401 carries one challenge per
  algorithm in ``algorithms`` order, all with qop="auth" and the same nonce.
  The default lists MD5 before SHA-256: UAs that predate RFC 8760 answer
  only the first challenge and give up on an algorithm they do not know
  (SIPp 3.6.1 does: "authentication must use MD5"), while UAs that know
  SHA-256 pick the strongest they support whatever the order (ours does).
  Pass ``algorithms=("SHA-256", "MD5")`` where every phone is RFC 8760-aware.
  A nonce is stateless until used: it is ``<issued ms>.<salt>.<HMAC>``, so
  a stale one is recognised after any number of challenges without keeping
  them. The highest nonce count seen per nonce is kept for the nonce's
  lifetime: a replayed count is "stale".
- Right credentials on an expired, replayed or unknown nonce get a new 401
  with ``stale=true`` (RFC 7616 3.3: the password was right, retry with the
  new nonce). A wrong response on a nonce we issued gets 403, not another
  401: the phone stops and shows a failure instead of re-sending the same bad
  password forever; `RegistrationRejected` tells the daemon. Unparseable
  credentials get 400. An unknown username gets 404 (10.3 step 3; note that
  this lets a scanner tell user names apart).
- Expiry: the Contact ``expires`` parameter, else the Expires header, else
  ``default_expires``; below ``min_expires`` (but not 0) is refused with 423
  and Min-Expires, above ``max_expires`` is clamped. The 200 lists the
  binding with its remaining seconds. No Date header (that would need the
  wall clock; 10.3 step 8 is a SHOULD).
- Binding.target is where the INVITE to the phone goes: the Contact URI's
  host, port and transport; with ``route_to_source=True`` it is the address
  the REGISTER came from instead (phones behind NAT, whose Contact names an
  address nobody else can reach).
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import hmac
import itertools
import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from carriers.sip.auth import AuthError, parse_authorization, verify_authorization
from carriers.sip.errors import SipParseError
from carriers.sip.message import URI, Address, Request, Response, SipURI, make_response
from carriers.sip.transaction import Target

__all__ = [
    "Binding",
    "ContactPolicy",
    "Registered",
    "Registrar",
    "RegistrarEvent",
    "RegistrationRejected",
    "Unregistered",
]

_MAX_DELTA = 2**32 - 1  # delta-seconds (RFC 3261 25.1)


class ContactPolicy(enum.Enum):
    """What a registration from a second contact does (see module docstring)."""

    REPLACE = "replace"  # last wins: one phone per agent, the newest one
    REFUSE = "refuse"  # 403 while the current phone's binding is alive


@dataclass(frozen=True, slots=True)
class Binding:
    """One agent's phone: where it said it is, where it spoke from, until when."""

    aor: str
    contact: SipURI
    source: Target
    expires_at: float
    call_id: str
    cseq: int
    registered_at: float
    route_to_source: bool = False
    user_agent: str | None = None

    @property
    def target(self) -> Target:
        """Where to send the INVITE for `contact` (module docstring)."""
        if self.route_to_source:
            return self.source
        uri = self.contact
        transport = (uri.param("transport") or "udp").upper()
        default_port = 5061 if transport == "TLS" else 5060
        return Target(uri.host, uri.port or default_port, transport)

    def remaining(self, now: float) -> int:
        """Whole seconds left, as the 200's ``expires`` parameter says them."""
        return max(0, math.ceil(self.expires_at - now - 1e-9))


@dataclass(frozen=True, slots=True)
class Registered:
    """A phone registered (``refreshed``: the same contact registered again)."""

    aor: str
    contact: SipURI
    source: Target
    expires_at: float
    at: float
    refreshed: bool = False


@dataclass(frozen=True, slots=True)
class Unregistered:
    """A binding ended: "expired", "removed" (Expires 0, Contact *, account
    removed) or "replaced" (another contact registered for the agent)."""

    aor: str
    reason: str
    contact: SipURI
    at: float


@dataclass(frozen=True, slots=True)
class RegistrationRejected:
    """A REGISTER refused (not a plain 401 challenge, which is the normal first step)."""

    user: str
    status: int
    reason: str
    source: Target
    at: float


RegistrarEvent = Registered | Unregistered | RegistrationRejected


class _Freshness(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"  # ours, but too old or its nonce count was already used
    FOREIGN = "foreign"  # not a nonce this registrar issued


class _Nonces:
    """Issues HMAC'd, timestamped nonces and tracks nonce counts once used."""

    def __init__(self, rng: random.Random, lifetime: float) -> None:
        self._rng = rng
        self._key = rng.getrandbits(256).to_bytes(32, "big")
        self.lifetime = lifetime
        self._counts: dict[str, tuple[float, int]] = {}  # nonce -> (forget at, highest nc)
        self._sweep_at = 0.0

    def issue(self, now: float) -> str:
        stamp = f"{max(0, int(now * 1000)):x}"
        salt = f"{self._rng.getrandbits(64):016x}"
        return f"{stamp}.{salt}.{self._mac(stamp, salt)}"

    def _mac(self, stamp: str, salt: str) -> str:
        data = f"{stamp}.{salt}".encode()
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:32]

    def _issued_at(self, nonce: str) -> float | None:
        parts = nonce.split(".")
        if len(parts) != 3 or not hmac.compare_digest(parts[2], self._mac(parts[0], parts[1])):
            return None
        return int(parts[0], 16) / 1000  # the MAC vouches that this is our hex

    def check(self, nonce: str, nc: str | None, now: float) -> _Freshness:
        issued = self._issued_at(nonce)
        if issued is None or issued > now:
            return _Freshness.FOREIGN
        if now - issued >= self.lifetime:
            return _Freshness.STALE
        if nc is None:
            return _Freshness.FRESH  # RFC 2069 style, no count to check
        seen = self._counts.get(nonce)
        count = _hex_count(nc)
        if count is None or (seen is not None and count <= seen[1]):
            return _Freshness.STALE  # RFC 7616 3.4: a nonce count must never repeat
        return _Freshness.FRESH

    def use(self, nonce: str, nc: str | None, now: float) -> None:
        count = _hex_count(nc) if nc is not None else None
        issued = self._issued_at(nonce)
        if count is not None and issued is not None:
            self._counts[nonce] = (issued + self.lifetime, count)
        if now >= self._sweep_at:
            self._counts = {n: v for n, v in self._counts.items() if v[0] > now}
            self._sweep_at = now + self.lifetime


def _hex_count(nc: str) -> int | None:
    try:
        return int(nc, 16) if len(nc) <= 8 else None
    except ValueError:
        return None


class _Refusal(Exception):
    """Internal: a REGISTER that ends in an error response (and maybe an event)."""

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        *,
        detail: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(detail or reason or str(status))
        self.status = status
        self.reason = reason
        self.detail = detail  # None: a normal step of the exchange, no event
        self.headers = headers


class Registrar:
    """Agents' accounts and their phones' bindings (see module docstring).

    ``accounts`` maps username to password (one ``realm`` for all);
    ``algorithms`` lists the digest challenges of a 401, in the order sent.
    """

    def __init__(
        self,
        *,
        realm: str,
        accounts: Mapping[str, str],
        rng: random.Random,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        nonce_lifetime: float = 300.0,
        algorithms: tuple[str, ...] = ("MD5", "SHA-256"),
        policy: ContactPolicy = ContactPolicy.REPLACE,
        route_to_source: bool = False,
    ) -> None:
        if not 0 < min_expires <= max_expires:
            raise ValueError(f"need 0 < min_expires <= max_expires: {min_expires}, {max_expires}")
        self.realm = realm
        self.rng = rng
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.algorithms = algorithms
        self.policy = policy
        self.route_to_source = route_to_source
        self._accounts = dict(accounts)
        self._nonces = _Nonces(rng, nonce_lifetime)
        self._bindings: dict[str, Binding] = {}
        self._expiries: list[tuple[float, int, str]] = []  # lazy heap: (at, seq, aor)
        self._seq = itertools.count()
        self._events: deque[RegistrarEvent] = deque()

    # ---------------------------------------------------------------- accounts

    def set_account(self, username: str, password: str) -> None:
        """Add an agent's account or change its password (the binding stays)."""
        self._accounts[username] = password

    def remove_account(self, username: str, now: float) -> None:
        """Forget an account; its phone's binding ends ("removed")."""
        self._accounts.pop(username, None)
        self._unbind(username, "removed", now)

    # ------------------------------------------------------------------ lookup

    def binding(self, aor: str, now: float | None = None) -> Binding | None:
        """The agent's current binding (None if none, or expired at ``now``)."""
        found = self._bindings.get(aor)
        if found is None or (now is not None and found.expires_at <= now):
            return None
        return found

    def bindings(self) -> list[Binding]:
        return list(self._bindings.values())

    # ------------------------------------------------------------ sans-IO API

    def handle_request(self, request: Request, source: Target, now: float) -> Response:
        """The response to one REGISTER (retransmissions are the transaction's job)."""
        user = _aor_of(request)
        try:
            return self._register(request, user, source, now)
        except _Refusal as refusal:
            if refusal.detail is not None:
                self._emit(RegistrationRejected(user, refusal.status, refusal.detail, source, now))
            return self._respond(request, refusal.status, refusal.reason, refusal.headers)
        except SipParseError as exc:  # a header the parser accepted lazily is unusable
            detail = f"malformed request: {exc}"
            self._emit(RegistrationRejected(user, 400, detail, source, now))
            return self._respond(request, 400, "Bad Request")

    def get_timer(self) -> float | None:
        """When the next binding expires (None: no bindings)."""
        heap = self._expiries
        while heap and not self._is_current(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def handle_timer(self, now: float) -> None:
        """Expire every binding due at ``now`` (`Unregistered` "expired")."""
        while (when := self.get_timer()) is not None and when <= now:
            _, _, aor = heapq.heappop(self._expiries)
            self._unbind(aor, "expired", now)

    def next_event(self) -> RegistrarEvent | None:
        return self._events.popleft() if self._events else None

    # ---------------------------------------------------------------- 10.3 steps

    def _register(self, request: Request, user: str, source: Target, now: float) -> Response:
        if request.method != "REGISTER":
            raise _Refusal(405, detail=f"{request.method} sent to the registrar")
        password = self._accounts.get(user)
        if password is None:  # step 3: not an address-of-record of ours
            raise _Refusal(404, detail="unknown user")
        self._authenticate(request, user, password, now)  # steps 4 and 5
        star = [v for v in request.headers.get_all("Contact") if v.strip() == "*"]
        if star:
            self._remove_all(request, user, now)  # step 6
        else:
            self._update(request, user, source, now)  # step 7
        return self._ok(request, user, now)  # step 8

    def _authenticate(self, request: Request, user: str, password: str, now: float) -> None:
        params, value = self._credentials(request, now)
        if params.get("username") != user:
            raise _Refusal(403, detail=f"credentials of {params.get('username')!r} for {user!r}")
        algorithm = params.get("algorithm", "MD5")
        if algorithm.lower() not in {a.lower() for a in self.algorithms}:
            raise self._challenge(now)  # not one we offered: offer ours again
        nonce, nc = params["nonce"], params.get("nc")
        freshness = self._nonces.check(nonce, nc, now)
        if not verify_authorization(value, method="REGISTER", password=password, body=request.body):
            if freshness is _Freshness.FOREIGN:
                raise self._challenge(now, detail="wrong credentials on a nonce not issued here")
            raise _Refusal(403, detail="wrong password")
        if freshness is not _Freshness.FRESH:
            raise self._challenge(now, stale=True)
        self._nonces.use(nonce, nc, now)

    def _credentials(self, request: Request, now: float) -> tuple[dict[str, str], str]:
        """Our realm's Authorization parameters, or the refusal to send instead."""
        for value in request.headers.get_all("Authorization"):
            try:
                params = parse_authorization(value)
            except AuthError as exc:
                raise _Refusal(400, "Malformed Authorization", detail=str(exc)) from None
            if params.get("realm") != self.realm:
                continue  # credentials for someone else (22.4): not ours to judge
            missing = [k for k in ("username", "nonce", "uri", "response") if k not in params]
            if missing:
                detail = f"Authorization without {', '.join(missing)}"
                raise _Refusal(400, "Malformed Authorization", detail=detail)
            return params, value
        raise self._challenge(now)

    def _challenge(self, now: float, *, stale: bool = False, detail: str | None = None) -> _Refusal:
        nonce = self._nonces.issue(now)
        realm = _quote(self.realm)
        headers = tuple(
            (
                "WWW-Authenticate",
                f'Digest realm={realm}, nonce="{nonce}", algorithm={algorithm}, qop="auth"'
                + (", stale=true" if stale else ""),
            )
            for algorithm in self.algorithms
        )
        return _Refusal(401, detail=detail, headers=headers)

    def _remove_all(self, request: Request, user: str, now: float) -> None:
        """Contact: * (10.3 step 6): alone, with Expires: 0, obeying CSeq order."""
        if len(request.headers.get_all("Contact")) != 1 or request.headers.get("Expires") != "0":
            raise _Refusal(400, "Invalid Contact: *", detail="Contact: * needs Expires: 0, alone")
        self._check_order(request, self._bindings.get(user))
        self._unbind(user, "removed", now)

    def _update(self, request: Request, user: str, source: Target, now: float) -> None:
        wanted = [(addr, self._expires_of(request, addr)) for addr in request.contact]
        if not wanted:
            return  # a query: the 200 lists the bindings
        brief = [e for _, e in wanted if 0 < e < self.min_expires]
        if brief:  # step 7: refuse before changing anything
            detail = f"expiry {min(brief)} s below {self.min_expires} s"
            minimum = (("Min-Expires", str(self.min_expires)),)
            raise _Refusal(423, "Interval Too Brief", detail=detail, headers=minimum)
        current = self._bindings.get(user)
        self._check_order(request, current)
        removed = [a for a, e in wanted if e == 0]
        if current is not None and any(_same_uri(a.uri, current.contact) for a in removed):
            self._unbind(user, "removed", now)
            current = None
        adds = [(a, e) for a, e in wanted if e > 0]
        if adds:
            chosen, expires = max(enumerate(adds), key=lambda item: (_q(item[1][0]), item[0]))[1]
            self._bind(request, user, chosen, min(expires, self.max_expires), source, now, current)

    def _bind(
        self,
        request: Request,
        user: str,
        address: Address,
        expires: int,
        source: Target,
        now: float,
        current: Binding | None,
    ) -> None:
        uri = address.uri
        if not isinstance(uri, SipURI) or uri.scheme != "sip":
            raise _Refusal(400, "Unsupported Contact URI", detail=f"cannot call {uri}")
        same = current is not None and _same_uri(uri, current.contact)
        if current is not None and not same:
            if self.policy is ContactPolicy.REFUSE:
                detail = f"already registered at {current.contact}"
                raise _Refusal(403, "Already Registered Elsewhere", detail=detail)
            self._unbind(user, "replaced", now)
        binding = Binding(
            aor=user, contact=uri, source=source, expires_at=now + expires,
            call_id=request.call_id, cseq=request.cseq.number,
            registered_at=current.registered_at if same and current else now,
            route_to_source=self.route_to_source, user_agent=request.headers.get("User-Agent"),
        )  # fmt: skip
        self._bindings[user] = binding
        heapq.heappush(self._expiries, (binding.expires_at, next(self._seq), user))
        self._emit(Registered(user, uri, source, binding.expires_at, now, refreshed=same))

    def _check_order(self, request: Request, current: Binding | None) -> None:
        """10.3 step 7: the same Call-ID must come with a higher CSeq."""
        if current is not None and current.call_id == request.call_id:
            if request.cseq.number <= current.cseq:
                detail = f"CSeq {request.cseq.number} not above {current.cseq} of this Call-ID"
                raise _Refusal(500, "Out of Order Request", detail=detail)

    def _expires_of(self, request: Request, address: Address) -> int:
        for text in (address.param("expires"), request.headers.get("Expires")):
            if text is not None and text.isascii() and text.isdigit():
                return min(int(text), _MAX_DELTA)
        return self.default_expires  # 20.19: a malformed value counts as the default

    def _ok(self, request: Request, user: str, now: float) -> Response:
        headers = []
        current = self.binding(user, now)
        if current is not None:
            contact = Address(current.contact).with_param("expires", str(current.remaining(now)))
            headers.append(("Contact", str(contact)))
        return self._respond(request, 200, None, tuple(headers))

    # ----------------------------------------------------------------- helpers

    def _unbind(self, user: str, reason: str, now: float) -> None:
        old = self._bindings.pop(user, None)
        if old is not None:
            self._emit(Unregistered(user, reason, old.contact, now))

    def _is_current(self, entry: tuple[float, int, str]) -> bool:
        binding = self._bindings.get(entry[2])
        return binding is not None and binding.expires_at == entry[0]

    def _respond(
        self,
        request: Request,
        status: int,
        reason: str | None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Response:
        tag = f"{self.rng.getrandbits(64):016x}"
        return make_response(request, status, reason, to_tag=tag, headers=headers)

    def _emit(self, event: RegistrarEvent) -> None:
        self._events.append(event)


def _aor_of(request: Request) -> str:
    """The agent a REGISTER is for: the user part of To (10.3 step 3)."""
    try:
        uri = request.to.uri
    except SipParseError:
        return ""
    if isinstance(uri, SipURI) and uri.user is not None:
        return uri.user_unescaped or ""
    return ""


def _same_uri(a: URI, b: SipURI) -> bool:
    """Enough of RFC 3261 19.1.4 for one phone's contact: user, host, port, transport."""
    return (
        isinstance(a, SipURI) and a.scheme == b.scheme and a.user_unescaped == b.user_unescaped
        and a.host.lower() == b.host.lower() and (a.port or 5060) == (b.port or 5060)
        and (a.param("transport") or "udp").lower() == (b.param("transport") or "udp").lower()
    )  # fmt: skip


def _q(address: Address) -> float:
    try:
        return float(address.param("q") or "1")
    except ValueError:
        return 1.0


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
