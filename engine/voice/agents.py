"""Agents: their persistent legs, their states, and who takes the next call.

An agent logs in (`AgentPool.login`): outdial calls their phone (the contact
it registered, or a configured static URI) and keeps that call up for the
whole session; it is the agent's leg, carrying silence between customer
calls and kept alive by RFC 4028 session timers. Customer calls are
bridged onto it (`engine.voice.bridge`). If the leg drops, the agent is
logged out and a customer call on it is handled as an abandon.

States (`AgentState`): logged out, ready, on call, wrap-up, not ready (with
a reason). Every transition is stored with its time (`agent_states`). A
ready agent may be *reserved* (a preview record offered, a callback being
dialled for them): still ready, but no other call is given to them.

Campaign policy (what a wrap-up code does to the contact, callbacks, DNC)
stays with the campaign runner: an agent's current call carries a
`CallOwner` the pool reports to.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from carriers.sip.events import CallAnswered, CallEnded
from carriers.sip.message import SipURI
from carriers.sip.parser import parse_uri
from carriers.sip.registrar import (
    ContactPolicy,
    Registered,
    Registrar,
    RegistrationRejected,
    Unregistered,
)
from carriers.sip.transaction import Target
from carriers.sip.transport import CallEvent, CallHandle
from engine.bus import EventBus
from engine.config import AgentConfig, DaemonConfig, RegistrarConfig
from engine.errors import BadRequest, Conflict, InvalidState, NotFound
from engine.store import Store
from engine.voice.bridge import Bridge
from engine.voice.telephony import MediaLeg, Telephony

log = logging.getLogger("outdial.agents")

LOGIN_RING_TIMEOUT = 30.0


class AgentState(enum.Enum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    NOT_READY = "not_ready"


class CallOwner(Protocol):
    """The campaign runner side of an agent's call."""

    @property
    def name(self) -> str: ...

    def agent_left(self, agent: Agent, call: AgentCall, why: str) -> None:
        """The agent's leg dropped (or they logged out) during the call."""

    async def wrapup(
        self, agent: Agent, call: AgentCall, code: str | None, options: WrapupOptions
    ) -> dict[str, Any]:
        """Apply the wrap-up code to the contact; returns what was done."""

    def hangup_customer(self, call: AgentCall) -> None:
        """The agent asked to end the customer's call."""


@dataclass(frozen=True, slots=True)
class WrapupOptions:
    callback_at: datetime | None = None
    callback_mine: bool = False
    dnc: bool = False
    timed_out: bool = False


@dataclass(slots=True)
class AgentCall:
    """The customer call an agent is on (then wrapping up)."""

    owner: CallOwner
    attempt_id: int
    contact_id: int
    number: str
    customer: MediaLeg | None
    bridge: Bridge | None = None
    ended: bool = False
    callback_at: datetime | None = None
    callback_mine: bool = False
    dnc: bool = False
    wrapping: bool = False  # a wrap-up is being applied (claimed before any await)
    wrapup_timeout: float = 60.0


@dataclass(slots=True)
class Reservation:
    """A ready agent held for one campaign's record (a preview offer or a callback)."""

    campaign: str
    kind: str  # "preview" or "callback"
    contact_id: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class Agent:
    config: AgentConfig
    state: AgentState = AgentState.LOGGED_OUT
    reason: str | None = None
    since: float = 0.0  # loop time of the last state change
    ready_since: float = 0.0  # for longest-idle-first
    leg: MediaLeg | None = None
    handle: CallHandle | None = None
    call: AgentCall | None = None
    reservation: Reservation | None = None
    pending_not_ready: str | None = None
    logging_out: bool = False
    wrap_timer: asyncio.TimerHandle | None = None
    calls_taken: int = 0

    @property
    def id(self) -> str:
        return self.config.id

    def may_work(self, campaign: str) -> bool:
        return not self.config.campaigns or campaign in self.config.campaigns

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "agent": self.id, "name": self.config.name, "state": self.state.value,
            "reason": self.reason, "in_state_s": round(now - self.since, 3),
            "campaigns": list(self.config.campaigns) or "any",
            "call": None if self.call is None else {
                "campaign": self.call.owner.name, "attempt": self.call.attempt_id,
                "contact": self.call.contact_id, "number": self.call.number,
            },
            "reservation": None if self.reservation is None else {
                "campaign": self.reservation.campaign, "kind": self.reservation.kind,
                "contact": self.reservation.contact_id, **self.reservation.detail,
            },
            "calls_taken": self.calls_taken,
        }  # fmt: skip


Locator = Callable[[AgentConfig], tuple[SipURI, Target] | None]


def agent_locator(tel: Telephony) -> Locator:
    """Where an agent's login call goes: the contact their phone registered
    (the registrar of the daemon's SIP endpoint), else their static `uri`."""

    def locate(agent: AgentConfig) -> tuple[SipURI, Target] | None:
        registrar = getattr(tel.sip.ua, "registrar", None)
        if registrar is not None:
            binding = registrar.binding(agent.username, tel.sip.loop.time())
            if binding is not None:
                return binding.contact, binding.target
        if agent.uri is not None:
            uri = agent.uri
            transport = (uri.param("transport") or "udp").upper()
            return uri, Target(uri.host.strip("[]"), uri.port or 5060, transport)
        return None

    return locate


async def stored_agents(store: Store, config: DaemonConfig) -> dict[str, AgentConfig]:
    """The config's agents and those added by command; the config wins a clash."""
    out = dict(config.agents)
    users = {a.username for a in out.values()}
    for row in await store.agent_accounts():
        if row["id"] in out or row["username"] in users:
            log.warning("stored agent %s ignored: the daemon config defines it", row["id"])
            continue
        uri = parse_uri(row["uri"]) if row["uri"] else None
        out[row["id"]] = AgentConfig(
            id=row["id"], name=row["name"], username=row["username"], password=row["password"],
            uri=uri if isinstance(uri, SipURI) else None,
            campaigns=tuple(json.loads(row["campaigns"] or "[]")),
        )  # fmt: skip
    return out


def utcnow() -> datetime:
    return datetime.now(UTC)


class AgentPool:
    """Every configured agent, their legs and their states."""

    def __init__(
        self,
        agents: dict[str, AgentConfig],
        tel: Telephony,
        store: Store,
        bus: EventBus,
        locate: Locator,
        registrar: RegistrarConfig | None = None,
    ) -> None:
        registrar = registrar or RegistrarConfig()
        self.tel, self.store, self.bus, self.locate = tel, store, bus, locate
        self.agents = {a.id: Agent(a) for a in agents.values()}
        self.loop = asyncio.get_running_loop()
        self.on_ready: list[Callable[[], None]] = []  # dial loops to wake
        self._leg_tasks: dict[str, asyncio.Task[None]] = {}
        # campaign -> (priority, is it dialling now?): where a shared agent's
        # readiness is counted by the pacers (see `home`).
        self._campaigns: dict[str, tuple[int, Callable[[], bool]]] = {}
        # One phone per agent, the last registered wins; INVITEs go to where
        # the REGISTER came from (works behind NAT, where the Contact's
        # address may be private).
        self.registrar = Registrar(
            realm=registrar.realm, accounts=self._accounts(), rng=tel.rng,
            min_expires=registrar.min_expires, max_expires=registrar.max_expires,
            policy=ContactPolicy.REPLACE, route_to_source=True,
        )  # fmt: skip
        tel.sip.ua.registrar = self.registrar
        tel.sip.listeners.append(self._on_sip_event)

    def _accounts(self) -> dict[str, str]:
        return {
            a.config.username: a.config.password
            for a in self.agents.values()
            if a.config.password is not None
        }

    def _agent_of(self, username: str | None) -> str | None:
        return next((a.id for a in self.agents.values() if a.config.username == username), None)

    def _on_sip_event(self, event: object) -> None:
        """Registrations on the bus, by agent (the phone's state, not the agent's)."""
        match event:
            case Registered(aor=user, contact=contact, source=source):
                where = f"{source.host}:{source.port}"
                self.bus.publish("agent.registered", agent=self._agent_of(user),
                                 contact=str(contact), source=where)  # fmt: skip
            case Unregistered(aor=user, reason=reason):
                self.bus.publish("agent.unregistered", agent=self._agent_of(user), reason=reason)
            case RegistrationRejected(user=user, status=status, reason=reason, source=source):
                self.bus.publish("agent.registration_rejected", agent=self._agent_of(user),
                                 username=user, status=status, reason=reason,
                                 source=f"{source.host}:{source.port}")  # fmt: skip
            case _:
                pass

    # ----------------------------------------------------------------- lookup

    def get(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            known = ", ".join(sorted(self.agents)) or "none configured"
            raise NotFound(f"no agent {agent_id!r} (known: {known})")
        return agent

    def working(self, campaign: str) -> list[Agent]:
        """Logged-in agents who may work `campaign`."""
        return [
            a
            for a in self.agents.values()
            if a.state is not AgentState.LOGGED_OUT and a.may_work(campaign)
        ]

    def free(self, campaign: str) -> list[Agent]:
        """Ready, unreserved agents for `campaign`, longest idle first."""
        ready = [
            a
            for a in self.working(campaign)
            if a.state is AgentState.READY
            and a.reservation is None
            and a.call is None
            and a.leg is not None
        ]
        return sorted(ready, key=lambda a: a.ready_since)

    def register_campaign(self, name: str, priority: int, running: Callable[[], bool]) -> None:
        self._campaigns[name] = (priority, running)

    def home(self, agent: Agent) -> str | None:
        """The one running campaign whose pacer counts this agent while ready:
        the highest priority (then name) among those they may work. Two
        pacers counting the same ready agent would both dial for them."""
        running = [
            (-prio, name)
            for name, (prio, is_running) in self._campaigns.items()
            if agent.may_work(name) and is_running()
        ]
        return min(running)[1] if running else None

    def release(self, agent: Agent) -> None:
        """Drop the agent's reservation; a person waiting gets them at once."""
        if agent.reservation is None:
            return
        agent.reservation = None
        if agent.state is AgentState.READY:
            for wake in self.on_ready:
                wake()

    def claim(self, campaign: str) -> Agent | None:
        free = self.free(campaign)
        return free[0] if free else None

    def add(self, config: AgentConfig) -> Agent:
        """A new agent (added through the command layer)."""
        if config.id in self.agents:
            raise Conflict(f"agent {config.id!r} exists")
        taken = next(
            (a for a in self.agents.values() if a.config.username == config.username), None
        )
        if taken is not None:
            raise Conflict(f"username {config.username!r} is agent {taken.id!r}'s")
        agent = self.agents[config.id] = Agent(config)
        if config.password is not None:
            self.registrar.set_account(config.username, config.password)
        self.bus.publish("agent.added", agent=config.id)
        return agent

    def remove(self, agent_id: str) -> None:
        agent = self.get(agent_id)
        if agent.state is not AgentState.LOGGED_OUT or agent.handle is not None:
            raise InvalidState(f"agent {agent_id!r} is logged in: log them out first")
        del self.agents[agent_id]
        self.registrar.remove_account(agent.config.username, self.loop.time())
        self.bus.publish("agent.removed", agent=agent_id)

    # ------------------------------------------------------------ transitions

    def set_state(
        self, agent: Agent, state: AgentState, reason: str | None = None, **extra: Any
    ) -> None:
        now = self.loop.time()
        agent.state, agent.reason, agent.since = state, reason, now
        if state is AgentState.READY:
            agent.ready_since = now
        campaign = extra.get("campaign")
        self.store.record_agent_state(
            agent.id, state.value, utcnow(), reason=reason, campaign=campaign,
            attempt_id=extra.get("attempt"),
        )  # fmt: skip
        self.bus.publish("agent.state", agent=agent.id, state=state.value, reason=reason, **extra)
        if state is AgentState.READY:
            for wake in self.on_ready:
                wake()

    async def log_out_stale(self) -> int:
        """On start: agents the last run left logged in (a crash) are logged out."""
        stale = [
            agent
            for agent, state in (await self.store.last_agent_states()).items()
            if state != AgentState.LOGGED_OUT.value
        ]
        for agent_id in stale:
            self.store.record_agent_state(
                agent_id, AgentState.LOGGED_OUT.value, utcnow(), reason="daemon restarted"
            )
        await self.store.flush()
        return len(stale)

    # ------------------------------------------------------------------ login

    async def login(self, agent_id: str, *, ready: bool = True) -> dict[str, Any]:
        agent = self.get(agent_id)
        if agent.state is not AgentState.LOGGED_OUT or agent.handle is not None:
            raise InvalidState(f"agent {agent_id!r} is already logged in ({agent.state.value})")
        where = self.locate(agent.config)
        if where is None:
            raise InvalidState(
                f"agent {agent_id!r} has no registered phone (register "
                f"{agent.config.username!r} with outdial, or configure a static uri)"
            )
        uri, target = where
        leg = await self.tel.open_media()
        agent.leg = leg
        answered: asyncio.Future[bool] = self.loop.create_future()
        handle = self.tel.place_leg(
            uri, target, leg, ring_timeout=LOGIN_RING_TIMEOUT,
            session_expires=agent.config.session_expires,
            on_event=lambda event: self._on_leg_event(agent, event, answered),
        )  # fmt: skip
        agent.handle = handle
        self._leg_tasks[agent.id] = self.loop.create_task(self._follow_leg(agent, handle))
        if not await answered:
            raise InvalidState(f"agent {agent_id!r}: the phone did not answer the login call")
        if ready:
            self.set_state(agent, AgentState.READY, "login")
        else:
            self.set_state(agent, AgentState.NOT_READY, "login")
        return agent.describe(self.loop.time())

    def _on_leg_event(self, agent: Agent, event: CallEvent, answered: asyncio.Future[bool]) -> None:
        match event:
            case CallAnswered(media=media):
                if media is not None and agent.leg is not None:
                    agent.leg.apply(media)
                if not answered.done():
                    answered.set_result(True)
            case CallEnded():
                if not answered.done():
                    answered.set_result(False)
            case _:
                pass

    async def _follow_leg(self, agent: Agent, handle: CallHandle) -> None:
        ended = await handle.ended
        leg, agent.leg, agent.handle = agent.leg, None, None
        if leg is not None:
            self.tel.close_media(leg)
        if agent.state is AgentState.LOGGED_OUT:
            return  # the login call itself failed
        why = "logout" if agent.logging_out else f"agent leg ended ({ended.ended_by})"
        call = agent.call
        self._cancel_wrap_timer(agent)
        if call is not None and not call.ended:
            call.owner.agent_left(agent, call, why)
        elif call is not None and not call.wrapping:  # logged out in wrap-up: default code
            call.wrapping = True
            try:
                await call.owner.wrapup(agent, call, None, WrapupOptions(timed_out=True))
            except Exception:
                log.exception("wrap-up of agent %s's last call at logout failed", agent.id)
        agent.call, agent.reservation, agent.pending_not_ready = None, None, None
        agent.logging_out = False
        self.set_state(agent, AgentState.LOGGED_OUT, why)

    async def logout(self, agent_id: str) -> dict[str, Any]:
        agent = self.get(agent_id)
        if agent.state is AgentState.LOGGED_OUT or agent.handle is None:
            raise InvalidState(f"agent {agent_id!r} is not logged in")
        agent.logging_out = True
        handle = agent.handle
        self.tel.sip.hangup(handle.call_id, "agent logout")
        task = self._leg_tasks.get(agent.id)
        with contextlib.suppress(TimeoutError):
            # the leg's end, and what follows it (the default wrap-up) is stored
            await asyncio.wait_for(asyncio.shield(task if task is not None else handle.ended), 10.0)
        return agent.describe(self.loop.time())

    async def logout_all(self) -> None:
        for agent in list(self.agents.values()):
            if agent.handle is not None:
                with contextlib.suppress(InvalidState):
                    await self.logout(agent.id)

    # ------------------------------------------------------- ready / not ready

    def ready(self, agent_id: str) -> dict[str, Any]:
        agent = self.get(agent_id)
        match agent.state:
            case AgentState.LOGGED_OUT:
                raise InvalidState(f"agent {agent_id!r} is not logged in")
            case AgentState.WRAP_UP:
                raise InvalidState(f"agent {agent_id!r} is in wrap-up: enter a wrap-up code")
            case AgentState.ON_CALL:
                agent.pending_not_ready = None  # ready again after the call
            case _:
                self.set_state(agent, AgentState.READY)
        return agent.describe(self.loop.time())

    def not_ready(self, agent_id: str, reason: str) -> dict[str, Any]:
        agent = self.get(agent_id)
        if not reason.strip():
            raise BadRequest("not-ready needs a reason code (break, lunch, training...)")
        match agent.state:
            case AgentState.LOGGED_OUT:
                raise InvalidState(f"agent {agent_id!r} is not logged in")
            case AgentState.ON_CALL | AgentState.WRAP_UP:
                agent.pending_not_ready = reason  # applied once the call is wrapped up
            case _:
                if agent.reservation is not None:
                    raise InvalidState(
                        f"agent {agent_id!r} has a {agent.reservation.kind} record: "
                        "accept or skip it first"
                    )
                self.set_state(agent, AgentState.NOT_READY, reason)
        return agent.describe(self.loop.time())

    # ------------------------------------------------------------- the calls

    def bridge(self, agent: Agent, call: AgentCall) -> Bridge:
        """Join the customer's leg to the agent's leg (both ways) now."""
        if agent.leg is None or call.customer is None:
            raise InvalidState(f"agent {agent.id!r} has no leg to bridge to")
        bridge = Bridge(call.customer, agent.leg)
        bridge.install()
        call.bridge = bridge
        agent.call, agent.reservation = call, None
        agent.calls_taken += 1
        self.set_state(
            agent, AgentState.ON_CALL, campaign=call.owner.name, attempt=call.attempt_id,
            contact=call.contact_id, number=call.number,
        )  # fmt: skip
        return bridge

    def customer_ended(self, agent: Agent, call: AgentCall, wrapup_timeout: float) -> None:
        """The customer's call ended: the agent goes to wrap-up."""
        call.ended = True
        call.wrapup_timeout = wrapup_timeout
        if call.bridge is not None:
            call.bridge.unbridge()
        if agent.call is not call or agent.state is AgentState.LOGGED_OUT:
            return
        self.set_state(agent, AgentState.WRAP_UP, campaign=call.owner.name, attempt=call.attempt_id)
        agent.wrap_timer = self.loop.call_later(
            wrapup_timeout, lambda: self.loop.create_task(self._wrap_timeout(agent, call))
        )

    async def _wrap_timeout(self, agent: Agent, call: AgentCall) -> None:
        if agent.call is call and agent.state is AgentState.WRAP_UP and not call.wrapping:
            await self._finish_wrapup(agent, call, None, WrapupOptions(timed_out=True))

    def _cancel_wrap_timer(self, agent: Agent) -> None:
        if agent.wrap_timer is not None:
            agent.wrap_timer.cancel()
            agent.wrap_timer = None

    def hangup(self, agent_id: str) -> dict[str, Any]:
        agent = self.get(agent_id)
        call = agent.call
        if call is None or call.ended:
            raise InvalidState(f"agent {agent_id!r} is not on a call")
        call.owner.hangup_customer(call)
        return agent.describe(self.loop.time())

    async def wrapup(
        self, agent_id: str, code: str | None, options: WrapupOptions
    ) -> dict[str, Any]:
        agent = self.get(agent_id)
        call = agent.call
        if call is None:
            raise InvalidState(f"agent {agent_id!r} has no call to wrap up")
        if not call.ended:
            # During the call: remember the callback / DNC; the code comes later.
            if code is not None:
                raise InvalidState(
                    f"agent {agent_id!r} is still on the call: hang up, then enter the code"
                )
            call.callback_at = options.callback_at or call.callback_at
            call.callback_mine = options.callback_mine or call.callback_mine
            call.dnc = options.dnc or call.dnc
            return {"agent": agent_id, "noted": True, "callback_at": options.callback_at,
                    "dnc": call.dnc}  # fmt: skip
        return await self._finish_wrapup(agent, call, code, options)

    async def _finish_wrapup(
        self, agent: Agent, call: AgentCall, code: str | None, options: WrapupOptions
    ) -> dict[str, Any]:
        if call.wrapping:
            raise InvalidState(f"agent {agent.id!r}: the wrap-up is being applied already")
        merged = WrapupOptions(
            callback_at=options.callback_at or call.callback_at,
            callback_mine=options.callback_mine or call.callback_mine,
            dnc=options.dnc or call.dnc,
            timed_out=options.timed_out,
        )
        call.wrapping = True  # claimed before any await: no second wrap-up can start
        self._cancel_wrap_timer(agent)
        try:
            done = await call.owner.wrapup(agent, call, code, merged)  # may raise BadRequest
        except BaseException:
            call.wrapping = False
            if agent.call is call and agent.state is AgentState.WRAP_UP:
                agent.wrap_timer = self.loop.call_later(
                    call.wrapup_timeout,
                    lambda: self.loop.create_task(self._wrap_timeout(agent, call)),
                )
            raise
        agent.call = None
        if agent.state is not AgentState.LOGGED_OUT:
            pending, agent.pending_not_ready = agent.pending_not_ready, None
            if pending is not None:
                self.set_state(agent, AgentState.NOT_READY, pending)
            else:
                self.set_state(agent, AgentState.READY, "wrap-up done")
        return {"agent": agent.id, **done}

    # ------------------------------------------------------------- reporting

    def status(self, agent_id: str | None = None) -> Any:
        now = self.loop.time()
        if agent_id is not None:
            return self.get(agent_id).describe(now)
        return [a.describe(now) for a in self.agents.values()]

    def counts(self, campaign: str | None = None) -> dict[str, int]:
        out = {s.value: 0 for s in AgentState}
        for a in self.agents.values():
            if campaign is None or a.may_work(campaign):
                out[a.state.value] += 1
        return out
