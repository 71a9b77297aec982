"""Concatenated mobile-originated messages (carriers/sms/reassembly.py)."""

from __future__ import annotations

from carriers.sms.encoding import concatenation_udh, decode_ucs2, encode_ucs2
from carriers.sms.reassembly import Reassembler, user_text_of
from carriers.sms.smpp.pdu import ShortMessage, Tag, Tlv


def udh_part(ref: int, total: int, seq: int, text: bytes, src: str = "12125550100",
             coding: int = 0) -> ShortMessage:  # fmt: skip
    return ShortMessage(destination_addr="15550100", source_addr=src, esm_class=0x40,
                        data_coding=coding,
                        short_message=concatenation_udh(ref, total, seq) + text)  # fmt: skip


def sar_part(ref: int, total: int, seq: int, text: bytes) -> ShortMessage:
    tlvs = (Tlv.integer(Tag.SAR_MSG_REF_NUM, ref), Tlv.integer(Tag.SAR_TOTAL_SEGMENTS, total),
            Tlv.integer(Tag.SAR_SEGMENT_SEQNUM, seq))  # fmt: skip
    return ShortMessage(destination_addr="15550100", source_addr="12125550100",
                        short_message=text, tlvs=tlvs)  # fmt: skip


def test_segments_in_any_order_once_each() -> None:
    r = Reassembler(timeout=60)
    assert r.add(udh_part(5, 3, 3, b"three"), 0.0) is None
    assert r.add(udh_part(5, 3, 1, b"one "), 0.1) is None
    assert r.add(udh_part(5, 3, 1, b"ONE AGAIN "), 0.2) is None  # a retransmission: ignored
    whole = r.add(udh_part(5, 3, 2, b"two "), 0.3)
    assert whole is not None and whole.message.short_message == b"one two three"
    assert whole.segments == 3 and whole.missing == ()
    assert whole.message.esm_class & 0x40 == 0 and len(r) == 0


def test_references_senders_and_codings_are_kept_apart() -> None:
    r = Reassembler()
    assert r.add(udh_part(1, 2, 1, b"a1"), 0) is None
    assert r.add(udh_part(1, 2, 1, b"b1", src="12125550199"), 0) is None
    assert r.add(udh_part(2, 2, 2, b"c2"), 0) is None
    done = r.add(udh_part(1, 2, 2, b"a2"), 0)
    assert done is not None and done.message.short_message == b"a1a2"
    assert done.message.source_addr == "12125550100" and len(r) == 2


def test_ucs2_with_a_surrogate_pair_across_segments() -> None:
    data = encode_ucs2("Hi \U0001f600 there")
    cut = 8  # inside the pair: its high surrogate ends the first segment
    r = Reassembler()
    assert r.add(udh_part(9, 2, 1, data[:cut], coding=8), 0) is None
    whole = r.add(udh_part(9, 2, 2, data[cut:], coding=8), 0)
    assert whole is not None and decode_ucs2(whole.message.short_message) == "Hi \U0001f600 there"


def test_sar_tlvs_and_a_16_bit_reference() -> None:
    r = Reassembler()
    assert r.add(sar_part(0x1234, 2, 2, b"world"), 0) is None
    whole = r.add(sar_part(0x1234, 2, 1, b"hello "), 0)
    assert whole is not None and whole.message.short_message == b"hello world"
    ie16 = bytes((6, 0x08, 4, 0x12, 0x34, 2, 1))  # UDH with the 16-bit reference IE
    first = ShortMessage(destination_addr="1", source_addr="2", esm_class=0x40,
                         short_message=ie16 + b"ab")  # fmt: skip
    assert r.add(first, 0) is None
    second = ShortMessage(destination_addr="1", source_addr="2", esm_class=0x40,
                          short_message=bytes((6, 0x08, 4, 0x12, 0x34, 2, 2)) + b"cd")  # fmt: skip
    done = r.add(second, 0)
    assert done is not None and done.message.short_message == b"abcd"


def test_a_plain_message_and_odd_headers_pass_through() -> None:
    r = Reassembler()
    plain = ShortMessage(destination_addr="1", source_addr="2", short_message=b"STOP")
    got = r.add(plain, 0)
    assert got is not None and got.message.short_message == b"STOP" and got.segments == 1
    one_of_one = r.add(udh_part(3, 1, 1, b"alone"), 0)
    assert one_of_one is not None and one_of_one.message.short_message == b"alone"
    other_ie = ShortMessage(destination_addr="1", source_addr="2", esm_class=0x40,
                            short_message=bytes((3, 0x24, 1, 0)) + b"text")  # fmt: skip
    got = r.add(other_ie, 0)  # a UDH without concatenation: the text after it
    assert got is not None and got.message.short_message == b"text"
    broken = ShortMessage(destination_addr="1", source_addr="2", esm_class=0x40,
                          short_message=bytes((9, 0, 3)))  # fmt: skip
    got = r.add(broken, 0)  # a UDH longer than the data: kept, never a crash
    assert got is not None and len(r) == 0
    payload = ShortMessage(destination_addr="1", source_addr="2",
                           tlvs=(Tlv(Tag.MESSAGE_PAYLOAD, b"long text in a TLV"),))  # fmt: skip
    assert user_text_of(payload) == b"long text in a TLV"
    got = r.add(payload, 0)
    assert got is not None and got.message.short_message == b"long text in a TLV"


def test_overdue_messages_come_back_with_what_arrived() -> None:
    r = Reassembler(timeout=10)
    r.add(udh_part(4, 3, 1, b"first "), 100.0)
    r.add(udh_part(4, 3, 3, b"third"), 104.0)
    r.add(udh_part(5, 2, 1, b"later"), 105.0)
    assert r.next_deadline() == 110.0
    assert r.expire(109.9) == []
    (late,) = r.expire(110.0)
    assert late.message.short_message == b"first third"
    assert late.segments == 2 and late.missing == (2,)
    (rest,) = r.drain()
    assert rest.message.short_message == b"later" and len(r) == 0 and r.next_deadline() is None


def test_a_flood_of_unfinished_parts_is_bounded() -> None:
    r = Reassembler(max_pending=3)
    for ref in range(10):
        r.add(udh_part(ref, 2, 1, b"x"), float(ref))
    assert len(r) == 3
    assert r.add(udh_part(9, 2, 2, b"y"), 10.0) is not None  # the newest are kept
    let_go = r.expire(10.0)  # the oldest come out as they are: never dropped
    assert [m.missing for m in let_go] == [(2,)] * 7 and r.next_deadline() is not None
