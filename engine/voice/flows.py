"""What happens on an answered call: the call flow.

The dialer hands every answered call to `answered_flow`, which returns the
object that receives each 20 ms frame of the far end's audio and returns what
to send. This is the one place where call analysis (answering-machine
detection, tones) and outbound IVR plug in; today an agentless campaign plays
its prompt in full and hangs up.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from carriers.sip.outcome import CallResult
from dsp.amd import AmdDecision, AmdResult, make_amd
from dsp.tones import ToneAnalyzer, ToneEvent
from engine.voice.analysis_batch import SHARED

if TYPE_CHECKING:
    from engine.campaign_config import AmdConfig

FRAME = 160
Pcm = NDArray[np.int16]


class CallFlow(Protocol):
    def on_frame(self, received: Pcm) -> Pcm | None:
        """One 20 ms frame heard; return the 20 ms frame to send (None: silence)."""
        ...


class PlayPrompt:
    """Plays a prompt once from the first frame, then calls `on_done` once."""

    def __init__(self, prompt: Pcm, on_done: Callable[[], None]) -> None:
        padded = -len(prompt) % FRAME
        audio = np.concatenate([prompt, np.zeros(padded, np.int16)]) if padded else prompt
        self._frames = audio.reshape(-1, FRAME) if len(audio) else np.zeros((0, FRAME), np.int16)
        self._next = 0
        self._on_done: Callable[[], None] | None = on_done

    @property
    def finished(self) -> bool:
        return self._next >= len(self._frames)

    def on_frame(self, received: Pcm) -> Pcm | None:
        if self._next < len(self._frames):
            frame: Pcm = self._frames[self._next]
            self._next += 1
            return frame
        if self._on_done is not None:
            done, self._on_done = self._on_done, None
            done()  # one frame after the last one left: the prompt was heard in full
        return None


def answered_flow(
    amd: AmdConfig,
    prompt: Pcm,
    machine_prompt: Pcm,
    hang_up: Callable[[], None],
    analysis: Analysis,
    ivr: CallFlow | None = None,
) -> CallFlow:
    """The flow for an answered agentless call: the prompt (or the campaign's
    IVR), after call analysis when the campaign turns it on."""
    if not amd.enabled:
        return ivr if ivr is not None else PlayPrompt(prompt, hang_up)
    return AnalysisFlow(amd, prompt, machine_prompt, hang_up, analysis, ivr)


@dataclass(slots=True)
class Analysis:
    """What call analysis found on one call (times in ms after the answer)."""

    amd_result: str | None = None
    amd_cause: str | None = None
    amd_ms: int | None = None
    beep_end_ms: int | None = None
    message_started_ms: int | None = None
    result: CallResult | None = None  # overrides the SIP outcome (machine, fax, SIT)

    def fields(self) -> dict[str, object]:
        return {
            "amd_result": self.amd_result, "amd_cause": self.amd_cause, "amd_ms": self.amd_ms,
            "beep_end_ms": self.beep_end_ms, "message_started_ms": self.message_started_ms,
        }  # fmt: skip


class _Stage(enum.Enum):
    LISTENING = "listening"
    WAITING_BEEP = "waiting_beep"
    PLAYING = "playing"
    DONE = "done"


class AnalysisFlow:
    """Answering-machine, fax and SIT detection on an answered call, then the
    campaign's action: a person hears the prompt; a machine is hung up on or
    gets the voicemail message right after its beep; a fax or an intercept
    (SIT) ends the call with that result. We send silence while listening."""

    def __init__(
        self,
        amd: AmdConfig,
        prompt: Pcm,
        machine_prompt: Pcm,
        hang_up: Callable[[], None],
        analysis: Analysis,
        ivr: CallFlow | None = None,
    ) -> None:
        self.cfg = amd
        self.ivr = ivr  # what a person (or, with on_machine: ivr, a machine) gets
        self.prompt, self.machine_prompt = prompt, machine_prompt
        self.hang_up = hang_up
        self.analysis = analysis
        self.detector = make_amd(amd.mode, dict(amd.parameters))
        self.tones = ToneAnalyzer(dtmf=False, beep=True, sit=True, fax=True, progress=False)
        self.stage = _Stage.LISTENING
        self.player: CallFlow | None = None
        self.t = 0.0
        self.beep_wait_until = 0.0

    def on_frame(self, received: Pcm) -> Pcm | None:
        t = self.t
        self.t += FRAME / 8000
        if self.stage in (_Stage.LISTENING, _Stage.WAITING_BEEP):
            # The frame's spectrum comes from one analysis of every call's frame this tick.
            for event in self.tones.feed_analysis(SHARED.analyze(received), t):
                self._on_tone(event, t)
        if self.stage is _Stage.LISTENING:
            decision = self.detector.feed(received, t)
            if decision is not None:
                self._on_decision(decision, t)
        elif self.stage is _Stage.WAITING_BEEP and t >= self.beep_wait_until:
            self._play(self.machine_prompt, t)  # no beep came: leave the message anyway
        if self.stage is _Stage.PLAYING and self.player is not None:
            return self.player.on_frame(received)
        return None

    def _on_tone(self, event: ToneEvent, t: float) -> None:
        a = self.analysis
        if event.kind in ("fax_cng", "fax_ced"):
            a.result, a.amd_result, a.amd_cause = CallResult.FAX, "fax", event.kind
            self._finish(t)
        elif event.kind == "sit":
            a.result, a.amd_result, a.amd_cause = CallResult.INVALID_NUMBER, "sit", event.value
            self._finish(t)
        elif event.kind == "beep" and event.end is not None:
            a.beep_end_ms = round(event.end * 1000)
            if self.stage is _Stage.WAITING_BEEP:
                self._play(self.machine_prompt, t)

    def _on_decision(self, decision: AmdDecision, t: float) -> None:
        a = self.analysis
        a.amd_result, a.amd_cause = decision.result.value, decision.cause
        a.amd_ms = round(decision.decided_at * 1000)
        if decision.result is not AmdResult.MACHINE:  # a person, or not sure: treat as a person
            if self.cfg.on_human == "prompt" and self.ivr is not None:
                self._run_ivr()
            elif self.cfg.on_human == "prompt":
                self._play(self.prompt, t)
            else:
                self._finish(t)
            return
        a.result = CallResult.MACHINE
        if self.cfg.on_machine == "ivr" and self.ivr is not None:
            self._run_ivr()
        elif self.cfg.on_machine == "message_after_beep":
            if a.beep_end_ms is not None:  # the beep already went by
                self._play(self.machine_prompt, t)
            else:
                self.stage = _Stage.WAITING_BEEP
                self.beep_wait_until = t + self.cfg.max_beep_wait
        else:
            self._finish(t)

    def _play(self, audio: Pcm, t: float) -> None:
        # Our reply to the frame heard at [t, t + 20 ms) leaves at t + 20 ms.
        self.analysis.message_started_ms = round(self.t * 1000)
        self.stage = _Stage.PLAYING
        self.player = PlayPrompt(audio, self.hang_up)

    def _run_ivr(self) -> None:
        self.analysis.message_started_ms = round(self.t * 1000)
        self.stage = _Stage.PLAYING
        self.player = self.ivr

    def _finish(self, t: float) -> None:
        self.stage = _Stage.DONE
        self.hang_up()


class EarlyMediaWatch:
    """Tones in early media (before the answer): a special information tone
    means the number is not in service; busy and reorder tones mean what they
    say. `on_verdict` gets the result, and the call is cancelled."""

    def __init__(self, on_verdict: Callable[[CallResult, str], None]) -> None:
        self.tones = ToneAnalyzer(dtmf=False, beep=False, sit=True, fax=False, progress=True)
        self.on_verdict: Callable[[CallResult, str], None] | None = on_verdict
        self.t = 0.0

    def on_frame(self, received: Pcm) -> Pcm | None:
        t = self.t
        self.t += FRAME / 8000
        if self.on_verdict is None:
            return None
        for event in self.tones.feed_analysis(SHARED.analyze(received), t):
            verdict = _EARLY_VERDICTS.get(event.kind)
            if verdict is not None:
                report, self.on_verdict = self.on_verdict, None
                report(
                    verdict,
                    f"{event.kind} tone in early media"
                    + (f" ({event.value})" if event.value else ""),
                )
                break
        return None


_EARLY_VERDICTS = {
    "sit": CallResult.INVALID_NUMBER,
    "busy": CallResult.BUSY,
    "reorder": CallResult.UNAVAILABLE,
}
