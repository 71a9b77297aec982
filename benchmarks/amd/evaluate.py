"""Accuracy benchmark of call analysis on the labelled corpus (issue 4, section 4).

    python -m benchmarks.amd.evaluate [--corpus var/amd-corpus] [--json FILE]
        [--modes default,asterisk] [--set NAME=VALUE ...]

Runs every clip through `engine.voice.amd_cli.analyze_call` (the AMD of each mode
next to the fax, SIT and beep detectors of `dsp.tones`, combined as the CLI
and the engine combine them) and prints, mode by mode side by side: accuracy;
false-machine rate on people; missed machines; not-sure rate; decision
latency (median and p95) for people after their first utterance ends and for
machines after the answer; beep latency after the beep ends and false beeps;
CPU microseconds per frame; then the same broken down by SNR band, codec,
packet loss and clip kind. ``--set`` overrides default-mode parameters
(``--set after_greeting_silence_ms=800``) to show other operating points.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dsp.amd import make_amd
from dsp.tones import ToneAnalyzer
from dsp.wav import load_media_audio
from engine.voice.amd_cli import analyze_call, parse_sets

FRAME = 160
FRAME_S = 0.02
TARGETS = {
    "accuracy": ">= 97% and >= asterisk + 10 points",
    "false_machine": "<= 1%",
    "not_sure": "<= 3%",
    "human_latency_ms": "median <= 800",
    "machine_latency_ms": "median <= 2500",
    "beep_latency_ms": "found within 300 ms of the end",
    "false_beeps": "<= 0.5%",
    "cpu_us_per_frame": "<= 20 (default mode)",
}
_STATE: dict[str, Any] = {}


# --------------------------------------------------------------------------- per clip


def _cpu_amd(pcm: np.ndarray, mode: str, overrides: dict[str, str]) -> tuple[int, int]:
    """CPU nanoseconds and frames of the AMD alone, fed until it decides."""
    amd = make_amd(mode, overrides)
    frames = [pcm[i * FRAME : (i + 1) * FRAME] for i in range(len(pcm) // FRAME)]
    n = 0
    start = time.process_time_ns()
    for i, frame in enumerate(frames):
        n += 1
        if amd.feed(frame, i * FRAME_S) is not None:
            break
    return time.process_time_ns() - start, n


def _cpu_tones(pcm: np.ndarray) -> tuple[int, int]:
    tones = ToneAnalyzer(dtmf=False, progress=False)
    frames = [pcm[i * FRAME : (i + 1) * FRAME] for i in range(len(pcm) // FRAME)]
    start = time.process_time_ns()
    for i, frame in enumerate(frames):
        tones.feed(frame, i * FRAME_S)
    return time.process_time_ns() - start, len(frames)


def _run_clip(label: dict[str, Any]) -> dict[str, Any]:
    corpus: Path = _STATE["corpus"]
    pcm = load_media_audio((corpus / label["file"]).read_bytes())
    out: dict[str, Any] = {"id": label["id"], "modes": {}}
    for mode in _STATE["modes"]:
        overrides = _STATE["overrides"] if mode == "default" else {}
        analysis = analyze_call(pcm, mode, overrides)
        cpu_ns, frames = _cpu_amd(pcm, mode, overrides)
        out["modes"][mode] = {
            "result": analysis.result,
            "cause": analysis.cause,
            "decided_ms": analysis.decided_ms,
            "beep_end_ms": analysis.beep_end_ms,
            "sit": analysis.sit,
            "cpu_ns": cpu_ns,
            "frames": frames,
        }
        if mode == _STATE["modes"][0]:
            out["beeps"] = [
                [b.start, b.end, ms / 1000.0]
                for b, ms in zip(analysis.beeps, analysis.beep_reported_ms, strict=True)
            ]
    if int(label["id"]) % 10 == 0:  # the tone detectors' cost, on a tenth of the clips
        out["tones_cpu_ns"], out["tones_frames"] = _cpu_tones(pcm)
    return out


def _init(corpus: str, modes: list[str], overrides: dict[str, str]) -> None:
    _STATE.update(corpus=Path(corpus), modes=modes, overrides=overrides)


# --------------------------------------------------------------------------- metrics


def _pct(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 2)


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "median": None, "p95": None}
    return {
        "n": len(values),
        "median": round(statistics.median(values)),
        "p95": round(float(np.percentile(values, 95))),
    }


def mode_metrics(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Accuracy, error rates and latencies of one mode over (label, result) pairs."""
    people = [(lab, r) for lab, r in pairs if lab["class"] == "human"]
    machines = [(lab, r) for lab, r in pairs if lab["class"] == "machine"]
    faxes = [(lab, r) for lab, r in pairs if lab["class"] == "fax"]
    sits = [(lab, r) for lab, r in pairs if lab["class"] == "sit"]
    silences = [(lab, r) for lab, r in pairs if lab["class"] == "silence"]
    human_latency = [
        r["decided_ms"] - 1000.0 * lab["first_speech_end"]
        for lab, r in people
        if r["result"] == "human"
    ]
    machine_latency = [float(r["decided_ms"]) for lab, r in machines if r["result"] == "machine"]
    frames = sum(r["frames"] for _, r in pairs)
    return {
        "clips": len(pairs),
        "accuracy": _pct(sum(r["result"] == lab["class"] for lab, r in pairs), len(pairs)),
        "false_machine": _pct(sum(r["result"] == "machine" for _, r in people), len(people)),
        "missed_machine": _pct(sum(r["result"] != "machine" for _, r in machines), len(machines)),
        "not_sure": _pct(sum(r["result"] == "notsure" for _, r in pairs), len(pairs)),
        "fax_found": _pct(sum(r["result"] == "fax" for _, r in faxes), len(faxes)),
        "sit_found": _pct(sum(r["result"] == "sit" for _, r in sits), len(sits)),
        "sit_code_right": _pct(
            sum(r["sit"] == lab.get("sit_code") for lab, r in sits if r["result"] == "sit"),
            sum(r["result"] == "sit" for _, r in sits),
        ),
        "silence_found": _pct(sum(r["result"] == "silence" for _, r in silences), len(silences)),
        "human_latency_ms": _quantiles(human_latency),
        "machine_latency_ms": _quantiles(machine_latency),
        "cpu_us_per_frame": None if frames == 0 else round(
            sum(r["cpu_ns"] for _, r in pairs) / frames / 1000.0, 2
        ),
    }  # fmt: skip


def beep_metrics(labels: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Beeps found (any report overlapping the true beep), their latency, false beeps."""
    latencies: list[float] = []
    with_beep = found = false_clips = false_reported = 0
    by_class: dict[str, list[int]] = {}  # class -> [clips with a false beep, clips]
    for label, run in zip(labels, runs, strict=True):
        truth = (label["beep_start"], label["beep_end"]) if label["beep_start"] else None
        matched = False
        false_here = False
        for start, end, reported in run["beeps"]:
            if truth and start < truth[1] + 0.05 and (end or start) > truth[0] - 0.05:
                if not matched:
                    latencies.append(1000.0 * (reported - truth[1]))
                matched = True
            else:
                false_here = True
        with_beep += truth is not None
        found += matched
        false_clips += false_here
        # What the analysis reports (and the dialer acts on): a fax or an
        # intercept takes precedence over a beep, so only beep_end_ms counts.
        first = next(iter(run["modes"].values()))
        reported_end = first["beep_end_ms"]
        if reported_end is not None and not (
            truth and truth[0] - 0.05 < reported_end / 1000.0 < truth[1] + 0.35
        ):
            false_reported += 1
        counts = by_class.setdefault(label["class"], [0, 0])
        counts[0] += false_here
        counts[1] += 1
    return {
        "with_beep": with_beep,
        "found": _pct(found, with_beep),
        "found_within_300ms": _pct(sum(v <= 300 for v in latencies), with_beep),
        "latency_ms": _quantiles(latencies),
        "false_beeps": _pct(false_clips, len(labels)),
        "false_beeps_by_class": {k: _pct(v[0], v[1]) for k, v in sorted(by_class.items())},
        "false_beeps_reported": _pct(false_reported, len(labels)),
    }


def _band(label: dict[str, Any]) -> str:
    snr = label.get("snr_db")
    if snr is None:
        return "n/a"
    return "5-10 dB" if snr < 10 else "10-20 dB" if snr < 20 else "20-30 dB"


def _loss(label: dict[str, Any]) -> str:
    loss = label.get("loss") or 0.0
    return "none" if loss == 0 else "<2%" if loss < 0.02 else "2-5%"


BREAKDOWNS: dict[str, Callable[[dict[str, Any]], str]] = {
    "snr": _band,
    "codec": lambda label: str(label.get("codec")),
    "loss": _loss,
    "kind": lambda label: f"{label['class']}/{label['kind']}",
}


def evaluate(
    labels: list[dict[str, Any]], runs: list[dict[str, Any]], modes: list[str]
) -> dict[str, Any]:
    """All metrics: overall per mode, beeps, and per breakdown group."""
    overall = {m: mode_metrics([(lab, r["modes"][m]) for lab, r in zip(labels, runs, strict=True)])
               for m in modes}  # fmt: skip
    breakdown: dict[str, Any] = {}
    for name, key in BREAKDOWNS.items():
        groups: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            groups.setdefault(key(label), []).append(i)
        breakdown[name] = {
            group: {m: mode_metrics([(labels[i], runs[i]["modes"][m]) for i in idx]) for m in modes}
            for group, idx in sorted(groups.items())
        }
    tones_ns = sum(r.get("tones_cpu_ns", 0) for r in runs)
    tones_frames = sum(r.get("tones_frames", 0) for r in runs)
    return {
        "overall": overall,
        "beeps": beep_metrics(labels, runs),
        "tones_cpu_us_per_frame": round(tones_ns / tones_frames / 1000.0, 2)
        if tones_frames
        else None,
        "breakdown": breakdown,
    }


# --------------------------------------------------------------------------- printing


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        if value.get("median") is None:
            return "-"
        return f"{value['median']} / {value['p95']}{suffix}"
    return f"{value}{suffix}"


def print_report(result: dict[str, Any], modes: list[str], out: Any = sys.stdout) -> None:
    rows = [
        ("accuracy", "accuracy", "%"),
        ("false machine on people", "false_machine", "%"),
        ("missed machines", "missed_machine", "%"),
        ("not sure", "not_sure", "%"),
        ("fax found", "fax_found", "%"),
        ("SIT found (code right)", "sit_found", "%"),
        ("silence found", "silence_found", "%"),
        ("people: ms after 1st utterance (med/p95)", "human_latency_ms", ""),
        ("machines: ms after answer (med/p95)", "machine_latency_ms", ""),
        ("CPU us per frame (AMD)", "cpu_us_per_frame", ""),
    ]
    overall = result["overall"]
    width = 42
    print(f"{'metric':<{width}}" + "".join(f"{m:>16}" for m in modes), file=out)
    for title, key, suffix in rows:
        cells = []
        for m in modes:
            text = _fmt(overall[m][key], suffix)
            if key == "sit_found" and overall[m]["sit_code_right"] is not None:
                text += f" ({overall[m]['sit_code_right']}%)"
            cells.append(f"{text:>16}")
        print(f"{title:<{width}}" + "".join(cells), file=out)
    beeps = result["beeps"]
    print(
        f"beeps (same detector for both modes): found {beeps['found']}% of {beeps['with_beep']}, "
        f"within 300 ms of the end {beeps['found_within_300ms']}%, latency after the end "
        f"{_fmt(beeps['latency_ms'])} ms (med/p95), false beeps {beeps['false_beeps']}% of clips "
        f"(by class: {', '.join(f'{k} {v}%' for k, v in beeps['false_beeps_by_class'].items())}"
        f"); tone detectors' CPU {result['tones_cpu_us_per_frame']} us per frame",
        file=out,
    )
    print(
        f"false beeps in what the analysis reports (fax and SIT take precedence): "
        f"{beeps['false_beeps_reported']}% of clips",
        file=out,
    )
    for breakdown, groups in result["breakdown"].items():
        print(f"\nby {breakdown}: clips, accuracy / false machine / missed machines %", file=out)
        for group, per_mode in groups.items():
            n = per_mode[modes[0]]["clips"]
            line = "".join(
                f"  {m}: {_fmt(per_mode[m]['accuracy'])} / {_fmt(per_mode[m]['false_machine'])}"
                f" / {_fmt(per_mode[m]['missed_machine'])}"
                for m in modes
            )
            print(f"  {group:<28}{n:>5}{line}", file=out)


# --------------------------------------------------------------------------- main


def read_labels(corpus: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The corpus's labels (exits with the command that builds it when missing)."""
    path = corpus / "labels.jsonl"
    if not path.exists():
        sys.exit(f"no {path}; build it with python -m benchmarks.amd.make_corpus")
    labels = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return labels[:limit] if limit else labels


def run(
    corpus: Path, modes: list[str], overrides: dict[str, str], jobs: int, labels: Iterable[Any]
) -> list[dict[str, Any]]:
    with multiprocessing.get_context("fork").Pool(
        jobs, _init, (str(corpus), modes, overrides)
    ) as pool:
        return list(pool.imap(_run_clip, labels, chunksize=8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("var/amd-corpus"))
    parser.add_argument("--modes", default="default,asterisk")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--limit", type=int, help="only the first N clips")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    try:
        overrides = parse_sets(args.sets)
        for mode in modes:
            make_amd(mode, overrides if mode == "default" else {})
    except ValueError as exc:
        parser.error(str(exc))
    labels = read_labels(args.corpus, args.limit)
    started = time.perf_counter()
    runs = run(args.corpus, modes, overrides, args.jobs, labels)
    result = evaluate(labels, runs, modes)
    meta_path = args.corpus / "corpus.json"
    result["corpus"] = {
        "path": str(args.corpus),
        "clips": len(labels),
        **(json.loads(meta_path.read_text()) if meta_path.exists() else {}),
    }
    result["overrides"] = overrides
    result["targets"] = TARGETS
    print(f"corpus {args.corpus}: {len(labels)} clips, modes {', '.join(modes)}"
          + (f", default-mode overrides {overrides}" if overrides else ""))  # fmt: skip
    print_report(result, modes)
    print(f"\n({time.perf_counter() - started:.0f} s)")
    if args.json:
        result["clips"] = [
            {"id": lab["id"], "class": lab["class"], "kind": lab["kind"], **r["modes"]}
            for lab, r in zip(labels, runs, strict=True)
        ]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
