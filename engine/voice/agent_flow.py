"""The answered-call flow of an agent campaign: find out who answered, then
hand a person to the dial loop, which bridges them to an agent.

With call analysis on, the call is analysed like an agentless one
(`AnalysisFlow`: AMD, fax, SIT); a person (or a not-sure verdict) is handed
over at the verdict, with the end of their greeting (AMD's end of the last
word) so the 2-second rule of 47 CFR 64.1200(a)(7) can be measured from
it. A machine gets the campaign's action: hang up, a voicemail message after
the beep, or (`on_machine: agent`) an agent too. With analysis off, the
person is handed over on the first frame after the answer.
"""

from __future__ import annotations

from collections.abc import Callable

from carriers.sip.outcome import CallResult
from dsp.amd import AmdDecision, AmdResult
from engine.campaign_config import AmdConfig
from engine.voice.flows import FRAME, Analysis, AnalysisFlow, Pcm, _Stage

# on_person(greeting_end_s, now_s): seconds since the answer, in media time.
OnPerson = Callable[[float, float], None]


class AgentAnalysisFlow(AnalysisFlow):
    """`AnalysisFlow` whose person (and, if told, machine) goes to an agent."""

    def __init__(
        self,
        amd: AmdConfig,
        machine_prompt: Pcm,
        hang_up: Callable[[], None],
        analysis: Analysis,
        on_person: OnPerson,
    ) -> None:
        super().__init__(amd, machine_prompt, machine_prompt, hang_up, analysis)
        self.on_person = on_person

    def _on_decision(self, decision: AmdDecision, t: float) -> None:
        machine = decision.result is AmdResult.MACHINE
        if machine and self.cfg.on_machine not in ("agent", "ivr"):
            super()._on_decision(decision, t)
            return
        a = self.analysis
        a.amd_result, a.amd_cause = decision.result.value, decision.cause
        a.amd_ms = round(decision.decided_at * 1000)
        if machine:
            a.result = CallResult.MACHINE
        end = self.detector.speech_end
        greeting_end = end if end is not None else decision.decided_at
        self.stage = _Stage.DONE  # the dial loop owns the call from here
        self.on_person(greeting_end, self.t)


class ConnectAtAnswer:
    """Analysis off: the person goes to an agent at once."""

    def __init__(self, on_person: OnPerson) -> None:
        self.on_person: OnPerson | None = on_person
        self.t = 0.0

    def on_frame(self, received: Pcm) -> Pcm | None:
        self.t += FRAME / 8000
        if self.on_person is not None:
            hand_over, self.on_person = self.on_person, None
            hand_over(0.0, self.t)
        return None
