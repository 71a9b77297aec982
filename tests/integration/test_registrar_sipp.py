"""Agents' phones register with outdial: a real `SipEndpoint` with a
`Registrar`, and SIPp as the phone (config/sipp/agent_phone.xml). The phone
registers, outdial calls the contact it registered (the agent's login call,
built as `Telephony.place_leg` builds it), the phone answers and streams its
tone, which must arrive on outdial's RTP endpoint; after outdial's BYE SIPp
must exit 0 (its scenario ran to the end).

OUTDIAL_SLOW_TESTS=1 adds a 100 s run across a 90 s session-timer interval.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carriers.rtp.session import RtpSession
from carriers.rtp.transport import MediaClock, PortAllocator, RtpEndpoint
from carriers.sip.call import CallSpec
from carriers.sip.events import CallAnswered, CallEnded
from carriers.sip.message import Address, SipURI
from carriers.sip.parser import parse_uri
from carriers.sip.registrar import Registered, Registrar, RegistrationRejected
from carriers.sip.sdp import build_offer
from carriers.sip.transaction import Target
from carriers.sip.transport import CallHandle, SipEndpoint
from tests.integration.agent_phone import AgentPhone, start_agent_phone
from tests.integration.sipp import free_port

pytestmark = pytest.mark.sipp

HOST = "127.0.0.1"
AGENT_HZ = 1300.0


@dataclass
class Outdial:
    """The SIP side of the daemon, reduced to what an agent's login needs."""

    endpoint: SipEndpoint
    registrar: Registrar
    clock: MediaClock
    allocator: PortAllocator
    events: list[Any] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.endpoint.local_address[1]

    async def until(self, check: Callable[[], Any], within: float, what: str) -> Any:
        deadline = asyncio.get_running_loop().time() + within
        while not (found := check()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what} not seen within {within} s; events: {self.events}")
            await asyncio.sleep(0.02)
        return found

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def outdial() -> AsyncIterator[Outdial]:
    registrar = Registrar(realm="outdial", accounts={"agent1": "secret"}, rng=random.Random(3))
    endpoint = await SipEndpoint.open(HOST, 0, rng=random.Random(4), registrar=registrar)
    clock = MediaClock()
    clock.start()
    low = free_port(even=True)
    od = Outdial(endpoint, registrar, clock, PortAllocator(low, low + 8))
    endpoint.listeners.append(od.events.append)
    yield od
    await clock.stop()
    await endpoint.close()


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Callable[..., AgentPhone]]:
    started: list[AgentPhone] = []

    def start(username: str, password: str | None, port: int | None, **kw: Any) -> AgentPhone:
        phone = start_agent_phone(
            username, password, port, AGENT_HZ, workdir=tmp_path / username, **kw
        )
        started.append(phone)
        return phone

    yield start
    for phone in started:
        phone.stop()


@dataclass
class Leg:
    """Our RTP end of the login call: every 20 ms frame the media clock plays out."""

    endpoint: RtpEndpoint
    frames: list[np.ndarray] = field(default_factory=list)

    def on_frame(self, _ep: RtpEndpoint, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())

    def heard(self, skip: int = 10) -> np.ndarray:
        return np.concatenate(self.frames[skip:]).astype(np.float64) if self.frames else np.zeros(0)


async def open_leg(od: Outdial) -> Leg:
    rng = random.Random(9)
    endpoint = await RtpEndpoint.open(
        HOST,
        od.allocator,
        lambda port: RtpSession(
            local_port=port, remote=None, payload_type=0, codec="PCMU",
            dtmf_payload_type=101, rng=rng,
        ),
    )  # fmt: skip
    leg = Leg(endpoint)
    od.clock.add(endpoint, leg.on_frame)
    return leg


def login_call(
    od: Outdial, uri: SipURI, target: Target, leg: Leg, session_expires: int = 1800
) -> CallHandle:
    """The agent's login call, as `Telephony.place_leg` places it."""
    spec = CallSpec(
        request_uri=uri,
        from_addr=Address(SipURI(host=HOST, user="outdial")),
        to_addr=Address(uri),
        target=target,
        offer=build_offer(HOST, leg.endpoint.local_port, session_id=4242),
        ring_timeout=10.0,
        max_duration=None,
        session_expires=session_expires,
        extra_headers=(("Subject", "outdial agent session"),),
    )
    return od.endpoint.place_call(spec)


async def answer_media(handle: CallHandle, leg: Leg) -> CallAnswered:
    answered = await asyncio.wait_for(handle.answered, 10)
    assert answered is not None, "the phone did not answer"
    media = answered.media
    assert media is not None and media.codec.name.upper() == "PCMU"
    session = leg.endpoint.session
    session.set_remote((media.remote_address, media.remote_port))
    session.configure(payload_type=0, codec="PCMU", dtmf_payload_type=media.dtmf_payload_type)
    return answered


def dominant_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / 8000)[int(np.argmax(spectrum))])


async def hang_up(od: Outdial, handle: CallHandle, phone: AgentPhone) -> CallEnded:
    od.endpoint.hangup(handle.call_id)
    ended = await asyncio.wait_for(handle.ended, 5)
    code = await asyncio.to_thread(phone.wait, 10)
    assert code == 0, phone.errors()
    return ended


async def test_a_registered_phone_answers_the_login_call_with_its_tone(
    outdial: Outdial, phones: Callable[..., AgentPhone]
) -> None:
    phone = phones("agent1", "secret", outdial.port, reregister=1.0)
    registered = await outdial.until(lambda: outdial.of(Registered), 5, "Registered")
    assert registered[0].aor == "agent1" and registered[0].source.port == phone.port
    binding = outdial.registrar.binding("agent1", outdial.endpoint.loop.time())
    assert binding is not None
    assert binding.target == Target(HOST, phone.port, "UDP")
    assert binding.contact.user == "agent1" and binding.contact.port == phone.port

    leg = await open_leg(outdial)
    handle = login_call(outdial, binding.contact, binding.target, leg)
    answered = await answer_media(handle, leg)
    assert answered.media is not None and answered.media.remote_port == phone.media_port

    await outdial.until(lambda: len(leg.frames) >= 75, 5, "1.5 s of media")
    heard = leg.heard()
    assert np.sqrt(np.mean(heard**2)) > 1000, "the phone's tone did not arrive"
    assert abs(dominant_hz(heard) - AGENT_HZ) < 25
    # It re-registered (every second) while the call was up: refreshes, same binding.
    refreshed = [e for e in outdial.of(Registered) if e.refreshed]
    assert refreshed and all(e.contact == binding.contact for e in refreshed)

    ended = await hang_up(outdial, handle, phone)
    assert ended.ended_by == "local" and ended.answered_at is not None
    assert outdial.of(RegistrationRejected) == []


async def test_a_wrong_password_is_rejected_and_binds_nothing(
    outdial: Outdial, phones: Callable[..., AgentPhone]
) -> None:
    phone = phones("agent1", "not-the-password", outdial.port)
    rejected = await outdial.until(
        lambda: outdial.of(RegistrationRejected), 5, "RegistrationRejected"
    )
    assert (rejected[0].user, rejected[0].status) == ("agent1", 403)
    assert rejected[0].source.port == phone.port
    assert outdial.registrar.binding("agent1") is None
    assert outdial.of(Registered) == []
    # The phone gave up on the 403: SIPp counts the call as failed.
    assert await asyncio.to_thread(phone.wait, 10) == 1
    assert "403" in phone.errors()


async def test_a_phone_that_does_not_register_answers_at_its_static_uri(
    outdial: Outdial, phones: Callable[..., AgentPhone]
) -> None:
    phone = phones("agent2", None, None)
    uri = parse_uri(phone.uri)
    assert isinstance(uri, SipURI)
    leg = await open_leg(outdial)
    handle = login_call(outdial, uri, Target(HOST, phone.port, "UDP"), leg)
    await answer_media(handle, leg)
    await outdial.until(lambda: len(leg.frames) >= 40, 5, "0.8 s of media")
    assert abs(dominant_hz(leg.heard()) - AGENT_HZ) < 25
    await hang_up(outdial, handle, phone)
    assert outdial.of(Registered) == []


@pytest.mark.skipif(not os.environ.get("OUTDIAL_SLOW_TESTS"), reason="100 s: OUTDIAL_SLOW_TESTS=1")
@pytest.mark.timeout(180)
async def test_session_timer_refreshes_keep_the_leg_up(
    outdial: Outdial, phones: Callable[..., AgentPhone]
) -> None:
    phone = phones("agent1", "secret", outdial.port)
    await outdial.until(lambda: outdial.of(Registered), 5, "Registered")
    binding = outdial.registrar.binding("agent1")
    assert binding is not None
    leg = await open_leg(outdial)
    # 90 s is the smallest interval RFC 4028 allows: we refresh at 45 s and 90 s.
    handle = login_call(outdial, binding.contact, binding.target, leg, session_expires=90)
    await answer_media(handle, leg)
    await asyncio.sleep(100)
    assert not handle.ended.done(), handle.ended.result()
    leg.frames = leg.frames[-100:]
    assert abs(dominant_hz(leg.heard(skip=0)) - AGENT_HZ) < 25
    await hang_up(outdial, handle, phone)
