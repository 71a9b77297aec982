"""IVR on the calls of a campaign: what the dial loop adds to a call whose
campaign has an `ivr:` flow.

Before the INVITE, `start_ivr` makes the contact's `IvrSession` (a contact
without a column the prompts name is skipped, never called) and starts
rendering its prompts off the event loop (`ivr_flow.prepare_audio`, through
the daemon's TTS cache), so they are ready by the time a person answers;
ringing takes seconds and a rendering a fraction of one. If a person answers
first, the call hears silence until the audio is ready.

At the answer, `IvrCall.flow()` is the call flow (straight away with call
analysis off; after AMD's verdict otherwise). Its actions that need the
store or the telephony come back here: an opt-out adds the number to the
campaign's opt-out list with source `ivr`; a transfer to a number places a
second call on the campaign's trunk and bridges the two when it answers; a
transfer to an agent queue holds the caller for an agent campaign's agents
(`engine.voice.queue_transfer`). A transfer that cannot be made is reported
as failed and the flow's `on_fail` step plays. When the call ends, the
steps the caller went through go to the attempt (`ivr_path`, `ivr_summary`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from carriers.rtp.errors import RtpError
from carriers.sip.events import CallAnswered, CallEnded, CallTransferResult
from engine.bus import EventBus
from engine.voice.bridge import Bridge
from engine.voice.flows import Pcm
from engine.voice.ivr import Flow
from engine.voice.ivr_flow import AudioKey, IvrCallFlow, prepare_audio
from engine.voice.ivr_session import (
    Action,
    IvrSession,
    OptOut,
    SetResult,
    StoreValue,
    TransferNumber,
    TransferQueue,
)
from engine.voice.tts import MissingColumn, TtsCache, TtsError

if TYPE_CHECKING:
    from carriers.sip.transport import CallEvent, CallHandle
    from engine.store import Store
    from engine.voice.queue_transfer import QueueTransfer
    from engine.voice.telephony import MediaLeg, Telephony

__all__ = ["IvrCall", "NumberTransfer", "start_ivr"]

log = logging.getLogger(__name__)


def start_ivr(flow: Flow, contact: dict[str, str], tts: TtsCache | None) -> IvrCall | MissingColumn:
    """The contact's IVR, its audio being prepared; or why the contact cannot have it."""
    try:
        session = IvrSession(flow, contact)
    except MissingColumn as exc:
        return exc
    return IvrCall(session, tts)


class IvrCall:
    """One call's IVR: its session, its audio, and the flow once answered."""

    def __init__(self, session: IvrSession, tts: TtsCache | None) -> None:
        self.session = session
        self.audio: dict[AudioKey, Pcm] = {}
        self.error: str | None = None
        self.flow_obj: IvrCallFlow | None = None
        self.transfer: NumberTransfer | QueueTransfer | None = None
        self._task = asyncio.get_running_loop().create_task(self._prepare(tts))

    async def _prepare(self, tts: TtsCache | None) -> None:
        try:
            self.audio.update(await prepare_audio(self.session, tts))
        except (TtsError, OSError, RuntimeError, ValueError) as exc:
            self.error = f"IVR prompt could not be made: {exc}"
            log.warning("%s", self.error)

    def cancel(self) -> None:
        self._task.cancel()

    @property
    def ready(self) -> bool:
        return self._task.done()

    def flow(
        self,
        leg: MediaLeg,
        hang_up: Callable[[str], None],
        on_action: Callable[[IvrCall, Action], None],
    ) -> IvrCallFlow:
        """The answered call's flow (made once)."""
        if self.flow_obj is None:
            session = leg.endpoint.session
            self.flow_obj = IvrCallFlow(
                self.session, self.audio,
                dtmf_received=lambda: session.dtmf_received,
                hang_up=hang_up, on_action=lambda action: on_action(self, action),
                ready=lambda: self.ready, failed=lambda: self.error,
            )  # fmt: skip
        return self.flow_obj

    def record(self) -> dict[str, Any]:
        """The attempt's IVR fields once the call has ended."""
        if self.flow_obj is not None:
            self.flow_obj.hung_up()
        session = self.session
        path = {
            "result": session.result, "values": session.values, "end": session.end,
            "steps": session.history_json(),
            "keys": [f"{d}:{how}" for d, how in self.flow_obj.digits] if self.flow_obj else [],
        }  # fmt: skip
        if self.error:
            path["error"] = self.error
        if self.transfer is not None:
            path["transfer"] = self.transfer.result
        return {"ivr_path": json.dumps(path), "ivr_summary": session.summary() or None}


async def opt_out(
    store: Store, bus: EventBus, campaign: str, number: str, action: OptOut, default_list: str
) -> None:
    """The caller asked not to be called again: the number goes on the opt-out list."""
    lst = action.list_name or default_list
    await store.dnc_add(number, list=lst, source=action.source, campaign=campaign)
    bus.publish("contact.opted_out", campaign=campaign, number=number, source=action.source,
                list=lst)  # fmt: skip


REFER_WAIT_S = 10.0  # beyond the ring timeout, for the far end's final NOTIFY


class NumberTransfer:
    """A transfer to a number. With `refer: auto`, first a blind transfer by
    SIP REFER (RFC 3515): the carrier calls the number and connects the
    caller; once its NOTIFY says the target answered, our leg hangs up and
    the trunk line is free. A REFER refused (405/501 mark the trunk as one
    that takes none: later transfers skip it), unanswered or failed falls
    back to the bridge: a second call on the campaign's trunk, bridged to
    the caller when it answers (the caller hears silence while it rings).
    The two calls then end together: whichever side hangs up, the other is
    hung up."""

    def __init__(self, call: IvrCall, customer: MediaLeg, customer_call_id: str) -> None:
        self.call = call
        self.customer = customer
        self.customer_call_id = customer_call_id
        self.handle: CallHandle | None = None
        self.bridge: Bridge | None = None
        self.answered_at: float | None = None
        self._result: str | None = None
        self._before = ""  # why REFER gave way to the bridge
        self._referred: asyncio.Future[CallTransferResult] | None = None

    @property
    def result(self) -> str | None:
        """What became of the transfer (stored with the attempt's IVR path)."""
        return f"{self._before}{self._result}" if self._before else self._result

    @result.setter
    def result(self, value: str | None) -> None:
        self._result = value

    def on_refer_result(self, event: CallTransferResult) -> None:
        """The customer call's CallTransferResult (the dial loop passes it on)."""
        if self._referred is not None and not self._referred.done():
            self._referred.set_result(event)

    async def _refer(self, tel: Telephony, trunk: str, number: str, ring_timeout: float) -> bool:
        """True when the carrier took the transfer (the caller is theirs now)."""
        state = tel.trunks[trunk]
        if state.refer_refused:
            self.result = "REFER skipped (the trunk refused one before)"
            return False
        self._referred = asyncio.get_running_loop().create_future()
        if not tel.sip.refer(self.customer_call_id, tel.number_uri(trunk, number)):
            self.result = "REFER not sent (call not answered)"
            return False
        try:
            event = await asyncio.wait_for(self._referred, ring_timeout + REFER_WAIT_S)
        except TimeoutError:
            self.result = "REFER: no final NOTIFY"
            return False
        if event.accepted:
            return True
        if event.status in (405, 501):
            state.refer_refused = True
        self.result = event.reason
        return False

    async def run(
        self, tel: Telephony, trunk: str, caller_id: str | None, action: TransferNumber,
        ring_timeout: float, max_duration: float,
    ) -> None:  # fmt: skip
        flow = self.call.flow_obj
        if action.refer == "auto":
            if await self._refer(tel, trunk, action.number, ring_timeout):
                self.result = "referred"
                if flow is not None:
                    flow.transfer_result(True)  # the session ends: "transferred"
                if not self.customer.endpoint.closed:
                    tel.sip.hangup(self.customer_call_id, "transferred by REFER")
                return
            if flow is None or flow.ended or self.customer.endpoint.closed:
                return
            self._before, self.result = f"{self.result}; bridge: ", None
        await self._bridge(tel, trunk, caller_id, action, ring_timeout, max_duration)

    async def _bridge(
        self, tel: Telephony, trunk: str, caller_id: str | None, action: TransferNumber,
        ring_timeout: float, max_duration: float,
    ) -> None:  # fmt: skip
        flow = self.call.flow_obj
        if tel.capacity(trunk) <= 0:
            self.result = "no line free on the trunk"
            if flow is not None:
                flow.transfer_result(False)
            return
        await tel.admit(trunk)
        try:
            leg = await tel.open_media()
        except (RtpError, OSError) as exc:
            tel.released(trunk)
            self.result = f"no RTP port: {exc}"
            if flow is not None:
                flow.transfer_result(False)
            return
        answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def on_event(event: CallEvent) -> None:
            if isinstance(event, CallAnswered):
                if event.media is not None:
                    leg.apply(event.media)
                if not answered.done():
                    answered.set_result(True)
            elif isinstance(event, CallEnded) and not answered.done():
                answered.set_result(False)

        self.handle = tel.place(trunk, action.number, caller_id, leg, ring_timeout=ring_timeout,
                                max_duration=max_duration, on_event=on_event)  # fmt: skip
        ok = await answered
        if ok and not self.customer.endpoint.closed and flow is not None and not flow.ended:
            self.bridge = Bridge(self.customer, leg)
            self.answered_at = time.time()
            flow.transfer_result(True)  # the session ends: "transferred"
            self.bridge.install()
            self.result = "bridged"
        else:
            self.result = self.result or "no answer"
            if self.handle is not None and ok:
                tel.sip.hangup(self.handle.call_id, "caller gone")
            if flow is not None:
                flow.transfer_result(False)
        ended = await self.handle.ended
        self.result = self.result if self.bridge is None else f"bridged, ended ({ended.ended_by})"
        if self.bridge is not None:
            self.bridge.unbridge()
            if not self.customer.endpoint.closed:
                tel.sip.hangup(self.customer_call_id, "transfer target hung up")
        tel.released(trunk)
        tel.close_media(leg)

    def customer_ended(self, tel: Telephony) -> None:
        if self.handle is not None and not self.handle.ended.done():
            tel.sip.hangup(self.handle.call_id, "caller hung up")


def unsupported_transfer(call: IvrCall, action: TransferQueue | TransferNumber) -> None:
    """Report a transfer this daemon cannot make as failed (the flow's on_fail plays)."""
    flow = call.flow_obj
    if flow is not None:
        log.warning("IVR transfer not available here: %s", action)
        flow.transfer_result(False)


def keep(call: IvrCall, action: SetResult | StoreValue) -> None:
    """Results and stored values live in the session; `record` writes them."""
