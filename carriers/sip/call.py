"""One outbound call: the UAC side of an INVITE session (RFC 3261 13, 15, 9).

`OutboundCall` is the transaction user for every transaction of its call. It
forms early and confirmed dialogs, handles forking (the first 2xx wins, any
other 2xx is ACKed and ended with BYE), CANCEL with the 200/CANCEL race,
digest challenges, session timers (RFC 4028), re-INVITE and UPDATE from the
far end, and ends with exactly one `CallEnded` event. It never touches the
clock: every entry point takes `now`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from carriers.sip.auth import (
    AuthError,
    Challenge,
    DigestSession,
    choose_challenge,
    parse_challenge,
)
from carriers.sip.dialog import Dialog, DialogError, DialogId
from carriers.sip.errors import SipParseError
from carriers.sip.events import (
    CallAnswered,
    CallDtmfInfo,
    CallEarlyMedia,
    CallEnded,
    CallMediaChanged,
    CallProgress,
    CallTransferResult,
    Event,
)
from carriers.sip.message import Address, Headers, Request, Response, SipURI, make_response
from carriers.sip.outcome import CallOutcome, CallResult, classify_failure
from carriers.sip.sdp import NegotiatedMedia, SdpError, SessionDescription, answer_offer, parse_sdp
from carriers.sip.sdp import negotiate as negotiate_sdp
from carriers.sip.transaction import (
    T1,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    Target,
    mirror_request,
)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY"
SDP = "application/sdp"


class CallState(enum.Enum):
    CALLING = "calling"
    PROCEEDING = "proceeding"
    EARLY = "early"
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class CallSpec:
    """Everything needed to place one outbound call through a trunk."""

    request_uri: SipURI
    from_addr: Address
    to_addr: Address
    target: Target
    offer: SessionDescription
    ring_timeout: float | None = None
    max_duration: float | None = None
    asserted_identity: Address | None = None
    privacy: str | None = None
    auth: DigestSession | None = None
    session_expires: int | None = 1800
    min_se: int = 90
    extra_headers: tuple[tuple[str, str], ...] = ()
    sticky_target: bool = False  # send in-dialog requests to `target` too (outbound proxy)


class CallHost(Protocol):
    """What a call needs from the user agent core."""

    user_agent: str

    def make_via(self, transport: str) -> str: ...

    def contact(self, transport: str) -> str: ...

    def new_tag(self) -> str: ...

    def start_invite(
        self, call: OutboundCall, request: Request, target: Target, now: float
    ) -> ClientInviteTransaction: ...

    def start_request(
        self, call: OutboundCall, request: Request, target: Target, now: float
    ) -> ClientNonInviteTransaction: ...

    def send(self, data: bytes, target: Target) -> None: ...

    def arm(self, owner: OutboundCall) -> None: ...

    def emit(self, event: Event) -> None: ...

    def bind_dialog(self, dialog_id: DialogId, call: OutboundCall) -> None: ...

    def call_finished(self, call: OutboundCall, now: float) -> None: ...


@dataclass(slots=True)
class _SessionTimer:
    """RFC 4028 state: who refreshes, and when we refresh or give up."""

    interval: int
    we_refresh: bool
    refresh_at: float | None = None
    expire_at: float | None = None
    use_update: bool = False


@dataclass(slots=True)
class CallTimes:
    started: float
    ringing: float | None = None
    answered: float | None = None
    ended: float | None = None


@dataclass(slots=True)
class _Pending:
    """Our own in-dialog requests: the refresh (re-INVITE or UPDATE) in
    progress, the last refresh re-INVITE and its ACK (resent for every 2xx
    retransmission, 13.2.2.4), and BYE/CANCEL transactions, with the ones
    already retried with credentials."""

    tx: ClientInviteTransaction | None = None
    update: ClientNonInviteTransaction | None = None
    last_invite: ClientInviteTransaction | None = None
    ack: tuple[bytes, Target] | None = None
    others: set[ClientTransaction] = field(default_factory=set)
    challenged: set[ClientTransaction] = field(default_factory=set)


class OutboundCall:
    """The UAC state machine of one call. See the module docstring."""

    def __init__(self, host: CallHost, spec: CallSpec, call_id: str, now: float) -> None:
        self.host = host
        self.spec = spec
        self.call_id = call_id
        self.local_tag = host.new_tag()
        self.state = CallState.CALLING
        self.times = CallTimes(started=now)
        self.media: NegotiatedMedia | None = None
        self.dialog: Dialog | None = None
        self.outcome: CallOutcome | None = None
        self._local_sdp = spec.offer
        self._cseq = 1
        self._invite: Request | None = None
        self._invite_tx: ClientInviteTransaction | None = None
        self._auth_header: tuple[str, str] | None = None
        self._auth_attempts = 0
        self._session_expires = spec.session_expires
        self._provisional_seen = False
        self._early: dict[str, NegotiatedMedia] = {}
        self._cancel_result: CallResult | None = None
        self._cancel_pending = False
        self._cancel_deadline: float | None = None
        self._ring_deadline = now + spec.ring_timeout if spec.ring_timeout else None
        self._duration_deadline: float | None = None
        self._ack: tuple[bytes, Target] | None = None
        self._timer: _SessionTimer | None = None
        self._ours = _Pending()
        self._offer_in_200: bool = False
        self._refer_tx: ClientTransaction | None = None
        self._refer_done = False  # its final result has been reported

    # ----------------------------------------------------------------- public

    def start(self, now: float) -> None:
        """Send the INVITE."""
        self._send_invite(now)

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    def cancel(self, now: float, result: CallResult = CallResult.CANCELLED) -> None:
        """Stop a call that is not answered yet (RFC 3261 9.1); hang up if it is."""
        if self.state is CallState.CONFIRMED:
            self.hangup(now)
            return
        if self.ended or self._cancel_result is not None:
            return
        self._cancel_result = result
        self._cancel_deadline = now + 64 * T1
        if self._provisional_seen:
            self._send_cancel(now)
        else:
            # 9.1: no CANCEL before a provisional response; send it when one comes.
            self._cancel_pending = True
        self.host.arm(self)

    def refer(self, target: str, now: float) -> bool:
        """A blind transfer (RFC 3515): ask the far end to call `target` and
        connect the caller to it. Its progress comes back in NOTIFYs; the
        final one (or a refused REFER) is reported as CallTransferResult.
        The call stays up: the caller ends it once the transfer is done."""
        if self.state is not CallState.CONFIRMED or self.dialog is None:
            return False
        if self._refer_tx is not None:
            return False
        transport = self._transport()
        refer = self.dialog.request("REFER", self.host.make_via(transport))
        refer.headers.add("Refer-To", f"<{target}>")
        refer.headers.add("Contact", self.host.contact(transport))  # a target refresh
        refer.headers.add("User-Agent", self.host.user_agent)
        self._refer_done = False
        self._refer_tx = self.host.start_request(self, refer, self._hop(self.dialog), now)
        return True

    def _refer_result(self, accepted: bool, status: int | None, reason: str, now: float) -> None:
        if self._refer_done:
            return
        self._refer_done = True
        self.host.emit(CallTransferResult(self.call_id, accepted, status, reason, now))

    def hangup(self, now: float, reason: str | None = None) -> None:
        """End the call from our side: BYE when confirmed, CANCEL before."""
        if self.state is CallState.CONFIRMED:
            self._send_bye(now, reason)
            self._finish(self._answered_outcome(), "local", now)
        elif not self.ended:
            self.cancel(now)

    # ---------------------------------------------------------- transactions

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        if tx is self._invite_tx:
            self._on_invite_response(response, now)
        elif tx is self._ours.tx:
            self._on_refresh_response(response, now)
        elif tx is self._refer_tx:
            if response.status >= 200:
                self._refer_tx = None
            if response.status >= 300:  # refused: 405/501 (no REFER here), 403, 603...
                self._refer_result(False, response.status, f"REFER refused: {response.reason}",
                                   now)  # fmt: skip
        elif tx is self._ours.last_invite:
            if 200 <= response.status < 300 and self._ours.ack is not None:
                self.host.send(*self._ours.ack)  # a retransmitted 2xx to our refresh
        elif tx is self._ours.update:
            if response.status >= 200:
                self._ours.update = None
                self._on_refresh_result(response.status, now)
        elif response.status in (401, 407) and tx.request.method == "BYE":
            self._retry_bye_with_auth(tx, response, now)

    def on_timeout(self, tx: ClientTransaction, now: float) -> None:
        if tx is self._invite_tx and not self.ended:
            if self._cancel_result is not None:
                self._finish(
                    CallOutcome(self._cancel_result, None, "no final response"), "local", now
                )
            else:
                outcome = CallOutcome(CallResult.CARRIER_TIMEOUT, None, "no response (timer B)")
                self._finish(outcome, "timeout", now)
        elif tx is self._ours.tx or tx is self._ours.update:
            self._ours.tx = self._ours.update = None
            self._on_refresh_result(408, now)
        elif tx is self._refer_tx:
            self._refer_tx = None
            self._refer_result(False, None, "REFER unanswered (timer F)", now)

    # ------------------------------------------------------------------ INVITE

    def _send_invite(self, now: float) -> None:
        spec = self.spec
        transport = spec.target.transport
        headers = Headers()
        headers.add("Via", self.host.make_via(transport))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(spec.from_addr.with_param("tag", self.local_tag)))
        headers.add("To", str(spec.to_addr))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self._cseq} INVITE")
        headers.add("Contact", self.host.contact(transport))
        if spec.asserted_identity is not None:
            headers.add("P-Asserted-Identity", str(spec.asserted_identity))
        if spec.privacy:
            headers.add("Privacy", spec.privacy)
        headers.add("Allow", ALLOW)
        headers.add("Supported", "timer")
        if self._session_expires:
            headers.add("Session-Expires", str(self._session_expires))
            headers.add("Min-SE", str(min(spec.min_se, self._session_expires)))
        headers.add("User-Agent", self.host.user_agent)
        for name, value in spec.extra_headers:
            headers.add(name, value)
        if self._auth_header is not None:
            headers.add(*self._auth_header)
        headers.add("Content-Type", SDP)
        self._invite = Request("INVITE", spec.request_uri, headers, self._local_sdp.to_bytes())
        self._invite_tx = self.host.start_invite(self, self._invite, spec.target, now)
        self.host.arm(self)

    def _on_invite_response(self, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            self._on_provisional(response, now)
        elif status < 300:
            self._on_2xx(response, now)
        elif self.ended or self.dialog is not None:
            return
        elif self._cancel_result is not None:
            # Whatever the failure (a 487, or a challenge), a call we cancelled
            # is never re-sent: that would ring a phone we gave up on.
            outcome = CallOutcome(self._cancel_result, status, response.reason)
            self._finish(outcome, "local", now)
        elif status in (401, 407) and self._retry_auth(response, now):
            return
        elif status == 422 and self._retry_min_se(response, now):
            return
        else:
            reason_header = response.headers.get("Reason")
            self._finish(classify_failure(status, response.reason, reason_header), "remote", now)

    def _on_provisional(self, response: Response, now: float) -> None:
        if self.ended or self.dialog is not None:
            return
        self._provisional_seen = True
        if response.status > 100:
            if self.times.ringing is None:
                self.times.ringing = now
            tag = response.to.tag
            self.state = CallState.EARLY if tag else CallState.PROCEEDING
            self.host.emit(CallProgress(self.call_id, response.status, response.reason, now))
            if tag and tag not in self._early and self._has_sdp(response):
                try:
                    media = negotiate_sdp(self._local_sdp, parse_sdp(response.body))
                except SdpError:
                    media = None
                if media is not None:
                    self._early[tag] = media
                    self.host.emit(CallEarlyMedia(self.call_id, media, now))
        elif self.state is CallState.CALLING:
            self.state = CallState.PROCEEDING
        if self._cancel_pending:
            self._cancel_pending = False
            self._send_cancel(now)

    def _on_2xx(self, response: Response, now: float) -> None:
        tag = response.to.tag or ""
        if self.dialog is not None:
            if tag == (self.dialog.remote.tag or "") and self._ack is not None:
                self.host.send(*self._ack)  # 13.2.2.4: a retransmitted 2xx gets the ACK again
            elif tag != (self.dialog.remote.tag or ""):
                self._ack_and_bye(response, now, "another fork answered first")
            return
        if self.ended or self._cancel_result is not None:
            # 9.1/15: the 2xx crossed our CANCEL. The call exists now: ACK, BYE.
            self._ack_and_bye(response, now, "answered after CANCEL")
            if not self.ended:
                result = self._cancel_result or CallResult.CANCELLED
                outcome = CallOutcome(result, response.status, "answered as CANCEL crossed")
                self._finish(outcome, "local", now)
            return
        self._confirm(response, now)

    def _confirm(self, response: Response, now: float) -> None:
        assert self._invite is not None
        dialog = self._make_dialog(response)
        self.dialog = dialog
        self.host.bind_dialog(dialog.id, self)
        self._ack = self._build_ack(dialog, self._invite.cseq.number)
        self.host.send(*self._ack)
        self.state = CallState.CONFIRMED
        self.times.answered = now
        media: NegotiatedMedia | None = self._early.get(dialog.remote.tag or "")
        if self._has_sdp(response):
            try:
                media = negotiate_sdp(self._local_sdp, parse_sdp(response.body))
            except SdpError as exc:
                self._send_bye(now, "SDP answer not acceptable")
                outcome = CallOutcome(
                    CallResult.CARRIER_FAILURE, response.status, f"SDP answer rejected: {exc}"
                )
                self._finish(outcome, "local", now)
                return
        self.media = media
        self.host.emit(CallAnswered(self.call_id, media, now))
        self._start_session_timer(response, now)
        if self.spec.max_duration:
            self._duration_deadline = now + self.spec.max_duration
        self.host.arm(self)

    def _make_dialog(self, response: Response) -> Dialog:
        assert self._invite is not None
        try:
            return Dialog.from_response(self._invite, response)
        except DialogError:
            # No Contact: the Request-URI is the best target left (12.1.2 needs
            # one, but ending the call properly matters more than the letter).
            return Dialog(
                call_id=self.call_id,
                local=self._invite.from_,
                remote=response.to,
                remote_target=self.spec.request_uri,
                route_set=list(reversed(response.record_route)),
                local_cseq=self._invite.cseq.number,
            )

    def _ack_and_bye(self, response: Response, now: float, why: str) -> None:
        """ACK a 2xx we do not want, then end that dialog (13.2.2.4)."""
        assert self._invite is not None
        stray = self._make_dialog(response)
        self.host.send(*self._build_ack(stray, self._invite.cseq.number))
        bye = stray.request("BYE", self.host.make_via(self._transport()))
        bye.headers.add("Reason", f'SIP;cause=200;text="{why}"')
        self._ours.others.add(self.host.start_request(self, bye, self._hop(stray), now))

    def _build_ack(self, dialog: Dialog, cseq: int) -> tuple[bytes, Target]:
        ack = dialog.request("ACK", self.host.make_via(self._transport()), cseq=cseq)
        if self._auth_header is not None:
            ack.headers.add(*self._auth_header)  # 13.2.2.4: same credentials as the INVITE
        return bytes(ack), self._hop(dialog)

    def _retry_auth(self, response: Response, now: float) -> bool:
        auth = self.spec.auth
        if auth is None or self._auth_attempts >= 3:
            return False
        challenge = _challenge(response)
        if challenge is None or not auth.should_retry(challenge, self._auth_attempts > 0):
            return False
        self._auth_attempts += 1
        try:
            self._auth_header = auth.authorize(
                challenge, "INVITE", str(self.spec.request_uri), self._local_sdp.to_bytes()
            )
        except AuthError:
            return False
        self._cseq += 1
        self._send_invite(now)
        return True

    def _retry_min_se(self, response: Response, now: float) -> bool:
        """RFC 4028 6: 422 names the smallest interval the far end accepts."""
        min_se = response.headers.get("Min-SE")
        try:
            value = int((min_se or "").split(";")[0].strip())
        except ValueError:
            return False
        if self._session_expires is not None and value <= self._session_expires:
            return False
        self._session_expires = value
        self._cseq += 1
        self._send_invite(now)
        return True

    # ------------------------------------------------------------ CANCEL, BYE

    def _send_cancel(self, now: float) -> None:
        """CANCEL mirrors the INVITE (9.1): same Via, Request-URI, Call-ID,
        From, To, Route and CSeq number."""
        assert self._invite is not None
        cancel = mirror_request(self._invite, "CANCEL", self._invite.headers.get("To") or "")
        cancel.headers.add("User-Agent", self.host.user_agent)
        self._ours.others.add(self.host.start_request(self, cancel, self.spec.target, now))

    def _send_bye(self, now: float, reason: str | None) -> None:
        assert self.dialog is not None
        bye = self.dialog.request("BYE", self.host.make_via(self._transport()))
        if reason:
            bye.headers.add("Reason", f'SIP;cause=200;text="{reason}"')
        bye.headers.add("User-Agent", self.host.user_agent)
        self._ours.others.add(self.host.start_request(self, bye, self._hop(self.dialog), now))

    def _retry_bye_with_auth(self, tx: ClientTransaction, response: Response, now: float) -> None:
        """A carrier that challenges our BYE (22.1) gets it again with
        credentials computed for BYE; once, so a bad password cannot loop."""
        auth = self.spec.auth
        if auth is None or tx in self._ours.challenged or self.dialog is None:
            return
        challenge = _challenge(response)
        if challenge is None:
            return
        bye = self.dialog.request("BYE", self.host.make_via(self._transport()))
        try:
            bye.headers.add(*auth.authorize(challenge, "BYE", str(bye.uri)))
        except AuthError:
            return
        retry = self.host.start_request(self, bye, self._hop(self.dialog), now)
        self._ours.challenged.add(retry)
        self._ours.others.add(retry)

    def _answered_outcome(self) -> CallOutcome:
        return CallOutcome(CallResult.ANSWERED, 200, "OK")

    def _finish(self, outcome: CallOutcome, ended_by: str, now: float) -> None:
        if self.ended:
            return
        self.state = CallState.ENDED
        self.outcome = outcome
        self.times.ended = now
        self._ring_deadline = self._cancel_deadline = self._duration_deadline = None
        if self._timer is not None:
            self._timer.refresh_at = self._timer.expire_at = None
        if self._invite_tx is not None:
            self._invite_tx.abandon()  # 9.1: no final response after CANCEL: destroy it
        self.host.emit(CallEnded(self.call_id, outcome, self.times.answered, ended_by, now))
        self.host.call_finished(self, now)

    # ---------------------------------------------------- requests from them

    def on_request(
        self,
        request: Request,
        tx: ServerNonInviteTransaction | ServerInviteTransaction,
        now: float,
    ) -> None:
        """An in-dialog request from the far end (12.2.2)."""
        dialog = self.dialog
        if dialog is not None and not dialog.accept_remote_cseq(request):
            tx.respond(make_response(request, 500, "CSeq Out of Order"), now)
            return
        match request.method:
            case "BYE":
                tx.respond(make_response(request, 200), now)
                if self.state is CallState.CONFIRMED:
                    outcome = self._answered_outcome()
                    reason = request.headers.get("Reason")
                    if reason:
                        outcome = CallOutcome(CallResult.ANSWERED, 200, "OK", None, reason)
                    self._finish(outcome, "remote", now)
            case "INVITE" | "UPDATE":
                self._on_session_request(request, tx, now)
            case "INFO":
                tx.respond(make_response(request, 200), now)
                self._on_info(request, now)
            case "NOTIFY":
                tx.respond(make_response(request, 200, headers=[("Allow", ALLOW)]), now)
                self._on_notify(request, now)
            case "OPTIONS":
                tx.respond(make_response(request, 200, headers=[("Allow", ALLOW)]), now)
            case _:
                tx.respond(make_response(request, 501, headers=[("Allow", ALLOW)]), now)

    def on_ack(self, request: Request, now: float) -> None:
        """The ACK for our 2xx to their re-INVITE; it carries the answer when
        our 200 carried the offer."""
        if self._offer_in_200 and self._has_sdp(request):
            self._offer_in_200 = False
            try:
                media = negotiate_sdp(self._local_sdp, parse_sdp(request.body))
            except SdpError:
                return
            self.media = media
            self.host.emit(CallMediaChanged(self.call_id, media, now))

    def _on_session_request(
        self,
        request: Request,
        tx: ServerNonInviteTransaction | ServerInviteTransaction,
        now: float,
    ) -> None:
        if self.state is not CallState.CONFIRMED:
            tx.respond(make_response(request, 481 if self.ended else 491), now)
            return
        if request.method == "INVITE" and self._ours.tx is not None:
            tx.respond(make_response(request, 491), now)  # RFC 3261 14.2 glare
            return
        headers = [("Contact", self.host.contact(self._transport())), ("Allow", ALLOW)]
        headers += self._session_timer_headers(request, now)
        body = b""
        if self._has_sdp(request):
            try:
                body, media = self._answer(request.body)
            except SdpError:
                tx.respond(make_response(request, 488), now)
                return
            self.media = media
            self.host.emit(CallMediaChanged(self.call_id, media, now))
            headers.append(("Content-Type", SDP))
        elif request.method == "INVITE":
            # An offerless re-INVITE: our 200 carries the offer, the ACK the answer.
            body = self._local_sdp.to_bytes()
            self._offer_in_200 = True
            headers.append(("Content-Type", SDP))
        tx.respond(make_response(request, 200, headers=headers, body=body), now)

    def _answer(self, offer_body: bytes) -> tuple[bytes, NegotiatedMedia]:
        offer = parse_sdp(offer_body)
        own = self._local_sdp
        port = own.media[0].port if own.media else 0
        address = own.connection or own.origin_address
        answer, media = answer_offer(
            offer,
            address,
            port,
            session_id=own.session_id,
            session_version=own.session_version + 1,
        )
        self._local_sdp = answer
        return answer.to_bytes(), media

    def _on_notify(self, request: Request, now: float) -> None:
        """The REFER subscription's NOTIFY (RFC 3515 2.4.5): its message/sipfrag
        body is the status line of the far end's call to the target; a final
        one (2xx: connected, 3xx-6xx: failed) is the transfer's result."""
        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != "refer" or not (request.content_type or "").startswith("message/sipfrag"):
            return
        line = request.body.decode("utf-8", "replace").split("\r\n", 1)[0].split("\n", 1)[0]
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[0].upper().startswith("SIP/") or not parts[1].isdigit():
            return
        status = int(parts[1])
        reason = parts[2].strip() if len(parts) > 2 else ""
        if status >= 200:
            self._refer_result(status < 300, status, f"target answered {status} {reason}".strip(),
                               now)  # fmt: skip

    def _on_info(self, request: Request, now: float) -> None:
        """SIP INFO DTMF (application/dtmf-relay, application/dtmf)."""
        if request.content_type not in ("application/dtmf-relay", "application/dtmf"):
            return
        text = request.body.decode("ascii", "replace")
        digit, duration = "", 0
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip().lower() == "signal":
                digit = value.strip()[:1]
            elif key.strip().lower() == "duration" and value.strip().isdigit():
                duration = int(value.strip())
        if not digit and request.content_type == "application/dtmf":
            digit = text.strip()[:1]
        if digit:
            self.host.emit(CallDtmfInfo(self.call_id, digit.upper(), duration, now))

    # ----------------------------------------------------------- RFC 4028

    def _start_session_timer(self, response: Response, now: float) -> None:
        value = response.headers.get("Session-Expires")
        if not value:
            return
        head, _, params = value.partition(";")
        try:
            interval = int(head.strip())
        except ValueError:
            return
        # RFC 4028 4: never below 90 s; a smaller value must not start a refresh storm.
        interval = max(interval, 90, self.spec.min_se)
        refresher = "uac"
        for param in params.split(";"):
            key, _, val = param.partition("=")
            if key.strip().lower() == "refresher":
                refresher = val.strip().lower()
        allow = ",".join(response.headers.get_all("Allow")).upper()
        timer = _SessionTimer(interval, refresher == "uac", use_update="UPDATE" in allow)
        if timer.we_refresh:
            timer.refresh_at = now + interval / 2
        else:
            timer.expire_at = now + interval - min(32, interval / 3)
        self._timer = timer

    def _session_timer_headers(self, request: Request, now: float) -> list[tuple[str, str]]:
        """Echo the far end's refresh and restart our expiry (RFC 4028 9)."""
        value = request.headers.get("Session-Expires")
        timer = self._timer
        if timer is not None and not timer.we_refresh:
            timer.expire_at = now + timer.interval - min(32, timer.interval / 3)
            self.host.arm(self)
        if not value:
            return []
        interval = value.partition(";")[0].strip()
        return [("Session-Expires", f"{interval};refresher=uac"), ("Require", "timer")]

    def _refresh(self, now: float) -> None:
        assert self.dialog is not None
        assert self._timer is not None
        timer = self._timer
        timer.refresh_at = None
        method = "UPDATE" if timer.use_update else "INVITE"
        request = self.dialog.request(method, self.host.make_via(self._transport()))
        request.headers.add("Contact", self.host.contact(self._transport()))
        request.headers.add("Supported", "timer")
        request.headers.add("Session-Expires", f"{timer.interval};refresher=uac")
        request.headers.add("User-Agent", self.host.user_agent)
        hop = self._hop(self.dialog)
        if method == "INVITE":
            request.headers.add("Content-Type", SDP)
            request.body = self._local_sdp.to_bytes()
            self._ours.tx = self._ours.last_invite = self.host.start_invite(self, request, hop, now)
        else:
            self._ours.update = self.host.start_request(self, request, hop, now)

    def _on_refresh_response(self, response: Response, now: float) -> None:
        if 200 <= response.status < 300 and self.dialog is not None and self._ours.tx:
            number = self._ours.tx.request.cseq.number
            self.dialog.update_from_response(response)
            self._ours.ack = self._build_ack(self.dialog, number)
            self.host.send(*self._ours.ack)
        if response.status >= 200:
            self._ours.tx = None
            self._on_refresh_result(response.status, now)

    def _on_refresh_result(self, status: int, now: float) -> None:
        timer = self._timer
        if self.ended or timer is None:
            return
        if status < 300:
            timer.refresh_at = now + timer.interval / 2
        elif status in (408, 481):
            # RFC 4028 10 / RFC 3261 12.2.1.2: the dialog is gone.
            self._send_bye(now, "session refresh failed")
            self._finish(self._answered_outcome(), "timeout", now)
        else:
            timer.refresh_at = now + min(timer.interval / 4, 30.0)
        self.host.arm(self)

    # ----------------------------------------------------------------- timers

    @property
    def deadline(self) -> float | None:
        times = [self._ring_deadline, self._cancel_deadline, self._duration_deadline]
        if self._timer is not None:
            times += [self._timer.refresh_at, self._timer.expire_at]
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def on_timer(self, now: float) -> None:
        if self.ended:
            return
        if self._ring_deadline is not None and now >= self._ring_deadline:
            self._ring_deadline = None
            if self.state is not CallState.CONFIRMED:
                self.cancel(now, CallResult.NO_ANSWER)
        if self._cancel_deadline is not None and now >= self._cancel_deadline:
            self._cancel_deadline = None
            if self.state is not CallState.CONFIRMED and self._cancel_result is not None:
                outcome = CallOutcome(self._cancel_result, None, "no final response to CANCEL")
                self._finish(outcome, "timeout", now)
        if self._duration_deadline is not None and now >= self._duration_deadline:
            self._duration_deadline = None
            self.hangup(now, "maximum duration")
        timer = self._timer
        if timer is not None and not self.ended:
            if timer.refresh_at is not None and now >= timer.refresh_at:
                self._refresh(now)
            if timer.expire_at is not None and now >= timer.expire_at:
                self._send_bye(now, "session timer expired")
                self._finish(self._answered_outcome(), "timeout", now)
        if not self.ended:
            self.host.arm(self)

    # ---------------------------------------------------------------- helpers

    def _transport(self) -> str:
        return self.spec.target.transport

    def _hop(self, dialog: Dialog) -> Target:
        if self.spec.sticky_target:
            return self.spec.target
        return dialog.next_hop(self._transport())

    @staticmethod
    def _has_sdp(message: Request | Response) -> bool:
        if not message.body:
            return False
        try:
            return message.content_type == SDP
        except SipParseError:
            return False  # a malformed Content-Type: treat the body as unusable


def _challenge(response: Response) -> Challenge | None:
    """The strongest usable digest challenge of a 401 or 407 (RFC 8760 3)."""
    proxy = response.status == 407
    name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    challenges = []
    for value in response.headers.get_all(name):
        try:
            challenges.append(parse_challenge(value, proxy=proxy))
        except AuthError:
            continue  # an unsupported scheme or a malformed one: try the others
    return choose_challenge(challenges)
