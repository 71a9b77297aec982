"""carriers.sms.encoding: tables, packing, segmentation, UDH, smart encoding, preview.

The cross-check at the end runs the npm package sms-segments-calculator (installed in
tests/peers/sms-segments by `make npm-peers`) over the whole BMP one character at a time
and over a few hundred generated messages, in one node process.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carriers.sms.encoding import (
    ESCAPE,
    GSM7_BASIC,
    GSM7_EXTENSION,
    SMART_REPLACEMENTS,
    Encoding,
    concatenation_udh,
    decode_gsm7,
    decode_ucs2,
    encode_gsm7,
    encode_ucs2,
    gsm7_septets,
    is_gsm7,
    pack_septets,
    parse_concatenation,
    preview,
    segment,
    ucs2_units,
    unpack_septets,
    user_data_parts,
)
from carriers.sms.errors import SmsEncodingError, UdhParseError, UnencodableCharacterError

PEER = Path(__file__).resolve().parents[1] / "peers" / "sms-segments"
EXTENSION_CHARS = "\f^{}\\[~]|€"
CYRILLIC = "Ж"  # outside GSM-7, inside the BMP: one UCS-2 code unit
EMOJI = "😀"  # outside the BMP: a surrogate pair, two code units


# --- tables ----------------------------------------------------------------------------


def test_tables_have_the_spec_sizes_and_known_codes() -> None:
    assert len(GSM7_BASIC) == 127  # 128 codes less the escape
    assert set(GSM7_EXTENSION) == set(EXTENSION_CHARS)
    assert GSM7_BASIC["@"] == 0x00 and GSM7_BASIC["£"] == 0x01 and GSM7_BASIC["à"] == 0x7F
    assert GSM7_BASIC["\n"] == 0x0A and GSM7_BASIC["\r"] == 0x0D and GSM7_BASIC["Ø"] == 0x0B
    assert GSM7_EXTENSION["€"] == 0x65 and GSM7_EXTENSION["\f"] == 0x0A
    assert "\x1b" not in GSM7_BASIC and not is_gsm7("\x1b")


@pytest.mark.parametrize("char", sorted(GSM7_BASIC))
def test_every_basic_character_round_trips(char: str) -> None:
    encoded = encode_gsm7(char)
    assert encoded == bytes((GSM7_BASIC[char],))
    assert decode_gsm7(encoded) == char
    assert decode_gsm7(unpack_septets(pack_septets(encoded), 1)) == char


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_every_extension_character_round_trips_as_an_escape_pair(char: str) -> None:
    encoded = encode_gsm7(char)
    assert encoded == bytes((ESCAPE, GSM7_EXTENSION[char]))
    assert gsm7_septets(char) == 2
    assert decode_gsm7(encoded) == char
    assert decode_gsm7(unpack_septets(pack_septets(encoded), 2)) == char


def test_whole_tables_round_trip_in_one_message_gsm_and_ucs2() -> None:
    text = "".join(sorted(GSM7_BASIC)) + EXTENSION_CHARS
    assert decode_gsm7(encode_gsm7(text)) == text
    packed = pack_septets(encode_gsm7(text))
    assert decode_gsm7(unpack_septets(packed, gsm7_septets(text))) == text
    assert decode_ucs2(encode_ucs2(text)) == text


def test_decoding_is_lenient_as_the_spec_asks() -> None:
    # An undefined extension code shows the basic character; ESC ESC and a dangling ESC
    # show a space (TS 23.038 6.2.1.1).
    assert decode_gsm7(bytes((ESCAPE, 0x41))) == "A"
    assert decode_gsm7(bytes((ESCAPE, ESCAPE, 0x41))) == " A"
    assert decode_gsm7(bytes((0x41, ESCAPE))) == "A "
    assert decode_gsm7(bytes((0xC1,))) == "A"  # high bit masked
    assert decode_ucs2(b"\x00A\xd8") == "A\ufffd"


# --- errors ----------------------------------------------------------------------------


def test_gsm7_refuses_a_character_naming_it_and_its_position() -> None:
    with pytest.raises(UnencodableCharacterError) as caught:
        segment("Hello ä Ж!", Encoding.GSM7)
    error = caught.value
    assert isinstance(error, ValueError) and isinstance(error, SmsEncodingError)
    assert (error.character, error.position, error.encoding) == ("Ж", 8, "GSM-7")
    assert "U+0416" in str(error) and "position 8" in str(error)


def test_ucs2_refuses_a_lone_surrogate() -> None:
    with pytest.raises(UnencodableCharacterError) as caught:
        segment("ab\ud83d", Encoding.UCS2)
    assert caught.value.position == 2
    with pytest.raises(UnencodableCharacterError):
        segment("ab\ud83d")


def test_forced_ucs2_carries_gsm_text_at_one_unit_per_character() -> None:
    message = segment("{" * 70, Encoding.UCS2)
    assert message.encoding is Encoding.UCS2 and message.units == (70,)


# --- segment boundaries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "units"),
    [
        (153, (153,)),
        (154, (154,)),
        (160, (160,)),
        (161, (153, 8)),
        (306, (153, 153)),
        (307, (153, 153, 1)),
    ],
)
def test_gsm7_edge_lengths(length: int, units: tuple[int, ...]) -> None:
    message = segment("a" * length)
    assert message.encoding is Encoding.GSM7
    assert message.units == units
    assert message.capacity == (160 if len(units) == 1 else 153)


@pytest.mark.parametrize(
    ("length", "units"),
    [
        (67, (67,)),
        (68, (68,)),
        (70, (70,)),
        (71, (67, 4)),
        (134, (67, 67)),
        (135, (67, 67, 1)),
    ],
)
def test_ucs2_edge_lengths(length: int, units: tuple[int, ...]) -> None:
    message = segment(CYRILLIC * length)
    assert message.encoding is Encoding.UCS2
    assert message.units == units


def test_extension_characters_count_two_septets_against_160() -> None:
    assert segment("€" * 80).units == (160,)
    assert segment("€" * 80 + "a").units == (152, 9)


def test_an_escape_pair_straddling_the_boundary_moves_whole_to_the_next_segment() -> None:
    message = segment("a" * 152 + "€" + "b" * 10)
    assert message.units == (152, 12)
    assert message.segments[1].startswith("€")
    assert message.payloads()[1][:2] == bytes((ESCAPE, 0x65))
    assert message.payloads()[0][-1] != ESCAPE


def test_an_emoji_straddling_the_ucs2_boundary_moves_whole_to_the_next_segment() -> None:
    assert segment(CYRILLIC * 68 + EMOJI).units == (70,)
    message = segment(CYRILLIC * 66 + EMOJI + CYRILLIC * 5)
    assert message.units == (66, 7)
    assert message.segments[1].startswith(EMOJI)
    first, second = message.payloads()
    assert len(first) == 132 and second[:4] == EMOJI.encode("utf-16-be")
    assert ucs2_units(EMOJI) == 2 and decode_ucs2(second) == message.segments[1]


def test_more_than_255_segments_is_an_encoding_error() -> None:
    assert len(segment("a" * 153 * 255).segments) == 255
    with pytest.raises(SmsEncodingError, match="256 segments"):
        segment("a" * (153 * 255 + 1))


def test_empty_text_is_one_empty_gsm_segment() -> None:
    message = segment("")
    assert (message.encoding, message.segments, message.units) == (Encoding.GSM7, ("",), (0,))


@given(st.text(max_size=700).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)))
def test_segments_reassemble_and_fit(text: str) -> None:
    message = segment(text)
    assert "".join(message.segments) == text
    assert all(units <= message.capacity for units in message.units)
    decode = decode_gsm7 if message.encoding is Encoding.GSM7 else decode_ucs2
    assert "".join(decode(p) for p in message.payloads()) == text


# --- septet packing --------------------------------------------------------------------


def test_packing_known_vector() -> None:
    # The classic TS 23.038 example: "hellohello" packs to E8 32 9B FD 46 97 D9 EC 37.
    packed = pack_septets(encode_gsm7("hellohello"))
    assert packed.hex().upper() == "E8329BFD4697D9EC37"
    assert decode_gsm7(unpack_septets(packed, 10)) == "hellohello"


@given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
def test_packing_round_trips_with_any_fill(septets: bytes, fill: int) -> None:
    packed = pack_septets(septets, fill_bits=fill)
    assert len(packed) == (fill + 7 * len(septets) + 7) // 8
    assert unpack_septets(packed, len(septets), fill_bits=fill) == septets


def test_seven_septets_pad_with_cr_not_with_an_at_sign() -> None:
    septets = encode_gsm7("1234567")
    plain = pack_septets(septets)
    assert unpack_septets(plain) == septets + b"\x00"  # a stray '@' without the count
    padded = pack_septets(septets, cr_padding=True)
    assert len(padded) == len(plain) == 7
    assert unpack_septets(padded) == septets
    assert unpack_septets(padded, 7) == septets


def test_a_real_cr_on_an_octet_boundary_is_doubled() -> None:
    septets = encode_gsm7("1234567\r")
    padded = pack_septets(septets, cr_padding=True)
    assert decode_gsm7(unpack_septets(padded)) == "1234567\r\r"  # CR CR == CR (6.1.1)
    assert unpack_septets(pack_septets(encode_gsm7("12\r"), cr_padding=True)) == b"12\r"


def test_packing_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="7-bit"):
        pack_septets(b"\x80")
    with pytest.raises(ValueError, match="fill_bits"):
        pack_septets(b"a", fill_bits=7)
    with pytest.raises(ValueError, match="septets"):
        unpack_septets(b"\x00", 3)


# --- UDH -------------------------------------------------------------------------------


def test_concatenation_udh_8bit_builds_and_parses() -> None:
    udh = concatenation_udh(0xAB, 3, 2)
    assert udh == bytes.fromhex("050003AB0302")
    found = parse_concatenation(udh + b"payload")
    assert found is not None
    assert (found.reference, found.total, found.sequence) == (0xAB, 3, 2)
    assert (found.reference_bits, found.payload, found.fill_bits) == (8, b"payload", 1)


def test_concatenation_udh_16bit_parses_after_another_ie() -> None:
    # A national-language IE (0x25, 1 octet) then the 16-bit concatenation IE 0x08.
    user_data = bytes.fromhex("09250101080412340503") + b"xyz"
    found = parse_concatenation(user_data)
    assert found is not None
    assert (found.reference, found.total, found.sequence) == (0x1234, 5, 3)
    assert (found.reference_bits, found.payload) == (16, b"xyz")
    assert found.fill_bits == 4  # 10 header octets = 80 bits, next septet at 84


@pytest.mark.parametrize(
    "user_data",
    [
        bytes.fromhex("050003AB0000"),  # total 0
        bytes.fromhex("050003AB0300"),  # sequence 0
        bytes.fromhex("050003AB0204"),  # sequence > total
        bytes.fromhex("0325010100"),  # no concatenation IE
    ],
)
def test_an_ignorable_or_absent_concatenation_ie_gives_none(user_data: bytes) -> None:
    assert parse_concatenation(user_data) is None


@pytest.mark.parametrize(
    "user_data",
    [b"", bytes.fromhex("0600030102"), bytes.fromhex("0500040102030405"), bytes.fromhex("0100")],
)
def test_a_udh_whose_lengths_do_not_fit_is_an_error(user_data: bytes) -> None:
    with pytest.raises(UdhParseError):
        parse_concatenation(user_data)


def test_concatenation_udh_rejects_out_of_range_values() -> None:
    for args in [(256, 2, 1), (1, 2, 3), (1, 0, 0), (1, 256, 1)]:
        with pytest.raises(ValueError):
            concatenation_udh(*args)


def test_user_data_parts_unpacked_and_packed_round_trip() -> None:
    text = "x" * 150 + "€{}" + "y" * 40
    message = segment(text)
    for packed in (False, True):
        parts = user_data_parts(message, reference=7, packed=packed)
        assert len(parts) == 2
        texts = []
        for sequence, part in enumerate(parts, start=1):
            found = parse_concatenation(part)
            assert found is not None
            assert (found.reference, found.total, found.sequence) == (7, 2, sequence)
            septets = message.units[sequence - 1]
            payload = found.payload
            if packed:
                payload = unpack_septets(payload, septets, fill_bits=found.fill_bits)
                assert len(part) == 6 + (1 + 7 * septets + 7) // 8 <= 140
            texts.append(decode_gsm7(payload))
        assert "".join(texts) == text
    assert user_data_parts(segment("hi"), reference=1) == (encode_gsm7("hi"),)


def test_every_ucs2_part_fits_140_octets() -> None:
    parts = user_data_parts(segment((CYRILLIC + EMOJI) * 60), reference=9)
    assert all(len(p) <= 140 for p in parts)


# --- smart encoding --------------------------------------------------------------------


def test_smart_encoding_off_keeps_look_alikes_in_ucs2() -> None:
    text = "\u201cHi\u201d \u2014 it\u2019s ready\u2026\u00a0ok"
    message = segment(text)
    assert message.encoding is Encoding.UCS2 and message.text == text


def test_smart_encoding_on_replaces_when_the_whole_message_then_fits() -> None:
    text = "\u201cHi\u201d \u2014 it\u2019s ready\u2026\u00a0ok"
    message = segment(text, smart=True)
    assert message.encoding is Encoding.GSM7
    assert message.text == '"Hi" - it\'s ready... ok'
    assert (0, "\u201c", '"') in message.replacements and len(message.replacements) == 6


def test_smart_encoding_leaves_a_message_that_still_needs_ucs2_alone() -> None:
    text = "\u201cHi\u201d " + EMOJI
    message = segment(text, smart=True)
    assert message.encoding is Encoding.UCS2 and message.text == text
    assert message.replacements == ()


def test_smart_encoding_lets_a_requested_gsm7_succeed() -> None:
    assert segment("a\u2013b", Encoding.GSM7, smart=True).text == "a-b"
    with pytest.raises(UnencodableCharacterError):
        segment("a\u2013b", Encoding.GSM7)


def test_every_smart_replacement_is_gsm7() -> None:
    assert all(not is_gsm7(k) and is_gsm7(v) for k, v in SMART_REPLACEMENTS.items())


# --- preview ---------------------------------------------------------------------------


def test_preview_names_the_characters_that_forced_ucs2() -> None:
    result = preview("Caf\u00e9 \u00e7a " + EMOJI)
    assert result.encoding is Encoding.UCS2 and result.segment_count == 1
    # é is GSM-7 (0x05); ç is not (only Ç is).
    assert result.forced_ucs2 == ((5, "\u00e7"), (8, EMOJI))
    assert "UCS-2 forced by: '\u00e7' (U+00E7) at 5" in result.summary()


def test_preview_counts_characters_and_units_per_segment() -> None:
    result = preview("a" * 150 + "{}" + "b" * 20)
    assert result.encoding is Encoding.GSM7 and result.segment_count == 2
    assert result.units_per_segment == (152, 22) and result.characters_per_segment == (151, 21)
    assert result.capacity == 153 and result.forced_ucs2 == () and result.warnings == ()


def test_preview_warns_when_a_url_is_split_across_segments() -> None:
    url = "https://example.com/appointments/12345"
    result = preview("Your appointment is confirmed. " + "x" * 110 + " " + url + " thanks")
    assert result.segment_count == 2
    assert len(result.warnings) == 1
    assert url in result.warnings[0] and "segments 1 and 2" in result.warnings[0]
    assert "warning: URL" in result.summary()


def test_preview_does_not_warn_for_a_url_within_one_segment() -> None:
    assert preview("See https://example.com/a. " + "x" * 200).warnings == ()
    assert preview("x" * 200 + " www.example.com/a").warnings == ()


def test_preview_warns_for_a_www_url_and_ignores_trailing_punctuation() -> None:
    split = preview("x" * 150 + " www.example.com/abc, ok")
    assert len(split.warnings) == 1 and "'www.example.com/abc'" in split.warnings[0]
    # The URL ends exactly at the boundary; only the comma after it is in segment 2.
    at_edge = preview("x" * 135 + " https://ex.co/abc, " + "y" * 20)
    assert at_edge.segment_count == 2
    assert at_edge.warnings == ()


# --- cross-check against sms-segments-calculator ---------------------------------------
#
# Where the calculator deliberately differs from TS 23.038/23.040: it keeps a whole
# grapheme cluster (an emoji with a skin-tone modifier or a ZWJ sequence, a letter with
# a combining mark) in one segment, where the spec only forbids splitting an escape pair
# or a UTF-16 surrogate pair; the handset reassembles the segments before it displays
# them. The generated messages therefore contain only characters that are a grapheme on
# their own, and the one known difference is checked as such below.

BASIC_POOL = [*sorted(set(GSM7_BASIC) - {"\r", "\n"}), "\n", "\r\n"]
ACCENTED_POOL = list("áíóúçêőłšžÁÍÓ")
EMOJI_POOL = ["😀", "🎉", "👍", "🚀", "☺", "★", "✓", "☀", "Ж", "中"]
KNOWN_DIFFERENCE = CYRILLIC * 65 + "👍🏽" + CYRILLIC * 64


def _generated_messages(rng: random.Random, count: int) -> list[str]:
    targets = [67, 70, 134, 153, 160, 306, 459]
    messages = []
    for index in range(count):
        target = rng.choice(targets) + rng.randint(-3, 3)
        kind = index % 4
        pieces: list[str] = []
        while sum(map(len, pieces)) < target:
            roll = rng.random()
            if kind >= 1 and roll < 0.15:
                pieces.append(rng.choice(EXTENSION_CHARS))
            elif kind >= 2 and roll < 0.20:
                pieces.append(rng.choice(ACCENTED_POOL))
            elif kind == 3 and roll < 0.30:
                pieces.append(rng.choice(EMOJI_POOL))
            else:
                pieces.append(rng.choice(BASIC_POOL))
        messages.append("".join(pieces))
    return messages


def _run_peer(messages: list[str]) -> list[dict[str, object]]:
    node = shutil.which("node")
    if node is None or not (PEER / "node_modules" / "sms-segments-calculator").is_dir():
        pytest.fail(
            "the sms-segments-calculator peer is not installed: run `make npm-peers` "
            "(apt-get install nodejs npm; cd tests/peers/sms-segments && npm ci)",
            pytrace=False,
        )
    done = subprocess.run(
        [node, str(PEER / "count.js")],
        input=json.dumps(messages),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    results: list[dict[str, object]] = json.loads(done.stdout)
    assert len(results) == len(messages)
    return results


def test_cross_check_against_sms_segments_calculator() -> None:
    bmp = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    messages = _generated_messages(random.Random(20261203), 400)
    results = _run_peer([*bmp, *messages, KNOWN_DIFFERENCE])
    single, generated, known = results[: len(bmp)], results[len(bmp) : -1], results[-1]

    table_mismatches = [
        (f"U+{ord(char):04X}", theirs)
        for char, theirs in zip(bmp, single, strict=True)
        if (theirs["encoding"], theirs["units"])
        != (("GSM-7", gsm7_septets(char)) if is_gsm7(char) else ("UCS-2", None))
    ]
    assert table_mismatches == []

    mismatches = []
    for text, theirs in zip(messages, generated, strict=True):
        ours = segment(text)
        if (ours.encoding.value, len(ours.segments)) != (theirs["encoding"], theirs["segments"]):
            mismatches.append((text, ours.encoding.value, len(ours.segments), theirs))
    assert mismatches == []
    kinds = {(segment(t).encoding, len(segment(t).segments)) for t in messages}
    assert len(kinds) >= 6  # the mix reached both encodings and several segment counts

    # The documented difference: the calculator keeps 👍🏽 (two surrogate pairs, one
    # grapheme) together and needs a third segment; the spec lets the pair of pairs split.
    assert segment(KNOWN_DIFFERENCE).units == (67, 66)
    assert known["segments"] == 3


_MIXED = [*GSM7_BASIC, *GSM7_EXTENSION, "é", "€", "中", "\U0001f600", "\u2019"]


@given(st.text(alphabet=st.sampled_from(_MIXED), max_size=700))
def test_segment_boundaries_follow_each_characters_cost(text: str) -> None:
    """segment() takes whole-string shortcuts (no extension character, all in
    the BMP); the pieces must be those the per-character costs give."""
    message = segment(text)
    gsm = message.encoding is Encoding.GSM7
    single, multi = (160, 153) if gsm else (70, 67)
    costs = [(2 if c in GSM7_EXTENSION else 1) if gsm else (2 if ord(c) > 0xFFFF else 1)
             for c in message.text]  # fmt: skip
    expected: list[tuple[int, int]] = []  # (start, units) of each piece
    if sum(costs) <= single:
        expected = [(0, sum(costs))]
    else:
        start = used = 0
        for index, cost in enumerate(costs):
            if used + cost > multi:
                expected.append((start, used))
                start, used = index, 0
            used += cost
        expected.append((start, used))
    assert list(zip(message.starts, message.units, strict=True)) == expected
    assert "".join(message.segments) == message.text
    assert b"".join(message.payloads()) == (encode_gsm7 if gsm else encode_ucs2)(message.text)
