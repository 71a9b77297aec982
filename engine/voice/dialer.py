"""The dial loop of one agentless voice campaign.

It keeps the campaign's lines busy with contacts that are due, in priority
order, within the trunk's limits. For every call it writes the attempt row
(committed) before the INVITE leaves, follows the call, stores every
timestamp and the outcome, and applies the campaign's retry rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from carriers.rtp.errors import RtpError
from carriers.sip.events import (
    CallAnswered,
    CallDtmfInfo,
    CallEarlyMedia,
    CallEnded,
    CallProgress,
    CallTransferResult,
)
from carriers.sip.outcome import CallResult
from carriers.sip.transport import CallEvent, CallHandle
from engine.compliance.amd_sample import AmdSampler
from engine.compliance.campaign import calling_hours
from engine.compliance.hours import CALL_LIMIT_WINDOW, Verdict, within_call_limit
from engine.compliance.locate import LocateError, zone
from engine.compliance.rules import RuleContext, after_context, rule_context
from engine.store import AttemptIntent, DialCandidate
from engine.store.types import INTERRUPTED
from engine.voice import rule_actions
from engine.voice.flows import Analysis, EarlyMediaWatch, answered_flow
from engine.voice.ivr import MissingColumn
from engine.voice.ivr_calls import (
    IvrCall,
    NumberTransfer,
    opt_out,
    start_ivr,
    unsupported_transfer,
)
from engine.voice.ivr_session import Action, OptOut, TransferNumber, TransferQueue
from engine.voice.queue_transfer import QueueTransfer
from engine.voice.telephony import MediaLeg, Telephony, TokenBucket, pace

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.bus import EventBus
    from engine.campaign_config import CampaignConfig
    from engine.store import Store
    from engine.voice.agent_dialer import AgentCampaignRunner
    from engine.voice.tts import TtsCache

log = logging.getLogger("outdial.dialer")

RUNNING, PAUSED, STOPPED, COMPLETED = "running", "paused", "stopped", "completed"
RESYNC_EVERY = 2.0  # seconds between picking up contacts added to the list
DEFER_FETCH = 512  # contacts read per pass while deferring ones outside their hours


def utcnow() -> datetime:
    return datetime.now(UTC)


def next_step(
    cfg: CampaignConfig, result: CallResult, attempts: int, now: datetime
) -> tuple[str, datetime | None]:
    """The contact's next state after an attempt: done, or retry at a time.

    Answered contacts are done. Others are retried when the campaign has a
    rule for that result and attempts remain. An attempt cut off by a crash
    (interrupted) follows the `interrupted` rule, else the carrier_failure one.
    """
    if result is CallResult.ANSWERED or attempts >= cfg.max_attempts:
        return "done", None
    interval = cfg.retry.get(result)
    if interval is None and result is CallResult.INTERRUPTED:
        interval = cfg.retry.get(CallResult.CARRIER_FAILURE)
    if interval is None:
        return "done", None
    return "retry", now + timedelta(seconds=interval)


@dataclass(slots=True)
class LiveCall:
    attempt_id: int
    contact_id: int
    attempts_before: int
    number: str
    leg: MediaLeg
    handle: CallHandle | None = None
    times: dict[str, datetime] = field(default_factory=dict)
    analysis: Analysis = field(default_factory=Analysis)
    ivr: IvrCall | None = None
    rule_ctx: RuleContext | None = None  # the counts before this call (campaign rules)


class CampaignRunner:
    """Runs one campaign: the loop, its calls in flight, pause and stop."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        tel: Telephony,
        cfg: CampaignConfig,
        prompt: NDArray[np.int16],
        machine_prompt: NDArray[np.int16] | None = None,
    ):
        self.store, self.bus = store, bus
        self.tel = tel
        self.cfg = cfg
        self.prompt = prompt
        self.machine_prompt = machine_prompt if machine_prompt is not None else prompt
        self.state = STOPPED
        self.calls: dict[int, LiveCall] = {}
        self._reserved: set[int] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set whenever the last call in flight ends
        self._task: asyncio.Task[None] | None = None
        self._halting = False
        self.placed = 0
        self._bucket = TokenBucket(cfg.calls_per_second) if cfg.calls_per_second else None
        # The daemon replaces this with its own (a lab rig drops the law's part).
        self.hours = calling_hours(cfg.hours, str(cfg.file))
        self.locator = cfg.hours.locator()
        self.deferred = 0
        self.tts: TtsCache | None = None  # the daemon's, set by the campaign manager
        self._ivr_pending: dict[int, IvrCall] = {}
        self._rule_pending: dict[int, tuple[RuleContext, str | None]] = {}
        self._more_due = False  # contacts were due beyond what the last pass placed
        # The agent campaign whose queue takes this campaign's IVR transfers
        # (`transfer: {queue: NAME}`), set by the campaign manager.
        self.queues: Callable[[str], AgentCampaignRunner | None] = lambda _name: None
        self.samples = AmdSampler(store)  # the campaign manager sets its directory

    @property
    def name(self) -> str:
        return self.cfg.name

    def wake(self) -> None:
        """Something changed that may let the loop dial (a contact's state)."""
        self._wake.set()

    # ---------------------------------------------------------------- control

    async def start(self) -> None:
        self.state = RUNNING
        self._halting = False
        await self.store.set_campaign_state(self.name, RUNNING)
        self.bus.publish("campaign.state", campaign=self.name, state=RUNNING)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def set_state(self, state: str) -> None:
        """Pause or stop: no new calls; calls in progress finish normally."""
        self.state = state
        self.tel.want(self.cfg.trunk, self.name, self.cfg.priority, 0)
        self._wake.set()
        await self.store.set_campaign_state(self.name, state)
        self.bus.publish("campaign.state", campaign=self.name, state=state)

    async def halt(self, grace: float) -> None:
        """Daemon shutdown: stop dialling without changing the stored state
        (a running campaign resumes on the next start), let calls finish for
        `grace` seconds, then hang up what is left."""
        self._halting = True
        self.tel.want(self.cfg.trunk, self.name, self.cfg.priority, 0)
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._wait_calls(grace)
        for live in list(self.calls.values()):
            if live.handle is not None:
                self.tel.sip.hangup(live.handle.call_id, "shutting down")
        await self._wait_calls(5.0)
        # A call the carrier never let go of (no answer to the BYE or CANCEL)
        # is closed as the restart after a crash would close it.
        now = utcnow()
        for live in list(self.calls.values()):
            self.store.update_attempt(live.attempt_id, ended_at=now, result=INTERRUPTED,
                                      reason="no end within the shutdown grace")  # fmt: skip
            self.store.set_contact_state(self.name, live.contact_id, state="retry",
                                         next_attempt_at=now)  # fmt: skip
        await self.samples.drain()

    async def _wait_calls(self, limit: float) -> None:
        if self.calls:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), limit)

    # ------------------------------------------------------------------ loop

    async def _run(self) -> None:
        store = self.store
        loop = asyncio.get_running_loop()
        await store.sync_campaign_contacts(self.name)
        next_sync = loop.time() + RESYNC_EVERY
        deferring = False
        while self.state == RUNNING and not self._halting:
            if loop.time() >= next_sync:
                await store.sync_campaign_contacts(self.name)
                next_sync = loop.time() + RESYNC_EVERY
            cfg = self.cfg
            want = cfg.lines - len(self.calls)
            free = min(want, self.tel.capacity_for(cfg.trunk, self.name, cfg.priority))
            if free <= 0:
                deferring = False
                # Held back by the trunk: say whether contacts are waiting, so a
                # lower-priority campaign on the trunk leaves the lines to us.
                # At its own line limit (want 0) it keeps what it knew of
                # contacts due: a call that ends then claims its line (_follow).
                if want > 0:
                    self._more_due = bool(await store.due_contacts(self.name, utcnow(), 1))
                self.tel.want(cfg.trunk, self.name, cfg.priority, want if self._more_due else 0)
            else:
                exclude = set(self._reserved) | {c.contact_id for c in self.calls.values()}
                # While contacts outside their calling hours are being moved
                # out of the way, read further ahead so that callable ones
                # behind them are reached at once.
                fetch = free if not deferring else max(free, DEFER_FETCH)
                due = await store.due_contacts(self.name, utcnow(), fetch, exclude)
                before, placed = self.deferred, 0
                for candidate in due:
                    if self.state != RUNNING or self._halting or placed >= free:
                        break
                    if await self._dial(candidate) is not None:
                        placed += 1
                deferring = self.deferred > before and placed < free
                more = len(due) >= fetch  # others may be due behind these
                self._more_due = more
                # Fresh, not `want - placed`: calls may have ended during the
                # awaits above, and their lines are ours to claim.
                self.tel.want(cfg.trunk, self.name, cfg.priority,
                              max(0, cfg.lines - len(self.calls)) if more else 0)  # fmt: skip
                if not due and not self.calls and await self._finished():
                    await self.set_state(COMPLETED)
                    return
            if deferring:
                continue  # more may be due behind the deferred ones
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.2)

    async def _finished(self) -> bool:
        await self.store.flush()
        progress = await self.store.progress(self.name)
        waiting = ("pending", "retry", "in_flight", "callback", "deferred")
        return not any(progress.get(k, 0) for k in waiting)

    async def _usable_numbers(self, candidate: DialCandidate, reserved: Any) -> list[str]:
        """The contact's numbers that may be dialled now; with none, the
        contact's state says why (skipped for DNC; see subclasses)."""
        store, now = self.store, utcnow()
        lists = self.cfg.checked_dnc_lists
        person = await store.dnc_contact(candidate.contact_id, now, lists=lists)
        if person is not None:
            self._skip(candidate, f"do-not-contact: the contact, {person.reason}", person.reason)
            return []
        blocked = await store.dnc_numbers(candidate.phones, now, lists=lists)
        usable = [p for p in candidate.phones if p not in blocked]
        if not usable:
            hits = "; ".join(f"{n}: {blocked[n].reason}" for n in sorted(blocked))
            self._skip(candidate, f"do-not-contact: {hits}", "do-not-contact")
            return usable
        usable = await self._rules_before(candidate, usable)
        if not usable:
            return usable
        return await self._callable_now(candidate, usable)

    async def _rules_before(self, candidate: DialCandidate, numbers: list[str]) -> list[str]:
        """The campaign's filter, attempt limits and before_call rules (see
        engine.compliance.rules): the numbers they leave, the contact skipped
        or deferred (a per-day limit lifts at the contact's local midnight)."""
        cfg = self.cfg
        if cfg.filter is not None and not cfg.filter.matches(candidate.attributes):
            self._skip(candidate, f"not in the campaign's filter ({cfg.filter.condition.text})")
            return []
        limits = cfg.limits
        optional = (limits.contact_per_day, limits.number_total, limits.number_per_day)
        needs = bool(cfg.rules) or any(v is not None for v in optional)
        if not needs:
            return numbers
        history = await self.store.attempt_history(candidate.contact_id)
        local_now = self._local_now(candidate, numbers[0])
        allowed: list[str] = []
        ctx: RuleContext | None = None
        reason = None
        for number in numbers:
            ctx = rule_context(local_now, candidate.attributes, history, number)
            reason = limits.contact_reason(ctx)
            if reason is not None:
                break
            reason = limits.number_reason(ctx)
            if reason is None:
                allowed.append(number)
        if reason is not None and not allowed and ctx is not None:
            when = limits.next_allowed(ctx)
            if when is None:
                self._skip(candidate, f"attempt limit: {reason}", "limits")
            else:
                self.deferred += 1
                at = when.astimezone(UTC)
                self.store.set_contact_state(
                    self.name, candidate.contact_id, state="deferred", next_attempt_at=at,
                    skip_reason=f"attempt limit: {reason}; callable from {at.isoformat()}",
                )  # fmt: skip
                self.store.ledger("deferral", source="dialer", campaign=self.name,
                                  contact_id=candidate.contact_id, rule="limits",
                                  detail={"until": at.isoformat(), "reason": reason})  # fmt: skip
            return []
        ctx = rule_context(local_now, candidate.attributes, history, allowed[0])
        decision = cfg.rules.before_call(ctx)
        rule_actions.apply_before(self.store, self.name, candidate, decision)
        if decision.skip_reason is not None:
            self._skip(candidate, f"campaign rule: {decision.skip_reason}", "rules")
            return []
        self._rule_pending[candidate.contact_id] = (ctx, decision.caller_id)
        return allowed

    def _local_now(self, candidate: DialCandidate, number: str) -> datetime:
        now = utcnow()
        try:
            locale = self.locator.locate(candidate.attributes, number)
        except LocateError:
            return now
        zones = locale.zones or ((self.hours.default_zone,) if self.hours.default_zone else ())
        return now.astimezone(zone(zones[0])) if zones else now

    def _skip(self, candidate: DialCandidate, reason: str, rule: str | None = None) -> None:
        self.store.set_contact_state(self.name, candidate.contact_id, state="skipped",
                                     skip_reason=reason)  # fmt: skip
        self.store.ledger("skip", source="dialer", campaign=self.name,
                          contact_id=candidate.contact_id, rule=rule or reason,
                          detail={"reason": reason})  # fmt: skip
        self.bus.publish("contact.skipped", campaign=self.name,
                         contact=candidate.contact_id, reason=reason)  # fmt: skip

    async def _callable_now(self, candidate: DialCandidate, numbers: list[str]) -> list[str]:
        """The numbers callable now in the contact's local time; with none, the
        contact is deferred to the first time one is (state "deferred", the
        reason in skip_reason), or skipped when its time-zone column is bad."""
        now = utcnow()
        allowed: list[str] = []
        reason, until, rule = "", None, ""
        for number in numbers:
            try:
                locale = self.locator.locate(candidate.attributes, number)
            except LocateError as exc:
                self._skip(candidate, f"bad contact data: {exc}")
                return []
            verdict = self.hours.verdict(locale, now)
            if verdict.callable:
                limit = self.hours.call_limit(locale)
                if limit is not None:
                    verdict = await self._within_call_limit(candidate, limit, now)
            if verdict.callable:
                allowed.append(number)
            elif until is None or verdict.until < until:
                reason, until = f"{number}: {verdict.reason}", verdict.until
                rule = verdict.rule or verdict.reason
        if not allowed and until is not None:
            self.deferred += 1
            why = f"not callable now: {reason}; callable from {until.isoformat()}"
            self.store.set_contact_state(self.name, candidate.contact_id, state="deferred",
                                         next_attempt_at=until, skip_reason=why)  # fmt: skip
            self.store.ledger("deferral", source="dialer", campaign=self.name,
                              contact_id=candidate.contact_id, rule=rule,
                              detail={"until": until.isoformat(), "reason": reason})  # fmt: skip
            self.bus.publish("contact.deferred", campaign=self.name, contact=candidate.contact_id,
                             until=until.isoformat(), reason=reason)  # fmt: skip
        return allowed

    async def _dial(self, candidate: DialCandidate, reserved: Any = None) -> int | None:
        """Place one call to `candidate`; returns the attempt id, or None when
        no call was placed. `reserved`: what a subclass holds for the call
        (the agent reserved for it)."""
        store, cfg = self.store, self.cfg
        usable = await self._usable_numbers(candidate, reserved)
        if not usable:
            return None
        number = usable[candidate.attempts % len(usable)]
        if cfg.ivr is not None:
            made = start_ivr(cfg.ivr, candidate.attributes, self.tts)
            if isinstance(made, MissingColumn):
                self._skip(candidate, f"bad contact data for the IVR: {made}")
                return None
            self._ivr_pending[candidate.contact_id] = made
        self._reserved.add(candidate.contact_id)
        try:
            if self._bucket is not None:  # the campaign's own pace, under the trunk's
                await pace(self._bucket)
            await self.tel.admit(cfg.trunk)
            if self.state != RUNNING or self._halting:
                return None
            try:
                leg = await self.tel.open_media()
            except (RtpError, OSError) as exc:
                log.warning("no RTP port for a call: %s", exc)
                return None
            caller_id = self._caller_id(candidate.contact_id)
            intent = AttemptIntent(
                campaign=self.name, contact_id=candidate.contact_id, number=number,
                trunk=cfg.trunk, caller_id=caller_id, created_at=utcnow(),
            )  # fmt: skip
            # Durable before the INVITE. The insert is shielded: a shutdown
            # that cancels the loop here must not leave a committed attempt
            # open, so it waits for the row and closes it as never sent.
            insert = asyncio.ensure_future(store.create_attempt(intent))
            try:
                attempt_id = await asyncio.shield(insert)
            except asyncio.CancelledError:
                self.tel.close_media(leg)
                with contextlib.suppress(Exception):
                    unsent = await insert
                    store.update_attempt(unsent, ended_at=utcnow(), result=INTERRUPTED,
                                         reason="shut down before the INVITE")  # fmt: skip
                raise
            except Exception:
                self.tel.close_media(leg)
                raise
            self._launch(candidate, number, attempt_id, leg, reserved)
            return attempt_id
        finally:
            self._reserved.discard(candidate.contact_id)
            self._rule_pending.pop(candidate.contact_id, None)
            unused = self._ivr_pending.pop(candidate.contact_id, None)  # no call placed
            if unused is not None:
                unused.cancel()

    async def _within_call_limit(
        self, candidate: DialCandidate, limit: tuple[int, str], now: datetime
    ) -> Verdict:
        """A state's "at most N calls in 24 hours" rule for this contact."""
        calls = await self.store.calls_since(candidate.contact_id, now - CALL_LIMIT_WINDOW)
        return within_call_limit(calls, limit, now)

    def _caller_id(self, contact_id: int) -> str | None:
        pending = self._rule_pending.get(contact_id)
        if pending is not None and pending[1] is not None:
            return pending[1]  # a before_call rule's caller ID
        return self.cfg.caller_id

    def _local_time(
        self, cand: DialCandidate, number: str, at: datetime
    ) -> tuple[datetime | None, str]:
        """The contact's local time at `at` (its first zone) and the rules that let
        the call through, for the attempt and the compliance ledger."""
        try:
            locale = self.locator.locate(cand.attributes, number)
        except LocateError:
            return None, ""
        zones = locale.zones or ((self.hours.default_zone,) if self.hours.default_zone else ())
        rules = " + ".join(f"{r.label}: {r.source}" for r in self.hours.rules_for(locale))
        if self.hours.legal is None:
            rules = "lab (legal hours off)" + (f"; {rules}" if rules else "")
        return (at.astimezone(zone(zones[0])) if zones else None), rules or "no hours rule"

    def _make_live(
        self, cand: DialCandidate, number: str, attempt_id: int, leg: MediaLeg, reserved: Any
    ) -> LiveCall:
        return LiveCall(attempt_id, cand.contact_id, cand.attempts, number, leg)

    def _launch(
        self, cand: DialCandidate, number: str, attempt_id: int, leg: MediaLeg, reserved: Any
    ) -> None:
        store, cfg = self.store, self.cfg
        live = self._make_live(cand, number, attempt_id, leg, reserved)
        live.ivr = self._ivr_pending.pop(cand.contact_id, None)
        caller_id = self._caller_id(cand.contact_id)
        pending = self._rule_pending.pop(cand.contact_id, None)
        live.rule_ctx = pending[0] if pending is not None else None
        self.calls[attempt_id] = live
        store.set_contact_state(self.name, cand.contact_id, state="in_flight")
        handle = self.tel.place(
            cfg.trunk, number, caller_id, leg,
            ring_timeout=cfg.ring_timeout, max_duration=cfg.max_duration,
            on_event=lambda event: self._on_event(live, event),
        )  # fmt: skip
        live.handle = handle
        self.placed += 1
        sent = utcnow()
        local, allowed_by = self._local_time(cand, number, sent)
        store.update_attempt(attempt_id, invite_sent_at=sent, call_id=handle.call_id,
                             local_time=local)  # fmt: skip
        store.ledger("call_placed", source="dialer", campaign=self.name,
                     contact_id=cand.contact_id, number=number, local_time=local,
                     rule=allowed_by, detail={"attempt_id": attempt_id})  # fmt: skip
        self.bus.publish("call.started", campaign=self.name, attempt=attempt_id,
                             contact=cand.contact_id, number=number)  # fmt: skip
        asyncio.get_running_loop().create_task(self._follow(live, handle))

    def _on_event(self, live: LiveCall, event: CallEvent) -> None:
        match event:
            case CallProgress(status=status) if status > 100 and "ringing" not in live.times:
                live.times["ringing"] = utcnow()
                self.store.update_attempt(live.attempt_id, ringing_at=live.times["ringing"])
            case CallEarlyMedia(media=media):
                live.leg.apply(media)
                live.leg.flow = EarlyMediaWatch(
                    lambda result, why: self._early_verdict(live, result, why)
                ).on_frame
            case CallAnswered(media=media):
                if media is not None:
                    live.leg.apply(media)
                live.times["answered"] = utcnow()
                self.store.update_attempt(live.attempt_id, answered_at=live.times["answered"])
                live.leg.tap = self.samples.at_answer(live.attempt_id, self.cfg.amd)
                handle = live.handle
                loop = asyncio.get_running_loop()

                def hang_up() -> None:
                    if handle is not None:
                        loop.call_soon(self.tel.sip.hangup, handle.call_id, "prompt played")

                ivr = None
                if live.ivr is not None:

                    def end(reason: str) -> None:
                        if handle is not None:
                            loop.call_soon(self.tel.sip.hangup, handle.call_id, reason)

                    ivr = live.ivr.flow(live.leg, end, partial(self._ivr_action, live))
                flow = answered_flow(
                    self.cfg.amd, self.prompt, self.machine_prompt, hang_up, live.analysis, ivr
                )
                live.leg.flow = flow.on_frame
                self.bus.publish("call.answered", campaign=self.name,
                                     attempt=live.attempt_id, number=live.number)  # fmt: skip
            case CallDtmfInfo(digit=digit):
                if live.ivr is not None and live.ivr.flow_obj is not None:
                    live.ivr.flow_obj.push_digit(digit)
            case CallTransferResult():
                transfer = live.ivr.transfer if live.ivr is not None else None
                if isinstance(transfer, NumberTransfer):
                    transfer.on_refer_result(event)
            case _:
                pass

    def _ivr_action(self, live: LiveCall, call: IvrCall, action: Action) -> None:
        """What the IVR asks of the store or the telephony (see engine.voice.ivr_calls)."""
        match action:
            case OptOut():
                default = self.cfg.optout_list
                asyncio.get_running_loop().create_task(
                    opt_out(self.store, self.bus, self.name, live.number, action, default)
                )
            case TransferNumber() if live.handle is not None and call.transfer is None:
                call.transfer = NumberTransfer(call, live.leg, live.handle.call_id)
                asyncio.get_running_loop().create_task(call.transfer.run(
                    self.tel, self.cfg.trunk, self.cfg.caller_id, action,
                    self.cfg.ring_timeout, self.cfg.max_duration,
                ))  # fmt: skip
            case TransferQueue() if call.transfer is None:
                queue = self.queues(action.campaign or self.name)
                if queue is None:
                    unsupported_transfer(call, action)
                    return
                call.transfer = QueueTransfer(self, live, call, queue)
                queue.take_transfer(call.transfer)
            case TransferQueue() | TransferNumber():
                unsupported_transfer(call, action)
            case _:
                pass  # results and stored values are kept by the session

    def _rules_after(
        self, live: LiveCall, result: str, attempts: int, state: str,
        when: datetime | None, now: datetime,
    ) -> tuple[str, datetime | None]:  # fmt: skip
        """The after_call rules on this call's result: a retry time, uncallable,
        a move to another campaign, the number on a DNC list; else the
        campaign's retry table decides."""
        base = live.rule_ctx
        if base is None or not self.cfg.rules:
            return state, when
        ctx = after_context(base, result, now)
        decision = self.cfg.rules.after_call(ctx)
        if decision.dnc_list is not None:
            lst = decision.dnc_list
            asyncio.get_running_loop().create_task(self.store.dnc_add(
                live.number, list=lst, source="rule", campaign=self.name))  # fmt: skip
        if decision.uncallable is not None:
            why = f"campaign rule: {decision.uncallable}"
            self.store.set_contact_state(self.name, live.contact_id, state="failed",
                                         skip_reason=why)  # fmt: skip
            return "failed", None
        if decision.move_to is not None:
            self._move_to(live.contact_id, decision.move_to)
            return "done", None
        if decision.retry_in_s is not None:
            if attempts >= self.cfg.max_attempts:
                return "failed", None
            return "retry", now + timedelta(seconds=decision.retry_in_s)
        return state, when

    def _move_to(self, contact_id: int, target: str) -> None:
        rule_actions.move_to(self.store, self.bus, self.name, contact_id, target)

    def _early_verdict(self, live: LiveCall, result: CallResult, why: str) -> None:
        """A tone in early media settled the call before any answer: record
        the result it means and cancel (a 200 crossing this CANCEL is BYEd)."""
        live.analysis.result, live.analysis.amd_cause = result, why
        if live.handle is not None:
            asyncio.get_running_loop().call_soon(self.tel.sip.cancel, live.handle.call_id)

    async def _follow(self, live: LiveCall, handle: CallHandle) -> None:
        ended = await handle.ended
        if live.ivr is not None and live.ivr.transfer is not None:
            live.ivr.transfer.customer_ended(self.tel)
        self._record(live, ended)
        machine = live.analysis.result is CallResult.MACHINE  # keep or drop its AMD sample
        self.samples.at_end(self.name, live.attempt_id, live.number, machine,
                            live.times.get("answered"))  # fmt: skip
        self.tel.released(self.cfg.trunk)
        self.tel.close_media(live.leg)
        del self.calls[live.attempt_id]
        if self._more_due and self.state == RUNNING and not self._halting:
            # Claim the freed line at once: a lower-priority campaign on the
            # trunk must not take it before this loop's next pass.
            cfg = self.cfg
            self.tel.want(cfg.trunk, self.name, cfg.priority, cfg.lines - len(self.calls))
        if not self.calls:
            self._idle.set()
        self._wake.set()

    def _record(self, live: LiveCall, ended: CallEnded) -> None:
        now = utcnow()
        outcome = ended.outcome
        result = live.analysis.result or outcome.result  # what the audio said, if anything
        answered = live.times.get("answered")
        fields: dict[str, Any] = {
            **live.analysis.fields(),
            "ended_at": now, "result": result.value, "sip_status": outcome.sip_status,
            "reason": outcome.reason, "q850_cause": outcome.q850_cause,
            "ended_by": ended.ended_by,
            "duration_ms": int((now - answered).total_seconds() * 1000) if answered else None,
        }  # fmt: skip
        if live.ivr is not None:
            live.ivr.cancel()
            fields.update(live.ivr.record())
            self.bus.publish("call.ivr", campaign=self.name, attempt=live.attempt_id,
                             summary=fields["ivr_summary"])  # fmt: skip
        self.store.update_attempt(live.attempt_id, **fields)
        attempts = live.attempts_before + 1
        state, when = next_step(self.cfg, result, attempts, now)
        state, when = self._rules_after(live, result.value, attempts, state, when, now)
        self.store.set_contact_state(
            self.name, live.contact_id, state=state, next_attempt_at=when,
            last_result=result.value, attempts_delta=1,
        )  # fmt: skip
        self.bus.publish(
            "call.ended", campaign=self.name, attempt=live.attempt_id, number=live.number,
            result=result.value, sip_status=outcome.sip_status, next=state,
            amd=live.analysis.amd_result,
        )  # fmt: skip

    # -------------------------------------------------------------- reporting

    async def describe(self) -> dict[str, Any]:
        progress = await self.store.progress(self.name)
        cfg = self.cfg
        return {
            "name": self.name, "state": self.state, "list": cfg.contact_list,
            "trunk": cfg.trunk, "lines": cfg.lines, "lines_in_use": len(self.calls),
            "in_flight": len(self.calls), "placed_since_start": self.placed,
            "progress": progress,
        }  # fmt: skip
