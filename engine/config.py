"""The daemon's YAML configuration, parsed into typed objects.

Every error names the file, the line and the field, and says what was
expected: an operator fixing a trunk at 3 a.m. should not have to guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from carriers.sip.errors import SipParseError
from carriers.sip.message import SipURI
from carriers.sip.parser import parse_address, parse_uri


class ConfigError(Exception):
    """A configuration problem, located: `file:line: field: message`."""

    def __init__(self, file: str, line: int | None, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {field}: {message}")


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


class _Node:
    """A YAML mapping with the line of each key, for located errors."""

    def __init__(self, file: str, node: yaml.MappingNode, path: str) -> None:
        self.file, self.path = file, path
        self.line = node.start_mark.line + 1
        self.items: dict[str, yaml.Node] = {}
        for key, value in node.value:
            self.items[str(key.value)] = value

    def error(self, key: str, message: str) -> ConfigError:
        node = self.items.get(key)
        line = node.start_mark.line + 1 if node is not None else self.line
        return ConfigError(self.file, line, f"{self.path}.{key}" if self.path else key, message)

    def scalar(self, key: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
        node = self.items.get(key)
        if node is None:
            if required:
                raise self.error(key, f"missing (expected {kind.__name__})")
            return default
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(key, f"expected a {kind.__name__}, got a {_kind(node)}")
        value = yaml.safe_load(yaml.serialize(node))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is str and value is not None and not isinstance(value, str):
            value = str(value)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise self.error(key, f"expected a {kind.__name__}, got {value!r}")
        return value

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.items:
            if key not in allowed:
                hint = _closest(key, allowed)
                extra = f" (did you mean '{hint}'?)" if hint else ""
                raise self.error(key, f"unknown field{extra}; expected one of {sorted(allowed)}")


def _kind(node: yaml.Node) -> str:
    return {"MappingNode": "mapping", "SequenceNode": "list"}.get(type(node).__name__, "scalar")


def _closest(word: str, options: set[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


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
    max_calls = m.scalar("max_calls", int, 100)
    cps = m.scalar("calls_per_second", float, 10.0)
    if max_calls < 1:
        raise m.error("max_calls", "must be at least 1")
    if cps <= 0:
        raise m.error("calls_per_second", "must be above 0")
    return TrunkConfig(
        name=name,
        uri=uri,
        transport=transport,
        username=m.scalar("username", str),
        password=m.scalar("password", str),
        realm=m.scalar("realm", str),
        caller_id=caller_id,
        max_calls=max_calls,
        calls_per_second=cps,
        options_interval=m.scalar("options_interval", float, 30.0),
    )


def load_trunks(path: str | Path) -> dict[str, TrunkConfig]:
    """Read the `trunks:` list of a config file."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, None, "-", f"cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(file, None, "-", f"not UTF-8 text ({exc.reason})") from exc
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(file, line, "-", f"invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(file, 1, "-", "expected a mapping at the top level")
    top = _Node(file, root, "")
    trunks_node = top.items.get("trunks")
    if trunks_node is None:
        raise top.error("trunks", "missing (expected a list of trunks)")
    if not isinstance(trunks_node, yaml.SequenceNode):
        raise top.error("trunks", f"expected a list, got a {_kind(trunks_node)}")
    trunks: dict[str, TrunkConfig] = {}
    for index, node in enumerate(trunks_node.value):
        trunk = _trunk(file, node, index)
        if trunk.name in trunks:
            line = node.start_mark.line + 1
            raise ConfigError(
                file, line, f"trunks[{index}].name", f"duplicate trunk {trunk.name!r}"
            )
        trunks[trunk.name] = trunk
    return trunks
