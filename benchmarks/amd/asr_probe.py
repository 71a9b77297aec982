"""Could an offline speech recogniser tell machines by what they say? A probe.

    pip install pocketsphinx    # not a dependency of outdial; use a scratch venv
    python -m benchmarks.amd.asr_probe [--corpus var/amd-corpus] [--clips 40]

Feeds the first 4 s of the corpus's first people and machine clips to
PocketSphinx (the one offline recogniser whose model ships inside its PyPI
wheel: US English, 16 kHz, so our 8 kHz audio is upsampled) in 20 ms frames,
prints each transcript next to the words the clip really says, and the CPU
the recogniser spent per 20 ms frame. Standalone on purpose (numpy, scipy and
the standard library only), so it runs in the scratch venv that has
pocketsphinx without outdial's own dependencies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

SECONDS = 4.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("var/amd-corpus"))
    parser.add_argument("--clips", type=int, default=40)
    args = parser.parse_args(argv)
    try:
        from pocketsphinx import Decoder  # type: ignore[import-not-found]
    except ImportError:
        sys.exit("asr_probe: needs pocketsphinx (pip install pocketsphinx in a scratch venv)")
    path = args.corpus / "labels.jsonl"
    if not path.exists():
        sys.exit(f"no {path}; build it with python -m benchmarks.amd.make_corpus")
    labels = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    picked = [lab for lab in labels if lab["class"] in ("human", "machine")][: args.clips]
    decoder = Decoder(loglevel="FATAL")
    cpu = 0.0
    frames = 0
    for label in picked:
        with wave.open(str(args.corpus / label["file"])) as clip:
            pcm = np.frombuffer(clip.readframes(clip.getnframes()), dtype=np.int16)
        pcm = pcm[: int(SECONDS * 8000)]
        wide = np.clip(resample_poly(pcm.astype(np.float64), 2, 1), -32768, 32767)
        audio = wide.astype(np.int16)
        started = time.process_time()
        decoder.start_utt()
        for i in range(0, len(audio) - 319, 320):  # 20 ms at 16 kHz
            decoder.process_raw(audio[i : i + 320].tobytes(), False, False)
        decoder.end_utt()
        cpu += time.process_time() - started
        frames += len(audio) // 320
        heard = decoder.hyp().hypstr if decoder.hyp() else ""
        said = " / ".join(label.get("texts", []))
        print(f"{label['class']:<8} said: {said[:70]}\n         heard: {heard}")
    print(f"\n{len(picked)} clips: {1e6 * cpu / max(frames, 1):.0f} us of CPU per 20 ms frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
