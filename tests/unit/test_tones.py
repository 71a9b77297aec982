"""Tone detectors: synthetic tones at the edges of their acceptance ranges, real
speech for talk-off and false beeps, and `outdial tones` on every WAV encoding.

Signals are generated here from the standards' tables (written out below, not
taken from the detectors), and the DTMF generator is itself checked against an
FFT before the detector is trusted with its output.  Speech comes from Debian's
asterisk-core-sounds-en-wav (real 8 kHz recordings) and from espeak-ng.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsp.goertzel import FrameError, ToneParamError, analyze_frame
from dsp.tones import (
    BeepDetector,
    DtmfDetector,
    FaxDetector,
    ProgressDetector,
    SitDetector,
    ToneAnalyzer,
    ToneEvent,
    analyze_tones,
    dtmf_tone,
)
from dsp.wav import encode_wav, load_media_audio
from engine.voice.analysis_cli import tones_main

RATE = 8000
SOUNDS = Path("/usr/share/asterisk/sounds/en")
# Prompts that are not speech: beeps and chimes (real tones), and monkeys.
NOT_SPEECH = {
    "beep.wav", "beeperr.wav", "ascending-2tone.wav", "descending-2tone.wav",
    "confbridge-join.wav", "confbridge-leave.wav", "tt-monkeys.wav",
}  # fmt: skip
KEYPAD = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
          "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
          "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
          "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633)}  # fmt: skip
ALL_DIGITS = "123A456B789C*0#D"
# A beep is reported once the quiet after it (a machine starts recording) was
# heard: BeepDetector's documented quiet_ms, counted from the end it measured
# (placed to 10 ms); and within the 300 ms target.
BEEP_QUIET_S, BEEP_REPORT_S = 0.16 - 0.01, 0.3


# --- signal helpers ---------------------------------------------------------------


def tone(freqs: list[float], ms: float, dbfs: float = -15.0, phase: float = 0.0) -> np.ndarray:
    """Sum of sines, each of peak amplitude `dbfs` re full scale."""
    n = np.arange(round(ms * RATE / 1000)) / RATE
    amp = 32768 * 10 ** (dbfs / 20)
    return sum((amp * np.sin(2 * np.pi * f * n + phase) for f in freqs), np.zeros(len(n)))


def silence(ms: float) -> np.ndarray:
    return np.zeros(round(ms * RATE / 1000))


def pcm(*parts: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.concatenate(parts)), -32768, 32767).astype(np.int16)


def cadence(
    freqs: list[float], pattern: list[float], cycles: int, dbfs: float = -15.0
) -> np.ndarray:
    parts = []
    for _ in range(cycles):
        for i, ms in enumerate(pattern):
            parts.append(tone(freqs, ms, dbfs) if i % 2 == 0 else silence(ms))
    return np.concatenate(parts)


def add_noise(x: np.ndarray, snr_db: float, seed: int = 7) -> np.ndarray:
    """White noise at `snr_db` below the mean power of the non-silent samples."""
    x = np.asarray(x, dtype=np.float64)
    power = np.mean(x[x != 0] ** 2)
    noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(x))
    return x + noise


def lose(x: np.ndarray, *frames: int) -> np.ndarray:
    """`x` with the given 20 ms frames (counted from its first sample) lost: zeros."""
    x = np.array(x, dtype=np.float64)
    for i in frames:
        x[i * 160 : (i + 1) * 160] = 0.0
    return x


def feed_all(
    detector: Any, signal: np.ndarray, tail_ms: float = 400
) -> list[tuple[float, ToneEvent]]:
    """(time the event was returned = end of that frame, event), frame by frame."""
    x = pcm(signal, silence(tail_ms))
    x = np.concatenate([x, np.zeros(-len(x) % 160, dtype=np.int16)])
    out = []
    for i in range(len(x) // 160):
        result = detector.feed(x[i * 160 : (i + 1) * 160], i * 0.02)
        for event in result if isinstance(result, list) else [result]:
            if event is not None:
                out.append(((i + 1) * 0.02, event))
    return out


def events(detector: Any, signal: np.ndarray) -> list[ToneEvent]:
    return [e for _, e in feed_all(detector, signal)]


def digits(signal: np.ndarray, **params: float) -> str:
    return "".join(e.value or "?" for e in events(DtmfDetector(**params), signal))


# --- speech corpora ----------------------------------------------------------------


@pytest.fixture(scope="module")
def asterisk_speech() -> list[tuple[str, np.ndarray]]:
    if not SOUNDS.is_dir() or not any(SOUNDS.glob("*.wav")):
        pytest.fail(f"{SOUNDS} is missing: apt-get install asterisk-core-sounds-en-wav")
    files = [f for f in sorted(SOUNDS.glob("*.wav")) if f.name not in NOT_SPEECH]
    assert len(files) >= 50
    return [(f.name, load_media_audio(f.read_bytes())) for f in files]


ESPEAK_TEXTS = (
    "Hello, you have reached the voicemail of Sam. Please leave a message after the tone.",
    "Hi, this is Alex. Yeah? Who is this? Hello? Hello?",
    "Thank you for calling. Our office hours are Monday to Friday, nine to five.",
    "Press one for sales, two for support, or stay on the line for an operator.",
)
ESPEAK_VOICES = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en+f2",
    "en+m3",
    "en-us+f4",
    "en+klatt",
    "en-029",
)


@pytest.fixture(scope="module")
def espeak_speech(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, np.ndarray]]:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: apt-get install espeak-ng")
    out = []
    path = tmp_path_factory.mktemp("espeak") / "speech.wav"
    for v, voice in enumerate(ESPEAK_VOICES):
        for t, text in enumerate(ESPEAK_TEXTS):
            rate, pitch = 130 + 20 * t, 30 + 10 * ((v + t) % 5)
            cmd = [
                "espeak-ng",
                "-v",
                voice,
                "-s",
                str(rate),
                "-p",
                str(pitch),
                "-w",
                str(path),
                text,
            ]
            subprocess.run(cmd, check=True, capture_output=True)
            out.append((f"{voice}/{pitch}/{t}", load_media_audio(path.read_bytes())))
    return out


# --- DTMF --------------------------------------------------------------------------


def test_dtmf_generator_matches_the_keypad_table() -> None:
    """An FFT of each generated digit peaks at its two Q.23 frequencies, twist included."""
    for twist in (0.0, 6.0, -3.0):
        x = dtmf_tone(ALL_DIGITS, on_ms=200, off_ms=0, twist_db=twist, freq_error=0.01)
        for i, d in enumerate(ALL_DIGITS):
            seg = x[i * 1600 : (i + 1) * 1600].astype(float)
            spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 16 * len(seg)))
            freqs = np.fft.rfftfreq(16 * len(seg), 1 / RATE)
            low = freqs[np.argmax(np.where(freqs < 1100, spec, 0))]
            high = freqs[np.argmax(np.where(freqs > 1100, spec, 0))]
            assert low == pytest.approx(KEYPAD[d][0] * 1.01, abs=1.0)
            assert high == pytest.approx(KEYPAD[d][1] * 1.01, abs=1.0)
            level_low = spec[np.argmin(abs(freqs - low))]
            level_high = spec[np.argmin(abs(freqs - high))]
            assert 20 * np.log10(level_low / level_high) == pytest.approx(twist, abs=0.2)


def test_dtmf_all_digits_with_their_times() -> None:
    signal = pcm(silence(37), dtmf_tone(ALL_DIGITS, on_ms=70, off_ms=50))
    found = events(DtmfDetector(), signal)
    assert "".join(e.value or "" for e in found) == ALL_DIGITS
    for i, e in enumerate(found):
        start = 0.037 + i * 0.120
        assert e.kind == "dtmf"
        assert e.start == pytest.approx(start, abs=0.005)
        assert e.end == pytest.approx(start + 0.070, abs=0.005)


@pytest.mark.parametrize("error", [0.014, -0.014])
def test_dtmf_accepts_frequencies_within_1_5_percent(error: float) -> None:
    assert digits(dtmf_tone(ALL_DIGITS, freq_error=error)) == ALL_DIGITS


@pytest.mark.parametrize("error", [0.036, -0.036, 0.05, -0.05])
def test_dtmf_rejects_frequencies_beyond_3_5_percent(error: float) -> None:
    assert digits(dtmf_tone(ALL_DIGITS, freq_error=error)) == ""


@pytest.mark.parametrize(
    ("twist", "accepted"), [(7.9, True), (8.5, False), (-3.9, True), (-4.5, False)]
)
def test_dtmf_twist_limits(twist: float, accepted: bool) -> None:
    """Normal twist (low group louder) up to 8 dB, reverse up to 4 dB."""
    expected = ALL_DIGITS if accepted else ""
    assert digits(dtmf_tone(ALL_DIGITS, twist_db=twist)) == expected


def test_dtmf_twist_limit_is_a_parameter() -> None:
    assert digits(dtmf_tone("159", twist_db=8.5), normal_twist_db=9.0) == "159"


@pytest.mark.parametrize("lead_ms", [0, 3, 7, 10, 13, 17])
def test_dtmf_40_ms_on_and_off_accepted_at_any_alignment(lead_ms: int) -> None:
    signal = pcm(silence(lead_ms), dtmf_tone(ALL_DIGITS, on_ms=40, off_ms=40))
    assert digits(signal) == ALL_DIGITS


@pytest.mark.parametrize("lead_ms", [0, 5, 10, 15])
def test_dtmf_30_ms_tones_rejected(lead_ms: int) -> None:
    signal = pcm(silence(lead_ms), dtmf_tone(ALL_DIGITS, on_ms=30, off_ms=60))
    assert digits(signal) == ""


@pytest.mark.parametrize("lead_ms", [0, 5, 10, 15])
def test_dtmf_pause_of_30_ms_does_not_split_a_digit(lead_ms: int) -> None:
    """A 30 ms gap is bridged (one long digit); a 40 ms gap separates two."""
    bridged = events(DtmfDetector(), pcm(silence(lead_ms), dtmf_tone("55", on_ms=60, off_ms=30)))
    assert [e.value for e in bridged] == ["5"]
    start = lead_ms / 1000
    assert bridged[0].start == pytest.approx(start, abs=0.005)
    assert bridged[0].end == pytest.approx(start + 0.150, abs=0.005)
    split = events(DtmfDetector(), pcm(silence(lead_ms), dtmf_tone("55", on_ms=60, off_ms=40)))
    assert [e.value for e in split] == ["5", "5"]


@pytest.mark.parametrize("level", [-10.0, -20.0, -30.0])
def test_dtmf_levels_down_to_minus_30_dbfs(level: float) -> None:
    assert digits(dtmf_tone(ALL_DIGITS, level_dbfs=level)) == ALL_DIGITS


@pytest.mark.parametrize("level", [-10.0, -30.0])
@pytest.mark.parametrize("twist", [0.0, 4.0, -2.0])
def test_dtmf_in_noise_at_20_db_snr(level: float, twist: float) -> None:
    signal = add_noise(dtmf_tone(ALL_DIGITS, level_dbfs=level, twist_db=twist), 20)
    assert digits(pcm(signal)) == ALL_DIGITS


def test_dtmf_too_quiet_is_ignored() -> None:
    assert digits(dtmf_tone(ALL_DIGITS, level_dbfs=-50)) == ""


def test_dtmf_single_tones_are_not_digits() -> None:
    signal = pcm(*(np.concatenate([tone([f], 100), silence(60)]) for f in (697, 941, 1209, 1633)))
    assert digits(signal) == ""


# --- Beep --------------------------------------------------------------------------


def test_asterisk_beep_is_detected(asterisk_speech: list[tuple[str, np.ndarray]]) -> None:
    x = load_media_audio((SOUNDS / "beep.wav").read_bytes())
    # Truth from the file: FFT peak, and where the envelope is above a tenth of its max.
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), 8 * len(x)))
    peak_hz = np.argmax(spec) * RATE / (8 * len(x))
    loud = np.flatnonzero(np.abs(x) > 0.1 * np.abs(x).max())
    end = (loud[-1] + 1) / RATE
    signal = pcm(silence(500), x)
    found = feed_all(BeepDetector(), signal)
    assert len(found) == 1
    reported, beep = found[0]
    assert beep.kind == "beep"
    assert beep.frequency == pytest.approx(peak_hz, abs=3)
    assert beep.end == pytest.approx(0.5 + end, abs=0.01)
    assert BEEP_QUIET_S <= reported - (0.5 + end) <= BEEP_REPORT_S


@pytest.mark.parametrize("freq", [400, 440, 700, 1000, 1400, 2000])
@pytest.mark.parametrize("ms", [100, 250, 1000])
@pytest.mark.parametrize("lead_ms", [0, 13])
def test_synthetic_beeps_reported_at_their_end(freq: int, ms: int, lead_ms: int) -> None:
    signal = pcm(silence(200 + lead_ms), tone([freq], ms, -20, phase=0.3 * lead_ms), silence(600))
    found = feed_all(BeepDetector(), signal)
    assert len(found) == 1
    reported, beep = found[0]
    start, end = 0.2 + lead_ms / 1000, 0.2 + (lead_ms + ms) / 1000
    assert beep.start == pytest.approx(start, abs=0.01)
    assert beep.end == pytest.approx(end, abs=0.01)
    assert BEEP_QUIET_S <= reported - end <= BEEP_REPORT_S
    assert beep.frequency == pytest.approx(freq, rel=0.005)


@pytest.mark.parametrize(
    "signal",
    [
        pytest.param(pcm(tone([1000], 500, -30)), id="quiet -30 dBFS"),
        pytest.param(pcm(add_noise(tone([850], 300), 20)), id="20 dB SNR"),
        pytest.param(pcm(add_noise(tone([1200], 300), 10)), id="10 dB SNR"),
        pytest.param(
            pcm(tone([600], 300) + tone([1200], 300, -18) + tone([1800], 300, -21)),
            id="strong harmonics",
        ),
        pytest.param(
            pcm(32768 * 0.1 * np.sin(2 * np.pi * np.cumsum(np.linspace(1000, 1020, 4000)) / RATE)),
            id="2% glide",
        ),
    ],
)
def test_beep_variants_found(signal: np.ndarray) -> None:
    assert [e.kind for e in events(BeepDetector(), pcm(silence(200), signal))] == ["beep"]


@pytest.mark.parametrize("name", ["hello-world.wav", "vm-goodbye.wav", "agent-pass.wav"])
def test_beep_between_speech(name: str, asterisk_speech: list[tuple[str, np.ndarray]]) -> None:
    """A greeting, the beep, the quiet of the recording, then speech again."""
    speech = dict(asterisk_speech)[name]
    signal = pcm(speech, silence(150), tone([1000], 300, -12), silence(250), speech)
    found = events(BeepDetector(), signal)
    start = (len(speech) + 1200) / RATE
    assert [e.kind for e in found] == ["beep"]
    assert found[0].start == pytest.approx(start, abs=0.01)
    assert found[0].end == pytest.approx(start + 0.3, abs=0.02)


@pytest.mark.parametrize("name", ["hello-world.wav", "vm-goodbye.wav", "agent-pass.wav"])
def test_tone_followed_at_once_by_speech_is_no_beep(
    name: str, asterisk_speech: list[tuple[str, np.ndarray]]
) -> None:
    """A machine records after its beep; a tone with speech right after is no beep."""
    speech = dict(asterisk_speech)[name]
    assert events(BeepDetector(), pcm(speech, silence(150), tone([1000], 300, -12), speech)) == []


@pytest.mark.parametrize("snr_db", [None, 20.0, 10.0])
def test_held_vowel_followed_by_speech_is_no_beep_but_followed_by_silence_is(
    snr_db: float | None, asterisk_speech: list[tuple[str, np.ndarray]]
) -> None:
    """A pure 120 ms 'vowel' at 450 Hz inside speech, then the same before a pause.

    Noise runs through the whole signal (when `snr_db` is set): the pause after
    the beep is line noise, which must count as quiet (the adaptive floor).
    """
    speech = dict(asterisk_speech)["vm-goodbye.wav"].astype(np.float64)
    speech *= 10 ** (-15 / 20) * 32768 / np.sqrt(np.mean(speech[speech != 0] ** 2))
    vowel = tone([450], 120, -15)

    def noisy(*parts: np.ndarray) -> np.ndarray:
        x = np.concatenate(parts)
        if snr_db is None:
            return pcm(x)
        noise = np.random.default_rng(3).normal(0, 1, len(x))
        return pcm(x + noise * 32768 * 10 ** ((-15 - snr_db) / 20) / np.sqrt(2))

    # The next syllable follows at once, or after a 40 ms closure.
    for gap in (0, 40):
        signal = noisy(silence(300), speech, vowel, silence(gap), speech, silence(500))
        assert events(BeepDetector(), signal) == [], gap
    signal = noisy(silence(300), speech, silence(200), vowel, silence(600))
    found = events(BeepDetector(), signal)
    start = 0.5 + len(speech) / RATE
    assert [e.kind for e in found] == ["beep"]
    assert found[0].start == pytest.approx(start, abs=0.01)
    assert found[0].end == pytest.approx(start + 0.12, abs=0.01)
    assert found[0].frequency == pytest.approx(450, abs=5)


@pytest.mark.parametrize("lost", [(17,), (15, 16), (14, 15, 16, 17, 18, 19)])
def test_beep_with_lost_frames_is_one_beep(lost: tuple[int, ...]) -> None:
    """A lost packet (or a burst of six) inside a beep does not cut it in two."""
    signal = pcm(lose(pcm(silence(200), tone([800], 400, -20), silence(600)), *lost))
    found = feed_all(BeepDetector(), signal)
    assert [e.kind for _, e in found] == ["beep"]
    reported, beep = found[0]
    assert beep.start == pytest.approx(0.2, abs=0.01)
    assert beep.end == pytest.approx(0.6, abs=0.01)
    assert BEEP_QUIET_S <= reported - beep.end <= BEEP_REPORT_S


@pytest.mark.parametrize("second_hz", [800, 1000])
def test_double_beep_is_reported_once_after_the_last_tone(second_hz: int) -> None:
    """Two tones 100 ms apart over line noise: the message must wait for the second."""
    noise = np.random.default_rng(5).normal(0, 30, round(1.3 * RATE))
    signal = noise + pcm(silence(200), tone([800], 200, -20), silence(100),
                         tone([second_hz], 200, -20), silence(600))  # fmt: skip
    found = feed_all(BeepDetector(), pcm(signal))
    assert len(found) == 1
    reported, beep = found[0]
    assert beep.end == pytest.approx(0.7, abs=0.01)
    assert beep.frequency == pytest.approx(second_hz, abs=5)
    assert BEEP_QUIET_S <= reported - 0.7 <= BEEP_REPORT_S


SIT_TONES = np.concatenate([tone([913.8], 276), tone([1370.6], 276), tone([1776.7], 380)])


@pytest.mark.parametrize(
    "signal",
    [
        pytest.param(cadence([440, 480], [2000, 4000], 1), id="NA ringback"),
        pytest.param(cadence([480, 620], [500, 500], 3), id="NA busy"),
        pytest.param(cadence([480, 620], [250, 250], 4), id="NA reorder"),
        pytest.param(cadence([400, 450], [400, 200, 400, 2000], 2), id="UK ringback"),
        pytest.param(tone([350, 440], 2000), id="dial tone"),
        pytest.param(dtmf_tone(ALL_DIGITS, on_ms=200), id="DTMF"),
        pytest.param(tone([1000], 60), id="60 ms"),
        pytest.param(tone([300], 500), id="300 Hz"),
        pytest.param(tone([2500], 500), id="2500 Hz"),
        pytest.param(SIT_TONES, id="SIT"),
        pytest.param(
            # The test adds 100 ms of silence before: frames 18 and 32 hold segment edges.
            lose(pcm(silence(100), SIT_TONES), 18, 32)[800:],
            id="SIT with lost frames between segments",
        ),
    ],
)
def test_no_beep_on_other_tones(signal: np.ndarray) -> None:
    assert events(BeepDetector(), pcm(silence(100), signal)) == []


# --- SIT ---------------------------------------------------------------------------
# ANSI T1.209 / Telcordia segment table: (first Hz, ms), (second Hz, ms); third 1776.7 Hz 380 ms.
LOW1, HIGH1, LOW2, HIGH2, THIRD = 913.8, 985.2, 1370.6, 1428.5, 1776.7
SHORT, LONG = 276, 380
SIT_TABLE = [
    ("intercept", (LOW1, SHORT), (LOW2, SHORT)),
    ("vacant_code", (HIGH1, LONG), (LOW2, SHORT)),
    ("reorder", (LOW1, SHORT), (HIGH2, LONG)),  # intra-LATA
    ("reorder", (HIGH1, SHORT), (LOW2, LONG)),  # inter-LATA
    ("no_circuit", (HIGH1, LONG), (HIGH2, LONG)),  # intra-LATA
    ("no_circuit", (LOW1, LONG), (LOW2, LONG)),  # inter-LATA
    ("ineffective_other", (LOW1, LONG), (HIGH2, SHORT)),
    ("unknown", (HIGH1, SHORT), (HIGH2, SHORT)),  # reserved
]


def sit(first: tuple[float, int], second: tuple[float, int], dbfs: float = -20.0) -> np.ndarray:
    return np.concatenate(
        [
            tone([first[0]], first[1], dbfs),
            tone([second[0]], second[1], dbfs),
            tone([THIRD], 380, dbfs),
        ]
    )


@pytest.mark.parametrize(("code", "first", "second"), SIT_TABLE)
@pytest.mark.parametrize("lead_ms", [0, 11])
def test_every_sit_code(
    code: str, first: tuple[float, int], second: tuple[float, int], lead_ms: int
) -> None:
    found = events(SitDetector(), pcm(silence(300 + lead_ms), sit(first, second), silence(200)))
    assert [(e.kind, e.value) for e in found] == [("sit", code)]
    start = 0.3 + lead_ms / 1000
    assert found[0].start == pytest.approx(start, abs=0.01)
    assert found[0].end == pytest.approx(start + (first[1] + second[1] + 380) / 1000, abs=0.01)


def test_sit_followed_by_an_announcement(asterisk_speech: list[tuple[str, np.ndarray]]) -> None:
    announcement = load_media_audio((SOUNDS / "ss-noservice.wav").read_bytes())
    signal = pcm(silence(200), sit((LOW1, SHORT), (LOW2, SHORT), -22), silence(100), announcement)
    found = analyze_tones(signal)
    assert [(e.kind, e.value) for e in found] == [("sit", "intercept")]


def test_itu_generic_sit_is_found_but_not_classified() -> None:
    """ITU-T E.180: 950/1400/1800 Hz, 330 ms each, up to 30 ms apart."""
    signal = pcm(tone([950], 330), silence(30), tone([1400], 330), silence(30), tone([1800], 330))
    assert [(e.kind, e.value) for e in events(SitDetector(), signal)] == [("sit", "unknown")]


def test_sit_segments_in_the_wrong_order_are_no_sit() -> None:
    signal = pcm(tone([THIRD], 380), tone([LOW2], 276), tone([LOW1], 276))
    assert events(SitDetector(), signal) == []


# Frames of `pcm(silence(300), sit(...))` with two short segments: the first holds
# frames 15..28 (300..576 ms), the second 28..42 (576..852 ms), the third 42..61;
# with long ones the first frames stay inside, the later ones move into the next
# segment.  Frames 54..59 (1080..1200 ms) lie inside the third segment of every code.
SIT_LOSSES = [
    pytest.param((21,), id="inside the first segment"),
    pytest.param((35,), id="inside the second segment"),
    pytest.param((28,), id="between the first two segments"),
    pytest.param((21, 42), id="inside one segment and between two"),
    pytest.param((20, 21, 42), id="two inside one segment and one between"),
    pytest.param((20, 21, 41, 42, 50), id="two inside, two between, one inside"),
    pytest.param((54, 55, 56, 57, 58, 59), id="a burst of six inside the third segment"),
]


@pytest.mark.parametrize("lost", SIT_LOSSES)
@pytest.mark.parametrize(("code", "first", "second"), SIT_TABLE)
def test_sit_with_lost_frames_is_found(
    code: str, first: tuple[float, int], second: tuple[float, int], lost: tuple[int, ...]
) -> None:
    signal = lose(pcm(silence(300), sit(first, second), silence(200)), *lost)
    found = events(SitDetector(), pcm(signal))
    assert [(e.kind, e.value) for e in found] == [("sit", code)]
    assert found[0].start == pytest.approx(0.3, abs=0.01)
    assert found[0].end == pytest.approx(0.3 + (first[1] + second[1] + 380) / 1000, abs=0.01)


def test_sit_with_a_lost_frame_needs_the_bridge() -> None:
    """Without bridging, the same lost frames split a segment and the SIT is lost."""
    signal = pcm(lose(pcm(silence(300), sit((LOW1, SHORT), (LOW2, SHORT)), silence(200)), 21, 42))
    assert events(SitDetector(bridge_frames=0, dropout_frames=0), signal) == []
    assert [e.value for e in events(SitDetector(), signal)] == ["intercept"]


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([(THIRD, 380), (LOW2, 276), (LOW1, 276)], id="wrong order"),
        pytest.param([(LOW1, 276), (THIRD, 380), (LOW2, 276)], id="second and third swapped"),
        pytest.param([(600, 276), (1000, 276), (1500, 380)], id="other frequencies"),
        pytest.param([(LOW1, 276), (LOW1, 276), (THIRD, 380)], id="first frequency twice"),
        pytest.param([(LOW1, 100), (LOW2, 276), (THIRD, 380)], id="first segment too short"),
    ],
)
def test_no_sit_with_lost_frames_either(parts: list[tuple[float, int]]) -> None:
    signal = pcm(silence(300), *(tone([f], ms, -20) for f, ms in parts), silence(200))
    for lost in ((21,), (21, 35), (20, 21, 42)):
        assert events(SitDetector(), pcm(lose(signal, *lost))) == [], lost


# --- Fax ---------------------------------------------------------------------------


def test_fax_cng_each_burst() -> None:
    found = feed_all(FaxDetector(), pcm(silence(7), cadence([1100], [500, 3000], 2)))
    assert [e.kind for _, e in found] == ["fax_cng", "fax_cng"]
    for (reported, e), start in zip(found, (0.007, 3.507), strict=True):
        assert e.start == pytest.approx(start, abs=0.01)
        assert e.end is None
        assert e.frequency == pytest.approx(1100, abs=2)
        assert 0.4 <= reported - start <= 0.45


def test_fax_ced_plain_and_with_phase_reversals() -> None:
    """V.25 answer tone with 180-degree reversals every 450 ms and V.8 15 Hz AM."""
    n = np.arange(3 * RATE) / RATE
    flips = np.pi * (np.floor(n / 0.45) % 2)
    ansam = (
        32768 * 0.15 * np.sin(2 * np.pi * 2100 * n + flips) * (1 + 0.2 * np.sin(2 * np.pi * 15 * n))
    )
    for signal in (tone([2100], 3000), ansam):
        found = feed_all(FaxDetector(), pcm(silence(100), signal))
        assert [e.kind for _, e in found] == ["fax_ced"]
        reported, e = found[0]
        assert e.start == pytest.approx(0.1, abs=0.01)
        assert 0.5 <= reported - 0.1 <= 0.55


@pytest.mark.parametrize(
    ("freq", "kind"), [(1064, "fax_cng"), (1136, "fax_cng"), (1150, None), (2300, None)]
)
def test_fax_frequency_tolerance(freq: float, kind: str | None) -> None:
    """T.30: CNG 1100 +- 38 Hz."""
    found = events(FaxDetector(), pcm(tone([freq], 600)))
    assert [e.kind for e in found] == ([kind] if kind else [])


def test_fax_cng_too_short_is_ignored() -> None:
    assert events(FaxDetector(), pcm(tone([1100], 300))) == []


# --- Call progress -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("freqs", "pattern", "cycles", "kind", "region"),
    [
        pytest.param([480, 620], [500, 500], 3, "busy", "na", id="NA busy"),
        pytest.param([480, 620], [250, 250], 4, "reorder", "na", id="NA reorder"),
        pytest.param([440, 480], [2000, 4000], 2, "ringback", "na", id="NA ringback"),
        pytest.param([425], [500, 500], 3, "busy", "eu", id="EU 425 busy"),
        pytest.param([425], [250, 250], 4, "reorder", "eu", id="EU 425 congestion"),
        pytest.param([425], [1000, 4000], 2, "ringback", "eu", id="EU 425 ringback"),
        pytest.param([400, 450], [400, 200, 400, 2000], 2, "ringback", "eu", id="UK ringback"),
        pytest.param([400], [375, 375], 3, "busy", "eu", id="UK busy"),
        pytest.param([400], [400, 350, 225, 525], 2, "reorder", "eu", id="UK congestion"),
        pytest.param([440], [1500, 3500], 2, "ringback", "eu", id="FR 440 ringback"),
    ],
)
@pytest.mark.parametrize("lead_ms", [0, 13])
def test_progress_tones(
    freqs: list[float], pattern: list[float], cycles: int, kind: str, region: str, lead_ms: int
) -> None:
    signal = pcm(silence(lead_ms), cadence(freqs, pattern, cycles))
    found = feed_all(ProgressDetector(), signal)
    assert [(e.kind, e.value) for _, e in found] == [(kind, region)]
    reported, e = found[0]
    assert e.start == pytest.approx(lead_ms / 1000, abs=0.03)
    assert e.end is None
    # Confirmed in the silence after two bursts (busy, reorder; UK ringback's double
    # burst) or one (ringback): within that silence for busy/reorder, within 1 s of it
    # for ringback (long enough to tell it from busy).
    seq = [ms / 1000 for ms in pattern * cycles]
    bursts = 1 if kind == "ringback" and len(pattern) == 2 else 2
    last_burst_end = sum(seq[: 2 * bursts - 1])
    delay = reported - lead_ms / 1000
    wait = 1.06 if kind == "ringback" else seq[2 * bursts - 1] + 0.02
    assert last_burst_end < delay <= last_burst_end + wait


def test_progress_with_noise_at_20_db_snr() -> None:
    signal = pcm(add_noise(cadence([480, 620], [500, 500], 3), 20))
    assert [(e.kind, e.value) for e in events(ProgressDetector(), signal)] == [("busy", "na")]


def test_progress_wrong_cadence_is_not_reported() -> None:
    assert events(ProgressDetector(), pcm(cadence([480, 620], [900, 100], 4))) == []
    assert events(ProgressDetector(), pcm(tone([425], 5000))) == []


# --- Speech: talk-off and false tones --------------------------------------------------


def test_no_tone_at_all_in_asterisk_prompts(asterisk_speech: list[tuple[str, np.ndarray]]) -> None:
    """Zero DTMF digits (talk-off), beeps, SITs, fax or progress tones in real speech."""
    found = [(name, e) for name, x in asterisk_speech for e in analyze_tones(x)]
    assert found == []


def test_no_tone_at_all_in_espeak_speech(espeak_speech: list[tuple[str, np.ndarray]]) -> None:
    found = [(name, e) for name, x in espeak_speech for e in analyze_tones(x)]
    assert found == []


def test_digits_still_found_between_words(asterisk_speech: list[tuple[str, np.ndarray]]) -> None:
    speech = dict(asterisk_speech)["vm-enter-num-to-call.wav"]
    signal = pcm(speech, silence(100), dtmf_tone("42#", level_dbfs=-15), speech)
    assert "".join(e.value or "" for e in analyze_tones(signal) if e.kind == "dtmf") == "42#"


# --- Analyzer, API edges -------------------------------------------------------------


def test_tone_analyzer_runs_the_chosen_detectors() -> None:
    signal = pcm(silence(100), dtmf_tone("7"), tone([1000], 300), silence(400))
    kinds = sorted(e.kind for e in events(ToneAnalyzer(), signal))
    assert kinds == ["beep", "dtmf"]
    assert [e.kind for e in events(ToneAnalyzer(dtmf=False), signal)] == ["beep"]
    assert [e.kind for e in events(ToneAnalyzer(beep=False), signal)] == ["dtmf"]


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(ToneParamError, match="min_purty"):
        DtmfDetector(min_purty=0.5)
    with pytest.raises(ToneParamError, match="max_ms"):
        BeepDetector(max_ms="long")  # type: ignore[arg-type]


def test_wrong_frame_size_is_an_error() -> None:
    with pytest.raises(FrameError):
        analyze_frame(np.zeros(80, dtype=np.int16))
    with pytest.raises(FrameError):
        BeepDetector().feed(np.zeros(320, dtype=np.int16), 0.0)


# --- `outdial tones`: every WAV encoding ---------------------------------------------


@pytest.fixture(scope="module")
def reference_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wav") / "reference.wav"
    signal = pcm(silence(200), dtmf_tone("159#", level_dbfs=-10), silence(300), tone([1000], 400, -10),
                 silence(500))  # fmt: skip
    path.write_bytes(encode_wav(signal))
    return path


SOX_FORMATS = {
    "16k": ["-r", "16000"],
    "44k1": ["-r", "44100"],
    "48k": ["-r", "48000"],
    "stereo": ["-c", "2"],
    "stereo-48k-24bit": ["-c", "2", "-r", "48000", "-b", "24"],
    "mulaw": ["-e", "mu-law", "-b", "8"],
    "alaw": ["-e", "a-law", "-b", "8"],
    "8bit": ["-e", "unsigned-integer", "-b", "8"],
    "24bit": ["-b", "24"],
    "float": ["-e", "floating-point", "-b", "32"],
    "float-44k1-stereo": ["-e", "floating-point", "-b", "32", "-r", "44100", "-c", "2"],
}


def test_tones_cli_reads_every_wav_encoding(reference_wav: Path, tmp_path: Path) -> None:
    if shutil.which("sox") is None:
        pytest.fail("sox is missing: apt-get install sox")
    paths = [reference_wav]
    for name, args in SOX_FORMATS.items():
        out = tmp_path / f"{name}.wav"
        subprocess.run(
            ["sox", str(reference_wav), *args, str(out)], check=True, capture_output=True
        )
        paths.append(out)
    stream = io.StringIO()
    assert tones_main(paths, out=stream) == 0
    reports = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["file"] for r in reports] == [str(p) for p in paths]
    for report in reports:
        found = report["events"]
        assert "".join(e["value"] for e in found if e["kind"] == "dtmf") == "159#", report["file"]
        beeps = [e for e in found if e["kind"] == "beep"]
        assert len(beeps) == 1, report["file"]
        assert beeps[0]["frequency"] == pytest.approx(1000, abs=3)
        assert beeps[0]["end_ms"] == pytest.approx(200 + 4 * 160 + 300 + 400, abs=10)
        first = found[0]
        assert set(first) == {"kind", "start_ms", "end_ms", "value", "frequency"}
        assert first["start_ms"] == pytest.approx(200, abs=5)


def test_tones_cli_reports_bad_files_and_goes_on(reference_wav: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not a wav file")
    missing = tmp_path / "missing.wav"
    stream = io.StringIO()
    assert tones_main([junk, reference_wav, missing], out=stream) == 1
    reports = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["file"] for r in reports] == [str(junk), str(reference_wav), str(missing)]
    assert "not a supported WAV" in reports[0]["error"] and "events" not in reports[0]
    assert len(reports[1]["events"]) == 5
    assert "cannot read" in reports[2]["error"]
