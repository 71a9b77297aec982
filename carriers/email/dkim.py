"""DKIM signing (RFC 6376), relaxed/relaxed, rsa-sha256 and ed25519-sha256 (RFC 8463).

Pure: no I/O, no clock (the caller passes ``timestamp``), so it runs anywhere,
in a thread or a worker process. The public key is published with
`DkimKey.public_record` at ``<selector>._domainkey.<domain>``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

__all__ = [
    "DEFAULT_SIGNED_HEADERS",
    "OVERSIGNED_HEADERS",
    "Algorithm",
    "DkimError",
    "DkimKey",
    "DkimKeyError",
    "DkimMessageError",
    "canonicalize_body_relaxed",
    "canonicalize_header_relaxed",
    "normalize_line_endings",
    "sign",
]

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# RFC 6376 section 5.4.1 recommends these; RFC 8058 section 4 requires
# List-Unsubscribe and List-Unsubscribe-Post to be covered by the signature.
DEFAULT_SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
)

# Listed in h= once more than they occur (RFC 6376 section 8.15), so that a
# second instance added in transit (a forged From or Subject, a List-Unsubscribe
# pointing elsewhere) breaks the signature instead of being shown unsigned.
OVERSIGNED_HEADERS: frozenset[str] = frozenset(
    {"from", "subject", "list-unsubscribe", "list-unsubscribe-post"}
)

MIN_RSA_BITS = 1024  # RFC 8301 section 3.2: signers MUST use at least 1024 bits

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_BARE_LF = re.compile(rb"(?<!\r)\n")
# A run of WSP that is not already one SP (a single SP is left as it is, so a
# line of words costs no substitution).
_WSP_RUN = re.compile(rb"\t[ \t]*| [ \t]+")
_WSP_AT_LINE_END = re.compile(rb"[ \t]+(?=\r\n|\Z)")
_FOLD_WIDTH = 76  # RFC 5322 section 2.1.1: lines SHOULD stay within 78 characters


class DkimError(ValueError):
    """Base of every error raised by carriers.email.dkim."""


class DkimKeyError(DkimError):
    """A private key, domain or selector that cannot be used to sign."""


class DkimMessageError(DkimError):
    """A message that cannot be signed as it stands (no From, a malformed header)."""


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A domain's signing key: d= ``domain``, s= ``selector``, a= ``algorithm``."""

    domain: str
    selector: str
    algorithm: Algorithm
    private_key: PrivateKey = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        for what, name in (("domain", self.domain), ("selector", self.selector)):
            if not _DNS_NAME.fullmatch(name):
                raise DkimKeyError(f"DKIM {what} {name!r} is not an ASCII DNS name")
        expected = _algorithm_of(self.private_key)
        if self.algorithm != expected:
            raise DkimKeyError(f"algorithm {self.algorithm!r} does not match a {expected} key")

    @classmethod
    def from_pem(cls, domain: str, selector: str, pem: bytes) -> DkimKey:
        """Load an unencrypted PEM private key (PKCS#8 or traditional), RSA or Ed25519."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except TypeError as exc:  # cryptography says "password was not given"
            raise DkimKeyError(
                f"the DKIM key for {selector}._domainkey.{domain} is encrypted; "
                "give it unencrypted (openssl pkey -in KEY -out PLAIN)"
            ) from exc
        except UnsupportedAlgorithm as exc:
            raise DkimKeyError(f"unsupported DKIM key type: {exc}") from exc
        except ValueError as exc:
            raise DkimKeyError(
                f"the DKIM key for {selector}._domainkey.{domain} is not a PEM private key"
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise DkimKeyError(
                f"unsupported DKIM key type {type(key).__name__}: "
                "DKIM signs with RSA (rsa-sha256) or Ed25519 (ed25519-sha256, RFC 8463)"
            )
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
            raise DkimKeyError(
                f"RSA key of {key.key_size} bits is too short: RFC 8301 requires at least "
                f"{MIN_RSA_BITS} (2048 recommended)"
            )
        return cls(domain, selector, _algorithm_of(key), key)

    @property
    def dns_name(self) -> str:
        """Where the public record goes (RFC 6376 section 3.6.2.1)."""
        return f"{self.selector}._domainkey.{self.domain}"

    def public_record(self) -> str:
        """The TXT record's text (RFC 6376 section 3.6.1; RFC 8463 section 4 for Ed25519).

        RSA: p= is the base64 DER SubjectPublicKeyInfo, as ``openssl rsa -pubout``
        writes it. Ed25519: p= is the 32 raw public key bytes. A 2048-bit RSA
        record is longer than 255 bytes, so it is published as several
        character-strings of one TXT record, which resolvers concatenate.
        """
        public = self.private_key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def _algorithm_of(key: object) -> Algorithm:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa-sha256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519-sha256"
    raise DkimKeyError(f"unsupported DKIM key type {type(key).__name__}")


def normalize_line_endings(message: bytes) -> bytes:
    """Turn every bare LF into CRLF, the line ending of RFC 5322 (CRLFs stay)."""
    if message.count(b"\n") == message.count(b"\r\n"):
        return message
    return _BARE_LF.sub(b"\r\n", message)


def canonicalize_header_relaxed(header_field: bytes) -> bytes:
    """One header field, relaxed (RFC 6376 section 3.4.2), with its trailing CRLF.

    Name lowercased; value unfolded, runs of WSP made one SP, WSP around the
    colon and at the end of the value removed.
    """
    name, _, value = header_field.partition(b":")
    value = value.replace(b"\r\n", b"")
    if b"\t" in value or b"  " in value:
        value = _WSP_RUN.sub(b" ", value)
    value = value.strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


def canonicalize_body_relaxed(body: bytes) -> bytes:
    """The body, relaxed (RFC 6376 section 3.4.4), from CRLF-terminated lines.

    WSP at the end of each line removed, other runs of WSP made one SP, empty
    lines at the end removed, and a CRLF added to a non-empty body that lacks
    one. An empty body (or one of only empty lines) is the empty string.
    The last line counts as a line even without its CRLF, so its trailing
    WSP goes too: the body then hashes as it will once SMTP has ended it
    with CRLF.
    """
    if b" \r\n" in body or b"\t\r\n" in body or body.endswith((b" ", b"\t")):
        body = _WSP_AT_LINE_END.sub(b"", body)
    if b"\t" in body or b"  " in body:
        body = _WSP_RUN.sub(b" ", body)
    end = len(body)
    while body.endswith(b"\r\n", 0, end):
        end -= 2
    return body[:end] + b"\r\n" if end else b""


def _split_message(message: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (each with its folding, no final CRLF) and the body."""
    if message.startswith(b"\r\n"):
        return [], message[2:]
    head, sep, body = message.partition(b"\r\n\r\n")
    fields: list[bytes] = []
    for number, line in enumerate(head.split(b"\r\n"), start=1):
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise DkimMessageError("the message starts with a folded (indented) line")
            fields[-1] += b"\r\n" + line
        elif b":" in line:
            fields.append(line)
        elif line or not sep:
            raise DkimMessageError(f"header line {number} has no colon: {line[:60]!r}")
    return fields, body


def _header_name(header_field: bytes) -> str:
    return header_field.partition(b":")[0].rstrip(b" \t").decode("ascii", "replace").lower()


def _select_headers(fields: list[bytes], wanted: Iterable[str]) -> tuple[list[str], bytes]:
    """h= names and the canonical header fields they cover, in h= order.

    Each present instance of a wanted header is signed; where a name occurs
    several times, each h= entry takes the next instance from the bottom up
    (RFC 6376 section 5.4.2). Names in OVERSIGNED_HEADERS get one entry more
    than they have instances; that entry matches nothing (the null string).
    """
    instances: dict[str, list[bytes]] = {}
    for header_field in fields:
        instances.setdefault(_header_name(header_field), []).append(header_field)
    froms = len(instances.get("from", ()))
    if froms != 1:
        raise DkimMessageError(
            f"the message has {froms} From header fields; RFC 5322 section 3.6 requires one"
        )
    names: list[str] = []
    canonical: list[bytes] = []
    for name in dict.fromkeys(["from", *(h.lower().strip() for h in wanted)]):
        present = instances.get(name, [])
        names += [name] * (len(present) + (name in OVERSIGNED_HEADERS))
        canonical += [canonicalize_header_relaxed(f) for f in reversed(present)]
    return names, b"".join(canonical)


def _fold(pieces: list[tuple[str, str]]) -> str:
    """Join (glue, text) pieces, breaking with CRLF SP where a line would get too long.

    Breaks go only where RFC 6376 allows FWS: between tags and between h= names.
    """
    out = "DKIM-Signature:"
    line_length = len(out)
    for glue, text in pieces:
        if line_length + len(glue) + len(text) > _FOLD_WIDTH:
            out += "\r\n " + text
            line_length = 1 + len(text)
        else:
            out += glue + text
            line_length += len(glue) + len(text)
    return out


def _fold_base64(head: str, value: str) -> str:
    """Append b='s value to ``head``, folded (FWS is allowed anywhere in base64)."""
    room = max(_FOLD_WIDTH - (len(head) - head.rfind("\n") - 1), 0)
    chunks = [value[:room]] + [
        value[i : i + _FOLD_WIDTH - 1] for i in range(room, len(value), _FOLD_WIDTH - 1)
    ]
    return head + "\r\n ".join(chunks)


def _tag_pieces(
    key: DkimKey, names: list[str], tags: list[str], body_hash: str
) -> list[tuple[str, str]]:
    pieces = [(" ", f"v=1; a={key.algorithm}; c=relaxed/relaxed;")]
    pieces += [(" ", f"d={key.domain};"), (" ", f"s={key.selector};")]
    pieces += [(" ", f"{tag};") for tag in tags]
    header_list = [f"{name}:" for name in names]
    header_list[0], header_list[-1] = "h=" + header_list[0], header_list[-1][:-1] + ";"
    pieces += [(" " if i == 0 else "", text) for i, text in enumerate(header_list)]
    pieces += [(" ", f"bh={body_hash};"), (" ", "b=")]
    return pieces


def sign(
    message: bytes,
    key: DkimKey,
    *,
    headers: Iterable[str] = DEFAULT_SIGNED_HEADERS,
    timestamp: int | None = None,
    expire: int | None = None,
) -> bytes:
    """The ``DKIM-Signature:`` header field (folded, ending in CRLF) to prepend to ``message``.

    ``message`` is the whole RFC 5322 message as bytes with CRLF line endings;
    bare LFs are taken as CRLF (`normalize_line_endings`), so send the message
    with CRLF line endings (SMTP clients do). Header bytes above 127 (UTF-8
    headers, RFC 6532) are signed as they are.

    Signs with relaxed/relaxed canonicalisation. h= lists every instance of
    each name in ``headers`` that the message has (From always, exactly one
    required), bottom-up for repeated names (RFC 6376 section 5.4.2); From,
    Subject, List-Unsubscribe and List-Unsubscribe-Post are oversigned, listed
    once more than they occur, so none can be added after signing without
    breaking the signature. ``timestamp`` and ``expire`` (Unix seconds) give
    t= and x=; they are omitted when None. No l= tag: the whole body is signed.
    """
    if timestamp is not None and timestamp < 0:
        raise DkimError(f"timestamp {timestamp} is negative")
    if expire is not None and (expire < 0 or (timestamp is not None and expire <= timestamp)):
        raise DkimError(f"expire {expire} must be after the timestamp {timestamp}")
    fields, body = _split_message(normalize_line_endings(message))
    names, canonical_headers = _select_headers(fields, headers)
    body_hash = base64.b64encode(hashlib.sha256(canonicalize_body_relaxed(body)).digest())
    tags = [f"t={timestamp}"] * (timestamp is not None) + [f"x={expire}"] * (expire is not None)
    head = _fold(_tag_pieces(key, names, tags, body_hash.decode()))
    # RFC 6376 section 3.7: the headers in h= order, then this field with an
    # empty b= value, canonicalised, without its trailing CRLF.
    signed = canonical_headers + canonicalize_header_relaxed(head.encode())[:-2]
    signature = base64.b64encode(_sign_bytes(key.private_key, signed)).decode()
    return (_fold_base64(head, signature) + "\r\n").encode()


def _sign_bytes(private_key: PrivateKey, data: bytes) -> bytes:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        # RFC 8463 section 3: PureEdDSA over the SHA-256 hash of the data.
        return private_key.sign(hashlib.sha256(data).digest())
    return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())  # RFC 8017 RSASSA-PKCS1-v1_5
