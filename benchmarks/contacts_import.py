"""Contact import benchmark: a million-row CSV into a fresh SQLite store.

    python -m benchmarks.contacts_import [--rows 1000000] [--dir DIR]

Generates a deterministic, realistic CSV (id, first_name, last_name, phone,
mobile (half empty), zip; numbers in the usual North American shapes, ~1 %
bad numbers, ~0.5 % duplicates), imports it with both phone columns, and
prints rows/s, peak memory (the process's peak RSS, and Python's heap peak
measured by tracemalloc on a separate 100,000-row import, since tracemalloc
slows everything it watches) and the error file's line count. Then, on the
same store, the dialer's side: enrolling the list in a campaign, the
`due_contacts` query (what the dialer asks every ~100 ms) on a million
pending contacts, group-committed `create_attempt` throughput, and export.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import resource
import statistics
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import phonenumbers
import psutil

from engine.store import AttemptIntent, InvalidNumber, PhoneNormalizer, Store
from engine.store.phones import reference_normalize

FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "José",
    "Zoë",
    "Chloé",
    "Renée",
]
LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "O'Brien",
    "Nguyen",
]
BAD = ["555-01", "12345", "(000) 555-0100", "n/a", "+1 123 456 7890", "999999999999999", "call me"]


def _shape(d: str, rnd: random.Random) -> str:
    match rnd.randrange(5):
        case 0:
            return d
        case 1:
            return f"({d[:3]}) {d[3:6]}-{d[6:]}"
        case 2:
            return f"+1 {d[:3]}-{d[3:6]}-{d[6:]}"
        case 3:
            return f"{d[:3]}.{d[3:6]}.{d[6:]}"
        case _:
            return f"1-{d[:3]}-{d[3:6]}-{d[6:]}"


def _prefixes(rnd: random.Random, count: int) -> list[str]:
    """NPA-NXX prefixes whose numbers phonenumbers accepts (checked on two)."""
    found: list[str] = []
    while len(found) < count:
        p = f"{rnd.randint(201, 989)}{rnd.randint(200, 999)}"
        if p not in found and all(
            phonenumbers.is_valid_number(phonenumbers.parse(p + tail, "US"))
            for tail in ("0000", "9999")
        ):
            found.append(p)
    return found


def generate(path: Path, rows: int, seed: int = 7) -> dict[str, int]:
    """Write the CSV, streaming; returns what was planted."""
    rnd = random.Random(seed)
    pool = _prefixes(rnd, 800)  # 800 x 10,000 distinct numbers: plenty
    planted = {"bad": 0, "duplicates": 0}
    issued: list[str] = []  # a sample of earlier phones, to duplicate

    def number(i: int) -> str:
        return pool[i % len(pool)] + f"{(i // len(pool)) % 10_000:04d}"

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "first_name", "last_name", "phone", "mobile", "zip"])
        for i in range(rows):
            roll = rnd.random()
            mobile = _shape(number(rows + i), rnd) if rnd.random() < 0.5 else ""
            if roll < 0.01:  # a third keep a good mobile: imported without the bad phone
                phone, mobile = rnd.choice(BAD), mobile if rnd.random() < 0.33 else ""
                planted["bad"] += 1
            elif roll < 0.015 and issued:
                phone, mobile = rnd.choice(issued), ""
                planted["duplicates"] += 1
            else:
                phone = _shape(number(i), rnd)
                if len(issued) < 10_000 and rnd.random() < 0.05:
                    issued.append(phone)
            w.writerow(
                [
                    f"C{i:07d}",
                    rnd.choice(FIRST),
                    rnd.choice(LAST),
                    phone,
                    mobile,
                    f"{rnd.randint(501, 99950):05d}",
                ]
            )
    return planted


def normalisation(csv_path: Path, sample: int = 100_000) -> None:
    """The fast NANP path against phonenumbers alone, on the file's numbers."""
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        raws = [row[3] for _, row in zip(range(sample), reader, strict=False)]
    normalizer = PhoneNormalizer("US")
    t = time.perf_counter()
    for raw in raws:
        try:
            normalizer.normalize(raw)
        except InvalidNumber:
            pass
    fast = time.perf_counter() - t
    t = time.perf_counter()
    for raw in raws:
        reference_normalize(raw, "US")
    slow = time.perf_counter() - t
    print(
        f"normalise         {fast / len(raws) * 1e6:.1f} us a number (phonenumbers alone: "
        f"{slow / len(raws) * 1e6:.1f} us, {slow / fast:.1f}x slower)"
    )


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def import_run(workdir: Path, csv_path: Path, rows: int) -> Store:
    store = await Store.open(f"sqlite:///{workdir / 'bench.db'}")
    errors = workdir / "errors.csv"
    before = _rss_mib()
    summary = await store.import_contacts(
        "bench", csv_path, phone_columns=["phone", "mobile"], error_path=errors
    )
    with errors.open(encoding="utf-8") as f:
        error_lines = sum(1 for _ in f)
    print(
        f"import            {summary.rows:,} rows in {summary.seconds:.1f} s: "
        f"{summary.rows / summary.seconds:,.0f} rows/s"
    )
    print(
        f"  imported {summary.imported:,}, invalid {summary.invalid:,}, duplicates "
        f"{summary.duplicates:,}, imported without a bad number {summary.warnings:,}"
    )
    print(f"  error file      {error_lines:,} lines (header + one per reported row)")
    print(
        f"  memory          RSS {before:.0f} MiB before, peak RSS {_peak_rss_mib():.0f} MiB "
        f"(whole process)"
    )
    return store


async def tracemalloc_run(workdir: Path, rows: int) -> None:
    small = workdir / "small.csv"
    generate(small, rows, seed=11)
    store = await Store.open(f"sqlite:///{workdir / 'small.db'}")
    tracemalloc.start()
    summary = await store.import_contacts("small", small, phone_columns=["phone", "mobile"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await store.close()
    print(
        f"  python heap     tracemalloc peak {peak / 2**20:.1f} MiB during a "
        f"{summary.rows:,}-row import (flat in the file's size: batches of 5,000)"
    )


async def dialer_side(store: Store, workdir: Path) -> None:
    await store.upsert_campaign("bench", "bench", {"mode": "agentless"})
    t = time.perf_counter()
    enrolled = await store.sync_campaign_contacts("bench")
    print(f"campaign sync     {enrolled:,} contacts enrolled in {time.perf_counter() - t:.1f} s")
    now = datetime.now(UTC)
    timings = []
    for _ in range(50):
        t = time.perf_counter()
        due = await store.due_contacts("bench", now, 50)
        timings.append(time.perf_counter() - t)
    print(
        f"due_contacts      limit 50 on {enrolled:,} pending: median "
        f"{statistics.median(timings) * 1000:.2f} ms, max {max(timings) * 1000:.2f} ms"
    )
    intents = [
        AttemptIntent("bench", c.contact_id, c.phones[0], "trunk", None, now) for c in due
    ] * 40
    commits = store.commits
    t = time.perf_counter()
    await asyncio.gather(*(store.create_attempt(i) for i in intents))
    elapsed = time.perf_counter() - t
    print(
        f"create_attempt    {len(intents):,} concurrent in {elapsed * 1000:.0f} ms: "
        f"{len(intents) / elapsed:,.0f}/s, {store.commits - commits} group commits"
    )
    latencies = []
    for i in intents[:500]:
        t = time.perf_counter()
        await store.create_attempt(i)
        latencies.append(time.perf_counter() - t)
    print(
        f"create_attempt    one at a time: {len(latencies) / sum(latencies):,.0f}/s, "
        f"median {statistics.median(latencies) * 1000:.2f} ms until committed"
    )
    t = time.perf_counter()
    written = await store.export_list("bench", workdir / "export.csv")
    elapsed = time.perf_counter() - t
    print(f"export            {written:,} rows in {elapsed:.1f} s: {written / elapsed:,.0f} rows/s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, help="work here (kept) instead of a temp dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outdial-bench-") as tmp:
        workdir = args.dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        csv_path = workdir / "contacts.csv"
        t = time.perf_counter()
        planted = generate(csv_path, args.rows)
        size = csv_path.stat().st_size / 2**20
        print(
            f"generated         {args.rows:,} rows ({size:.0f} MiB) in "
            f"{time.perf_counter() - t:.1f} s; planted {planted['bad']:,} bad numbers, "
            f"{planted['duplicates']:,} duplicates"
        )
        normalisation(csv_path)
        store = await import_run(workdir, csv_path, args.rows)
        try:
            await dialer_side(store, workdir)
        finally:
            await store.close()
        await tracemalloc_run(workdir, min(args.rows, 100_000))


if __name__ == "__main__":
    asyncio.run(main())
