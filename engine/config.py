"""The daemon's YAML configuration and its campaign files, parsed into typed objects.

Every error names the file, the line and the field, and says what was
expected: an operator fixing a trunk at 3 a.m. should not have to guess.
The parser works on `yaml.compose` nodes (not plain Python values) because
only the nodes remember the line each key came from. `config/schema.md`
documents every field.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from carriers.sip.errors import SipParseError
from carriers.sip.message import SipURI
from carriers.sip.parser import parse_address, parse_uri

if TYPE_CHECKING:
    from engine.email.config import EmailConfig
    from engine.sms.config import HttpConfig, SmsConfig

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "AgentConfig",
    "ConfigError",
    "DaemonConfig",
    "LogConfig",
    "RegistrarConfig",
    "TrunkConfig",
    "format_duration",
    "load_config",
    "load_trunks",
    "parse_duration",
]  # fmt: skip


class ConfigError(Exception):
    """A configuration problem, located: `file:line: field: message`."""

    def __init__(self, file: str, line: int | None, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {field}: {message}")


# --- located YAML access --------------------------------------------------------------

_NULL_TAG = "tag:yaml.org,2002:null"
_TYPE_NAMES: dict[type, str] = {
    str: "a string", int: "an integer", float: "a number", bool: "true or false",
}  # fmt: skip


class _Node:
    """A YAML mapping with the line of each key, for located errors."""

    def __init__(self, file: str, node: yaml.MappingNode, path: str) -> None:
        self.file, self.path = file, path
        self.line = node.start_mark.line + 1
        self.items: dict[str, yaml.Node] = {}
        self.lines: dict[str, int] = {}
        for key, value in node.value:
            name, line = str(key.value), key.start_mark.line + 1
            if name in self.items:
                # PyYAML keeps the last of two equal keys without a word; an
                # operator editing one of them would wonder why nothing changes.
                raise ConfigError(
                    file,
                    line,
                    self.field(name),
                    f"duplicate field (first on line {self.lines[name]})",
                )
            self.items[name], self.lines[name] = value, line

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, self.lines.get(key, self.line), self.field(key), message)

    def present(self, key: str) -> yaml.Node | None:
        """The key's value node; None when absent or an explicit null."""
        node = self.items.get(key)
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return None
        return node

    def scalar(self, key: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
        node = self.present(key)
        expected = _TYPE_NAMES.get(kind, kind.__name__)
        if node is None:
            if required:
                raise self.error(key, f"missing (expected {expected})")
            return default
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(key, f"expected {expected}, got a {_kind(node)}")
        if kind is str:
            # The text as written: YAML 1.1 would turn +15551234567 into an int
            # (dropping the +), 0123 into 83 and `no` into False.
            return str(node.value)
        value = yaml.safe_load(yaml.serialize(node))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise self.error(key, f"expected {expected}, got {node.value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {node.value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str | None:
        """An optional string field, as written."""
        value: str | None = self.scalar(key, str, default)
        return value

    def required_text(self, key: str) -> str:
        """A string field that must be present."""
        value: str = self.scalar(key, str, required=True)
        return value

    def number(self, key: str, kind: type, default: Any, *, low: float | None = None) -> Any:
        value = self.scalar(key, kind, default)
        if value is not None and low is not None and value < low:
            raise self.error(key, f"must be at least {low:g}, got {value:g}")
        return value

    def duration(
        self, key: str, default: float | None = None, *, required: bool = False, low: float = 0.0
    ) -> float | None:
        """A duration: "90s", "10m", "2h", "1h30m", "1d" or a number of seconds."""
        text = self.required_text(key) if required else self.text(key)
        if text is None:
            return default
        seconds = parse_duration(text)
        if seconds is None:
            raise self.error(key, f"expected {_DURATION_HELP}, got {text!r}")
        if seconds < low:
            raise self.error(key, f"must be at least {format_duration(low)}, got {text!r}")
        return seconds

    def mapping(self, key: str) -> _Node | None:
        node = self.present(key)
        if node is None:
            return None
        if not isinstance(node, yaml.MappingNode):
            raise self.error(key, f"expected a mapping, got a {_kind(node)}")
        return _Node(self.file, node, self.field(key))

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = (self.text(key) or default).lower()
        if value not in options:
            raise self.error(key, f"expected one of {', '.join(options)}; got {value!r}")
        return value

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.items:
            if key not in allowed:
                hint = _closest(key, allowed)
                extra = f" (did you mean '{hint}'?)" if hint else ""
                raise self.error(key, f"unknown field{extra}; expected one of {sorted(allowed)}")

    def retry(self, key: str, attempts: int, after: float) -> tuple[int, float]:
        """A `{attempts: N, after: DURATION}` mapping under `key` (tries in all,
        the first retry's wait), each part defaulting to the values given."""
        node = self.mapping(key)
        if node is None:
            return attempts, after
        node.check_keys({"attempts", "after"})
        tries = node.number("attempts", int, attempts, low=1)
        return tries, node.duration("after", after, low=0.1) or after


def _kind(node: yaml.Node) -> str:
    return {"MappingNode": "mapping", "SequenceNode": "list"}.get(type(node).__name__, "scalar")


def _closest(word: str, options: set[str]) -> str | None:
    matches = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _read_mapping(path: str | Path) -> _Node:
    """Read and compose a YAML file whose top level must be a mapping."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, None, "-", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(file, None, "-", f"not UTF-8 text ({exc.reason})") from exc
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ConfigError(file, line, "-", f"invalid YAML: {detail}") from exc
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1 if root is not None else 1
        raise ConfigError(file, line, "-", "expected a mapping of fields at the top level")
    return _Node(file, root, "")


# --- durations ------------------------------------------------------------------------

_DURATION_HELP = 'a duration like "90s", "10m", "2h", "1h30m", "1d" or a number of seconds'
_NUMBER_RE = re.compile(r"[+-]?\d+(?:\.\d*)?|[+-]?\.\d+")
_DURATION_RE = re.compile(
    r"(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?"
)
_UNITS = (86400.0, 3600.0, 60.0, 1.0)


def parse_duration(text: str) -> float | None:
    """Seconds in `text` ("90s", "10m", "2h", "1h30m", "1d", "45", "1.5"); None if not one."""
    text = text.strip().lower()
    if _NUMBER_RE.fullmatch(text):
        return float(text)
    match = _DURATION_RE.fullmatch(text)
    if match is None or not any(match.groups()):
        return None
    return sum(float(g) * unit for g, unit in zip(match.groups(), _UNITS, strict=True) if g)


def format_duration(seconds: float) -> str:
    """The shortest form parse_duration reads back: 600 -> "10m", 5400 -> "1h30m".

    Rounded to the millisecond; 0 gives "0s".
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {seconds!r}")
    ms = round(seconds * 1000)
    days, ms = divmod(ms, 86_400_000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if ms or not parts:
        whole, frac = divmod(ms, 1000)
        parts.append(f"{whole}.{frac:03d}".rstrip("0").rstrip(".") + "s")
    return "".join(parts)


# --- trunks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """One carrier trunk."""

    name: str
    uri: SipURI
    transport: str = "UDP"
    username: str | None = None
    password: str | None = None
    realm: str | None = None
    caller_id: str | None = None
    max_calls: int = 100
    calls_per_second: float = 10.0
    options_interval: float = 30.0


_TRUNK_FIELDS = {
    "name", "uri", "transport", "username", "password", "realm", "caller_id",
    "max_calls", "calls_per_second", "options_interval",
}  # fmt: skip


def _trunk(file: str, node: yaml.Node, index: int) -> TrunkConfig:
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(file, node.start_mark.line + 1, f"trunks[{index}]", "expected a mapping")
    m = _Node(file, node, f"trunks[{index}]")
    m.check_keys(_TRUNK_FIELDS)
    name = m.scalar("name", str, required=True)
    raw_uri = m.scalar("uri", str, required=True)
    try:
        uri = parse_uri(raw_uri)
    except SipParseError as exc:
        raise m.error("uri", f"not a SIP URI ({exc})") from exc
    if not isinstance(uri, SipURI):
        raise m.error("uri", f"expected a sip: or sips: URI, got {raw_uri!r}")
    transport = m.scalar("transport", str, uri.param("transport") or "udp").upper()
    if transport not in ("UDP", "TCP"):
        raise m.error("transport", f"expected udp or tcp, got {transport.lower()!r}")
    caller_id = m.scalar("caller_id", str)
    if caller_id is not None:
        try:
            parse_address(caller_id)
        except SipParseError as exc:
            raise m.error("caller_id", f"expected 'Name <sip:user@host>' ({exc})") from exc
    return TrunkConfig(
        name=name,
        uri=uri,
        transport=transport,
        username=m.scalar("username", str),
        password=m.scalar("password", str),
        realm=m.scalar("realm", str),
        caller_id=caller_id,
        max_calls=m.number("max_calls", int, 100, low=1),
        calls_per_second=m.number("calls_per_second", float, 10.0, low=0.001),
        options_interval=m.number("options_interval", float, 30.0, low=1.0),
    )


def _trunks(top: _Node) -> dict[str, TrunkConfig]:
    trunks_node = top.present("trunks")
    if trunks_node is None:
        raise top.error("trunks", "missing (expected a list of trunks)")
    if not isinstance(trunks_node, yaml.SequenceNode):
        raise top.error("trunks", f"expected a list, got a {_kind(trunks_node)}")
    if not trunks_node.value:
        raise top.error("trunks", "expected at least one trunk")
    trunks: dict[str, TrunkConfig] = {}
    for index, node in enumerate(trunks_node.value):
        trunk = _trunk(top.file, node, index)
        if trunk.name in trunks:
            line = node.start_mark.line + 1
            raise ConfigError(
                top.file, line, f"trunks[{index}].name", f"duplicate trunk {trunk.name!r}"
            )
        trunks[trunk.name] = trunk
    return trunks


def load_trunks(path: str | Path) -> dict[str, TrunkConfig]:
    """Read the `trunks:` list of a config file (the other fields are not checked)."""
    return _trunks(_read_mapping(path))


# --- agents -------------------------------------------------------------------------

AGENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """One agent: who they are, how their phone reaches us, what they may work.

    A phone that registers authenticates as `username`/`password`; one that
    does not gets the persistent call at the static `uri`. `campaigns` empty:
    the agent may work every agent campaign."""

    id: str
    name: str
    username: str
    password: str | None = None
    uri: SipURI | None = None
    campaigns: tuple[str, ...] = ()
    session_expires: int = 1800


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """The REGISTER server agents' phones use (RFC 3261 section 10)."""

    realm: str = "outdial"
    min_expires: int = 60
    max_expires: int = 3600


_AGENT_FIELDS = {"id", "name", "username", "password", "uri", "campaigns", "session_expires"}


def _str_list(m: _Node, key: str) -> tuple[str, ...]:
    node = m.present(key)
    if node is None:
        return ()
    if not isinstance(node, yaml.SequenceNode) or not all(
        isinstance(n, yaml.ScalarNode) for n in node.value
    ):
        raise m.error(key, "expected a list of names")
    return tuple(str(n.value) for n in node.value)


def _agent(file: str, node: yaml.Node, index: int) -> AgentConfig:
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(file, node.start_mark.line + 1, f"agents[{index}]", "expected a mapping")
    m = _Node(file, node, f"agents[{index}]")
    m.check_keys(_AGENT_FIELDS)
    agent_id = str(m.scalar("id", str, required=True))
    if not AGENT_ID_RE.fullmatch(agent_id):
        raise m.error("id", f"expected letters, digits, '_', '.', '-' (max 64), got {agent_id!r}")
    uri = None
    raw_uri = m.scalar("uri", str)
    if raw_uri is not None:
        try:
            parsed = parse_uri(raw_uri)
        except SipParseError as exc:
            raise m.error("uri", f"not a SIP URI ({exc})") from exc
        if not isinstance(parsed, SipURI):
            raise m.error("uri", f"expected a sip: URI, got {raw_uri!r}")
        uri = parsed
    password = m.scalar("password", str)
    if uri is None and password is None:
        raise m.error("password", "missing: a phone that registers needs a password (or give uri)")
    expires = m.number("session_expires", int, 1800, low=90)  # RFC 4028 Min-SE floor
    return AgentConfig(
        id=agent_id, name=str(m.scalar("name", str, agent_id)),
        username=str(m.scalar("username", str, agent_id)), password=password, uri=uri,
        campaigns=_str_list(m, "campaigns"), session_expires=expires,
    )  # fmt: skip


def _agents(top: _Node) -> dict[str, AgentConfig]:
    node = top.present("agents")
    if node is None:
        return {}
    if not isinstance(node, yaml.SequenceNode):
        raise top.error("agents", f"expected a list, got a {_kind(node)}")
    agents: dict[str, AgentConfig] = {}
    users: dict[str, str] = {}
    for index, item in enumerate(node.value):
        agent = _agent(top.file, item, index)
        line = item.start_mark.line + 1
        if agent.id in agents:
            raise ConfigError(
                top.file, line, f"agents[{index}].id", f"duplicate agent {agent.id!r}"
            )
        if agent.username in users:
            raise ConfigError(
                top.file, line, f"agents[{index}].username",
                f"username {agent.username!r} already used by agent {users[agent.username]!r}",
            )  # fmt: skip
        agents[agent.id], users[agent.username] = agent, agent.id
    return agents


def _registrar(top: _Node) -> RegistrarConfig:
    node = top.mapping("registrar")
    if node is None:
        return RegistrarConfig()
    node.check_keys({"realm", "min_expires", "max_expires"})
    low = node.number("min_expires", int, 60, low=1)
    high = node.number("max_expires", int, 3600, low=1)
    if high < low:
        raise node.error("max_expires", f"must be at least min_expires ({low}), got {high}")
    return RegistrarConfig(str(node.scalar("realm", str, "outdial")), low, high)


# --- the daemon -----------------------------------------------------------------------

_DEFAULT_STORE = "sqlite:///var/outdial.db"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "json", "console")


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging: `format` "auto" is readable on a terminal, JSON lines otherwise."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """The daemon's config file. Relative `store_url`, `control_socket`,
    `tts_cache` and `amd_samples` paths are relative to the working directory;
    `campaigns_dir` and `prompts_dir` to the config file's directory (already
    resolved here)."""

    path: Path
    trunks: dict[str, TrunkConfig]
    store_url: str = _DEFAULT_STORE
    control_socket: Path = Path("var/outdial.sock")
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    rtp_ports: tuple[int, int] = (20000, 30000)
    campaigns_dir: Path = Path("campaigns")
    prompts_dir: Path = Path("prompts")
    log: LogConfig = field(default_factory=LogConfig)
    shutdown_grace: float = 30.0
    agents: dict[str, AgentConfig] = field(default_factory=dict)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    # "enforce": the built-in calling-time law applies to every voice campaign;
    # "lab": it does not (campaign hours still do), allowed only when every
    # trunk is on a loopback address (a test rig with a simulated carrier).
    legal_hours: str = "enforce"
    tts_cache: Path = Path("var/tts")  # rendered IVR prompts, by (engine, voice, text)
    amd_samples: Path = Path("var/amd-samples")  # recorded AMD samples, by campaign
    sms: SmsConfig | None = None  # the `sms:` section (engine/sms/config.py)
    email: EmailConfig | None = None  # the `email:` section (engine/email/config.py)
    http: HttpConfig | None = None  # the HTTP listener (webhooks; the API extends it)


_DAEMON_FIELDS = {
    "trunks", "store_url", "control_socket", "sip_host", "sip_port", "rtp_ports",
    "campaigns_dir", "prompts_dir", "log", "shutdown_grace", "agents", "registrar",
    "compliance", "tts_cache", "amd_samples", "sms", "http", "email",
}  # fmt: skip
_HOSTNAME_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
# sockaddr_un.sun_path holds 108 bytes on Linux, including the terminating NUL.
_SUN_PATH_MAX = 107


def _store_url(m: _Node) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = m.text("store_url", _DEFAULT_STORE) or _DEFAULT_STORE
    expected = "sqlite:///PATH or postgresql+psycopg://user:password@host/db"
    try:
        url = make_url(text)
    except ArgumentError:
        raise m.error("store_url", f"expected a URL like {expected}, got {text!r}") from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise m.error("store_url", f"unsupported database {backend!r}; expected {expected}")
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        raise m.error("store_url", "an in-memory SQLite store loses every attempt; give a file")
    return text


def _control_socket(m: _Node) -> Path:
    text = m.text("control_socket") or "var/outdial.sock"
    if len(os.fsencode(text)) > _SUN_PATH_MAX:
        raise m.error("control_socket", f"path too long for a Unix socket (max {_SUN_PATH_MAX})")
    return Path(text)


def _sip_host(m: _Node) -> str:
    text = m.text("sip_host") or "127.0.0.1"
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOSTNAME_RE.fullmatch(text):
            raise m.error(
                "sip_host", f"expected an IP address or host name, got {text!r}"
            ) from None
    return text


def _rtp_ports(m: _Node) -> tuple[int, int]:
    node = m.present("rtp_ports")
    if node is None:
        return (20000, 30000)
    expected = "a list of two ports [low, high], e.g. [20000, 30000]"
    if isinstance(node, yaml.ScalarNode) and re.fullmatch(r"\d+\s*-\s*\d+", str(node.value)):
        low, high = (int(p) for p in str(node.value).split("-"))
    elif isinstance(node, yaml.SequenceNode) and len(node.value) == 2:
        values = [yaml.safe_load(yaml.serialize(n)) for n in node.value]
        if not all(type(v) is int for v in values):
            raise m.error("rtp_ports", f"expected {expected}, got {values!r}")
        low, high = values
    else:
        raise m.error("rtp_ports", f"expected {expected}")
    # RTP takes the even ports of [low, high), RTCP the odd port above each
    # (RFC 3550 section 11): low must be even and the range hold one pair.
    if not 1024 <= low < high <= 65535:
        raise m.error("rtp_ports", f"expected 1024 <= low < high <= 65535, got [{low}, {high}]")
    if low % 2:
        raise m.error("rtp_ports", f"low port must be even (RTP even, RTCP odd), got {low}")
    if high - low < 2:
        raise m.error("rtp_ports", f"range [{low}, {high}) holds no RTP/RTCP port pair")
    return (low, high)


def _directory(m: _Node, key: str, base: Path) -> Path:
    text = m.text(key) or key.removesuffix("_dir")
    return base / Path(text).expanduser()


def _log(m: _Node) -> LogConfig:
    node = m.mapping("log")
    if node is None:
        return LogConfig()
    node.check_keys({"level", "format"})
    return LogConfig(
        level=node.choice("level", LOG_LEVELS, "info"),
        format=node.choice("format", LOG_FORMATS, "auto"),
    )


def load_config(path: str | Path) -> DaemonConfig:
    """Read and validate the daemon's config file; ConfigError names file, line and field."""
    from engine.email.config import parse_email
    from engine.sms.config import parse_http, parse_sms

    top = _read_mapping(path)
    top.check_keys(_DAEMON_FIELDS)
    base = Path(path).absolute().parent
    sip_port = top.number("sip_port", int, 5060, low=0)
    if sip_port > 65535:
        raise top.error("sip_port", f"expected a port 0..65535 (0: any free port), got {sip_port}")
    trunks = _trunks(top)
    return DaemonConfig(
        path=Path(path).absolute(),
        trunks=trunks,
        store_url=_store_url(top),
        control_socket=_control_socket(top),
        sip_host=_sip_host(top),
        sip_port=sip_port,
        rtp_ports=_rtp_ports(top),
        campaigns_dir=_directory(top, "campaigns_dir", base),
        prompts_dir=_directory(top, "prompts_dir", base),
        log=_log(top),
        shutdown_grace=top.duration("shutdown_grace", 30.0) or 0.0,
        agents=_agents(top),
        registrar=_registrar(top),
        legal_hours=_legal_hours(top, trunks),
        tts_cache=Path(top.text("tts_cache") or "var/tts"),
        amd_samples=Path(top.text("amd_samples") or "var/amd-samples").expanduser(),
        sms=parse_sms(top),
        http=parse_http(top),
        email=parse_email(top, base),
    )


def _legal_hours(top: _Node, trunks: dict[str, TrunkConfig]) -> str:
    node = top.mapping("compliance")
    if node is None:
        return "enforce"
    node.check_keys({"legal_hours"})
    mode = node.choice("legal_hours", ("enforce", "lab"), "enforce")
    if mode == "lab":
        remote = [t.name for t in trunks.values() if not _loopback(t.uri.host)]
        if remote:
            raise node.error(
                "legal_hours",
                "lab turns the built-in calling-time law off and is only allowed when every "
                f"trunk is on a loopback address; not: {', '.join(sorted(remote))}",
            )
    return mode


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
