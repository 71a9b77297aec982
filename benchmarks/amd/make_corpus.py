"""Build the labelled answering-machine-detection corpus (issue 4, section 3).

    python -m benchmarks.amd.make_corpus [--seed 2] [--count 1200] [--out var/amd-corpus]

Deterministic from ``--seed``: clip ``i`` draws everything from its own
generators seeded with ``(seed, i)``, so the output does not depend on how the
work is split between processes. Speech comes from espeak-ng (many voices and
variants, rates 120-220 wpm, pitches 20-80) and from the real 8 kHz recordings
of Debian's ``asterisk-core-sounds-en-wav``; espeak output is cached under
``--cache`` (shared by corpora built with other seeds).

Classes and what they contain:

- human: short answers ("Hello?", "Yeah?", "Hi, this is Sam"), the hard
  "hello ... (pause) ... hello?", business answers, the real ``hello.wav``;
  a quarter with background noise (babble or modulated noise);
- machine: personal greetings of 3 to 15 s, a short greeting followed by a
  pause and more speech, carrier voicemail messages (espeak and Asterisk
  prompts); 60 % end with a beep of 400 to 2000 Hz lasting 0.1 to 1 s;
- fax (CNG or CED, some CED with phase reversals), sit (three-segment SIT then
  an announcement), silence (line noise only).

The channel: 300-3400 Hz band-pass, speech levels -35 to -10 dBFS, noise at 5
to 30 dB SNR, PCM or a mu-law or A-law round trip, 0 to 5 % lost frames (random
or in bursts, filled with silence as a jitter buffer does), 0 to 3 s of silence
between the answer and the first word.

Output: ``clips/NNNNN.wav`` (8 kHz mono PCM16) and ``labels.jsonl``, one
object per clip with its truth (times in seconds from the answer).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.signal import butter, lfilter, sosfilt

from dsp.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from dsp.wav import decode_wav, encode_wav, load_media_audio, resample

RATE = 8000
FRAME = 160
SOUNDS = Path("/usr/share/asterisk/sounds/en")
INSTALL_HINT = "apt-get install espeak-ng asterisk-core-sounds-en-wav"
CORPUS_VERSION = 1

Audio = NDArray[np.float64]

# --------------------------------------------------------------------------- voices and texts

BASE_VOICES = [
    "en-us", "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
]  # fmt: skip
VARIANTS = [
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt",
    "klatt2", "klatt3", "Alex", "Andy", "Annie", "aunty", "belinda", "benjamin", "david",
    "ed", "edward", "grandma", "grandpa", "john", "linda", "michael", "Mike", "paul",
    "robert", "shelby", "steph", "travis", "victor", "zac", "iven", "quincy", "rob",
]  # fmt: skip
NAMES = [
    "Sam", "Maria", "John", "Priya", "Dave", "Linda", "Carlos", "Mei", "Tom", "Aisha",
    "Kevin", "Sarah", "Olga", "Ahmed", "Rachel", "Peter", "Grace", "Luis", "Hannah", "Ben",
]  # fmt: skip
FAMILIES = ["Smith", "Garcia", "Johnson", "Nguyen", "Miller", "Patel", "Brown", "Kowalski"]
COMPANIES = [
    "Acme Dental", "Riverside Plumbing", "Smith and Partners", "Northside Auto",
    "Green Valley Clinic", "Bright Solar", "City Florist", "Oak Street Vets",
]  # fmt: skip

SHORT_ANSWERS = [
    "Hello?", "Hello.", "Yeah?", "Yes?", "Hi.", "Hi, this is {name}.", "Hello, {name} speaking.",
    "Yes, hello?", "Hey.", "Speaking.", "Hello, who is this?", "Good morning.", "Hi there.",
    "Yep?", "Hello, this is {name}.", "{name} speaking.", "Hello?", "Yeah, hello?", "Hiya.",
]  # fmt: skip
BUSINESS_ANSWERS = [
    "{company}, this is {name}, how can I help?",
    "Good morning, {company}, {name} speaking.",
    "{company}, how may I help you?",
    "Thank you for calling {company}, this is {name}.",
    "{company}, {name} speaking.",
    "{company}, can I help you?",
]
FOLLOW_UPS = ["Hello?", "Hello? Anyone there?", "Yes? Hello?", "Is anyone there?", "Hello?"]

GREETING_OPENERS = [
    "Hi, you've reached {name}.", "Hello, this is {name}.", "Hey, it's {name}.",
    "You have reached the {family} residence.", "Hi, this is {name} and {name2}.",
    "Hello, you've reached {digits}.", "Hi, thanks for calling {name}.",
    "Hello, you have reached {name} {family}.",
]  # fmt: skip
GREETING_MIDDLES = [
    "I can't come to the phone right now.",
    "We're not available to take your call at the moment.",
    "Sorry I missed your call.",
    "I'm either on the other line or away from my desk.",
    "Our office hours are Monday to Friday, nine to five.",
    "If this is urgent, please call my cell phone.",
    "I'm away until Monday, and I will be checking messages only occasionally.",
    "We are probably out in the garden, or walking the dog.",
]
GREETING_CLOSINGS = [
    "Please leave a message after the beep.",
    "Leave your name and number and I'll get back to you as soon as possible.",
    "Leave a message and I'll call you back.",
    "Thanks, and have a great day.",
    "Please leave a message, bye!",
    "At the tone, leave your name, number, and a short message.",
]
TEASERS = ["Hello?", "Hi!", "Hello.", "Hey, it's {name}.", "Hello, this is {name}.", "Yeah?"]
TEASER_RESTS = [
    "Sorry, I can't take your call right now. Leave a message.",
    "Just kidding, I'm not here. Leave a message after the beep.",
    "This is my voicemail. Please leave your name and number.",
    "I'm not available right now, but leave a message and I'll call you back.",
]
CARRIER_TEXTS = [
    "The person you are calling is not available. At the tone, please record your message.",
    "The wireless customer you are calling is not available. Please leave a message "
    "after the tone.",
    "Your call has been forwarded to an automatic voice message system. {digits} is not "
    "available. At the tone, please record your message. When you have finished "
    "recording, you may hang up.",
    "The mailbox of {digits} is not available. Please leave your message after the tone.",
    "Please leave your message for {digits} after the tone.",
]
BABBLE_TEXT = " ".join(GREETING_MIDDLES)
SIT_ANNOUNCEMENTS = [
    "The number you have dialed is not in service. Please check the number and try again.",
    "We're sorry, your call cannot be completed as dialed.",
    "All circuits are busy now. Please try your call again later.",
]
# North American SIT codes (Telcordia GR-1162 / ANSI T1.209): per segment, a
# low or high frequency and a short (276 ms) or long (380 ms) duration.
SIT_FREQS = ((913.8, 985.2), (1370.6, 1428.5), (1776.7, 1776.7))
SIT_CODES = {
    "intercept": ("LS", "LS", "LL"),
    "vacant_code": ("HL", "LS", "LL"),
    "reorder": ("LS", "HL", "LL"),
    "no_circuit": ("HL", "HL", "LL"),
    "ineffective_other": ("LL", "HS", "LL"),
}


def _digits(rng: random.Random) -> str:
    return " ".join(str(rng.randrange(10)) for _ in range(rng.choice((4, 7, 10))))


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        name=rng.choice(NAMES),
        name2=rng.choice(NAMES),
        family=rng.choice(FAMILIES),
        company=rng.choice(COMPANIES),
        digits=_digits(rng),
    )


# --------------------------------------------------------------------------- speech sources


@dataclass(frozen=True)
class Voice:
    name: str
    rate: int
    pitch: int

    def describe(self) -> str:
        return f"{self.name} s{self.rate} p{self.pitch}"


BABBLE_VOICES = [
    Voice("en-us+m3", 170, 40), Voice("en-gb+f2", 160, 60), Voice("en-us+f4", 190, 55),
    Voice("en-gb-scotland+m1", 150, 35), Voice("en-029+f1", 180, 70), Voice("en-us-nyc", 200, 45),
]  # fmt: skip


def _random_voice(rng: random.Random, rate: tuple[int, int] = (120, 220)) -> Voice:
    variant = rng.choice(VARIANTS)
    base = rng.choice(BASE_VOICES)
    return Voice(f"{base}+{variant}" if variant else base, rng.randint(*rate), rng.randint(20, 80))


def _trim(x: Audio, floor_db: float = 40.0) -> Audio:
    """Cut leading and trailing silence (10 ms blocks more than 40 dB below the peak)."""
    block = RATE // 100
    n = len(x) // block
    if n == 0:
        return x
    power = (x[: n * block].reshape(n, block) ** 2).mean(axis=1)
    active = np.flatnonzero(power > power.max() * 10 ** (-floor_db / 10))
    return x[active[0] * block : (active[-1] + 1) * block].copy()


class Speech:
    """espeak-ng synthesis (cached on disk) and the Asterisk recordings, as 8 kHz floats."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache

    def say(self, text: str, voice: Voice) -> Audio:
        key = hashlib.sha1(f"{voice.describe()}|{text}".encode()).hexdigest()
        path = self.cache / key[:2] / f"{key}.npy"
        if path.exists():
            return np.asarray(np.load(path), dtype=np.float64)
        out = subprocess.run(
            ["espeak-ng", "-v", voice.name, "-s", str(voice.rate), "-p", str(voice.pitch),
             "--stdout", text],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        samples, info = decode_wav(out)
        # Cached as int16; the first run returns the same rounded samples as later ones.
        audio = np.clip(np.rint(_trim(resample(samples, info.sample_rate))), -32768, 32767)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, audio.astype(np.int16))
        tmp.replace(path)
        return audio

    @staticmethod
    @cache
    def recording(name: str) -> Audio:
        data = (SOUNDS / f"{name}.wav").read_bytes()
        return _trim(load_media_audio(data).astype(np.float64))


# --------------------------------------------------------------------------- scenes


@dataclass
class Scene:
    """The clean content of one clip before the channel, and its truth."""

    kind: str
    cls: str
    speech: list[tuple[float, Audio]] = field(default_factory=list)
    tones: list[tuple[float, Audio]] = field(default_factory=list)  # relative to speech level
    duration: float = 0.0
    truth: dict[str, Any] = field(default_factory=dict)

    def add_speech(self, start: float, audio: Audio) -> float:
        self.speech.append((start, audio))
        return start + len(audio) / RATE

    def segments(self) -> list[list[float]]:
        return [[round(s, 3), round(s + len(a) / RATE, 3)] for s, a in self.speech]


def _initial_silence(rng: random.Random) -> float:
    # Most people and machines speak within about a second of the answer; a
    # fifth wait longer, up to 3 s.
    return rng.uniform(0.0, 1.2) if rng.random() < 0.8 else rng.uniform(1.2, 3.0)


def _human(rng: random.Random, speech: Speech) -> Scene:
    voice = _random_voice(rng)
    kind = rng.choices(["short", "hello_pause_hello", "business", "recording"], [45, 20, 20, 15])[0]
    scene = Scene(kind, "human")
    t = _initial_silence(rng)
    texts: list[str] = []
    if kind == "recording":
        first = Speech.recording("hello")
        texts.append("hello.wav")
    elif kind == "business":
        voice = _random_voice(rng, rate=(160, 220))  # rote phrases are said quickly
        texts.append(_fill(rng.choice(BUSINESS_ANSWERS), rng))
        first = speech.say(texts[-1], voice)
    elif kind == "hello_pause_hello":
        texts.append(rng.choice(["Hello", "Hello?", "Hello.", "Yes"]))
        first = speech.say(texts[-1], voice)
    else:
        texts.append(_fill(rng.choice(SHORT_ANSWERS), rng))
        first = speech.say(texts[-1], voice)
    end = scene.add_speech(t, first)
    scene.truth.update(first_speech_start=t, first_speech_end=end, greeting_end=end)
    if kind == "hello_pause_hello":
        texts.append(rng.choice(["Hello?", "Hello? Hello?", "Hello, anyone there?"]))
        end = scene.add_speech(end + rng.uniform(0.6, 2.0), speech.say(texts[-1], voice))
    elif rng.random() < 0.5:
        # Nobody answered them: a second "Hello?" after a wait.
        if kind == "recording":
            texts.append("hello.wav")
            again = Speech.recording("hello")
        else:
            texts.append(rng.choice(FOLLOW_UPS))
            again = speech.say(texts[-1], voice)
        end = scene.add_speech(end + rng.uniform(1.5, 3.0), again)
    scene.duration = end + rng.uniform(1.5, 3.0)
    scene.truth.update(voice=voice.describe() if kind != "recording" else "asterisk", texts=texts)
    return scene


def _greeting_sentences(rng: random.Random) -> list[str]:
    sentences = [_fill(rng.choice(GREETING_OPENERS), rng)]
    middles = rng.sample(GREETING_MIDDLES, rng.choice((0, 1, 1, 2, 3)))
    sentences += [_fill(m, rng) for m in middles]
    sentences.append(_fill(rng.choice(GREETING_CLOSINGS), rng))
    return sentences


def _say_all(
    scene: Scene, start: float, parts: list[Audio], rng: random.Random, gap: tuple[float, float]
) -> float:
    t = start
    for i, audio in enumerate(parts):
        if i:
            t += rng.uniform(*gap)
        t = scene.add_speech(t, audio)
    return t


def _machine_greeting(scene: Scene, rng: random.Random, speech: Speech, t: float) -> float:
    """Speak the greeting from `t`; returns its end and records the texts."""
    voice = _random_voice(rng)
    if scene.kind == "personal":
        texts = _greeting_sentences(rng)
        parts = [speech.say(s, voice) for s in texts]
        # Keep the greeting between 3 and 15 s of audio.
        while sum(len(p) for p in parts) / RATE > 13.5 and len(parts) > 2:
            del texts[1], parts[1]
        while sum(len(p) for p in parts) / RATE < 3.0:
            texts.insert(1, rng.choice(GREETING_MIDDLES))
            parts.insert(1, speech.say(texts[1], voice))
        end = _say_all(scene, t, parts, rng, (0.15, 0.7))
    elif scene.kind == "short_pause_more":
        texts = [_fill(rng.choice(TEASERS), rng), rng.choice(TEASER_RESTS)]
        first = scene.add_speech(t, speech.say(texts[0], voice))
        end = scene.add_speech(first + rng.uniform(0.3, 1.0), speech.say(texts[1], voice))
    elif scene.kind == "carrier_recording":
        names = rng.choice(
            [["vm-theperson", *(f"digits/{d}" for d in rng.choices("0123456789", k=4)),
              "vm-isunavail", "vm-intro"],
             ["vm-nobodyavail", "vm-intro"],
             ["number-not-answering", "vm-intro"],
             ["vm-theperson", *(f"digits/{d}" for d in rng.choices("0123456789", k=4)),
              "vm-isonphone", "vm-intro"]]
        )  # fmt: skip
        texts = [f"{n}.wav" for n in names]
        parts = [Speech.recording(n) for n in names]
        end = _say_all(scene, t, parts, rng, (0.05, 0.35))
        voice = Voice("asterisk", 0, 0)
    else:  # carrier_tts: a formal synthetic voice reading a network message
        voice = _random_voice(rng, rate=(140, 190))
        texts = [_fill(rng.choice(CARRIER_TEXTS), rng)]
        end = scene.add_speech(t, speech.say(texts[0], voice))
    scene.truth.update(texts=texts, voice=voice.describe())
    return end


def _tone(freq: float | tuple[float, ...], seconds: float, rng: random.Random) -> Audio:
    """Unit-RMS tone (sum of sines) with 5 ms raised-cosine edges."""
    n = round(seconds * RATE)
    tt = np.arange(n) / RATE
    freqs = (freq,) if isinstance(freq, float | int) else freq
    x = sum(np.sin(2 * np.pi * f * tt + rng.uniform(0, 2 * np.pi)) for f in freqs)
    x = np.asarray(x, dtype=np.float64)
    ramp = min(40, n // 2)
    if ramp:
        edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        x[:ramp] *= edge
        x[n - ramp :] *= edge[::-1]
    return x / math.sqrt(len(freqs) / 2)


def _machine(rng: random.Random, speech: Speech) -> Scene:
    kind = rng.choices(
        ["personal", "short_pause_more", "carrier_recording", "carrier_tts"], [45, 20, 15, 20]
    )[0]
    scene = Scene(kind, "machine")
    t = _initial_silence(rng)
    end = _machine_greeting(scene, rng, speech, t)
    segs = scene.segments()
    scene.truth.update(first_speech_start=t, first_speech_end=segs[0][1], greeting_end=end)
    if rng.random() < 0.6:
        start = end + rng.uniform(0.2, 1.0)
        if rng.random() < 0.15:
            beep, freq = Speech.recording("beep"), 700.0
            beep = beep / np.sqrt(np.mean(beep**2))
        else:
            freq = rng.uniform(400.0, 2000.0)
            beep = _tone(freq, rng.uniform(0.1, 1.0), rng)
        gain = 10 ** (rng.uniform(-6.0, 3.0) / 20)
        scene.tones.append((start, beep * gain))
        stop = start + len(beep) / RATE
        scene.truth.update(beep_start=start, beep_end=stop, beep_hz=round(freq, 1))
        end = stop
    scene.duration = end + rng.uniform(1.0, 2.0)
    return scene


def _fax(rng: random.Random) -> Scene:
    kind = rng.choice(["cng", "ced"])
    scene = Scene(kind, "fax")
    t = rng.uniform(0.2, 2.0)
    if kind == "cng":
        # T.30: 1100 Hz, 0.5 s on, 3 s off.
        while t < 6.0:
            scene.tones.append((t, _tone(1100.0, 0.5, rng)))
            t += 3.5
        scene.duration = t - 3.0 + rng.uniform(1.0, 2.0)
    else:
        # V.25 answer tone: 2100 Hz for 2.6 to 4 s; with phase reversals every
        # 450 ms in the V.8/T.30 echo-canceller-disabling variant.
        seconds = rng.uniform(2.6, 4.0)
        ced = _tone(2100.0, seconds, rng)
        if rng.random() < 0.4:
            flips = (np.arange(len(ced)) // round(0.45 * RATE)) % 2 == 1
            ced[flips] *= -1
            scene.truth["phase_reversals"] = True
        scene.tones.append((t, ced))
        scene.duration = t + seconds + rng.uniform(1.0, 2.0)
    scene.truth.update(tone_start=scene.tones[0][0])
    return scene


def _sit(rng: random.Random, speech: Speech) -> Scene:
    code = rng.choice(sorted(SIT_CODES))
    scene = Scene("sit", "sit")
    t = rng.uniform(0.1, 1.5)
    scene.truth.update(tone_start=t, sit_code=code)
    for (low, high), spec in zip(SIT_FREQS, SIT_CODES[code], strict=True):
        seconds = 0.276 if spec[1] == "S" else 0.380
        scene.tones.append((t, _tone(low if spec[0] == "L" else high, seconds, rng)))
        t += seconds
    start = t + rng.uniform(0.1, 0.6)
    if rng.random() < 0.5:
        text = "ss-noservice.wav"
        audio = Speech.recording("ss-noservice")
    else:
        text = rng.choice(SIT_ANNOUNCEMENTS)
        audio = speech.say(text, _random_voice(rng, rate=(140, 180)))
    end = scene.add_speech(start, audio)
    scene.truth.update(
        texts=[text], first_speech_start=start, first_speech_end=end, greeting_end=end
    )
    scene.duration = end + rng.uniform(0.5, 1.5)
    return scene


# --------------------------------------------------------------------------- the channel

_BAND = butter(4, [300.0, 3400.0], btype="bandpass", fs=RATE, output="sos")


def _active_level_db(x: Audio) -> float:
    """Power of the active frames (within 35 dB of the loudest), in dB re int16 full scale."""
    n = len(x) // FRAME
    power = (x[: n * FRAME].reshape(n, FRAME) ** 2).mean(axis=1)
    active = power[power > power.max() * 10**-3.5]
    return 10 * math.log10(float(active.mean()) / 32768.0**2)


def _noise(n: int, rng: np.random.Generator, colour: float) -> Audio:
    white = rng.standard_normal(n)
    brown = lfilter([1.0], [1.0, -0.97], rng.standard_normal(n))
    brown /= np.std(brown) + 1e-12
    return np.asarray((1 - colour) * white + colour * brown, dtype=np.float64)


def _background(
    n: int, rng: random.Random, nrng: np.random.Generator, speech: Speech
) -> tuple[Audio, str]:
    """Babble from three distant talkers or slowly modulated street noise, unit RMS."""
    if rng.random() < 0.5:
        out = np.zeros(n)
        for _ in range(3):
            # A fixed text per talker keeps the espeak cache small; the random
            # offset and voice make each background different.
            talk = speech.say(BABBLE_TEXT, rng.choice(BABBLE_VOICES))
            talk = np.tile(talk, n // len(talk) + 2)
            offset = rng.randrange(len(talk) - n)
            out += talk[offset : offset + n] / (np.std(talk) + 1e-12)
        kind = "babble"
    else:
        out = _noise(n, nrng, 0.7)
        tt = np.arange(n) / RATE
        out *= 1 + 0.6 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * tt)
        kind = "street"
    out = sosfilt(_BAND, out)
    return np.asarray(out / (np.sqrt(np.mean(out**2)) + 1e-12)), kind


def _lose_frames(
    x: NDArray[np.int16], rng: random.Random, fraction: float, bursty: bool
) -> NDArray[np.int16]:
    frames = len(x) // FRAME
    lost = np.zeros(frames, dtype=bool)
    if bursty:
        while lost.mean() < fraction:
            start = rng.randrange(frames)
            lost[start : start + rng.randint(2, 6)] = True
    else:
        lost = np.array([rng.random() < fraction for _ in range(frames)])
    out = x.copy()
    out[: frames * FRAME].reshape(frames, FRAME)[lost] = 0
    return out


def _render(scene: Scene, rng: random.Random, nrng: np.random.Generator, speech: Speech) -> tuple[
    NDArray[np.int16], dict[str, Any]
]:  # fmt: skip
    n = round(scene.duration * RATE)
    clean = np.zeros(n)
    for start, audio in scene.speech:
        i = round(start * RATE)
        clean[i : i + len(audio)] += audio[: n - i]
    level = rng.uniform(-35.0, -10.0)
    ref = 32768.0 * 10 ** (level / 20)  # RMS of the active speech (or of the tones)
    if scene.speech:
        clean *= ref / (32768.0 * 10 ** (_active_level_db(clean) / 20))
    for start, tone in scene.tones:
        i = round(start * RATE)
        clean[i : i + len(tone)] += tone[: n - i] * ref
    channel: dict[str, Any] = {"level_dbfs": round(level, 1)}
    if scene.cls == "human" and rng.random() < 0.25:
        bg, kind = _background(n, rng, nrng, speech)
        below = rng.uniform(15.0, 25.0)
        clean += bg * ref * 10 ** (-below / 20)
        channel.update(background=kind, background_db=round(-below, 1))
    mixed = sosfilt(_BAND, clean)
    if scene.cls == "silence":
        noise_rms = 32768.0 * 10 ** (rng.uniform(-70.0, -45.0) / 20)
        channel.update(snr_db=None, level_dbfs=None)
    else:
        band = rng.choices([(5.0, 10.0), (10.0, 20.0), (20.0, 30.0)], [15, 35, 50])[0]
        snr = rng.uniform(*band)
        noise_rms = ref * 10 ** (-snr / 20)
        channel["snr_db"] = round(snr, 1)
    noise = sosfilt(_BAND, _noise(n, nrng, rng.uniform(0.0, 1.0)))
    mixed += noise * noise_rms / (np.sqrt(np.mean(noise**2)) + 1e-12)
    pcm = np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)
    codec = rng.choice(["pcm", "ulaw", "alaw"])
    if codec == "ulaw":
        pcm = ulaw_decode(ulaw_encode(pcm))
    elif codec == "alaw":
        pcm = alaw_decode(alaw_encode(pcm))
    loss = rng.uniform(0.0, 0.05) if rng.random() < 0.6 else 0.0
    bursty = rng.random() < 0.5
    if loss > 0:
        pcm = _lose_frames(pcm, rng, loss, bursty)
    channel.update(codec=codec, loss=round(loss, 4), loss_kind=("burst" if bursty else "random")
                   if loss else None)  # fmt: skip
    return pcm, channel


# --------------------------------------------------------------------------- one clip


def make_clip(seed: int, index: int, speech: Speech) -> tuple[NDArray[np.int16], dict[str, Any]]:
    """Clip `index` of the corpus for `seed`: its samples and its label."""
    rng = random.Random(f"amd-corpus:{seed}:{index}")
    nrng = np.random.default_rng([seed, index])
    cls = rng.choices(["human", "machine", "fax", "sit", "silence"], [40, 45, 5, 5, 5])[0]
    if cls == "human":
        scene = _human(rng, speech)
    elif cls == "machine":
        scene = _machine(rng, speech)
    elif cls == "fax":
        scene = _fax(rng)
    elif cls == "sit":
        scene = _sit(rng, speech)
    else:
        scene = Scene("silence", "silence", duration=rng.uniform(6.0, 8.0))
    pcm, channel = _render(scene, rng, nrng, speech)
    label: dict[str, Any] = {
        "id": f"{index:05d}",
        "file": f"clips/{index:05d}.wav",
        "class": scene.cls,
        "kind": scene.kind,
        "duration": round(len(pcm) / RATE, 3),
        "first_speech_start": None,
        "first_speech_end": None,
        "greeting_end": None,
        "beep_start": None,
        "beep_end": None,
        "speech": scene.segments(),
    }
    for key, value in scene.truth.items():
        label[key] = round(value, 3) if isinstance(value, float) else value
    label.update(channel)
    return pcm, label


_WORKER: dict[str, Any] = {}


def _init_worker(cache: str, out: str, seed: int) -> None:
    _WORKER.update(speech=Speech(Path(cache)), out=Path(out), seed=seed)


def _work(index: int) -> dict[str, Any]:
    pcm, label = make_clip(_WORKER["seed"], index, _WORKER["speech"])
    (_WORKER["out"] / label["file"]).write_bytes(encode_wav(pcm))
    return label


def check_tools() -> None:
    """Exit with the install command when espeak-ng or the Asterisk sounds are missing."""
    if shutil.which("espeak-ng") is None or not (SOUNDS / "hello.wav").exists():
        sys.exit(f"make_corpus: needs espeak-ng and {SOUNDS}: {INSTALL_HINT}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=2, help="corpus seed (default 2)")
    parser.add_argument("--count", type=int, default=1200, help="number of clips (default 1200)")
    parser.add_argument("--out", type=Path, default=Path("var/amd-corpus"))
    parser.add_argument("--cache", type=Path, default=Path("var/amd-cache"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    check_tools()
    (args.out / "clips").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(
        args.jobs, _init_worker, (str(args.cache), str(args.out), args.seed)
    ) as pool:
        labels = list(pool.imap(_work, range(args.count), chunksize=8))
    with (args.out / "labels.jsonl").open("w") as fh:
        for label in labels:
            fh.write(json.dumps(label, sort_keys=True) + "\n")
    meta = {"seed": args.seed, "count": args.count, "version": CORPUS_VERSION}
    (args.out / "corpus.json").write_text(json.dumps(meta) + "\n")
    counts: dict[str, int] = {}
    for label in labels:
        counts[label["class"]] = counts.get(label["class"], 0) + 1
    seconds = sum(label["duration"] for label in labels)
    print(
        f"{args.count} clips ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}), "
        f"{seconds / 60:.1f} min of audio, in {args.out} ({time.perf_counter() - started:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
