"""Two campaigns on one trunk of 4 lines: the higher `priority` gets the lines.

A low-priority campaign fills the trunk first; then a high-priority one
starts. From then on every line that frees goes to the high-priority
campaign until it has nothing due, and only then does the low one dial again.
Checked on the attempts' times and on SIPp's count of INVITEs.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from dsp.wav import encode_wav
from tests.integration.daemon import Daemon
from tests.integration.sipp import make_tone
from tests.integration.test_daemon_sipp import sipp_invites, start_carrier

pytestmark = pytest.mark.sipp


def campaign(name: str, priority: int) -> str:
    return f"""\
name: {name}
channel: voice
mode: agentless
contact_list: {name}-list
trunk: carrier
priority: {priority}
lines: 4
max_attempts: 1
ring_timeout: 15
max_duration: 10
prompt: prompt.wav
"""


@pytest.mark.timeout(120)
def test_higher_priority_campaign_takes_the_trunks_free_lines(tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(encode_wav((np.ones(8000) * 2000).astype(np.int16)))  # 1 s
    for name, count, base in (("low", 40, 7000), ("high", 16, 8000)):
        rows = [f"{name}{i},+1212555{base + i * 10:04d}" for i in range(count)]  # end in 0: answer
        (tmp_path / f"{name}.csv").write_text("id,phone\n" + "\n".join(rows) + "\n")
    tone = make_tone(tmp_path / "hello.ul", 700, 0.5)
    sipp = start_carrier(tmp_path, tone, None)
    daemon = Daemon(tmp_path, sipp.port, campaign("low", 0), prompt)
    daemon.config.write_text(daemon.config.read_text().replace("max_calls: 200", "max_calls: 4"))
    (tmp_path / "campaigns" / "high.yaml").write_text(campaign("high", 10))
    daemon.start()
    try:
        for name in ("low", "high"):
            daemon("contacts.import", list=f"{name}-list", file=str(tmp_path / f"{name}.csv"))
        daemon("campaign.start", name="low")
        deadline = time.monotonic() + 20
        while daemon("campaign.show", name="low")["in_flight"] < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        daemon("campaign.start", name="high")
        daemon.wait_state("high", "completed", timeout=60)
        daemon.wait_state("low", "completed", timeout=90)
        high = daemon("report.attempts", campaign="high")
        low = daemon("report.attempts", campaign="low")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        sipp.stop()
    assert len(high) == 16 and len(low) == 40
    high_times = sorted(datetime.fromisoformat(a["created_at"]) for a in high)
    low_times = sorted(datetime.fromisoformat(a["created_at"]) for a in low)
    # Low filled the 4 lines first; every later line went to high until high had
    # nothing due: low's 5th call comes after high's last one.
    assert low_times[3] < high_times[0], (low_times[:5], high_times[:2])
    assert high_times[-1] < low_times[4], (high_times[-1], low_times[4])
    invites = sipp_invites(tmp_path / "sipp-messages.log")
    assert sum(len(t) for t in invites.values()) == 56
