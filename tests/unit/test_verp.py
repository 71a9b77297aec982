"""VERP return paths: built, taken apart, and everything else refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carriers.email.verp import VerpError, verp_address, verp_token


def test_address_and_token_round_trip() -> None:
    address = verp_address("a1B2-c3_d4", "mail.example.com")
    assert address == "bounce+a1B2-c3_d4@mail.example.com"
    assert verp_token(address, "mail.example.com") == "a1B2-c3_d4"


def test_custom_local_part() -> None:
    address = verp_address("tok", "example.com", local="reply")
    assert address == "reply+tok@example.com"
    assert verp_token(address, "example.com", local="reply") == "tok"
    assert verp_token(address, "example.com") is None


@pytest.mark.parametrize(
    "received",
    [
        "<bounce+tok@example.com>",
        "  <bounce+tok@example.com>  ",
        "bounce+tok@EXAMPLE.com",
        "Bounce+tok@example.com.",
        "BOUNCE+tok@Example.Com",
    ],
)
def test_token_lenient_about_brackets_and_case(received: str) -> None:
    assert verp_token(received, "example.com") == "tok"


def test_token_keeps_its_case() -> None:
    assert verp_token("bounce+AbC@example.com", "example.com") == "AbC"


@pytest.mark.parametrize(
    "received",
    [
        "bounce@example.com",  # no token
        "bounce+@example.com",  # empty token
        "bounce+tok@other.example",  # someone else's domain
        "bounce+tok@example.com.evil",
        "bouncer+tok@example.com",
        "xbounce+tok@example.com",
        "bounce+to.k@example.com",  # outside the alphabet
        "bounce+to+k@example.com",
        "bounce+tok=@example.com",
        '"bounce+tok"@example.com',
        "bounce+tok",
        "",
        "<>",
        "bounce+" + "t" * 60 + "@example.com",  # local part over 64 octets
    ],
)
def test_token_none_for_anything_else(received: str) -> None:
    assert verp_token(received, "example.com") is None


def test_token_any_domain_when_none_given() -> None:
    assert verp_token("bounce+tok@anywhere.example", None) == "tok"
    assert verp_token("someone@anywhere.example", None) is None


@pytest.mark.parametrize(
    ("token", "domain", "local"),
    [
        ("", "example.com", "bounce"),
        ("has space", "example.com", "bounce"),
        ("pad==", "example.com", "bounce"),
        ("a/b", "example.com", "bounce"),
        ("a.b", "example.com", "bounce"),
        ("tok", "exa mple.com", "bounce"),
        ("tok", "", "bounce"),
        ("tok", "example.com", "bou+nce"),
        ("tok", "example.com", ""),
        ("t" * 58, "example.com", "bounce"),  # 6 + 1 + 58 = 65 octets
    ],
)
def test_address_refuses_what_would_not_survive(token: str, domain: str, local: str) -> None:
    with pytest.raises(VerpError):
        verp_address(token, domain, local)


def test_longest_token_fits_64_octets() -> None:
    address = verp_address("t" * 57, "example.com")
    assert len(address.partition("@")[0]) == 64
    assert verp_token(address, "example.com") == "t" * 57


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.text(alphabet=_ALPHABET, min_size=1, max_size=57))
def test_round_trip_any_token(token: str) -> None:
    assert verp_token(verp_address(token, "example.com"), "example.com") == token


@given(st.text(max_size=80))
def test_token_never_raises(address: str) -> None:
    token = verp_token(address, "example.com")
    assert token is None or token.isascii()
