"""The AMD sample through the daemon: a UK power campaign with agent a1 logged
in (on a SIPp phone) calls 20 numbers whose SIPp callee plays a voicemail
greeting. Every answered call is sampled (`sample_share: 100%`); each machine
verdict leaves a WAV of the greeting's first seconds and an unmarked sample.
An operator lists them and marks them (one through `outdial ctl`, one
re-marked); from 20 marks the compliance report uses their rate instead of
the configured 2 %, and says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsp.wav import decode_wav
from tests.integration.daemon import Daemon
from tests.integration.sipp import ROOT, Sipp
from tests.integration.test_agents_sipp import (
    agents_config,
    start_agent_phone,
    wait_for,
    write_prompts,
)
from tests.integration.test_analysis_sipp import espeak, to_ulaw, tone

pytestmark = pytest.mark.sipp

CALLS = 20
CAMPAIGN = """\
name: uk-sample
channel: voice
mode: power
contact_list: uk-list
trunk: carrier
lines: 10
max_attempts: 1
ring_timeout: 15
max_duration: 40
prompt: prompt.wav
safe_harbor: safe.wav
amd:
  mode: default
  sample_share: 100%
  sample_seconds: 3s
dialing:
  jurisdiction: uk
  ratio: 5
  amd_false_positive_rate: 2%
"""


def callee_audio(d: Path) -> dict[str, str]:
    greeting = espeak(d / "greet.wav", "Hi, you have reached Sam Miller. I can't take your "
                      "call right now. Please leave your name and number after the tone.")  # fmt: skip
    return {
        "machine": f"{to_ulaw([greeting, tone(d / 'b.wav', 0.5, 1000)], d / 'm.ul', 12)},-1,0",
        "human": f"{to_ulaw([espeak(d / 'hello.wav', 'Hello?')], d / 'human.ul', 6)},-1,0",
        "fax": f"{to_ulaw([tone(d / 'ced.wav', 4.0, 2100)], d / 'fax.ul', 1)},-1,0",
        "sit": f"{to_ulaw([tone(d / 's.wav', 0.3, 913.8)], d / 'sit.ul', 1)},-1,0",
    }


def ctl(daemon: Daemon, *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "ctl", "--socket", str(daemon.socket), *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(240)
def test_machine_samples_are_stored_marked_and_used_by_the_report(tmp_path: Path) -> None:
    prompt = write_prompts(tmp_path)
    keys = callee_audio(tmp_path)
    phone = start_agent_phone(tmp_path, "a1")
    (tmp_path / "carrier").mkdir()
    carrier = Sipp("analysis.xml", keys=keys, duration_ms=300, calls=CALLS)
    carrier.start(tmp_path / "carrier")
    samples_dir = tmp_path / "samples"
    extra = agents_config({"a1": phone.port}) + f"amd_samples: {samples_dir}\n"
    daemon = Daemon(tmp_path, carrier.port, CAMPAIGN, prompt, extra)
    # Numbers ending in 2: the SIPp callee plays the voicemail greeting.
    numbers = [f"+442079460{i:02d}2" for i in range(CALLS)]
    daemon.start()
    try:
        daemon("agent.login", agent="a1")
        for number in numbers:
            daemon("contacts.add", list="uk-list", phones=[number], region="GB")
        daemon("campaign.start", name="uk-sample")
        daemon.wait_state("uk-sample", "completed", timeout=150)
        attempts = {a["id"]: a for a in daemon("report.attempts", campaign="uk-sample")}
        listed: dict[str, Any] = wait_for(
            lambda: (r := daemon("compliance.amd_samples", campaign="uk-sample"))
            and len(r["samples"]) == CALLS and r,
            10, "every machine's sample listed",
        )  # fmt: skip
        samples = listed["samples"]
        assert listed["counts"] == {"person": 0, "machine": 0, "unmarked": CALLS}
        assert {s["number"] for s in samples} == set(numbers)
        for s in samples:
            attempt = attempts[s["attempt_id"]]
            assert attempt["result"] == "machine" and attempt["amd_result"] == "machine"
            path = Path(s["path"])
            assert path.parent == samples_dir / "uk-sample" and s["mark"] is None
            audio, info = decode_wav(path.read_bytes())
            assert info.sample_rate == 8000 and 8000 <= info.frames <= 3 * 8000
            assert np.abs(audio).max() > 2000  # the greeting, not silence

        report = daemon("compliance.report", campaign="uk-sample")
        assert report["amd_false_positive"]["source"] == "configured"
        assert report["windows"][0]["amd_false_positive_rate"] == 0.02

        ids = [s["attempt_id"] for s in samples]
        marked = ctl(daemon, "compliance", "mark", str(ids[0]), "person", "--by", "ann")
        assert f"attempt {ids[0]} " in marked and "person, marked by ann" in marked
        for attempt_id in ids[1:5]:
            daemon("compliance.amd_mark", attempt=attempt_id, mark="person", by="ann")
        for attempt_id in ids[5:]:
            daemon("compliance.amd_mark", attempt=attempt_id, mark="machine", by="bob")
        again = daemon("compliance.amd_mark", attempt=ids[5], mark="person", by="cat")
        assert (again["previous"], again["mark"]) == ("machine", "person")
        with pytest.raises(Exception, match="expected person or machine"):
            daemon("compliance.amd_mark", attempt=ids[0], mark="maybe", by="ann")
        with pytest.raises(Exception, match="no attempt 99999"):
            daemon("compliance.amd_mark", attempt=99999, mark="person", by="ann")

        report = daemon("compliance.report", campaign="uk-sample")
        fp = report["amd_false_positive"]
        assert (fp["source"], fp["marked"], fp["person"], fp["rate"]) == ("sample", 20, 6, 0.3)
        (window,) = report["windows"]
        assert window["machines"] == CALLS and window["amd_false_positive_rate"] == 0.3
        assert window["amd_false_positive_estimate"] == pytest.approx(6.0)
        assert any("from the operator-marked sample: 6 of 20" in n for n in report["notes"])
        table = ctl(daemon, "compliance", "report", "uk-sample")
        assert "AMD false-positive rate: 30.00% (sample)" in table
        listing = ctl(daemon, "compliance", "samples", "uk-sample")
        assert "0 unmarked, 20 marked (6 person, 14 machine)" in listing
        assert daemon.stop() == 0
        assert carrier.wait(30) == 0, carrier.errors()
    finally:
        daemon.stop()
        phone.stop()
        carrier.stop()
