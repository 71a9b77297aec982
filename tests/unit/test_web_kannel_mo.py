"""The Kannel MO route's parameters (text decoded from bytes with Kannel's charset),
and the key its URLs carry."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from engine.config import ConfigError, _read_mapping
from engine.sms.config import parse_sms
from engine.web import kannel_mo_fields


def test_utf8_text_and_plus_for_space() -> None:
    fields = kannel_mo_fields("key=k&from=%2B12125550143&to=%2B15550100&text=Ol%C3%A1+stop")
    assert fields == {"key": "k", "from": "+12125550143", "to": "+15550100", "text": "Olá stop"}


def test_ucs2_bytes_with_charset_or_coding() -> None:
    text = "Olá 😀 Ġ+"  # U+0120 holds a 0x20 byte, '+' a 0x2B one
    data = quote(text.encode("utf-16-be"), safe="")
    assert kannel_mo_fields(f"text={data}&coding=2&charset=UTF-16BE")["text"] == text
    assert kannel_mo_fields(f"text={data}&coding=2")["text"] == text
    assert kannel_mo_fields("text=%E1&coding=0&charset=ISO-8859-1")["text"] == "á"


@pytest.mark.parametrize(
    ("query", "message"),
    [("text=x&charset=NOPE-9", "unknown charset"), ("text=%FF%FE%FD", "text is not UTF-8")],
)
def test_bad_charset_or_bytes(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kannel_mo_fields(query)


def test_empty_and_missing() -> None:
    assert kannel_mo_fields("") == {}
    assert kannel_mo_fields("text=&from=1") == {"text": "", "from": "1"}


def test_a_non_ascii_dlr_key_is_refused(tmp_path: Path) -> None:
    """Quoted, ``é`` is ``%C3%A9``: Kannel would read ``%C`` and ``%A`` as its escapes."""
    path = tmp_path / "outdial.yaml"
    account = "sms:\n  accounts:\n    k1:\n      type: kannel\n      url: http://127.0.0.1:13013\n"
    account += "      username: u\n      password: p\n      dlr_key: "
    path.write_text(account + '"clé"\n')
    with pytest.raises(ConfigError, match=r"outdial.yaml:8: .*dlr_key: expected printable ASCII"):
        parse_sms(_read_mapping(path))
    path.write_text(account + '"k&1 2+3/4=5%6"\n')
    config = parse_sms(_read_mapping(path))
    assert config is not None and config.accounts["k1"].dlr_key == "k&1 2+3/4=5%6"
