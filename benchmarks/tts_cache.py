"""TTS cache benchmark: a personalised reminder campaign rendered with espeak-ng.

    python -m benchmarks.tts_cache [--contacts 10000] [--jobs 2] [--names 300] [--dir DIR]

Generates a deterministic contact list (first names from ~300 real names with
Zipf-like frequencies, five weekdays and six appointment times with skewed
frequencies), loads the campaign the way the loader does (voice check and the
template's fixed parts prerendered), then requests every contact's prompt
through `TtsCache.render` from an empty cache directory, `2 x jobs` requests in
flight as a dialer placing calls would. Prints the engine's render time per
prompt (median, p95 of the real renders), distinct texts, the hit rate and the
wall time; then the same campaign again on a new cache over the same
directory (a restart: memory empty, disk warm) and once more on that cache
(memory warm). Every figure printed is measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from engine.voice.tts import EspeakNg, Pcm, TtsCache, TtsEngine, fill, split_fixed

TEMPLATE = (
    "Hello {contact.first_name}, this is a reminder of your appointment on {contact.day} "
    "at {contact.time}. Press 1 to confirm, 2 to speak to an agent, 9 to opt out."
)

# US first names, roughly by popularity (female and male ranks interleaved), and a
# few beyond the usual lists: the long tail a real list has.
_FEMALE = """Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa
Nancy Betty Margaret Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy
Melissa Deborah Stephanie Rebecca Sharon Laura Cynthia Kathleen Amy Angela Shirley Anna
Brenda Pamela Emma Nicole Helen Samantha Katherine Christine Debra Rachel Carolyn Janet
Catherine Maria Heather Diane Ruth Julie Olivia Joyce Virginia Victoria Kelly Lauren
Christina Joan Evelyn Judith Megan Andrea Cheryl Hannah Jacqueline Martha Gloria Teresa
Ann Sara Madison Frances Kathryn Janice Jean Abigail Alice Judy Sophia Grace Denise Amber
Doris Marilyn Danielle Beverly Isabella Theresa Diana Natalie Brittany Charlotte Marie
Kayla Alexis Lori Tiffany Rose Jasmine Erin Crystal Tammy Wendy Rosa Chloé Zoë Renée
Yolanda Ava Mia Harper Ella Scarlett Aria Layla Nora Lily Hazel Aurora Penelope Riley
Zoey Stella Violet Lucy Paisley Savannah Brooklyn Leah Audrey Claire Skylar Bella Naomi
Elena Gabriela Valentina Camila Ximena Guadalupe Priya Aisha Fatima Mei Siobhan Ngozi
Ingrid Tara Molly Paula Vanessa Joy""".split()
_MALE = """James Robert John Michael David William Richard Joseph Thomas Christopher Charles
Daniel Matthew Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George
Timothy Ronald Edward Jason Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry
Justin Scott Brandon Benjamin Samuel Gregory Alexander Frank Patrick Raymond Jack Dennis
Jerry Tyler Aaron José Adam Nathan Henry Douglas Zachary Peter Kyle Ethan Walter Noah
Jeremy Christian Keith Roger Terry Gerald Harold Sean Austin Carl Arthur Lawrence Dylan
Jesse Jordan Bryan Billy Joe Bruce Gabriel Logan Albert Willie Alan Juan Wayne Elijah
Randy Roy Vincent Ralph Eugene Russell Bobby Mason Philip Louis Liam Lucas Oliver Elias
Mateo Levi Sebastian Owen Theodore Caleb Isaac Luke Julian Hudson Grayson Ezra Miles
Carter Jayden Leo Wyatt Asher Jaxon Lincoln Santiago Diego Carlos Luis Miguel Jorge
Rafael Mohammed Ahmed Omar Ali Hiroshi Wei Raj Arjun Dmitri Sergei Kwame Tomasz Finn
Declan Rhys Dustin Marcus Shane Trevor Colin""".split()
NAMES = list(dict.fromkeys(n for pair in zip(_FEMALE, _MALE, strict=False) for n in pair))
DAYS = {"Monday": 3, "Tuesday": 3, "Wednesday": 3, "Thursday": 3, "Friday": 2}
TIMES = {"9 AM": 3, "9:30 AM": 2, "10 AM": 3, "11:15 AM": 2, "2 PM": 2, "3:30 PM": 1}


def contacts(n: int, names: int, seed: int) -> list[dict[str, str]]:
    """`n` contacts; name rank r drawn with weight 1/r (Zipf, s = 1)."""
    rng = random.Random(seed)
    pool = NAMES[:names]
    first = rng.choices(pool, [1 / (r + 1) for r in range(len(pool))], k=n)
    days = rng.choices(list(DAYS), list(DAYS.values()), k=n)
    times = rng.choices(list(TIMES), list(TIMES.values()), k=n)
    return [
        {"first_name": f, "day": d, "time": t} for f, d, t in zip(first, days, times, strict=True)
    ]


class Timed:
    """The engine, recording each render's time and audio length."""

    def __init__(self, inner: TtsEngine) -> None:
        self.inner = inner
        self.seconds: list[float] = []
        self.audio: list[float] = []
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    def voices(self) -> set[str]:
        return self.inner.voices()

    def render(self, text: str, voice: str, rate: int | None = None) -> Pcm:
        start = time.perf_counter()
        pcm = self.inner.render(text, voice, rate)
        with self._lock:
            self.seconds.append(time.perf_counter() - start)
            self.audio.append(len(pcm) / 8000)
        return pcm


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _campaign(cache: TtsCache, rows: list[dict[str, str]], voice: str, window: int) -> float:
    """Every contact's prompt through the cache, `window` requests in flight; wall time."""
    todo = iter(rows)

    async def dialer() -> None:
        for row in todo:
            await cache.render(fill(TEMPLATE, row), voice)

    start = time.perf_counter()
    await asyncio.gather(*(dialer() for _ in range(window)))
    return time.perf_counter() - start


def _disk_usage(directory: Path) -> str:
    files = list(directory.rglob("*.wav"))
    size = sum(f.stat().st_size for f in files)
    return (
        f"{len(files)} files, {size / 1e6:.1f} MB ({size / max(1, len(files)) / 1e3:.0f} kB each)"
    )


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after}


def _hits_line(d: dict[str, float]) -> str:
    requests = d["requests"]
    hits = d["hits_memory"] + d["hits_disk"] + d["collapsed"]
    return (f"hit rate {hits / requests:.1%} ({d['hits_memory']:.0f} memory, "
            f"{d['hits_disk']:.0f} disk, {d['collapsed']:.0f} waited on a render in flight), "
            f"{d['renders']:.0f} renders")  # fmt: skip


async def run(args: argparse.Namespace, directory: Path) -> None:
    rows = contacts(args.contacts, args.names, args.seed)
    distinct = {fill(TEMPLATE, r) for r in rows}
    print(f"campaign: {len(rows)} contacts, {len({r['first_name'] for r in rows})} distinct first "
          f"names (of {args.names}, Zipf s=1), {len(DAYS)} days, {len(TIMES)} times, "
          f"{len(distinct)} distinct texts; voice {args.voice}, {args.jobs} jobs")  # fmt: skip
    engine = Timed(EspeakNg())
    print(f"engine: {engine.name}; cache directory {directory}")

    with TtsCache(directory, engine, jobs=args.jobs) as cache:
        start = time.perf_counter()
        await cache.prerender(split_fixed(TEMPLATE), args.voice)
        load = time.perf_counter() - start
        print(f"\ncampaign load (voice check + {len(split_fixed(TEMPLATE))} fixed parts "
              f"prerendered): {load * 1000:.0f} ms")  # fmt: skip
        engine.seconds.clear()
        engine.audio.clear()
        before = cache.stats
        wall = await _campaign(cache, rows, args.voice, 2 * args.jobs)
        cold = _delta(cache.stats, before)
    secs, audio = engine.seconds, engine.audio
    print("\ncold cache (empty directory):")
    print(f"  {_hits_line(cold)}")
    print(f"  render time per prompt (engine: espeak-ng + resample to 8 kHz, {len(secs)} renders): "
          f"median {statistics.median(secs) * 1000:.1f} ms, p95 {_pct(secs, 0.95) * 1000:.1f} ms, "
          f"max {max(secs) * 1000:.1f} ms")  # fmt: skip
    print(f"  prompt audio: median {statistics.median(audio):.2f} s, rendered at "
          f"{sum(audio) / sum(secs):.0f}x real time per job")  # fmt: skip
    print(f"  wall time {wall:.1f} s for {len(rows)} prompts ({len(rows) / wall:.0f} prompts/s, "
          f"{cold['renders'] / wall:.1f} renders/s on {args.jobs} jobs)")  # fmt: skip
    print(f"  on disk: {_disk_usage(directory)}")

    with TtsCache(directory, engine, jobs=args.jobs) as cache:
        wall = await _campaign(cache, rows, args.voice, 2 * args.jobs)
        warm = cache.stats
        print("\nwarm disk (a new cache on the same directory: a restart):")
        print(f"  {_hits_line(warm)}")
        print(f"  wall time {wall:.2f} s, {wall / len(rows) * 1e6:.0f} us per lookup")
        before = cache.stats
        wall = await _campaign(cache, rows, args.voice, 2 * args.jobs)
        again = _delta(cache.stats, before)
        print("\nsame cache, second pass (memory LRU of 16 M samples in front):")
        print(f"  {_hits_line(again)}")
        print(f"  wall time {wall:.2f} s, {wall / len(rows) * 1e6:.0f} us per lookup")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--contacts", type=int, default=10_000)
    p.add_argument("--jobs", type=int, default=2, help="render threads (espeak-ng processes)")
    p.add_argument("--names", type=int, default=300, help=f"distinct first names (<= {len(NAMES)})")
    p.add_argument("--voice", default="en-us")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dir", type=Path, help="cache directory (must be empty; default: a temp dir)")
    args = p.parse_args()
    if not 1 <= args.names <= len(NAMES):
        p.error(f"--names must be 1..{len(NAMES)}")
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        if any(args.dir.iterdir()):
            p.error(f"--dir {args.dir} is not empty")
        asyncio.run(run(args, args.dir))
        return
    with tempfile.TemporaryDirectory(prefix="tts-bench-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
