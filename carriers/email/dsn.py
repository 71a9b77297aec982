"""RFC 3464 delivery status notifications and RFC 5965 feedback reports (pure).

A DSN is a ``multipart/report`` (RFC 6522) whose ``message/delivery-status`` part
holds one per-message field block (Reporting-MTA, Original-Envelope-Id...) and one
block per recipient (RFC 3464 section 2.3): Final-Recipient (required),
Original-Recipient, Action, Status, Remote-MTA, Diagnostic-Code. Address and
diagnostic fields are ``type; value`` (``rfc822; user@example.com``,
``smtp; 550 5.1.1 ...``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import quopri
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

from carriers.email.mime import decode_bytes, header_text, part_text

__all__ = [
    "BouncedRecipient",
    "DsnAction",
    "delivery_status_blocks",
    "enhanced_status",
    "is_hard",
    "parse_recipient_block",
    "typed_value",
]


class DsnAction(enum.StrEnum):
    """The Action field, RFC 3464 section 2.3.3."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    """One recipient of a bounce.

    ``address`` is the one to act on: the Original-Recipient (the address we gave in
    RCPT TO) when the report carries it, else the Final-Recipient. ``status`` is
    the RFC 3463 enhanced code (``5.1.1``) or None; ``hard`` is True for a failed
    delivery with a permanent (5.x.x) status: the address is undeliverable.
    """

    address: str
    action: DsnAction
    status: str | None
    diagnostic: str | None
    remote_mta: str | None
    hard: bool
    final_recipient: str | None = None


# RFC 3463 section 2: class.subject.detail; the class is 2, 4 or 5.
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY_CODE = re.compile(r"^\s*([245])\d\d\b")
# Non-standard actions seen in the wild: opensmtpd writes "error" (as flufl.bounce notes).
_ACTION_ALIASES = {"error": DsnAction.FAILED, "failure": DsnAction.FAILED}


def enhanced_status(text: str | None) -> str | None:
    """The first RFC 3463 status code in ``text``, e.g. ``5.1.1``."""
    if not text:
        return None
    found = _STATUS.search(text)
    return ".".join(found.groups()) if found else None


def typed_value(text: str | None) -> str | None:
    """The value of a ``type; value`` field (RFC 3464 section 2.1.2), brackets dropped."""
    if not text:
        return None
    _type, semi, value = text.partition(";")
    value = (value if semi else text).strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value or None


def is_hard(action: DsnAction, status: str | None, diagnostic: str | None) -> bool:
    """A failed delivery with a permanent status (RFC 3463 class 5) is hard.

    Delayed is always soft, and so is failed with a 4.x.x status (given up after
    retries: the address itself may be fine). A report missing its (required)
    Status falls back on the SMTP reply code at the start of the diagnostic.
    """
    if action is not DsnAction.FAILED:
        return False
    if status is not None:
        return status.startswith("5")
    code = _REPLY_CODE.match(typed_value(diagnostic) or "")
    return code is not None and code.group(1) == "5"


def delivery_status_blocks(part: Message) -> list[Message]:
    """The field blocks of a ``message/delivery-status`` part, per-message first.

    The parser splits a plain part into blocks itself; an encoded part (which it
    splits as if it were plain) or a report built by hand is decoded and split on
    blank lines here.
    """
    payload = part.get_payload()
    encoding = (header_text(part, "Content-Transfer-Encoding") or "").lower()
    if isinstance(payload, list):
        blocks = [block for block in payload if isinstance(block, Message)]
        if encoding not in ("base64", "quoted-printable"):
            return blocks
        # The parser split the encoded text as if it were fields: undo, then decode.
        raw = "\n\n".join(block.as_string() for block in blocks).encode("ascii", "replace")
        text = decode_bytes(_transfer_decode(raw, encoding), None)
    else:
        text = part_text(part) or ""
    parser = HeaderParser(policy=compat32)
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [parser.parsestr(chunk.strip() + "\n") for chunk in chunks if chunk.strip()]


def _transfer_decode(raw: bytes, encoding: str) -> bytes:
    if encoding == "quoted-printable":
        return quopri.decodestring(raw)
    try:
        return base64.b64decode(b"".join(raw.split()), validate=False)
    except (binascii.Error, ValueError):
        return b""


def parse_recipient_block(block: Message) -> BouncedRecipient | None:
    """One per-recipient block, or None if it names no recipient or no action."""
    final = typed_value(header_text(block, "Final-Recipient"))
    original = typed_value(header_text(block, "Original-Recipient"))
    address = original or final
    if not address:
        return None
    diagnostic = header_text(block, "Diagnostic-Code")
    status = enhanced_status(header_text(block, "Status"))
    action = _action(header_text(block, "Action"), status)
    if action is None:
        return None
    return BouncedRecipient(
        address=address,
        action=action,
        status=status,
        diagnostic=typed_value(diagnostic),
        remote_mta=typed_value(header_text(block, "Remote-MTA")),
        hard=is_hard(action, status, diagnostic),
        final_recipient=final,
    )


def _action(text: str | None, status: str | None) -> DsnAction | None:
    word = (text or "").strip().lower().split(" ", 1)[0].rstrip(";")
    try:
        return DsnAction(word)
    except ValueError:
        pass
    if word in _ACTION_ALIASES:
        return _ACTION_ALIASES[word]
    # Action is required; without it, the status class is the best evidence.
    by_class = {"5": DsnAction.FAILED, "4": DsnAction.DELAYED, "2": DsnAction.DELIVERED}
    return by_class.get(status[0]) if status else None
