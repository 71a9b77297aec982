"""The recorded AMD sample behind Ofcom's false-positive estimate.

Ofcom counts calls that AMD took for machines but a person answered as
abandoned calls, and expects a reasoned estimate of how many there are
(statement on persistent misuse, 2016, para. A1.22). The estimate here comes
from listening: a share of answered calls (`amd.sample_share`, chosen at the
answer) keep their first `amd.sample_seconds` of inbound audio in memory;
when such a call ends classified a machine, the audio is written as a WAV
file and an `amd_samples` row is queued for an operator to mark (person or
machine, `outdial ctl compliance mark`). Every other call's audio is
dropped. The marks give the rate (engine.store.amdsampledb).

`AmdSampler` is one campaign's: `at_answer` decides (with an injected
`random.Random`, seedable in tests) and returns the media leg's tap;
`at_end` keeps or drops what was heard.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from dsp.wav import MEDIA_RATE, encode_wav

if TYPE_CHECKING:
    from engine.campaign_config import AmdConfig
    from engine.store import Store

log = logging.getLogger("outdial.amd_sample")

Pcm = NDArray[np.int16]
DEFAULT_DIRECTORY = Path("var/amd-samples")


class AudioSample:
    """The first `seconds` of one call's inbound audio (8 kHz int16), in a
    buffer allocated once; frames past the end are ignored."""

    __slots__ = ("_filled", "_pcm")

    def __init__(self, seconds: float) -> None:
        self._pcm = np.zeros(round(seconds * MEDIA_RATE), np.int16)
        self._filled = 0

    def tap(self, frame: Pcm) -> None:
        """One received frame (copied: the caller may reuse its buffer)."""
        n = min(len(self._pcm) - self._filled, len(frame))
        if n > 0:
            self._pcm[self._filled : self._filled + n] = frame[:n]
            self._filled += n

    @property
    def full(self) -> bool:
        return self._filled >= len(self._pcm)

    @property
    def seconds(self) -> float:
        return self._filled / MEDIA_RATE

    def audio(self) -> Pcm:
        return self._pcm[: self._filled].copy()


class AmdSampler:
    """One campaign's AMD sample (see the module docstring). Files go to
    `directory/CAMPAIGN/ATTEMPT.wav`."""

    def __init__(
        self,
        store: Store,
        directory: Path = DEFAULT_DIRECTORY,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.rng = rng if rng is not None else random.Random()
        self._held: dict[int, AudioSample] = {}
        self._saving: set[asyncio.Task[None]] = set()
        self.saved = 0

    @property
    def held(self) -> int:
        """Calls whose audio is being kept now."""
        return len(self._held)

    def at_answer(self, attempt_id: int, amd: AmdConfig) -> Callable[[Pcm], None] | None:
        """At the answer: sample this call (probability `amd.sample_share`,
        only when AMD runs)? Returns the tap for its media leg, or None."""
        if not amd.enabled or amd.sample_share <= 0:
            return None
        if self.rng.random() >= amd.sample_share:
            return None
        sample = self._held[attempt_id] = AudioSample(amd.sample_seconds)
        return sample.tap

    def at_end(
        self,
        campaign: str,
        attempt_id: int,
        number: str,
        machine: bool,
        recorded_at: datetime | None,
    ) -> AudioSample | None:
        """The call ended: a machine verdict's audio is saved (in the
        background; `drain` waits for it), anything else's dropped. Returns
        the sample kept, if any."""
        sample = self._held.pop(attempt_id, None)
        if sample is None or not machine or recorded_at is None or not sample.seconds:
            return None
        path = (self.directory / campaign / f"{attempt_id}.wav").absolute()
        task = asyncio.get_running_loop().create_task(
            self._save(sample, path, campaign, attempt_id, number, recorded_at)
        )
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)
        return sample

    async def _save(
        self, sample: AudioSample, path: Path, campaign: str, attempt_id: int, number: str,
        recorded_at: datetime,
    ) -> None:  # fmt: skip
        try:
            await asyncio.to_thread(_write_wav, path, sample.audio())
        except OSError as exc:
            log.warning("AMD sample of attempt %s not saved: %s", attempt_id, exc)
            return
        self.store.add_amd_sample(campaign=campaign, attempt_id=attempt_id, number=number,
                                  path=str(path), recorded_at=recorded_at)  # fmt: skip
        self.saved += 1

    async def drain(self) -> None:
        """Wait for the samples being written (daemon shutdown)."""
        if self._saving:
            await asyncio.gather(*self._saving, return_exceptions=True)


def _write_wav(path: Path, audio: Pcm) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(encode_wav(audio))
    partial.replace(path)  # never a half-written file under the listed name
