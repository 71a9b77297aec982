"""The IVR interpreter: one answered call walking a `Flow`, sans-IO.

`IvrSession` reads no clock and does no I/O. The media layer feeds it what
happened (`start`, `on_prompt_done`, `on_digit`, `on_timeout`,
`on_transfer_result`, `on_hangup`, each with `now`) and performs the actions
each call returns, in order:

- `Play(source, voice, barge_in)`: play a WAV file (`source` a Path) or speak
  `source` (a str, placeholders already filled) in `voice`; when it has been
  heard in full call `on_prompt_done`. At most one prompt plays at a time.
- `StopPlayback()`: stop the prompt now (a key barged in); do not report
  `on_prompt_done` for it.
- `StartTimer(seconds, token)` / `CancelTimer(token)`: call
  `on_timeout(token)` after `seconds` unless cancelled. A stale token (a
  cancelled timer that fired anyway) is ignored, so a race is harmless.
- `OptOut(list_name, source)`: add the called number to the do-not-contact
  list (`list_name` None: the campaign's opt-out list).
- `TransferQueue(campaign)` / `TransferNumber(number, refer)`: connect the call
  to an agent (`campaign` None: this campaign's) or to a number, then report
  `on_transfer_result(ok)`. After a successful transfer the session is done.
- `SetResult(value)`, `StoreValue(name, value)`: record on the attempt.
- `Hangup(reason)`: hang up the call; the session is done.

When the caller hangs up, call `on_hangup`. `history` (step records, JSON-able
with `history_json()`) and `summary()` go on the attempt record.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.voice.ivr import (
    DTMF_DIGITS,
    MAX_DIGITS,
    CollectStep,
    Flow,
    HangupStep,
    MenuStep,
    OptOutStep,
    PlayStep,
    Prompt,
    SetResultStep,
    Step,
    TransferNumberStep,
    TransferQueueStep,
)
from engine.voice.tts import fill

__all__ = [
    "Action",
    "CancelTimer",
    "Hangup",
    "IvrSession",
    "OptOut",
    "Play",
    "SetResult",
    "StartTimer",
    "StepRecord",
    "StopPlayback",
    "StoreValue",
    "TransferNumber",
    "TransferQueue",
]  # fmt: skip


# --- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Play:
    source: Path | str  # a Path: a WAV file; a str: text to speak
    voice: str | None = None
    barge_in: bool = False  # a key stops it (the session then sends StopPlayback)


@dataclass(frozen=True, slots=True)
class StopPlayback:
    pass


@dataclass(frozen=True, slots=True)
class StartTimer:
    seconds: float
    token: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    token: int


@dataclass(frozen=True, slots=True)
class OptOut:
    list_name: str | None
    source: str = "ivr"


@dataclass(frozen=True, slots=True)
class TransferQueue:
    campaign: str | None  # None: this campaign's agents


@dataclass(frozen=True, slots=True)
class TransferNumber:
    number: str  # E.164
    refer: str = "never"  # "auto": SIP REFER if the trunk accepts it, else bridge


@dataclass(frozen=True, slots=True)
class SetResult:
    value: str


@dataclass(frozen=True, slots=True)
class StoreValue:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str  # "hangup" (a hangup step) or "end of flow" (a step with nowhere next)


Action = (
    Play | StopPlayback | StartTimer | CancelTimer | OptOut | TransferQueue | TransferNumber
    | SetResult | StoreValue | Hangup
)  # fmt: skip


# --- history ----------------------------------------------------------------------------


@dataclass(slots=True)
class StepRecord:
    """One step the caller went through: keys pressed (with times), each try's
    result ("invalid 7", "timeout", "option 9"), and how the step ended."""

    step: str
    kind: str
    entered_at: float
    left_at: float | None = None
    digits: list[tuple[str, float]] = field(default_factory=list)
    tries: list[str] = field(default_factory=list)
    outcome: str | None = None
    next: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step, "kind": self.kind, "entered_at": self.entered_at,
            "left_at": self.left_at, "digits": [{"digit": d, "at": t} for d, t in self.digits],
            "tries": list(self.tries), "outcome": self.outcome, "next": self.next,
        }  # fmt: skip

    def label(self) -> str:
        inputs = [t.split(" ", 1)[-1] if t != "timeout" else t for t in self.tries]
        text = f"{self.step}: {' '.join(inputs)}" if inputs else self.step
        if self.outcome in ("caller hung up", "transfer failed"):
            text += f" ({self.outcome})"
        return text


_KINDS: dict[type, str] = {
    PlayStep: "play", MenuStep: "menu", CollectStep: "collect", OptOutStep: "opt_out",
    TransferQueueStep: "transfer", TransferNumberStep: "transfer",
    SetResultStep: "set_result", HangupStep: "hangup",
}  # fmt: skip


class _Phase(enum.Enum):
    PROMPT = "prompt"  # the step's prompt is playing
    MESSAGE = "message"  # a menu's or collect's invalid / no-input message is playing
    WAIT = "wait"  # waiting for a key, a timer running
    TRANSFER = "transfer"  # waiting for on_transfer_result
    DONE = "done"


# --- the session ------------------------------------------------------------------------


class IvrSession:
    """One call through `flow`, personalised with `contact` (column -> value).

    Every prompt is filled when the session is made: a contact lacking a column
    a prompt names raises `MissingColumn` here, before the call hears anything."""

    def __init__(self, flow: Flow, contact: Mapping[str, str]) -> None:
        self.flow = flow
        self._texts = {p: fill(p.tts, contact) for p in flow.prompts() if p.tts is not None}
        self.history: list[StepRecord] = []
        self.result: str | None = None
        self.values: dict[str, str] = {}
        self.end: str | None = None  # "hangup", "end of flow", "transferred", "caller hung up"
        self._step: Step | None = None
        self._phase = _Phase.DONE
        self._started = False
        self._timer: int | None = None
        self._playing = False  # a Play is out and not yet done or stopped
        self._tokens = 0
        self._failures = 0
        self._buffer = ""

    @property
    def done(self) -> bool:
        return self._started and self._phase is _Phase.DONE

    def plays(self) -> list[Play]:
        """Every Play this session can ask for (its prompts, filled for the
        contact), so the audio can be made ready before the call is answered."""
        out: list[Play] = []
        for prompt in self.flow.prompts():
            if prompt.wav is not None:
                out.append(Play(prompt.wav, None))
            elif prompt.tts is not None:
                out.append(Play(self._texts[prompt], prompt.voice or self.flow.voice))
        return out

    def history_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.history]

    def summary(self) -> str:
        """One line for reports: "greet > main: 9 > optout > bye"."""
        return " > ".join(r.label() for r in self.history)

    # -- events

    def start(self, now: float) -> list[Action]:
        if self._started:
            raise RuntimeError("IvrSession.start called twice")
        self._started = True
        actions: list[Action] = []
        self._enter(self.flow.start, now, actions)
        return actions

    def on_prompt_done(self, now: float) -> list[Action]:
        actions: list[Action] = []
        if not self._playing:
            return actions  # stopped (barge-in) or nothing playing
        self._playing = False
        step = self._step
        if self._phase is _Phase.MESSAGE and isinstance(step, MenuStep | CollectStep):
            self._prompt_or_wait(step, actions)
        elif self._phase is _Phase.PROMPT:
            match step:
                case MenuStep() | CollectStep():
                    self._wait(actions)
                case PlayStep():
                    self._leave("played", step.next, now, actions)
                case OptOutStep():
                    self._leave("opted out", step.next, now, actions)
        return actions

    def on_digit(self, digit: str, now: float) -> list[Action]:
        digit = digit.upper()
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF key: {digit!r}")
        self._require_started()
        actions: list[Action] = []
        if self._phase is _Phase.DONE:
            return actions
        record = self.history[-1]
        step = self._step
        if not isinstance(step, MenuStep | CollectStep) or self._phase is _Phase.TRANSFER:
            record.digits.append((digit, now))  # heard, but nothing is asked here
            return actions
        record.digits.append(("*" if isinstance(step, CollectStep) and step.secret else digit, now))
        self._quiesce(actions)  # barge-in: the key stops the prompt and counts as input
        self._phase = _Phase.WAIT
        if isinstance(step, MenuStep):
            self._menu_key(step, digit, now, actions)
        else:
            self._collect_key(step, digit, now, actions)
        return actions

    def on_timeout(self, token: int, now: float) -> list[Action]:
        actions: list[Action] = []
        if token != self._timer or self._phase is not _Phase.WAIT:
            return actions  # stale: cancelled, or from a step already left
        self._timer = None
        step = self._step
        if isinstance(step, CollectStep) and len(self._buffer) >= step.min_digits:
            self._collect_done(step, now, actions)
        elif isinstance(step, MenuStep | CollectStep):
            self._fail(step, "invalid" if self._buffer else "timeout", now, actions)
        return actions

    def on_transfer_result(self, ok: bool, now: float) -> list[Action]:
        actions: list[Action] = []
        step = self._step
        if self._phase is not _Phase.TRANSFER or not isinstance(
            step, TransferQueueStep | TransferNumberStep
        ):
            return actions
        if ok:
            self._close("transferred", None, now)
            self._finish("transferred")
        else:
            self._leave("transfer failed", step.on_fail, now, actions)
        return actions

    def on_hangup(self, now: float) -> list[Action]:
        """The caller hung up: stop what is running and close the history."""
        actions: list[Action] = []
        if not self._started or self._phase is _Phase.DONE:
            return actions
        self._quiesce(actions)
        self._close("caller hung up", None, now)
        self._finish("caller hung up")
        return actions

    # -- steps

    def _enter(self, name: str, now: float, actions: list[Action]) -> None:
        # Unkeyed edges form no cycle (checked at load), so this chain is finite.
        step = self.flow.steps[name]
        self._step, self._failures, self._buffer = step, 0, ""
        self.history.append(StepRecord(name, _KINDS[type(step)], now))
        match step:
            case PlayStep():
                self._play(step.prompt, actions, barge_in=False)
            case MenuStep():
                self._play(step.prompt, actions, barge_in=True)
            case CollectStep():
                self._prompt_or_wait(step, actions)
            case OptOutStep():
                actions.append(OptOut(step.list))
                if step.confirm is not None:
                    self._play(step.confirm, actions, barge_in=False)
                else:
                    self._leave("opted out", step.next, now, actions)
            case TransferQueueStep():
                self._phase = _Phase.TRANSFER
                actions.append(TransferQueue(step.campaign))
            case TransferNumberStep():
                self._phase = _Phase.TRANSFER
                actions.append(TransferNumber(step.number, step.refer))
            case SetResultStep():
                self.result = step.value
                actions.append(SetResult(step.value))
                self._leave(f"result {step.value}", step.next, now, actions)
            case HangupStep():
                self._close("hangup", None, now)
                self._finish("hangup")
                actions.append(Hangup("hangup"))

    def _leave(self, outcome: str, target: str | None, now: float, actions: list[Action]) -> None:
        self._quiesce(actions)
        self._close(outcome, target, now)
        if target is None:
            self._finish("end of flow")
            actions.append(Hangup("end of flow"))
        else:
            self._enter(target, now, actions)

    def _menu_key(self, step: MenuStep, digit: str, now: float, actions: list[Action]) -> None:
        target = step.options.get(digit)
        if target is None:
            self._fail(step, f"invalid {digit}", now, actions)
            return
        self.history[-1].tries.append(f"option {digit}")
        self._leave(f"option {digit}", target, now, actions)

    def _collect_key(
        self, step: CollectStep, digit: str, now: float, actions: list[Action]
    ) -> None:
        if digit == step.terminator:
            if len(self._buffer) >= step.min_digits:
                self._collect_done(step, now, actions)
            else:
                self._fail(step, "invalid", now, actions)
            return
        self._buffer += digit
        if len(self._buffer) >= (step.max_digits or MAX_DIGITS):
            self._collect_done(step, now, actions)
        else:
            self._start_timer(step.timeout, actions)  # the time allowed to the next key

    def _collect_done(self, step: CollectStep, now: float, actions: list[Action]) -> None:
        value, self._buffer = self._buffer, ""
        self.values[step.store_as] = value
        self.history[-1].tries.append(f"entered {self._shown(step, value)}")
        actions.append(StoreValue(step.store_as, value))
        self._leave("entered", step.next, now, actions)

    def _fail(
        self, step: MenuStep | CollectStep, why: str, now: float, actions: list[Action]
    ) -> None:
        if isinstance(step, CollectStep) and why == "invalid":
            why = f"invalid {self._shown(step, self._buffer)}".rstrip()
        self._buffer = ""
        self.history[-1].tries.append(why)
        self._failures += 1
        if self._failures > step.retries:
            self._leave("retries exhausted", step.on_fail, now, actions)
            return
        message = step.no_input if why == "timeout" else step.invalid
        if message is not None:
            self._play(message, actions, barge_in=True)
            self._phase = _Phase.MESSAGE
        else:
            self._prompt_or_wait(step, actions)

    @staticmethod
    def _shown(step: CollectStep, value: str) -> str:
        return "*" * len(value) if step.secret else value

    # -- media bookkeeping

    def _prompt_or_wait(self, step: MenuStep | CollectStep, actions: list[Action]) -> None:
        if step.prompt is not None:
            self._play(step.prompt, actions, barge_in=True)
        else:
            self._wait(actions)

    def _play(self, prompt: Prompt, actions: list[Action], *, barge_in: bool) -> None:
        self._phase, self._playing = _Phase.PROMPT, True
        if prompt.wav is not None:
            actions.append(Play(prompt.wav, None, barge_in))
        else:
            actions.append(Play(self._texts[prompt], prompt.voice or self.flow.voice, barge_in))

    def _wait(self, actions: list[Action]) -> None:
        assert isinstance(self._step, MenuStep | CollectStep)
        self._phase = _Phase.WAIT
        self._start_timer(self._step.timeout, actions)

    def _start_timer(self, seconds: float, actions: list[Action]) -> None:
        self._cancel_timer(actions)
        self._tokens += 1
        self._timer = self._tokens
        actions.append(StartTimer(seconds, self._tokens))

    def _cancel_timer(self, actions: list[Action]) -> None:
        if self._timer is not None:
            actions.append(CancelTimer(self._timer))
            self._timer = None

    def _quiesce(self, actions: list[Action]) -> None:
        if self._playing:
            self._playing = False
            actions.append(StopPlayback())
        self._cancel_timer(actions)

    def _close(self, outcome: str, target: str | None, now: float) -> None:
        record = self.history[-1]
        record.left_at, record.outcome, record.next = now, outcome, target

    def _finish(self, end: str) -> None:
        self._phase, self.end, self._step = _Phase.DONE, end, None

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("IvrSession.start must come first")
