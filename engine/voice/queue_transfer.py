"""An IVR caller sent to an agent queue (`transfer: {queue: CAMPAIGN}`).

The queue is an agent campaign's: its own (`queue: this`, in an agent-mode
campaign with an IVR) or another's (an agentless IVR campaign handing
callers to a team). The caller holds, hearing what the flow played before
the transfer step, until one of the queue campaign's ready agents is free
(then the two are bridged and the IVR session ends `transferred`) or for the
queue campaign's `dialing.queue_wait` (then the step's `on_fail` plays).

Callers the queue campaign dialled itself and who wait for an agent within
`connect_wait` of their greeting come first: they are the ones the abandon
rule counts. A transferred caller is not in the abandon window: their call
was answered by the IVR's own message, and they chose to wait.

`QueueTransfer` is the agent's `CallOwner` for the call: the wrap-up code
goes to the contact in the campaign that dialled it. An agent campaign
applies it as for its own calls (codes, callbacks, rules); an agentless one
uses the queue campaign's codes: a retry code is a redial after its delay
(within `max_attempts`), a callback a redial at that time, DNC the number on
the dialling campaign's opt-out list.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from carriers.sip.outcome import CallResult
from engine.voice.agents import Agent, AgentCall, WrapupOptions

if TYPE_CHECKING:
    from engine.voice.agent_dialer import AgentCampaignRunner
    from engine.voice.dialer import CampaignRunner, LiveCall
    from engine.voice.ivr_calls import IvrCall

__all__ = ["QueueTransfer"]

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class QueueTransfer:
    """One caller's transfer from `source`'s IVR to `queue`'s agents."""

    def __init__(
        self, source: CampaignRunner, live: LiveCall, call: IvrCall, queue: AgentCampaignRunner
    ) -> None:
        self.source, self.live, self.call, self.queue = source, live, call, queue
        self.loop = asyncio.get_running_loop()
        self.asked_at = self.loop.time()
        self.result: str | None = None
        self.agent: Agent | None = None
        self.agent_call: AgentCall | None = None
        self.bridged_at: float | None = None
        self.holding = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return self.queue.name

    # ------------------------------------------------------------ the queue side

    def hold(self, wait: float) -> None:
        """No agent free yet: hold for at most `wait` seconds."""
        self.holding = True
        self._timer = self.loop.call_later(wait, self._timed_out, wait)

    def _timed_out(self, wait: float) -> None:
        if not self.holding:
            return
        self.holding = False
        self.queue.drop_transfer(self)
        self.result = f"no agent of {self.queue.name} free within {wait:g}s"
        self._fail()

    def fail(self, why: str) -> None:
        self.result = why
        self._fail()

    def _fail(self) -> None:
        flow = self.call.flow_obj
        if flow is not None:
            flow.transfer_result(False)  # the step's on_fail plays
        self.source.bus.publish("ivr.transfer_failed", campaign=self.source.name,
                                queue=self.queue.name, attempt=self.live.attempt_id,
                                reason=self.result)  # fmt: skip

    @property
    def gone(self) -> bool:
        flow = self.call.flow_obj
        return flow is None or flow.ended or self.live.leg.endpoint.closed

    def connect(self, agent: Agent) -> bool:
        """Bridge the caller to `agent` (free, of the queue campaign); False
        when the caller has gone meanwhile (the agent stays free)."""
        self.holding = False
        if self._timer is not None:
            self._timer.cancel()
        flow = self.call.flow_obj
        if flow is None or self.gone:
            self.result = self.result or "caller gone before an agent was free"
            return False
        live = self.live
        flow.transfer_result(True)  # the session ends "transferred"
        call = AgentCall(self, live.attempt_id, live.contact_id, live.number, live.leg)
        self.agent, self.agent_call = agent, call
        self.queue.pool.bridge(agent, call)
        self.bridged_at = self.loop.time()
        held_ms = round((self.bridged_at - self.asked_at) * 1000)
        self.result = f"agent {agent.id} ({self.queue.name}) after {held_ms} ms"
        live.times["bridged"] = _utcnow()
        self.source.store.update_attempt(live.attempt_id, agent=agent.id,
                                         bridged_at=live.times["bridged"])  # fmt: skip
        self.source.bus.publish(
            "agent.bridged", agent=agent.id, campaign=self.source.name, queue=self.queue.name,
            attempt=live.attempt_id, contact=live.contact_id, number=live.number,
            transferred=True, held_ms=held_ms,
        )  # fmt: skip
        return True

    # ------------------------------------------------------ the caller's side

    def customer_ended(self, _tel: object) -> None:
        """The caller's call ended (the dialling campaign's call follower)."""
        if self.holding:
            self.holding = False
            if self._timer is not None:
                self._timer.cancel()
            self.queue.drop_transfer(self)
            self.result = "caller hung up while holding for an agent"
            return
        agent, call = self.agent, self.agent_call
        if agent is None or call is None or call.ended:
            return
        if self.bridged_at is not None:
            self.queue.stats.on_talk_end(self.loop.time() - self.bridged_at)
        owner = self._agent_owner()
        if owner is not None:  # its wrap-up counts this call among the contact's attempts
            owner.count_bridged(call.attempt_id, self.live.attempts_before + 1)
        self.queue.pool.customer_ended(agent, call, self.queue.cfg.dialing.wrapup_timeout)

    def _agent_owner(self) -> AgentCampaignRunner | None:
        from engine.voice.agent_dialer import AgentCampaignRunner

        return self.source if isinstance(self.source, AgentCampaignRunner) else None

    # ------------------------------------------------------------ CallOwner API

    def agent_left(self, agent: Agent, call: AgentCall, why: str) -> None:
        if call.bridge is not None:
            call.bridge.unbridge()
        self.result = f"{self.result}; agent left ({why})"
        handle = self.live.handle
        if handle is not None:
            self.source.tel.sip.hangup(handle.call_id, f"agent {agent.id}: {why}")

    def hangup_customer(self, call: AgentCall) -> None:
        handle = self.live.handle
        if handle is not None:
            self.source.tel.sip.hangup(handle.call_id, "agent hung up")

    async def wrapup(
        self, agent: Agent, call: AgentCall, code: str | None, options: WrapupOptions
    ) -> dict[str, Any]:
        owner = self._agent_owner()
        if owner is not None:
            return await owner.wrapup(agent, call, code, options)
        return await self._agentless_wrapup(agent, call, code, options)

    async def _agentless_wrapup(
        self, agent: Agent, call: AgentCall, code: str | None, options: WrapupOptions
    ) -> dict[str, Any]:
        """The contact belongs to an agentless campaign: the queue campaign's
        codes decide its next step there (see the module doc)."""
        code, rule = self.queue.cfg.dialing.wrapup(code, self.queue.name)
        source, store = self.source, self.source.store
        now = _utcnow()
        done: dict[str, Any] = {"campaign": source.name, "queue": self.queue.name,
                                "attempt": call.attempt_id, "code": code,
                                "timed_out": options.timed_out}  # fmt: skip
        attempts = self.live.attempts_before + 1
        state, when = "done", None
        if options.dnc:
            await store.dnc_add(call.number, list=source.cfg.optout_list,
                                source=f"agent:{agent.id}", campaign=source.name)  # fmt: skip
            done["dnc"] = call.number
        elif options.callback_at is not None:
            state, when = "retry", options.callback_at
            done["callback"] = {"at": options.callback_at.isoformat(), "agent": None}
        elif rule is not None and not rule.final and rule.retry is not None:
            if attempts < source.cfg.max_attempts:
                state, when = "retry", now + timedelta(seconds=rule.retry)
        store.update_attempt(call.attempt_id, wrapup_code=code)
        store.set_contact_state(source.name, call.contact_id, state=state, next_attempt_at=when,
                                last_result=code or CallResult.ANSWERED.value)  # fmt: skip
        self.queue.stats.on_wrap_end(self.loop.time() - agent.since)
        done["contact_state"] = state
        source.bus.publish("agent.wrapup", agent=agent.id, **done)
        await store.flush()
        source.wake()
        return done
