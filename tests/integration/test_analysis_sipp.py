"""Call analysis in the running daemon: SIPp answers four calls with a person,
a voicemail greeting that ends in a beep, a fax tone and an intercept (SIT
and announcement); the stored attempts must say which was which, and the
voicemail message must start right after the beep."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsp.wav import encode_wav
from tests.integration.daemon import Daemon
from tests.integration.sipp import Sipp, require

pytestmark = pytest.mark.sipp

CAMPAIGN = """\
name: analysis
channel: voice
mode: agentless
contact_list: analysis-list
trunk: carrier
lines: 4
max_attempts: 1
ring_timeout: 15
max_duration: 40
prompt: prompt.wav
amd:
  mode: default
  on_machine: message_after_beep
  machine_prompt: voicemail.wav
  max_beep_wait: 15s
"""


def sox(*args: str) -> None:
    subprocess.run([require("sox", "sox"), *args], check=True)


def espeak(path: Path, text: str, voice: str = "en-us") -> Path:
    raw = path.with_suffix(".22k.wav")
    subprocess.run([require("espeak-ng", "espeak-ng"), "-v", voice, "-w", str(raw), text],
                   check=True)  # fmt: skip
    sox(str(raw), "-r", "8000", "-c", "1", str(path))  # espeak speaks at 22.05 kHz
    return path


def to_ulaw(src: list[Path], out: Path, pad_after: float) -> Path:
    """Concatenate, convert to headerless 8 kHz mu-law (what SIPp streams)."""
    sox(*map(str, src), "-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul", str(out),
        "pad", "0.3", str(pad_after))  # fmt: skip
    return out


def tone(path: Path, seconds: float, freq: float) -> Path:
    sox("-n", "-r", "8000", "-c", "1", str(path), "synth", str(seconds), "sine", str(freq),
        "vol", "0.4")  # fmt: skip
    return path


@pytest.fixture
def audio(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path
    greeting = espeak(d / "greet.wav", "Hi, you have reached Sam Miller. I can't take your call "
                      "right now. Please leave your name and number after the tone.", "en-us+f3")  # fmt: skip
    announcement = espeak(d / "ann.wav", "We're sorry. The number you have dialed is not in "
                          "service. Please check the number and try again.")  # fmt: skip
    return {
        "human": to_ulaw([espeak(d / "hello.wav", "Hello?")], d / "human.ul", 6),
        "machine": to_ulaw([greeting, tone(d / "beep.wav", 0.5, 1000)], d / "machine.ul", 12),
        "fax": to_ulaw([tone(d / "ced.wav", 4.0, 2100)], d / "fax.ul", 1),
        "sit": to_ulaw(
            [
                tone(d / "s1.wav", 0.274, 913.8),
                tone(d / "s2.wav", 0.274, 1370.6),
                tone(d / "s3.wav", 0.380, 1776.7),
                announcement,
            ],
            d / "sit.ul",
            3,
        ),
    }


def prompts(d: Path) -> Path:
    t = np.arange(16000) / 8000  # 2 s each
    (d / "prompt.wav").write_bytes(
        encode_wav((np.sin(2 * np.pi * 500 * t) * 6000).astype(np.int16))
    )
    (d / "voicemail.wav").write_bytes(
        encode_wav((np.sin(2 * np.pi * 650 * t) * 6000).astype(np.int16))
    )
    return d / "prompt.wav"


def test_person_machine_fax_and_intercept(tmp_path: Path, audio: dict[str, Path]) -> None:
    keys = {name: f"{path},1,0" for name, path in audio.items()}
    sipp = Sipp("analysis.xml", keys=keys, duration_ms=300, calls=4).start(tmp_path)
    contacts = tmp_path / "contacts.csv"
    numbers = {digit: f"+1212555100{digit}" for digit in (1, 2, 3, 4)}
    contacts.write_text("phone\n" + "\n".join(numbers.values()) + "\n")
    daemon = Daemon(tmp_path, sipp.port, CAMPAIGN, prompts(tmp_path)).start()
    try:
        daemon("contacts.import", list="analysis-list", file=str(contacts))
        daemon("campaign.start", name="analysis")
        daemon.wait_state("analysis", "completed", timeout=90)
        rows: dict[str, dict[str, Any]] = {
            r["number"]: r for r in daemon("report.attempts", campaign="analysis")
        }
        assert daemon.stop() == 0
    finally:
        daemon.stop()
    assert sipp.wait(30) == 0, sipp.errors()
    person, machine, fax, sit = (rows[numbers[d]] for d in (1, 2, 3, 4))

    assert person["result"] == "answered"
    assert person["amd_result"] == "human"
    assert person["message_started_ms"] == person["amd_ms"]  # the prompt followed the verdict
    assert person["duration_ms"] >= person["amd_ms"] + 1900  # and was heard in full (2 s)

    assert machine["result"] == "machine"
    assert machine["amd_result"] == "machine"
    beep_end, started = machine["beep_end_ms"], machine["message_started_ms"]
    assert beep_end is not None and started is not None
    assert 0 <= started - beep_end <= 300  # the message starts right after the beep
    assert machine["duration_ms"] >= started + 1900  # and plays in full

    assert fax["result"] == "fax"
    assert fax["amd_result"] == "fax"

    assert sit["result"] == "invalid_number"
    assert sit["amd_result"] == "sit"
    assert sit["amd_cause"] == "intercept"
