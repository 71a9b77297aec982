"""The IVR's media side: a real IvrSession driven frame by frame, with keys
from in-band DTMF audio (dsp.tones), RFC 4733 digits and SIP INFO, prompts
that barge in, timers in media time, and the actions it hands out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsp.tones import dtmf_tone
from dsp.wav import encode_wav
from engine.voice.flows import FRAME
from engine.voice.ivr import load_flow
from engine.voice.ivr_flow import IvrCallFlow, audio_key, prepare_audio
from engine.voice.ivr_session import Action, IvrSession, OptOut, SetResult
from engine.voice.tts import Pcm, TtsCache

FLOW = """\
start: greet
steps:
  greet: {play: {wav: hello.wav}, next: main}
  main:
    menu:
      prompt: {wav: menu.wav}
      options: {"1": confirm, "9": optout}
      timeout: 1s
      retries: 1
    on_fail: bye
  confirm: {set_result: confirmed, next: bye}
  optout: {opt_out: {confirm: {wav: bye.wav}}, next: bye}
  bye: {hangup: {}}
"""


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


class Rig:
    def __init__(self, tmp_path: Path, *, ready: bool = True, failed: str | None = None) -> None:
        for name, secs in (("hello.wav", 0.4), ("menu.wav", 1.0), ("bye.wav", 0.2)):
            (tmp_path / name).write_bytes(encode_wav(tone(secs, 440)))
        (tmp_path / "flow.yaml").write_text(FLOW)
        flow = load_flow(tmp_path / "flow.yaml", tmp_path)
        self.session = IvrSession(flow, {})
        audio = {}
        for play in self.session.plays():
            secs = {"hello.wav": 0.4, "menu.wav": 1.0, "bye.wav": 0.2}[Path(play.source).name]
            audio[audio_key(play, None)] = tone(secs, 440)
        self.rfc4733 = ""
        self.hangups: list[str] = []
        self.actions: list[Action] = []
        self.ready = ready
        self.flow = IvrCallFlow(
            self.session, audio, dtmf_received=lambda: self.rfc4733,
            hang_up=self.hangups.append, on_action=self.actions.append,
            ready=lambda: self.ready, failed=lambda: failed, clock=lambda: 0.0,
        )  # fmt: skip
        self.sent: list[bool] = []

    def run(self, audio: np.ndarray | None = None, seconds: float = 0.0) -> None:
        if audio is None:
            audio = np.zeros(int(8000 * seconds), np.int16)
        audio = np.concatenate([audio, np.zeros(-len(audio) % FRAME, np.int16)])
        for frame in audio.reshape(-1, FRAME):
            out = self.flow.on_frame(frame)
            self.sent.append(out is not None and bool(np.any(out)))


def test_inband_nine_opts_out_then_confirms_and_hangs_up(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.run(seconds=1.5)  # hello (0.4 s) then the menu prompt
    rig.run(dtmf_tone("9", on_ms=120))
    rig.run(seconds=1.0)
    assert [type(a) for a in rig.actions] == [OptOut]
    assert rig.hangups == ["hangup"]
    assert rig.flow.digits == [("9", "inband")]
    assert "main: 9" in rig.session.summary() and rig.session.summary().endswith("bye")


def test_rfc4733_key_barges_in_and_turns_inband_off(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.run(seconds=0.6)  # into the menu prompt
    assert rig.sent[-1]  # the prompt is playing
    rig.rfc4733 = "1"
    rig.run(seconds=0.04)
    assert not rig.sent[-1]  # barge-in: the prompt stopped at once
    assert rig.actions == [SetResult("confirmed")]
    assert rig.hangups == ["hangup"] and rig.session.result == "confirmed"
    assert rig.flow.digits == [("1", "rfc4733")]
    assert rig.flow._inband is None  # a phone using RFC 4733 is not heard twice


def test_sip_info_digit(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.run(seconds=1.5)
    rig.flow.push_digit("9")
    rig.run(seconds=0.5)
    assert rig.flow.digits == [("9", "info")] and isinstance(rig.actions[0], OptOut)


def test_no_key_retries_then_on_fail(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.run(seconds=1.3)  # hello + menu prompt; then 1 s timeout, one retry, 1 s timeout
    assert rig.hangups == []
    rig.run(seconds=2.5)
    assert rig.hangups == []
    rig.run(seconds=1.5)
    assert rig.hangups == ["hangup"]  # on_fail: bye, a hangup step
    assert rig.actions == []
    assert "timeout" in rig.session.history_json()[1]["tries"]


def test_silence_until_the_audio_is_ready_and_failure_hangs_up(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ready=False)
    rig.run(seconds=1.0)
    assert not any(rig.sent) and not rig.flow.started
    rig.ready = True
    rig.run(seconds=0.1)
    assert rig.flow.started and any(rig.sent)
    broken = Rig(tmp_path, failed="IVR prompt could not be made: espeak-ng missing")
    broken.run(seconds=0.1)
    assert broken.hangups == ["IVR prompt could not be made: espeak-ng missing"]
    assert not any(broken.sent)


def test_caller_hangup_closes_the_history(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.run(seconds=0.6)
    rig.flow.hung_up()
    assert rig.session.end == "caller hung up" and rig.hangups == []
    assert rig.session.result is None


def _campaign_with_flow(tmp_path: Path, mode: str, flow: str) -> Path:
    (tmp_path / "p.wav").write_bytes(encode_wav(tone(0.2, 440)))
    extra = "safe_harbor: p.wav\n" if mode != "agentless" else ""
    (tmp_path / "c.yaml").write_text(
        f"name: c\nchannel: voice\nmode: {mode}\ncontact_list: l\nivr:\n  start: a\n"
        f"  steps:\n    {flow}\n    b: {{hangup: {{}}}}\ntrunk: t\n{extra}"
    )
    return tmp_path / "c.yaml"


def _daemon_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    from carriers.sip.parser import parse_uri
    from engine.config import DaemonConfig, TrunkConfig

    trunk = TrunkConfig("t", parse_uri("sip:127.0.0.1:9"))  # type: ignore[arg-type]
    return DaemonConfig(path=tmp_path / "o.yaml", trunks={"t": trunk}, prompts_dir=tmp_path)


def test_agent_queues_in_flows_load_and_name_agent_campaigns(tmp_path: Path) -> None:
    """An agent campaign may run an IVR whose transfer goes to its own agents;
    an agentless one may send callers to another campaign's agents, which
    must be an agent campaign the daemon has (checked once all are loaded)."""
    from engine.campaign_config import load_campaign
    from engine.config import ConfigError
    from engine.voice.ivr import check_queues

    cfg = _daemon_config(tmp_path)
    own = load_campaign(
        _campaign_with_flow(tmp_path, "progressive", "a: {transfer: {queue: this}, on_fail: b}"),
        cfg,
    )
    assert own.ivr is not None and own.with_agents
    check_queues(own.ivr, has_agents=True, agent_campaigns={"c"})
    other = load_campaign(
        _campaign_with_flow(tmp_path, "agentless", "a: {transfer: {queue: sales}, on_fail: b}"), cfg
    )
    assert other.ivr is not None
    check_queues(other.ivr, has_agents=False, agent_campaigns={"sales", "support"})
    with pytest.raises(ConfigError) as err:
        check_queues(other.ivr, has_agents=False, agent_campaigns={"saless"})
    assert ":8: ivr.steps.a.transfer.queue: no campaign with agents named 'sales' " \
           "(did you mean 'saless'?)" in str(err.value), str(err.value)  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_campaign(
            _campaign_with_flow(tmp_path, "agentless", "a: {transfer: {queue: this}, on_fail: b}"),
            cfg,
        )
    assert "queue: this needs a campaign with agents" in str(err.value)


class Recording:
    """A TTS engine that keeps every text it is given (and says a short tone)."""

    name = "recording 1"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def voices(self) -> set[str]:
        return {"en-us"}

    def render(self, text: str, voice: str, rate: int | None = None) -> Pcm:
        self.texts.append(text)
        return tone(0.1, 440)


async def test_contact_values_reach_the_tts_engine_neutralised(tmp_path: Path) -> None:
    # espeak-ng reads [[...]] as phoneme input and 0x01 as an embedded command (0x01 200A:
    # amplitude 200): neither may come from a contact's data. The flow's own {{ }} stay.
    (tmp_path / "flow.yaml").write_text(
        'start: greet\nsteps:\n  greet: {play: {tts: "Hello {contact.name}, press {{1}}."}}\n'
    )
    session = IvrSession(load_flow(tmp_path / "flow.yaml"), {"name": "[[h@'l@U]]\x01200A  Sam"})
    engine = Recording()
    with TtsCache(tmp_path / "tts", engine) as cache:
        audio = await prepare_audio(session, cache)
    assert engine.texts == ["Hello ((h@'l@U)) 200A Sam, press {1}."]
    assert list(audio) == [("tts:en-us", engine.texts[0])]
