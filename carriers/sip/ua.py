"""The sans-IO SIP user agent core: routing, transactions, dialogs and timers.

Shaped like aioquic's connection: feed it `receive(data, source, now)` and
`handle_timer(now)`, place calls with `place_call(spec, now)`, then drain
`datagrams_to_send()` and `next_event()` and re-arm one timer at
`get_timer()`. It never reads the clock, sleeps or touches a socket; ids come
from the injected `random.Random`, so a run is reproducible from its seed.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from dataclasses import dataclass

from carriers.sip.call import ALLOW, CallSpec, OutboundCall
from carriers.sip.dialog import DialogId
from carriers.sip.errors import SipParseError
from carriers.sip.events import (
    Event,
    IncomingRequest,
    MessageDropped,
    OptionsResult,
    RequestRejected,
)
from carriers.sip.message import Address, Headers, Request, Response, SipURI, make_response
from carriers.sip.parser import parse
from carriers.sip.registrar import Registrar, RegistrarEvent
from carriers.sip.transaction import (
    T1,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    Target,
    Timed,
    TxState,
    reply_target,
    server_key,
)
from carriers.sip.validate import check_request

SUPPORTED = "timer"

UaEvent = Event | RegistrarEvent
"""Everything `UserAgent.next_event` hands out: the core's events and, with a
registrar attached, its `Registered`/`Unregistered`/`RegistrationRejected`."""


@dataclass(slots=True)
class _Linger:
    """Keeps a finished call's dialog routable for 64*T1, so late BYEs and
    retransmissions are answered rather than met with 481."""

    ua: UserAgent
    dialog_id: DialogId
    expires: float

    @property
    def deadline(self) -> float | None:
        return self.expires

    def on_timer(self, now: float) -> None:
        if now >= self.expires:
            self.ua._dialogs.pop(self.dialog_id, None)


@dataclass(slots=True)
class _Probe:
    """The transaction user of one OPTIONS probe."""

    ua: UserAgent
    probe_id: str
    sent_at: float

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        if response.status >= 200:
            rtt = now - self.sent_at
            self.ua.emit(OptionsResult(self.probe_id, response.status, rtt, now))

    def on_timeout(self, tx: ClientTransaction, now: float) -> None:
        self.ua.emit(OptionsResult(self.probe_id, None, None, now))


@dataclass(slots=True)
class _RegistrarClock:
    """Puts a registrar's binding expiries on the user agent's timer heap and
    moves its events into the user agent's queue."""

    ua: UserAgent
    registrar: Registrar

    @property
    def deadline(self) -> float | None:
        return self.registrar.get_timer()

    def on_timer(self, now: float) -> None:
        self.registrar.handle_timer(now)
        self.drain()
        self.ua.arm(self)

    def drain(self) -> None:
        while (event := self.registrar.next_event()) is not None:
            self.ua.emit(event)


class UserAgent:
    """One SIP user agent bound to one local address (see module docstring).

    With `registrar` set, out-of-dialog REGISTER requests go to it (RFC 3261
    10.3) and its events come out of `next_event`; without one they get 405.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        rng: random.Random,
        user_agent: str = "outdial/0.1",
        contact_user: str = "outdial",
    ) -> None:
        self.local_host = host
        self.local_port = port
        self.rng = rng
        self.user_agent = user_agent
        self.contact_user = contact_user
        self._out: list[tuple[bytes, Target]] = []
        self._events: deque[UaEvent] = deque()
        self._heap: list[tuple[float, int, Timed]] = []
        self._seq = itertools.count()
        self._client_txs: dict[tuple[str, str], ClientTransaction] = {}
        self._server_txs: dict[tuple[str, str, str], ServerTransaction] = {}
        self._dialogs: dict[DialogId, OutboundCall] = {}
        self._awaiting_ack: dict[DialogId, ServerInviteTransaction] = {}
        self._calls: dict[str, OutboundCall] = {}
        self._registrar: _RegistrarClock | None = None

    @property
    def registrar(self) -> Registrar | None:
        """The REGISTER server of this user agent, if any."""
        return self._registrar.registrar if self._registrar is not None else None

    @registrar.setter
    def registrar(self, registrar: Registrar | None) -> None:
        self._registrar = _RegistrarClock(self, registrar) if registrar is not None else None
        if self._registrar is not None:
            self._registrar.drain()
            self.arm(self._registrar)

    @property
    def allow(self) -> str:
        """The methods this user agent accepts (the Allow header)."""
        return ALLOW if self._registrar is None else f"{ALLOW}, REGISTER"

    # ---------------------------------------------------------------- inputs

    def receive(self, data: bytes, source: Target, now: float) -> None:
        """One datagram (or one framed stream message) from `source`."""
        try:
            message = parse(data)
        except SipParseError as exc:
            self._reject_unparseable(data, exc, source, now)
            return
        self.receive_message(message, source, now)

    def receive_message(self, message: Request | Response, source: Target, now: float) -> None:
        """A message already framed and parsed (a stream transport's parser)."""
        try:
            if isinstance(message, Response):
                self._on_response(message, source, now)
            else:
                self._on_request(message, source, now)
        except SipParseError as exc:
            # A header the parser accepted lazily turned out to be unusable.
            self.emit(MessageDropped(str(exc), f"{source.host}:{source.port}", now))

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now`."""
        fired: set[int] = set()
        while self._heap and self._heap[0][0] <= now:
            _, _, owner = heapq.heappop(self._heap)
            deadline = owner.deadline
            if deadline is None or id(owner) in fired:
                continue
            if deadline > now:
                self.arm(owner)  # moved later without re-arming: keep it scheduled
                continue
            fired.add(id(owner))
            owner.on_timer(now)

    # --------------------------------------------------------------- outputs

    def get_timer(self) -> float | None:
        """The earliest time `handle_timer` must be called, or None."""
        heap = self._heap
        while heap:
            when, _, owner = heap[0]
            deadline = owner.deadline
            if deadline is None or deadline > when:
                heapq.heappop(heap)  # disarmed, or moved later: keep the later time
                if deadline is not None:
                    self.arm(owner)
                continue
            return when
        return None

    def datagrams_to_send(self) -> list[tuple[bytes, Target]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> UaEvent | None:
        if not self._events and self._registrar is not None:
            self._registrar.drain()  # events of registrar calls made outside the UA
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------ operations

    def place_call(self, spec: CallSpec, now: float, call_id: str | None = None) -> str:
        """Start an outbound call; returns its Call-ID."""
        call_id = call_id or self.new_call_id()
        call = OutboundCall(self, spec, call_id, now)
        self._calls[call_id] = call
        call.start(now)
        return call_id

    def hangup(self, call_id: str, now: float, reason: str | None = None) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.hangup(now, reason)

    def cancel(self, call_id: str, now: float) -> None:
        call = self._calls.get(call_id)
        if call is not None:
            call.cancel(now)

    def refer(self, call_id: str, target: str, now: float) -> bool:
        call = self._calls.get(call_id)
        return call is not None and call.refer(target, now)

    def call(self, call_id: str) -> OutboundCall | None:
        return self._calls.get(call_id)

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    def options(self, uri: SipURI, target: Target, now: float) -> str:
        """Send an OPTIONS probe (trunk keep-alive); its answer is an OptionsResult."""
        probe_id = self.new_call_id()
        headers = Headers()
        headers.add("Via", self.make_via(target.transport))
        headers.add("Max-Forwards", "70")
        local = SipURI(host=self.local_host, user=self.contact_user, port=self.local_port)
        headers.add("From", str(Address(local).with_param("tag", self.new_tag())))
        headers.add("To", str(Address(uri)))
        headers.add("Call-ID", probe_id)
        headers.add("CSeq", "1 OPTIONS")
        headers.add("Contact", self.contact(target.transport))
        headers.add("Accept", "application/sdp")
        headers.add("User-Agent", self.user_agent)
        request = Request("OPTIONS", uri, headers)
        probe = _Probe(self, probe_id, now)
        tx = ClientNonInviteTransaction(self, probe, request, target, now)
        self._client_txs[tx.key] = tx
        return probe_id

    # ------------------------------------------------- host for transactions

    def send(self, data: bytes, target: Target) -> None:
        self._out.append((data, target))

    def arm(self, owner: Timed) -> None:
        deadline = owner.deadline
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, next(self._seq), owner))

    def retire(self, tx: ClientTransaction | ServerTransaction) -> None:
        if isinstance(tx, ClientTransaction):
            if self._client_txs.get(tx.key) is tx:
                del self._client_txs[tx.key]
        elif self._server_txs.get(tx.key) is tx:
            del self._server_txs[tx.key]
            for dialog_id, pending in list(self._awaiting_ack.items()):
                if pending is tx:
                    del self._awaiting_ack[dialog_id]

    def emit(self, event: UaEvent) -> None:
        self._events.append(event)

    # ----------------------------------------------------------- host for calls

    def new_tag(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def new_call_id(self) -> str:
        return f"{self.rng.getrandbits(96):024x}@{self.local_host}"

    def make_via(self, transport: str) -> str:
        branch = f"z9hG4bK{self.rng.getrandbits(80):020x}"
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"SIP/2.0/{transport} {host}:{self.local_port};branch={branch};rport"

    def contact(self, transport: str) -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{self.contact_user}@{host}:{self.local_port}{suffix}>"

    def start_invite(
        self, call: OutboundCall, request: Request, target: Target, now: float
    ) -> ClientInviteTransaction:
        tx = ClientInviteTransaction(self, call, request, target, now)
        self._client_txs[tx.key] = tx
        return tx

    def start_request(
        self, call: OutboundCall, request: Request, target: Target, now: float
    ) -> ClientNonInviteTransaction:
        tx = ClientNonInviteTransaction(self, call, request, target, now)
        self._client_txs[tx.key] = tx
        return tx

    def bind_dialog(self, dialog_id: DialogId, call: OutboundCall) -> None:
        self._dialogs[dialog_id] = call

    def call_finished(self, call: OutboundCall, now: float) -> None:
        self._calls.pop(call.call_id, None)
        if call.dialog is not None:
            self.arm(_Linger(self, call.dialog.id, now + 64 * T1))

    # ------------------------------------------------------------- routing

    def _on_response(self, response: Response, source: Target, now: float) -> None:
        key = (response.top_via.branch or "", response.cseq.method)
        tx = self._client_txs.get(key)
        if tx is None:
            where = f"{source.host}:{source.port}"
            self.emit(MessageDropped(f"{response.status} matches no transaction", where, now))
            return
        if isinstance(tx, ClientInviteTransaction):
            tx.on_response(response, now)
        elif isinstance(tx, ClientNonInviteTransaction):
            tx.on_response(response, now)

    def _on_request(self, request: Request, source: Target, now: float) -> None:
        key = server_key(request)
        existing = self._server_txs.get(key)
        if existing is not None:
            if isinstance(existing, ServerInviteTransaction | ServerNonInviteTransaction):
                existing.on_request(request, now)  # retransmission, or ACK of a non-2xx
            return
        if request.method == "ACK":
            self._on_ack(request, now)
            return
        reply_to = reply_target(request, source)
        tx = self._new_server_tx(request, reply_to)
        rejection = check_request(request)
        if rejection is not None:
            response = make_response(
                request,
                rejection.status,
                rejection.reason,
                to_tag=self.new_tag(),
                headers=rejection.headers,
            )
            tx.respond(response, now)
            where = f"{source.host}:{source.port}"
            self.emit(
                RequestRejected(request.method, rejection.status, rejection.reason, where, now)
            )
            return
        if request.method == "CANCEL":
            self._on_cancel(request, tx, now)
        elif request.to.tag:
            self._on_in_dialog(request, tx, now)
        else:
            self._on_out_of_dialog(request, tx, source, now)

    def _new_server_tx(
        self, request: Request, reply_to: Target
    ) -> ServerInviteTransaction | ServerNonInviteTransaction:
        tx: ServerInviteTransaction | ServerNonInviteTransaction
        if request.method == "INVITE":
            tx = ServerInviteTransaction(self, request, reply_to)
        else:
            tx = ServerNonInviteTransaction(self, request, reply_to)
        self._server_txs[tx.key] = tx
        return tx

    def _on_ack(self, request: Request, now: float) -> None:
        """An ACK for a 2xx (its own branch): it belongs to a dialog (13.3.1.4)."""
        dialog_id = (request.call_id, request.to.tag or "", request.from_.tag or "")
        pending = self._awaiting_ack.pop(dialog_id, None)
        if pending is not None:
            pending.acknowledged(now)
        call = self._dialogs.get(dialog_id)
        if call is not None:
            call.on_ack(request, now)

    def _on_cancel(
        self, request: Request, tx: ServerInviteTransaction | ServerNonInviteTransaction, now: float
    ) -> None:
        """RFC 3261 9.2: CANCEL matches the INVITE server transaction by key."""
        invite_key = (*server_key(request)[:2], "INVITE")
        invite_tx = self._server_txs.get(invite_key)
        if isinstance(invite_tx, ServerInviteTransaction) and invite_tx.state is TxState.PROCEEDING:
            tx.respond(make_response(request, 200), now)
            invite_tx.respond(make_response(invite_tx.request, 487, to_tag=self.new_tag()), now)
        else:
            tx.respond(make_response(request, 481), now)

    def _on_in_dialog(
        self, request: Request, tx: ServerInviteTransaction | ServerNonInviteTransaction, now: float
    ) -> None:
        dialog_id = (request.call_id, request.to.tag or "", request.from_.tag or "")
        call = self._dialogs.get(dialog_id)
        if call is None:
            tx.respond(make_response(request, 481), now)
            return
        if isinstance(tx, ServerInviteTransaction):
            self._awaiting_ack[dialog_id] = tx
        call.on_request(request, tx, now)

    def _on_out_of_dialog(
        self,
        request: Request,
        tx: ServerInviteTransaction | ServerNonInviteTransaction,
        source: Target,
        now: float,
    ) -> None:
        if request.method == "REGISTER" and self._registrar is not None:
            self._on_register(request, tx, source, now)
            return
        tag = self.new_tag()
        match request.method:
            case "OPTIONS":
                extra = [
                    ("Allow", self.allow),
                    ("Accept", "application/sdp"),
                    ("Supported", SUPPORTED),
                    ("User-Agent", self.user_agent),
                ]
                tx.respond(make_response(request, 200, to_tag=tag, headers=extra), now)
            case "INVITE":
                # outdial places calls; it does not take them (yet). Say so.
                reason = "Inbound Calls Not Accepted"
                tx.respond(make_response(request, 480, reason, to_tag=tag), now)
                self.emit(IncomingRequest(request, 480, now))
            case "REGISTER" | "SUBSCRIBE" | "PUBLISH" | "MESSAGE" | "REFER":
                extra = [("Allow", self.allow)]
                tx.respond(make_response(request, 405, to_tag=tag, headers=extra), now)
            case _:
                tx.respond(make_response(request, 481, to_tag=tag), now)

    def _on_register(
        self,
        request: Request,
        tx: ServerInviteTransaction | ServerNonInviteTransaction,
        source: Target,
        now: float,
    ) -> None:
        clock = self._registrar
        assert clock is not None
        before = clock.deadline
        tx.respond(clock.registrar.handle_request(request, source, now), now)
        clock.drain()
        after = clock.deadline
        # The heap re-arms an entry whose deadline moved later by itself; only
        # an earlier deadline (or a first one) needs an entry of its own.
        if after is not None and (before is None or after < before):
            self.arm(clock)

    def _reject_unparseable(
        self, data: bytes, error: SipParseError, source: Target, now: float
    ) -> None:
        """RFC 4475: answer 400 to a broken request where a response can be
        built from its raw Via/From/To/Call-ID/CSeq lines, else drop it."""
        where = f"{source.host}:{source.port}"
        self.emit(MessageDropped(f"unparseable: {error}", where, now))
        raw = salvage_bad_request(data, error)
        if raw is not None:
            self.send(raw, source)


_SALVAGE = {
    "via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
    "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq",
}  # fmt: skip


def salvage_bad_request(data: bytes, error: SipParseError) -> bytes | None:
    """Build a 400 for a request too broken to parse, from its raw header lines.

    Only when the start line looks like a request (not a response, which is
    never answered) and all five headers a response needs are present.
    """
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n")
    if not lines or lines[0].startswith("SIP/") or " SIP/2.0" not in lines[0]:
        return None
    found: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        canonical = _SALVAGE.get(name.strip().lower())
        if sep and canonical:
            found.setdefault(canonical, []).append(value.strip())
    if any(name not in found for name in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    if lines[0].split(" ", 1)[0] == "ACK":
        return None  # 17.2: ACK is never answered
    phrase = " ".join(f"Bad Request ({error})".split())[:120].replace("\r", " ")
    out = [f"SIP/2.0 400 {phrase}"]
    out += [f"Via: {v}" for v in found["Via"]]
    for name in ("From", "To", "Call-ID", "CSeq"):
        out.append(f"{name}: {found[name][0]}")
    out.append("Content-Length: 0")
    return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8", "replace")
