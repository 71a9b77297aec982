"""The Kannel MO route's parameters: text decoded from bytes with Kannel's charset."""

from __future__ import annotations

from urllib.parse import quote

import pytest

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
