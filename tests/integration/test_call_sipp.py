"""`outdial call` against real SIPp carriers on loopback.

Each test starts SIPp with one scenario from config/sipp/, places one call
through the whole stack (SIP user agent, RTP endpoint, media clock), and
checks both sides: what outdial reports, and SIPp's own verdict (its exit code
is 0 only when the call followed the scenario to its end: the ACKs, the
CANCEL, the BYE it expected all arrived).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carriers.sip.parser import parse_uri
from dsp.wav import decode_wav, encode_wav, load_media_audio
from engine.voice.testcall import TestCallOptions, run_test_call
from tests.integration.sipp import ROOT, Sipp, make_tone

pytestmark = pytest.mark.sipp


@pytest.fixture
def carrier(tmp_path: Path) -> Iterator[Any]:
    started: list[Sipp] = []

    def start(scenario: str, **kwargs: Any) -> Sipp:
        sipp = Sipp(scenario, **kwargs).start(tmp_path)
        started.append(sipp)
        return sipp

    yield start
    for sipp in started:
        sipp.stop()


async def call(sipp: Sipp, **kwargs: Any) -> dict[str, Any]:
    trunk = parse_uri(sipp.uri)
    opts = TestCallOptions(trunk=trunk, number=kwargs.pop("number", "15551230001"), **kwargs)  # type: ignore[arg-type]
    return await run_test_call(opts)


def tone_runs(pcm: np.ndarray, threshold: float = 1000.0) -> list[tuple[int, int]]:
    """(start_frame, length_frames) of runs of 20 ms frames louder than threshold RMS."""
    n = len(pcm) // 160
    frames = pcm[: n * 160].astype(np.float64).reshape(n, 160)
    loud = np.sqrt((frames**2).mean(axis=1)) > threshold
    runs, start = [], None
    for i, flag in enumerate(loud):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - start))
            start = None
    if start is not None:
        runs.append((start, n - start))
    return runs


def dominant_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / 8000)[int(np.argmax(spectrum))])


async def test_answered_call_records_the_carriers_tone(carrier: Any, tmp_path: Path) -> None:
    tone = make_tone(tmp_path / "tone.ul", 1000, 1.0)
    sipp = carrier("answer.xml", keys={"audio": f"{tone},1,0"}, duration_ms=500)
    record = tmp_path / "heard.wav"
    report = await call(sipp, record=record, max_duration=3.0, ring_timeout=10.0)
    assert sipp.wait() == 0, sipp.errors()
    assert report["result"] == "answered"
    assert report["sip_status"] == 200
    assert report["codec"] == "PCMU"
    assert 400 <= report["answer_ms"] <= 1500  # SIPp rings for -d 500 ms
    assert report["ringing_ms"] is not None and report["ringing_ms"] < report["answer_ms"]
    assert 2800 <= report["duration_ms"] <= 3500
    assert report["rtp"]["received"] >= 49  # one second of 20 ms packets
    assert report["rtp"]["lost"] == 0
    assert report["rtp"]["sent"] >= 140  # we keep sending (silence) for 3 s
    pcm, info = decode_wav(record.read_bytes())
    assert info.sample_rate == 8000
    runs = tone_runs(pcm)
    assert len(runs) == 1, runs
    start, length = runs[0]
    assert 48 <= length <= 51, f"tone lasted {length * 20} ms, SIPp sent 1000 ms"
    segment = pcm[start * 160 : (start + length) * 160]
    assert abs(dominant_hz(segment) - 1000) < 10


async def test_prompt_is_played_and_call_ends_after_it(carrier: Any, tmp_path: Path) -> None:
    sipp = carrier("answer.xml", keys={"audio": f"{make_tone(tmp_path / 's.ul', 500, 0.2)},1,0"})
    t = np.arange(int(16000 * 1.5)) / 16000  # 1.5 s at 16 kHz, resampled to 8 kHz
    wav = encode_wav((np.sin(2 * np.pi * 600 * t) * 8000).astype(np.int16), 16000)
    report = await call(sipp, play=load_media_audio(wav), max_duration=20.0)
    assert sipp.wait() == 0, sipp.errors()
    assert report["result"] == "answered"
    assert report["ended_by"] == "local"
    # The call lasts as long as the prompt (1.5 s), not the 20 s maximum.
    assert 1400 <= report["duration_ms"] <= 2500
    assert report["rtp"]["sent"] >= 75


@pytest.mark.parametrize(
    ("scenario", "result", "status", "cause"),
    [
        ("reject_486.xml", "busy", 486, None),
        ("reject_404.xml", "invalid_number", 404, None),
        ("reject_503.xml", "unavailable", 503, 34),
        ("reject_480.xml", "no_answer", 480, 18),
        ("reject_603.xml", "rejected", 603, None),
    ],
)
async def test_failure_responses_map_to_call_results(
    carrier: Any, scenario: str, result: str, status: int, cause: int | None
) -> None:
    sipp = carrier(scenario)
    report = await call(sipp)
    assert sipp.wait() == 0, sipp.errors()  # SIPp got its ACK
    assert report["result"] == result
    assert report["sip_status"] == status
    assert report["q850_cause"] == cause
    assert report["answer_ms"] is None and report["duration_ms"] is None


async def test_ring_timeout_cancels_and_reports_no_answer(carrier: Any) -> None:
    sipp = carrier("ring_forever.xml")
    report = await call(sipp, ring_timeout=2.0)
    assert sipp.wait() == 0, sipp.errors()  # CANCEL, then ACK for the 487
    assert report["result"] == "no_answer"
    assert report["sip_status"] == 487
    assert report["ringing_ms"] is not None and report["ringing_ms"] < 500
    assert report["answer_ms"] is None


async def test_early_media_then_answer(carrier: Any, tmp_path: Path) -> None:
    early = make_tone(tmp_path / "early.ul", 440, 1.0)
    audio = make_tone(tmp_path / "audio.ul", 1000, 0.6)
    sipp = carrier(
        "early_media.xml",
        keys={"early": f"{early},1,0", "audio": f"{audio},1,0"},
        duration_ms=1500,
    )
    record = tmp_path / "heard.wav"
    report = await call(sipp, record=record, max_duration=2.0)
    assert sipp.wait() == 0, sipp.errors()
    assert report["result"] == "answered"
    assert report["answer_ms"] >= 1400
    pcm, _ = decode_wav(record.read_bytes())
    runs = tone_runs(pcm)
    assert len(runs) == 2, runs
    (s1, n1), (s2, n2) = runs
    assert abs(dominant_hz(pcm[s1 * 160 : (s1 + n1) * 160]) - 440) < 10
    assert abs(dominant_hz(pcm[s2 * 160 : (s2 + n2) * 160]) - 1000) < 10
    assert 48 <= n1 <= 51 and 28 <= n2 <= 31


async def test_digest_auth_with_the_right_password(carrier: Any) -> None:
    sipp = carrier("auth.xml", keys={"password": "s3cret-trunk"})
    report = await call(sipp, username="outdial", password="s3cret-trunk", max_duration=1.0)
    assert sipp.wait() == 0, sipp.errors()  # verifyauth accepted our digest
    assert report["result"] == "answered"


async def test_digest_auth_with_a_wrong_password(carrier: Any) -> None:
    sipp = carrier("auth.xml", keys={"password": "s3cret-trunk"})
    report = await call(sipp, username="outdial", password="wrong", max_duration=1.0)
    assert sipp.wait() == 0, sipp.errors()
    assert report["result"] == "auth_failed"
    assert report["sip_status"] == 401


async def test_far_end_hangs_up_mid_call(carrier: Any, tmp_path: Path) -> None:
    tone = make_tone(tmp_path / "t.ul", 800, 5.0)
    sipp = carrier("hangup.xml", keys={"audio": f"{tone},-1,0"}, duration_ms=1500)
    report = await call(sipp, max_duration=10.0)
    assert sipp.wait() == 0, sipp.errors()  # our 200 to its BYE arrived
    assert report["result"] == "answered"
    assert report["ended_by"] == "remote"
    assert 1300 <= report["duration_ms"] <= 2500
    assert report["rtp"]["received"] >= 60


async def test_retransmitted_200_is_acked_again(carrier: Any, tmp_path: Path) -> None:
    trace = tmp_path / "messages.log"
    sipp = carrier("retransmit_200.xml", extra=["-nr", "-trace_msg", "-message_file", str(trace)])
    report = await call(sipp, max_duration=1.5)
    assert sipp.wait() == 0, sipp.errors()
    assert report["result"] == "answered"
    log = trace.read_text(errors="replace")
    entries = log.split("-----------------------------------------------")
    oks = [e for e in entries if "message sent" in e and "SIP/2.0 200 OK" in e and "INVITE" in e]
    acks = [e for e in entries if "message received" in e and "\nACK sip:" in e]
    assert len(oks) >= 2  # the scenario's retransmission did go out
    assert len(acks) == len(oks)  # and every 200 got its ACK


async def test_dtmf_from_the_far_end(carrier: Any) -> None:
    sipp = carrier("dtmf.xml", duration_ms=200)
    report = await call(sipp, max_duration=3.0)
    assert sipp.wait() == 0, sipp.errors()
    assert report["dtmf_received"] == "15#"


async def test_call_over_tcp(carrier: Any, tmp_path: Path) -> None:
    tone = make_tone(tmp_path / "t.ul", 1000, 0.5)
    sipp = carrier("answer.xml", keys={"audio": f"{tone},1,0"}, transport="t1")
    report = await call(sipp, transport="TCP", max_duration=1.5)
    assert sipp.wait() == 0, sipp.errors()
    assert report["result"] == "answered"
    assert report["rtp"]["received"] >= 20


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_cli_prints_one_json_report_and_sends_caller_id(carrier: Any, tmp_path: Path) -> None:
    trace = tmp_path / "messages.log"
    sipp = carrier("reject_486.xml", extra=["-trace_msg", "-message_file", str(trace)])
    out = run_cli(
        "call", "--trunk-uri", sipp.uri, "--from", '"Acme Support" <sip:2125550100@acme.test>',
        "--asserted-identity", "<sip:+12125550100@acme.test>", "--privacy", "id", "15551230002",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["result"] == "busy"
    assert report["sip_status"] == 486
    assert sipp.wait() == 0
    received = trace.read_text(errors="replace")
    invite = received[received.index("INVITE sip:15551230002@127.0.0.1") :]
    invite = invite[: invite.index("\n\n")]
    assert 'From: "Acme Support" <sip:2125550100@acme.test>;tag=' in invite
    assert "P-Asserted-Identity: <sip:+12125550100@acme.test>" in invite
    assert "Privacy: id" in invite


def test_cli_trunk_from_config(carrier: Any, tmp_path: Path) -> None:
    sipp = carrier("auth.xml", keys={"password": "pw-from-config"})
    config = tmp_path / "outdial.yaml"
    config.write_text(
        "trunks:\n"
        f"  - name: carrier1\n    uri: {sipp.uri}\n"
        "    username: outdial\n    password: pw-from-config\n"
    )
    out = run_cli(
        "call", "--config", str(config), "--trunk", "carrier1", "--max-duration", "1", "100"
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"] == "answered"
    assert sipp.wait() == 0, sipp.errors()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trunk-uri", "http://x", "1"], "--trunk-uri"),
        (["--trunk-uri", "sip:127.0.0.1:5999", "--ring-timeout", "-1", "1"], "--ring-timeout"),
        (["--trunk-uri", "sip:127.0.0.1:5999", "--dtmf", "12X", "1"], "--dtmf"),
        (["--trunk-uri", "sip:127.0.0.1:5999", "--play", "/nonexistent.wav", "1"], "--play"),
        (["--trunk-uri", "sip:127.0.0.1:5999", "--user", "u", "1"], "--password"),
        (["--trunk", "x", "1"], "--config"),
        (["--trunk-uri", "sip:no-such-host.invalid", "1"], "does not resolve"),
    ],
)
def test_cli_bad_arguments(args: list[str], message: str) -> None:
    out = run_cli("call", *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stdout == ""


def test_cli_bad_config_names_file_line_and_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("trunks:\n  - name: a\n    uri: sip:127.0.0.1\n    max_cals: 3\n")
    out = run_cli("call", "--config", str(config), "--trunk", "a", "1")
    assert out.returncode == 2
    assert (
        f"{config}:4: trunks[0].max_cals: unknown field (did you mean 'max_calls'?)" in out.stderr
    )


def test_cli_unreachable_trunk(tmp_path: Path) -> None:
    from tests.integration.sipp import free_port

    port = free_port()  # nothing listens there: no response ever comes
    out = run_cli("call", "--trunk-uri", f"sip:127.0.0.1:{port}", "1", timeout=90)
    assert out.returncode == 3
    assert "did not answer" in out.stderr
    assert json.loads(out.stdout)["result"] == "carrier_timeout"


async def test_options_keepalive_marks_trunk_up(carrier: Any) -> None:
    import asyncio
    import random

    from carriers.sip.message import SipURI
    from carriers.sip.transaction import Target
    from carriers.sip.transport import SipEndpoint, TrunkKeepalive
    from carriers.sip.trunk import TrunkState, TrunkStateChanged

    sipp = carrier("options.xml", calls=2)
    endpoint = await SipEndpoint.open("127.0.0.1", 0, rng=random.Random(5))
    changes: list[TrunkStateChanged] = []
    trunks = {
        "carrier1": (SipURI(host="127.0.0.1", port=sipp.port), Target("127.0.0.1", sipp.port))
    }
    keepalive = TrunkKeepalive(endpoint, trunks, changes.append, interval=0.3)
    keepalive.start()
    for _ in range(100):  # two probes 0.3 s apart, then SIPp exits
        await asyncio.sleep(0.05)
        if sipp.proc is not None and sipp.proc.poll() is not None:
            break
    await keepalive.stop()
    await endpoint.close()
    assert sipp.wait() == 0, sipp.errors()  # SIPp answered two probes, as scripted
    assert [c.state for c in changes] == [TrunkState.UP]
    assert keepalive.monitors["carrier1"].last_rtt is not None
