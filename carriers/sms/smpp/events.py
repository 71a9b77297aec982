"""What an SMPP session hands out from `next_event()`."""

from __future__ import annotations

from dataclasses import dataclass

from carriers.sms.smpp.pdu import ShortMessage, status_name
from carriers.sms.smpp.receipt import Receipt


@dataclass(frozen=True, slots=True)
class Bound:
    """The SMSC accepted the bind."""

    system_id: str


@dataclass(frozen=True, slots=True)
class BindFailed:
    """The bind was refused (``status``) or never answered (``status`` None)."""

    status: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class SubmitAccepted:
    """submit_sm_resp with ESME_ROK: the SMSC holds the message under ``message_id``."""

    handle: int
    message_id: str


@dataclass(frozen=True, slots=True)
class SubmitRejected:
    """submit_sm_resp (or generic_nack) with an error status. ``retryable`` is set for
    ESME_RTHROTTLED and ESME_RMSGQFUL: back off and submit the same message again."""

    handle: int
    status: int
    retryable: bool

    @property
    def status_name(self) -> str:
        return status_name(self.status)


@dataclass(frozen=True, slots=True)
class SubmitFailed:
    """No submit_sm_resp came (timeout, link dead, connection lost, unbind). The SMSC
    may or may not hold the message: nothing says it was sent."""

    handle: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReceiptReceived:
    """A deliver_sm that is a delivery receipt (already answered with deliver_sm_resp)."""

    receipt: Receipt
    message: ShortMessage


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A mobile-originated deliver_sm (already answered with deliver_sm_resp)."""

    message: ShortMessage


@dataclass(frozen=True, slots=True)
class BadPduReceived:
    """A PDU from the SMSC that could not be decoded; it was answered with ``status``."""

    command_id: int
    sequence: int
    field: str
    reason: str
    status: int


@dataclass(frozen=True, slots=True)
class ProtocolNotice:
    """Something odd but harmless: a response to no outstanding request, a stray nack."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unbound:
    """The session ended cleanly, by our unbind or by the SMSC's."""

    by_peer: bool


@dataclass(frozen=True, slots=True)
class LinkClosed:
    """The session is dead (no enquire_link_resp, framing error, connection lost);
    the transport closes the connection."""

    reason: str


SessionEvent = (
    Bound
    | BindFailed
    | SubmitAccepted
    | SubmitRejected
    | SubmitFailed
    | ReceiptReceived
    | MessageReceived
    | BadPduReceived
    | ProtocolNotice
    | Unbound
    | LinkClosed
)
