"""The sans-IO SMPP 3.4 client session (ESME side).

Shaped like `carriers.sip.ua.UserAgent`: feed it `receive(data, now)` and
`handle_timer(now)`, ask it to `bind`, `submit` and `unbind`, then drain
`data_to_send()` and `next_event()` and re-arm one timer at `get_timer()`. It
never reads the clock or touches a socket.

One session is one bind: a transceiver, or one half of a transmitter+receiver
pair (run two sessions on two connections). At most ``window`` submit_sm are
outstanding at once (SMPP 3.4 section 2.7 lets an ESME pipeline requests
asynchronously; the SMSC sets the limit it tolerates, so it is configurable).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from carriers.sms.smpp.errors import SmppFramingError, SmppStateError
from carriers.sms.smpp.events import (
    BadPduReceived,
    BindFailed,
    Bound,
    LinkClosed,
    MessageReceived,
    ProtocolNotice,
    ReceiptReceived,
    SessionEvent,
    SubmitAccepted,
    SubmitFailed,
    SubmitRejected,
    Unbound,
)
from carriers.sms.smpp.pdu import (
    RETRYABLE,
    BadPdu,
    Bind,
    BindResp,
    CommandId,
    MessageIdResp,
    Pdu,
    PduStream,
    ShortMessage,
    Status,
    encode,
    status_name,
)
from carriers.sms.smpp.receipt import is_receipt, parse_receipt

MAX_SEQUENCE = 0x7FFFFFFF
"""Sequence numbers run 0x00000001..0x7FFFFFFF (section 3.2)."""


class BindMode(enum.Enum):
    TRANSCEIVER = CommandId.BIND_TRANSCEIVER
    TRANSMITTER = CommandId.BIND_TRANSMITTER
    RECEIVER = CommandId.BIND_RECEIVER


class SessionState(enum.Enum):
    OPEN = "open"  # connected, not bound
    BINDING = "binding"
    BOUND = "bound"
    UNBINDING = "unbinding"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    system_id: str
    password: str = ""
    system_type: str = ""
    mode: BindMode = BindMode.TRANSCEIVER
    window: int = 10
    response_timeout: float = 10.0
    """Seconds to wait for any response before the request is failed."""
    enquire_link_interval: float = 30.0
    """Seconds of silence from the SMSC after which we send enquire_link."""


@dataclass(slots=True)
class _Pending:
    command_id: int
    deadline: float


class SmppSession:
    """One SMPP bind as a state machine: bytes and time in, bytes and events out."""

    def __init__(self, config: SessionConfig) -> None:
        if config.window < 1:
            raise ValueError("window must be at least 1")
        self.config = config
        self.state = SessionState.OPEN
        self.smsc_system_id = ""
        self._stream = PduStream()
        self._out: list[bytes] = []
        self._events: deque[SessionEvent] = deque()
        self._pending: dict[int, _Pending] = {}
        self._submits = 0
        self._next_sequence = 1
        self._last_received = 0.0

    # --- commands ---------------------------------------------------------------

    def bind(self, now: float) -> None:
        if self.state is not SessionState.OPEN:
            raise SmppStateError(f"cannot bind in state {self.state.value}")
        c = self.config
        body = Bind(c.system_id, c.password, c.system_type)
        self._request(c.mode.value, body, now)
        self._last_received = now
        self.state = SessionState.BINDING

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def window_free(self) -> int:
        """How many more submit_sm may be sent now (0 unless bound for sending)."""
        if self.state is not SessionState.BOUND or self.config.mode is BindMode.RECEIVER:
            return 0
        return self.config.window - self._submits

    @property
    def outstanding(self) -> int:
        """submit_sm sent and not yet answered."""
        return self._submits

    def submit(self, message: ShortMessage, now: float) -> int:
        """Send one submit_sm; returns its handle (the sequence number), which the
        `SubmitAccepted`/`SubmitRejected`/`SubmitFailed` event for it carries."""
        if self.state is not SessionState.BOUND:
            raise SmppStateError(f"cannot submit in state {self.state.value}")
        if self.config.mode is BindMode.RECEIVER:
            raise SmppStateError("a receiver bind cannot submit")
        if self._submits >= self.config.window:
            raise SmppStateError(f"window of {self.config.window} is full")
        self._submits += 1
        return self._request(CommandId.SUBMIT_SM, message, now)

    def unbind(self, now: float) -> None:
        """Start a clean unbind (section 4.2); `Unbound` follows the unbind_resp.
        Outstanding submits may still be answered until then."""
        if self.state not in (SessionState.BOUND, SessionState.BINDING):
            return
        self._request(CommandId.UNBIND, None, now)
        self.state = SessionState.UNBINDING

    def connection_lost(self, reason: str = "connection lost") -> None:
        """The transport saw the connection close."""
        if self.state is not SessionState.CLOSED:
            self._close(reason)

    # --- input ------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        if self.state is SessionState.CLOSED:
            return
        self._last_received = now
        try:
            items = self._stream.feed(data)
        except SmppFramingError as exc:
            # Section 3.2: an invalid command_length cannot be skipped; nack and close.
            self._send(Pdu(CommandId.GENERIC_NACK, 0, Status.ESME_RINVCMDLEN))
            self._close(f"framing error: {exc}")
            return
        for item in items:
            if self.closed:
                return
            if isinstance(item, BadPdu):
                self._on_bad_pdu(item)
            elif item.is_response:
                self._on_response(item, now)
            else:
                self._on_request(item, now)

    def handle_timer(self, now: float) -> None:
        if self.state is SessionState.CLOSED:
            return
        for sequence, pending in sorted(self._pending.items(), key=lambda kv: kv[1].deadline):
            if pending.deadline > now or self.closed:
                continue
            del self._pending[sequence]
            self._on_timeout(sequence, pending)
        if (
            self.state is SessionState.BOUND
            and now - self._last_received >= self.config.enquire_link_interval
            and not self._enquiring()
        ):
            self._request(CommandId.ENQUIRE_LINK, None, now)

    # --- output -----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        data = b"".join(self._out)
        self._out.clear()
        return data

    def next_event(self) -> SessionEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        if self.state is SessionState.CLOSED:
            return None
        # Every request's deadline is its send time plus the one response
        # timeout, so the oldest outstanding request (the dict keeps sending
        # order) has the earliest: no scan of the window on every pump.
        oldest = next(iter(self._pending.values()), None)
        when = oldest.deadline if oldest is not None else None
        if self.state is SessionState.BOUND:
            idle = self._last_received + self.config.enquire_link_interval
            if (when is None or idle < when) and not self._enquiring():
                when = idle
        return when

    # --- internals --------------------------------------------------------------

    def _request(self, command_id: int, body: Bind | ShortMessage | None, now: float) -> int:
        sequence = self._allocate_sequence()
        self._pending[sequence] = _Pending(command_id, now + self.config.response_timeout)
        self._send(Pdu(command_id, sequence, 0, body))
        return sequence

    def _allocate_sequence(self) -> int:
        while True:
            sequence = self._next_sequence
            self._next_sequence = sequence % MAX_SEQUENCE + 1
            if sequence not in self._pending:
                return sequence

    def _send(self, pdu: Pdu) -> None:
        self._out.append(encode(pdu))

    def _enquiring(self) -> bool:
        return any(p.command_id == CommandId.ENQUIRE_LINK for p in self._pending.values())

    def _on_request(self, pdu: Pdu, now: float) -> None:
        match pdu.command_id:
            case CommandId.ENQUIRE_LINK:
                self._send(Pdu(CommandId.ENQUIRE_LINK_RESP, pdu.sequence))
            case CommandId.DELIVER_SM:
                self._on_deliver(pdu)
            case CommandId.UNBIND:
                self._send(Pdu(CommandId.UNBIND_RESP, pdu.sequence))
                self._finish(by_peer=True)
            case _:
                # A request an ESME never receives (submit_sm, bind_*): section 4.3.
                self._send(Pdu(CommandId.GENERIC_NACK, pdu.sequence, Status.ESME_RINVCMDID))
                self._events.append(
                    ProtocolNotice(f"unexpected request 0x{pdu.command_id:08X} from the SMSC")
                )

    def _on_deliver(self, pdu: Pdu) -> None:
        assert isinstance(pdu.body, ShortMessage)
        message = pdu.body
        self._send(Pdu(CommandId.DELIVER_SM_RESP, pdu.sequence, 0, MessageIdResp()))
        receipt = parse_receipt(message) if is_receipt(message) else None
        if receipt is not None:
            self._events.append(ReceiptReceived(receipt, message))
        else:
            self._events.append(MessageReceived(message))

    def _on_bad_pdu(self, bad: BadPdu) -> None:
        # Lenient by design: a bad deliver_sm gets an error response, never a dead session.
        if bad.command_id & 0x80000000:
            self._events.append(
                ProtocolNotice(f"undecodable response 0x{bad.command_id:08X}: {bad.error}")
            )
            pending = self._pending.pop(bad.sequence, None)
            if pending is not None:
                self._on_status(bad.sequence, pending, Status.ESME_RSYSERR, "")
            return
        self._send(bad.reply())
        self._events.append(
            BadPduReceived(
                bad.command_id, bad.sequence, bad.error.field, str(bad.error), bad.error.status
            )
        )

    def _on_response(self, pdu: Pdu, now: float) -> None:
        pending = self._pending.get(pdu.sequence)
        expected = None if pending is None else pending.command_id | 0x80000000
        if pending is None or pdu.command_id not in (expected, CommandId.GENERIC_NACK):
            self._events.append(
                ProtocolNotice(
                    f"response 0x{pdu.command_id:08X} seq {pdu.sequence} "
                    f"({status_name(pdu.status)}) matches no outstanding request"
                )
            )
            return
        del self._pending[pdu.sequence]
        message_id = ""
        if isinstance(pdu.body, MessageIdResp):
            message_id = pdu.body.message_id
        elif isinstance(pdu.body, BindResp):
            message_id = pdu.body.system_id
        self._on_status(pdu.sequence, pending, pdu.status, message_id)

    def _on_status(self, sequence: int, pending: _Pending, status: int, value: str) -> None:
        match pending.command_id:
            case CommandId.SUBMIT_SM:
                self._submits -= 1
                if status == Status.ESME_ROK:
                    self._events.append(SubmitAccepted(sequence, value))
                else:
                    self._events.append(SubmitRejected(sequence, status, status in RETRYABLE))
            case CommandId.BIND_TRANSCEIVER | CommandId.BIND_TRANSMITTER | CommandId.BIND_RECEIVER:
                if status == Status.ESME_ROK:
                    if self.state is SessionState.BINDING:
                        self.state = SessionState.BOUND
                    self.smsc_system_id = value
                    self._events.append(Bound(value))
                else:
                    self._events.append(BindFailed(status, status_name(status)))
                    self._close(f"bind refused: {status_name(status)}", event=False)
            case CommandId.UNBIND:
                self._finish(by_peer=False)
            case CommandId.ENQUIRE_LINK:
                pass  # the link is alive; _last_received already moved

    def _on_timeout(self, sequence: int, pending: _Pending) -> None:
        waited = f"{self.config.response_timeout:g}s"
        match pending.command_id:
            case CommandId.SUBMIT_SM:
                self._submits -= 1
                self._events.append(SubmitFailed(sequence, f"no submit_sm_resp within {waited}"))
            case CommandId.ENQUIRE_LINK:
                self._close(f"link dead: no enquire_link_resp within {waited}")
            case CommandId.UNBIND:
                self._finish(by_peer=False)
            case _:
                self._events.append(BindFailed(None, f"no bind response within {waited}"))
                self._close("bind timed out", event=False)

    def _fail_outstanding(self, reason: str) -> None:
        for sequence, pending in sorted(self._pending.items()):
            if pending.command_id == CommandId.SUBMIT_SM:
                self._events.append(SubmitFailed(sequence, reason))
        self._pending.clear()
        self._submits = 0

    def _finish(self, *, by_peer: bool) -> None:
        self._fail_outstanding("unbound before submit_sm_resp")
        self.state = SessionState.CLOSED
        self._events.append(Unbound(by_peer))

    def _close(self, reason: str, *, event: bool = True) -> None:
        self._fail_outstanding(reason)
        self.state = SessionState.CLOSED
        if event:
            self._events.append(LinkClosed(reason))


__all__ = ["BindMode", "SessionConfig", "SessionState", "SmppSession"]
