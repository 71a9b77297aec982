"""DKIM signer: every signature checked by dkimpy against our published record."""

from __future__ import annotations

import base64
import subprocess
from email.message import EmailMessage

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from carriers.email.dkim import (
    DkimKey,
    DkimKeyError,
    DkimMessageError,
    canonicalize_body_relaxed,
    canonicalize_header_relaxed,
    sign,
)
from carriers.email.signer import Signer

DOMAIN, SELECTOR = "example.com", "s2026"


def _pem(private: object, password: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return private.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ED = ed25519.Ed25519PrivateKey.generate()
KEYS = {
    "rsa-2048": DkimKey.from_pem(DOMAIN, SELECTOR, _pem(_RSA)),
    "ed25519": DkimKey.from_pem(DOMAIN, SELECTOR, _pem(_ED)),
}


@pytest.fixture(params=sorted(KEYS))
def key(request: pytest.FixtureRequest) -> DkimKey:
    return KEYS[request.param]


def verify(signed: bytes, key: DkimKey) -> bool:
    record = key.public_record().encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{key.dns_name}.".encode() or name == key.dns_name.encode()
        return record

    return bool(dkimpy.verify(signed, dnsfunc=dnsfunc))


def signed(message: bytes, key: DkimKey, **kwargs: object) -> bytes:
    return sign(message, key, **kwargs) + message  # type: ignore[arg-type]


BASE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Reminder\r\n"
    b"Date: Thu, 03 Dec 2026 14:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Your appointment is tomorrow.\r\n"
)


def _html_multipart() -> bytes:
    m = EmailMessage()
    m["From"] = "Notices <notices@example.com>"
    m["To"] = "Zoë <zoe@example.org>"
    m["Subject"] = "Rendez-vous confirmé"
    m["List-Unsubscribe"] = "<https://example.com/u/1>, <mailto:u@example.com>"
    m["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    m.set_content("Bonjour,\n\nà demain.\n")
    m.add_alternative("<html><body><p>Bonjour,</p><p>à demain.</p></body></html>\n", "html")
    return m.as_bytes().replace(b"\n", b"\r\n")


MESSAGES = {
    "plain": BASE,
    "folded headers": BASE.replace(
        b"Subject: Reminder\r\n", b"Subject: A long\r\n  subject\r\n\tfolded twice  \r\n"
    ),
    "repeated headers": BASE.replace(
        b"\r\n\r\n", b"\r\nReferences: <a@x>\r\nReferences: <b@x>\r\nTo: carol@example.org\r\n\r\n"
    ),
    "trailing whitespace": BASE.replace(b"tomorrow.\r\n", b"tomorrow.  \t\r\n  two  spaces \r\n"),
    "empty body": BASE.split(b"\r\n\r\n")[0] + b"\r\n\r\n",
    "trailing blank lines": BASE + b"\r\n\r\n   \r\n\r\n",
    "utf-8 headers": BASE.replace(b"Subject: Reminder", "Subject: Café ☕ rappel".encode()),
    "long lines": BASE + b"x" * 5000 + b"\r\n" + b"word " * 2000 + b"\r\n",
    "html multipart": _html_multipart(),
    "lf only": BASE.replace(b"\r\n", b"\n"),
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_dkimpy_verifies_ours(key: DkimKey, name: str) -> None:
    message = MESSAGES[name]
    header = sign(message, key, timestamp=1796300000, expire=1796400000)
    assert header.startswith(b"DKIM-Signature: v=1; a=" + key.algorithm.encode())
    assert header.endswith(b"\r\n") and header.count(b"\r\n") > 1
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))
    on_the_wire = (header + message).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert verify(on_the_wire, key)


def test_body_without_final_crlf_verifies_as_smtp_sends_it(key: DkimKey) -> None:
    message = BASE + b"no newline at the end  "
    assert verify(signed(message, key) + b"\r\n", key)


def test_h_lists_present_headers_bottom_up_and_oversigns(key: DkimKey) -> None:
    header = sign(MESSAGES["repeated headers"], key).decode()
    h = header.replace("\r\n ", "").split("h=")[1].split(";")[0]
    assert h.split(":") == [
        "from", "from", "to", "to", "subject", "subject", "date", "message-id",
        "references", "references", "list-unsubscribe", "list-unsubscribe-post",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "tamper"),
    [
        ("body byte", lambda m: m.replace(b"tomorrow", b"tomorroW")),
        ("signed header", lambda m: m.replace(b"Subject: Reminder", b"Subject: Reminded")),
        ("second From", lambda m: b"From: mallory@evil.example\r\n" + m),
        ("second Subject", lambda m: m.replace(b"\r\n\r\n", b"\r\nSubject: Urgent\r\n\r\n", 1)),
        ("added List-Unsubscribe", lambda m: b"List-Unsubscribe: <https://evil.example>\r\n" + m),
        ("body line added", lambda m: m + b"P.S. click here\r\n"),
    ],
)
def test_tampering_breaks_the_signature(key: DkimKey, name: str, tamper: object) -> None:
    good = signed(BASE, key)
    assert verify(good, key)
    assert not verify(tamper(good), key)  # type: ignore[operator]


def test_unsigned_header_added_and_whitespace_changes_still_verify(key: DkimKey) -> None:
    good = signed(BASE, key)
    relaxed = good.replace(b"Subject: Reminder", b"subject:   Reminder ")
    assert verify(b"Received: from relay\r\n" + relaxed + b"\r\n\r\n", key)


def test_dkimpy_signature_and_ours_both_verify() -> None:
    key = KEYS["rsa-2048"]
    theirs = dkimpy.sign(BASE, SELECTOR.encode(), DOMAIN.encode(), _pem(_RSA),
                         canonicalize=(b"relaxed", b"relaxed"))  # fmt: skip
    both = sign(theirs + BASE, key) + theirs + BASE
    assert verify(theirs + BASE, key)
    assert verify(both, key)
    record = key.public_record().encode()
    verifier = dkimpy.DKIM(both)
    assert verifier.verify(0, dnsfunc=lambda *_a, **_k: record)
    assert verifier.verify(1, dnsfunc=lambda *_a, **_k: record)


def test_ed25519_dkimpy_signature_verifies_with_our_record() -> None:
    seed = _ED.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    theirs = dkimpy.sign(BASE, SELECTOR.encode(), DOMAIN.encode(), base64.b64encode(seed),
                         signature_algorithm=b"ed25519-sha256",
                         canonicalize=(b"relaxed", b"relaxed"))  # fmt: skip
    assert verify(theirs + BASE, KEYS["ed25519"])


# RFC 6376 section 3.4.5, the relaxed example.
def test_rfc6376_example_headers() -> None:
    assert canonicalize_header_relaxed(b"A: X") == b"a:X\r\n"
    assert canonicalize_header_relaxed(b"B : Y\t\r\n\tZ  ") == b"b:Y Z\r\n"


def test_rfc6376_example_body() -> None:
    assert canonicalize_body_relaxed(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"


@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        (b"", b""),
        (b"\r\n", b""),
        (b"\r\n\r\n  \r\n", b""),
        (b"abc", b"abc\r\n"),
        (b"abc  ", b"abc\r\n"),
        (b"a\r\n\r\nb\r\n\r\n", b"a\r\n\r\nb\r\n"),
    ],
)
def test_body_edge_cases(body: bytes, canonical: bytes) -> None:
    assert canonicalize_body_relaxed(body) == canonical


def test_public_records() -> None:
    assert KEYS["rsa-2048"].public_record().startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    ed = KEYS["ed25519"].public_record()
    assert ed.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(ed.split("p=")[1])) == 32


@pytest.mark.parametrize(
    ("pem", "words"),
    [
        (b"not a key at all", "not a PEM private key"),
        (_pem(_RSA, b"secret"), "encrypted"),
        ("rsa-768", "768 bits"),
        (_pem(ec.generate_private_key(ec.SECP256R1())), "unsupported DKIM key type"),
    ],
)
def test_key_errors(pem: bytes | str, words: str) -> None:
    if pem == "rsa-768":  # cryptography generates no RSA key under 1024 bits; openssl does
        pem = subprocess.run(
            ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:768"],
            check=True,
            capture_output=True,
        ).stdout
    assert isinstance(pem, bytes)
    with pytest.raises(DkimKeyError, match=words):
        DkimKey.from_pem(DOMAIN, SELECTOR, pem)


def test_bad_domain_and_selector() -> None:
    with pytest.raises(DkimKeyError, match="domain"):
        DkimKey.from_pem("exa mple.com", SELECTOR, _pem(_ED))
    with pytest.raises(DkimKeyError, match="selector"):
        DkimKey.from_pem(DOMAIN, "", _pem(_ED))


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (b"To: x@example.org\r\n\r\nbody\r\n", "0 From"),
        (b"From: a@x.example\r\nFrom: b@x.example\r\n\r\nbody\r\n", "2 From"),
        (b"From: a@x.example\r\nno colon here\r\n\r\nbody\r\n", "line 2 has no colon"),
        (b" folded first\r\nFrom: a@x.example\r\n\r\n", "folded"),
    ],
)
def test_unsignable_messages(message: bytes, words: str) -> None:
    with pytest.raises(DkimMessageError, match=words):
        sign(message, KEYS["ed25519"])


def test_expire_before_timestamp_refused() -> None:
    with pytest.raises(ValueError, match="expire"):
        sign(BASE, KEYS["ed25519"], timestamp=100, expire=100)


async def test_signer_signs_off_the_loop(key: DkimKey) -> None:
    signer = Signer(workers=2)
    try:
        headers = [await signer.sign(m, key, timestamp=1796300000) for m in (BASE, BASE)]
        assert all(verify(h + BASE, key) for h in headers)
        with pytest.raises(DkimMessageError):
            await signer.sign(b"To: x@example.org\r\n\r\n", key)
    finally:
        signer.close()
