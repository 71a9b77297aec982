"""RTP over real UDP sockets on 127.0.0.1, driven by a real MediaClock."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from carriers.rtp.errors import RtpError
from carriers.rtp.session import RtpSession
from carriers.rtp.transport import MediaClock, PortAllocator, RtpEndpoint

HOST = "127.0.0.1"
Pcm = npt.NDArray[np.int16]


def session_factory(remote: tuple[str, int] | None = None) -> Callable[[int], RtpSession]:
    def factory(port: int) -> RtpSession:
        return RtpSession(
            local_port=port,
            remote=remote,
            payload_type=0,
            codec="PCMU",
            dtmf_payload_type=101,
            rng=random.Random(port),
        )

    return factory


def allocator() -> PortAllocator:
    low = random.Random().randrange(42000, 60000, 2)
    return PortAllocator(low, low + 200)


class ToneSource:
    """A per-call handler: sends a continuous sine, records what it receives."""

    def __init__(self, freq: float) -> None:
        self.freq = freq
        self.n = 0
        self.received: list[Pcm] = []

    def __call__(self, endpoint: RtpEndpoint, frame: Pcm) -> Pcm:
        self.received.append(frame.copy())
        t = np.arange(self.n, self.n + 160) / 8000.0
        self.n += 160
        return (8000 * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)

    def dominant_frequency(self) -> float:
        audio = np.concatenate(self.received).astype(np.float64)
        nonzero = np.flatnonzero(audio)
        assert nonzero.size > 1600, "less than 0.2 s of audio received"
        audio = audio[nonzero[0] :]
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
        return float(np.argmax(spectrum) * 8000 / len(audio))


async def wait_for(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_port_allocator_hands_out_even_ports_and_reuses_them() -> None:
    ports = PortAllocator(20001, 20010)  # even ports whose RTCP neighbour fits: 20002..20008
    got = [ports.allocate() for _ in range(4)]
    assert got == [20002, 20004, 20006, 20008]
    with pytest.raises(RtpError):
        ports.allocate()
    ports.release(20004)
    assert ports.allocate() == 20004
    with pytest.raises(RtpError):
        ports.release(20003)
    assert ports.available == 0
    with pytest.raises(ValueError):
        PortAllocator(30000, 30001)


def test_port_allocator_reuses_released_ports_last() -> None:
    ports = PortAllocator(20000, 20008)
    first = ports.allocate()
    ports.release(first)
    assert [ports.allocate() for _ in range(4)] == [20002, 20004, 20006, 20000]


async def test_two_endpoints_exchange_audio_and_dtmf_through_the_media_clock() -> None:
    ports = allocator()
    total = ports.available
    a = await RtpEndpoint.open(HOST, ports, session_factory())
    b = await RtpEndpoint.open(HOST, ports, session_factory())
    assert a.local_port % 2 == 0
    assert b.local_port % 2 == 0
    a.session.set_remote((HOST, b.local_port))
    b.session.set_remote((HOST, a.local_port))
    clock = MediaClock()
    source_a, source_b = ToneSource(1000.0), ToneSource(697.0)
    clock.add(a, source_a)
    clock.add(b, source_b)
    assert clock.active == 2
    a.session.send_dtmf("19#")
    clock.start()
    try:
        await wait_for(lambda: b.session.dtmf_received == "19#" and clock.frames >= 60)
    finally:
        await clock.stop()
    assert abs(source_b.dominant_frequency() - 1000.0) < 5
    assert abs(source_a.dominant_frequency() - 697.0) < 5
    assert b.session.stats.received >= 45
    assert a.session.stats.received >= 45
    assert b.session.stats.lost == 0
    lateness = clock.lateness_percentiles()
    assert lateness["ticks"] >= 50
    assert 0 <= lateness["p50"] <= lateness["p99"] <= lateness["max"]
    a.close()
    b.close()
    a.close()  # idempotent
    assert ports.available == total


async def test_symmetric_latching_over_real_sockets() -> None:
    ports = allocator()
    # B's "SDP" points at a port where nothing listens; A's media fixes it.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as placeholder:
        placeholder.bind((HOST, 0))
        wrong = placeholder.getsockname()
    a = await RtpEndpoint.open(HOST, ports, session_factory())
    b = await RtpEndpoint.open(HOST, ports, session_factory(remote=wrong))
    a.session.set_remote((HOST, b.local_port))
    clock = MediaClock()
    source_a, source_b = ToneSource(1000.0), ToneSource(500.0)
    clock.add(a, source_a)
    clock.add(b, source_b)
    clock.start()
    try:
        await wait_for(lambda: a.session.stats.received >= 30)
    finally:
        await clock.stop()
        a.close()
        b.close()
    assert b.session.remote == (HOST, a.local_port)
    assert abs(source_a.dominant_frequency() - 500.0) < 5


def bind_even_port() -> socket.socket:
    rng = random.Random()
    for _ in range(100):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((HOST, rng.randrange(42000, 60000, 2)))
        except OSError:
            sock.close()
            continue
        return sock
    raise AssertionError("no free even port found")


async def test_open_skips_ports_taken_by_another_socket() -> None:
    with bind_even_port() as squatter:
        taken = squatter.getsockname()[1]
        ports = PortAllocator(taken, taken + 6)
        endpoint = await RtpEndpoint.open(HOST, ports, session_factory())
        try:
            assert endpoint.local_port == taken + 2
            assert endpoint.session.local_port == taken + 2
        finally:
            endpoint.close()
        assert ports.available == 3


async def test_open_raises_when_no_port_is_free() -> None:
    ports = PortAllocator(43000, 43002)
    first = await RtpEndpoint.open(HOST, ports, session_factory())
    try:
        with pytest.raises(RtpError):
            await RtpEndpoint.open(HOST, ports, session_factory())
    finally:
        first.close()


async def test_clock_catches_up_missed_frames_and_skips_beyond_five() -> None:
    ports = allocator()
    endpoint = await RtpEndpoint.open(HOST, ports, session_factory(remote=(HOST, 9)))
    clock = MediaClock()
    calls = [0]

    def blocking(ep: RtpEndpoint, frame: Pcm) -> None:
        calls[0] += 1
        if calls[0] == 5:
            time.sleep(0.075)  # the loop stalls: the next tick is ~3 frames late
        if calls[0] == 15:
            time.sleep(0.25)  # ~12 frames late: at most 5 are caught up

    clock.add(endpoint, blocking)
    loop = asyncio.get_running_loop()
    started = loop.time()
    clock.start()
    try:
        await wait_for(lambda: calls[0] >= 40, within=5)
    finally:
        await clock.stop()
        endpoint.close()
    elapsed_frames = (loop.time() - started) / clock.period
    lateness = clock.lateness_percentiles()
    assert lateness["max"] >= 200
    assert clock.skipped_frames >= 5
    # Deadlines are absolute: processed plus skipped frames track wall time.
    assert abs(clock.frames + clock.skipped_frames - elapsed_frames) <= 3
    # Fewer ticks than frames: late ticks processed several frames each.
    assert lateness["ticks"] < clock.frames
    assert endpoint.session.stats.sent == clock.frames


async def test_handler_errors_and_removal_do_not_stop_other_calls() -> None:
    ports = allocator()
    good = await RtpEndpoint.open(HOST, ports, session_factory(remote=(HOST, 9)))
    bad = await RtpEndpoint.open(HOST, ports, session_factory(remote=(HOST, 9)))
    gone = await RtpEndpoint.open(HOST, ports, session_factory(remote=(HOST, 9)))
    counts = {"good": 0, "gone": 0}

    def ok(ep: RtpEndpoint, frame: Pcm) -> None:
        counts["good"] += 1

    def broken(ep: RtpEndpoint, frame: Pcm) -> Pcm:
        raise RuntimeError("handler bug")

    def removed(ep: RtpEndpoint, frame: Pcm) -> None:
        counts["gone"] += 1

    clock = MediaClock()
    clock.add(good, ok)
    clock.add(bad, broken)
    clock.add(gone, removed)
    clock.remove(gone)
    clock.remove(gone)  # unknown endpoints are ignored
    clock.start()
    try:
        await wait_for(lambda: counts["good"] >= 10)
        bad.close()  # a closed endpoint drops out of the clock
        await wait_for(lambda: clock.active == 1)
    finally:
        await clock.stop()
        good.close()
        gone.close()
    assert counts["gone"] == 0
    assert clock.handler_errors >= 10
    assert bad.session.stats.sent >= 10  # comfort silence went out regardless
