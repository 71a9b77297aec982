"""WAV decoding and encoding over bytes, and resampling to the 8 kHz media rate.

Pure: it takes and returns bytes and arrays; the caller reads and writes the
files. Accepts what operators actually have: PCM 8/16/24/32-bit, IEEE float,
G.711 mu-law and A-law, WAVE_FORMAT_EXTENSIBLE, mono or multichannel (mixed
down), any sample rate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from math import gcd

import numpy as np
from numpy.typing import NDArray
from scipy.signal import resample_poly

from dsp.g711 import alaw_decode, ulaw_decode

MEDIA_RATE = 8000

_PCM, _FLOAT, _ALAW, _ULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


class WavError(ValueError):
    """The bytes are not a WAV file this module can decode; says why."""


@dataclass(frozen=True, slots=True)
class WavInfo:
    format: str  # "pcm", "float", "alaw", "ulaw"
    sample_rate: int
    channels: int
    bits: int
    frames: int


def _chunks(data: bytes) -> dict[bytes, bytes]:
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    if data[:4] == b"RIFX":
        raise WavError("big-endian RIFX files are not supported")
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        chunks.setdefault(cid, body)
        pos += 8 + size + (size & 1)
    if b"fmt " not in chunks:
        raise WavError("no 'fmt ' chunk")
    if b"data" not in chunks:
        raise WavError("no 'data' chunk")
    return chunks


def _format(fmt: bytes) -> tuple[str, int, int, int]:
    if len(fmt) < 16:
        raise WavError(f"'fmt ' chunk too short ({len(fmt)} bytes)")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE:
        if len(fmt) < 26:
            raise WavError("WAVE_FORMAT_EXTENSIBLE without its sub-format")
        tag = struct.unpack_from("<H", fmt, 24)[0]
    kinds = {_PCM: "pcm", _FLOAT: "float", _ALAW: "alaw", _ULAW: "ulaw"}
    if tag not in kinds:
        raise WavError(f"unsupported WAV encoding (format tag {tag:#x})")
    if channels < 1 or rate < 1:
        raise WavError(f"invalid WAV header: {channels} channels at {rate} Hz")
    kind = kinds[tag]
    valid = {"pcm": (8, 16, 24, 32), "float": (32, 64), "alaw": (8,), "ulaw": (8,)}[kind]
    if bits not in valid:
        raise WavError(f"unsupported {kind} sample size: {bits} bits")
    return kind, channels, rate, bits


def _samples(kind: str, bits: int, raw: bytes) -> NDArray[np.float64]:
    """Samples scaled to the int16 range, as float64."""
    if kind == "ulaw":
        return ulaw_decode(raw).astype(np.float64)
    if kind == "alaw":
        return alaw_decode(raw).astype(np.float64)
    if kind == "float":
        dtype = np.float32 if bits == 32 else np.float64
        return np.frombuffer(raw, dtype=dtype).astype(np.float64) * 32767.0
    if bits == 8:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    if bits == 16:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float64) / 256.0
    return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0


def decode_wav(data: bytes) -> tuple[NDArray[np.float64], WavInfo]:
    """Decode WAV bytes into mono samples (int16 scale, float64) and their info."""
    chunks = _chunks(data)
    kind, channels, rate, bits = _format(chunks[b"fmt "])
    frame_bytes = channels * bits // 8
    raw = chunks[b"data"]
    raw = raw[: len(raw) - len(raw) % frame_bytes]
    samples = _samples(kind, bits, raw)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    info = WavInfo(kind, rate, channels, bits, len(samples))
    return samples, info


def resample(
    samples: NDArray[np.float64], rate: int, target: int = MEDIA_RATE
) -> NDArray[np.float64]:
    """Polyphase resampling (anti-aliased) from `rate` to `target` Hz."""
    if rate == target or len(samples) == 0:
        return samples
    g = gcd(rate, target)
    return np.asarray(resample_poly(samples, target // g, rate // g), dtype=np.float64)


def to_int16(samples: NDArray[np.float64]) -> NDArray[np.int16]:
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


def load_media_audio(data: bytes) -> NDArray[np.int16]:
    """Any supported WAV as 8 kHz mono int16, ready to be framed and sent."""
    samples, info = decode_wav(data)
    return to_int16(resample(samples, info.sample_rate))


def encode_wav(pcm: NDArray[np.int16], rate: int = MEDIA_RATE) -> bytes:
    """Mono PCM16 WAV bytes."""
    body = np.asarray(pcm, dtype="<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + len(body), b"WAVE", b"fmt ", 16, _PCM, 1, rate, rate * 2, 2, 16,
        b"data", len(body),
    )  # fmt: skip
    return header + body
