"""Answering-machine detection over 20 ms frames from the moment of answer.

Two detectors share one result type:

- `AmdDetector`, the default mode: voice activity from the WebRTC VAD, gated
  by frame energy above an adaptive noise floor (minimum statistics), grouped
  into words by their timing. A person answers with a short utterance and
  then waits for the caller; a machine keeps talking. So: a long stretch of
  talk (``long_greeting``), or talk that resumes after a sentence break
  (``resumed_talk``), means MACHINE; a short one followed by a silence means
  HUMAN (``after_greeting_silence``); no talk at all means NOTSURE
  (``initial_silence``), and so does running out of time (``max_analysis_time``).
- `AsteriskAmd`, a reimplementation of the classic Asterisk ``AMD()``
  application (app_amd.c, from its documented behaviour and parameters), as a
  baseline and for users who migrate with their amd.conf values.

Both are pure and streaming: ``feed(frame, t)`` with 160-sample int16 frames
and ``t`` the frame's start in seconds since the answer; ``feed`` returns the
`AmdDecision` once, on the frame that decides, and None before and after.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import webrtcvad

__all__ = [
    "AmdDecision",
    "AmdDetector",
    "AmdParams",
    "AmdResult",
    "AsteriskAmd",
    "AsteriskParams",
    "make_amd",
]

SAMPLE_RATE: Final = 8000
_FULL_SCALE_POWER: Final = 32768.0 * 32768.0
_VAD_FRAME_SAMPLES: Final = (80, 160, 240)  # the 10, 20 and 30 ms frames webrtcvad accepts


class AmdResult(enum.Enum):
    """What answered the call."""

    HUMAN = "human"
    MACHINE = "machine"
    NOTSURE = "notsure"


@dataclass(frozen=True, slots=True)
class AmdDecision:
    """The verdict, why it was reached, and when (seconds since the answer)."""

    result: AmdResult
    cause: str
    decided_at: float
    words: int
    greeting_ms: int


@dataclass(frozen=True, slots=True)
class AmdParams:
    """Every threshold of the default mode; levels in dB, times in milliseconds.

    The defaults were tuned on a development corpus (``benchmarks.amd``,
    seed 1) and are reported on a held-out corpus built with seed 2. The
    timing thresholds set the trade-off: ``after_greeting_silence_ms`` (and
    ``after_long_talk_silence_ms`` after a longer first phrase) against
    machines that pause after a first "Hello?", ``greeting_ms`` against
    people who answer with a long business phrase.
    """

    vad_mode: int = 2
    """WebRTC VAD aggressiveness, 0 (least) to 3 (most aggressive at rejecting noise)."""
    speech_margin_db: float = 6.0
    """A frame starts or feeds a word when the VAD says speech and it is this far
    above the noise floor..."""
    min_speech_dbfs: float = -55.0
    """...and above this absolute level."""
    loud_margin_db: float = 20.0
    """Frames this far above the floor are speech even when the VAD disagrees
    (in loud noise the VAD calls everything speech, so energy decides)."""
    quiet_margin_db: float = 4.0
    """A word ends on frames (smoothed over 40 ms) within this of the floor..."""
    talker_drop_db: float = 15.0
    """...or this far below the talker's peak level (background voices)..."""
    talker_release_db_per_s: float = 1.0
    """...which follows a louder frame at once and sinks this fast while talking."""
    floor_block_ms: int = 200
    """Minimum statistics: the floor is the lowest frame energy of the last blocks..."""
    floor_window_ms: int = 1600
    """...over this window."""
    onset_ms: int = 40
    """Consecutive speech that starts the first word..."""
    resume_onset_ms: int = 20
    """...and any later one: talk resuming after a pause is taken sooner, so the
    next sentence of a machine stops the after_greeting_silence timer in time."""
    word_gap_ms: int = 200
    """Quiet that ends a word."""
    min_word_ms: int = 100
    """Words shorter than this (clicks, pops) are forgotten."""
    initial_silence_ms: int = 4000
    """No word by then: NOTSURE, cause initial_silence (the caller hears nobody)."""
    greeting_ms: int = 3200
    """Talk spanning this long from the first word: MACHINE, cause long_greeting."""
    after_greeting_silence_ms: int = 870
    """Quiet after the talk: HUMAN, cause after_greeting_silence..."""
    long_talk_ms: int = 700
    """...unless the talk spanned at least this long (0 disables the rule)..."""
    after_long_talk_silence_ms: int = 1050
    """...when the quiet must last this long instead: a short "Hello?" is decided
    sooner, while a longer first sentence, more often a machine's that pauses
    between sentences, is given more time to go on."""
    resume_talk_ms: int = 900
    """Talk resumed after a pause, when the talk before it spanned this long..."""
    resume_pause_ms: int = 500
    """...and the pause lasted at least this (a sentence break, not a comma)..."""
    resume_confirm_ms: int = 200
    """...and the new word lasted this long: MACHINE, cause resumed_talk (0 disables)."""
    max_words: int = 0
    """More words than this: MACHINE, cause max_words (0 disables the rule)."""
    total_analysis_ms: int = 8000
    """Undecided by then: NOTSURE, cause max_analysis_time."""


@dataclass(frozen=True, slots=True)
class AsteriskParams:
    """Asterisk amd.conf parameters with their defaults (times in ms).

    ``silence_threshold`` is compared with the average absolute sample value
    of a frame (0 to 32767). Asterisk declares MACHINE when the number of
    counted words reaches ``maximum_number_of_words``.
    """

    initial_silence: int = 2500
    greeting: int = 1500
    after_greeting_silence: int = 800
    total_analysis_time: int = 5000
    min_word_length: int = 100
    between_words_silence: int = 50
    maximum_number_of_words: int = 2
    silence_threshold: int = 256
    maximum_word_length: int = 5000


Frame = npt.NDArray[np.int16]


def _power_dbfs(frame: Frame) -> float:
    """Mean power of the frame in dB relative to a full-scale square wave; -inf when zero."""
    x = frame.astype(np.float32)
    power = float(np.dot(x, x)) / len(x) if len(x) else 0.0
    return 10.0 * math.log10(power / _FULL_SCALE_POWER) if power > 0.0 else -math.inf


class _NoiseFloor:
    """Minimum statistics (R. Martin, 2001): the floor is the lowest frame
    energy seen over a sliding window, tracked as per-block minima so each
    update costs O(1). Frames of digital silence (lost packets filled with
    zeros by the jitter buffer) are skipped: they are not the line's noise."""

    __slots__ = ("_block_frames", "_block_min", "_blocks", "_count", "floor")

    def __init__(self, block_frames: int, window_blocks: int) -> None:
        self._block_frames = max(1, block_frames)
        self._blocks: deque[float] = deque(maxlen=max(1, window_blocks))
        self._block_min = math.inf
        self._count = 0
        self.floor = math.inf

    def update(self, level_db: float) -> None:
        if level_db == -math.inf:
            return
        if level_db < self._block_min:
            self._block_min = level_db
        self._count += 1
        if self._count >= self._block_frames:
            self._blocks.append(self._block_min)
            self._block_min = math.inf
            self._count = 0
            self.floor = min(self._blocks)
        elif self._block_min < self.floor:
            self.floor = self._block_min


class AmdDetector:
    """The default AMD mode: VAD + adaptive energy gate + word/silence timing.

    A word starts on ``onset_ms`` of speech frames (VAD and energy agree) and
    ends on ``word_gap_ms`` of quiet frames (back near the noise floor, or far
    below the talker): the two thresholds give hysteresis, so the weak sounds
    inside a sentence do not split it while background voices do not extend it.
    """

    def __init__(self, params: AmdParams | None = None) -> None:
        p = params or AmdParams()
        if not 0 <= p.vad_mode <= 3:
            raise ValueError(f"vad_mode must be 0 to 3, got {p.vad_mode}")
        if p.floor_block_ms < 20:
            raise ValueError(f"floor_block_ms must be at least 20, got {p.floor_block_ms}")
        self.params = p
        self._vad = webrtcvad.Vad(int(p.vad_mode))
        self._floor = _NoiseFloor(p.floor_block_ms // 20, p.floor_window_ms // p.floor_block_ms)
        self._onset = p.onset_ms / 1000.0
        self._resume_onset = p.resume_onset_ms / 1000.0
        self._word_gap = p.word_gap_ms / 1000.0
        self._min_word = p.min_word_ms / 1000.0
        self._previous_power = 0.0  # last frame's power, for the 40 ms smoothed level
        self._talker = -math.inf  # the talker's recent peak level (dBFS)
        self._talker_release = p.talker_release_db_per_s * 0.02
        self._noise = -math.inf  # the line's mean noise level (dBFS)
        self._speech_run = 0.0  # consecutive speech frames before a word (s)
        self._quiet_run = 0.0  # consecutive quiet frames inside a word (s)
        self._in_word = False
        self._word_start = 0.0
        self._first_onset: float | None = None
        self._last_speech_end = 0.0
        self._words = 0
        self._voiced = 0.0
        self._resume_talk = p.resume_talk_ms / 1000.0
        self._resume_pause = p.resume_pause_ms / 1000.0
        self._resumed = False  # the current word resumed the talk after a sentence break
        self._decision: AmdDecision | None = None

    @property
    def decision(self) -> AmdDecision | None:
        """The decision once made, else None."""
        return self._decision

    @property
    def first_speech(self) -> float | None:
        """When the first word started (s since answer), None while none was heard."""
        return self._first_onset

    @property
    def speech_end(self) -> float | None:
        """When the last word heard so far ended (s since answer): on a human
        verdict, the end of the person's greeting. None while none was heard."""
        return self._last_speech_end if self._first_onset is not None else None

    def feed(self, frame: Frame, t: float) -> AmdDecision | None:
        """Analyse the frame starting at `t`; returns the decision on the frame that makes it."""
        if self._decision is not None:
            return None
        # The VAD sees every frame, so that its own noise adaptation follows the line.
        vad = (
            bool(self._vad.is_speech(frame.tobytes(), SAMPLE_RATE))
            if len(frame) in _VAD_FRAME_SAMPLES
            else True
        )
        duration = len(frame) / SAMPLE_RATE
        return self.step(_power_dbfs(frame), vad, t + duration, duration)

    def step(
        self, level_db: float, vad: bool, end: float, duration: float = 0.02
    ) -> AmdDecision | None:
        """One frame given its level, the VAD's opinion and its end time (s since answer).

        `feed` computes the first two from the samples; the tuning tools call
        this directly with features computed once per corpus.
        """
        if self._decision is not None:
            return None
        speech, quiet = self._classify(level_db, vad)
        self._track(speech, quiet, end, duration)
        decision = self._decide(end)
        self._decision = decision
        return decision

    def _classify(self, level_db: float, vad: bool) -> tuple[bool, bool]:
        p = self.params
        floor = self._floor.floor
        self._floor.update(level_db)
        power = 10.0 ** (level_db / 10.0)
        smoothed = 10.0 * math.log10(0.5 * (power + self._previous_power) + 1e-20)
        self._previous_power = power
        above = level_db - floor
        if above < p.speech_margin_db and math.isfinite(self._floor.floor):
            # The line's mean noise level, from frames near the floor: the floor
            # itself (a minimum) sits a few dB below the typical noise frame.
            self._noise = (
                self._floor.floor if self._noise == -math.inf else self._noise
            )  # first estimate
            if level_db > -math.inf:
                self._noise += 0.05 * (level_db - self._noise)
        speech = (
            level_db >= p.min_speech_dbfs
            and above >= p.speech_margin_db
            and (vad or above >= p.loud_margin_db)
            and level_db >= self._talker - p.talker_drop_db
        )
        quiet = (
            smoothed < max(floor, self._noise) + p.quiet_margin_db
            or smoothed < self._talker - p.talker_drop_db
        )
        if speech:
            # Peak follower: jumps up, sinks slowly while the talker talks.
            self._talker = max(level_db, self._talker - self._talker_release)
        return speech, quiet

    def _track(self, speech: bool, quiet: bool, end: float, duration: float) -> None:
        """Group frames into words: start on speech, end on quiet."""
        if not self._in_word:
            self._speech_run = self._speech_run + duration if speech else 0.0
            onset = self._onset if self._first_onset is None else self._resume_onset
            if self._speech_run >= onset - 1e-9:
                self._in_word = True
                self._quiet_run = 0.0
                self._words += 1
                self._word_start = end - self._speech_run
                if self._first_onset is None:
                    self._first_onset = self._word_start
                else:
                    talk = self._last_speech_end - self._first_onset
                    pause = self._word_start - self._last_speech_end
                    self._resumed = (
                        talk >= self._resume_talk - 1e-9 and pause >= self._resume_pause - 1e-9
                    )
                self._voiced += self._speech_run
                self._last_speech_end = end
            return
        if not quiet:
            self._quiet_run = 0.0
            self._last_speech_end = end
            self._voiced += duration
            return
        self._quiet_run += duration
        if self._quiet_run >= self._word_gap - 1e-9:
            self._in_word = False
            self._resumed = False
            self._speech_run = 0.0
            if self._last_speech_end - self._word_start < self._min_word - 1e-9:
                self._forget_word()

    def _forget_word(self) -> None:
        """A click is not a word: undo its counting."""
        self._words -= 1
        self._voiced -= self._last_speech_end - self._word_start
        if self._words == 0:
            self._first_onset = None
            self._voiced = 0.0

    def _decide(self, now: float) -> AmdDecision | None:
        p = self.params
        now_ms = now * 1000.0
        if self._first_onset is None:
            if now_ms >= p.initial_silence_ms - 1e-6:
                return self._verdict(AmdResult.NOTSURE, "initial_silence", now)
        else:
            span_ms = (self._last_speech_end - self._first_onset) * 1000.0
            if span_ms >= p.greeting_ms - 1e-6:
                return self._verdict(AmdResult.MACHINE, "long_greeting", now)
            if p.max_words and self._words > p.max_words:
                return self._verdict(AmdResult.MACHINE, "max_words", now)
            if (
                self._resumed
                and self._in_word
                and p.resume_confirm_ms
                and (self._last_speech_end - self._word_start) * 1000.0
                >= p.resume_confirm_ms - 1e-6
            ):
                return self._verdict(AmdResult.MACHINE, "resumed_talk", now)
            quiet_ms = (now - self._last_speech_end) * 1000.0
            wait_ms = (
                p.after_long_talk_silence_ms
                if p.long_talk_ms and span_ms >= p.long_talk_ms - 1e-6
                else p.after_greeting_silence_ms
            )
            if not self._in_word and quiet_ms >= wait_ms - 1e-6:
                return self._verdict(AmdResult.HUMAN, "after_greeting_silence", now)
        if now_ms >= p.total_analysis_ms - 1e-6:
            return self._verdict(AmdResult.NOTSURE, "max_analysis_time", now)
        return None

    def _verdict(self, result: AmdResult, cause: str, now: float) -> AmdDecision:
        return AmdDecision(result, cause, round(now, 6), self._words, round(self._voiced * 1000))


class AsteriskAmd:
    """Asterisk's AMD() algorithm (app_amd.c) over the same frames.

    Each frame is silence when the average absolute sample value is below
    ``silence_threshold``; runs of silence and voice are timed in whole
    milliseconds as Asterisk does. The rules, checked in Asterisk's order:

    - total time reaching ``total_analysis_time``: NOTSURE (TOOLONG), checked
      first on every frame;
    - on silence: a run of at least ``between_words_silence`` puts the
      detector in the silence state and resets the voice run; silence
      reaching ``initial_silence`` before the first word: MACHINE
      (INITIALSILENCE); silence reaching ``after_greeting_silence`` once a
      greeting has started: HUMAN (HUMAN);
    - on voice: a voice run reaching ``min_word_length`` while in the silence
      state counts a word; a run reaching ``maximum_word_length``: MACHINE
      (MAXWORDLENGTH); the word count reaching ``maximum_number_of_words``:
      MACHINE (MAXWORDS); total voice reaching ``greeting`` during the
      greeting: MACHINE (LONGGREETING); the first voice run reaching
      ``min_word_length`` starts the greeting.

    Asterisk starts in the word state, so talk heard before any silence of
    ``between_words_silence`` is timed as voice but not counted as a word.
    """

    def __init__(self, params: AsteriskParams | None = None) -> None:
        self.params = params or AsteriskParams()
        self._total = 0
        self._silence = 0  # the DSP's running silence (ms)
        self._silence_duration = 0  # the algorithm's copy, cleared by talk
        self._voice = 0
        self._consecutive_voice = 0
        self._words = 0
        self._in_silence_state = False
        self._in_initial_silence = True
        self._in_greeting = False
        self._greeting_start: float | None = None
        self._speech_end: float | None = None
        self._decision: AmdDecision | None = None

    @property
    def decision(self) -> AmdDecision | None:
        """The decision once made, else None."""
        return self._decision

    @property
    def first_speech(self) -> float | None:
        """When the greeting (the first voice run of a word's length) started, else None."""
        return self._greeting_start

    @property
    def speech_end(self) -> float | None:
        """When the last voice frame heard so far ended (s since answer), else None."""
        return self._speech_end

    def feed(self, frame: Frame, t: float) -> AmdDecision | None:
        """Analyse the frame starting at `t`; returns the decision on the frame that makes it."""
        if self._decision is not None:
            return None
        length_ms = len(frame) * 1000 // SAMPLE_RATE
        now = t + len(frame) / SAMPLE_RATE
        p = self.params
        self._total += length_ms
        if self._total >= p.total_analysis_time:
            return self._verdict(AmdResult.NOTSURE, "max_analysis_time", now)
        # Asterisk's silence detector: integer mean of |sample| against the threshold.
        mean_abs = int(np.abs(frame.astype(np.int32)).sum()) // max(1, len(frame))
        if mean_abs < p.silence_threshold:
            self._silence += length_ms
            return self._on_silence(now)
        self._silence = 0
        return self._on_voice(length_ms, now)

    def _on_silence(self, now: float) -> AmdDecision | None:
        p = self.params
        self._silence_duration = self._silence
        if self._silence_duration >= p.between_words_silence:
            self._in_silence_state = True
            self._consecutive_voice = 0
        if self._in_initial_silence and self._silence_duration >= p.initial_silence:
            return self._verdict(AmdResult.MACHINE, "initial_silence", now)
        if self._in_greeting and self._silence_duration >= p.after_greeting_silence:
            return self._verdict(AmdResult.HUMAN, "after_greeting_silence", now)
        return None

    def _on_voice(self, length_ms: int, now: float) -> AmdDecision | None:
        p = self.params
        self._speech_end = now
        self._consecutive_voice += length_ms
        self._voice += length_ms
        if self._consecutive_voice >= p.min_word_length and self._in_silence_state:
            self._words += 1
            self._in_silence_state = False
        if self._consecutive_voice >= p.maximum_word_length:
            return self._verdict(AmdResult.MACHINE, "max_word_length", now)
        if self._words >= p.maximum_number_of_words:
            return self._verdict(AmdResult.MACHINE, "max_words", now)
        if self._in_greeting and self._voice >= p.greeting:
            return self._verdict(AmdResult.MACHINE, "long_greeting", now)
        if self._voice >= p.min_word_length:
            self._silence_duration = 0
        if self._consecutive_voice >= p.min_word_length and not self._in_greeting:
            self._in_initial_silence = False
            self._in_greeting = True
            self._greeting_start = now - self._consecutive_voice / 1000.0
        return None

    def _verdict(self, result: AmdResult, cause: str, now: float) -> AmdDecision:
        self._decision = AmdDecision(result, cause, round(now, 6), self._words, self._voice)
        return self._decision


def _coerce(cls: type[AmdParams] | type[AsteriskParams], name: str, value: float | str) -> object:
    """Convert an override to the field's type, naming the parameter when it does not fit."""
    kind = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"parameter {name!r} needs a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"parameter {name!r} must be a finite number >= 0, got {value!r}")
    if kind in ("int", int):
        if number != int(number):
            raise ValueError(f"parameter {name!r} needs a whole number, got {value!r}")
        return int(number)
    return number


def make_amd(
    mode: str = "default", overrides: Mapping[str, float | str] | None = None
) -> AmdDetector | AsteriskAmd:
    """Build the detector for `mode` ("default" or "asterisk") with parameter overrides.

    Unknown modes and parameter names, and values that are not non-negative
    numbers (whole numbers for integer parameters), raise ValueError naming them.
    """
    cls: type[AmdParams] | type[AsteriskParams]
    if mode == "default":
        cls = AmdParams
    elif mode == "asterisk":
        cls = AsteriskParams
    else:
        raise ValueError(f"unknown AMD mode {mode!r} (expected 'default' or 'asterisk')")
    known = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, object] = {}
    for name, value in (overrides or {}).items():
        if name not in known:
            raise ValueError(
                f"unknown {mode} AMD parameter {name!r} (known: {', '.join(sorted(known))})"
            )
        values[name] = _coerce(cls, name, value)
    if cls is AmdParams:
        return AmdDetector(AmdParams(**values))  # type: ignore[arg-type]
    return AsteriskAmd(AsteriskParams(**values))  # type: ignore[arg-type]
