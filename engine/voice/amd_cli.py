"""`outdial amd [--mode default|asterisk] [--set NAME=VALUE ...] FILE.wav ...`

Call analysis of recordings taken from the moment of answer: the answering-
machine detector of `dsp.amd` next to the fax, SIT and beep detectors of
`dsp.tones`, combined as the engine combines them on a live call:

- a fax tone (CNG/CED) or a SIT reported before the AMD has decided, and before
  any speech was heard, sets the result (``fax``/``sit``); a fax machine does
  not talk first, and a tone after a greeting is a voicemail beep;
- a beep reported before the AMD has decided means a machine (cause ``beep``);
- an AMD verdict reached without hearing anything at all is ``silence``;
- otherwise the AMD's verdict (human, machine, notsure) and its cause.

The beep detector keeps running after the verdict: ``beep_end_ms`` is when
the first beep after the greeting ended, so a message can start right after it.

One JSON object is printed per file: file, result, cause, decided_ms (from
the start of the audio), beep_end_ms (null when none), sit (the SIT code or
null). Files that cannot be read get {"file", "error"} and the others are
still analysed; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray

from dsp.amd import AmdDecision, AmdDetector, AmdResult, AsteriskAmd, make_amd
from dsp.tones import ToneAnalyzer, ToneEvent
from dsp.wav import WavError, load_media_audio

FRAME = 160
FRAME_S = FRAME / 8000
_TAIL_S = 0.3  # silence fed to the tone detectors after the audio, so a tone at the end ends
_SPOKEN_SLACK_S = 0.25
# A beep heard before the AMD decided means a machine only when it is this long:
# a steady vowel can pass for a 100 ms beep, a voicemail beep is longer.
_BEEP_MIN_S = 0.12


@dataclass(frozen=True, slots=True)
class CallAnalysis:
    """What answered, why, and when (ms from the start of the audio)."""

    result: str  # human | machine | notsure | fax | sit | silence
    cause: str
    decided_ms: int | None
    beep_end_ms: int | None
    sit: str | None
    amd: AmdDecision | None
    beeps: tuple[ToneEvent, ...]
    """Every beep reported, with the frame time it was reported at (start, end, ...)."""
    beep_reported_ms: tuple[int, ...]
    amd_frames: int
    """Frames the AMD analysed before it decided (for CPU accounting)."""

    def as_json(self, file: str) -> dict[str, Any]:
        return {
            "file": file,
            "result": self.result,
            "cause": self.cause,
            "decided_ms": self.decided_ms,
            "beep_end_ms": self.beep_end_ms,
            "sit": self.sit,
        }


class SetError(ValueError):
    """A bad ``--set NAME=VALUE``: names the parameter and what is wrong."""


def parse_sets(sets: list[str]) -> dict[str, str]:
    """``["greeting_ms=2500", ...]`` as a mapping; SetError on a malformed item."""
    out: dict[str, str] = {}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise SetError(f"--set expects NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000.0)


def analyze_call(
    pcm: NDArray[np.int16],
    mode: str = "default",
    overrides: Mapping[str, float | str] | None = None,
) -> CallAnalysis:
    """Analyse 8 kHz int16 audio that starts at the answer (ValueError on bad parameters)."""
    amd = make_amd(mode, overrides)
    tones = ToneAnalyzer(dtmf=False, progress=False)
    frames = -(-len(pcm) // FRAME)
    padded = np.zeros((frames + round(_TAIL_S / FRAME_S)) * FRAME, dtype=np.int16)
    padded[: len(pcm)] = pcm
    decision: AmdDecision | None = None
    # The first tone verdicts reached before the AMD decided: (result, cause, time, sit code).
    tone: tuple[str, str, float, str | None] | None = None
    beep: tuple[str, str, float, str | None] | None = None
    beeps: list[ToneEvent] = []
    reported: list[int] = []
    amd_frames = 0
    for i in range(len(padded) // FRAME):
        t = i * FRAME_S
        frame = padded[i * FRAME : (i + 1) * FRAME]
        if decision is None and i < frames:
            amd_frames += 1
            decision = amd.feed(frame, t)
        for event in tones.feed(frame, t):
            if event.kind == "beep":
                beeps.append(event)
                reported.append(_ms(t + FRAME_S) or 0)
            if decision is not None and decision.decided_at <= t + FRAME_S:
                continue
            verdict = _tone_verdict(event, amd, t + FRAME_S)
            if verdict is not None and verdict[1] == "beep":
                beep = beep or verdict
            elif verdict is not None:
                tone = tone or verdict
    # A SIT segment is a single tone too: a SIT or fax verdict outranks a beep.
    first = tone or beep
    return _combine(decision, first, amd, tuple(beeps), tuple(reported), amd_frames)


def _tone_verdict(
    event: ToneEvent, amd: AmdDetector | AsteriskAmd, now: float
) -> tuple[str, str, float, str | None] | None:
    """A tone heard before the AMD decided: does it settle the call?"""
    spoken = amd.first_speech
    if event.kind in ("fax_cng", "fax_ced", "sit"):
        # Tones only count when nobody talked before them. The AMD may take
        # the tone itself for talk, starting a little before the tone
        # tracker's edge: hence the slack.
        if spoken is not None and spoken < event.start - _SPOKEN_SLACK_S:
            return None
        if event.kind == "sit":
            return ("sit", "sit", now, event.value)
        return ("fax", event.kind, now, None)
    if event.kind == "beep" and event.end is not None and spoken is not None:
        # A voicemail beep ends a greeting: it needs talk before it and some length.
        if spoken < event.start - _SPOKEN_SLACK_S and event.end - event.start >= _BEEP_MIN_S:
            return ("machine", "beep", now, None)
    return None


def _combine(
    decision: AmdDecision | None,
    first: tuple[str, str, float, str | None] | None,
    amd: AmdDetector | AsteriskAmd,
    beeps: tuple[ToneEvent, ...],
    reported: tuple[int, ...],
    amd_frames: int,
) -> CallAnalysis:
    sit = None
    if first is not None:
        result, cause, when, sit = first
    elif decision is None:
        heard = amd.first_speech is not None
        result, cause, when = ("notsure" if heard else "silence"), "end_of_audio", None
    elif decision.greeting_ms == 0 and decision.words == 0 and amd.first_speech is None:
        result, cause, when = "silence", decision.cause, decision.decided_at
    else:
        result, cause, when = decision.result.value, decision.cause, decision.decided_at
    # The voicemail beep is the first one after the greeting started.
    start = amd.first_speech
    after = [b for b in beeps if b.end is not None and (start is None or b.start >= start)]
    beep_end = _ms(after[0].end) if after and result == AmdResult.MACHINE.value else None
    return CallAnalysis(
        result, cause, _ms(when), beep_end, sit, decision, beeps, reported, amd_frames
    )


def amd_report(path: Path, mode: str, overrides: Mapping[str, str]) -> dict[str, Any]:
    """The JSON object printed for one file (an "error" key when it failed)."""
    try:
        pcm = load_media_audio(path.read_bytes())
    except OSError as exc:
        return {"file": str(path), "error": f"cannot read: {exc.strerror or exc}"}
    except WavError as exc:
        return {"file": str(path), "error": f"not a supported WAV file: {exc}"}
    return analyze_call(pcm, mode, overrides).as_json(str(path))


def amd_main(paths: list[Path], mode: str, sets: list[str], out: TextIO | None = None) -> int:
    """Print one JSON object per file; 1 if any file failed, 2 on bad options, else 0."""
    stream = sys.stdout if out is None else out
    try:
        overrides = parse_sets(sets)
        make_amd(mode, overrides)  # validate once, before any file
    except ValueError as exc:
        print(f"outdial amd: error: {exc}", file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        report = amd_report(path, mode, overrides)
        failed = failed or "error" in report
        print(json.dumps(report), file=stream, flush=True)
    return 1 if failed else 0
