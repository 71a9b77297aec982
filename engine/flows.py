"""What happens on an answered call: the call flow.

The dialer hands every answered call to `answered_flow`, which returns the
object that receives each 20 ms frame of the far end's audio and returns what
to send. This is the one place where call analysis (answering-machine
detection, tones) and outbound IVR plug in; today an agentless campaign plays
its prompt in full and hangs up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

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


def answered_flow(prompt: Pcm, hang_up: Callable[[], None]) -> CallFlow:
    """The flow for an answered agentless call (AMD and IVR will branch here)."""
    return PlayPrompt(prompt, hang_up)
