"""`outdial tones FILE.wav ...`: the tone events of recordings, as JSON lines.

Each file is read whole, decoded from any common WAV (8 to 48 kHz, mono or
stereo, PCM, float, mu-law or A-law), resampled to 8 kHz and run through every
detector of `dsp.tones`.  One JSON object is printed per file; a file that
cannot be read or decoded gets {"file", "error"} and the others still run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from dsp.tones import ToneEvent, analyze_tones
from dsp.wav import WavError, load_media_audio


def _event_json(event: ToneEvent) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "start_ms": round(event.start * 1000.0),
        "end_ms": None if event.end is None else round(event.end * 1000.0),
        "value": event.value,
        "frequency": event.frequency,
    }


def tones_report(path: Path) -> dict[str, Any]:
    """The JSON object printed for one file (an "error" key when it failed)."""
    try:
        pcm = load_media_audio(path.read_bytes())
    except OSError as exc:
        return {"file": str(path), "error": f"cannot read: {exc.strerror or exc}"}
    except WavError as exc:
        return {"file": str(path), "error": f"not a supported WAV file: {exc}"}
    events = sorted(analyze_tones(pcm), key=lambda e: (e.start, e.kind))
    return {"file": str(path), "events": [_event_json(e) for e in events]}


def tones_main(paths: list[Path], out: TextIO | None = None) -> int:
    """Print one JSON object per file; 1 if any file failed, else 0."""
    stream = sys.stdout if out is None else out
    failed = False
    for path in paths:
        report = tones_report(path)
        failed = failed or "error" in report
        print(json.dumps(report), file=stream, flush=True)
    return 1 if failed else 0
