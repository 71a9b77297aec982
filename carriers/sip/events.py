"""Events the SIP user agent core hands to its caller (`UserAgent.next_event`)."""

from __future__ import annotations

from dataclasses import dataclass

from carriers.sip.message import Request
from carriers.sip.outcome import CallOutcome
from carriers.sip.sdp import NegotiatedMedia


@dataclass(frozen=True, slots=True)
class CallProgress:
    """A provisional response: 100 Trying, 180 Ringing, 183 Session Progress."""

    call_id: str
    status: int
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class CallEarlyMedia:
    """A 18x carried an SDP answer: media flows before the call is answered."""

    call_id: str
    media: NegotiatedMedia
    at: float


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The first 2xx: the dialog is confirmed and the ACK is on its way."""

    call_id: str
    media: NegotiatedMedia | None
    at: float


@dataclass(frozen=True, slots=True)
class CallMediaChanged:
    """The far end changed the session (re-INVITE or UPDATE: hold, unhold, new address)."""

    call_id: str
    media: NegotiatedMedia
    at: float


@dataclass(frozen=True, slots=True)
class CallDtmfInfo:
    """A digit sent as SIP INFO (application/dtmf-relay) rather than RFC 4733."""

    call_id: str
    digit: str
    duration_ms: int
    at: float


@dataclass(frozen=True, slots=True)
class CallTransferResult:
    """How a blind transfer we asked for with REFER (RFC 3515) went: the
    REFER refused (its final status), or the final status line of the
    transfer target's call from the far end's NOTIFY (message/sipfrag).
    `accepted`: the far end has connected the caller to the target."""

    call_id: str
    accepted: bool
    status: int | None
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The one final event of every call, whatever happened.

    `outcome.result` is ANSWERED for a call that was answered, however it
    ended later; `ended_by` says who ended it: "remote" (their BYE or final
    response), "local" (our BYE or CANCEL), or "timeout".
    """

    call_id: str
    outcome: CallOutcome
    answered_at: float | None
    ended_by: str
    at: float


@dataclass(frozen=True, slots=True)
class OptionsResult:
    """The answer to an OPTIONS probe (any response means the peer is alive)."""

    probe_id: str
    status: int | None
    rtt: float | None
    at: float


@dataclass(frozen=True, slots=True)
class RequestRejected:
    """A request we refused before it reached any dialog (bad or unsupported)."""

    method: str
    status: int
    reason: str
    source: str
    at: float


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """Bytes that could not be parsed, or a response that matched nothing."""

    reason: str
    source: str
    at: float


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """An out-of-dialog request the core does not handle itself (for example
    an inbound INVITE); it was answered with `status` already."""

    request: Request
    status: int
    at: float


Event = (
    CallProgress
    | CallEarlyMedia
    | CallAnswered
    | CallMediaChanged
    | CallDtmfInfo
    | CallTransferResult
    | CallEnded
    | OptionsResult
    | RequestRejected
    | MessageDropped
    | IncomingRequest
)
