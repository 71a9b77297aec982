"""Outbound IVR on a live call: the media side of `ivr_session.IvrSession`.

`IvrCallFlow.on_frame` runs inside the shared media clock, once per 20 ms
frame of the caller's audio. Each frame it

1. collects keys: RFC 4733 telephone-events from the leg's RTP session, SIP
   INFO digits the dial loop pushes (`push_digit`), and in-band DTMF found
   in the caller's audio by `dsp.tones.DtmfDetector` (off once an RFC 4733
   event has been seen on the call, so a phone that sends both is not heard
   twice);
2. fires the session's timer when its time has come (media time: frames
   heard, so a stalled clock never makes a caller time out early);
3. plays the current prompt's next frame; when a prompt has been heard in
   full it tells the session, which may start the next one at once.

The session's actions are carried out here (play, stop, timers, hang up)
or handed to `on_action` (opt-out, transfer, result, stored values), which
the dial loop implements with the store and the telephony. Audio is never
rendered here: every prompt the flow can play for this contact is rendered
before the answer (`prepare_audio`), so the media clock only copies frames.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from dsp.tones import DtmfDetector
from dsp.wav import load_media_audio
from engine.voice.flows import FRAME, Pcm
from engine.voice.ivr_session import (
    Action,
    CancelTimer,
    Hangup,
    IvrSession,
    Play,
    StartTimer,
    StopPlayback,
)
from engine.voice.tts import TtsCache

__all__ = ["AudioKey", "IvrCallFlow", "audio_key", "prepare_audio"]

log = logging.getLogger(__name__)
FRAME_S = FRAME / 8000
DEFAULT_VOICE = "en-us"
AudioKey = tuple[str, str]  # ("wav", path) or ("tts:" + voice, text)


def audio_key(play: Play, default_voice: str | None) -> AudioKey:
    if isinstance(play.source, Path):
        return ("wav", str(play.source))
    return ("tts:" + (play.voice or default_voice or DEFAULT_VOICE), play.source)


async def prepare_audio(session: IvrSession, tts: TtsCache | None) -> dict[AudioKey, Pcm]:
    """Every prompt `session` may play, as 8 kHz audio (TTS rendered off the loop)."""
    audio: dict[AudioKey, Pcm] = {}
    default = session.flow.voice
    for play in session.plays():
        key = audio_key(play, default)
        if key in audio:
            continue
        if key[0] == "wav":
            audio[key] = await asyncio.to_thread(_wav, key[1])
        else:
            if tts is None:
                raise RuntimeError("the flow speaks text but the daemon has no TTS cache")
            audio[key] = await tts.render(key[1], key[0][4:])
    return audio


@functools.lru_cache(maxsize=256)
def _wav(path: str) -> Pcm:
    """A flow's WAV prompt, read once per process (they are fixed files)."""
    audio = load_media_audio(Path(path).read_bytes())
    audio.flags.writeable = False
    return audio


class IvrCallFlow:
    """One answered call through its IVR session (see the module doc).

    `dtmf_received`: the leg's cumulative RFC 4733 digits (the RTP session's
    `dtmf_received`); `hang_up`: ends the call; `on_action`: everything else
    the session asks for. `clock`: wall time for the history (time.time).
    """

    def __init__(
        self,
        session: IvrSession,
        audio: Mapping[AudioKey, Pcm],
        *,
        dtmf_received: Callable[[], str],
        hang_up: Callable[[str], None],
        on_action: Callable[[Action], None],
        inband: bool = True,
        clock: Callable[[], float] = time.time,
        ready: Callable[[], bool] = lambda: True,
        failed: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.session = session
        self.audio = audio
        self._dtmf_received = dtmf_received
        self._hang_up = hang_up
        self._on_action = on_action
        self._clock = clock
        self._ready, self._failed = ready, failed
        self._inband = DtmfDetector() if inband else None
        self._rfc4733_seen = 0
        self._pushed: deque[str] = deque()
        self._frames: np.ndarray | None = None
        self._next = 0
        self._timer: tuple[float, int] | None = None
        self.t = 0.0
        self.digits: list[tuple[str, str]] = []  # (digit, how: rfc4733 | info | inband)
        self.started = False
        self.ended = False

    def push_digit(self, digit: str) -> None:
        """A SIP INFO digit (the dial loop calls this from the call's events)."""
        self._pushed.append(digit)

    def transfer_result(self, ok: bool) -> None:
        """How the transfer the session asked for went."""
        if self.started and not self.ended:
            self._apply(self.session.on_transfer_result(ok, self._clock()))

    def hung_up(self) -> None:
        """The caller hung up: close the session's history."""
        if self.started and not self.ended:
            self._apply(self.session.on_hangup(self._clock()))
        self.ended = True

    # ------------------------------------------------------------------ frames

    def on_frame(self, received: Pcm) -> Pcm | None:
        if self.ended:
            return None
        if not self.started:
            if not self._ready():
                return None  # the prompts are still being made: silence meanwhile
            problem = self._failed()
            if problem is not None:
                self.ended = True
                self._hang_up(problem)
                return None
            self.started = True
            self._apply(self.session.start(self._clock()))
        t = self.t
        self.t += FRAME_S
        if self.ended:
            return None
        for digit, how in self._keys(received, t):
            self.digits.append((digit, how))
            self._apply(self.session.on_digit(digit, self._clock()))
            if self.ended:
                return None
        if self._timer is not None and self.t >= self._timer[0]:
            token = self._timer[1]
            self._timer = None
            self._apply(self.session.on_timeout(token, self._clock()))
        return self._play_frame()

    def _keys(self, received: Pcm, t: float) -> list[tuple[str, str]]:
        keys: list[tuple[str, str]] = []
        rfc = self._dtmf_received()
        if len(rfc) > self._rfc4733_seen:
            keys += [(d, "rfc4733") for d in rfc[self._rfc4733_seen :]]
            self._rfc4733_seen = len(rfc)
            self._inband = None  # this phone signals out of band: do not hear it twice
        while self._pushed:
            keys.append((self._pushed.popleft(), "info"))
        if self._inband is not None:
            event = self._inband.feed(received, t)
            if event is not None and event.value:
                keys.append((event.value, "inband"))
        return keys

    def _play_frame(self) -> Pcm | None:
        frames = self._frames
        if frames is None:
            return None
        if self._next < len(frames):
            frame: Pcm = frames[self._next]
            self._next += 1
            return frame
        # One frame after the last one left: the prompt was heard in full.
        self._frames = None
        self._apply(self.session.on_prompt_done(self._clock()))
        return self._play_frame() if self._frames is not None else None

    # ----------------------------------------------------------------- actions

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Play():
                    self._start_prompt(action)
                case StopPlayback():
                    self._frames = None
                case StartTimer(seconds=seconds, token=token):
                    self._timer = (self.t + seconds, token)
                case CancelTimer(token=token):
                    if self._timer is not None and self._timer[1] == token:
                        self._timer = None
                case Hangup(reason=reason):
                    self.ended = True
                    self._frames = None
                    self._hang_up(reason)
                case _:
                    self._on_action(action)

    def _start_prompt(self, play: Play) -> None:
        audio = self.audio.get(audio_key(play, self.session.flow.voice))
        if audio is None:  # prepare_audio covers every prompt; never block the clock
            log.warning("IVR prompt without audio, skipped: %s", play.source)
            self._frames = np.zeros((0, FRAME), np.int16)
            self._next = 0
            return
        padded = -len(audio) % FRAME
        if padded:
            audio = np.concatenate([audio, np.zeros(padded, np.int16)])
        self._frames = audio.reshape(-1, FRAME)
        self._next = 0
