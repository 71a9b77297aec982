"""The campaign manager: loads campaign files, runs them, answers commands."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from carriers.sip.outcome import CallResult
from dsp.wav import WavError, load_media_audio
from engine.bus import EventBus
from engine.campaign_config import (
    CampaignConfig,
    campaign_definition,
    check_moves,
    load_campaign,
    load_campaigns,
)
from engine.compliance.campaign import calling_hours
from engine.config import ConfigError, DaemonConfig
from engine.errors import InvalidState, NotFound, OutdialError
from engine.voice.agent_dialer import AgentCampaignRunner
from engine.voice.dialer import (
    COMPLETED,
    PAUSED,
    RUNNING,
    STOPPED,
    CampaignRunner,
    next_step,
    utcnow,
)
from engine.voice.ivr import check_queues
from engine.voice.ivr_flow import DEFAULT_VOICE
from engine.voice.tts import EspeakNg, TtsCache, TtsError, fill, placeholders

if TYPE_CHECKING:
    from engine.store import Store
    from engine.voice.agents import AgentPool
    from engine.voice.telephony import Telephony

log = logging.getLogger("outdial.campaigns")


class CampaignManager:
    """Every campaign the daemon knows, each with its runner."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        config: DaemonConfig,
        tel: Telephony,
        agents: AgentPool | None = None,
    ) -> None:
        self.store, self.bus, self.config = store, bus, config
        self.tts: TtsCache | None = None  # made when the first IVR campaign loads
        self.tel = tel
        self.agents = agents
        self.runners: dict[str, CampaignRunner] = {}
        self.load_errors: list[str] = []

    # ------------------------------------------------------------- lifecycle

    async def load_all(self) -> None:
        """Load every campaign file; a broken one is reported and skipped."""
        configs, errors = load_campaigns(self.config)
        agent_campaigns = {c.name for c in configs.values() if c.with_agents}
        agent_campaigns |= {n for n, r in self.runners.items() if r.cfg.with_agents}
        for name, cfg in list(configs.items()):
            if cfg.ivr is not None:
                try:
                    check_queues(cfg.ivr, has_agents=cfg.with_agents,
                                 agent_campaigns=agent_campaigns)  # fmt: skip
                except ConfigError as exc:
                    errors.append(exc)
                    del configs[name]
        self.load_errors = [str(e) for e in errors]
        for error in errors:
            log.error("campaign file rejected: %s", error)
            self.bus.publish("campaign.load_error", error=str(error))
        for cfg in configs.values():
            try:
                await self._install(cfg)
            except (ConfigError, OutdialError) as exc:
                self.load_errors.append(f"{cfg.file}: {exc}")
                log.error("campaign file rejected: %s: %s", cfg.file, exc)

    async def reconcile(self) -> int:
        """After a crash: attempts left in flight become `interrupted` and
        their contacts follow the retry rules (the attempt counts)."""
        now = utcnow()
        reconciled = await self.store.reconcile_in_flight(now)
        for attempt in reconciled:
            runner = self.runners.get(str(attempt.get("campaign")))
            contact_id = int(attempt["contact_id"])
            if runner is None:
                continue
            done = await self.store.contact(contact_id)
            attempts = int(_campaign_attempts(done, runner.name)) + 1
            state, when = next_step(runner.cfg, CallResult.INTERRUPTED, attempts, now)
            self.store.set_contact_state(
                runner.name, contact_id, state=state, next_attempt_at=when,
                last_result=CallResult.INTERRUPTED.value, attempts_delta=1,
            )  # fmt: skip
        await self.store.reset_dialling_callbacks()  # a crash between "dialling" and "dialled"
        await self.store.flush()
        return len(reconciled)

    async def resume_running(self) -> None:
        for runner in self.runners.values():
            stored = await self.store.campaign(runner.name)
            if stored["state"] != RUNNING:
                continue
            missing = await self.store.dnc_missing_lists(runner.cfg.checked_dnc_lists)
            if missing:  # as campaign.start refuses: never dial without its DNC lists
                log.error("campaign %s not resumed: no do-not-contact list %s", runner.name,
                          ", ".join(missing))  # fmt: skip
                continue
            await runner.start()

    async def shutdown(self, grace: float) -> None:
        for runner in self.runners.values():
            await runner.halt(grace)

    def _tts(self) -> TtsCache:
        if self.tts is None:
            self.tts = TtsCache(self.config.tts_cache, EspeakNg())
        return self.tts

    async def _prepare_ivr(self, cfg: CampaignConfig) -> None:
        """At load, not on a live call: the flow's voices exist, its fixed
        prompts render, its WAV prompts decode."""
        flow = cfg.ivr
        if flow is None:
            return
        fixed: dict[str, list[str]] = {}
        for prompt in flow.prompts():
            if prompt.tts is None:
                continue
            voice = prompt.voice or flow.voice or DEFAULT_VOICE
            fixed.setdefault(voice, [])
            if not placeholders(prompt.tts):
                fixed[voice].append(fill(prompt.tts, {}))
        try:
            for voice, texts in fixed.items():
                await self._tts().prerender(texts, voice)
        except TtsError as exc:
            raise ConfigError(flow.file, None, flow.field or "ivr", str(exc)) from None

    async def _install(self, cfg: CampaignConfig) -> CampaignRunner:
        await self._prepare_ivr(cfg)
        prompt = _load_prompt(cfg)
        machine_prompt = (
            _load_prompt(cfg, cfg.amd.machine_prompt) if cfg.amd.machine_prompt else None
        )
        store = self.store
        await store.ensure_list(cfg.contact_list)
        await store.upsert_campaign(cfg.name, cfg.contact_list, campaign_definition(cfg))
        existing = self.runners.get(cfg.name)
        if existing is not None:
            if existing.cfg.with_agents != cfg.with_agents:
                raise ConfigError(
                    str(cfg.file), None, "mode",
                    f"changing {existing.cfg.mode} to {cfg.mode} needs a daemon restart",
                )  # fmt: skip
            existing.cfg, existing.prompt = cfg, prompt  # takes effect for new calls
            existing.hours = calling_hours(cfg.hours, str(cfg.file), self.config.legal_hours)
            existing.locator = cfg.hours.locator()
            existing.machine_prompt = machine_prompt if machine_prompt is not None else prompt
            if isinstance(existing, AgentCampaignRunner) and cfg.safe_harbor is not None:
                existing.safe_harbor = _load_prompt(cfg, cfg.safe_harbor)
            return existing
        runner: CampaignRunner
        if cfg.with_agents:
            if self.agents is None or cfg.safe_harbor is None:
                raise ConfigError(str(cfg.file), None, "mode", "agent modes need agents")
            safe = _load_prompt(cfg, cfg.safe_harbor)
            runner = AgentCampaignRunner(
                self.store, self.bus, self.tel, cfg, prompt, machine_prompt, safe, self.agents
            )
        else:
            runner = CampaignRunner(self.store, self.bus, self.tel, cfg, prompt, machine_prompt)
        runner.hours = calling_hours(cfg.hours, str(cfg.file), self.config.legal_hours)
        runner.tts = self.tts if cfg.ivr is None else self._tts()
        runner.queues = self._queue
        runner.samples.directory = self.config.amd_samples
        runner.state = (await store.campaign(cfg.name))["state"]
        if runner.state == RUNNING:
            runner.state = STOPPED  # resume_running() restarts it after reconcile
        self.runners[cfg.name] = runner
        return runner

    def _queue(self, name: str) -> AgentCampaignRunner | None:
        """The agent campaign whose agents take IVR transfers to `name`."""
        runner = self.runners.get(name)
        return runner if isinstance(runner, AgentCampaignRunner) else None

    def _runner(self, name: str) -> CampaignRunner:
        runner = self.runners.get(name)
        if runner is None:
            known = ", ".join(sorted(self.runners)) or "none"
            raise NotFound(f"no campaign {name!r} (known: {known})")
        return runner

    # -------------------------------------------------------------- commands

    async def list(self) -> list[dict[str, Any]]:
        return [await r.describe() for r in self.runners.values()]

    async def show(self, name: str) -> dict[str, Any]:
        runner = self._runner(name)
        info = await runner.describe()
        cfg = runner.cfg
        info["config"] = campaign_definition(cfg)
        info["file"] = str(cfg.file)
        return info

    async def load(self, path: Path) -> str:
        cfg = load_campaign(path, self.config)
        if cfg.ivr is not None:
            agent_campaigns = {n for n, r in self.runners.items() if r.cfg.with_agents}
            if cfg.with_agents:
                agent_campaigns.add(cfg.name)
            check_queues(cfg.ivr, has_agents=cfg.with_agents, agent_campaigns=agent_campaigns)
        known = {name: r.cfg for name, r in self.runners.items()}
        error = check_moves({**known, cfg.name: cfg}).get(cfg.name)
        if error is not None:  # its move_to targets are the campaigns loaded now
            raise error
        await self._install(cfg)
        self.bus.publish("campaign.loaded", campaign=cfg.name, file=str(path))
        return cfg.name

    async def start(self, name: str) -> None:
        runner = self._runner(name)
        if runner.state == RUNNING:
            raise InvalidState(f"campaign {name!r} is already running")
        await runner.start()

    async def pause(self, name: str) -> None:
        runner = self._runner(name)
        if runner.state != RUNNING:
            raise InvalidState(f"campaign {name!r} is {runner.state}, not running")
        await runner.set_state(PAUSED)

    async def resume(self, name: str) -> None:
        runner = self._runner(name)
        if runner.state != PAUSED:
            raise InvalidState(f"campaign {name!r} is {runner.state}, not paused")
        await runner.start()

    async def stop(self, name: str) -> None:
        runner = self._runner(name)
        if runner.state in (STOPPED, COMPLETED):
            raise InvalidState(f"campaign {name!r} is already {runner.state}")
        await runner.set_state(STOPPED)

    def status(self) -> dict[str, Any]:
        tel = self.tel
        host, port = tel.sip.local_address
        return {
            "sip": f"{host}:{port}",
            "campaigns": {name: r.state for name, r in self.runners.items()},
            "calls_in_flight": sum(len(r.calls) for r in self.runners.values()),
            "trunks": {
                name: {"in_flight": t.in_flight, "max_calls": t.config.max_calls}
                for name, t in tel.trunks.items()
            },
            "media_clock": tel.clock.lateness_percentiles(),
            "rtp_ports_free": tel.allocator.available,
            "calls_waiting_for_agent": sum(
                len(r.waiting) + len(r.transfers)
                for r in self.runners.values()
                if isinstance(r, AgentCampaignRunner)
            ),
            "load_errors": self.load_errors,
        }


def _campaign_attempts(contact: dict[str, Any], campaign: str) -> int:
    for row in contact.get("campaigns", []):
        if row.get("campaign") == campaign:
            return int(row.get("attempts", 0))
    return int(contact.get("attempts", 0))


def _load_prompt(cfg: CampaignConfig, path: Path | None = None) -> NDArray[np.int16]:
    path = path or cfg.prompt
    if path is None:  # an IVR campaign without a plain prompt
        return np.zeros(0, np.int16)
    try:
        return load_media_audio(Path(path).read_bytes())
    except (OSError, WavError) as exc:
        raise ConfigError(str(cfg.file), None, "prompt", f"cannot use {path}: {exc}") from exc
