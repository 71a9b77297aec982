"""G.711 mu-law and A-law companding with numpy lookup tables.

Both laws are built once, at import, from the segment definition of ITU-T
G.711 (1988) tables 1a/2a: a 65,536-entry encode table indexed by the int16
sample reinterpreted as uint16, and a 256-entry decode table.  Encoding and
decoding a 160-sample frame is then one fancy-indexing operation.

Mapping 16-bit two's complement input onto the sign-magnitude input of G.711
follows the ITU-T G.191 software tools: a negative sample is taken in one's
complement (``~x``), so ``x`` and ``-1 - x`` share a magnitude and the
quantiser is symmetric around -0.5.  (The classic Sun ``g711.c`` and Python's
``audioop`` negate instead, which differs for negative mu-law samples by one
14-bit step; those are not bit-exact with the ITU reference.)

``audioop`` is not used: it was removed in Python 3.13.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_SILENCE",
    "ULAW_SILENCE",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

ULAW_SILENCE: Final[int] = 0xFF
"""mu-law code of a zero sample (positive zero, all bits inverted)."""

ALAW_SILENCE: Final[int] = 0xD5
"""A-law code of a zero sample (positive, segment 0, even bits inverted)."""

# G.711 mu-law: the biased 14-bit magnitude is clipped to 13 bits (8191).
_ULAW_BIAS: Final = 33
_ULAW_CLIP: Final = 0x1FFF


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its uint16 bit pattern (the table index)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _bit_length(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Vectorised ``int.bit_length`` for non-negative values below 2**15."""
    length = np.zeros(values.shape, dtype=np.int32)
    for bit in range(15):
        length += (values >> bit) > 0
    return length


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x = _all_int16()
    # G.191: one's complement of negative samples, then the 14 MSBs.
    magnitude = (x ^ (x >> 31)) >> 2
    biased = np.minimum(magnitude + _ULAW_BIAS, _ULAW_CLIP)
    # Biased magnitudes 33..8191 span bit lengths 6..13: segments 0..7, each
    # segment doubling the step (G.711 table 2a).
    segment = _bit_length(biased) - 6
    step_index = (biased >> (segment + 1)) & 0x0F
    positive = (x >= 0).astype(np.int32)
    code = (positive << 7) | (segment << 4) | step_index
    # G.711: the sign bit is 1 for positive and sent as is; the seven other
    # bits are sent inverted, which makes +0 the all-ones character 0xFF.
    table: npt.NDArray[np.uint8] = (code ^ 0x7F).astype(np.uint8)
    return table


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0xFF
    negative = (code & 0x80) != 0
    segment = (code >> 4) & 0x07
    step_index = code & 0x0F
    # Reconstruction value is the middle of the decision interval, in the
    # biased domain: ((2m + 33) << seg) - 33, scaled from 14 to 16 bits.
    magnitude = (((2 * step_index + _ULAW_BIAS) << segment) - _ULAW_BIAS) << 2
    table: npt.NDArray[np.int16] = np.where(negative, -magnitude, magnitude).astype(np.int16)
    return table


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = _all_int16()
    # 13-bit A-law input: sign plus a 12-bit magnitude (G.191 one's complement).
    magnitude = (x ^ (x >> 31)) >> 3
    # Segments 0 and 1 share step 2; segment s >= 1 covers [16 << s, 32 << s).
    segment = np.maximum(_bit_length(magnitude) - 5, 0)
    shift = np.maximum(segment, 1)
    step_index = (magnitude >> shift) & 0x0F
    positive = (x >= 0).astype(np.int32)
    code = (positive << 7) | (segment << 4) | step_index
    # G.711 A-law: the even bits of the character are inverted on the line.
    table: npt.NDArray[np.uint8] = (code ^ 0x55).astype(np.uint8)
    return table


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    positive = (code & 0x80) != 0
    segment = (code >> 4) & 0x07
    step_index = code & 0x0F
    shift = np.maximum(segment, 1)
    base = np.where(segment == 0, 0, 16 << segment)
    # Middle of the interval (half a step above its start), 12 -> 16 bits.
    magnitude = (base + (step_index << shift) + (1 << (shift - 1))) << 3
    table: npt.NDArray[np.int16] = np.where(positive, magnitude, -magnitude).astype(np.int16)
    return table


_ULAW_ENCODE: Final = _build_ulaw_encode()
_ULAW_DECODE: Final = _build_ulaw_decode()
_ALAW_ENCODE: Final = _build_alaw_encode()
_ALAW_DECODE: Final = _build_alaw_decode()
for _table in (_ULAW_ENCODE, _ULAW_DECODE, _ALAW_ENCODE, _ALAW_DECODE):
    _table.flags.writeable = False


def _as_uint16_index(pcm: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """View int16 samples as table indices; other dtypes are clipped first."""
    samples = np.asarray(pcm)
    if samples.dtype != np.int16:
        samples = np.clip(samples, -32768, 32767).astype(np.int16)
    return samples.view(np.uint16)


def _as_codes(data: bytes | bytearray | memoryview | npt.ArrayLike) -> npt.NDArray[np.uint8]:
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8)


def ulaw_encode(pcm: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Encode int16 linear PCM to G.711 mu-law codes (one byte per sample).

    Non-int16 input is clipped to the int16 range and cast (floats truncate).
    """
    return _ULAW_ENCODE[_as_uint16_index(pcm)]


def ulaw_decode(data: bytes | bytearray | memoryview | npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Decode G.711 mu-law codes (bytes or uint8 array) to int16 linear PCM."""
    return _ULAW_DECODE[_as_codes(data)]


def alaw_encode(pcm: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Encode int16 linear PCM to G.711 A-law codes (one byte per sample).

    Non-int16 input is clipped to the int16 range and cast (floats truncate).
    """
    return _ALAW_ENCODE[_as_uint16_index(pcm)]


def alaw_decode(data: bytes | bytearray | memoryview | npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Decode G.711 A-law codes (bytes or uint8 array) to int16 linear PCM."""
    return _ALAW_DECODE[_as_codes(data)]
