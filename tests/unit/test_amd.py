"""Answering-machine detection: a fixed set of clips and Asterisk's rules.

The clips are built in the test from espeak-ng and the Asterisk prompts of
Debian's asterisk-core-sounds-en-wav, so both must be installed.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dsp.amd import (
    AmdDecision,
    AmdDetector,
    AmdParams,
    AmdResult,
    AsteriskAmd,
    AsteriskParams,
    make_amd,
)
from dsp.wav import decode_wav, encode_wav, load_media_audio, resample
from engine.voice.amd_cli import amd_main, analyze_call

RATE = 8000
FRAME = 160
SOUNDS = Path("/usr/share/asterisk/sounds/en")
INSTALL = "apt-get install -y espeak-ng asterisk-core-sounds-en-wav"


@pytest.fixture(scope="module")
def tools() -> None:
    if shutil.which("espeak-ng") is None or not (SOUNDS / "hello.wav").exists():
        pytest.fail(f"espeak-ng and {SOUNDS} are needed: {INSTALL}")


def say(text: str, voice: str = "en-us", rate: int = 160) -> np.ndarray:
    """espeak-ng speech at 8 kHz, float, edges trimmed to the voiced part."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "-p", "50", "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    samples, info = decode_wav(wav)
    x = resample(samples, info.sample_rate)
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
    return x[loud[0] : loud[-1] + 1]


def clip(*parts: tuple[float, np.ndarray], total: float, seed: int = 0) -> np.ndarray:
    """Place parts at their start times, at -20 dBFS speech over -60 dBFS noise."""
    out = np.zeros(round(total * RATE))
    for start, audio in parts:
        i = round(start * RATE)
        out[i : i + len(audio)] += audio[: len(out) - i]
    active = out[np.abs(out) > 0]
    if len(active):
        out *= 32768 * 10 ** (-20 / 20) / np.sqrt(np.mean(active**2))
    out += np.random.default_rng(seed).normal(0, 32768 * 10 ** (-60 / 20), len(out))
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def tone(hz: float, seconds: float) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(round(seconds * RATE)) / RATE) * 8000.0


def run(detector: AmdDetector | AsteriskAmd, pcm: np.ndarray):
    """Feed whole frames; return the decision (or None) and how many frames decided."""
    decisions = []
    for i in range(len(pcm) // FRAME):
        d = detector.feed(pcm[i * FRAME : (i + 1) * FRAME], i * FRAME / RATE)
        if d is not None:
            decisions.append(d)
    assert len(decisions) <= 1, "a detector decides once"
    return decisions[0] if decisions else None


# --------------------------------------------------------------------------- fixed clips


def test_short_hello_is_human(tools: None) -> None:
    hello = say("Hello?")
    pcm = clip((0.6, hello), total=5.0)
    end = 0.6 + len(hello) / RATE
    d = run(AmdDetector(), pcm)
    assert d is not None and d.result is AmdResult.HUMAN
    # Decided on the silence after the word, not before it ended.
    assert end < d.decided_at < end + 2.0
    assert analyze_call(pcm).result == "human"


def test_asterisk_hello_recording_is_human(tools: None) -> None:
    hello = load_media_audio((SOUNDS / "hello.wav").read_bytes()).astype(float)
    assert analyze_call(clip((0.4, hello), total=5.0)).result == "human"


def test_six_second_greeting_is_machine(tools: None) -> None:
    greeting = say(
        "Hi, you've reached John and Mary. We can't come to the phone right now. "
        "Please leave a message after the beep."
    )
    assert 5.0 < len(greeting) / RATE < 9.0
    pcm = clip((0.5, greeting), total=0.5 + len(greeting) / RATE + 1.5)
    d = run(AmdDetector(), pcm)
    assert d is not None and d.result is AmdResult.MACHINE
    assert d.decided_at < 0.5 + len(greeting) / RATE  # before the greeting is over
    assert analyze_call(pcm).result == "machine"


def test_greeting_with_beep_is_machine_and_beep_end_found(tools: None) -> None:
    greeting = say("Hello, you have reached Sam. Please leave your message after the tone.")
    g_end = 0.3 + len(greeting) / RATE
    beep_start, beep_end = g_end + 0.5, g_end + 1.0
    pcm = clip((0.3, greeting), (beep_start, tone(1000.0, 0.5)), total=beep_end + 1.5)
    result = analyze_call(pcm)
    assert result.result == "machine"
    assert result.beep_end_ms is not None
    assert abs(result.beep_end_ms - beep_end * 1000) <= 100


def test_carrier_voicemail_recordings_are_machine(tools: None) -> None:
    parts = [load_media_audio((SOUNDS / f"{n}.wav").read_bytes()).astype(float)
             for n in ("vm-nobodyavail", "vm-intro")]  # fmt: skip
    pcm = clip((0.2, parts[0]), (0.2 + len(parts[0]) / RATE, parts[1]), total=10.0)
    assert analyze_call(pcm).result == "machine"


def test_silence_is_silence_or_notsure(tools: None) -> None:
    pcm = clip(total=8.0)
    d = run(AmdDetector(), pcm)
    assert d is not None and d.result is AmdResult.NOTSURE and d.words == 0
    assert analyze_call(pcm).result in ("silence", "notsure")


def test_override_changes_the_verdict(tools: None) -> None:
    # "Hello, this is Sam" (about 1.2 s) is a person by default, and a machine
    # when any talk longer than 400 ms counts as a greeting.
    pcm = clip((0.5, say("Hello, this is Sam.")), total=5.0)
    assert analyze_call(pcm).result == "human"
    assert analyze_call(pcm, "default", {"greeting_ms": "400"}).result == "machine"


# --------------------------------------------------------------------------- timing rules


def levels(detector: AmdDetector, *segments: tuple[str, float]) -> object:
    """Step 20 ms frames of 't'alk (-20 dBFS, VAD speech) or 'n'oise (-60 dBFS)."""
    n = 0
    for kind, seconds in segments:
        for _ in range(round(seconds / 0.02)):
            n += 1
            level, vad = (-20.0, True) if kind == "t" else (-60.0, False)
            d = detector.step(level, vad, round(n * 0.02, 6))
            if d is not None:
                return d
    return None


@pytest.mark.parametrize(("talk", "long_talk_ms"), [(0.4, 700), (1.0, 700), (1.0, 0)])
def test_longer_talk_waits_longer_for_the_human_verdict(talk: float, long_talk_ms: int) -> None:
    p = AmdParams(long_talk_ms=long_talk_ms)
    d = levels(AmdDetector(p), ("n", 0.5), ("t", talk), ("n", 3.0))
    assert isinstance(d, AmdDecision) and d.result is AmdResult.HUMAN
    long = long_talk_ms and talk >= long_talk_ms / 1000
    wait = (p.after_long_talk_silence_ms if long else p.after_greeting_silence_ms) / 1000
    # The talk ends one smoothed frame after the last talk frame.
    quiet = d.decided_at - (0.5 + talk + 0.02)
    assert wait - 1e-6 <= quiet < wait + 0.02


@pytest.mark.parametrize(("resume_onset_ms", "result"), [(20, "machine"), (40, "human")])
def test_resumed_talk_is_taken_on_its_first_frame(resume_onset_ms: int, result: str) -> None:
    # A short first phrase, then the talk resumes on the very frame where the
    # silence reaches after_greeting_silence_ms: a 20 ms onset catches it (and
    # the talk that follows makes the greeting long: a machine); a 40 ms one
    # is a frame late.
    p = AmdParams(resume_onset_ms=resume_onset_ms, greeting_ms=2000)
    talk_end = 0.5 + 0.5 + 0.02  # one smoothed frame after the last talk frame
    deadline = talk_end + math.ceil(p.after_greeting_silence_ms / 20 - 1e-9) * 0.02
    pause = deadline - 0.02 - 1.0
    d = levels(AmdDetector(p), ("n", 0.5), ("t", 0.5), ("n", pause), ("t", 1.2))
    assert isinstance(d, AmdDecision) and d.result.value == result


# --------------------------------------------------------------------------- Asterisk's rules


def pattern(*segments: tuple[str, float]) -> np.ndarray:
    """Frames of 'v'oice (mean |x| 2000) or 's'ilence (zeros), durations in seconds."""
    out = []
    for kind, seconds in segments:
        n = round(seconds * RATE)
        out.append(np.full(n, 2000 if kind == "v" else 0, dtype=np.int16))
    return np.concatenate(out)


def test_asterisk_third_word_is_too_many() -> None:
    # Words of 300 ms between 300 ms silences. Asterisk counts a word when a
    # voice run reaches 100 ms after a silence of at least 50 ms, and declares
    # MACHINE when the count reaches maximum_number_of_words (2): the second
    # word after the initial silence, 100 ms into it (0.5 + 0.3 + 0.3 + 0.1 s).
    pcm = pattern(("s", 0.5), ("v", 0.3), ("s", 0.3), ("v", 0.3), ("s", 0.3), ("v", 0.3))
    d = run(AsteriskAmd(), pcm)
    assert d is not None
    assert (d.result, d.cause, d.words) == (AmdResult.MACHINE, "max_words", 2)
    assert d.decided_at == pytest.approx(1.2)


def test_asterisk_talk_from_the_first_frame_counts_from_the_second_word() -> None:
    # Asterisk starts in its word state: voice before any silence is not a word,
    # so three voice runs from the very start give MACHINE on the third.
    pcm = pattern(("v", 0.3), ("s", 0.3), ("v", 0.3), ("s", 0.3), ("v", 0.3), ("s", 1.0))
    d = run(AsteriskAmd(AsteriskParams(greeting=5000)), pcm)
    assert d is not None and (d.result, d.cause) == (AmdResult.MACHINE, "max_words")
    assert d.decided_at == pytest.approx(1.3)


def test_asterisk_long_greeting() -> None:
    d = run(AsteriskAmd(), pattern(("s", 0.3), ("v", 2.0), ("s", 1.0)))
    assert d is not None and (d.result, d.cause) == (AmdResult.MACHINE, "long_greeting")
    assert d.decided_at == pytest.approx(0.3 + 1.5)
    assert d.greeting_ms == 1500


def test_asterisk_initial_silence() -> None:
    d = run(AsteriskAmd(), pattern(("s", 4.0)))
    assert d is not None and (d.result, d.cause) == (AmdResult.MACHINE, "initial_silence")
    assert d.decided_at == pytest.approx(2.5)


def test_asterisk_short_word_then_silence_is_human() -> None:
    d = run(AsteriskAmd(), pattern(("s", 0.3), ("v", 0.4), ("s", 2.0)))
    assert d is not None and (d.result, d.cause) == (AmdResult.HUMAN, "after_greeting_silence")
    assert d.decided_at == pytest.approx(0.7 + 0.8)


def test_asterisk_total_analysis_time_is_notsure() -> None:
    params = AsteriskParams(maximum_number_of_words=100, greeting=60000)
    pcm = pattern(*[("v", 0.3), ("s", 0.3)] * 12)
    d = run(AsteriskAmd(params), pcm)
    assert d is not None and (d.result, d.cause) == (AmdResult.NOTSURE, "max_analysis_time")
    assert d.decided_at == pytest.approx(5.0)


def test_asterisk_maximum_word_length() -> None:
    params = AsteriskParams(greeting=60000, maximum_word_length=1000)
    d = run(AsteriskAmd(params), pattern(("s", 0.2), ("v", 3.0)))
    assert d is not None and (d.result, d.cause) == (AmdResult.MACHINE, "max_word_length")
    assert d.decided_at == pytest.approx(1.2)


def test_asterisk_silence_threshold_is_on_the_mean_absolute_sample() -> None:
    # Mean |x| of 255 is silence, 256 is voice (threshold 256).
    quiet = np.full(4 * RATE, 255, dtype=np.int16)
    loud = np.concatenate([np.zeros(RATE // 2, np.int16), np.full(3 * RATE, 256, np.int16)])
    assert run(AsteriskAmd(), quiet).cause == "initial_silence"
    assert run(AsteriskAmd(), loud).cause == "long_greeting"


# --------------------------------------------------------------------------- parameters


def test_make_amd_applies_overrides() -> None:
    default = make_amd("default", {"greeting_ms": "2500", "speech_margin_db": 7.5})
    assert isinstance(default, AmdDetector)
    assert default.params.greeting_ms == 2500 and default.params.speech_margin_db == 7.5
    asterisk = make_amd("asterisk", {"maximum_number_of_words": "3"})
    assert isinstance(asterisk, AsteriskAmd)
    assert asterisk.params == AsteriskParams(maximum_number_of_words=3)


@pytest.mark.parametrize(
    ("mode", "overrides", "message"),
    [
        ("default", {"greting_ms": "1"}, "greting_ms"),
        ("asterisk", {"greeting_ms": "1"}, "greeting_ms"),  # a default-mode name
        ("default", {"greeting_ms": "long"}, "greeting_ms"),
        ("default", {"greeting_ms": "2.5"}, "whole number"),
        ("default", {"vad_mode": "7"}, "vad_mode"),
        ("default", {"speech_margin_db": "-3"}, "speech_margin_db"),
        ("fancy", {}, "fancy"),
    ],
)
def test_bad_parameters_are_named(mode: str, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_amd(mode, overrides)


def test_default_params_are_the_documented_defaults() -> None:
    assert make_amd("asterisk").params == AsteriskParams(  # type: ignore[union-attr]
        initial_silence=2500, greeting=1500, after_greeting_silence=800,
        total_analysis_time=5000, min_word_length=100, between_words_silence=50,
        maximum_number_of_words=2, silence_threshold=256, maximum_word_length=5000,
    )  # fmt: skip
    assert make_amd().params == AmdParams()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- the CLI


def test_amd_main_reports_each_file_and_keeps_going(tools: None, tmp_path: Path) -> None:
    good = tmp_path / "hello.wav"
    good.write_bytes(encode_wav(clip((0.5, say("Hello?")), total=4.0)))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not a wav")
    out = io.StringIO()
    status = amd_main([bad, tmp_path / "missing.wav", good], "default", [], out=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert status == 1
    assert [line["file"] for line in lines] == [str(bad), str(tmp_path / "missing.wav"), str(good)]
    assert "error" in lines[0] and "error" in lines[1]
    assert lines[2]["result"] == "human" and lines[2]["beep_end_ms"] is None
    assert set(lines[2]) == {"file", "result", "cause", "decided_ms", "beep_end_ms", "sit"}
    assert isinstance(lines[2]["decided_ms"], int)


def test_amd_main_rejects_bad_sets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(encode_wav(np.zeros(8000, dtype=np.int16)))
    assert amd_main([path], "default", ["nosuch=1"], out=io.StringIO()) == 2
    assert "nosuch" in capsys.readouterr().err
    assert amd_main([path], "default", ["greeting_ms"], out=io.StringIO()) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    out = io.StringIO()
    assert amd_main([path], "asterisk", ["greeting=1000"], out=out) == 0
    assert json.loads(out.getvalue())["result"] in ("silence", "machine")


# ------------------------------------------------------------ agent campaigns' routing


@pytest.mark.parametrize(
    ("on_machine", "handed_over"),
    [("hangup", False), ("agent", True), ("ivr", True)],
)
def test_an_agent_campaigns_machine_goes_where_on_machine_says(
    tools: None, on_machine: str, handed_over: bool
) -> None:
    """A machine verdict in an agent campaign: hung up on (no hand-over), or
    handed to the dial loop, which sends it to an agent (`agent`) or into the
    campaign's IVR (`ivr`) with the analysis result saying machine."""
    from engine.campaign_config import AmdConfig
    from engine.voice.agent_flow import AgentAnalysisFlow
    from engine.voice.flows import Analysis

    greeting = say(
        "Hi, you've reached John and Mary. We can't come to the phone right now. "
        "Please leave a message after the beep."
    )
    pcm = clip((0.5, greeting), total=0.5 + len(greeting) / RATE + 1.5)
    handed: list[tuple[float, float]] = []
    hung_up: list[bool] = []
    analysis = Analysis()
    flow = AgentAnalysisFlow(
        AmdConfig(enabled=True, on_machine=on_machine), np.zeros(800, np.int16),
        lambda: hung_up.append(True), analysis, lambda end, now: handed.append((end, now)),
    )  # fmt: skip
    for i in range(len(pcm) // FRAME):
        flow.on_frame(pcm[i * FRAME : (i + 1) * FRAME])
    assert analysis.amd_result == "machine"
    assert bool(handed) is handed_over and len(handed) <= 1
    if handed_over:
        assert analysis.result is not None and analysis.result.value == "machine"
        assert not hung_up
