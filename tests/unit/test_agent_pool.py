"""The agent pool's choices that do not need a phone: who is free, and which
campaign's pacer counts a ready agent shared between campaigns."""

from __future__ import annotations

from pathlib import Path

from engine.bus import EventBus
from engine.config import AgentConfig
from engine.store import Store
from engine.voice.agents import AgentPool, AgentState, Reservation
from engine.voice.telephony import Telephony


async def test_a_shared_ready_agent_counts_for_one_running_campaign(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'o.db'}")
    tel = await Telephony.open("127.0.0.1", 0, (41000, 41100), {})
    try:
        agents = {
            "ana": AgentConfig("ana", "Ana", "ana", "pw", campaigns=("sales", "renewals")),
            "bo": AgentConfig("bo", "Bo", "bo", "pw", campaigns=("renewals",)),
        }
        pool = AgentPool(agents, tel, store, EventBus(), lambda a: None)
        running = {"sales": True, "renewals": True}
        pool.register_campaign("sales", 5, lambda: running["sales"])
        pool.register_campaign("renewals", 1, lambda: running["renewals"])
        ana, bo = pool.get("ana"), pool.get("bo")
        assert pool.home(ana) == "sales"  # the higher priority of the two she may work
        assert pool.home(bo) == "renewals"
        running["sales"] = False
        assert pool.home(ana) == "renewals"  # sales paused: renewals counts her
        running["renewals"] = False
        assert pool.home(ana) is None
        # Free means ready, unreserved, not on a call, and with a leg.
        ana.state = AgentState.READY
        assert pool.free("sales") == []  # no leg: she is not really there
        ana.leg = object()  # type: ignore[assignment]
        assert pool.free("sales") == [ana]
        ana.reservation = Reservation("sales", "preview", 7)
        assert pool.free("sales") == []
        woken: list[int] = []
        pool.on_ready.append(lambda: woken.append(1))
        pool.release(ana)
        assert ana.reservation is None and woken == [1] and pool.free("renewals") == [ana]
        ana.leg = None
    finally:
        await tel.close()
        await store.close()
