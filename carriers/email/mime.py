"""Lenient reading of inbound mail (pure): header text, msg-ids, addresses, body text.

Inbound mail is whatever the Internet sends: undeclared 8-bit headers, charsets
nobody has heard of, truncated base64, reports missing the parts they promise. The
stdlib parser under ``compat32`` never raises on such input (it records defects);
these helpers keep that promise on the way out, so nothing here raises on any
message the parser produced: a bad charset decodes with replacement characters.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses

__all__ = [
    "addresses",
    "decode_bytes",
    "embedded_headers",
    "first_address",
    "header_text",
    "html_to_text",
    "leaf_parts",
    "msg_ids",
    "parse_message",
    "part_text",
]

_MSG_ID = re.compile(r"<[^<>\s]+>")
_SPACE = re.compile(r"\s+")
_SURROGATE = re.compile("[\udc80-\udcff]")


def parse_message(data: bytes) -> Message:
    """The message under ``compat32``, which records defects instead of raising."""
    return message_from_bytes(data, policy=compat32)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Text from ``data`` in its declared charset, else UTF-8, else Windows-1252.

    The last is what undeclared or mislabelled 8-bit mail mostly is; its five
    unassigned octets become U+FFFD.
    """
    for name in (charset, "utf-8"):
        if not name or name.lower() in ("unknown-8bit", "x-unknown"):
            continue
        try:
            codecs.lookup(name)
            return data.decode(name)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace")


def header_text(msg: Message, name: str) -> str | None:
    """One header field as unfolded text, RFC 2047 encoded words decoded, or None."""
    raw = msg.get(name)
    if raw is None:
        return None
    try:
        chunks = decode_header(raw)
    except Exception:  # a malformed encoded word: keep the raw text
        chunks = [(str(raw), None)]
    pieces: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            pieces.append(decode_bytes(chunk, charset))
        else:
            pieces.append(chunk)
    text = "".join(pieces)
    if _SURROGATE.search(text):
        # The bytes parser smuggles undeclared 8-bit octets through as surrogates.
        text = decode_bytes(text.encode("utf-8", "surrogateescape"), None)
    return _SPACE.sub(" ", text).strip()


def msg_ids(value: str | None) -> list[str]:
    """Every ``<msg-id>`` in a Message-ID, In-Reply-To or References value, in order."""
    return _MSG_ID.findall(value) if value else []


def addresses(value: str | None) -> list[str]:
    """The addr-specs of an address-list header, angle brackets and names dropped."""
    if not value:
        return []
    try:
        pairs = getaddresses([value])
    except Exception:  # getaddresses has raised on pathological input in some releases
        return []
    return [addr for _name, addr in pairs if "@" in addr]


def first_address(value: str | None) -> str | None:
    found = addresses(value)
    return found[0] if found else None


def leaf_parts(msg: Message) -> Iterator[Message]:
    """The non-multipart parts, in order, not descending into embedded messages."""
    if msg.get_content_maintype() == "message" or not msg.is_multipart():
        yield msg
        return
    payload = msg.get_payload()
    if isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from leaf_parts(part)


def part_text(part: Message) -> str | None:
    """The decoded text of a non-multipart part, or None if it has none."""
    if part.is_multipart():
        return None
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a transfer encoding the stdlib chokes on
        return None
    if not isinstance(data, bytes):
        return None
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    return decode_bytes(data, charset)


def embedded_headers(part: Message) -> Message | None:
    """The original message (or just its header) carried by a report part.

    ``message/rfc822`` parses to a one-element list; ``text/rfc822-headers``
    (RFC 6522 section 4) is text to parse as a header block; some MTAs send the
    non-standard ``message/rfc822-headers``, which the parser treats as a message.
    """
    payload = part.get_payload()
    if isinstance(payload, list):
        inner = [p for p in payload if isinstance(p, Message)]
        return inner[0] if inner else None
    text = part_text(part)
    if not text:
        return None
    return HeaderParser(policy=compat32).parsestr(text.lstrip())


_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BREAK = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d|p|div|li)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def html_to_text(markup: str) -> str:
    """Crude text of an HTML body: scripts and styles dropped, blocks to new lines."""
    text = _DROP.sub("", markup)
    text = _BREAK.sub("\n", text)
    text = html.unescape(_TAG.sub("", text)).replace("\xa0", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
