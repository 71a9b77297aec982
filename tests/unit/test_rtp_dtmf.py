"""RFC 4733 telephone-events: payload codec, sender schedule, receiver de-duplication."""

from __future__ import annotations

import itertools

import pytest

from carriers.rtp.dtmf import (
    DIGITS,
    DtmfEvent,
    DtmfReceiver,
    DtmfSender,
    decode_event_payload,
    digit_to_event,
    encode_event_payload,
    event_to_digit,
)
from carriers.rtp.errors import RtpBuildError, RtpParseError
from carriers.rtp.packet import RtpPacket, build_rtp, parse_rtp

PT = 101


def transmit(sender: DtmfSender, *, ts: int = 1000, seq: int = 0) -> list[RtpPacket]:
    """Run the sender tick by tick as a session would: audio timestamp +160 per tick,
    every packet of an event stamped with the event's start timestamp."""
    packets = []
    event_ts = ts
    while sender.busy:
        item = sender.next_payload()
        if item is not None:
            payload, marker, new_timestamp = item
            if new_timestamp:
                event_ts = ts
            packets.append(RtpPacket(PT, seq & 0xFFFF, event_ts, 7, payload, marker))
            seq += 1
        ts += 160
    return packets


def receive_all(packets: list[RtpPacket]) -> list[DtmfEvent]:
    receiver = DtmfReceiver()
    events = []
    for packet in packets:
        # Through the wire format too, as the session sees them.
        event = receiver.on_packet(parse_rtp(build_rtp(packet)))
        if event is not None:
            events.append(event)
    return events + receiver.flush()


def test_payload_layout() -> None:
    # RFC 4733 2.3: event 5, E=1, R=0, volume 10, duration 800.
    assert encode_event_payload(5, True, 10, 800) == bytes([5, 0x8A, 0x03, 0x20])
    assert encode_event_payload(11, False, 63, 65535) == bytes([11, 0x3F, 0xFF, 0xFF])
    assert decode_event_payload(bytes([5, 0x8A, 0x03, 0x20])) == (5, True, 10, 800)
    # The R bit is ignored by receivers.
    assert decode_event_payload(bytes([1, 0xC7, 0x00, 0xA0])) == (1, True, 7, 160)
    assert decode_event_payload(bytes([1, 0x47, 0x00, 0xA0])) == (1, False, 7, 160)


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x8a\x00"])
def test_short_payload_raises_parse_error(payload: bytes) -> None:
    with pytest.raises(RtpParseError):
        decode_event_payload(payload)


@pytest.mark.parametrize(("event", "volume", "duration"), [(256, 0, 0), (0, 64, 0), (0, 0, 65536)])
def test_encode_rejects_out_of_range(event: int, volume: int, duration: int) -> None:
    with pytest.raises(RtpBuildError):
        encode_event_payload(event, False, volume, duration)


def test_digit_mapping() -> None:
    assert [digit_to_event(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert digit_to_event("a") == 12
    assert event_to_digit(10) == "*"
    assert event_to_digit(11) == "#"
    assert "".join(event_to_digit(e) for e in range(16)) == DIGITS
    for bad in ("E", "", "12", " "):
        with pytest.raises(ValueError):
            digit_to_event(bad)
    with pytest.raises(ValueError):
        event_to_digit(16)


def test_sender_schedule_for_one_digit() -> None:
    sender = DtmfSender(volume=10)
    sender.queue("5")
    assert sender.busy
    ticks = []
    while sender.busy:
        ticks.append(sender.next_payload())
    # 100 ms tone: 5 packets of growing duration, then 2 more end packets, then 60 ms gap.
    expected = [
        (encode_event_payload(5, False, 10, 160), True, True),
        (encode_event_payload(5, False, 10, 320), False, False),
        (encode_event_payload(5, False, 10, 480), False, False),
        (encode_event_payload(5, False, 10, 640), False, False),
        (encode_event_payload(5, True, 10, 800), False, False),
        (encode_event_payload(5, True, 10, 800), False, False),
        (encode_event_payload(5, True, 10, 800), False, False),
        None,
        None,
        None,
    ]
    assert ticks == expected
    assert sender.next_payload() is None
    assert not sender.busy


def test_sender_duration_not_multiple_of_a_frame() -> None:
    sender = DtmfSender()
    sender.queue("1", duration_ms=50, gap_ms=0)
    durations = []
    while sender.busy:
        item = sender.next_payload()
        assert item is not None
        durations.append(decode_event_payload(item[0])[3])
    assert durations == [160, 320, 400, 400, 400]


def test_sender_validates_before_queueing() -> None:
    sender = DtmfSender()
    with pytest.raises(ValueError):
        sender.queue("12X4")
    assert not sender.busy
    with pytest.raises(ValueError):
        sender.queue("1", duration_ms=0)


def test_round_trip_reports_each_digit_once() -> None:
    sender = DtmfSender(volume=12)
    sender.queue("159#")
    sender.queue("*0", duration_ms=200, gap_ms=40)
    packets = transmit(sender)
    # Each digit: its tone packets plus 2 redundant end packets.
    assert len(packets) == 4 * 7 + 2 * 12
    events = receive_all(packets)
    assert "".join(e.digit for e in events) == "159#*0"
    assert [e.duration_ms for e in events] == [100, 100, 100, 100, 200, 200]
    assert {e.volume for e in events} == {12}
    # Distinct start timestamps, 10 ticks (7 packets + 3 gap ticks) apart.
    starts = [e.start_timestamp for e in events[:4]]
    assert [b - a for a, b in itertools.pairwise(starts)] == [1600, 1600, 1600]
    assert starts[0] == 1000


def test_lost_start_packets_still_report_the_digit() -> None:
    sender = DtmfSender()
    sender.queue("73")
    packets = transmit(sender)
    survivors = packets[2:7] + packets[9:]  # the first two packets of each digit lost
    events = receive_all(survivors)
    assert [(e.digit, e.duration_ms) for e in events] == [("7", 100), ("3", 100)]


def test_all_end_packets_lost_reported_when_next_event_starts() -> None:
    sender = DtmfSender()
    sender.queue("48")
    packets = transmit(sender)
    # Drop the three end packets of the first digit.
    survivors = packets[:4] + packets[7:]
    receiver = DtmfReceiver()
    results = [receiver.on_packet(p) for p in survivors]
    reported = [r for r in results if r is not None]
    assert [(e.digit, e.duration_ms) for e in reported] == [("4", 80), ("8", 100)]
    # "4" came out with the first packet of "8", which is the 5th survivor.
    assert results[4] is not None and results[4].digit == "4"


def test_reordered_and_duplicated_packets() -> None:
    sender = DtmfSender()
    sender.queue("2")
    packets = transmit(sender)
    shuffled = [
        packets[0],
        packets[2],
        packets[1],
        packets[4],
        packets[3],
        packets[4],
        *packets[5:],
    ]
    events = receive_all(shuffled + packets)  # and the whole event retransmitted
    assert [(e.digit, e.duration_ms) for e in events] == [("2", 100)]


def test_one_packet_completing_two_events_reports_both_in_order() -> None:
    sender = DtmfSender()
    sender.queue("12")
    packets = transmit(sender)
    # "1" without its end, then only the end packets of "2".
    survivors = packets[:3] + packets[11:]
    receiver = DtmfReceiver()
    results = [receiver.on_packet(p) for p in survivors]
    digits = [r.digit for r in results if r is not None]
    assert digits == ["1", "2"]


def test_flush_reports_an_unfinished_event() -> None:
    sender = DtmfSender()
    sender.queue("9")
    receiver = DtmfReceiver()
    for packet in transmit(sender)[:3]:
        assert receiver.on_packet(packet) is None
    assert [(e.digit, e.duration_ms) for e in receiver.flush()] == [("9", 60)]
    assert receiver.flush() == []


def test_non_dtmf_events_and_garbage_are_ignored() -> None:
    receiver = DtmfReceiver()
    flash = RtpPacket(PT, 1, 500, 7, encode_event_payload(16, True, 10, 800))
    short = RtpPacket(PT, 2, 600, 7, b"\x01")
    assert receiver.on_packet(flash) is None
    assert receiver.on_packet(short) is None
    assert receiver.flush() == []
