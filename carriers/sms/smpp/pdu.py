"""A sans-IO SMPP 3.4 PDU codec: header, the bodies the client needs, TLVs, framing.

`encode(pdu)` gives the wire bytes; `PduStream.feed(chunk)` takes bytes as they
arrive, in chunks of any size, and returns every whole PDU they complete. A PDU
whose framing is sound but whose body is bad comes back as a `BadPdu` carrying
the error and the status to answer it with (the stream goes on); a bad
command_length cannot be resynchronised and raises `SmppFramingError`.

Field names, sizes and values follow the SMPP v3.4 specification (issue 1.2),
sections 3.2 (header), 4 (PDU bodies) and 5.3 (TLVs). Message text is opaque
here: `short_message` is bytes with its `data_coding` and `esm_class`, encoded
by the caller.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from carriers.sms.smpp.errors import SmppDecodeError, SmppEncodeError, SmppFramingError

HEADER = struct.Struct(">IIII")
HEADER_LEN = HEADER.size
MAX_PDU_LEN = 70_000
"""Largest command_length accepted; room for a 64 KiB message_payload TLV."""

RESPONSE_BIT = 0x80000000


class CommandId(enum.IntEnum):
    """SMPP 3.4 section 5.1.2.1."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015


class Status(enum.IntEnum):
    """The command_status values this client acts on (SMPP 3.4 section 5.1.3)."""

    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVESMCLASS = 0x00000043
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF


RETRYABLE = frozenset({Status.ESME_RMSGQFUL, Status.ESME_RTHROTTLED})
"""Statuses that mean "not now": the caller backs off and submits again."""


def status_name(status: int) -> str:
    """`ESME_RTHROTTLED` for 0x58; `0x000000AB` for a value not in the table."""
    try:
        return Status(status).name
    except ValueError:
        return f"0x{status:08X}"


class Tag(enum.IntEnum):
    """The TLV tags this codec knows by name (SMPP 3.4 section 5.3.2)."""

    RECEIPTED_MESSAGE_ID = 0x001E
    USER_MESSAGE_REFERENCE = 0x0204
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    MESSAGE_PAYLOAD = 0x0424
    MESSAGE_STATE = 0x0427


# Fixed value sizes of the integer TLVs, and the C-string TLVs' maximum sizes
# (terminating NUL included), section 5.3.2.
_TLV_INT_SIZE = {
    Tag.USER_MESSAGE_REFERENCE: 2,
    Tag.SAR_MSG_REF_NUM: 2,
    Tag.SAR_TOTAL_SEGMENTS: 1,
    Tag.SAR_SEGMENT_SEQNUM: 1,
    Tag.SC_INTERFACE_VERSION: 1,
    Tag.MESSAGE_STATE: 1,
}
_TLV_CSTRING_MAX = {Tag.RECEIPTED_MESSAGE_ID: 65}


@dataclass(frozen=True, slots=True)
class Tlv:
    """One optional parameter; the value is kept as raw bytes so unknown tags survive."""

    tag: int
    value: bytes

    @classmethod
    def integer(cls, tag: int, value: int) -> Tlv:
        size = _TLV_INT_SIZE.get(Tag(tag)) if tag in Tag._value2member_map_ else None
        if size is None:
            raise SmppEncodeError(f"TLV 0x{tag:04X} is not an integer TLV", field=_tag_name(tag))
        try:
            return cls(tag, value.to_bytes(size, "big"))
        except OverflowError:
            raise SmppEncodeError(
                f"{_tag_name(tag)} = {value} does not fit {size} octet(s)", field=_tag_name(tag)
            ) from None

    @classmethod
    def cstring(cls, tag: int, value: str) -> Tlv:
        return cls(tag, value.encode("ascii") + b"\0")


def _tag_name(tag: int) -> str:
    try:
        return Tag(tag).name.lower()
    except ValueError:
        return f"tlv 0x{tag:04X}"


def find_tlv(tlvs: Iterable[Tlv], tag: int) -> Tlv | None:
    """The first TLV with this tag, or None."""
    return next((t for t in tlvs if t.tag == tag), None)


def tlv_int(tlvs: Iterable[Tlv], tag: int) -> int | None:
    found = find_tlv(tlvs, tag)
    return None if found is None else int.from_bytes(found.value, "big")


def tlv_str(tlvs: Iterable[Tlv], tag: int) -> str | None:
    found = find_tlv(tlvs, tag)
    if found is None:
        return None
    return found.value.split(b"\0", 1)[0].decode("latin-1")


@dataclass(frozen=True, slots=True)
class Bind:
    """The body of bind_transmitter, bind_receiver and bind_transceiver (section 4.1)."""

    system_id: str
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(frozen=True, slots=True)
class BindResp:
    """The body of a bind_*_resp: the SMSC's system_id and its optional TLVs."""

    system_id: str = ""
    tlvs: tuple[Tlv, ...] = ()


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """The body shared by submit_sm (section 4.4.1) and deliver_sm (section 4.6.1)."""

    destination_addr: str
    short_message: bytes = b""
    source_addr: str = ""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: tuple[Tlv, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageIdResp:
    """The body of submit_sm_resp and deliver_sm_resp: a message_id C-string."""

    message_id: str = ""


Body = Bind | BindResp | ShortMessage | MessageIdResp | None


@dataclass(frozen=True, slots=True)
class Pdu:
    """One PDU: its header fields and its decoded body (None for empty bodies)."""

    command_id: int
    sequence: int
    status: int = 0
    body: Body = None

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)


@dataclass(frozen=True, slots=True)
class BadPdu:
    """A well-framed PDU whose body could not be decoded; answer it with `reply`."""

    command_id: int
    sequence: int
    error: SmppDecodeError

    def reply(self) -> Pdu:
        """The response the spec asks for: generic_nack for an unknown command id
        (section 4.3), otherwise the command's own response with the error status."""
        if self.command_id not in CommandId._value2member_map_ or self.command_id & RESPONSE_BIT:
            return Pdu(CommandId.GENERIC_NACK, self.sequence, self.error.status)
        resp = self.command_id | RESPONSE_BIT
        body: Body = MessageIdResp() if resp in _MESSAGE_ID_RESPONSES else None
        return Pdu(resp, self.sequence, self.error.status, body)


_BINDS = {CommandId.BIND_RECEIVER, CommandId.BIND_TRANSMITTER, CommandId.BIND_TRANSCEIVER}
_BIND_RESPS = {c | RESPONSE_BIT for c in _BINDS}
_SHORT_MESSAGES = {CommandId.SUBMIT_SM, CommandId.DELIVER_SM}
_MESSAGE_ID_RESPONSES = {CommandId.SUBMIT_SM_RESP, CommandId.DELIVER_SM_RESP}
_EMPTY = {
    CommandId.GENERIC_NACK,
    CommandId.UNBIND,
    CommandId.UNBIND_RESP,
    CommandId.ENQUIRE_LINK,
    CommandId.ENQUIRE_LINK_RESP,
}

# C-octet string maximum sizes, terminating NUL included (section 4).
_CSTRING_MAX = {
    "system_id": 16,
    "password": 9,
    "system_type": 13,
    "address_range": 41,
    "service_type": 6,
    "source_addr": 21,
    "destination_addr": 21,
    "schedule_delivery_time": 17,
    "validity_period": 17,
    "message_id": 65,
}
SHORT_MESSAGE_MAX = 254
"""sm_length is one octet; the spec caps short_message at 254 (longer goes in message_payload)."""


# --- encoding -----------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def cstring(self, name: str, value: str) -> None:
        raw = value.encode("ascii", "strict") if value.isascii() else None
        if raw is None or b"\0" in raw:
            raise SmppEncodeError(f"{name} must be ASCII without NUL: {value!r}", field=name)
        limit = _CSTRING_MAX[name]
        if len(raw) + 1 > limit:
            raise SmppEncodeError(
                f"{name} is {len(raw)} characters; at most {limit - 1} allowed", field=name
            )
        self.parts.append(raw + b"\0")

    def u8(self, name: str, value: int) -> None:
        if not 0 <= value <= 0xFF:
            raise SmppEncodeError(f"{name} = {value} is not one octet", field=name)
        self.parts.append(bytes((value,)))

    def tlvs(self, tlvs: Iterable[Tlv]) -> None:
        for tlv in tlvs:
            if not 0 <= tlv.tag <= 0xFFFF or len(tlv.value) > 0xFFFF:
                raise SmppEncodeError("TLV tag or length out of range", field=_tag_name(tlv.tag))
            self.parts.append(struct.pack(">HH", tlv.tag, len(tlv.value)) + tlv.value)


def encode(pdu: Pdu) -> bytes:
    """The wire bytes of one PDU; raises `SmppEncodeError` naming a field that does not fit."""
    w = _Writer()
    match pdu.body:
        case None:
            pass
        case Bind() as b:
            w.cstring("system_id", b.system_id)
            w.cstring("password", b.password)
            w.cstring("system_type", b.system_type)
            w.u8("interface_version", b.interface_version)
            w.u8("addr_ton", b.addr_ton)
            w.u8("addr_npi", b.addr_npi)
            w.cstring("address_range", b.address_range)
        case BindResp() as r:
            w.cstring("system_id", r.system_id)
            w.tlvs(r.tlvs)
        case ShortMessage() as sm:
            _encode_short_message(w, sm)
        case MessageIdResp() as m:
            w.cstring("message_id", m.message_id)
    body = b"".join(w.parts)
    if not 0 <= pdu.sequence <= 0xFFFFFFFF or not 0 <= pdu.status <= 0xFFFFFFFF:
        raise SmppEncodeError("sequence or status out of range", field="sequence_number")
    return HEADER.pack(HEADER_LEN + len(body), pdu.command_id, pdu.status, pdu.sequence) + body


def _encode_short_message(w: _Writer, sm: ShortMessage) -> None:
    w.cstring("service_type", sm.service_type)
    w.u8("source_addr_ton", sm.source_addr_ton)
    w.u8("source_addr_npi", sm.source_addr_npi)
    w.cstring("source_addr", sm.source_addr)
    w.u8("dest_addr_ton", sm.dest_addr_ton)
    w.u8("dest_addr_npi", sm.dest_addr_npi)
    w.cstring("destination_addr", sm.destination_addr)
    w.u8("esm_class", sm.esm_class)
    w.u8("protocol_id", sm.protocol_id)
    w.u8("priority_flag", sm.priority_flag)
    w.cstring("schedule_delivery_time", sm.schedule_delivery_time)
    w.cstring("validity_period", sm.validity_period)
    w.u8("registered_delivery", sm.registered_delivery)
    w.u8("replace_if_present_flag", sm.replace_if_present_flag)
    w.u8("data_coding", sm.data_coding)
    w.u8("sm_default_msg_id", sm.sm_default_msg_id)
    if len(sm.short_message) > SHORT_MESSAGE_MAX:
        raise SmppEncodeError(
            f"short_message is {len(sm.short_message)} octets; at most {SHORT_MESSAGE_MAX}"
            " (use the message_payload TLV)",
            field="short_message",
        )
    w.u8("sm_length", len(sm.short_message))
    w.parts.append(sm.short_message)
    w.tlvs(sm.tlvs)


# --- decoding -----------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def cstring(self, name: str) -> str:
        limit = _CSTRING_MAX[name]
        end = self.data.find(b"\0", self.pos, self.pos + limit)
        if end < 0:
            if self.data.find(b"\0", self.pos) < 0:
                raise SmppDecodeError(f"{name} is not NUL-terminated", field=name)
            raise SmppDecodeError(f"{name} is longer than {limit - 1} characters", field=name)
        raw = self.data[self.pos : end]
        self.pos = end + 1
        # latin-1 never fails: a carrier's odd byte must not kill the session.
        return raw.decode("latin-1")

    def u8(self, name: str) -> int:
        if self.pos >= len(self.data):
            raise SmppDecodeError(f"body ends before {name}", field=name)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def octets(self, name: str, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise SmppDecodeError(
                f"{name} says {n} octets but {len(self.data) - self.pos} remain", field=name
            )
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return value

    def tlvs(self) -> tuple[Tlv, ...]:
        out: list[Tlv] = []
        while self.pos < len(self.data):
            if len(self.data) - self.pos < 4:
                raise SmppDecodeError(
                    "trailing bytes too short for a TLV header",
                    field="tlv",
                    status=Status.ESME_RINVOPTPARSTREAM,
                )
            tag, length = struct.unpack_from(">HH", self.data, self.pos)
            self.pos += 4
            name = _tag_name(tag)
            if self.pos + length > len(self.data):
                raise SmppDecodeError(
                    f"{name} length {length} runs past the PDU",
                    field=name,
                    status=Status.ESME_RINVOPTPARSTREAM,
                )
            value = self.octets(name, length)
            _check_tlv(tag, value)
            out.append(Tlv(tag, value))
        return tuple(out)


def _check_tlv(tag: int, value: bytes) -> None:
    if tag not in Tag._value2member_map_:
        return
    known = Tag(tag)
    name = known.name.lower()
    size = _TLV_INT_SIZE.get(known)
    if size is not None and len(value) != size:
        raise SmppDecodeError(
            f"{name} is {len(value)} octets; it must be {size}",
            field=name,
            status=Status.ESME_RINVPARLEN,
        )
    limit = _TLV_CSTRING_MAX.get(known)
    # Lenient on the NUL: some SMSCs send receipted_message_id without one.
    if limit is not None and len(value.split(b"\0", 1)[0]) > limit - 1:
        raise SmppDecodeError(
            f"{name} is longer than {limit - 1} characters",
            field=name,
            status=Status.ESME_RINVPARLEN,
        )


def decode_body(command_id: int, status: int, data: bytes) -> Body:
    """Decode a PDU body; raises `SmppDecodeError` naming the bad field."""
    r = _Reader(data)
    body: Body
    if command_id in _BINDS:
        body = Bind(
            system_id=r.cstring("system_id"),
            password=r.cstring("password"),
            system_type=r.cstring("system_type"),
            interface_version=r.u8("interface_version"),
            addr_ton=r.u8("addr_ton"),
            addr_npi=r.u8("addr_npi"),
            address_range=r.cstring("address_range"),
        )
    elif command_id in _BIND_RESPS:
        # An SMSC may send an error bind_resp with no body at all (section 4.1.2).
        if not data and status:
            return BindResp()
        body = BindResp(r.cstring("system_id"), r.tlvs())
    elif command_id in _SHORT_MESSAGES:
        body = _decode_short_message(r)
    elif command_id in _MESSAGE_ID_RESPONSES:
        if not data:
            return MessageIdResp()  # error responses often carry no body (section 4.4.2)
        body = MessageIdResp(r.cstring("message_id"))
    elif command_id in _EMPTY:
        body = None
    else:
        raise SmppDecodeError(
            f"unknown command_id 0x{command_id:08X}",
            field="command_id",
            status=Status.ESME_RINVCMDID,
        )
    if r.pos != len(data):
        raise SmppDecodeError(
            f"{len(data) - r.pos} unexpected octet(s) after the body",
            field="command_length",
            status=Status.ESME_RINVCMDLEN,
        )
    return body


def _decode_short_message(r: _Reader) -> ShortMessage:
    service_type = r.cstring("service_type")
    source_addr_ton = r.u8("source_addr_ton")
    source_addr_npi = r.u8("source_addr_npi")
    source_addr = r.cstring("source_addr")
    dest_addr_ton = r.u8("dest_addr_ton")
    dest_addr_npi = r.u8("dest_addr_npi")
    destination_addr = r.cstring("destination_addr")
    esm_class = r.u8("esm_class")
    protocol_id = r.u8("protocol_id")
    priority_flag = r.u8("priority_flag")
    schedule = r.cstring("schedule_delivery_time")
    validity = r.cstring("validity_period")
    registered_delivery = r.u8("registered_delivery")
    replace = r.u8("replace_if_present_flag")
    data_coding = r.u8("data_coding")
    default_msg_id = r.u8("sm_default_msg_id")
    sm_length = r.u8("sm_length")
    short_message = r.octets("short_message", sm_length)
    return ShortMessage(
        destination_addr=destination_addr,
        short_message=short_message,
        source_addr=source_addr,
        service_type=service_type,
        source_addr_ton=source_addr_ton,
        source_addr_npi=source_addr_npi,
        dest_addr_ton=dest_addr_ton,
        dest_addr_npi=dest_addr_npi,
        esm_class=esm_class,
        protocol_id=protocol_id,
        priority_flag=priority_flag,
        schedule_delivery_time=schedule,
        validity_period=validity,
        registered_delivery=registered_delivery,
        replace_if_present_flag=replace,
        data_coding=data_coding,
        sm_default_msg_id=default_msg_id,
        tlvs=r.tlvs(),
    )


def decode(data: bytes) -> Pdu:
    """Decode exactly one whole PDU; raises `SmppFramingError` or `SmppDecodeError`."""
    stream = PduStream()
    items = stream.feed(data)
    if stream.buffered or len(items) != 1:
        raise SmppFramingError(
            f"expected one PDU, got {len(items)} and {stream.buffered} spare octet(s)"
        )
    item = items[0]
    if isinstance(item, BadPdu):
        raise item.error
    return item


@dataclass(slots=True)
class PduStream:
    """The streaming decoder: feed chunks as they arrive, get back whole PDUs."""

    max_length: int = MAX_PDU_LEN
    _buffer: bytearray = field(default_factory=bytearray)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Pdu | BadPdu]:
        self._buffer += data
        out: list[Pdu | BadPdu] = []
        while len(self._buffer) >= HEADER_LEN:
            length, command_id, status, sequence = HEADER.unpack_from(self._buffer)
            if not HEADER_LEN <= length <= self.max_length:
                raise SmppFramingError(
                    f"command_length {length} is outside {HEADER_LEN}..{self.max_length}"
                )
            if len(self._buffer) < length:
                break
            body = bytes(self._buffer[HEADER_LEN:length])
            del self._buffer[:length]
            try:
                out.append(Pdu(command_id, sequence, status, decode_body(command_id, status, body)))
            except SmppDecodeError as exc:
                exc.command_id, exc.sequence = command_id, sequence
                out.append(BadPdu(command_id, sequence, exc))
        return out
