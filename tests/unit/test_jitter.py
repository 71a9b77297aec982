"""Jitter buffer: ordering, loss, duplicates, late packets, wrap, resync, adaptation."""

from __future__ import annotations

import random

import pytest

from carriers.rtp.jitter import JitterBuffer
from carriers.rtp.packet import RtpPacket

FRAME = 0.02


def pkt(seq: int, *, ts: int | None = None, ssrc: int = 1, marker: bool = False) -> RtpPacket:
    """A packet whose payload names its sequence number (160 bytes, like G.711)."""
    timestamp = (seq * 160 if ts is None else ts) & 0xFFFFFFFF
    payload = (seq & 0xFFFF).to_bytes(2, "big") * 80
    return RtpPacket(0, seq & 0xFFFF, timestamp, ssrc, payload, marker)


def ident(payload: bytes | None) -> int | None:
    return None if payload is None else int.from_bytes(payload[:2], "big")


def simulate(
    jb: JitterBuffer, arrivals: list[tuple[float, RtpPacket]], ticks: int
) -> list[int | None]:
    """Pop at t = 0, 0.02, ...; before each pop, push every packet that has arrived."""
    pending = sorted(arrivals, key=lambda item: item[0])
    out = []
    for k in range(ticks):
        now = k * FRAME
        while pending and pending[0][0] <= now:
            arrival, packet = pending.pop(0)
            jb.push(packet, arrival)
        out.append(ident(jb.pop(now)))
    return out


def steady(
    seqs: list[int], *, offset: float = 0.005, first: int | None = None
) -> list[tuple[float, RtpPacket]]:
    """Packets sent every 20 ms (by sequence) arriving ``offset`` after their send time."""
    base = seqs[0] if first is None else first
    return [(offset + ((s - base) & 0xFFFF) * FRAME, pkt(s)) for s in seqs]


def test_prebuffers_then_plays_in_order() -> None:
    jb = JitterBuffer(delay=0.04)
    out = simulate(jb, steady(list(range(10))), 14)
    # First arrival 0.005 + 40 ms = 0.045: the tick at 0.06 plays the first slot.
    assert out == [None, None, None, *range(10), None]
    assert (jb.played, jb.missing, jb.late_dropped, jb.duplicates) == (10, 0, 0, 0)


def test_pop_before_any_packet_is_silent_and_uncounted() -> None:
    jb = JitterBuffer()
    assert [jb.pop(k * FRAME) for k in range(5)] == [None] * 5
    assert jb.stats.missing == 0
    assert jb.stats.played == 0


def test_reordered_packets_play_in_sequence_order() -> None:
    order = [0, 2, 1, 3, 5, 4, 7, 6, 8, 9]
    arrivals = [(0.005 + i * FRAME, pkt(s)) for i, s in enumerate(order)]
    jb = JitterBuffer(delay=0.04)
    out = simulate(jb, arrivals, 14)
    assert [x for x in out if x is not None] == list(range(10))
    assert jb.missing == 0


def test_packet_reordered_before_the_first_is_still_played() -> None:
    jb = JitterBuffer(delay=0.04)
    out = simulate(jb, [(0.001, pkt(11)), (0.010, pkt(10)), (0.021, pkt(12))], 6)
    assert [x for x in out if x is not None] == [10, 11, 12]


def test_loss_is_played_as_missing_slot() -> None:
    jb = JitterBuffer(delay=0.04)
    seqs = [0, 1, 2, 3, 5, 6, 7]
    out = simulate(jb, steady(seqs), 11)
    assert out[3:11] == [0, 1, 2, 3, None, 5, 6, 7]
    assert jb.missing == 1
    assert jb.played == 7


def test_duplicates_counted_whether_buffered_or_already_played() -> None:
    jb = JitterBuffer(delay=0.04)
    arrivals = [*steady(list(range(6))), (0.030, pkt(2)), (0.075, pkt(0))]
    out = simulate(jb, arrivals, 10)
    assert [x for x in out if x is not None] == list(range(6))
    assert jb.duplicates == 2
    assert jb.late_dropped == 0


def test_late_packet_after_its_slot_was_played_is_dropped() -> None:
    jb = JitterBuffer(delay=0.04)
    arrivals = [(t, p) for t, p in steady(list(range(8))) if p.sequence != 4]
    arrivals.append((0.150, pkt(4)))  # slot 4 played at 0.14
    out = simulate(jb, arrivals, 12)
    assert out[3:11] == [0, 1, 2, 3, None, 5, 6, 7]
    assert jb.late_dropped == 1
    assert jb.missing == 1


def test_sequence_wraparound_at_65535() -> None:
    seqs = [65532, 65533, 65534, 65535, 0, 1, 2, 3]
    order = [65532, 65533, 65535, 65534, 1, 0, 2, 3]  # reordered across the wrap
    arrivals = [(0.005 + i * FRAME, pkt(s)) for i, s in enumerate(order)]
    jb = JitterBuffer(delay=0.04)
    out = simulate(jb, arrivals, 12)
    assert [x for x in out if x is not None] == seqs
    assert jb.missing == 0
    assert jb.late_dropped == 0


def test_long_stream_across_several_wraps() -> None:
    jb = JitterBuffer(delay=0.04)
    count = 3 * 65536 + 10
    played = 0
    expected = 65000
    for k in range(count):
        jb.push(pkt(65000 + k), k * FRAME + 0.005)
        got = ident(jb.pop(k * FRAME + 0.01))
        if got is not None:
            assert got == expected & 0xFFFF
            expected += 1
            played += 1
    assert played >= count - 3
    assert jb.missing == 0


def test_underrun_is_silence_without_loss_and_new_talkspurt_prebuffers() -> None:
    jb = JitterBuffer(delay=0.04)
    first = steady([0, 1, 2])
    # Silence suppression: the next talkspurt starts 1 s later with the marker
    # bit, consecutive sequence numbers and a timestamp jump.
    later = [(1.005 + i * FRAME, pkt(3 + i, ts=(3 + i) * 160 + 8000)) for i in range(3)]
    later[0] = (later[0][0], pkt(3, ts=3 * 160 + 8000, marker=True))
    out = simulate(jb, first + later, 60)
    assert out[3:6] == [0, 1, 2]
    assert out[6:53] == [None] * 47
    # Re-sync: played 40 ms after the new talkspurt's first arrival (1.005).
    assert out[53:56] == [3, 4, 5]
    assert jb.missing == 0


def test_delayed_packet_after_underrun_is_played_not_lost() -> None:
    jb = JitterBuffer(delay=0.04, min_delay=0.04)
    arrivals = steady(list(range(4)))
    # A 100 ms delay spike on packets 4..6 (they arrive together).
    arrivals += [(0.185, pkt(4)), (0.185, pkt(5)), (0.185, pkt(6))]
    arrivals += steady(list(range(7, 12)), first=0)
    out = simulate(jb, arrivals, 20)
    assert [x for x in out if x is not None] == list(range(12))
    assert jb.late_dropped == 0
    assert jb.missing == 0


def test_ssrc_change_resyncs_to_the_new_stream() -> None:
    jb = JitterBuffer(delay=0.04)
    old = steady([100, 101, 102, 103, 104, 105])
    new = [(0.065 + i * FRAME, pkt(7000 + i, ssrc=2)) for i in range(4)]
    out = simulate(jb, old + new, 14)
    # Old stream: slot 100 played at 0.06; the new SSRC arriving at 0.065
    # discards 101..103 and is played 40 ms after its own first arrival; old
    # packets 104 and 105 still in flight are dropped as late, not switched to.
    played = [x for x in out if x is not None]
    assert played == [100, 7000, 7001, 7002, 7003]
    assert jb.late_dropped == 2
    assert jb.stats.resyncs == 1
    first_new = out.index(7000)
    assert (first_new - 1) * FRAME < 0.065 + 0.04 <= first_new * FRAME


def test_switch_back_to_an_earlier_ssrc_after_a_while_is_accepted() -> None:
    jb = JitterBuffer(delay=0.04)
    arrivals = [(0.005 + i * FRAME, pkt(i, ssrc=1)) for i in range(3)]
    arrivals += [(0.105 + i * FRAME, pkt(500 + i, ssrc=2)) for i in range(3)]
    arrivals += [(0.505 + i * FRAME, pkt(3 + i, ssrc=1)) for i in range(3)]
    out = simulate(jb, arrivals, 40)
    assert [x for x in out if x is not None] == [0, 1, 2, 500, 501, 502, 3, 4, 5]
    assert jb.stats.resyncs == 2


def test_sequence_jump_confirmed_by_second_packet_resyncs() -> None:
    jb = JitterBuffer(delay=0.04)
    arrivals = steady(list(range(5)))
    arrivals += [(0.165 + i * FRAME, pkt(20000 + i)) for i in range(5)]
    out = simulate(jb, arrivals, 20)
    played = [x for x in out if x is not None]
    assert played[:5] == [0, 1, 2, 3, 4]
    assert played[5:] == [20000, 20001, 20002, 20003, 20004]
    assert jb.stats.resyncs == 1


def test_single_stray_far_packet_is_ignored() -> None:
    jb = JitterBuffer(delay=0.04)
    arrivals = steady(list(range(8)))
    arrivals.append((0.050, pkt(40000)))
    out = simulate(jb, arrivals, 12)
    assert [x for x in out if x is not None] == list(range(8))
    assert jb.stats.resyncs == 0


def test_delay_adapts_to_measured_jitter() -> None:
    rng = random.Random(7)
    calm = JitterBuffer(delay=0.04, min_delay=0.02, max_delay=0.2)
    shaky = JitterBuffer(delay=0.04, min_delay=0.02, max_delay=0.2)
    calm_arrivals = steady(list(range(500)))
    shaky_arrivals = [(0.005 + s * FRAME + rng.uniform(0, 0.06), pkt(s)) for s in range(500)]
    simulate(calm, calm_arrivals, 520)
    simulate(shaky, shaky_arrivals, 520)
    assert calm.delay == pytest.approx(0.02)  # no jitter: down to min_delay
    assert 0.06 < shaky.delay <= 0.2  # ~20 ms mean deviation: well above min
    # Uniform 0..60 ms jitter: the adaptive delay keeps losses to a few percent.
    assert shaky.late_dropped + shaky.missing < 25
    assert shaky.played > 470


def test_excess_depth_is_shed() -> None:
    jb = JitterBuffer(delay=0.04, min_delay=0.02, max_delay=0.2)
    # 30 frames arrive at once (a 600 ms burst), then the stream continues.
    arrivals = [(0.001, pkt(s)) for s in range(30)]
    arrivals += [(0.001 + k * FRAME, pkt(29 + k)) for k in range(1, 200)]
    simulate(jb, arrivals, 210)
    assert jb.stats.discarded > 0
    assert jb.depth * FRAME <= 0.2
    assert jb.late_dropped == 0
