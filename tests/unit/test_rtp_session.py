"""RtpSession: two sessions wired together in memory on a float clock."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from carriers.rtp.errors import RtpError
from carriers.rtp.packet import RtpPacket, build_receiver_report, build_rtp, parse_rtp
from carriers.rtp.session import RtpSession
from dsp.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

A_ADDR = ("192.0.2.10", 40000)  # documentation addresses: nothing is sent anywhere
B_ADDR = ("192.0.2.20", 50000)
DTMF_PT = 101
Pcm = npt.NDArray[np.int16]


def make(
    codec: str = "PCMU",
    *,
    seed: int = 1,
    remote: tuple[str, int] | None = B_ADDR,
    dtmf: int | None = DTMF_PT,
    symmetric: bool = True,
) -> RtpSession:
    return RtpSession(
        local_port=40000,
        remote=remote,
        payload_type={"PCMU": 0, "PCMA": 8}[codec],
        codec=codec,
        dtmf_payload_type=dtmf,
        rng=random.Random(seed),
        symmetric=symmetric,
    )


def tone(freq: float, frames: int, amplitude: float = 8000.0) -> Pcm:
    t = np.arange(frames * 160) / 8000.0
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def dominant_frequency(signal: npt.NDArray[np.int16]) -> tuple[float, float]:
    """(peak frequency in Hz, share of the energy within 10 Hz of the peak)."""
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64) * np.hanning(len(signal)))) ** 2
    peak = int(np.argmax(spectrum))
    hz_per_bin = 8000.0 / len(signal)
    width = int(10 / hz_per_bin)
    share = spectrum[max(0, peak - width) : peak + width + 1].sum() / spectrum.sum()
    return peak * hz_per_bin, float(share)


Source = Callable[[int], Pcm | None]


def run_pair(
    a: RtpSession, b: RtpSession, ticks: int, a_out: Source, b_out: Source, latency: float = 0.005
) -> tuple[list[Pcm], list[Pcm]]:
    """Tick both sessions every 20 ms; datagrams arrive ``latency`` later."""
    now = 0.0
    in_flight: list[tuple[float, RtpSession, bytes, tuple[str, int]]] = []
    got_a: list[Pcm] = []
    got_b: list[Pcm] = []
    for k in range(ticks):
        for item in [x for x in in_flight if x[0] <= now]:
            in_flight.remove(item)
            item[1].receive(item[2], item[3], item[0])
        frame_a, to_b = a.tick(now, a_out(k))
        frame_b, to_a = b.tick(now, b_out(k))
        in_flight += [(now + latency, b, d, A_ADDR) for d in to_b]
        in_flight += [(now + latency, a, d, B_ADDR) for d in to_a]
        got_a.append(frame_a)
        got_b.append(frame_b)
        now += 0.02
    return got_a, got_b


@pytest.mark.parametrize(
    ("codec", "encode", "decode"),
    [("PCMU", ulaw_encode, ulaw_decode), ("PCMA", alaw_encode, alaw_decode)],
)
def test_tone_exchange_through_g711(
    codec: str,
    encode: Callable[[Pcm], npt.NDArray[np.uint8]],
    decode: Callable[[npt.NDArray[np.uint8]], Pcm],
) -> None:
    a = make(codec, seed=1, remote=B_ADDR)
    b = make(codec, seed=2, remote=A_ADDR)
    frames = 100
    sent_ab = tone(1000, frames)
    sent_ba = tone(697, frames)
    got_a, got_b = run_pair(
        a,
        b,
        frames,
        lambda k: sent_ab[k * 160 : (k + 1) * 160],
        lambda k: sent_ba[k * 160 : (k + 1) * 160],
    )
    for received, sent, freq in ((got_b, sent_ab, 1000.0), (got_a, sent_ba, 697.0)):
        assert all(f.shape == (160,) and f.dtype == np.int16 for f in received)
        audio = np.concatenate(received)
        start = int(np.flatnonzero(audio)[0]) // 160
        assert 1 <= start <= 4  # prebuffer of a few frames
        played = audio[start * 160 :]
        peak, share = dominant_frequency(played)
        assert abs(peak - freq) < 2
        assert share > 0.99
        # Bit-exact: every played frame is the G.711 round trip of a sent frame.
        expected = decode(encode(sent[: len(played)]))
        assert np.array_equal(played, expected)
    assert a.stats.sent == b.stats.sent == frames
    assert a.stats.lost == b.stats.lost == 0
    assert a.stats.bytes_sent == frames * 160


def test_packets_header_fields_and_comfort_silence() -> None:
    for codec, silence in (("PCMU", 0xFF), ("PCMA", 0xD5)):
        s = make(codec, seed=9)
        packets = [parse_rtp(s.tick(k * 0.02, None)[1][0]) for k in range(4)]
        assert [p.payload for p in packets] == [bytes([silence]) * 160] * 4
        assert [p.marker for p in packets] == [True, False, False, False]
        assert {p.ssrc for p in packets} == {s.ssrc}
        assert {p.payload_type for p in packets} == {s.payload_type}
        first = packets[0]
        assert [p.sequence for p in packets] == [(first.sequence + i) & 0xFFFF for i in range(4)]
        assert [p.timestamp for p in packets] == [
            (first.timestamp + 160 * i) & 0xFFFFFFFF for i in range(4)
        ]


def test_random_initial_values_come_from_the_injected_rng() -> None:
    def first_header(seed: int) -> tuple[int, int, int]:
        p = parse_rtp(make(seed=seed).tick(0.0, None)[1][0])
        return p.ssrc, p.sequence, p.timestamp

    assert first_header(3) == first_header(3)
    assert first_header(3) != first_header(4)


def test_timestamp_runs_while_nothing_can_be_sent() -> None:
    s = make(remote=None)
    for k in range(3):
        frame, datagrams = s.tick(k * 0.02, tone(1000, 1))
        assert datagrams == []
        assert not frame.any()
    later = make(remote=B_ADDR)  # same seed: same initial sequence and timestamp
    reference = parse_rtp(later.tick(0.0, None)[1][0])
    s.set_remote(B_ADDR)
    p = parse_rtp(s.tick(0.06, None)[1][0])
    assert p.timestamp == (reference.timestamp + 3 * 160) & 0xFFFFFFFF
    assert p.sequence == reference.sequence  # no packet was sent before
    assert s.stats.sent == 1


def audio_packet(seq: int, *, ssrc: int = 77, pt: int = 0, ts: int | None = None) -> bytes:
    stamp = seq * 160 if ts is None else ts
    return build_rtp(RtpPacket(pt, seq & 0xFFFF, stamp & 0xFFFFFFFF, ssrc, b"\xff" * 160))


def test_symmetric_latching() -> None:
    sdp = ("192.0.2.1", 4000)
    nat = ("198.51.100.7", 5000)
    other = ("203.0.113.9", 6000)
    s = make(remote=sdp)
    s.receive(audio_packet(1), nat, 0.0)
    assert s.remote == nat  # latched on the first valid packet
    s.receive(audio_packet(2), other, 0.02)
    assert s.remote == nat  # same SSRC from elsewhere: latch only once
    s.receive(audio_packet(3, pt=96), ("192.0.2.99", 1), 0.03)
    assert s.remote == nat  # invalid packets never latch
    s.receive(audio_packet(500, ssrc=88), other, 0.04)
    assert s.remote == other  # a new SSRC latches again
    s.receive(audio_packet(4), nat, 0.05)
    assert s.remote == other  # the old SSRC's packets still in flight do not
    s.set_remote(sdp)  # re-INVITE
    assert s.remote == sdp
    s.receive(audio_packet(501, ssrc=88), other, 0.06)
    assert s.remote == other
    datagram = s.tick(0.08, None)[1]
    assert len(datagram) == 1


def test_no_latching_when_not_symmetric() -> None:
    sdp = ("192.0.2.1", 4000)
    s = make(remote=sdp, symmetric=False)
    s.receive(audio_packet(1), ("198.51.100.7", 5000), 0.0)
    s.receive(audio_packet(9, ssrc=5), ("198.51.100.8", 5002), 0.0)
    assert s.remote == sdp
    assert s.stats.received == 2


def test_wrong_payload_type_rtcp_and_garbage_are_not_media() -> None:
    s = make()
    s.receive(audio_packet(1, pt=8), A_ADDR, 0.0)  # PCMA on a PCMU session
    s.receive(audio_packet(2, pt=13), A_ADDR, 0.0)  # comfort noise, not negotiated
    s.receive(b"\x80\x00\x01", A_ADDR, 0.0)
    s.receive(b"\x00" * 20, A_ADDR, 0.0)
    s.receive(build_receiver_report(5, cname="x"), A_ADDR, 0.0)
    assert s.stats.received == 0
    assert s.stats.discarded == 4
    assert s.stats.rtcp_received == 1
    assert s.remote == B_ADDR


def test_loss_statistics_hand_computed() -> None:
    s = make()
    # Sent 100..119; 103, 110 and 111 lost; 105 duplicated; 108 before 107.
    order = [100, 101, 102, 104, 105, 105, 106, 108, 107, 109, 112, 113]
    order += [114, 115, 116, 117, 118, 119]
    for i, seq in enumerate(order):
        s.receive(audio_packet(seq), A_ADDR, i * 0.02)
    # RFC 3550 A.3: expected = 119 - 100 + 1 = 20; received = 18 (with the
    # duplicate) ; lost = 20 - 18 = 2 (a duplicate hides a loss, by design).
    assert s.stats.received == 18
    assert s.stats.lost == 2
    assert s.stats.bytes_received == 18 * 160


def test_loss_statistics_across_sequence_wrap() -> None:
    s = make()
    seqs = [65530, 65531, 65533, 65534, 65535, 0, 2, 3, 4]  # 65532 and 1 lost
    for i, seq in enumerate(seqs):
        s.receive(audio_packet(seq), A_ADDR, i * 0.02)
    assert s.stats.received == 9
    assert s.stats.lost == 2


def test_interarrival_jitter_hand_computed() -> None:
    s = make()
    # Packet i (timestamp 160 i) arrives at 20 i ms, 10 ms later for odd i:
    # every transit difference is 10 ms = 80 timestamp units, so after n
    # differences RFC 3550 A.8 gives J = 80 (1 - (15/16)^n) units.
    for i in range(20):
        s.receive(audio_packet(i), A_ADDR, i * 0.02 + (0.01 if i % 2 else 0.0))
    n = 19
    assert s.stats.jitter_ms == pytest.approx(10 * (1 - (15 / 16) ** n), rel=1e-9)
    assert s.stats.lost == 0


def test_jitter_is_zero_for_a_perfect_stream_with_timestamp_wrap() -> None:
    s = make()
    for i in range(10):
        s.receive(audio_packet(i, ts=2**32 - 480 + 160 * i), A_ADDR, 5.0 + i * 0.02)
    assert s.stats.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_dtmf_between_sessions() -> None:
    a = make(seed=1, remote=B_ADDR)
    b = make(seed=2, remote=A_ADDR)
    a.send_dtmf("123")
    assert a.dtmf_sending
    sent: list[RtpPacket] = []

    now = 0.0
    for _ in range(60):
        _, datagrams = a.tick(now, tone(1000, 1))
        sent += [parse_rtp(d) for d in datagrams]
        for d in datagrams:
            b.receive(d, A_ADDR, now + 0.005)
        b.tick(now, None)
        now += 0.02
    assert b.dtmf_received == "123"
    assert [e.duration_ms for e in b.dtmf_events] == [100, 100, 100]
    assert not a.dtmf_sending
    # Events replaced audio: 7 event packets per digit, one packet per tick.
    assert sum(p.payload_type == DTMF_PT for p in sent) == 21
    assert len(sent) == 60
    # RFC 4733 2.3.5: every packet of an event carries the timestamp of the
    # tick where the event began; audio timestamps run on one per tick.
    ts0 = sent[0].timestamp
    for k, p in enumerate(sent):
        if p.payload_type == DTMF_PT:
            assert p.timestamp == (ts0 + 160 * 10 * (k // 10)) & 0xFFFFFFFF
            assert p.marker == (k % 10 == 0)
        else:
            assert p.timestamp == (ts0 + 160 * k) & 0xFFFFFFFF
            assert k % 10 >= 7 or k >= 30  # audio only in the gaps and after
    # The shared sequence space has no gaps, so nothing reads as lost.
    assert b.stats.lost == 0
    assert b.stats.received == 60


def test_send_dtmf_needs_a_negotiated_payload_type() -> None:
    with pytest.raises(RtpError):
        make(dtmf=None).send_dtmf("1")


def test_unsupported_codec_and_bad_frames() -> None:
    with pytest.raises(RtpError):
        RtpSession(
            local_port=1,
            remote=None,
            payload_type=18,
            codec="G729",
            dtmf_payload_type=None,
            rng=random.Random(1),
        )
    with pytest.raises(ValueError):
        make().tick(0.0, np.zeros(80, dtype=np.int16))


def test_batch_tick_matches_single_session_tick() -> None:
    def sessions() -> list[RtpSession]:
        return [make(codec, seed=i) for i, codec in enumerate(["PCMU", "PCMA", "PCMU", "PCMA"])]

    single, batch = sessions(), sessions()
    rng = np.random.default_rng(5)
    for k in range(30):
        now = k * 0.02
        for i in range(4):
            if k % 7 != i:  # some frames lost
                pt = single[i].payload_type
                payload = rng.integers(0, 256, 160, dtype=np.uint8).tobytes()
                data = build_rtp(RtpPacket(pt, k, k * 160, 1000 + i, payload))
                single[i].receive(data, A_ADDR, now - 0.01)
                batch[i].receive(data, A_ADDR, now - 0.01)
        outgoing: list[Pcm | None] = [
            rng.integers(-20000, 20000, 160).astype(np.int16) for _ in range(4)
        ]
        outgoing[k % 4] = None
        frames = RtpSession.receive_frames(batch, now)
        packets = RtpSession.send_frames(batch, outgoing)
        for i in range(4):
            frame, datagrams = single[i].tick(now, outgoing[i])
            assert np.array_equal(frames[i], frame)
            assert packets[i] == datagrams
