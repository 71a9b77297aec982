"""Campaign files: one YAML file per campaign, validated against the daemon's config.

`engine.config` holds the daemon's file and the located-YAML helpers; this
module builds on it (never the other way round).
Every error names the file, the line and the field; `config/schema.md`
documents every field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from carriers.sip.outcome import CallResult
from dsp.wav import WavError, decode_wav
from engine.compliance.campaign import HoursConfig, parse_hours_config
from engine.compliance.hours import DAYS
from engine.compliance.rules import (
    AttemptLimits,
    Filter,
    RuleSet,
    Sort,
    caller_id_field,
    parse_filter,
    parse_limits,
    parse_rules,
    parse_sort,
)
from engine.config import (
    ConfigError,
    DaemonConfig,
    _closest,
    _Node,
    _read_mapping,
    format_duration,
)
from engine.errors import BadRequest
from engine.voice.ivr import Flow, check_queues, load_flow, parse_flow

# 47 CFR 64.1200(a)(6): an unanswered call must ring at least 15 seconds (or
# four rings) before the caller disconnects it.
MIN_RING_TIMEOUT = 15.0
MAX_RING_TIMEOUT = 300.0
CHANNELS = ("voice",)
LATER_CHANNELS: tuple[str, ...] = ()
# Loaded by their own channel (engine/sms/campaign.py, engine/email/campaign.py).
MESSAGE_CHANNELS = ("sms", "email")
MODES = ("agentless", "preview", "progressive", "power", "predictive")
AGENT_MODES = ("preview", "progressive", "power", "predictive")
LATER_MODES: tuple[str, ...] = ()
JURISDICTIONS = ("us", "uk")
# The legal abandon limits: 47 CFR 64.1200(a)(7) (3% of calls answered by a
# person, per campaign per 30 days) and Ofcom's statement on persistent misuse
# (3% per campaign per 24 h, counting an estimate of AMD false positives).
LEGAL_ABANDON_LIMIT = {"us": 0.03, "uk": 0.03}
ABANDON_WINDOW_S = {"us": 30 * 86400.0, "uk": 86400.0}
# The safe-harbor message must start within 2 s of the end of the greeting
# (47 CFR 64.1200(a)(7)(i)); waiting for an agent may use part of that.
MAX_CONNECT_WAIT = 1.5


ON_MACHINE = ("hangup", "message_after_beep", "agent", "ivr")
LATER_ON_MACHINE: tuple[str, ...] = ()
ON_HUMAN = ("prompt", "hangup")
# Do-not-contact lists (store data: `outdial ctl dnc create NAME --kind KIND`).
DEFAULT_DNC_LIST, DEFAULT_OPTOUT_LIST = "internal", "opt-outs"
AMD_MODES = ("default", "asterisk")


@dataclass(frozen=True, slots=True)
class AmdConfig:
    """Call analysis of an answered call (the campaign's `amd:` section)."""

    enabled: bool = False
    mode: str = "default"
    parameters: tuple[tuple[str, float], ...] = ()
    on_machine: str = "hangup"
    on_human: str = "prompt"
    machine_prompt: Path | None = None  # the voicemail message; default: the prompt
    max_beep_wait: float = 20.0  # seconds after a machine verdict to wait for the beep
    # Ofcom's AMD false-positive estimate: the share of answered calls whose
    # first seconds are recorded; those classified as machines are kept for an
    # operator to mark (person or machine) and the marks give the estimate.
    sample_share: float = 0.0
    sample_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class WrapupCode:
    """A wrap-up code an agent enters after a call: a final outcome, or a
    retry after `retry` seconds (a recall delay)."""

    code: str
    description: str = ""
    final: bool = True
    retry: float | None = None


@dataclass(frozen=True, slots=True)
class DialingConfig:
    """How an agent campaign paces calls (the `dialing:` section)."""

    ratio: float = 1.0
    max_ratio: float = 5.0
    abandon_target: float = 0.03
    jurisdiction: str = "us"
    connect_wait: float = 1.0
    preview_auto_dial: float | None = None
    owner_column: str = "agent"
    skip_delay: float = 600.0
    wrapup_timeout: float = 60.0
    # How long an IVR caller sent to this campaign's queue holds for an agent.
    queue_wait: float = 60.0
    # Ofcom: the share of machine verdicts taken to be people (AMD false
    # positives), counted as abandons in the UK rate; 0 for US campaigns.
    amd_false_positive_rate: float = 0.0
    wrapup_codes: tuple[WrapupCode, ...] = ()
    default_wrapup: str | None = None

    @property
    def abandon_window(self) -> float:
        return ABANDON_WINDOW_S[self.jurisdiction]

    def code(self, name: str) -> WrapupCode | None:
        return next((c for c in self.wrapup_codes if c.code == name), None)

    def wrapup(self, code: str | None, campaign: str) -> tuple[str | None, WrapupCode | None]:
        """The code an agent's wrap-up applies (none given or timed out: the
        default) and its rule; BadRequest for a code `campaign` does not have."""
        code = code if code is not None else self.default_wrapup
        rule = self.code(code) if code is not None else None
        if code is not None and self.wrapup_codes and rule is None:
            known = ", ".join(c.code for c in self.wrapup_codes)
            raise BadRequest(f"unknown wrap-up code {code!r} for {campaign!r} (codes: {known})")
        return code, rule


@dataclass(frozen=True, slots=True)
class CampaignConfig:
    """One campaign file, validated against the daemon's config."""

    name: str
    file: Path
    channel: str
    mode: str
    contact_list: str
    trunk: str
    caller_id: str | None
    lines: int
    max_attempts: int
    ring_timeout: float
    max_duration: float
    retry: dict[CallResult, float]
    prompt: Path | None  # None: the campaign's `ivr` says what a person hears
    priority: int = 0
    calls_per_second: float | None = None
    amd: AmdConfig = AmdConfig()
    dialing: DialingConfig = DialingConfig()
    safe_harbor: Path | None = None
    hours: HoursConfig = field(default_factory=HoursConfig)
    dnc_lists: tuple[str, ...] = (DEFAULT_DNC_LIST,)
    optout_list: str = DEFAULT_OPTOUT_LIST
    ivr: Flow | None = None
    rules: RuleSet = field(default_factory=RuleSet)
    filter: Filter | None = None
    limits: AttemptLimits = field(default_factory=AttemptLimits)
    sort: Sort | None = None

    @property
    def checked_dnc_lists(self) -> tuple[str, ...]:
        """The DNC lists checked before each call: `dnc_lists`, then the opt-out list."""
        return tuple(dict.fromkeys((*self.dnc_lists, self.optout_list)))

    @property
    def with_agents(self) -> bool:
        return self.mode in AGENT_MODES


_CAMPAIGN_FIELDS = {
    "name", "channel", "mode", "contact_list", "trunk", "caller_id", "lines",
    "max_attempts", "ring_timeout", "max_duration", "retry", "prompt", "priority",
    "calls_per_second", "amd", "dialing", "safe_harbor", "calling_hours", "restricted_days",
    "contact_location", "dnc_lists", "optout_list", "ivr", "rules", "filter", "limits", "sort",
}  # fmt: skip
_DIALING_FIELDS = {
    "ratio", "max_ratio", "abandon_target", "jurisdiction", "connect_wait",
    "preview_auto_dial", "owner_column", "skip_delay", "wrapup_timeout", "wrapup_codes",
    "default_wrapup", "amd_false_positive_rate", "queue_wait",
}  # fmt: skip
_AMD_FIELDS = {
    "enabled", "mode", "parameters", "on_machine", "on_human", "machine_prompt",
    "max_beep_wait", "sample_share", "sample_seconds",
}  # fmt: skip
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_RETRYABLE = {r.value: r for r in CallResult if r is not CallResult.ANSWERED}


def _one_of(m: _Node, key: str, supported: tuple[str, ...], later: tuple[str, ...]) -> str:
    value = m.required_text(key).strip().lower()
    if value in later:
        raise m.error(key, f"{value!r} is not supported yet (supported: {', '.join(supported)})")
    if value not in supported:
        options = ", ".join(supported + later)
        raise m.error(key, f"expected {' or '.join(supported)}; got {value!r} (known: {options})")
    return value


def _campaign_name(m: _Node, file: Path) -> str:
    name = m.text("name") or file.stem
    if not _NAME_RE.fullmatch(name):
        raise m.error(
            "name", f"expected 1-64 letters, digits, '.', '_' or '-' (not first), got {name!r}"
        )
    return name


def _campaign_trunk(m: _Node, config: DaemonConfig) -> str:
    trunk = m.required_text("trunk")
    if trunk not in config.trunks:
        hint = _closest(trunk, set(config.trunks))
        extra = f" (did you mean '{hint}'?)" if hint else ""
        known = ", ".join(sorted(config.trunks))
        raise m.error("trunk", f"no trunk {trunk!r} in {config.path}{extra}; known: {known}")
    return trunk


def _retry(m: _Node) -> dict[CallResult, float]:
    node = m.mapping("retry")
    if node is None:
        return {}
    rules: dict[CallResult, float] = {}
    for key in node.items:
        if key == CallResult.ANSWERED.value:
            raise node.error(key, "answered calls are final and never retried; remove this rule")
        if key not in _RETRYABLE:
            hint = _closest(key, set(_RETRYABLE))
            extra = f" (did you mean '{hint}'?)" if hint else ""
            raise node.error(
                key, f"unknown call result{extra}; expected one of {sorted(_RETRYABLE)}"
            )
        rules[_RETRYABLE[key]] = node.duration(key, required=True) or 0.0
    return rules


def _amd(m: _Node, config: DaemonConfig) -> AmdConfig:
    node = m.mapping("amd")
    if node is None:
        return AmdConfig()
    node.check_keys(_AMD_FIELDS)
    enabled = node.scalar("enabled", bool, True)
    mode = node.choice("mode", AMD_MODES, "default")
    params: list[tuple[str, float]] = []
    table = node.mapping("parameters")
    if table is not None:
        for key in table.items:
            params.append((key, float(table.number(key, float, 0.0))))
        from dsp.amd import make_amd  # validates names and values against the detector

        try:
            make_amd(mode, dict(params))
        except (ValueError, TypeError) as exc:
            raise node.error("parameters", str(exc)) from None
    on_machine = "hangup"
    if node.present("on_machine"):
        on_machine = _one_of(node, "on_machine", ON_MACHINE, LATER_ON_MACHINE)
    on_human = node.choice("on_human", ON_HUMAN, "prompt")
    machine_prompt = None
    if node.present("machine_prompt"):
        machine_prompt = _prompt(node, config, "machine_prompt")
    wait = node.duration("max_beep_wait", 20.0, low=1.0) or 20.0
    share = _rate(node, "sample_share", 0.0)
    seconds = node.duration("sample_seconds", 10.0, low=1.0) or 10.0
    if seconds > 60:
        raise node.error("sample_seconds", f"at most 60s of a call is sampled, got {seconds:g}s")
    return AmdConfig(enabled, mode, tuple(params), on_machine, on_human, machine_prompt, wait,
                     share, seconds)  # fmt: skip


def _rate(m: _Node, key: str, default: float) -> float:
    """A rate as a fraction (0.03) or a percentage ("3%")."""
    node = m.present(key)
    if node is None:
        return default
    text = str(getattr(node, "value", "")).strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise m.error(
            key, f"expected a fraction (0.03) or a percentage (3%), got {text!r}"
        ) from None
    if not 0 <= value <= 1:
        raise m.error(key, f"must be between 0 and 100%, got {text}")
    return value


def _wrapup_codes(m: _Node) -> tuple[WrapupCode, ...]:
    node = m.present("wrapup_codes")
    if node is None:
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise m.error("wrapup_codes", "expected a list of {code, description, final, retry}")
    codes: list[WrapupCode] = []
    for index, item in enumerate(node.value):
        if not isinstance(item, yaml.MappingNode):
            raise m.error(f"wrapup_codes[{index}]", "expected a mapping")
        c = _Node(m.file, item, m.field(f"wrapup_codes[{index}]"))
        c.check_keys({"code", "description", "final", "retry"})
        code = str(c.scalar("code", str, required=True))
        if any(x.code == code for x in codes):
            raise c.error("code", f"duplicate wrap-up code {code!r}")
        retry = c.duration("retry")
        final = bool(c.scalar("final", bool, retry is None))
        if final and retry is not None:
            raise c.error("retry", "a final code is never retried; remove retry or final")
        codes.append(WrapupCode(code, str(c.scalar("description", str, "")), final, retry))
    return tuple(codes)


def _dialing(m: _Node, mode: str) -> DialingConfig:
    node = m.mapping("dialing")
    if node is None:
        return DialingConfig()
    if mode not in AGENT_MODES:
        raise m.error("dialing", f"only agent modes ({', '.join(AGENT_MODES)}) are paced")
    node.check_keys(_DIALING_FIELDS)
    jurisdiction = node.choice("jurisdiction", JURISDICTIONS, "us")
    target = _rate(node, "abandon_target", 0.03)
    limit = LEGAL_ABANDON_LIMIT[jurisdiction]
    if target > limit:
        raise node.error(
            "abandon_target",
            f"{target:.2%} is above the legal limit of {limit:.0%} for {jurisdiction.upper()}",
        )
    wait = node.duration("connect_wait", 1.0) or 0.0
    if wait > MAX_CONNECT_WAIT:
        raise node.error(
            "connect_wait",
            f"at most {MAX_CONNECT_WAIT:g}s: the safe-harbor message must start within 2 s "
            "of the greeting's end (47 CFR 64.1200(a)(7)(i))",
        )
    ratio = float(node.number("ratio", float, 1.0, low=0.1))
    codes = _wrapup_codes(node)
    default = node.scalar("default_wrapup", str)
    if default is not None and not any(c.code == default for c in codes):
        raise node.error("default_wrapup", f"no wrap-up code {default!r} in wrapup_codes")
    return DialingConfig(
        ratio=ratio, max_ratio=float(node.number("max_ratio", float, 5.0, low=1.0)),
        abandon_target=target, jurisdiction=jurisdiction, connect_wait=wait,
        preview_auto_dial=node.duration("preview_auto_dial"),
        owner_column=str(node.scalar("owner_column", str, "agent")),
        skip_delay=node.duration("skip_delay", 600.0) or 0.0,
        wrapup_timeout=node.duration("wrapup_timeout", 60.0, low=1.0) or 60.0,
        queue_wait=node.duration("queue_wait", 60.0, low=1.0) or 60.0,
        wrapup_codes=codes, default_wrapup=default,
        amd_false_positive_rate=_rate(node, "amd_false_positive_rate", 0.0),
    )  # fmt: skip


def _prompt(m: _Node, config: DaemonConfig, key: str = "prompt") -> Path:
    text = m.required_text(key)
    path = config.prompts_dir / Path(text).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise m.error(key, f"no such file: {path} (expected a WAV file)") from None
    except OSError as exc:
        raise m.error(key, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        _, info = decode_wav(data)
    except WavError as exc:
        raise m.error(key, f"{path} is not a usable WAV file: {exc}") from None
    if info.frames == 0:
        raise m.error(key, f"{path} holds no audio")
    return path


def _ring_timeout(m: _Node) -> float:
    ring = m.duration("ring_timeout", 30.0) or 0.0
    if ring < MIN_RING_TIMEOUT:
        raise m.error(
            "ring_timeout",
            f"must be at least 15s, got {format_duration(ring)}: 47 CFR 64.1200(a)(6) requires "
            "an unanswered call to ring at least 15 seconds (or four rings)",
        )
    if ring > MAX_RING_TIMEOUT:
        raise m.error("ring_timeout", f"must be at most 5m, got {format_duration(ring)}")
    return ring


def _campaign(m: _Node, file: Path, config: DaemonConfig) -> CampaignConfig:
    m.check_keys(_CAMPAIGN_FIELDS)
    # Checked in the order of the example file; the prompt (read and decoded) last.
    name = _campaign_name(m, file)
    channel = _one_of(m, "channel", CHANNELS, LATER_CHANNELS)
    mode = _one_of(m, "mode", MODES, LATER_MODES)
    contact_list = _nonempty(m, "contact_list")
    trunk = _campaign_trunk(m, config)
    caller_id = caller_id_field(m)
    lines = m.number("lines", int, 1, low=1)
    cps = m.scalar("calls_per_second", float)
    if cps is not None and cps <= 0:
        raise m.error("calls_per_second", f"must be above 0, got {cps:g}")
    priority = m.scalar("priority", int, 0)
    max_attempts = m.number("max_attempts", int, 3, low=1)
    ring_timeout = _ring_timeout(m)
    max_duration = m.duration("max_duration", 300.0, low=1.0) or 300.0
    retry = _retry(m)
    dialing = _dialing(m, mode)
    safe_harbor = _prompt(m, config, "safe_harbor") if m.present("safe_harbor") else None
    if mode in AGENT_MODES and safe_harbor is None:
        raise m.error(
            "safe_harbor",
            f"missing: a {mode} campaign needs the message a person hears when no agent is "
            "free (who is calling and a number to call back; 47 CFR 64.1200(a)(7)(i))",
        )
    amd = _amd(m, config)
    rules = parse_rules(m, wrapup_codes={c.code for c in dialing.wrapup_codes} or None)
    sort = parse_sort(m)
    _wired(m, sort)
    contact_filter = parse_filter(m)
    limits = parse_limits(m)
    if limits.contact_total is not None and m.present("max_attempts") is not None:
        raise m.error("max_attempts", "give max_attempts or limits.per_contact.total, not both")
    if limits.contact_total is not None:
        max_attempts = limits.contact_total
    ivr = _ivr(m, config)
    if ivr is not None:
        check_queues(ivr, has_agents=mode in AGENT_MODES)
    if amd.on_machine == "ivr" and ivr is None:
        raise m.error("amd", "on_machine: ivr needs the campaign's ivr flow")
    prompt = _prompt(m, config) if ivr is None or m.present("prompt") is not None else None
    hours = parse_hours_config(m)
    dnc_lists, optout_list = _dnc_lists(m)
    if amd.on_machine == "agent" and mode not in AGENT_MODES:
        raise m.error("amd", "on_machine: agent needs an agent mode")
    return CampaignConfig(
        name=name, file=file.absolute(), channel=channel, mode=mode,
        contact_list=contact_list, trunk=trunk, caller_id=caller_id, lines=lines,
        max_attempts=max_attempts, ring_timeout=ring_timeout, max_duration=max_duration,
        retry=retry, prompt=prompt, priority=priority, calls_per_second=cps,
        amd=amd, dialing=dialing, safe_harbor=safe_harbor, hours=hours, ivr=ivr,
        rules=rules, filter=contact_filter, limits=limits, sort=sort,
        dnc_lists=dnc_lists, optout_list=optout_list,
    )  # fmt: skip


# Sort keys the stored dialling order cannot keep: it is recomputed when a
# contact's row is written, and attempts_today also changes at each local
# midnight, with no write (engine/store/dialorder.py).
UNSORTABLE = {"attempts_today": "it changes at each local midnight; sort by last_attempt_at"}


def _wired(m: _Node, sort: Sort | None) -> None:
    """What the dial loop does not carry out is refused, not ignored."""
    node = m.present("sort")
    for index, key in enumerate(sort.keys if sort is not None else ()):
        if key.column in UNSORTABLE:
            assert isinstance(node, yaml.SequenceNode)
            raise ConfigError(m.file, node.value[index].start_mark.line + 1,
                              m.field(f"sort[{index}]"), f"{key.column} is not supported as a "
                              f"sort key: {UNSORTABLE[key.column]}")  # fmt: skip


def check_moves(campaigns: Mapping[str, CampaignConfig]) -> dict[str, ConfigError]:
    """Each campaign whose rules `move_to` a campaign that is not loaded, is
    itself, or dials another contact list (a contact is a row of one list:
    its numbers are unique there, and the list's export and its campaigns'
    enrolment are per list), with the error located at the rule."""
    errors: dict[str, ConfigError] = {}
    for c in campaigns.values():
        for index, rule in enumerate(c.rules.rules):
            why = _move_problem(c, rule.move_to, campaigns)
            if why and c.name not in errors:
                where = f"rules[{index}].then.move_to"
                errors[c.name] = ConfigError(str(c.file), rule.line, where, why)
    return errors


def _move_problem(
    c: CampaignConfig, target: str | None, campaigns: Mapping[str, CampaignConfig]
) -> str | None:
    other = campaigns.get(target) if target is not None else None
    if target is None:
        return None
    if other is None:
        hint = _closest(target, set(campaigns) - {c.name})
        return f"no campaign {target!r}" + (f" (did you mean {hint!r}?)" if hint else "")
    if other.name == c.name:
        return "a contact cannot move to its own campaign"
    if other.contact_list != c.contact_list:
        return (f"{target!r} dials list {other.contact_list!r}, this campaign "
                f"{c.contact_list!r}: a contact moves between campaigns of its list")  # fmt: skip
    return None


def _ivr(m: _Node, config: DaemonConfig) -> Flow | None:
    """`ivr:` a flow written in the campaign, or the path of a flow file
    (relative to the daemon config's directory, e.g. flows/reminder.yaml)."""
    node = m.present("ivr")
    if node is None:
        return None
    if isinstance(node, yaml.ScalarNode):
        path = config.path.parent / Path(str(node.value)).expanduser()
        if not path.is_file():
            raise m.error("ivr", f"no such flow file: {path}")
        return load_flow(path, config.prompts_dir)
    flow_node = m.mapping("ivr")
    assert flow_node is not None
    return parse_flow(flow_node, config.prompts_dir)


def _dnc_lists(m: _Node) -> tuple[tuple[str, ...], str]:
    """`dnc_lists` (default [internal]) and `optout_list` (default opt-outs).
    Lists are store data, so only their names are checked here; a campaign
    naming a list the store does not have refuses to start (campaign.start)."""
    names: tuple[str, ...] = (DEFAULT_DNC_LIST,)
    node = m.present("dnc_lists")
    if node is not None:
        if not isinstance(node, yaml.SequenceNode) or not all(
            isinstance(n, yaml.ScalarNode) for n in node.value
        ):
            raise m.error("dnc_lists", "expected a list of do-not-contact list names")
        names = tuple(str(n.value).strip() for n in node.value)
    for name in names:
        if not _NAME_RE.fullmatch(name):
            raise m.error("dnc_lists", f"{name!r}: expected 1-64 letters, digits, '.', '_' or '-'")
    if len(set(names)) != len(names):
        raise m.error("dnc_lists", "a list is named twice")
    optout = (m.text("optout_list") or DEFAULT_OPTOUT_LIST).strip()
    if not _NAME_RE.fullmatch(optout):
        raise m.error("optout_list", f"{optout!r}: expected 1-64 letters, digits, '.', '_' or '-'")
    return names, optout


def _nonempty(m: _Node, key: str) -> str:
    value = m.required_text(key).strip()
    if not value:
        raise m.error(key, "must not be empty")
    return value


def load_campaign(path: str | Path, config: DaemonConfig) -> CampaignConfig:
    """Read and validate one campaign file; ConfigError names file, line and field."""
    return _campaign(_read_mapping(path), Path(path), config)


def campaign_files(directory: Path) -> list[Path]:
    """The campaign files of a directory, every channel's: `*.yaml` / `*.yml`,
    dot files skipped, by name (none when it is not a directory)."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(".") and p.is_file()
    )


def channel_files(directory: Path, channel: str) -> list[tuple[Path, _Node]]:
    """The readable campaign files of one channel, each with its parsed top
    mapping (an unreadable file is the voice loader's to report)."""
    out = []
    for file in campaign_files(directory):
        try:
            top = _read_mapping(file)
        except ConfigError:
            continue
        if (top.text("channel") or "").strip().lower() == channel:
            out.append((file, top))
    return out


def load_campaigns(config: DaemonConfig) -> tuple[dict[str, CampaignConfig], list[ConfigError]]:
    """Every `*.yaml` / `*.yml` file of `campaigns_dir` (dot files skipped), by file name.

    A broken file adds its error to the list and the others still load; a
    campaign name already taken by an earlier file is an error for the later one.
    """
    directory = config.campaigns_dir
    if not directory.is_dir():
        error = ConfigError(str(directory), None, "campaigns_dir", "not a directory")
        return {}, [error]
    files = campaign_files(directory)
    campaigns: dict[str, CampaignConfig] = {}
    errors: list[ConfigError] = []
    for file in files:
        try:
            top = _read_mapping(file)
            if (top.text("channel") or "").strip().lower() in MESSAGE_CHANNELS:
                continue  # an SMS or email campaign: its channel loads it
            campaign = _campaign(top, file, config)
        except ConfigError as exc:
            errors.append(exc)
            continue
        first = campaigns.get(campaign.name)
        if first is not None:
            where = f"already defined in {first.file}"
            errors.append(top.error("name", f"duplicate campaign name {campaign.name!r}, {where}"))
            continue
        campaigns[campaign.name] = campaign
    while moves := check_moves(campaigns):  # a rejected campaign is no target either
        for name, error in moves.items():
            errors.append(error)
            del campaigns[name]
    return campaigns, errors


def campaign_definition(c: CampaignConfig) -> dict[str, Any]:
    """The campaign as a JSON-able dict (stored in campaigns.definition, shown by ctl)."""
    return {
        "name": c.name,
        "file": str(c.file),
        "channel": c.channel,
        "mode": c.mode,
        "contact_list": c.contact_list,
        "trunk": c.trunk,
        "caller_id": c.caller_id,
        "lines": c.lines,
        "max_attempts": c.max_attempts,
        "ring_timeout": c.ring_timeout,
        "max_duration": c.max_duration,
        "retry": {result.value: seconds for result, seconds in c.retry.items()},
        "prompt": str(c.prompt) if c.prompt else None,
        "ivr": None
        if c.ivr is None
        else {
            "file": c.ivr.file,
            "start": c.ivr.start,
            "steps": list(c.ivr.steps),
        },
        "priority": c.priority,
        "calls_per_second": c.calls_per_second,
        "amd": {
            "enabled": c.amd.enabled,
            "mode": c.amd.mode,
            "parameters": dict(c.amd.parameters),
            "on_machine": c.amd.on_machine,
            "on_human": c.amd.on_human,
            "machine_prompt": str(c.amd.machine_prompt) if c.amd.machine_prompt else None,
            "max_beep_wait": c.amd.max_beep_wait,
        },
        "dialing": _dialing_definition(c.dialing),
        "safe_harbor": str(c.safe_harbor) if c.safe_harbor else None,
        "hours": _hours_definition(c.hours),
        "dnc_lists": list(c.dnc_lists),
        "optout_list": c.optout_list,
        "rules": [
            {"when": r.when, "line": r.line, "if": r.condition.text if r.condition else None}
            for r in c.rules.rules
        ],
        "filter": c.filter.condition.text if c.filter is not None else None,
        # read by the store (engine/store/dialorder.py): keep the shape
        "sort": [
            {"column": k.column, "order": "desc" if k.descending else "asc"}
            for k in (c.sort.keys if c.sort is not None else ())
        ],
        "limits": {
            "per_contact": {"total": c.limits.contact_total, "per_day": c.limits.contact_per_day},
            "per_number": {"total": c.limits.number_total, "per_day": c.limits.number_per_day},
        },
    }


def _hours_definition(h: HoursConfig) -> dict[str, Any]:
    def hhmm(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"

    def window(w: tuple[int, int] | None) -> str | None:
        return None if w is None else f"{hhmm(w[0])}-{hhmm(w[1])}"

    week = None if h.week is None else dict(zip(DAYS, map(window, h.week), strict=True))
    return {
        "calling_hours": week,
        "public_holidays": h.public_holidays, "dates": sorted(d.isoformat() for d in h.dates),
        "timezone_columns": list(h.timezone_columns),
        "postal_code_columns": list(h.postal_code_columns), "default_timezone": h.default_timezone,
    }  # fmt: skip


def _dialing_definition(d: DialingConfig) -> dict[str, Any]:
    return {
        "ratio": d.ratio, "max_ratio": d.max_ratio, "abandon_target": d.abandon_target,
        "jurisdiction": d.jurisdiction, "connect_wait": d.connect_wait,
        "preview_auto_dial": d.preview_auto_dial, "owner_column": d.owner_column,
        "skip_delay": d.skip_delay, "wrapup_timeout": d.wrapup_timeout,
        "queue_wait": d.queue_wait, "amd_false_positive_rate": d.amd_false_positive_rate,
        "wrapup_codes": [
            {"code": w.code, "description": w.description, "final": w.final, "retry": w.retry}
            for w in d.wrapup_codes
        ],
        "default_wrapup": d.default_wrapup,
    }  # fmt: skip
