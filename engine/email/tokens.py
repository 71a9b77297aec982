"""Signed, single-purpose tokens for email: the one-click unsubscribe link and
the VERP return path (`bounce+TOKEN@domain`).

A token is the message id and an HMAC-SHA256 (truncated to 80 bits) of the
purpose and that id under the daemon's secret, in lower-case base32 (safe in
a URL path and in an address's local part). It names one message, so it
unsubscribes one address from the list that message's campaign uses, and a
token made for bounces cannot unsubscribe anyone (the purpose is in the MAC).
Guessing one is a 2^-80 chance per try; nothing is stored for it.

The secret is `email.secret_file`: 32 random bytes made on first start (mode
0600). Rotating it invalidates the links in mail already sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

UNSUBSCRIBE, BOUNCE = "unsubscribe", "bounce"
_MAC_BYTES = 10


def load_secret(path: Path) -> bytes:
    """The secret in `path`, made (32 random bytes, mode 0600) if the file is missing."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return data
    if len(data) < 16:
        raise ValueError(f"{path}: the email secret must hold at least 16 bytes")
    return data


def _mac(secret: bytes, purpose: str, message_id: int) -> bytes:
    msg = f"{purpose}:{message_id}".encode()
    return hmac.new(secret, msg, hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(secret: bytes, purpose: str, message_id: int) -> str:
    raw = message_id.to_bytes(8, "big") + _mac(secret, purpose, message_id)
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def read_token(secret: bytes, purpose: str, token: str) -> int | None:
    """The message id a genuine token of `purpose` names, or None."""
    text = token.strip().upper()
    if not text or len(text) > 40 or not text.isalnum():
        return None
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        return None
    if len(raw) != 8 + _MAC_BYTES:
        return None
    if base64.b32encode(raw).decode("ascii").rstrip("=") != text:
        return None  # a spelling that differs only in the unused trailing bit
    message_id = int.from_bytes(raw[:8], "big")
    if not hmac.compare_digest(raw[8:], _mac(secret, purpose, message_id)):
        return None
    return message_id
