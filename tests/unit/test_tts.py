"""TTS prompts: espeak-ng (the real binary), the disk cache, templates and hostile values.

espeak-ng is a Debian package (`make sysdeps` installs it); without it these
tests fail with the install command rather than skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dsp.wav import load_media_audio
from engine.voice.tts import (
    EspeakNg,
    MissingColumn,
    Pcm,
    TemplateError,
    TtsCache,
    TtsEngine,
    TtsError,
    UnknownVoice,
    fill,
    placeholders,
    split_fixed,
    write_atomic,
)

TEN_WORDS = "Your appointment is on Tuesday at ten in the morning."
VOICE = "en-us"


def _require_espeak() -> EspeakNg:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: sudo apt-get install espeak-ng (or make sysdeps)")
    return EspeakNg()


@pytest.fixture(scope="module")
def espeak() -> EspeakNg:
    return _require_espeak()


class Counting:
    """The real engine, counting its renders (and optionally renamed)."""

    def __init__(self, inner: TtsEngine, name: str | None = None) -> None:
        self.inner = inner
        self._name = name or inner.name
        self.calls: list[str] = []
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def voices(self) -> set[str]:
        return self.inner.voices()

    def render(self, text: str, voice: str, rate: int | None = None) -> Pcm:
        with self._lock:
            self.calls.append(text)
        return self.inner.render(text, voice, rate)


@pytest.fixture
def counting(espeak: EspeakNg) -> Counting:
    return Counting(espeak)


@pytest.fixture
def cache(tmp_path: Path, counting: Counting) -> Iterator[TtsCache]:
    with TtsCache(tmp_path / "tts", counting) as c:
        yield c


# --- the engine ---------------------------------------------------------------------------


def test_espeak_ng_is_installed() -> None:
    engine = _require_espeak()
    assert engine.name.startswith("espeak-ng ")
    assert engine.name != "espeak-ng "  # the version is in the cache key


def test_missing_binary_says_to_install_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match="Debian package espeak-ng"):
        EspeakNg(binary=str(tmp_path / "espeak-ng"))


def test_render_is_8khz_int16_and_lasts_as_long_as_the_text(espeak: EspeakNg) -> None:
    ten = espeak.render(TEN_WORDS, VOICE)
    assert ten.dtype == np.int16 and ten.ndim == 1
    assert 2.0 <= len(ten) / 8000 <= 5.0  # 10 words at espeak's default 175 words a minute
    forty = espeak.render(" ".join([TEN_WORDS] * 4), VOICE)
    assert 3.0 <= len(forty) / len(ten) <= 5.0
    fast = espeak.render(TEN_WORDS, VOICE, rate=350)
    assert 0.35 <= len(fast) / len(ten) <= 0.7


def test_speech_has_its_energy_in_the_voice_band(espeak: EspeakNg) -> None:
    x = espeak.render(TEN_WORDS, VOICE).astype(np.float64)
    rms = float(np.sqrt(np.mean(x**2)))
    assert rms > 500  # not silence (full scale is 32767)
    power = np.abs(np.fft.rfft(x)) ** 2
    freq = np.fft.rfftfreq(len(x), 1 / 8000)
    band = power[(freq >= 200) & (freq <= 3400)].sum() / power.sum()
    assert band > 0.85
    # Speech comes in syllables: 20 ms frames vary in energy, unlike a tone or noise.
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    assert (energy < rms / 10).mean() > 0.1 and (energy > rms).mean() > 0.2


def test_unknown_voice_fails_at_check_and_at_render(cache: TtsCache, espeak: EspeakNg) -> None:
    with pytest.raises(UnknownVoice, match=r"'en-uss'.*did you mean 'en-us'") as e:
        cache.check("en-uss")
    assert e.value.voice == "en-uss"
    with pytest.raises(UnknownVoice):
        asyncio.run(cache.render("Hello.", "en-uss"))
    with pytest.raises(UnknownVoice):
        espeak.render("Hello.", "xx-nowhere")
    # espeak-ng itself ignores an unknown variant and speaks the plain voice: we do not.
    with pytest.raises(UnknownVoice):
        cache.check("en-us+nosuchvariant")
    cache.check("en-us+f3")
    assert not np.array_equal(espeak.render("Hello.", "en-us+f3"), espeak.render("Hello.", VOICE))
    assert cache.stats["renders"] == 0


def test_engine_failure_names_voice_and_text_and_is_not_cached(tmp_path: Path) -> None:
    fake = tmp_path / "espeak-ng"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  --version) echo 'eSpeak NG text-to-speech: 0.0-broken  Data at: /nowhere';;\n"
        "  --voices) printf 'Pty Language Age/Gender VoiceName File\\n 5  en-us --/M Am gmw/en-US\\n';;\n"
        "  --voices=variant) echo 'Pty Language Age/Gender VoiceName File';;\n"
        "  *) echo 'Error: out of cheese' >&2; exit 3;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    engine = EspeakNg(binary=str(fake))
    assert engine.name == "espeak-ng 0.0-broken"
    text = "Hello Mary, this is a long reminder about the appointment you made last week."
    with pytest.raises(TtsError) as e:
        engine.render(text, "en-us")
    assert "exited 3" in str(e.value) and "out of cheese" in str(e.value)
    assert "'en-us'" in str(e.value) and "Hello Mary, this is" in str(e.value)
    assert e.value.text == text
    with TtsCache(tmp_path / "tts", engine) as cache:

        async def two() -> list[object]:
            both = [cache.render(text, "en-us"), cache.render(text, "en-us")]
            return list(await asyncio.gather(*both, return_exceptions=True))

        assert all(isinstance(r, TtsError) for r in asyncio.run(two()))
        with pytest.raises(TtsError):
            cache.get(text, "en-us")  # tried again, not a cached failure
        assert cache.stats["renders"] == 0
        assert not list((tmp_path / "tts").rglob("*.wav"))


def test_empty_or_unencodable_text_is_rejected(espeak: EspeakNg) -> None:
    with pytest.raises(TtsError, match="nothing to say"):
        espeak.render(" \x01 \n", VOICE)
    with pytest.raises(TtsError, match="not valid Unicode"):
        espeak.render("Hello \udc80", VOICE)
    with pytest.raises(TtsError, match="rate 1000"):
        espeak.render("Hello", VOICE, rate=1000)


# --- the cache ----------------------------------------------------------------------------


def test_second_request_is_a_hit_with_no_new_render(
    tmp_path: Path, cache: TtsCache, counting: Counting
) -> None:
    first = cache.get(TEN_WORDS, VOICE)
    path = cache.path(TEN_WORDS, VOICE)
    assert path.parent.parent == tmp_path / "tts" and path.parent.name == path.name[:2]
    mtime = path.stat().st_mtime_ns
    again = cache.get(TEN_WORDS, VOICE)
    assert again is first and not again.flags.writeable
    assert counting.calls == [TEN_WORDS]
    assert cache.stats["hits_memory"] == 1 and cache.stats["renders"] == 1
    assert cache.stats["render_seconds"] > 0
    # A restart: a new cache on the same directory reads the file.
    with TtsCache(tmp_path / "tts", counting) as restarted:
        from_disk = asyncio.run(restarted.render(TEN_WORDS, VOICE))
        assert restarted.stats["hits_disk"] == 1 and restarted.stats["renders"] == 0
    assert np.array_equal(from_disk, first)
    assert counting.calls == [TEN_WORDS]
    assert path.stat().st_mtime_ns == mtime


def test_key_differs_by_voice_rate_text_and_engine(tmp_path: Path, espeak: EspeakNg) -> None:
    with (
        TtsCache(tmp_path, espeak) as a,
        TtsCache(tmp_path, Counting(espeak, "espeak-ng 1.52")) as b,
    ):
        keys = {
            a.key("Hello.", "en-us"),
            a.key("Hello.", "en-gb"),
            a.key("Hello.", "en-us", 175),
            a.key("Hello.", "en-us", 176),
            a.key("Hello!", "en-us"),
            b.key("Hello.", "en-us"),
        }
        assert len(keys) == 6
        assert a.key("Hello.", "en-us") == a.key("Hello.", "en-us")
        assert all(len(k) == 64 and int(k, 16) >= 0 for k in keys)


async def test_concurrent_renders_of_one_text_run_the_engine_once(
    cache: TtsCache, counting: Counting
) -> None:
    results = await asyncio.gather(*(cache.render(TEN_WORDS, VOICE) for _ in range(8)))
    assert counting.calls == [TEN_WORDS]
    assert all(r is results[0] for r in results)
    assert cache.stats["collapsed"] == 7 and cache.stats["renders"] == 1
    # One caller giving up does not cancel the rendering the others wait for.
    other = "Press one to confirm."
    waiters = [asyncio.ensure_future(cache.render(other, VOICE)) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    done = await asyncio.gather(*waiters[1:])
    assert len(done[0]) > 8000 and counting.calls.count(other) == 1


async def test_the_event_loop_keeps_running_while_rendering(cache: TtsCache) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await asyncio.gather(*(cache.render(f"{TEN_WORDS} Number {i}.", VOICE) for i in range(4)))
    ticker.cancel()
    assert ticks >= 5


def test_concurrent_blocking_gets_run_the_engine_once(cache: TtsCache, counting: Counting) -> None:
    barrier = threading.Barrier(4)
    results: list[Pcm] = []

    def worker() -> None:
        barrier.wait()
        results.append(cache.get(TEN_WORDS, VOICE))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counting.calls == [TEN_WORDS]
    assert len(results) == 4 and all(np.array_equal(r, results[0]) for r in results)


def test_memory_is_bounded_by_total_samples(tmp_path: Path, counting: Counting) -> None:
    with TtsCache(tmp_path, counting, memory_samples=40_000) as cache:  # 5 s of audio
        a = cache.get(TEN_WORDS, VOICE)  # ~2.9 s
        cache.get("Press one to confirm.", VOICE)  # ~1.4 s: both fit
        assert cache.stats["hits_memory"] == 0
        cache.get(TEN_WORDS, VOICE)
        assert cache.stats["hits_memory"] == 1
        cache.get("Press two to speak to an agent.", VOICE)  # evicts the least recent
        cache.get("Press one to confirm.", VOICE)
        assert cache.stats["hits_disk"] == 1
        again = cache.get(TEN_WORDS, VOICE)
        assert np.array_equal(again, a)
        assert len(counting.calls) == 3


@pytest.mark.parametrize("damage", ["half", "header_only", "zeros", "garbage"])
def test_a_damaged_cache_file_is_rendered_again_not_played(
    tmp_path: Path, counting: Counting, damage: str
) -> None:
    with TtsCache(tmp_path, counting) as cache:
        good = cache.get(TEN_WORDS, VOICE)
        path = cache.path(TEN_WORDS, VOICE)
    data = path.read_bytes()
    path.write_bytes(
        {
            "half": data[: len(data) // 2],  # a crash half-way through a plain write
            "header_only": data[:44],
            "zeros": bytes(len(data)),  # what some filesystems leave after a power cut
            "garbage": b"RIFF" + os.urandom(len(data) - 4),
        }[damage]
    )
    with TtsCache(tmp_path, counting) as cache:
        again = cache.get(TEN_WORDS, VOICE)
        assert cache.stats["corrupt"] == 1 and cache.stats["renders"] == 1
    assert np.array_equal(again, good)
    assert path.read_bytes() == data


def test_write_atomic_readers_see_the_old_or_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "ab" / "abc.wav"
    payloads = (b"A" * 2_000_000, b"B" * 3_000_000)
    write_atomic(path, payloads[0])
    stop = threading.Event()
    seen: set[int] = set()

    def reader() -> None:
        while not stop.is_set():
            seen.add(len(path.read_bytes()))

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(60):
        write_atomic(path, payloads[i % 2])
    stop.set()
    thread.join()
    assert seen <= {len(p) for p in payloads}
    assert [p.name for p in path.parent.iterdir()] == ["abc.wav"]  # no temp file left


def test_write_atomic_survives_kill_9(tmp_path: Path) -> None:
    writer = (
        "import sys\nfrom pathlib import Path\nfrom engine.voice.tts import write_atomic\n"
        "p = Path(sys.argv[1])\ndata = [b'A' * 8_000_000, b'B' * 5_000_000]\ni = 0\n"
        "while True:\n    write_atomic(p, data[i % 2])\n    i += 1\n    print(i, flush=True)\n"
    )
    root = Path(__file__).resolve().parents[2]
    paths = [tmp_path / str(i) / "abc.wav" for i in range(3)]
    procs = [
        subprocess.Popen([sys.executable, "-c", writer, str(p)], cwd=root, stdout=subprocess.PIPE)
        for p in paths
    ]
    for proc, delay in zip(procs, (0.0, 0.03, 0.07), strict=True):
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one whole write
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for p in paths:
        assert p.read_bytes() in (b"A" * 8_000_000, b"B" * 5_000_000)


# --- templates and campaign load ----------------------------------------------------------


def test_fill_inserts_values_and_names_a_missing_column() -> None:
    template = "Hello {contact.first_name}, your appointment is on {contact.day}."
    assert placeholders(template) == ["first_name", "day"]
    row = {"first_name": "  Zoë \n", "day": "Tuesday"}
    assert fill(template, row) == "Hello Zoë, your appointment is on Tuesday."
    with pytest.raises(MissingColumn) as e:
        fill(template, {"first_name": "Ann"})
    assert isinstance(e.value, KeyError) and isinstance(e.value, TtsError)
    assert e.value.placeholder == "{contact.day}" and e.value.column == "day"
    assert "{contact.day}" in str(e.value) and "first_name" in str(e.value)


def test_template_errors_and_literal_braces() -> None:
    assert fill("Code {{ {contact.x} }}", {"x": "7"}) == "Code { 7 }"
    text = "Hi {contact.first_name} {{not}} {contact.last name}}}"  # a column with a space
    assert placeholders(text) == ["first_name", "last name"]
    assert fill(text, {"first_name": "Ann", "last name": "Lee"}) == "Hi Ann {not} Lee}"
    with pytest.raises(MissingColumn, match="no contact column 'first_name'"):
        fill(text, {})
    bad = ("Hello {name}", "Hello {contact.}", "{contact}", "{contact. x}", "a } b", "{",
           "{contact.a{b}}")  # fmt: skip
    for template in bad:
        with pytest.raises(TemplateError, match="bad placeholder"):
            split_fixed(template)
        with pytest.raises(TemplateError, match=r"expected \{contact\.COLUMN\}"):
            placeholders(template)


def test_split_fixed_gives_the_parts_to_render_at_load() -> None:
    template = (
        "Hello {contact.first_name}, this is a reminder of your appointment on "
        "{contact.day} at {contact.time}. Press 1 to confirm."
    )
    assert split_fixed(template) == [
        "Hello",
        ", this is a reminder of your appointment on",
        "at",
        ". Press 1 to confirm.",
    ]
    assert split_fixed("Press 1 to confirm.") == ["Press 1 to confirm."]
    assert split_fixed("{contact.a}, {contact.b}") == []


async def test_prerender_at_load(cache: TtsCache, counting: Counting) -> None:
    fixed = "This is Main Street Dental. Press 1 to confirm."
    await cache.prerender(split_fixed(fixed), VOICE)
    assert counting.calls == [fixed]
    await cache.render(fill(fixed, {}), VOICE)  # the live call plays what load rendered
    assert counting.calls == [fixed] and cache.stats["hits_memory"] == 1
    await cache.prerender(split_fixed("Hello {contact.n}, bye {contact.n}."), VOICE)
    assert sorted(counting.calls[1:]) == [", bye", "Hello"]
    with pytest.raises(UnknownVoice):
        await cache.prerender(["Hello"], "en-uss")


# --- hostile contact values ---------------------------------------------------------------

TEMPLATE = "Hello {contact.name}, goodbye."


def test_a_value_cannot_pass_options_to_espeak(espeak: EspeakNg, tmp_path: Path) -> None:
    text = fill(TEMPLATE, {"name": "-v de"})
    assert text == "Hello -v de, goodbye."
    audio = espeak.render(text, VOICE)
    assert np.array_equal(audio, espeak.render("Hello -v de, goodbye.", VOICE))
    assert not np.array_equal(audio, espeak.render(text, "de"))  # a voice change would show
    target = tmp_path / "pwned.wav"
    assert len(espeak.render(fill(TEMPLATE, {"name": f"-w {target}"}), VOICE)) > 8000
    assert not target.exists()


def test_a_value_cannot_switch_espeak_to_phoneme_input(espeak: EspeakNg) -> None:
    # espeak-ng reads [[...]] as phonemes even with SSML off: this is "Hello hello".
    raw = espeak.render("Hello [[h@l'oU]], goodbye.", VOICE)
    assert np.array_equal(raw, espeak.render("Hello hello, goodbye.", VOICE))
    text = fill(TEMPLATE, {"name": "[[h@l'oU]]"})
    assert "[" not in text
    assert not np.array_equal(espeak.render(text, VOICE), raw)
    espeak.render(fill(TEMPLATE, {"name": "[[a]]"}), VOICE)  # no crash


def test_a_value_cannot_embed_espeak_commands(espeak: EspeakNg) -> None:
    # 0x01 starts an espeak-ng embedded command: "\x01200A" is amplitude 200.
    text = fill(TEMPLATE, {"name": "\x01200A Sam\x0180S"})
    assert text == "Hello 200A Sam 80S, goodbye."
    audio = espeak.render(text, VOICE)
    assert np.array_equal(audio, espeak.render("Hello 200A Sam 80S, goodbye.", VOICE))
    # The engine drops control characters from any text too (the template's own).
    assert np.array_equal(espeak.render("Hello \x01200A Sam 80S, goodbye.", VOICE),
                          espeak.render("Hello   200A Sam 80S, goodbye.", VOICE))  # fmt: skip


def test_markup_in_a_value_is_text_not_ssml(espeak: EspeakNg) -> None:
    value = "<speak><voice name='de'>Hallo</voice></speak>"
    text = fill(TEMPLATE, {"name": value})
    assert value in text
    audio = espeak.render(text, VOICE)
    assert np.array_equal(audio, espeak.render(f"Hello {value}, goodbye.", VOICE))
    ssml = subprocess.run(
        ["espeak-ng", "-m", "--stdout", "-v", VOICE, "--stdin"],
        input=text.encode(),
        capture_output=True,
        check=True,
    ).stdout
    assert not np.array_equal(load_media_audio(ssml), audio)  # as SSML it would differ
