"""Daemon shutdown caught between the attempt's insert and its INVITE.

The dial loop commits an attempt before the INVITE leaves. A shutdown that
cancels the loop while that insert is still in the store's writer must not
leave a committed attempt without an end: the runner waits for the row and
closes it as interrupted, never sent, with the contact still due.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from engine.bus import EventBus
from engine.campaign_config import load_campaign
from engine.compliance.campaign import calling_hours
from engine.config import DaemonConfig, TrunkConfig
from engine.store import AttemptIntent, Store
from engine.voice.dialer import CampaignRunner
from engine.voice.telephony import Telephony

CAMPAIGN = """\
name: halt
channel: voice
mode: agentless
contact_list: halt-list
trunk: nowhere
lines: 1
prompt: p.wav
"""


class SlowInsertStore(Store):
    """The real store, whose attempt insert is held until the test lets it go."""

    inserting: asyncio.Event
    release: asyncio.Event

    async def create_attempt(self, attempt: AttemptIntent) -> int:
        # The row is on its way to the writer (it commits whatever happens
        # to the caller); the answer is held back.
        insert = asyncio.ensure_future(super().create_attempt(attempt))
        self.inserting.set()
        await self.release.wait()
        return await insert


@pytest.mark.timeout(30)
async def test_halt_during_the_insert_closes_the_attempt(tmp_path: Path) -> None:
    from carriers.sip.parser import parse_uri
    from dsp.wav import encode_wav

    (tmp_path / "p.wav").write_bytes(encode_wav(np.zeros(800, dtype=np.int16)))
    (tmp_path / "c.csv").write_text("id,phone\nc1,+12125550101\n")
    (tmp_path / "halt.yaml").write_text(CAMPAIGN)
    trunk = TrunkConfig("nowhere", parse_uri("sip:127.0.0.1:9"))  # type: ignore[arg-type]
    config = DaemonConfig(path=tmp_path / "o.yaml", trunks={"nowhere": trunk},
                          prompts_dir=tmp_path)  # fmt: skip
    cfg = load_campaign(tmp_path / "halt.yaml", config)

    store = await SlowInsertStore.open(f"sqlite:///{tmp_path / 'o.db'}")
    store.inserting, store.release = asyncio.Event(), asyncio.Event()
    tel = await Telephony.open("127.0.0.1", 0, (41200, 41220), config.trunks)
    try:
        await store.import_contacts("halt-list", tmp_path / "c.csv")
        await store.upsert_campaign("halt", "halt-list", {"name": "halt"})
        runner = CampaignRunner(store, EventBus(), tel, cfg, np.zeros(160, dtype=np.int16))
        # The number is in New York: without the lab rig's hours the law's
        # 8:00-21:00 there would defer it for half of the day the suite runs.
        runner.hours = calling_hours(cfg.hours, str(cfg.file), legal_hours="lab")
        await runner.start()
        await asyncio.wait_for(store.inserting.wait(), 10)
        halting = asyncio.ensure_future(runner.halt(0.1))
        await asyncio.sleep(0.05)  # the loop is cancelled while the insert waits
        store.release.set()
        await halting
        assert not runner.calls and runner.placed == 0  # no INVITE left
        await store.flush()
        (attempt,) = await store.attempts("halt")
        assert attempt["ended_at"] is not None
        assert attempt["result"] == "interrupted"
        assert attempt["invite_sent_at"] is None
        progress = await store.progress("halt")
        assert progress.get("pending", 0) + progress.get("retry", 0) == 1  # still due
        assert (await store.campaign("halt"))["state"] == "running"  # not a pause
    finally:
        await tel.close()
        await store.close()
