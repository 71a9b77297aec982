"""VERP return paths: ``bounce+TOKEN@domain`` built and taken apart (pure).

Variable Envelope Return Paths put a per-message token into the envelope sender, so
that a bounce, which goes to the reverse-path (RFC 5321 section 4.5.5), names the
message it is about even when the remote MTA's report is useless. Replies that go to
a VERP Reply-To are threaded the same way.

The token alphabet is ``A-Z a-z 0-9 - _`` (base64url without padding), 1 to
``64 - len(local) - 1`` characters. Every one of those is ``atext`` (RFC 5322
section 3.2.3), so the local part is a plain dot-atom that no MTA needs to quote;
``+`` is the separator and ``=``, ``/`` and ``.`` are left out because base64
padding, path-like tokens and dots (no leading, trailing or doubled ones in a
dot-atom) are what gets mangled in the wild. RFC 5321 section 4.5.3.1.1 caps the
local part at 64 octets. Local parts are case-sensitive (RFC 5321 section 2.4) and
the token is returned exactly as received, but a few MTAs fold case: an engine that
wants to survive them should mint tokens in one case (lowercase hex or base32).

Signing the token (an HMAC over a message id, so nobody can forge bounces for
addresses we never sent to) is the engine's business, not this module's.
"""

from __future__ import annotations

import re

__all__ = ["MAX_LOCAL_PART", "VerpError", "verp_address", "verp_token"]

MAX_LOCAL_PART = 64  # octets, RFC 5321 section 4.5.3.1.1

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
# The fixed local part and the domain: dot-atoms of ASCII letters, digits and hyphens.
_LOCAL = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?")


class VerpError(ValueError):
    """A token, local part or domain that cannot make a VERP address."""


def verp_address(token: str, domain: str, local: str = "bounce") -> str:
    """The return path ``local+token@domain`` for a message.

    Raises VerpError for a token outside the alphabet (see the module docstring),
    a local part that would exceed 64 octets, or a malformed local or domain.
    """
    if not _LOCAL.fullmatch(local) or "+" in local:
        raise VerpError(f"VERP local part {local!r} is not a plain dot-atom")
    if not _DOMAIN.fullmatch(domain):
        raise VerpError(f"VERP domain {domain!r} is not a domain name")
    if not _TOKEN.fullmatch(token):
        raise VerpError(f"VERP token {token!r} must be 1+ characters of A-Z a-z 0-9 - _")
    local_part = f"{local}+{token}"
    if len(local_part) > MAX_LOCAL_PART:
        raise VerpError(
            f"VERP local part {local_part!r} is {len(local_part)} octets, over the "
            f"{MAX_LOCAL_PART} of RFC 5321 section 4.5.3.1.1"
        )
    return f"{local_part}@{domain}"


def verp_token(address: str, domain: str | None, local: str = "bounce") -> str | None:
    """The token of ``local+TOKEN@domain``, or None for any other address.

    Lenient where MTAs differ: surrounding whitespace and angle brackets are
    dropped, the domain (and a trailing root dot) and the fixed local part are
    compared case-insensitively; the token is returned as received. ``domain``
    None accepts any domain, for a caller that only knows the local part.
    """
    addr = address.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1].strip()
    local_part, at, addr_domain = addr.rpartition("@")
    if not at:
        return None
    if domain is not None and _fold_domain(addr_domain) != _fold_domain(domain):
        return None
    prefix, plus, token = local_part.partition("+")
    if not plus or prefix.lower() != local.lower():
        return None
    if len(local_part) > MAX_LOCAL_PART or not _TOKEN.fullmatch(token):
        return None
    return token


def _fold_domain(domain: str) -> str:
    return domain.strip().rstrip(".").lower()
