"""Agent operations of the command layer (registered in `engine.commands`).

`outdial ctl agent ...` and the HTTP agent screen call these: log in and
out, ready and not ready, hang up, wrap up (with a callback or DNC), accept
or skip a preview record, status, and the state history.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from carriers.sip.errors import SipParseError
from carriers.sip.message import SipURI
from carriers.sip.parser import parse_uri
from engine.config import AGENT_ID_RE, AgentConfig
from engine.errors import BadRequest, Conflict, InvalidState
from engine.voice.agent_dialer import AgentCampaignRunner
from engine.voice.agents import Agent, AgentPool, WrapupOptions

if TYPE_CHECKING:
    from engine.app import App


def _pool(app: App) -> AgentPool:
    if app.agents is None or not app.agents.agents:
        raise InvalidState("no agents are configured (the daemon config's `agents:` list)")
    return app.agents


def parse_callback_time(text: str, now: datetime) -> datetime:
    """An ISO-8601 time (with an offset; naive means UTC) or a delay from
    now: "30m", "2h", "1d"."""
    from engine.config import parse_duration

    delay = parse_duration(text)
    if delay is not None:
        return now + timedelta(seconds=delay)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"callback: expected an ISO-8601 time (2026-12-03T10:00+01:00) or a delay "
            f"(30m, 2h, 1d), got {text!r}"
        ) from None
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    if when <= now:
        raise BadRequest(f"callback: {when.isoformat()} is in the past")
    return when


async def agent_login(app: App, agent: str, not_ready: bool = False) -> dict[str, Any]:
    """Call the agent's phone and keep the leg up; the agent is then ready
    (or not ready with `not_ready`)."""
    return await _pool(app).login(agent, ready=not not_ready)


async def agent_logout(app: App, agent: str) -> dict[str, Any]:
    """Hang up the agent's leg (a call on it is handled as an abandon)."""
    return await _pool(app).logout(agent)


async def agent_ready(app: App, agent: str) -> dict[str, Any]:
    return _pool(app).ready(agent)


async def agent_not_ready(app: App, agent: str, reason: str) -> dict[str, Any]:
    return _pool(app).not_ready(agent, reason)


async def agent_hangup(app: App, agent: str) -> dict[str, Any]:
    """End the customer's call the agent is on (the agent goes to wrap-up)."""
    return _pool(app).hangup(agent)


async def agent_wrapup(
    app: App,
    agent: str,
    code: str | None = None,
    callback: str | None = None,
    mine: bool = False,
    dnc: bool = False,
) -> dict[str, Any]:
    """Enter the wrap-up code; optionally schedule a callback (for this agent
    with `mine`, else any agent) and add the number to the DNC list. During
    the call, `callback` and `dnc` are noted for the wrap-up."""
    pool = _pool(app)
    when = parse_callback_time(callback, datetime.now(UTC)) if callback else None
    if mine and when is None:
        raise BadRequest("mine: only with a callback time")
    options = WrapupOptions(callback_at=when, callback_mine=mine, dnc=dnc)
    return await pool.wrapup(agent, code, options)


def _agent_config(
    agent: str, name: str | None, username: str | None, password: str | None,
    uri: str | None, campaigns: list[str] | None,
) -> AgentConfig:  # fmt: skip
    if not AGENT_ID_RE.fullmatch(agent):
        raise BadRequest(f"agent: expected letters, digits, '_', '.', '-' (max 64), got {agent!r}")
    sip_uri = None
    if uri is not None:
        try:
            parsed = parse_uri(uri)
        except SipParseError as exc:
            raise BadRequest(f"uri: not a SIP URI ({exc})") from None
        if not isinstance(parsed, SipURI):
            raise BadRequest(f"uri: expected a sip: URI, got {uri!r}")
        sip_uri = parsed
    if sip_uri is None and not password:
        raise BadRequest("password: a phone that registers needs a password (or give uri)")
    return AgentConfig(
        id=agent, name=name or agent, username=username or agent, password=password,
        uri=sip_uri, campaigns=tuple(campaigns or ()),
    )  # fmt: skip


async def agent_add(
    app: App,
    agent: str,
    name: str | None = None,
    username: str | None = None,
    password: str | None = None,
    uri: str | None = None,
    campaigns: list[str] | None = None,
) -> dict[str, Any]:
    """Add an agent (stored; the daemon config's agents are not changed)."""
    pool = _pool_any(app)
    cfg = _agent_config(agent, name, username, password, uri, campaigns)
    if cfg.id in pool.agents or any(
        a.config.username == cfg.username for a in pool.agents.values()
    ):
        raise Conflict(f"agent {cfg.id!r} or username {cfg.username!r} exists")
    await app.store.add_agent_account(
        id=cfg.id, name=cfg.name, username=cfg.username, password=cfg.password, uri=uri,
        campaigns=json.dumps(list(cfg.campaigns)), created_at=datetime.now(UTC),
    )  # fmt: skip
    return pool.add(cfg).describe(pool.loop.time())


async def agent_remove(app: App, agent: str) -> dict[str, Any]:
    """Remove an agent added by command (config agents live in the config file)."""
    pool = _pool_any(app)
    pool.get(agent)
    if agent in app.config.agents:
        raise InvalidState(f"agent {agent!r} is defined in the daemon config; remove it there")
    pool.remove(agent)
    await app.store.remove_agent_account(agent)
    return {"agent": agent, "removed": True}


def _pool_any(app: App) -> AgentPool:
    if app.agents is None:
        raise InvalidState("the daemon runs without an agent pool")
    return app.agents


def _preview_runner(app: App, agent: Agent) -> AgentCampaignRunner:
    res = agent.reservation
    if res is None or res.kind != "preview":
        raise InvalidState(f"agent {agent.id!r} has no preview record offered")
    runner = app.campaigns.runners.get(res.campaign)
    if not isinstance(runner, AgentCampaignRunner):
        raise InvalidState(f"campaign {res.campaign!r} is not an agent campaign")
    return runner


async def agent_preview_accept(app: App, agent: str) -> dict[str, Any]:
    """Dial the record offered to the agent; bridged to them when answered."""
    a = _pool(app).get(agent)
    runner = _preview_runner(app, a)
    return await runner.preview_accept(a, runner.offer_of(a))


async def agent_preview_skip(app: App, agent: str) -> dict[str, Any]:
    """Pass on the record offered (offered again after the campaign's skip_delay)."""
    a = _pool(app).get(agent)
    runner = _preview_runner(app, a)
    return runner.preview_skip(a, runner.offer_of(a))


async def agent_status(app: App, agent: str | None = None) -> Any:
    """One agent (or all): state, time in state, current call or offered record."""
    return _pool(app).status(agent)


async def agent_history(app: App, agent: str | None = None, limit: int = 100) -> Any:
    """The stored state changes, newest last."""
    if limit < 1:
        raise BadRequest(f"limit: must be at least 1, got {limit}")
    if agent is not None:
        _pool(app).get(agent)
    return await app.store.agent_history(agent, None, limit)


async def report_abandons(app: App, campaign: str) -> Any:
    """The abandon ledger of a campaign: every abandon with its times."""
    await app.store.campaign(campaign)
    return await app.store.abandons(campaign)


async def callbacks_list(app: App, campaign: str | None = None) -> Any:
    """Scheduled callbacks (pending, dialled)."""
    return await app.store.callbacks(campaign)
