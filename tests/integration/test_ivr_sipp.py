"""Outbound IVR through the daemon, against SIPp playing the people called.

The campaign's flow greets the contact by name (text-to-speech, rendered by
espeak-ng through the daemon's cache), offers a menu (1 confirms, 9 stops
the calls) and hangs up. SIPp answers and presses keys as RFC 4733 events
(Debian's pcaps) or as in-band tones in its audio. What is checked: each
caller's path through the menu is stored with the attempt, "9" puts the
number on the opt-out list and the next campaign on the list skips it, and
the greeting the caller hears is speech as long as the rendering of the
contact's own text.
"""

from __future__ import annotations

import json
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsp.wav import encode_wav
from engine.voice.tts import EspeakNg
from tests.integration.daemon import Daemon
from tests.integration.rtp_sniff import RtpSniffer
from tests.integration.sipp import Sipp, require

pytestmark = pytest.mark.sipp

GREET = "Hello {contact.first_name}, this is a reminder from Acme Dental."
MENU = "Press 1 to confirm. Press 9 to stop these calls."
CAMPAIGN = f"""\
name: remind
channel: voice
mode: agentless
contact_list: remind-list
trunk: carrier
lines: 5
max_attempts: 1
ring_timeout: 15
max_duration: 60
ivr:
  start: greet
  voice: en-us
  steps:
    greet: {{play: {{tts: "{GREET}"}}, next: main}}
    main:
      menu:
        prompt: {{tts: "{MENU}"}}
        options: {{"1": confirm, "9": optout}}
        timeout: 3s
        retries: 1
      on_fail: bye
    confirm: {{set_result: confirmed, next: bye}}
    optout: {{opt_out: {{confirm: {{tts: "You will not be called again."}}}}, next: bye}}
    bye: {{hangup: {{}}}}
"""
FOLLOW_UP = """\
name: followup
channel: voice
mode: agentless
contact_list: remind-list
trunk: carrier
lines: 5
max_attempts: 1
ring_timeout: 15
max_duration: 10
prompt: prompt.wav
"""


def setup_files(tmp_path: Path, rows: list[str]) -> tuple[Path, Path]:
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(encode_wav((np.ones(4000) * 2000).astype(np.int16)))
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("id,phone,first_name\n" + "\n".join(rows) + "\n")
    return prompt, contacts


def wait_completed(daemon: Daemon, name: str, timeout: float) -> None:
    daemon.wait_state(name, "completed", timeout=timeout)


def speech_span(pcm: np.ndarray, gap_s: float = 1.5) -> float:
    """Seconds from the first loud 20 ms frame to the last one before a silence of `gap_s`."""
    frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
    loud = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) > 300
    idx = np.flatnonzero(loud)
    assert len(idx), "no speech heard"
    first = last = idx[0]
    for i in idx[1:]:
        if (i - last) * 0.02 >= gap_s:
            break
        last = i
    return float((last - first + 1) * 0.02)


def speech_seconds(text: str) -> float:
    """The rendering's length without its leading and trailing silence."""
    pcm = EspeakNg().render(text, "en-us")
    loud = np.flatnonzero(np.abs(pcm) > 300)
    return float((loud[-1] - loud[0]) / 8000)


@pytest.mark.timeout(180)
def test_menu_keys_rfc4733_optout_confirm_timeout_and_the_next_campaign(tmp_path: Path) -> None:
    rows = ["c1,+12125553001,Alice", "c9,+12125553009,Bob", "c0,+12125553000,Carol"]
    prompt, contacts = setup_files(tmp_path, rows)
    # Keys go 5.5 s after the answer: past the greeting, inside the menu.
    sipp = Sipp("ivr_caller.xml", duration_ms=5500, calls=0).start(tmp_path)
    daemon = Daemon(tmp_path, sipp.port, CAMPAIGN, prompt).start()
    try:
        with RtpSniffer(sipp.media_port) as heard:
            daemon("contacts.import", list="remind-list", file=str(contacts))
            daemon("campaign.start", name="remind")
            wait_completed(daemon, "remind", 90)
        attempts = {r["number"]: r for r in daemon("report.attempts", campaign="remind")}
        listed = daemon("dnc.check", number="+12125553009")
        not_listed = daemon("dnc.check", number="+12125553001")
        (tmp_path / "campaigns" / "followup.yaml").write_text(FOLLOW_UP)
        daemon("campaign.load", path=str(tmp_path / "campaigns" / "followup.yaml"))
        daemon("campaign.start", name="followup")
        wait_completed(daemon, "followup", 60)
        followup = {r["number"] for r in daemon("report.attempts", campaign="followup")}
        out = tmp_path / "export.csv"
        daemon("contacts.export", list="remind-list", file=str(out))
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        sipp.stop()
    assert set(attempts) == {"+12125553001", "+12125553009", "+12125553000"}
    confirm, optout, silent = (attempts[f"+1212555300{d}"] for d in (1, 9, 0))
    assert "main: 1 > confirm" in confirm["ivr_summary"], confirm["ivr_summary"]
    assert json.loads(confirm["ivr_path"])["result"] == "confirmed"
    assert "main: 9 > optout > bye" in optout["ivr_summary"], optout["ivr_summary"]
    assert json.loads(optout["ivr_path"])["keys"] == ["9:rfc4733"]
    path = json.loads(silent["ivr_path"])
    assert path["keys"] == [] and path["end"] == "hangup"
    assert [s["step"] for s in path["steps"]] == ["greet", "main", "bye"]
    assert path["steps"][1]["tries"] == ["timeout", "timeout"]
    assert listed["listed"] and "ivr" in json.dumps(listed), listed
    assert not not_listed["listed"]
    # The next campaign on the list never calls the number that opted out.
    assert followup == {"+12125553001", "+12125553000"}
    assert "do-not-contact" in out.read_text()
    # Carol's call: her greeting and the menu, back to back, then silence.
    flows = [f for f in heard.flows.values() if len(f.packets) > 100]
    assert flows
    expected = speech_seconds(GREET.replace("{contact.first_name}", "Carol")) + speech_seconds(MENU)
    spans = sorted(speech_span(f.audio()) for f in flows)
    assert any(abs(s - expected) < 0.8 for s in spans), (spans, expected)


def inband_audio(path: Path, digit_at_s: float) -> Path:
    """Silence, then DTMF "9" (852 + 1477 Hz, 150 ms), then silence: a WAV made
    here with numpy and the standard library, turned into mu-law by sox."""
    rate = 8000
    pcm = np.zeros(int(rate * (digit_at_s + 20)), np.float64)
    t = np.arange(int(rate * 0.15)) / rate
    start = int(rate * digit_at_s)
    pcm[start : start + len(t)] = 0.25 * (
        np.sin(2 * np.pi * 852 * t) + np.sin(2 * np.pi * 1477 * t)
    )
    wav = path.with_suffix(".wav")
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((pcm * 32767).astype("<i2").tobytes())
    subprocess.run([require("sox", "sox"), str(wav), "-e", "u-law", "-t", "ul", str(path)],
                   check=True)  # fmt: skip
    return path


@pytest.mark.timeout(120)
def test_inband_nine_opts_out(tmp_path: Path) -> None:
    prompt, contacts = setup_files(tmp_path, ["c10,+12125553010,Dana"])
    audio = inband_audio(tmp_path / "press9.ul", 5.5)
    sipp = Sipp("mix.xml", keys={"audio": f"{audio},1,0"}, duration_ms=200, calls=0)
    sipp.start(tmp_path)
    daemon = Daemon(tmp_path, sipp.port, CAMPAIGN, prompt).start()
    try:
        daemon("contacts.import", list="remind-list", file=str(contacts))
        daemon("campaign.start", name="remind")
        wait_completed(daemon, "remind", 60)
        (attempt,) = daemon("report.attempts", campaign="remind")
        listed: dict[str, Any] = daemon("dnc.check", number="+12125553010")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        sipp.stop()
    assert "main: 9 > optout" in attempt["ivr_summary"], attempt
    assert json.loads(attempt["ivr_path"])["keys"] == ["9:inband"]
    assert listed["listed"], listed


TRANSFER = """\
name: remind
channel: voice
mode: agentless
contact_list: remind-list
trunk: carrier
lines: 5
max_attempts: 1
ring_timeout: 15
max_duration: 10
ivr:
  start: greet
  steps:
    greet: {play: {tts: "Hello {contact.first_name}, connecting you now."}, next: out}
    out: {transfer: {number: "+12125553011"}, on_fail: bye}
    bye: {hangup: {}}
"""


@pytest.mark.timeout(120)
def test_transfer_to_a_number_bridges_the_second_call(tmp_path: Path) -> None:
    from tests.integration.rtp_sniff import dominant
    from tests.integration.sipp import make_tone

    prompt, contacts = setup_files(tmp_path, ["c10,+12125553010,Erin"])
    tone = make_tone(tmp_path / "tone.ul", 700, 1.0)
    # One SIPp answers both: the person called (...010) and the transfer
    # target (...011); each streams a 700 Hz tone.
    sipp = Sipp("mix.xml", keys={"audio": f"{tone},-1,0"}, duration_ms=200, calls=0)
    sipp.start(tmp_path)
    daemon = Daemon(tmp_path, sipp.port, TRANSFER, prompt).start()
    try:
        with RtpSniffer(sipp.media_port) as heard:
            daemon("contacts.import", list="remind-list", file=str(contacts))
            daemon("campaign.start", name="remind")
            wait_completed(daemon, "remind", 60)
            time.sleep(0.5)
        (attempt,) = daemon("report.attempts", campaign="remind")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        sipp.stop()
    path = json.loads(attempt["ivr_path"])
    assert path["end"] == "transferred", path
    assert path["transfer"].startswith("bridged"), path
    assert "greet > out" in attempt["ivr_summary"]
    flows = [f for f in heard.flows.values() if len(f.packets) > 50]
    assert len(flows) == 2, [len(f.packets) for f in heard.flows.values()]
    caller, target = sorted(flows, key=lambda f: f.packets[0][0])  # the caller's leg came first
    for f in (caller, target):
        # The last seconds of each of our legs carry the other side's tone.
        tail = f.audio(since=f.packets[-1][0] - 3.0)
        assert abs(dominant(tail) - 700) < 20, dominant(tail)
    # Before the bridge the caller heard their greeting: speech, not the tone.
    start = caller.packets[0][0]
    greeting = caller.audio(until=start + speech_seconds("Hello Erin, connecting you now."))
    assert np.abs(greeting).max() > 1000 and abs(dominant(greeting) - 700) > 50


REFER_FLOW = TRANSFER.replace('{transfer: {number: "+12125553011"}', \
                              '{transfer: {number: "+12125553011", refer: auto}')  # fmt: skip


def refer_run(tmp_path: Path, scenario: str) -> tuple[dict[str, Any], str]:
    """One call to Erin through a SIPp carrier that takes or refuses REFER."""
    from tests.integration.sipp import make_tone

    prompt, contacts = setup_files(tmp_path, ["c10,+12125553010,Erin"])
    tone = make_tone(tmp_path / "tone.ul", 700, 1.0)
    log = tmp_path / "sipp-messages.log"
    sipp = Sipp(scenario, keys={"audio": f"{tone},-1,0"},
                calls=0, extra=["-trace_msg", "-message_file", str(log)])  # fmt: skip
    sipp.start(tmp_path)
    daemon = Daemon(tmp_path, sipp.port, REFER_FLOW, prompt).start()
    try:
        daemon("contacts.import", list="remind-list", file=str(contacts))
        daemon("campaign.start", name="remind")
        wait_completed(daemon, "remind", 60)
        (attempt,) = daemon("report.attempts", campaign="remind")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        sipp.stop()
    return attempt, log.read_text(errors="replace")


@pytest.mark.timeout(120)
def test_transfer_by_refer_hands_the_caller_to_the_carrier(tmp_path: Path) -> None:
    attempt, messages = refer_run(tmp_path, "refer.xml")
    path = json.loads(attempt["ivr_path"])
    assert path["end"] == "transferred" and path["transfer"] == "referred", path
    assert attempt["ended_by"] == "local"  # our BYE after the NOTIFY said 200
    assert "Refer-To: <sip:+12125553011@127.0.0.1:" in messages
    assert messages.count("INVITE sip:") == 1  # no second leg: the carrier made it


@pytest.mark.timeout(120)
def test_refer_refused_falls_back_to_the_bridge(tmp_path: Path) -> None:
    attempt, messages = refer_run(tmp_path, "refer_refused.xml")
    path = json.loads(attempt["ivr_path"])
    assert path["end"] == "transferred", path
    assert path["transfer"].startswith("REFER refused: Not Implemented; bridge: bridged"), path
    invites = [line for line in messages.splitlines() if line.startswith("INVITE sip:")]
    assert [i.split()[1].split("@")[0] for i in invites] == \
        ["sip:+12125553010", "sip:+12125553011"], invites  # fmt: skip
