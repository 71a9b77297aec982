"""Delivery receipts: the SMSC's deliver_sm that reports a submitted message's fate.

Two forms reach us. The text form in short_message (SMPP 3.4 Appendix B, not
normative, but what nearly every SMSC sends):
``id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
stat:DDDDDDD err:E text: ...``; and the receipted_message_id / message_state TLVs
(section 5.3.2.12 and 5.3.2.35). When the TLVs are present they win: they are
typed, and the text id is sometimes rendered in another base.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from carriers.sms.smpp.pdu import ShortMessage, Tag, tlv_int, tlv_str

ESM_MESSAGE_TYPE_MASK = 0x3C
"""esm_class bits 5..2: the message type (section 5.2.12)."""
ESM_DELIVERY_RECEIPT = 0x04
ESM_INTERMEDIATE_NOTIFICATION = 0x20


class MessageState(enum.IntEnum):
    """message_state values (section 5.2.28)."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8

    @property
    def final(self) -> bool:
        return self not in (MessageState.ENROUTE, MessageState.ACCEPTED, MessageState.UNKNOWN)


_TEXT_STATES = {
    "ENROUTE": MessageState.ENROUTE,
    "DELIVRD": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "ACCEPTD": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
}

# Keys in Appendix B order; "text" swallows the rest. Case-insensitive, since
# some SMSCs send "Text:" or "STAT:".
_FIELD = re.compile(
    r"(?P<key>id|sub|dlvrd|submit date|done date|stat|err|text):",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A parsed delivery receipt. ``state`` is None when neither form gave one we know."""

    message_id: str
    state: MessageState | None
    stat: str = ""
    error: str = ""
    submitted: str = ""
    done: str = ""
    submitted_count: str = ""
    delivered_count: str = ""
    text: str = ""


def is_receipt(sm: ShortMessage) -> bool:
    """True when esm_class marks this deliver_sm as a delivery receipt."""
    kind = sm.esm_class & ESM_MESSAGE_TYPE_MASK
    return kind in (ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE_NOTIFICATION)


def parse_text(text: str) -> dict[str, str]:
    """The Appendix B key:value fields of a receipt text, keys lower-cased."""
    fields: dict[str, str] = {}
    matches = list(_FIELD.finditer(text))
    for i, m in enumerate(matches):
        key = m.group("key").lower()
        if key in fields:
            continue
        end = len(text) if key == "text" or i + 1 == len(matches) else matches[i + 1].start()
        fields[key] = text[m.end() : end].strip()
        if key == "text":
            break
    return fields


def parse_receipt(sm: ShortMessage) -> Receipt | None:
    """The receipt carried by a deliver_sm, or None if it has no message id in either form."""
    fields = parse_text(sm.short_message.decode("latin-1"))
    tlv_id = tlv_str(sm.tlvs, Tag.RECEIPTED_MESSAGE_ID)
    message_id = tlv_id if tlv_id else fields.get("id", "")
    if not message_id:
        return None
    stat = fields.get("stat", "")
    state: MessageState | None = _TEXT_STATES.get(stat.upper())
    tlv_state = tlv_int(sm.tlvs, Tag.MESSAGE_STATE)
    if tlv_state is not None and tlv_state in MessageState._value2member_map_:
        state = MessageState(tlv_state)
    return Receipt(
        message_id=message_id,
        state=state,
        stat=stat,
        error=fields.get("err", ""),
        submitted=fields.get("submit date", ""),
        done=fields.get("done date", ""),
        submitted_count=fields.get("sub", ""),
        delivered_count=fields.get("dlvrd", ""),
        text=fields.get("text", ""),
    )
