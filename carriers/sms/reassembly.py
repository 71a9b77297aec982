"""Concatenated mobile-originated messages put back together (sans-IO).

A handset sends a reply longer than one segment as several deliver_sm, each
with its place in the whole: a concatenation UDH (TS 23.040 9.2.3.24.1, 8-bit
reference, or 9.2.3.24.8, 16-bit) behind esm_class bit 0x40, or SMPP's own
`sar_msg_ref_num` / `sar_total_segments` / `sar_segment_seqnum` TLVs. The
`Reassembler` keeps the segments of each (source, destination, reference,
total, data coding) until all have come, in any order, and hands back one
ShortMessage with the user data joined and no UDH; a segment the SMSC sends
twice is taken once. A message whose segments stop coming is handed back
after `timeout` with what did arrive (`MoMessage.missing` says which are
absent): a reply is never dropped for want of a part. A deliver_sm that is not
a segment passes straight through; so does text in `message_payload` (one
PDU, however long).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from carriers.sms.encoding import parse_concatenation
from carriers.sms.errors import UdhParseError
from carriers.sms.smpp.pdu import ShortMessage, Tag

__all__ = ["MoMessage", "Reassembler", "user_text_of"]

ESM_UDHI = 0x40


@dataclass(frozen=True, slots=True)
class MoMessage:
    """A whole inbound message: the first segment's fields, the joined user
    data (no UDH) in ``message.short_message``, its segment count, and the
    sequence numbers that never came (a message handed back on timeout)."""

    message: ShortMessage
    segments: int = 1
    missing: tuple[int, ...] = ()


@dataclass(slots=True)
class _Partial:
    first_seen: float
    total: int
    template: ShortMessage
    parts: dict[int, bytes] = field(default_factory=dict)


def _tlv(message: ShortMessage, tag: int) -> bytes | None:
    for tlv in message.tlvs:
        if tlv.tag == tag:
            return tlv.value
    return None


def user_text_of(message: ShortMessage) -> bytes:
    """The user data: short_message, or the message_payload TLV when the SMSC
    put the text there (short_message is then empty, SMPP 3.4 5.3.2.32)."""
    if message.short_message:
        return message.short_message
    return _tlv(message, Tag.MESSAGE_PAYLOAD) or b""


def _place(message: ShortMessage) -> tuple[int, int, int, int, bytes] | None:
    """(reference, reference bits, total, sequence, payload) of a segment, or None."""
    data = user_text_of(message)
    if message.esm_class & ESM_UDHI and data:
        try:
            found = parse_concatenation(data)
        except UdhParseError:
            return None  # a UDH we cannot read: the text is taken as it is
        if found is not None:
            return found.reference, found.reference_bits, found.total, found.sequence, found.payload
        return None
    sar = (Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM)
    ref, total, seq = (_tlv(message, t) for t in sar)
    if ref and total and seq:
        count, number = int.from_bytes(total, "big"), int.from_bytes(seq, "big")
        if 1 <= number <= count:
            return int.from_bytes(ref, "big"), 16, count, number, data
    return None


def _strip_udh(message: ShortMessage) -> ShortMessage:
    data = user_text_of(message)
    if message.esm_class & ESM_UDHI and data and 1 + data[0] <= len(data):
        data = data[1 + data[0] :]
    return replace(message, short_message=data, esm_class=message.esm_class & ~ESM_UDHI)


class Reassembler:
    """Segments in, whole messages out; `expire` hands back the overdue ones."""

    def __init__(self, timeout: float = 120.0, max_pending: int = 10_000) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: dict[tuple[object, ...], _Partial] = {}
        self._evicted: list[MoMessage] = []  # let go early (max_pending): out at the next expire

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, message: ShortMessage, now: float) -> MoMessage | None:
        """The whole message this deliver_sm completes (itself when it is not a
        segment), or None while segments are still to come."""
        place = _place(message)
        if place is None:
            return MoMessage(_strip_udh(message))
        reference, bits, total, sequence, payload = place
        if total == 1:
            return MoMessage(replace(_strip_udh(message), short_message=payload))
        key = (message.source_addr, message.destination_addr, reference, bits, total,
               message.data_coding)  # fmt: skip
        partial = self._pending.get(key)
        if partial is None:
            if len(self._pending) >= self.max_pending:  # a flood of never-finished parts
                oldest = min(self._pending, key=lambda k: self._pending[k].first_seen)
                self._evicted.append(self._whole(self._pending.pop(oldest)))
            partial = self._pending[key] = _Partial(now, total, message)
        partial.parts.setdefault(sequence, payload)  # a retransmitted segment: the first stands
        if sequence == 1:
            partial.template = message
        if len(partial.parts) < total:
            return None
        del self._pending[key]
        return self._whole(partial)

    def expire(self, now: float) -> list[MoMessage]:
        """Messages whose first segment came `timeout` ago and that are still
        incomplete (or that `max_pending` made room for), with what arrived."""
        out, self._evicted = self._evicted, []
        overdue = [k for k, p in self._pending.items() if now - p.first_seen >= self.timeout]
        return out + [self._whole(self._pending.pop(k)) for k in overdue]

    def drain(self) -> list[MoMessage]:
        """Every incomplete message now (the daemon is stopping)."""
        out = self._evicted + [self._whole(p) for p in self._pending.values()]
        self._pending.clear()
        self._evicted = []
        return out

    def next_deadline(self) -> float | None:
        if self._evicted:
            return 0.0
        if not self._pending:
            return None
        return min(p.first_seen for p in self._pending.values()) + self.timeout

    @staticmethod
    def _whole(partial: _Partial) -> MoMessage:
        data = b"".join(partial.parts[s] for s in sorted(partial.parts))
        missing = tuple(s for s in range(1, partial.total + 1) if s not in partial.parts)
        base = _strip_udh(partial.template)
        return MoMessage(replace(base, short_message=data), len(partial.parts), missing)
