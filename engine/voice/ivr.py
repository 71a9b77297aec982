"""Outbound IVR flows: the steps a person hears and keys through on an answered call.

A flow is a small graph of named steps (play, menu, collect, opt_out, transfer,
set_result, hangup) read from a flow file (`config/flows/*.yaml`, see
`config/flows/example.yaml` for the schema) or a campaign's `ivr:` mapping.
Everything is checked at load time and every error is a `ConfigError` naming
the file, the line and the field: unknown kinds and keys, references to
missing steps, DTMF digits, durations, `{contact.COLUMN}` placeholders, WAV
files, E.164 numbers, steps no path from `start` reaches, and loops.

Loops: only a menu or a collect waits for the caller. An edge taken on valid
input (a menu option, a collect's `next`) is a "keyed" edge; every other edge
(`next` of play/opt_out/set_result, any `on_fail`) is taken with no key pressed.
A cycle made only of unkeyed edges could run forever with nobody on the line
(play > play > play, or a menu whose `on_fail` leads back to itself), so it is
an error. A menu that re-prompts itself is fine: its retries are bounded. A
step with no `next` (or no `on_fail`, for the failure path) ends the call with
an implicit hangup; with unkeyed cycles ruled out, every step therefore reaches
an end (hangup or transfer) on any sequence of timeouts.

The interpreter is `engine.voice.ivr_session`; this module is pure data and
validation (it reads WAV files only to check them).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
import yaml

from dsp.wav import WavError, decode_wav
from engine.config import ConfigError, _closest, _Node, _read_mapping
from engine.voice.tts import MissingColumn, TemplateError, placeholders

__all__ = [
    "DTMF_DIGITS",
    "CollectStep",
    "Flow",
    "HangupStep",
    "MenuStep",
    "MissingColumn",  # from engine.voice.tts, re-exported: the dial loop imports it here
    "OptOutStep",
    "PlayStep",
    "Prompt",
    "SetResultStep",
    "Step",
    "TransferNumberStep",
    "TransferQueueStep",
    "check_queues",
    "load_flow",
    "parse_flow",
]  # fmt: skip

DTMF_DIGITS = "0123456789*#ABCD"  # RFC 4733 events 0-15
REFER_MODES = ("never", "auto")
MAX_TIMEOUT = 60.0
MAX_RETRIES = 10
MAX_DIGITS = 32
THIS_CAMPAIGN = "this"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


# --- the model --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prompt:
    """What to play: a WAV file, or text to speak (with placeholders) in `voice`."""

    wav: Path | None = None
    tts: str | None = None
    voice: str | None = None

    @property
    def columns(self) -> list[str]:
        return placeholders(self.tts) if self.tts is not None else []


@dataclass(frozen=True, slots=True)
class PlayStep:
    name: str
    line: int
    prompt: Prompt
    next: str | None = None


@dataclass(frozen=True, slots=True)
class MenuStep:
    """Play `prompt` (a key stops it), wait `timeout` for one key; a wrong key or
    no key re-prompts (after `invalid` / `no_input`) up to `retries` times, then
    goes to `on_fail`."""

    name: str
    line: int
    prompt: Prompt
    options: Mapping[str, str]
    timeout: float = 5.0
    retries: int = 2
    invalid: Prompt | None = None
    no_input: Prompt | None = None
    on_fail: str | None = None


@dataclass(frozen=True, slots=True)
class CollectStep:
    """Collect `min_digits`..`max_digits` keys, ended by `terminator`, by reaching
    `max_digits` (at most MAX_DIGITS when not given), or by `timeout` between
    keys; stored as `store_as`."""

    name: str
    line: int
    prompt: Prompt | None
    store_as: str
    min_digits: int = 1
    max_digits: int | None = None
    terminator: str | None = None
    timeout: float = 5.0
    retries: int = 2
    invalid: Prompt | None = None
    no_input: Prompt | None = None
    secret: bool = False
    next: str | None = None
    on_fail: str | None = None


@dataclass(frozen=True, slots=True)
class OptOutStep:
    """Add the called number to `list` (None: the campaign's opt-out list), say `confirm`."""

    name: str
    line: int
    list: str | None = None
    confirm: Prompt | None = None
    next: str | None = None


@dataclass(frozen=True, slots=True)
class TransferQueueStep:
    """Hand the call to an agent of `campaign` (None: this campaign)."""

    name: str
    line: int
    campaign: str | None = None
    queue_line: int = 0
    on_fail: str | None = None


@dataclass(frozen=True, slots=True)
class TransferNumberStep:
    """Connect the call to `number` (E.164): a bridged new leg, or SIP REFER when
    `refer` is "auto" and the trunk accepts it (falling back to the bridge)."""

    name: str
    line: int
    number: str
    refer: str = "never"
    on_fail: str | None = None


@dataclass(frozen=True, slots=True)
class SetResultStep:
    name: str
    line: int
    value: str
    next: str | None = None


@dataclass(frozen=True, slots=True)
class HangupStep:
    name: str
    line: int


Step = (
    PlayStep | MenuStep | CollectStep | OptOutStep | TransferQueueStep | TransferNumberStep
    | SetResultStep | HangupStep
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Flow:
    """A validated flow: `steps` in file order, each with its line in `file`."""

    start: str
    steps: Mapping[str, Step]
    file: str
    line: int = 1
    field: str = ""  # the flow's path in its file ("" for a flow file, "ivr" in a campaign)
    voice: str | None = None

    def prompts(self) -> Iterator[Prompt]:
        for step in self.steps.values():
            yield from (p for p in _step_prompts(step) if p is not None)

    @property
    def columns(self) -> frozenset[str]:
        """Every contact column the flow's prompts name (check a contact has them)."""
        return frozenset(c for p in self.prompts() for c in p.columns)


def _step_prompts(step: Step) -> tuple[Prompt | None, ...]:
    match step:
        case PlayStep():
            return (step.prompt,)
        case MenuStep() | CollectStep():
            return (step.prompt, step.invalid, step.no_input)
        case OptOutStep():
            return (step.confirm,)
    return ()


# --- parsing ----------------------------------------------------------------------------

# Each kind and the routing keys its step may carry (beside the kind, or inside its body).
_ROUTES: dict[str, frozenset[str]] = {
    "play": frozenset({"next"}),
    "menu": frozenset({"on_fail"}),
    "collect": frozenset({"next", "on_fail", "store_as"}),
    "opt_out": frozenset({"next"}),
    "transfer": frozenset({"on_fail"}),
    "set_result": frozenset({"next"}),
    "hangup": frozenset(),
}
_ALL_ROUTES = frozenset().union(*_ROUTES.values())
_PROMPT_KEYS = {"wav", "tts", "voice"}


@dataclass(frozen=True, slots=True)
class _Ref:
    """A step name in the flow, where it was written, and whether a key was pressed."""

    source: str
    target: str
    node: _Node
    key: str
    keyed: bool


class _Parser:
    def __init__(self, prompts_dir: Path | None) -> None:
        self.prompts_dir = prompts_dir
        self.refs: list[_Ref] = []

    # -- prompts

    def prompt(self, owner: _Node, key: str, *, required: bool = False) -> Prompt | None:
        node = _sub(owner, key)
        if node is None:
            if required:
                raise owner.error(key, "missing (expected {wav: FILE} or {tts: TEXT})")
            return None
        return self.prompt_body(node, owner, key)

    def prompt_body(self, p: _Node, owner: _Node, key: str) -> Prompt:
        p.check_keys(_PROMPT_KEYS)
        wav, tts = p.present("wav"), p.present("tts")
        if wav is not None and tts is not None:
            raise p.error("tts", "give wav or tts, not both")
        if wav is None and tts is None:
            raise owner.error(key, "expected {wav: FILE} or {tts: TEXT}")
        voice = p.text("voice")
        if tts is not None:
            text = p.required_text("tts")
            if not text.strip():
                raise p.error("tts", "must not be empty")
            try:
                placeholders(text)
            except TemplateError as exc:
                raise p.error("tts", str(exc)) from None
            return Prompt(tts=text, voice=voice)
        if voice is not None:
            raise p.error("voice", "a voice applies to tts only, not to a wav file")
        return Prompt(wav=self.wav(p, p.required_text("wav")))

    def wav(self, p: _Node, text: str) -> Path:
        if self.prompts_dir is None:
            return Path(text).expanduser()
        path = self.prompts_dir / Path(text).expanduser()
        try:
            _, info = decode_wav(path.read_bytes())
        except FileNotFoundError:
            raise p.error("wav", f"no such file: {path} (expected a WAV file)") from None
        except OSError as exc:
            raise p.error("wav", f"cannot read {path}: {exc.strerror or exc}") from None
        except WavError as exc:
            raise p.error("wav", f"{path} is not a usable WAV file: {exc}") from None
        if info.frames == 0:
            raise p.error("wav", f"{path} holds no audio")
        return path

    # -- routing and small fields

    def route(
        self, step: str, s: _Node, body: _Node | None, key: str, *, keyed: bool = False
    ) -> str:
        """A step reference written beside the kind or inside its body (not both).

        `keyed`: taken only on a valid key (a menu option, a collect's next)."""
        where = _holder(s, body, key)
        name = where.text(key)
        if name is not None:
            self.refs.append(_Ref(step, name, where, key, keyed))
        return name or ""

    @staticmethod
    def timing(b: _Node) -> tuple[float, int]:
        timeout = b.duration("timeout", 5.0, low=0.5) or 5.0
        if timeout > MAX_TIMEOUT:
            raise b.error("timeout", f"must be at most {MAX_TIMEOUT:g}s")
        retries = int(b.number("retries", int, 2, low=0))
        if retries > MAX_RETRIES:
            raise b.error("retries", f"must be at most {MAX_RETRIES}, got {retries}")
        return timeout, retries

    @staticmethod
    def name(m: _Node, key: str, what: str) -> str:
        value = m.required_text(key)
        if not _NAME_RE.fullmatch(value):
            raise m.error(key, f"expected a {what}: 1-64 letters, digits, '.', '_' or '-'")
        return value

    # -- steps

    def step(self, name: str, s: _Node) -> Step:
        kinds = [k for k in s.items if k in _ROUTES]
        if not kinds:
            s.check_keys(set(_ROUTES) | _ALL_ROUTES)
            raise ConfigError(
                s.file, s.line, s.path, f"no step kind; expected one of {', '.join(_ROUTES)}"
            )
        if len(kinds) > 1:
            raise s.error(kinds[1], f"a step has one kind; this one is already {kinds[0]!r}")
        kind = kinds[0]
        s.check_keys({kind} | _ROUTES[kind])
        line = s.line
        match kind:
            case "play":
                body = _sub(s, "play")
                if body is None:
                    raise s.error("play", "expected {wav: FILE} or {tts: TEXT}")
                prompt = self.prompt_body(body, s, "play")
                return PlayStep(name, line, prompt, self.route(name, s, None, "next") or None)
            case "menu":
                return self.menu(name, s, self.body(s, kind))
            case "collect":
                return self.collect(name, s, self.body(s, kind))
            case "opt_out":
                return self.opt_out(name, s, _sub(s, "opt_out"))
            case "transfer":
                return self.transfer(name, s, self.body(s, kind))
            case "set_result":
                value = self.name(s, "set_result", "result")
                return SetResultStep(name, line, value, self.route(name, s, None, "next") or None)
        body = _sub(s, "hangup")  # hangup: {} (or empty): nothing to set
        if body is not None:
            body.check_keys(set())
        return HangupStep(name, line)

    @staticmethod
    def body(s: _Node, kind: str) -> _Node:
        body = _sub(s, kind)
        if body is None:
            raise s.error(kind, "expected a mapping of the step's fields")
        return body

    def menu(self, name: str, s: _Node, b: _Node) -> MenuStep:
        b.check_keys({"prompt", "options", "timeout", "retries", "invalid", "no_input", "on_fail"})
        prompt = self.prompt(b, "prompt", required=True)
        assert prompt is not None
        table = _sub(b, "options")
        if table is None or not table.items:
            raise b.error("options", 'missing (expected digits to steps, e.g. {"1": confirm})')
        options: dict[str, str] = {}
        for digit in table.items:
            if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
                raise table.error(digit, f"expected one DTMF key of {DTMF_DIGITS}, got {digit!r}")
            if digit.upper() in options:
                raise table.error(digit, f"key {digit.upper()!r} given twice")
            table.required_text(digit)
            options[digit.upper()] = self.route(name, table, None, digit, keyed=True)
        timeout, retries = self.timing(b)
        invalid, no_input = self.prompt(b, "invalid"), self.prompt(b, "no_input")
        on_fail = self.route(name, s, b, "on_fail") or None
        return MenuStep(name, s.line, prompt, options, timeout, retries, invalid, no_input, on_fail)

    def collect(self, name: str, s: _Node, b: _Node) -> CollectStep:
        b.check_keys({
            "prompt", "min_digits", "max_digits", "terminator", "timeout", "retries",
            "invalid", "no_input", "secret", "store_as", "next", "on_fail",
        })  # fmt: skip
        prompt = self.prompt(b, "prompt")
        low = int(b.number("min_digits", int, 1, low=1))
        high: int | None = b.number("max_digits", int, None, low=1)
        for key, value in (("min_digits", low), ("max_digits", high)):
            if value is not None and value > MAX_DIGITS:
                raise b.error(key, f"must be at most {MAX_DIGITS}, got {value}")
        if high is not None and high < low:
            raise b.error("max_digits", f"must be at least min_digits ({low}), got {high}")
        terminator = b.text("terminator")
        if terminator is not None and terminator not in ("#", "*"):
            raise b.error("terminator", f'expected "#" or "*", got {terminator!r}')
        if high is None and terminator is None:
            raise s.error("collect", "give max_digits, a terminator, or both")
        timeout, retries = self.timing(b)
        where = _holder(s, b, "store_as")
        store_as = self.name(where, "store_as", "name") if "store_as" in where.items else name
        return CollectStep(
            name, s.line, prompt, store_as, low, high, terminator, timeout, retries,
            self.prompt(b, "invalid"), self.prompt(b, "no_input"),
            bool(b.scalar("secret", bool, False)),
            self.route(name, s, b, "next", keyed=True) or None,
            self.route(name, s, b, "on_fail") or None,
        )  # fmt: skip

    def opt_out(self, name: str, s: _Node, b: _Node | None) -> OptOutStep:
        if b is None:
            return OptOutStep(name, s.line, next=self.route(name, s, None, "next") or None)
        b.check_keys({"list", "confirm", "next"})
        dnc = self.name(b, "list", "list name") if b.present("list") is not None else None
        confirm = self.prompt(b, "confirm")
        return OptOutStep(name, s.line, dnc, confirm, self.route(name, s, b, "next") or None)

    def transfer(self, name: str, s: _Node, b: _Node) -> Step:
        b.check_keys({"queue", "number", "refer", "on_fail"})
        has_queue, has_number = b.present("queue") is not None, b.present("number") is not None
        if has_queue == has_number:
            raise s.error("transfer", "expected one of queue: CAMPAIGN (or this) or number: E164")
        if has_queue:
            if "refer" in b.items:
                raise b.error("refer", "applies to a number transfer only")
            queue = self.name(b, "queue", "campaign name (or this)")
            campaign = None if queue == THIS_CAMPAIGN else queue
            on_fail = self.route(name, s, b, "on_fail") or None
            return TransferQueueStep(name, s.line, campaign, b.lines["queue"], on_fail)
        number = _e164(b, "number")
        refer = b.choice("refer", REFER_MODES, "never")
        return TransferNumberStep(
            name, s.line, number, refer, self.route(name, s, b, "on_fail") or None
        )


def _holder(s: _Node, body: _Node | None, key: str) -> _Node:
    """The step or its body, whichever holds `key` (the step if neither); not both."""
    if body is None or key not in body.items:
        return s
    if key in s.items:
        raise body.error(key, f"given twice (also on line {s.lines[key]})")
    return body


def _sub(owner: _Node, key: str) -> _Node | None:
    """owner.mapping(key), its own errors (a missing field) on the key's line, not
    on its first child's."""
    node = owner.mapping(key)
    if node is not None:
        node.line = owner.lines[key]
    return node


def _e164(b: _Node, key: str) -> str:
    text = b.required_text(key).strip()
    example = "expected an E.164 number like +12125550100"
    if not text.startswith("+"):
        raise b.error(key, f"{example} (with + and the country code), got {text!r}")
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise b.error(key, f"{example}, got {text!r} ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        raise b.error(key, f"{example}; {text!r} is not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- the graph --------------------------------------------------------------------------


def _check_refs(top: _Node, start: str, steps: dict[str, Step], refs: list[_Ref]) -> None:
    names = set(steps)
    for ref in [_Ref("", start, top, "start", False), *refs]:
        if ref.target not in names:
            hint = _closest(ref.target, names)
            extra = f" (did you mean '{hint}'?)" if hint else ""
            raise ref.node.error(ref.key, f"no step {ref.target!r}{extra}")


def _check_reachable(s: _Node, start: str, steps: dict[str, Step], refs: list[_Ref]) -> None:
    seen, todo = {start}, [start]
    while todo:
        here = todo.pop()
        for ref in refs:
            if ref.source == here and ref.target not in seen:
                seen.add(ref.target)
                todo.append(ref.target)
    for name in steps:
        if name not in seen:
            raise s.error(name, f"unreachable: no path from start step {start!r} leads here")


def _check_loops(steps: dict[str, Step], refs: list[_Ref]) -> None:
    # Each step has at most one unkeyed edge, so following them from each step in
    # turn finds every unkeyed cycle.
    unkeyed = {ref.source: ref for ref in refs if not ref.keyed}
    done: set[str] = set()
    for first in steps:
        path: list[str] = []
        here: str | None = first
        while here is not None and here not in done:
            if here in path:
                cycle = [*path[path.index(here) :], here]
                closing = unkeyed[path[-1]]
                raise closing.node.error(
                    closing.key,
                    f"steps {' > '.join(cycle)} loop with no key pressed (only a menu option "
                    "or a collect's next may lead back; a menu re-prompts itself by retries)",
                )
            path.append(here)
            ref = unkeyed.get(here)
            here = ref.target if ref is not None else None
        done.update(path)


# --- entry points -----------------------------------------------------------------------

_FLOW_KEYS = {"start", "steps", "voice", "description"}


def parse_flow(node: _Node, prompts_dir: str | Path | None = None) -> Flow:
    """A flow from its mapping (a campaign's `ivr:` or a flow file's top level).

    WAV paths are relative to `prompts_dir` and checked (read and decoded) when
    it is given; with None they are kept as written and not checked."""
    node.check_keys(_FLOW_KEYS)
    parser = _Parser(Path(prompts_dir) if prompts_dir is not None else None)
    start = node.required_text("start")
    table = _sub(node, "steps")
    if table is None or not table.items:
        raise node.error("steps", "missing (expected a mapping of step names to steps)")
    steps: dict[str, Step] = {}
    for name, value in table.items.items():
        if not _NAME_RE.fullmatch(name):
            raise table.error(name, "expected a step name: 1-64 letters, digits, '.', '_' or '-'")
        if not isinstance(value, yaml.MappingNode):
            raise table.error(name, "expected a mapping with one step kind, e.g. {hangup: {}}")
        step_node = _Node(table.file, value, table.field(name))
        step_node.line = table.lines[name]
        steps[name] = parser.step(name, step_node)
    _check_refs(node, start, steps, parser.refs)
    _check_reachable(table, start, steps, parser.refs)
    _check_loops(steps, parser.refs)
    return Flow(start, steps, node.file, node.line, node.path, node.text("voice"))


def load_flow(path: str | Path, prompts_dir: str | Path | None = None) -> Flow:
    """Read and validate a flow file; ConfigError names file, line and field."""
    return parse_flow(_read_mapping(path), prompts_dir)


def check_queues(
    flow: Flow, *, has_agents: bool, agent_campaigns: Collection[str] | None = None
) -> None:
    """Transfers to agents: `queue: this` needs agents in this campaign; another
    campaign must be one of `agent_campaigns` (not checked when None: run again
    once every campaign is loaded)."""
    for step in flow.steps.values():
        if not isinstance(step, TransferQueueStep):
            continue
        path = f"{flow.field}.steps" if flow.field else "steps"
        field = f"{path}.{step.name}.transfer.queue"
        if step.campaign is None and not has_agents:
            message = "queue: this needs a campaign with agents (preview, progressive, ...)"
            raise ConfigError(flow.file, step.queue_line, field, message)
        if agent_campaigns is not None and step.campaign is not None:
            if step.campaign not in agent_campaigns:
                hint = _closest(step.campaign, set(agent_campaigns))
                extra = f" (did you mean '{hint}'?)" if hint else ""
                message = f"no campaign with agents named {step.campaign!r}{extra}"
                raise ConfigError(flow.file, step.queue_line, field, message)
