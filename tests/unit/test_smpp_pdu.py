"""The SMPP 3.4 PDU codec: every PDU round-trips, exact bytes, streaming, malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carriers.sms.smpp.errors import SmppEncodeError, SmppError, SmppFramingError
from carriers.sms.smpp.pdu import (
    BadPdu,
    Bind,
    BindResp,
    CommandId,
    MessageIdResp,
    Pdu,
    PduStream,
    ShortMessage,
    Status,
    Tag,
    Tlv,
    decode,
    encode,
    tlv_int,
    tlv_str,
)
from carriers.sms.smpp.receipt import MessageState, is_receipt, parse_receipt

SUBMIT = ShortMessage(
    destination_addr="447700900123",
    short_message=b"Your appointment is at 10:00",
    source_addr="Clinic",
    source_addr_ton=5,
    source_addr_npi=0,
    registered_delivery=1,
    data_coding=0,
    tlvs=(
        Tlv.integer(Tag.SAR_MSG_REF_NUM, 0x1234),
        Tlv.integer(Tag.SAR_TOTAL_SEGMENTS, 2),
        Tlv.integer(Tag.SAR_SEGMENT_SEQNUM, 1),
        Tlv.integer(Tag.USER_MESSAGE_REFERENCE, 7),
        Tlv(Tag.MESSAGE_PAYLOAD, b"\x00\x01payload"),
        Tlv(0x1401, b"vendor"),  # unknown tag: kept raw
    ),
)

EVERY_PDU = [
    Pdu(CommandId.BIND_TRANSCEIVER, 1, 0, Bind("outdial", "secret", "OTP")),
    Pdu(CommandId.BIND_TRANSMITTER, 2, 0, Bind("outdial", "pw", addr_ton=1, addr_npi=1)),
    Pdu(CommandId.BIND_RECEIVER, 3, 0, Bind("outdial", address_range="^44")),
    Pdu(
        CommandId.BIND_TRANSCEIVER_RESP,
        1,
        0,
        BindResp("SMSC", (Tlv.integer(Tag.SC_INTERFACE_VERSION, 0x34),)),
    ),
    Pdu(CommandId.BIND_TRANSMITTER_RESP, 2, 0, BindResp("SMSC")),
    Pdu(CommandId.BIND_RECEIVER_RESP, 3, Status.ESME_RBINDFAIL, BindResp()),
    Pdu(CommandId.UNBIND, 4),
    Pdu(CommandId.UNBIND_RESP, 4),
    Pdu(CommandId.ENQUIRE_LINK, 5),
    Pdu(CommandId.ENQUIRE_LINK_RESP, 5),
    Pdu(CommandId.GENERIC_NACK, 6, Status.ESME_RINVCMDID),
    Pdu(CommandId.SUBMIT_SM, 7, 0, SUBMIT),
    Pdu(CommandId.SUBMIT_SM_RESP, 7, 0, MessageIdResp("a1b2c3")),
    Pdu(CommandId.SUBMIT_SM_RESP, 8, Status.ESME_RTHROTTLED, MessageIdResp()),
    Pdu(
        CommandId.DELIVER_SM,
        9,
        0,
        ShortMessage(
            "Clinic",
            b"id:a1b2c3 stat:DELIVRD",
            source_addr="447700900123",
            esm_class=0x04,
            tlvs=(
                Tlv.cstring(Tag.RECEIPTED_MESSAGE_ID, "a1b2c3"),
                Tlv.integer(Tag.MESSAGE_STATE, 2),
            ),
        ),
    ),
    Pdu(CommandId.DELIVER_SM_RESP, 9, 0, MessageIdResp()),
]


@pytest.mark.parametrize("pdu", EVERY_PDU, ids=lambda p: CommandId(p.command_id).name)
def test_every_pdu_round_trips(pdu: Pdu) -> None:
    data = encode(pdu)
    assert struct.unpack(">I", data[:4])[0] == len(data)
    assert decode(data) == pdu


def test_submit_sm_bytes_are_exactly_the_spec_layout() -> None:
    # SMPP 3.4 section 4.4.1, field by field.
    body = (
        b"\x00"  # service_type ""
        + b"\x05\x00"  # source_addr_ton (alphanumeric), source_addr_npi
        + b"Clinic\x00"
        + b"\x01\x01"  # dest_addr_ton (international), dest_addr_npi (E.164)
        + b"447700900123\x00"
        + b"\x00\x00\x00"  # esm_class, protocol_id, priority_flag
        + b"\x00\x00"  # schedule_delivery_time, validity_period (NULL)
        + b"\x01\x00\x00\x00"  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        + b"\x02hi"  # sm_length, short_message
        + b"\x02\x0c\x00\x02\x12\x34"  # sar_msg_ref_num = 0x1234
    )
    header = struct.pack(">IIII", 16 + len(body), 0x00000004, 0, 0x2A)
    message = ShortMessage(
        "447700900123",
        b"hi",
        source_addr="Clinic",
        source_addr_ton=5,
        registered_delivery=1,
        tlvs=(Tlv.integer(Tag.SAR_MSG_REF_NUM, 0x1234),),
    )
    assert encode(Pdu(CommandId.SUBMIT_SM, 0x2A, 0, message)) == header + body


def test_enquire_link_bytes() -> None:
    assert encode(Pdu(CommandId.ENQUIRE_LINK, 1)).hex() == "00000010000000150000000000000001"


def test_tlv_accessors() -> None:
    assert tlv_int(SUBMIT.tlvs, Tag.SAR_MSG_REF_NUM) == 0x1234
    assert tlv_int(SUBMIT.tlvs, Tag.SAR_TOTAL_SEGMENTS) == 2
    assert tlv_int(SUBMIT.tlvs, Tag.MESSAGE_STATE) is None
    assert tlv_str((Tlv.cstring(Tag.RECEIPTED_MESSAGE_ID, "x9"),), Tag.RECEIPTED_MESSAGE_ID) == "x9"


def test_stream_byte_by_byte_and_in_odd_chunks() -> None:
    wire = b"".join(encode(p) for p in EVERY_PDU)
    for size in (1, 3, 7, 16, 17, 100, len(wire)):
        stream = PduStream()
        got: list[Pdu | BadPdu] = []
        for i in range(0, len(wire), size):
            got += stream.feed(wire[i : i + size])
        assert got == EVERY_PDU
        assert stream.buffered == 0


def test_stream_keeps_a_partial_pdu() -> None:
    data = encode(EVERY_PDU[0])
    stream = PduStream()
    assert stream.feed(data[:-1]) == []
    assert stream.buffered == len(data) - 1
    assert stream.feed(data[-1:]) == [EVERY_PDU[0]]


@pytest.mark.parametrize("length", [0, 15, 1_000_000])
def test_bad_command_length_is_a_framing_error(length: int) -> None:
    with pytest.raises(SmppFramingError, match="command_length"):
        PduStream().feed(struct.pack(">IIII", length, 0x15, 0, 1))


def _bad(data: bytes) -> BadPdu:
    (item,) = PduStream().feed(data)
    assert isinstance(item, BadPdu)
    return item


def _with_body(command_id: int, body: bytes, sequence: int = 9) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, 0, sequence) + body


def test_unterminated_cstring_names_the_field() -> None:
    bad = _bad(_with_body(CommandId.SUBMIT_SM_RESP, b"abc"))
    assert bad.error.field == "message_id"
    assert "NUL" in str(bad.error)


def test_overlong_cstring_names_the_field() -> None:
    good = encode(Pdu(CommandId.SUBMIT_SM, 9, 0, ShortMessage("447700900123", b"x")))
    # Replace the destination with 30 digits: over the 20-character limit.
    data = good.replace(b"447700900123\0", b"4" * 30 + b"\0")
    data = struct.pack(">I", len(data)) + data[4:]
    bad = _bad(data)
    assert bad.error.field == "destination_addr"
    assert "longer than 20" in str(bad.error)
    assert bad.sequence == 9
    reply = bad.reply()
    assert reply.command_id == CommandId.SUBMIT_SM_RESP and reply.status == Status.ESME_RSYSERR


def test_short_message_running_past_the_body() -> None:
    good = encode(Pdu(CommandId.DELIVER_SM, 3, 0, ShortMessage("1", b"hello")))
    data = good[:-2]
    data = struct.pack(">I", len(data)) + data[4:]
    bad = _bad(data)
    assert bad.error.field == "short_message"
    assert bad.reply() == Pdu(CommandId.DELIVER_SM_RESP, 3, Status.ESME_RSYSERR, MessageIdResp())


def test_bad_tlv_length_names_the_tlv() -> None:
    good = encode(Pdu(CommandId.DELIVER_SM, 3, 0, ShortMessage("1", b"")))
    data = good + b"\x04\x27\x00\x02\x00\x02"  # message_state must be 1 octet
    data = struct.pack(">I", len(data)) + data[4:]
    bad = _bad(data)
    assert bad.error.field == "message_state"
    assert bad.error.status == Status.ESME_RINVPARLEN


def test_truncated_tlv_header() -> None:
    good = encode(Pdu(CommandId.DELIVER_SM, 3, 0, ShortMessage("1", b"")))
    data = good + b"\x04\x27"
    data = struct.pack(">I", len(data)) + data[4:]
    assert _bad(data).error.status == Status.ESME_RINVOPTPARSTREAM


def test_trailing_octets_after_an_empty_body() -> None:
    bad = _bad(_with_body(CommandId.ENQUIRE_LINK, b"\x00"))
    assert bad.error.field == "command_length"


def test_unknown_command_id_is_answered_with_generic_nack() -> None:
    bad = _bad(_with_body(0x00000103, b"whatever", sequence=77))  # data_sm: not supported
    assert bad.error.field == "command_id"
    assert bad.reply() == Pdu(CommandId.GENERIC_NACK, 77, Status.ESME_RINVCMDID)


def test_stream_goes_on_after_a_bad_pdu() -> None:
    wire = _with_body(0x00000103, b"x") + encode(EVERY_PDU[8])
    items = PduStream().feed(wire)
    assert isinstance(items[0], BadPdu) and items[1] == EVERY_PDU[8]


def test_empty_error_responses_are_accepted() -> None:
    data = struct.pack(">IIII", 16, CommandId.SUBMIT_SM_RESP, Status.ESME_RMSGQFUL, 4)
    assert decode(data) == Pdu(CommandId.SUBMIT_SM_RESP, 4, Status.ESME_RMSGQFUL, MessageIdResp())


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (ShortMessage("4" * 21), "destination_addr"),
        (ShortMessage("1", source_addr="x" * 21), "source_addr"),
        (ShortMessage("1", service_type="CMTXYZ"), "service_type"),
        (ShortMessage("1", short_message=b"x" * 255), "short_message"),
        (ShortMessage("1", esm_class=256), "esm_class"),
        (ShortMessage("1", source_addr="caf\u00e9"), "source_addr"),
    ],
)
def test_encode_refuses_what_does_not_fit(message: ShortMessage, field: str) -> None:
    with pytest.raises(SmppEncodeError) as info:
        encode(Pdu(CommandId.SUBMIT_SM, 1, 0, message))
    assert info.value.field == field


def test_encode_limits_bind_fields() -> None:
    with pytest.raises(SmppEncodeError, match="password"):
        encode(Pdu(CommandId.BIND_TRANSCEIVER, 1, 0, Bind("id", "123456789")))
    with pytest.raises(SmppEncodeError, match="sar_total_segments"):
        Tlv.integer(Tag.SAR_TOTAL_SEGMENTS, 256)


cstr = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=20)


@given(
    dest=cstr,
    src=cstr,
    text=st.binary(max_size=254),
    esm=st.integers(0, 255),
    dcs=st.integers(0, 255),
    seq=st.integers(1, 0x7FFFFFFF),
    raw_tlvs=st.lists(st.tuples(st.integers(0x1400, 0x3FFF), st.binary(max_size=40)), max_size=4),
)
def test_hypothesis_short_message_round_trip(
    dest: str,
    src: str,
    text: bytes,
    esm: int,
    dcs: int,
    seq: int,
    raw_tlvs: list[tuple[int, bytes]],
) -> None:
    message = ShortMessage(
        dest,
        text,
        source_addr=src,
        esm_class=esm,
        data_coding=dcs,
        tlvs=tuple(Tlv(t, v) for t, v in raw_tlvs),
    )
    for command in (CommandId.SUBMIT_SM, CommandId.DELIVER_SM):
        pdu = Pdu(command, seq, 0, message)
        assert decode(encode(pdu)) == pdu


@given(st.binary(max_size=300))
def test_fuzz_only_smpp_errors_escape(data: bytes) -> None:
    stream = PduStream()
    try:
        stream.feed(data)
        stream.feed(struct.pack(">I", 16 + len(data)) + b"\x00\x00\x00\x05" + bytes(8) + data)
    except SmppError:
        pass


@given(st.binary(max_size=200))
def test_fuzz_bodies_of_every_command(body: bytes) -> None:
    for command in CommandId:
        try:
            PduStream().feed(_with_body(command, body))
        except SmppError:
            pass


# --- delivery receipts ------------------------------------------------------------------


def test_receipt_text_form() -> None:
    text = (
        b"id:0123456789 sub:001 dlvrd:001 submit date:2612031050 done date:2612031051 "
        b"stat:DELIVRD err:000 text:Your appointment is"
    )
    sm = ShortMessage("Clinic", text, source_addr="447700900123", esm_class=0x04)
    assert is_receipt(sm)
    receipt = parse_receipt(sm)
    assert receipt is not None
    assert receipt.message_id == "0123456789"
    assert receipt.state is MessageState.DELIVERED
    assert (receipt.stat, receipt.error) == ("DELIVRD", "000")
    assert (receipt.submitted, receipt.done) == ("2612031050", "2612031051")
    assert (receipt.submitted_count, receipt.delivered_count) == ("001", "001")
    assert receipt.text == "Your appointment is"


def test_receipt_tlvs_win_over_the_text() -> None:
    sm = ShortMessage(
        "Clinic",
        b"id:291 sub:001 dlvrd:000 submit date:2612031050 done date:2612031051 stat:DELIVRD err:0",
        esm_class=0x04,
        tlvs=(
            Tlv.cstring(Tag.RECEIPTED_MESSAGE_ID, "123"),
            Tlv.integer(Tag.MESSAGE_STATE, MessageState.UNDELIVERABLE),
        ),
    )
    receipt = parse_receipt(sm)
    assert receipt is not None
    assert receipt.message_id == "123"  # the text id was decimal, the TLV hex
    assert receipt.state is MessageState.UNDELIVERABLE


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("UNDELIV", MessageState.UNDELIVERABLE),
        ("EXPIRED", MessageState.EXPIRED),
        ("REJECTD", MessageState.REJECTED),
        ("ACCEPTD", MessageState.ACCEPTED),
        ("bogus", None),
    ],
)
def test_receipt_states(stat: str, state: MessageState | None) -> None:
    sm = ShortMessage("x", f"id:9 stat:{stat} err:001".encode(), esm_class=0x04)
    receipt = parse_receipt(sm)
    assert receipt is not None and receipt.state is state


def test_mobile_originated_is_not_a_receipt() -> None:
    assert not is_receipt(ShortMessage("Clinic", b"STOP", source_addr="447700900123"))
    assert parse_receipt(ShortMessage("x", b"no id here", esm_class=0x04)) is None


def test_receipted_message_id_without_nul_is_accepted_but_not_overlong() -> None:
    base = encode(Pdu(CommandId.DELIVER_SM, 3, 0, ShortMessage("1", b"", esm_class=4)))
    lenient = base + b"\x00\x1e\x00\x04ab12"
    lenient = struct.pack(">I", len(lenient)) + lenient[4:]
    pdu = decode(lenient)
    assert isinstance(pdu.body, ShortMessage)
    assert tlv_str(pdu.body.tlvs, Tag.RECEIPTED_MESSAGE_ID) == "ab12"
    overlong = base + b"\x00\x1e\x00\x42" + b"a" * 65 + b"\0"
    overlong = struct.pack(">I", len(overlong)) + overlong[4:]
    assert _bad(overlong).error.field == "receipted_message_id"
