"""The dial loop of an agent campaign: preview, progressive, power, predictive.

It shares the agentless loop's machinery (`CampaignRunner`: the attempt row
committed before the INVITE, trunk admission, retry rules) and adds what
agents need:

- how many calls to place: `engine.voice.pacing.decide` (progressive, power,
  predictive) from the live agents, the calls ringing, the measured
  distributions (`PacingStats`) and the abandon ledger (`AbandonWindow`,
  rebuilt from the store on start); preview places a call only when the
  agent accepts the record offered to them;
- an answered person is bridged to a free agent; with none free within
  `connect_wait` after the end of their greeting, the safe-harbor message
  plays (it starts within 2 s of the greeting's end, 47 CFR
  64.1200(a)(7)(i)), the call ends and the abandon goes to the ledger;
- the contact's fate after a bridged call is the agent's wrap-up code (or
  the default when wrap-up times out), a callback, or DNC;
- callbacks are dialled when due, for their agent or any agent;
- UK campaigns: no new call within 72 h to a number that got an abandoned
  call unless an agent is reserved for it (Ofcom).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from carriers.sip.events import CallAnswered, CallEnded
from carriers.sip.outcome import CallResult
from carriers.sip.transport import CallEvent, CallHandle
from engine.compliance.rules import rule_context
from engine.errors import InvalidState, NotFound
from engine.store import DialCandidate
from engine.store.amdsampledb import FalsePositiveEstimate
from engine.voice.agent_flow import AgentAnalysisFlow, ConnectAtAnswer
from engine.voice.agents import (
    Agent,
    AgentCall,
    AgentPool,
    AgentState,
    Reservation,
    WrapupOptions,
)
from engine.voice.dialer import RESYNC_EVERY, RUNNING, CampaignRunner, LiveCall, utcnow
from engine.voice.flows import PlayPrompt
from engine.voice.pacing import (
    AgentSnapshot,
    DialMode,
    PacingConfig,
    PacingState,
    decide,
)
from engine.voice.pacing import AgentState as PacingAgentState
from engine.voice.pacing_stats import AbandonWindow, PacingStats
from engine.voice.queue_transfer import QueueTransfer
from engine.voice.telephony import MediaLeg

if TYPE_CHECKING:
    from engine.bus import EventBus
    from engine.campaign_config import CampaignConfig
    from engine.store import Store
    from engine.voice.telephony import Telephony

log = logging.getLogger("outdial.agent_dialer")

Pcm = NDArray[np.int16]
UK_REPEAT_S = 72 * 3600.0  # Ofcom: no repeat call within 72 h after an abandon
PACING_TICK = 0.1


@dataclass(slots=True)
class AgentLiveCall(LiveCall):
    """A call of an agent campaign: the agent reserved for it, and when its
    person was handed over (loop time)."""

    reserved: Agent | None = None
    agent_call: AgentCall | None = None
    placed_at: float = 0.0
    answered_loop: float | None = None
    greeting_end_loop: float | None = None
    waiting_since: float | None = None
    abandoned: bool = False
    bridged_loop: float | None = None
    callback_id: int | None = None
    in_ivr: bool = False  # handed to the campaign's IVR instead of an agent
    counted: bool = False  # its outcome is in the pacing statistics


class AgentCampaignRunner(CampaignRunner):
    """Runs one agent campaign (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        tel: Telephony,
        cfg: CampaignConfig,
        prompt: Pcm,
        machine_prompt: Pcm | None,
        safe_harbor: Pcm,
        pool: AgentPool,
    ) -> None:
        super().__init__(store, bus, tel, cfg, prompt, machine_prompt)
        self.safe_harbor = safe_harbor
        self.pool = pool
        self.stats = PacingStats(ring_timeout_s=cfg.ring_timeout)
        self._fp_sample: float | None = None  # the marked sample's rate, once big enough
        self.ledger = AbandonWindow(cfg.dialing.abandon_window, self._fp_rate(), start=time.time())
        self.waiting: list[AgentLiveCall] = []
        self.transfers: list[QueueTransfer] = []  # IVR callers holding for an agent
        self._offered: dict[int, Agent] = {}  # contact -> agent it is offered to
        self._pending_candidates: dict[int, DialCandidate] = {}  # offered records
        self._bridged_attempts: dict[int, int] = {}  # attempt -> the contact's attempt count
        self._auto_timers: dict[int, asyncio.TimerHandle] = {}  # preview auto-dial
        self.last_decision: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        pool.on_ready.append(self._agent_ready)
        pool.register_campaign(cfg.name, cfg.priority,
                               lambda: self.state == RUNNING and not self._halting)  # fmt: skip

    def _mine(self, agent: Agent) -> bool:
        """The agent's current call is one of this campaign's."""
        owner: object = agent.call.owner if agent.call is not None else None
        return owner is self or (isinstance(owner, QueueTransfer) and owner.queue is self)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- pacing

    @property
    def pacing_config(self) -> PacingConfig:
        d = self.cfg.dialing
        mode = DialMode(self.cfg.mode) if self.cfg.mode != "preview" else DialMode.PROGRESSIVE
        return PacingConfig(
            mode=mode, ratio=d.ratio, abandon_target=d.abandon_target, max_ratio=d.max_ratio,
            window_s=d.abandon_window,
        )  # fmt: skip

    def pacing_state(self, now: float) -> PacingState:
        loop_now = asyncio.get_running_loop().time()
        agents: list[AgentSnapshot] = []
        for a in self.pool.working(self.name):
            # A busy agent frees up for the campaign whose call they are on; a
            # ready one is counted by one campaign only (AgentPool.home).
            if a.state is AgentState.READY and a.reservation is None:
                if self.pool.home(a) == self.name:
                    agents.append(AgentSnapshot(PacingAgentState.READY, loop_now - a.since))
            elif a.state is AgentState.ON_CALL and self._mine(a):
                agents.append(AgentSnapshot(PacingAgentState.ON_CALL, loop_now - a.since))
            elif a.state is AgentState.WRAP_UP and self._mine(a):
                agents.append(AgentSnapshot(PacingAgentState.WRAP_UP, loop_now - a.since))
        ringing = tuple(
            loop_now - c.placed_at
            for c in self.calls.values()
            if isinstance(c, AgentLiveCall) and c.answered_loop is None and c.reserved is None
        )
        counts = self.ledger.counts(now)
        return PacingState(
            agents=tuple(agents), ringing=ringing, waiting=len(self.waiting) + len(self.transfers),
            stats=self.stats.snapshot(now), abandons=counts.abandons,
            live_answers=counts.live_answers, window_covered_s=counts.covered_s,
        )  # fmt: skip

    async def _load_ledger(self) -> None:
        """Rebuild the abandon window from the store (what earlier runs did counts)."""
        window = self.cfg.dialing.abandon_window
        since = utcnow() - timedelta(seconds=window)
        history = await self.store.abandon_window(self.name, since)
        marks = await self.store.amd_mark_counts(self.name)
        sample = FalsePositiveEstimate(marks["person"], marks["machine"], marks["unmarked"], None)
        self._fp_sample = float(sample.rate) if sample.source == "sample" else None
        abandoned = sorted(t.timestamp() for t in history["abandons"])
        lives = sorted(t.timestamp() for t in history["live_answers"])
        ledger = AbandonWindow(
            window, self._fp_rate(), start=min([time.time(), *lives, *abandoned])
        )
        # Every stored abandon was a live answer too (the store keeps them
        # apart: abandons in `abandons`, answers on the attempts).
        for at in lives:
            ledger.on_live_answer(at, abandoned=False)
        for at in abandoned:
            ledger.on_late_abandon(at)
        self.ledger = ledger

    # ------------------------------------------------------------------- loop

    async def _run(self) -> None:
        store = self.store
        loop = asyncio.get_running_loop()
        await store.sync_campaign_contacts(self.name)
        await self._load_ledger()
        next_sync = loop.time() + RESYNC_EVERY
        while self.state == RUNNING and not self._halting:
            try:
                if loop.time() >= next_sync:
                    await store.sync_campaign_contacts(self.name)
                    next_sync = loop.time() + RESYNC_EVERY
                await self._dial_callbacks()
                if self.cfg.mode == "preview":
                    await self._offer_previews()
                else:
                    await self._dial_paced()
                if await self._complete():
                    return
            except Exception:
                # A store error or a bug must not leave a "running" campaign
                # that dials nothing: log it and go on at the next tick.
                log.exception("dial loop of %s failed; retrying in 1 s", self.name)
                await asyncio.sleep(1.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=PACING_TICK)

    async def _complete(self) -> bool:
        busy = any(self._mine(a) for a in self.pool.agents.values())
        if self.calls or self._offered or busy:
            return False
        if await self._finished():
            await self.set_state("completed")
            return True
        return False

    def _room(self) -> int:
        cfg = self.cfg  # the trunk's free lines, less what higher-priority campaigns want
        return min(
            cfg.lines - len(self.calls), self.tel.capacity_for(cfg.trunk, self.name, cfg.priority)
        )

    async def _dial_paced(self) -> None:
        decision = decide(self.pacing_config, self.pacing_state(time.time()), time.time())
        self.last_decision = {
            "dial": decision.dial, "level": round(decision.level, 3), "reason": decision.reason,
            "risk": round(decision.risk, 5), "budget_used": round(decision.budget_used, 4),
        }  # fmt: skip
        want = min(decision.dial, self._room())
        if want <= 0:
            return
        due = await self.store.due_contacts(self.name, utcnow(), want, self._busy_contacts())
        for candidate in due:
            if self.state != RUNNING or self._halting:
                break
            await self._dial(candidate)

    def _busy_contacts(self) -> set[int]:
        return (
            set(self._reserved)
            | {c.contact_id for c in self.calls.values()}
            | set(self._offered)
            | {a.call.contact_id for a in self.pool.agents.values() if a.call and self._mine(a)}
        )

    # ---------------------------------------------------------------- preview

    def _prune_offers(self) -> None:
        """Offers whose agent lost the reservation (logout, leg dropped) go back."""
        for contact, agent in list(self._offered.items()):
            res = agent.reservation
            if res is None or res.kind != "preview" or res.contact_id != contact:
                del self._offered[contact]
                self._pending_candidates.pop(contact, None)

    async def _offer_previews(self) -> None:
        self._prune_offers()
        free = self.pool.free(self.name)
        if not free or self._room() <= 0:
            return
        due = await self.store.due_contacts(
            self.name, utcnow(), max(20, 2 * len(free)), self._busy_contacts()
        )
        owner_key = self.cfg.dialing.owner_column
        screened: set[int] = set()
        for agent in free:
            for candidate in due:
                owner = (candidate.attributes.get(owner_key) or "").strip()
                if candidate.contact_id in self._offered or owner not in ("", agent.id):
                    continue
                if candidate.contact_id not in screened:
                    screened.add(candidate.contact_id)
                    if not await self._usable_numbers(candidate, agent):
                        continue  # on the DNC list: skipped with its reason
                if agent.reservation is None and agent in self.pool.free(self.name):
                    self._offer(agent, candidate)
                break

    def _offer(self, agent: Agent, candidate: DialCandidate) -> None:
        detail = {"numbers": list(candidate.phones), "attributes": candidate.attributes,
                  "attempts": candidate.attempts}  # fmt: skip
        agent.reservation = Reservation(self.name, "preview", candidate.contact_id, detail)
        self._offered[candidate.contact_id] = agent
        self.bus.publish(
            "agent.preview", agent=agent.id, campaign=self.name, contact=candidate.contact_id,
            **detail,
        )  # fmt: skip
        auto = self.cfg.dialing.preview_auto_dial
        if auto is not None:
            loop = asyncio.get_running_loop()
            contact = candidate.contact_id

            def auto_accept() -> None:
                res = agent.reservation
                offered = res is not None and res.kind == "preview" and res.contact_id == contact
                if offered and contact in self._pending_candidates:
                    self._spawn(self.preview_accept(agent, candidate))

            self._auto_timers[contact] = loop.call_later(auto, auto_accept)
        self._pending_candidates[candidate.contact_id] = candidate

    def offer_of(self, agent: Agent) -> DialCandidate:
        res = agent.reservation
        if res is None or res.kind != "preview" or res.campaign != self.name:
            raise InvalidState(f"agent {agent.id!r} has no preview record in {self.name!r}")
        candidate = self._pending_candidates.get(res.contact_id)
        if candidate is None:
            raise InvalidState(f"agent {agent.id!r}: the record is being dialled already")
        return candidate

    async def preview_accept(self, agent: Agent, candidate: DialCandidate) -> dict[str, Any]:
        contact = candidate.contact_id
        if self._pending_candidates.pop(contact, None) is None:
            raise InvalidState(f"agent {agent.id!r}: the record is being dialled already")
        timer = self._auto_timers.pop(contact, None)
        if timer is not None:
            timer.cancel()
        if agent.reservation is not None:
            agent.reservation.kind = "dialling"  # no longer an offer to accept or skip
        attempt = None
        try:
            attempt = await self._dial(candidate, agent)
        finally:
            self._offered.pop(contact, None)
            if attempt is None:
                self.pool.release(agent)
                self._wake.set()
        if attempt is None:
            return {"agent": agent.id, "dialled": False, "contact": contact}
        return {"agent": agent.id, "dialled": True, "attempt": attempt,
                "contact": candidate.contact_id}  # fmt: skip

    def preview_skip(self, agent: Agent, candidate: DialCandidate) -> dict[str, Any]:
        self._pending_candidates.pop(candidate.contact_id, None)
        self._offered.pop(candidate.contact_id, None)
        timer = self._auto_timers.pop(candidate.contact_id, None)
        if timer is not None:
            timer.cancel()
        self.pool.release(agent)
        when = utcnow() + timedelta(seconds=self.cfg.dialing.skip_delay)
        self.store.set_contact_state(self.name, candidate.contact_id, state="retry",
                                     next_attempt_at=when)  # fmt: skip
        self.store.record_agent_state(agent.id, "preview_skip", utcnow(), campaign=self.name,
                                      reason=f"contact {candidate.contact_id}")  # fmt: skip
        self.bus.publish("agent.preview_skipped", agent=agent.id, campaign=self.name,
                         contact=candidate.contact_id, again_at=when.isoformat())  # fmt: skip
        self._wake.set()
        return {"agent": agent.id, "skipped": candidate.contact_id, "again_at": when}

    # -------------------------------------------------------------- callbacks

    async def _dial_callbacks(self) -> None:
        if self._room() <= 0:
            return
        due = await self.store.due_callbacks(self.name, utcnow(), 20)
        for cb in due:
            if int(cb["contact_id"]) in self._busy_contacts():
                continue
            if self._callback_agent(cb.get("agent")) is None:
                continue  # their agent is busy or away: it waits for them
            candidate = await self._callback_candidate(cb)
            if not await self._usable_numbers(candidate, "callback"):
                self.store.set_callback(int(cb["id"]), state="cancelled")  # DNC since
                continue
            agent = self._callback_agent(cb.get("agent"))  # again: no await from here on
            if agent is None:
                continue
            agent.reservation = Reservation(
                self.name, "callback", candidate.contact_id, {"callback": cb["id"]}
            )
            self.store.set_callback(int(cb["id"]), state="dialling")
            attempt = None
            try:
                attempt = await self._dial(candidate, agent)
            finally:
                if attempt is None:
                    self.pool.release(agent)
                    self.store.set_callback(int(cb["id"]), state="pending")
            if attempt is None:
                continue
            self.store.set_callback(int(cb["id"]), state="dialled", attempt_id=attempt)
            self.bus.publish("callback.dialled", campaign=self.name, callback=cb["id"],
                             agent=agent.id, attempt=attempt)  # fmt: skip

    def _callback_agent(self, agent_id: str | None) -> Agent | None:
        if agent_id is None:
            return self.pool.claim(self.name)
        try:
            agent = self.pool.get(agent_id)
        except NotFound:
            return self.pool.claim(self.name)  # an agent removed from the config
        free = agent.state is AgentState.READY and agent.reservation is None
        return agent if free and agent.call is None else None

    async def _callback_candidate(self, cb: dict[str, Any]) -> DialCandidate:
        contact = await self.store.contact(int(cb["contact_id"]))
        attempts = next(
            (int(r["attempts"]) for r in contact["campaigns"] if r["campaign"] == self.name), 0
        )
        return DialCandidate(
            contact_id=int(cb["contact_id"]), phones=(str(cb["number"]),), attempts=attempts,
            attributes=contact["attributes"], priority=int(contact["priority"]),
        )  # fmt: skip

    # ---------------------------------------------------------------- dialling

    async def _usable_numbers(self, candidate: DialCandidate, reserved: Any) -> list[str]:
        usable = await super()._usable_numbers(candidate, reserved)
        if not usable or self.cfg.dialing.jurisdiction != "uk" or reserved is not None:
            return usable
        since = utcnow() - timedelta(seconds=UK_REPEAT_S)
        recent = await self.store.abandoned_since(usable, since)
        allowed = [n for n in usable if n not in recent]
        if not allowed:
            when = min(recent.values()) + timedelta(seconds=UK_REPEAT_S)
            self.store.set_contact_state(self.name, candidate.contact_id, state="retry",
                                         next_attempt_at=when)  # fmt: skip
            self.bus.publish(
                "contact.deferred", campaign=self.name, contact=candidate.contact_id,
                until=when.isoformat(),
                reason="Ofcom: abandoned call in the last 72 h and no agent reserved",
            )  # fmt: skip
        return allowed

    def _make_live(
        self, cand: DialCandidate, number: str, attempt_id: int, leg: MediaLeg, reserved: Any
    ) -> LiveCall:
        live = AgentLiveCall(attempt_id, cand.contact_id, cand.attempts, number, leg)
        live.reserved = reserved if isinstance(reserved, Agent) else None
        live.placed_at = asyncio.get_running_loop().time()
        self.stats.on_dial(time.time())
        if live.reserved is not None:
            self.store.update_attempt(attempt_id, agent=live.reserved.id)
            self.bus.publish(
                "agent.call_coming", agent=live.reserved.id, campaign=self.name,
                attempt=attempt_id, contact=cand.contact_id, number=number,
                attributes=cand.attributes,
            )  # fmt: skip
        return live

    def _on_event(self, live: LiveCall, event: CallEvent) -> None:
        if not isinstance(event, CallAnswered) or not isinstance(live, AgentLiveCall):
            super()._on_event(live, event)
            return
        if event.media is not None:
            live.leg.apply(event.media)
        live.times["answered"] = utcnow()
        live.answered_loop = asyncio.get_running_loop().time()
        self.store.update_attempt(live.attempt_id, answered_at=live.times["answered"])
        live.leg.tap = self.samples.at_answer(live.attempt_id, self.cfg.amd)
        loop = asyncio.get_running_loop()
        handle = live.handle

        def hang_up() -> None:
            if handle is not None:
                loop.call_soon(self.tel.sip.hangup, handle.call_id, "call flow ended")

        def on_person(greeting_end_s: float, now_s: float) -> None:
            machine = live.analysis.result is CallResult.MACHINE
            if live.ivr is not None and not (machine and self.cfg.amd.on_machine == "agent"):
                self._ivr_answered(live, greeting_end_s, now_s)
            else:
                self._person_answered(live, greeting_end_s, now_s)

        if self.cfg.amd.enabled:
            live.leg.flow = AgentAnalysisFlow(
                self.cfg.amd, self.machine_prompt, hang_up, live.analysis, on_person
            ).on_frame
        else:
            live.leg.flow = ConnectAtAnswer(on_person).on_frame
        self.bus.publish("call.answered", campaign=self.name, attempt=live.attempt_id,
                         number=live.number)  # fmt: skip

    # ------------------------------------------------------ person to an agent

    def _person_answered(self, live: AgentLiveCall, greeting_end_s: float, now_s: float) -> None:
        """On the media clock: a person (or a machine sent to agents) answered."""
        loop_now = asyncio.get_running_loop().time()
        live.greeting_end_loop = loop_now - max(0.0, now_s - greeting_end_s)
        self.store.update_attempt(live.attempt_id, greeting_end_ms=round(greeting_end_s * 1000))
        ring_s = live.answered_loop - live.placed_at if live.answered_loop else None
        self.stats.on_outcome(time.time(), human=True, ring_s=ring_s)  # it needs an agent
        agent = live.reserved
        if agent is not None and (agent.state is not AgentState.READY or agent.call is not None):
            agent = None
        if agent is None:
            agent = self.pool.claim(self.name)
        if agent is not None:
            self._connect(live, agent, loop_now)
            return
        live.waiting_since = loop_now
        self.waiting.append(live)
        wait = max(0.0, self.cfg.dialing.connect_wait - (loop_now - live.greeting_end_loop))
        asyncio.get_running_loop().call_later(wait, self._give_up_waiting, live)

    def _agent_ready(self) -> None:
        """An agent became ready: the longest-waiting person gets them; the
        campaign's own callers (the abandon rule's clock runs for them)
        before IVR callers holding in its queue."""
        self._wake.set()
        while self.waiting or self.transfers:
            agent = self.pool.claim(self.name)
            if agent is None:
                return
            if self.waiting:
                live = self.waiting.pop(0)
                self._connect(live, agent, asyncio.get_running_loop().time())
            else:
                self.transfers.pop(0).connect(agent)

    # ------------------------------------------------ IVR callers to agents

    def _ivr_answered(self, live: AgentLiveCall, greeting_end_s: float, now_s: float) -> None:
        """The person (after call analysis) goes to the campaign's IVR; its
        `transfer: {queue: ...}` step brings them to agents."""
        assert live.ivr is not None
        loop = asyncio.get_running_loop()
        live.in_ivr = True
        live.greeting_end_loop = loop.time() - max(0.0, now_s - greeting_end_s)
        handle = live.handle

        def end(reason: str) -> None:
            if handle is not None:
                loop.call_soon(self.tel.sip.hangup, handle.call_id, reason)

        flow = live.ivr.flow(live.leg, end, partial(self._ivr_action, live))
        live.leg.flow = flow.on_frame

    def take_transfer(self, transfer: QueueTransfer) -> None:
        """An IVR caller asks for this campaign's agents (its own or another
        campaign's): a free agent now, else hold for `dialing.queue_wait`."""
        source = transfer.live
        if isinstance(source, AgentLiveCall) and transfer.source is self and not source.counted:
            source.counted = True  # a caller of ours needs one of our agents
            ring = (source.answered_loop or source.placed_at) - source.placed_at
            self.stats.on_outcome(time.time(), human=True, ring_s=ring)
        agent = None if self.waiting else self.pool.claim(self.name)
        if agent is not None and transfer.connect(agent):
            return
        if transfer.gone:
            return
        if not self.pool.working(self.name):
            transfer.fail(f"no agent of {self.name} logged in")
            return
        self.transfers.append(transfer)
        transfer.hold(self.cfg.dialing.queue_wait)

    def drop_transfer(self, transfer: QueueTransfer) -> None:
        if transfer in self.transfers:
            self.transfers.remove(transfer)

    def count_bridged(self, attempt_id: int, attempts: int) -> None:
        """A call of this campaign an agent spoke on: its wrap-up counts it."""
        self._bridged_attempts[attempt_id] = attempts

    def _connect(self, live: AgentLiveCall, agent: Agent, loop_now: float) -> None:
        if live in self.waiting:
            self.waiting.remove(live)
        call = AgentCall(self, live.attempt_id, live.contact_id, live.number, live.leg)
        live.agent_call = call
        self.pool.bridge(agent, call)
        live.bridged_loop = loop_now
        greeting_end = live.greeting_end_loop if live.greeting_end_loop is not None else loop_now
        # The agent hears the customer from the next 20 ms frame on.
        delay_ms = round((loop_now - greeting_end) * 1000) + 20
        live.times["bridged"] = utcnow()
        self.store.update_attempt(
            live.attempt_id, agent=agent.id, bridged_at=live.times["bridged"],
            answer_to_agent_ms=delay_ms,
        )  # fmt: skip
        if live.analysis.result is not CallResult.MACHINE:
            self.ledger.on_live_answer(time.time(), abandoned=False)
        self.bus.publish(
            "agent.bridged", agent=agent.id, campaign=self.name, attempt=live.attempt_id,
            contact=live.contact_id, number=live.number, answer_to_agent_ms=delay_ms,
        )  # fmt: skip

    def _give_up_waiting(self, live: AgentLiveCall) -> None:
        if live not in self.waiting:
            return
        self.waiting.remove(live)
        self._abandon(live, "no agent free within connect_wait after the greeting")

    def _abandon(self, live: AgentLiveCall, reason: str, counted_live: bool = False) -> None:
        """Play the safe-harbor message, then hang up; the abandon is recorded.
        `counted_live`: the live answer is in the ledger already (it was
        bridged, then the agent's leg dropped). A machine sent to agents
        (`on_machine: agent`) hears the message too but is no abandon: the
        rule counts calls answered by a person."""
        live.abandoned = True
        machine = live.analysis.result is CallResult.MACHINE
        if not machine:
            live.analysis.result = CallResult.ABANDONED
        loop = asyncio.get_running_loop()
        handle = live.handle

        def hang_up() -> None:
            if handle is not None:
                loop.call_soon(self.tel.sip.hangup, handle.call_id, "safe-harbor message played")

        live.leg.flow = PlayPrompt(self.safe_harbor, hang_up).on_frame
        now = utcnow()
        answered = live.times.get("answered", now)
        greeting_end = now - timedelta(
            seconds=loop.time() - (live.greeting_end_loop or loop.time())
        )
        started_ms = round((now - answered).total_seconds() * 1000) + 20
        live.analysis.message_started_ms = started_ms
        self.store.update_attempt(live.attempt_id, message_started_ms=started_ms)
        if machine:
            return
        if counted_live:
            self.ledger.on_late_abandon(time.time())
        else:
            self.ledger.on_live_answer(time.time(), abandoned=True)
        self._spawn(
            self._ledger_write(live, answered, greeting_end, now + timedelta(milliseconds=20),
                               reason)
        )  # fmt: skip

    async def _ledger_write(
        self, live: AgentLiveCall, answered: datetime, greeting_end: datetime,
        started: datetime | None, reason: str,
    ) -> None:  # fmt: skip
        abandon_id = await self.store.record_abandon(
            campaign=self.name, attempt_id=live.attempt_id, contact_id=live.contact_id,
            number=live.number, answered_at=answered, greeting_end_at=greeting_end,
            message_started_at=started, reason=reason, at=utcnow(),
        )  # fmt: skip
        self.bus.publish(
            "call.abandoned", campaign=self.name, attempt=live.attempt_id, abandon=abandon_id,
            number=live.number, reason=reason,
            message_after_greeting_ms=None if started is None
            else round((started - greeting_end).total_seconds() * 1000),
        )  # fmt: skip

    # ----------------------------------------------------------- CallOwner API

    def agent_left(self, agent: Agent, call: AgentCall, why: str) -> None:
        live = self.calls.get(call.attempt_id)
        if isinstance(live, AgentLiveCall) and not call.ended:
            if call.bridge is not None:
                call.bridge.unbridge()
            live.agent_call = None  # the attempt ends as abandoned, with its retry rule
            self._abandon(live, f"agent {agent.id}: {why}", counted_live=True)
            if call.dnc or call.callback_at is not None:
                self._spawn(self._apply_noted(agent, call))

    async def _apply_noted(self, agent: Agent, call: AgentCall) -> None:
        """What the agent noted during a call their leg dropped from: the DNC
        entry and the callback still count."""
        if call.dnc:
            await self.store.dnc_add(call.number, list=self.cfg.optout_list,
                                     source=f"agent:{agent.id}", campaign=self.name)  # fmt: skip
        elif call.callback_at is not None:
            await self.store.add_callback(
                campaign=self.name, contact_id=call.contact_id, number=call.number,
                agent=agent.id if call.callback_mine else None, due_at=call.callback_at,
                state="pending", created_by=agent.id, attempt_id=None, created_at=utcnow(),
            )  # fmt: skip
            await self.store.flush()
            self.store.set_contact_state(self.name, call.contact_id, state="callback")

    def hangup_customer(self, call: AgentCall) -> None:
        live = self.calls.get(call.attempt_id)
        if live is not None and live.handle is not None:
            self.tel.sip.hangup(live.handle.call_id, "agent hung up")

    async def wrapup(
        self, agent: Agent, call: AgentCall, code: str | None, options: WrapupOptions
    ) -> dict[str, Any]:
        code, rule = self.cfg.dialing.wrapup(code, self.name)
        now = utcnow()
        done: dict[str, Any] = {"campaign": self.name, "attempt": call.attempt_id,
                                "code": code, "timed_out": options.timed_out}  # fmt: skip
        if options.dnc:
            await self.store.dnc_add(call.number, list=self.cfg.optout_list,
                                     source=f"agent:{agent.id}", campaign=self.name)  # fmt: skip
            done["dnc"] = call.number
        state, when = self._after_wrapup(call, rule, options, now)
        state, when = await self._rules_after_wrapup(call, code, state, when, now)
        if options.callback_at is not None and not options.dnc:
            cb = await self.store.add_callback(
                campaign=self.name, contact_id=call.contact_id, number=call.number,
                agent=agent.id if options.callback_mine else None, due_at=options.callback_at,
                state="pending", created_by=agent.id, attempt_id=None, created_at=now,
            )  # fmt: skip
            done["callback"] = {"id": cb, "at": options.callback_at.isoformat(),
                                "agent": agent.id if options.callback_mine else None}  # fmt: skip
            state, when = "callback", None
        self.store.update_attempt(call.attempt_id, wrapup_code=code)
        self.store.set_contact_state(
            self.name, call.contact_id, state=state, next_attempt_at=when,
            last_result=code or CallResult.ANSWERED.value,  # counted when the call ended
        )  # fmt: skip
        wrap_s = asyncio.get_running_loop().time() - agent.since
        self.stats.on_wrap_end(wrap_s)
        done["contact_state"] = state
        self.bus.publish("agent.wrapup", agent=agent.id, **done)
        await self.store.flush()
        self._wake.set()
        return done

    def _after_wrapup(
        self, call: AgentCall, rule: Any, options: WrapupOptions, now: datetime
    ) -> tuple[str, datetime | None]:
        # A DNC entry is per number: the contact follows its code, and the
        # dialler skips the number (a contact with no other number is skipped
        # with the do-not-contact reason when it is next due).
        if rule is None or rule.final or rule.retry is None:
            return "done", None
        live_attempts = self._attempts_of(call)
        if live_attempts >= self.cfg.max_attempts:
            return "done", None
        return "retry", now + timedelta(seconds=rule.retry)

    async def _rules_after_wrapup(
        self, call: AgentCall, code: str | None, state: str, when: datetime | None,
        now: datetime,
    ) -> tuple[str, datetime | None]:  # fmt: skip
        """The campaign's after_wrapup rules on the agent's code (and the call's
        counts, this call included): a retry time, uncallable, a move to
        another campaign, a DNC list."""
        rules = self.cfg.rules
        if not any(r.when == "after_wrapup" for r in rules.rules):
            return state, when
        contact = await self.store.contact(call.contact_id)
        history = await self.store.attempt_history(call.contact_id)
        attributes = dict(contact.get("attributes") or {})
        cand = DialCandidate(contact_id=call.contact_id, phones=(call.number,),
                             attempts=len(history), attributes=attributes, priority=0)  # fmt: skip
        ctx = rule_context(self._local_now(cand, call.number), attributes, history, call.number)
        ctx.result, ctx.wrapup_code = CallResult.ANSWERED.value, code
        decision = rules.after_wrapup(ctx)
        if decision.dnc_list is not None:
            await self.store.dnc_add(call.number, list=decision.dnc_list, source="rule",
                                     campaign=self.name)  # fmt: skip
        if decision.uncallable is not None:
            why = f"campaign rule: {decision.uncallable}"
            self.store.set_contact_state(self.name, call.contact_id, state="failed",
                                         skip_reason=why)  # fmt: skip
            return "failed", None
        if decision.move_to is not None:
            self._move_to(call.contact_id, decision.move_to)
            return "done", None
        if decision.retry_in_s is not None:
            if len(history) >= self.cfg.max_attempts:
                return "done", None
            return "retry", now + timedelta(seconds=decision.retry_in_s)
        return state, when

    def _attempts_of(self, call: AgentCall) -> int:
        return self._bridged_attempts.get(call.attempt_id, 0)

    # ------------------------------------------------------------- call ends

    async def _follow(self, live: LiveCall, handle: CallHandle) -> None:
        ended = await handle.ended
        if isinstance(live, AgentLiveCall):
            self._agent_call_ended(live, ended)
        await super()._follow(live, handle)

    def _agent_call_ended(self, live: AgentLiveCall, ended: CallEnded) -> None:
        if live in self.waiting:
            self.waiting.remove(live)  # hung up while waiting for an agent
            live.abandoned = True
            if live.analysis.result is not CallResult.MACHINE:
                live.analysis.result = CallResult.ABANDONED
                self.ledger.on_live_answer(time.time(), abandoned=True)
                now = utcnow()
                greeting_end = now - timedelta(
                    seconds=asyncio.get_running_loop().time() - (live.greeting_end_loop or 0.0)
                )
                self._spawn(self._ledger_write(
                    live, live.times.get("answered", now), greeting_end, None,
                    "hung up while waiting for an agent",
                ))  # fmt: skip
        if live.in_ivr:
            answered = live.answered_loop
            if not live.counted and answered is not None:  # the IVR kept them: no agent
                self.stats.on_outcome(time.time(), human=False, ring_s=answered - live.placed_at)
        elif live.answered_loop is None:
            ring = None if ended.outcome.result is CallResult.NO_ANSWER else (
                asyncio.get_running_loop().time() - live.placed_at
            )  # fmt: skip
            self.stats.on_outcome(time.time(), human=False, ring_s=ring)
        elif live.greeting_end_loop is None:
            ring = live.answered_loop - live.placed_at
            self.stats.on_outcome(time.time(), human=False, ring_s=ring)  # machine, fax, SIT
            if live.analysis.result is CallResult.MACHINE:
                self.ledger.on_machine_verdict(time.time())
        held = live.reserved
        res = held.reservation if held is not None else None
        if held is not None and res is not None and res.campaign == self.name \
                and res.contact_id == live.contact_id:  # fmt: skip
            self.pool.release(held)  # the reserved agent is free again
            self._wake.set()
        call = live.agent_call
        if call is not None:
            if live.bridged_loop is not None:
                self.stats.on_talk_end(asyncio.get_running_loop().time() - live.bridged_loop)
            self._bridged_attempts[live.attempt_id] = live.attempts_before + 1
            agent = next((a for a in self.pool.agents.values() if a.call is call), None)
            if agent is not None:
                self.pool.customer_ended(agent, call, self.cfg.dialing.wrapup_timeout)

    def _fp_rate(self) -> float:
        """Ofcom's estimate of AMD false positives counts only in UK campaigns:
        the operator-marked sample's rate (as loaded at the start) once it has
        enough marks, else the configured one."""
        d = self.cfg.dialing
        if d.jurisdiction != "uk":
            return 0.0
        return self._fp_sample if self._fp_sample is not None else d.amd_false_positive_rate

    def _record(self, live: LiveCall, ended: CallEnded) -> None:
        if not isinstance(live, AgentLiveCall) or live.agent_call is None:
            super()._record(live, ended)
            return
        # A bridged call: the attempt ends now. The contact is done as
        # answered until the agent's wrap-up code says otherwise
        # (AgentPool.wrapup -> self.wrapup), so a crash during the wrap-up
        # never calls back the person just spoken to.
        now = utcnow()
        self.store.set_contact_state(self.name, live.contact_id, state="done",
                                     last_result=CallResult.ANSWERED.value,
                                     attempts_delta=1)  # fmt: skip
        answered = live.times.get("answered")
        self.store.update_attempt(
            live.attempt_id, **live.analysis.fields(), ended_at=now,
            result=CallResult.ANSWERED.value, sip_status=ended.outcome.sip_status,
            reason=ended.outcome.reason, q850_cause=ended.outcome.q850_cause,
            ended_by=ended.ended_by,
            duration_ms=int((now - answered).total_seconds() * 1000) if answered else None,
        )  # fmt: skip
        self.bus.publish("call.ended", campaign=self.name, attempt=live.attempt_id,
                         number=live.number, result="answered", next="wrap_up",
                         agent=self._agent_id(live))  # fmt: skip

    def _agent_id(self, live: AgentLiveCall) -> str | None:
        call = live.agent_call
        agent = next((a for a in self.pool.agents.values() if a.call is call), None)
        return agent.id if agent is not None else None

    # -------------------------------------------------------------- reporting

    async def describe(self) -> dict[str, Any]:
        info = await super().describe()
        counts = self.ledger.counts(time.time())
        info.update(
            mode=self.cfg.mode, agents=self.pool.counts(self.name), waiting=len(self.waiting),
            holding=len(self.transfers),
            abandon_rate=round(counts.rate, 5), abandon_target=self.cfg.dialing.abandon_target,
            abandons_in_window=counts.abandons, live_answers_in_window=counts.live_answers,
            pacing=self.last_decision,
        )  # fmt: skip
        return info
