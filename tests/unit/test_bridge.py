"""The bridge over real UDP sockets on 127.0.0.1 and a real MediaClock:
customer phone <-> customer leg (PCMA) == bridge == agent leg (PCMU) <-> agent
phone. Each phone must hear the other's tone, transcoded, and digits pass."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from carriers.rtp.session import RtpSession
from carriers.rtp.transport import MediaClock, RtpEndpoint
from engine.voice.bridge import Bridge
from engine.voice.telephony import MediaLeg
from tests.unit.test_rtp_transport import HOST, ToneSource, allocator, wait_for


def factory(codec: str, payload_type: int) -> Callable[[int], RtpSession]:
    def make(port: int) -> RtpSession:
        return RtpSession(local_port=port, remote=None, payload_type=payload_type, codec=codec,
                          dtmf_payload_type=101, rng=random.Random(port))  # fmt: skip

    return make


async def test_bridge_relays_both_ways_transcodes_and_passes_digits() -> None:
    ports = allocator()
    cust_phone = await RtpEndpoint.open(HOST, ports, factory("PCMA", 8))
    cust_leg = await RtpEndpoint.open(HOST, ports, factory("PCMA", 8))
    agent_leg = await RtpEndpoint.open(HOST, ports, factory("PCMU", 0))
    agent_phone = await RtpEndpoint.open(HOST, ports, factory("PCMU", 0))
    for x, y in ((cust_phone, cust_leg), (agent_leg, agent_phone)):
        x.session.set_remote((HOST, y.local_port))
        y.session.set_remote((HOST, x.local_port))
    customer, agent = MediaLeg(cust_leg), MediaLeg(agent_leg)
    customer_voice, agent_voice = ToneSource(700.0), ToneSource(1300.0)
    clock = MediaClock()
    clock.add(cust_phone, customer_voice)
    clock.add(agent_phone, agent_voice)
    clock.add(cust_leg, customer.on_frame)
    clock.add(agent_leg, agent.on_frame)
    bridge = Bridge(customer, agent)
    bridge.install()
    clock.start()
    try:
        await asyncio.sleep(0.2)
        cust_phone.session.send_dtmf("5#")
        await wait_for(lambda: agent_phone.session.dtmf_received == "5#" and bridge.frames > 60)
        heard_by_agent = len(agent_voice.received)
        bridge.unbridge()
        await asyncio.sleep(0.3)
    finally:
        await clock.stop()
    assert abs(agent_voice.dominant_frequency() - 700.0) < 10
    assert abs(customer_voice.dominant_frequency() - 1300.0) < 10
    assert bridge.digits_to_agent == "5#" and bridge.digits_to_customer == ""
    # After unbridge the agent hears silence (the leg's flow is gone).
    tail = agent_voice.received[heard_by_agent + 10 :]
    assert tail and max(int(abs(f).max()) for f in tail) == 0
    assert customer.flow is None and agent.flow is None
    for ep in (cust_phone, cust_leg, agent_leg, agent_phone):
        ep.close()
