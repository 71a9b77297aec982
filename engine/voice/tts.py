"""Text-to-speech for outbound IVR prompts: an engine interface, espeak-ng, a disk cache.

A prompt template such as ``"Hello {contact.first_name}, ..."`` is filled per
contact (`fill`) and the text rendered by a `TtsEngine` to 8 kHz mono int16,
the array `PlayPrompt` plays. `TtsCache` keeps every rendering on disk keyed
by (engine and version, voice, rate, text), so a campaign renders each distinct
text once however many contacts share it, and a restart renders nothing again.
Rendering is a subprocess and runs off the event loop; concurrent requests for
one text share one rendering.

When a campaign loads, its IVR prompts' voices are checked and each prompt with
no placeholder is rendered whole (`TtsCache.prerender`), so a missing voice or a
text the engine rejects fails then, with the voice and the text in the message,
and not on a live call; `split_fixed` gives a template's fixed parts for the same
check of personalised prompts.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from dsp.wav import MEDIA_RATE, WavError, decode_wav, encode_wav, resample, to_int16

Pcm = NDArray[np.int16]

_SNIPPET = 60


def _snippet(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "...")


class TtsError(Exception):
    """A prompt cannot be rendered; the message names the voice and the text."""

    def __init__(self, message: str, *, voice: str | None = None, text: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.voice = voice
        self.text = text

    def __str__(self) -> str:
        return self.message


class UnknownVoice(TtsError):
    """The engine has no such voice (installed voices are listed in `suggestions`)."""

    def __init__(self, engine: str, voice: str, suggestions: list[str]) -> None:
        hint = f"; did you mean {', '.join(map(repr, suggestions))}?" if suggestions else ""
        super().__init__(f"{engine}: unknown voice {voice!r}{hint}", voice=voice)
        self.suggestions = suggestions


class TemplateError(TtsError):
    """A prompt template is malformed (a stray brace, a placeholder not `{contact.COLUMN}`)."""


class MissingColumn(TtsError, KeyError):
    """A `{contact.column}` placeholder names a column the contact row does not have."""

    def __init__(self, placeholder: str, column: str, available: Iterable[str]) -> None:
        cols = ", ".join(sorted(available)) or "none"
        super().__init__(f"prompt placeholder {placeholder} has no contact column {column!r} "
                         f"(the row has: {cols})")  # fmt: skip
        self.placeholder = placeholder
        self.column = column


# --- the engine interface ---------------------------------------------------------------


class TtsEngine(Protocol):
    """Renders plain text (no markup) to speech. Any engine fits behind this."""

    @property
    def name(self) -> str:
        """Engine and version, e.g. ``"espeak-ng 1.51"``: part of the cache key, so a new
        engine version never plays audio an older one rendered."""
        ...

    def voices(self) -> set[str]:
        """Every voice name `render` accepts."""
        ...

    def render(self, text: str, voice: str, rate: int | None = None) -> Pcm:
        """Blocking. `text` spoken by `voice` at `rate` (words per minute; None: the
        voice's default) as 8000 Hz mono int16. Raises TtsError."""
        ...


# Control characters, which espeak-ng acts on even with SSML off: 0x01 starts an
# embedded command ("\x01200A" is amplitude 200, "\x0180S" speed 80). Tab and
# newline stay. (Contact values also lose `[[ ]]`: see plain_text.)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_VERSION = re.compile(r"text-to-speech:\s*(\S+)")
_OTHER_LANGUAGE = re.compile(r"\(([^\s()]+) \d+\)")
_MISSING_BINARY = "install the Debian package espeak-ng (apt-get install espeak-ng)"


class EspeakNg(TtsEngine):
    """espeak-ng, run as a subprocess per prompt (argv, never a shell; the text on stdin).

    Voices are what `espeak-ng --voices` lists (the language column, other
    languages and the voice file), optionally with a variant: ``"en-us+f3"``.
    espeak-ng silently ignores an unknown variant, so voices are checked here.
    """

    def __init__(self, binary: str = "espeak-ng", timeout: float = 60.0) -> None:
        path = shutil.which(binary)
        if path is None:
            raise TtsError(f"{binary!r} not found on PATH: {_MISSING_BINARY}")
        self._binary = path
        self.timeout = timeout
        out = self._run_plain("--version")
        match = _VERSION.search(out)
        self._name = f"espeak-ng {match.group(1) if match else out.strip()[:40]}"
        self._voices: set[str] | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def _run_plain(self, *args: str) -> str:
        try:
            proc = subprocess.run(  # noqa: S603 (argv list, absolute path, no shell)
                [self._binary, *args], capture_output=True, timeout=self.timeout, check=False
            )
        except OSError as e:
            raise TtsError(f"cannot run {self._binary}: {e}; {_MISSING_BINARY}") from e
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise TtsError(f"{self._binary} {' '.join(args)} exited {proc.returncode}: {err}")
        return proc.stdout.decode(errors="replace")

    def voices(self) -> set[str]:
        with self._lock:
            if self._voices is None:
                self._voices = self._list_voices()
            return self._voices

    def _list_voices(self) -> set[str]:
        languages: set[str] = set()
        names: set[str] = set()
        for line in self._run_plain("--voices").splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 5:
                languages.add(parts[1])
                names.add(parts[4])
                names.update(_OTHER_LANGUAGE.findall(" ".join(parts[5:])))
        variants = [
            line.split()[4].removeprefix("!v/")
            for line in self._run_plain("--voices=variant").splitlines()[1:]
            if len(line.split()) >= 5
        ]
        with_variant = {f"{lang}+{v}" for lang in languages for v in variants}
        return languages | names | with_variant

    def render(self, text: str, voice: str, rate: int | None = None) -> Pcm:
        if voice not in self.voices():
            raise UnknownVoice(self.name, voice, _suggest(voice, self.voices()))
        if rate is not None and not 80 <= rate <= 450:
            raise TtsError(f"espeak-ng rate {rate} for voice {voice!r} is outside 80-450 "
                           "words per minute", voice=voice, text=text)  # fmt: skip
        spoken = _CONTROL.sub(" ", text).strip()
        if not spoken:
            raise TtsError(f"nothing to say for voice {voice!r}: text {_snippet(text)}",
                           voice=voice, text=text)  # fmt: skip
        argv = [self._binary, "--stdout", "-b", "1", "-v", voice]
        if rate is not None:
            argv += ["-s", str(rate)]
        argv.append("--stdin")  # the whole text at once, never as an argument
        where = f"voice {voice!r}, text {_snippet(text)}"
        try:
            data = spoken.encode("utf-8")
            proc = subprocess.run(  # noqa: S603 (argv list, absolute path, no shell)
                argv, input=data, capture_output=True, timeout=self.timeout, check=False
            )
        except UnicodeEncodeError as e:
            raise TtsError(f"text is not valid Unicode ({e.reason}): {where}",
                           voice=voice, text=text) from e  # fmt: skip
        except subprocess.TimeoutExpired as e:
            raise TtsError(f"espeak-ng took over {self.timeout:g} s: {where}",
                           voice=voice, text=text) from e  # fmt: skip
        except OSError as e:
            raise TtsError(f"cannot run {self._binary} ({e}; {_MISSING_BINARY}): {where}",
                           voice=voice, text=text) from e  # fmt: skip
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip() or "no message"
            raise TtsError(f"espeak-ng exited {proc.returncode} ({err}): {where}",
                           voice=voice, text=text)  # fmt: skip
        try:
            samples, info = decode_wav(proc.stdout)  # the header gives the rate (22050 Hz)
        except WavError as e:
            raise TtsError(f"espeak-ng wrote no usable WAV ({e}): {where}",
                           voice=voice, text=text) from e  # fmt: skip
        if info.frames == 0:
            raise TtsError(f"espeak-ng produced no audio: {where}", voice=voice, text=text)
        return to_int16(resample(samples, info.sample_rate, MEDIA_RATE))


def _suggest(voice: str, voices: set[str]) -> list[str]:
    pool = [v for v in voices if ("+" in v) == ("+" in voice)]
    return difflib.get_close_matches(voice, pool, n=3, cutoff=0.6)


# --- templates --------------------------------------------------------------------------

# `{contact.COLUMN}` placeholders (COLUMN: the column's name as written, spaces inside
# allowed: "{contact.last name}"); `{{` and `}}` are literal braces; any other brace is an
# error, found when a flow or campaign loads (placeholders, split_fixed).
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_COLUMN = re.compile(r"contact\.(\S(?:.*\S)?)")


def _parse(template: str) -> list[str | tuple[str, str]]:
    """Literal text and (placeholder, column) pairs, in order."""
    parts: list[str | tuple[str, str]] = []
    text: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(template):
        text.append(template[pos : m.start()])
        pos = m.end()
        token = m.group(0)
        column = _COLUMN.fullmatch(m.group(1)) if m.group(1) is not None else None
        if token in ("{{", "}}"):
            text.append(token[0])
        elif column is not None:
            parts.append("".join(text))
            text = []
            parts.append((token, column.group(1)))
        else:
            raise TemplateError(
                f"bad placeholder {token!r} at character {m.start() + 1} of prompt "
                f"{_snippet(template)}: expected {{contact.COLUMN}} ({{{{ and }}}} write "
                "a literal brace)",
                text=template,
            )
    text.append(template[pos:])
    parts.append("".join(text))
    return [p for p in parts if p != ""]


def placeholders(template: str) -> list[str]:
    """The contact columns a template uses, in order of first use; TemplateError if
    it is malformed."""
    return list(dict.fromkeys(p[1] for p in _parse(template) if isinstance(p, tuple)))


def split_fixed(template: str) -> list[str]:
    """The template's fixed text between placeholders, stripped, for
    `TtsCache.prerender` at campaign load; a template without placeholders is one
    part: its whole prompt. Pieces with no letter or digit (", " between two
    placeholders) are left out: there is nothing in them to say or to check.
    Raises TemplateError on a malformed template."""
    parts = (p.strip() for p in _parse(template) if isinstance(p, str))
    return [p for p in parts if any(c.isalnum() for c in p)]


def plain_text(value: str) -> str:
    """A contact value made inert for any engine: control and format characters
    (espeak-ng's embedded commands start with 0x01; bidi overrides hide text) become
    spaces, `[` `]` become `(` `)` (espeak-ng reads `[[...]]` as phonemes even with
    SSML off), whitespace runs become one space. `<` `>` `&` stay: engines get plain
    text, and espeak-ng runs without -m (SSML), where a tag is read as punctuation."""
    chars = [" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in value]
    text = "".join(chars).replace("[", "(").replace("]", ")")
    return " ".join(text.split())


def fill(template: str, row: Mapping[str, str]) -> str:
    """The template with each `{contact.COLUMN}` replaced by the row's value as plain
    text (`plain_text`): the one filler for every spoken prompt (IVR flows included),
    so no contact value reaches an engine as markup, phonemes or an embedded command.
    Raises MissingColumn (a KeyError) naming the placeholder, TemplateError if the
    template is malformed."""
    out: list[str] = []
    for part in _parse(template):
        if isinstance(part, str):
            out.append(part)
            continue
        placeholder, column = part
        if column not in row:
            raise MissingColumn(placeholder, column, row.keys())
        out.append(plain_text(str(row[column])))
    return "".join(out)


# --- the cache --------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers (and a later start after a crash) see the
    old file, no file, or the whole new file: a temp file in the same directory, then
    os.replace. The temp name (`.*.part`) never matches a cache entry's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cached(data: bytes) -> Pcm | None:
    """The samples of a cache file, or None if it is truncated or not exactly what
    `encode_wav` writes (8 kHz mono PCM16, one 44-byte header): the RIFF and data
    sizes must both match the file's length, so a half-written file never plays."""
    if len(data) < 46 or len(data) % 2:
        return None
    riff, riff_size, wave, fmt, fmt_size, *fields, data_id, data_size = _HEADER.unpack_from(data)
    if (riff, wave, fmt, fmt_size, data_id) != (b"RIFF", b"WAVE", b"fmt ", 16, b"data"):
        return None
    if riff_size + 8 != len(data) or data_size + 44 != len(data):
        return None
    if tuple(fields) != (1, 1, MEDIA_RATE, 2 * MEDIA_RATE, 2, 16):
        return None
    return np.frombuffer(data, dtype="<i2", offset=44).astype(np.int16)


_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


def _frozen(pcm: Pcm) -> Pcm:
    pcm.flags.writeable = False  # shared by every call that plays it
    return pcm


class TtsCache:
    """Renderings on disk (``directory/ab/abcdef....wav``, 8 kHz PCM16 WAV) with an
    in-memory LRU of recent arrays in front, bounded by `memory_samples` in total.

    `render` (async) runs the engine and the disk off the event loop on `jobs`
    threads, and collapses concurrent requests for one text into one rendering;
    `get` is the blocking form. Returned arrays are read-only and shared.
    """

    def __init__(
        self,
        directory: Path,
        engine: TtsEngine,
        *,
        memory_samples: int = 16_000_000,  # 2000 s of audio, 32 MB
        jobs: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.engine = engine
        self.memory_samples = memory_samples
        self._executor = ThreadPoolExecutor(
            max_workers=jobs or min(4, os.cpu_count() or 1), thread_name_prefix="tts"
        )
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, Pcm] = OrderedDict()
        self._memory_total = 0
        self._inflight: dict[str, Future[Pcm]] = {}
        self._stats: dict[str, float] = dict.fromkeys(
            ("requests", "hits_memory", "hits_disk", "collapsed", "renders", "render_seconds",
             "corrupt"), 0
        )  # fmt: skip

    # keys and paths

    def key(self, text: str, voice: str, rate: int | None = None) -> str:
        """sha256 over (engine name and version, voice, rate, text)."""
        blob = json.dumps([self.engine.name, voice, rate, text], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def path(self, text: str, voice: str, rate: int | None = None) -> Path:
        return self._path(self.key(text, voice, rate))

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.wav"

    @property
    def stats(self) -> dict[str, float]:
        """requests, hits_memory, hits_disk, collapsed (waited on another request's
        rendering), renders, render_seconds (engine time), corrupt (cache files
        found truncated or invalid, and rendered again)."""
        with self._lock:
            return dict(self._stats)

    # campaign load

    def check(self, voice: str) -> None:
        """Raise UnknownVoice if the engine has no such voice."""
        voices = self.engine.voices()
        if voice not in voices:
            raise UnknownVoice(self.engine.name, voice, _suggest(voice, voices))

    async def prerender(self, texts: Iterable[str], voice: str, rate: int | None = None) -> None:
        """Check the voice and render each text (the fixed parts of a campaign's
        prompts) into the cache, so a bad voice or text fails at campaign load."""
        # The first check lists the engine's voices (a subprocess): off the loop too.
        await asyncio.get_running_loop().run_in_executor(self._executor, self.check, voice)
        await asyncio.gather(*(self.render(t, voice, rate) for t in dict.fromkeys(texts)))

    # lookups

    def get(self, text: str, voice: str, rate: int | None = None) -> Pcm:
        """Blocking: the rendering of `text`, from memory, disk or the engine."""
        key = self.key(text, voice, rate)
        mine: Future[Pcm] = Future()
        with self._lock:
            found = self._lookup(key)
            if found is None:
                mine.set_running_or_notify_cancel()  # never cancellable: others may wait on it
                self._inflight[key] = mine
        if isinstance(found, Future):
            return found.result()
        if found is not None:
            return found
        try:
            pcm = self._produce(key, text, voice, rate)
        except BaseException as e:
            mine.set_exception(e)
            raise
        mine.set_result(pcm)
        return pcm

    async def render(self, text: str, voice: str, rate: int | None = None) -> Pcm:
        """The rendering of `text`, without blocking the event loop."""
        key = self.key(text, voice, rate)
        with self._lock:
            found = self._lookup(key)
            if found is None:
                # Registered under the lock, so _produce's removal cannot come first.
                found = self._executor.submit(self._produce, key, text, voice, rate)
                self._inflight[key] = found
        if isinstance(found, Future):
            # shield: one caller giving up must not cancel the rendering others await
            return await asyncio.shield(asyncio.wrap_future(found))
        return found

    def _lookup(self, key: str) -> Pcm | Future[Pcm] | None:
        """Under the lock: the array in memory, a rendering in flight, or None."""
        self._stats["requests"] += 1
        pcm = self._memory.get(key)
        if pcm is not None:
            self._memory.move_to_end(key)
            self._stats["hits_memory"] += 1
            return pcm
        pending = self._inflight.get(key)
        if pending is not None:
            self._stats["collapsed"] += 1
        return pending

    def _produce(self, key: str, text: str, voice: str, rate: int | None) -> Pcm:
        """On a worker thread (or get's caller): disk, else the engine; then memory."""
        try:
            path = self._path(key)
            pcm = self._load(path)
            if pcm is not None:
                with self._lock:
                    self._stats["hits_disk"] += 1
            else:
                pcm = self._render_and_store(path, text, voice, rate)
            pcm = _frozen(pcm)
            with self._lock:
                self._remember(key, pcm)
                self._inflight.pop(key, None)
            return pcm
        except BaseException:
            with self._lock:
                self._inflight.pop(key, None)  # failures are not cached: the next call retries
            raise

    def _load(self, path: Path) -> Pcm | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        pcm = _read_cached(data)
        if pcm is None:  # a half-written or foreign file is never played
            with self._lock:
                self._stats["corrupt"] += 1
            path.unlink(missing_ok=True)
        return pcm

    def _render_and_store(self, path: Path, text: str, voice: str, rate: int | None) -> Pcm:
        start = time.perf_counter()
        pcm = self.engine.render(text, voice, rate)
        elapsed = time.perf_counter() - start
        if pcm.dtype != np.int16 or pcm.ndim != 1 or len(pcm) == 0:
            raise TtsError(f"{self.engine.name} returned {pcm.dtype} audio of shape {pcm.shape} "
                           f"for voice {voice!r}, text {_snippet(text)}",
                           voice=voice, text=text)  # fmt: skip
        write_atomic(path, encode_wav(pcm))
        with self._lock:
            self._stats["renders"] += 1
            self._stats["render_seconds"] += elapsed
        return pcm

    def _remember(self, key: str, pcm: Pcm) -> None:
        if len(pcm) > self.memory_samples or key in self._memory:
            return
        self._memory[key] = pcm
        self._memory_total += len(pcm)
        while self._memory_total > self.memory_samples:
            _, old = self._memory.popitem(last=False)
            self._memory_total -= len(old)

    def close(self) -> None:
        """Stop the worker threads (renderings in flight finish first)."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> TtsCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
