"""SIP transaction state machines (RFC 3261 section 17, with RFC 6026).

Sans-IO: a transaction never sleeps and never touches a socket. It hands bytes
to its host (`TransactionHost.send`), reports to its transaction user through
callbacks, and exposes `deadline`, the earliest time at which `on_timer(now)`
must be called. The host keeps one timer heap for every transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from carriers.sip.message import Headers, Request, Response, get_param

# RFC 3261 17.1.1.1: the timer base values.
T1 = 0.5
T2 = 4.0
T4 = 5.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where a message goes: a host (name or address), a port and a transport."""

    host: str
    port: int
    transport: str = "UDP"

    @property
    def reliable(self) -> bool:
        """True for stream transports, where RFC 3261 drops retransmissions."""
        return self.transport != "UDP"


class TxState(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    ACCEPTED = "accepted"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class Timed(Protocol):
    @property
    def deadline(self) -> float | None: ...

    def on_timer(self, now: float) -> None: ...


class TransactionHost(Protocol):
    """What a transaction needs from the user agent core around it."""

    def send(self, data: bytes, target: Target) -> None: ...

    def arm(self, owner: Timed) -> None: ...

    def retire(self, tx: ClientTransaction | ServerTransaction) -> None: ...


class ClientTransactionUser(Protocol):
    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None: ...

    def on_timeout(self, tx: ClientTransaction, now: float) -> None: ...


def _earliest(*times: float | None) -> float | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


class ClientTransaction:
    """Common part of the two client transactions: identity and retransmission."""

    def __init__(
        self, host: TransactionHost, tu: ClientTransactionUser, request: Request, target: Target
    ) -> None:
        self.host = host
        self.tu = tu
        self.request = request
        self.target = target
        branch = request.top_via.branch or ""
        self.key = (branch, request.method)
        self.state = TxState.TRYING
        self._data = bytes(request)

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    def _terminate(self) -> None:
        if self.state is not TxState.TERMINATED:
            self.state = TxState.TERMINATED
            self.host.retire(self)


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 17.1.1 with the Accepted state of RFC 6026 7.2.

    A 2xx moves the transaction to Accepted for 64*T1 (timer M), so that 2xx
    retransmissions and 2xx from other forks still reach the call, which ACKs
    them (the ACK for a 2xx is the transaction user's job, 13.2.2.4).
    """

    def __init__(
        self,
        host: TransactionHost,
        tu: ClientTransactionUser,
        request: Request,
        target: Target,
        now: float,
    ) -> None:
        super().__init__(host, tu, request, target)
        self.state = TxState.CALLING
        self._interval = T1
        self._timer_a = None if target.reliable else now + T1
        self._timer_b: float | None = now + 64 * T1
        self._timer_d: float | None = None
        self._timer_m: float | None = None
        self._ack: bytes | None = None
        host.send(self._data, target)
        host.arm(self)

    @property
    def deadline(self) -> float | None:
        return _earliest(self._timer_a, self._timer_b, self._timer_d, self._timer_m)

    def on_response(self, response: Response, now: float) -> None:
        status = response.status
        match self.state:
            case TxState.CALLING | TxState.PROCEEDING:
                if status < 200:
                    self.state = TxState.PROCEEDING
                    self._timer_a = None
                    self._timer_b = None  # RFC 3261 17.1.1.2: B only guards Calling
                elif status < 300:
                    self.state = TxState.ACCEPTED
                    self._timer_a = self._timer_b = None
                    self._timer_m = now + 64 * T1
                else:
                    self.state = TxState.COMPLETED
                    self._timer_a = self._timer_b = None
                    self._ack = bytes(self.build_ack(response))
                    self.host.send(self._ack, self.target)
                    self._timer_d = now + (0.0 if self.target.reliable else 32.0)
                self.host.arm(self)
                self.tu.on_response(self, response, now)
            case TxState.ACCEPTED:
                if 200 <= status < 300:
                    self.tu.on_response(self, response, now)
            case TxState.COMPLETED:
                if status >= 300 and self._ack is not None:
                    self.host.send(self._ack, self.target)
            case _:
                pass

    def on_timer(self, now: float) -> None:
        if self._timer_b is not None and now >= self._timer_b:
            self._timer_a = self._timer_b = None
            self._terminate()
            self.tu.on_timeout(self, now)
            return
        if self._timer_a is not None and now >= self._timer_a:
            self.host.send(self._data, self.target)
            self._interval *= 2
            self._timer_a = now + self._interval
        for name in ("_timer_d", "_timer_m"):
            expiry = getattr(self, name)
            if expiry is not None and now >= expiry:
                setattr(self, name, None)
                self._terminate()
        if not self.terminated:
            self.host.arm(self)

    def abandon(self) -> None:
        """The call is over without a final response (RFC 3261 9.1: 64*T1
        after CANCEL): destroy the transaction. Accepted and Completed
        transactions keep absorbing retransmissions until their timers end."""
        if self.state in (TxState.CALLING, TxState.PROCEEDING):
            self._timer_a = self._timer_b = None
            self._terminate()

    def build_ack(self, response: Response) -> Request:
        """The ACK for a non-2xx final response (RFC 3261 17.1.1.3)."""
        return mirror_request(self.request, "ACK", response.headers.get("To") or "")


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 17.1.2: timers E (retransmit, capped at T2), F (timeout), K."""

    def __init__(
        self,
        host: TransactionHost,
        tu: ClientTransactionUser,
        request: Request,
        target: Target,
        now: float,
    ) -> None:
        super().__init__(host, tu, request, target)
        self.state = TxState.TRYING
        self._interval = T1
        self._timer_e = None if target.reliable else now + T1
        self._timer_f: float | None = now + 64 * T1
        self._timer_k: float | None = None
        host.send(self._data, target)
        host.arm(self)

    @property
    def deadline(self) -> float | None:
        return _earliest(self._timer_e, self._timer_f, self._timer_k)

    def on_response(self, response: Response, now: float) -> None:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            return  # Completed absorbs retransmitted finals (17.1.2.2)
        if response.status < 200:
            self.state = TxState.PROCEEDING
        else:
            self.state = TxState.COMPLETED
            self._timer_e = self._timer_f = None
            self._timer_k = now + (0.0 if self.target.reliable else T4)
            self.host.arm(self)
        self.tu.on_response(self, response, now)

    def on_timer(self, now: float) -> None:
        if self._timer_f is not None and now >= self._timer_f:
            self._timer_e = self._timer_f = None
            self._terminate()
            self.tu.on_timeout(self, now)
            return
        if self._timer_e is not None and now >= self._timer_e:
            self.host.send(self._data, self.target)
            if self.state is TxState.TRYING:
                self._interval = min(2 * self._interval, T2)
            else:
                self._interval = T2
            self._timer_e = now + self._interval
        if self._timer_k is not None and now >= self._timer_k:
            self._timer_k = None
            self._terminate()
        if not self.terminated:
            self.host.arm(self)


def mirror_request(original: Request, method: str, to: str) -> Request:
    """A request that belongs to `original`'s transaction: the ACK for a
    non-2xx (17.1.1.3) and CANCEL (9.1) copy its top Via, Request-URI,
    Route set, From, Call-ID and CSeq number; only To may differ."""
    headers = Headers()
    headers.add("Via", original.headers.get_all("Via")[0])
    for route in original.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", original.headers.get("From") or "")
    headers.add("To", to)
    headers.add("Call-ID", original.call_id)
    headers.add("CSeq", f"{original.cseq.number} {method}")
    return Request(method, original.uri, headers)


def server_key(request: Request) -> tuple[str, str, str]:
    """Server transaction key (RFC 3261 17.2.3): branch, sent-by and method.

    ACK matches the INVITE it acknowledges. Requests from RFC 2543 peers
    (branch without the magic cookie, or none) are keyed on Call-ID, From tag
    and CSeq number instead, as 17.2.3 allows.
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith("z9hG4bK") and len(branch) > 7:
        return (branch, f"{via.host}:{via.port or 5060}", method)
    from_tag = request.from_.tag or ""
    return (f"2543:{request.call_id}:{from_tag}:{request.cseq.number}", "", method)


class ServerTransaction:
    """Common part of server transactions: the last response, resent on demand."""

    def __init__(self, host: TransactionHost, request: Request, reply_to: Target) -> None:
        self.host = host
        self.request = request
        self.reply_to = reply_to
        self.key = server_key(request)
        self.state = TxState.TRYING
        self.last_response: Response | None = None
        self._last_bytes: bytes | None = None

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    def _transmit(self, response: Response) -> None:
        self.last_response = response
        self._last_bytes = bytes(response)
        self.host.send(self._last_bytes, self.reply_to)

    def _resend(self) -> None:
        if self._last_bytes is not None:
            self.host.send(self._last_bytes, self.reply_to)

    def _terminate(self) -> None:
        if self.state is not TxState.TERMINATED:
            self.state = TxState.TERMINATED
            self.host.retire(self)


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 17.2.2: answers retransmitted requests with the last response."""

    def __init__(self, host: TransactionHost, request: Request, reply_to: Target) -> None:
        super().__init__(host, request, reply_to)
        self._timer_j: float | None = None

    @property
    def deadline(self) -> float | None:
        return self._timer_j

    def respond(self, response: Response, now: float) -> None:
        if self.state in (TxState.COMPLETED, TxState.TERMINATED):
            return
        self._transmit(response)
        if response.status < 200:
            self.state = TxState.PROCEEDING
            return
        self.state = TxState.COMPLETED
        self._timer_j = now + (0.0 if self.reply_to.reliable else 64 * T1)
        self.host.arm(self)

    def on_request(self, request: Request, now: float) -> None:
        """A retransmission of the request: resend what we answered, if anything."""
        if self.state in (TxState.PROCEEDING, TxState.COMPLETED):
            self._resend()

    def on_timer(self, now: float) -> None:
        if self._timer_j is not None and now >= self._timer_j:
            self._timer_j = None
            self._terminate()


class ServerInviteTransactionUser(Protocol):
    def on_ack_timeout(self, tx: ServerInviteTransaction, now: float) -> None: ...


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 17.2.1 with RFC 6026's Accepted state.

    For a 2xx the transaction retransmits the response (T1 doubling to T2)
    until the dialog reports the ACK (`acknowledged`) or 64*T1 pass, which is
    13.3.1.4's job for the UAS core, kept here so it lives in one place.
    """

    def __init__(
        self,
        host: TransactionHost,
        request: Request,
        reply_to: Target,
        tu: ServerInviteTransactionUser | None = None,
    ) -> None:
        super().__init__(host, request, reply_to)
        self.tu = tu
        self.state = TxState.PROCEEDING
        self._interval = T1
        self._timer_g: float | None = None
        self._timer_h: float | None = None
        self._timer_i: float | None = None

    @property
    def deadline(self) -> float | None:
        return _earliest(self._timer_g, self._timer_h, self._timer_i)

    def respond(self, response: Response, now: float) -> None:
        if self.state is not TxState.PROCEEDING:
            return
        self._transmit(response)
        if response.status < 200:
            return
        self.state = TxState.ACCEPTED if response.status < 300 else TxState.COMPLETED
        if not self.reply_to.reliable or self.state is TxState.ACCEPTED:
            self._timer_g = now + T1
        self._timer_h = now + 64 * T1
        self.host.arm(self)

    def on_request(self, request: Request, now: float) -> None:
        if request.method == "ACK":
            self.acknowledged(now)
        elif self.state in (TxState.PROCEEDING, TxState.COMPLETED, TxState.ACCEPTED):
            self._resend()  # a retransmitted INVITE

    def acknowledged(self, now: float) -> None:
        """The ACK arrived (for a 2xx, matched by the dialog; else by this key)."""
        if self.state is TxState.ACCEPTED:
            # RFC 6026 8.7: stay for Timer L (64*T1) to absorb retransmitted
            # INVITEs instead of treating them as new requests.
            self.state = TxState.CONFIRMED
            self._timer_g = self._timer_h = None
            self._timer_i = now + 64 * T1
            self.host.arm(self)
        elif self.state is TxState.COMPLETED:
            self.state = TxState.CONFIRMED
            self._timer_g = self._timer_h = None
            self._timer_i = now + (0.0 if self.reply_to.reliable else T4)
            self.host.arm(self)

    def on_timer(self, now: float) -> None:
        if self._timer_h is not None and now >= self._timer_h:
            self._timer_g = self._timer_h = None
            accepted = self.state is TxState.ACCEPTED
            self._terminate()
            if accepted and self.tu is not None:
                self.tu.on_ack_timeout(self, now)
            return
        if self._timer_g is not None and now >= self._timer_g:
            self._resend()
            self._interval = min(2 * self._interval, T2)
            self._timer_g = now + self._interval
        if self._timer_i is not None and now >= self._timer_i:
            self._timer_i = None
            self._terminate()
        if not self.terminated:
            self.host.arm(self)


def reply_target(request: Request, source: Target) -> Target:
    """Where responses to a request go (RFC 3261 18.2.2, RFC 3581 4).

    Over a stream, back on the connection it came from. Over UDP to the
    source address, and to the source port when the client asked for rport,
    else to the sent-by port.
    """
    if source.reliable:
        return source
    via = request.top_via
    rport = get_param(via.params, "rport")
    port = source.port if rport is not None else (via.port or 5060)
    return Target(source.host, port, source.transport)
