"""G.711 against an independent scalar reference written from the standard.

The reference works on the decision and reconstruction values of ITU-T G.711
tables 1a (A-law) and 2a (mu-law), not on the bit tricks of the module: it
searches the segment whose decision interval holds the magnitude, then the
step inside it.  Input mapping from 16-bit two's complement follows ITU-T
G.191: the sign, and the magnitude of the one's complement for negatives.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsp.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


def _sign_and_magnitude(x: int, drop_bits: int) -> tuple[int, int]:
    """(1 for positive/zero, magnitude) of the (16 - drop_bits)-bit G.711 input."""
    if x >= 0:
        return 1, x // (1 << drop_bits)
    return 0, (-x - 1) // (1 << drop_bits)


# --- mu-law (G.711 table 2a), 14-bit input: magnitude 0..8191 --------------
# Segment k (0..7) starts at decision value 32 * 2**k - 33 (i.e. -1, 31, 95,
# 223, 479, 991, 2015, 4063) and has 16 steps of 2**(k + 1); the first
# interval of segment 0 is [0, 1) (decision values 0, 1, 3, 5, ... 8159).


def _ulaw_segment_start(k: int) -> int:
    return (32 << k) - 33


def ref_ulaw_encode(x: int) -> int:
    sign, m = _sign_and_magnitude(x, 2)
    k = max(seg for seg in range(8) if m >= _ulaw_segment_start(seg))
    step = 2 ** (k + 1)
    j = min((m - _ulaw_segment_start(k)) // step, 15)  # beyond 8159: the last step
    code = (sign << 7) | (k << 4) | j
    return code ^ 0x7F  # bits other than the sign are transmitted inverted


def ref_ulaw_decode(code: int) -> int:
    c = code ^ 0x7F
    sign, k, j = c >> 7, (c >> 4) & 7, c & 15
    step = 2 ** (k + 1)
    # Reconstruction value: the middle of the interval [start + j*step, + step).
    value14 = _ulaw_segment_start(k) + j * step + step // 2
    value = 4 * value14
    return value if sign else -value


# --- A-law (G.711 table 1a), 13-bit input: magnitude 0..4095 ---------------
# Segment 0 covers 0..31 with steps of 2; segment k >= 1 covers
# [16 * 2**k, 32 * 2**k) with 16 steps of 2**k.  Even bits are inverted.


def ref_alaw_encode(x: int) -> int:
    sign, m = _sign_and_magnitude(x, 3)
    if m < 32:
        k, j = 0, m // 2
    else:
        k = max(seg for seg in range(1, 8) if m >= 16 * 2**seg)
        j = (m - 16 * 2**k) // 2**k
    return ((sign << 7) | (k << 4) | j) ^ 0x55


def ref_alaw_decode(code: int) -> int:
    c = code ^ 0x55
    sign, k, j = c >> 7, (c >> 4) & 7, c & 15
    if k == 0:
        start, step = 0, 2
    else:
        start, step = 16 * 2**k, 2**k
    value = 8 * (start + j * step + step // 2)
    return value if sign else -value


def test_ulaw_encode_matches_reference_for_every_int16() -> None:
    expected = np.array([ref_ulaw_encode(int(x)) for x in ALL_INT16], dtype=np.uint8)
    got = ulaw_encode(ALL_INT16)
    assert got.dtype == np.uint8
    mismatches = np.flatnonzero(got != expected)
    assert mismatches.size == 0, f"first mismatch at {ALL_INT16[mismatches[0]]}"


def test_alaw_encode_matches_reference_for_every_int16() -> None:
    expected = np.array([ref_alaw_encode(int(x)) for x in ALL_INT16], dtype=np.uint8)
    got = alaw_encode(ALL_INT16)
    assert got.dtype == np.uint8
    mismatches = np.flatnonzero(got != expected)
    assert mismatches.size == 0, f"first mismatch at {ALL_INT16[mismatches[0]]}"


def test_decoders_match_reference_for_every_code() -> None:
    ulaw = ulaw_decode(ALL_CODES)
    alaw = alaw_decode(ALL_CODES)
    assert ulaw.dtype == np.int16
    assert alaw.dtype == np.int16
    assert ulaw.tolist() == [ref_ulaw_decode(c) for c in range(256)]
    assert alaw.tolist() == [ref_alaw_decode(c) for c in range(256)]


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (0x00, -32124),
        (0x80, 32124),
        (0xFF, 0),
        (0x7F, 0),
        (0xFE, 8),
        (0x7E, -8),
        (0xF0, 120),
        (0xEF, 132),
    ],
)
def test_ulaw_decode_spot_values(code: int, value: int) -> None:
    assert int(ulaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xD5, 8), (0x55, -8), (0x2A, -32256), (0xAA, 32256), (0xD4, 24), (0xC5, 264)],
)
def test_alaw_decode_spot_values(code: int, value: int) -> None:
    assert int(alaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7F, 0x55),  # one's complement: -1 is the negative zero step
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (8, 0xFE, 0xD5),  # mu-law: 14-bit 2 lies in [1, 3), step 1
    ],
)
def test_encode_spot_values(sample: int, ulaw: int, alaw: int) -> None:
    pcm = np.array([sample], dtype=np.int16)
    assert int(ulaw_encode(pcm)[0]) == ulaw
    assert int(alaw_encode(pcm)[0]) == alaw


def test_silence_constants_are_the_codes_of_zero() -> None:
    zero = np.zeros(1, dtype=np.int16)
    assert int(ulaw_encode(zero)[0]) == ULAW_SILENCE == 0xFF
    assert int(alaw_encode(zero)[0]) == ALAW_SILENCE == 0xD5
    assert int(ulaw_decode(bytes([ULAW_SILENCE]))[0]) == 0


def test_round_trip_error_bounds() -> None:
    x = ALL_INT16.astype(np.int64)
    mag = np.abs(x)
    u_err = np.abs(ulaw_decode(ulaw_encode(ALL_INT16)).astype(np.int64) - x)
    a_err = np.abs(alaw_decode(alaw_encode(ALL_INT16)).astype(np.int64) - x)
    # Half a quantisation step: 4 in the first mu-law segment, 8 in the first
    # two A-law segments, then about 1/32 of the magnitude (~1/16 for mu-law
    # near segment starts); overload clips to the largest output value.
    in_range = mag <= 32124
    assert np.all(u_err[in_range] <= 4 + mag[in_range] / 16)
    assert np.all(u_err[~in_range] == mag[~in_range] - 32124)
    assert np.all(a_err <= np.maximum(8, mag / 32))
    assert u_err.max() <= 644
    assert a_err.max() <= 512


def test_decode_then_encode_is_identity_except_negative_zero() -> None:
    assert np.array_equal(alaw_encode(alaw_decode(ALL_CODES)), ALL_CODES)
    back = ulaw_encode(ulaw_decode(ALL_CODES))
    differs = np.flatnonzero(back != ALL_CODES).tolist()
    assert differs == [0x7F]  # -0 decodes to 0, which encodes as +0
    assert back[0x7F] == 0xFF


def test_encoding_is_monotonic_in_the_linear_value() -> None:
    # Larger input never decodes to a smaller output.
    for decode, encode in ((ulaw_decode, ulaw_encode), (alaw_decode, alaw_encode)):
        out = decode(encode(ALL_INT16)).astype(np.int32)
        assert np.all(np.diff(out) >= 0)


def test_accepts_bytes_arrays_and_other_dtypes() -> None:
    codes = bytes(range(256))
    assert np.array_equal(ulaw_decode(codes), ulaw_decode(np.frombuffer(codes, np.uint8)))
    assert np.array_equal(alaw_decode(bytearray(codes)), alaw_decode(ALL_CODES))
    wide = np.array([40000, -40000, 100], dtype=np.int32)  # clipped to int16 first
    assert (
        ulaw_encode(wide).tolist() == ulaw_encode(np.array([32767, -32768, 100], np.int16)).tolist()
    )
    frame = np.zeros(160, dtype=np.int16)
    assert ulaw_encode(frame).tobytes() == bytes([ULAW_SILENCE]) * 160
    assert alaw_encode(frame).tobytes() == bytes([ALAW_SILENCE]) * 160


def test_frame_shape_is_preserved() -> None:
    block = np.arange(-800, 800, dtype=np.int16).reshape(10, 160)
    assert ulaw_encode(block).shape == (10, 160)
    assert alaw_decode(alaw_encode(block)).shape == (10, 160)


def test_module_does_not_use_audioop() -> None:
    import dsp.g711 as module

    source = open(module.__file__, encoding="utf-8").read()
    assert "import audioop" not in source
