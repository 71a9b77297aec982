"""Calling hours on a million contacts: what the dial loop pays per contact and per pass.

    python -m benchmarks.compliance_hours [--rows 1000000] [--dir DIR]

A generated list of US numbers (area codes of every zone, several of them
split across two zones), half of them with a ZIP column (Florida, Texas,
Oklahoma, ... so the state rules apply) and a tenth with a time-zone column
spread over every UTC offset, so that at any hour of the run some contacts are
callable under 47 CFR 64.1200(c)(1) and the state rules and others are not.
The campaign adds its own weekday window. Printed:

- the rule evaluation per contact: locating it (columns, ZIP, number prefix)
  and the hours verdict (law + state + campaign + holidays), cold and cached;
- `due_contacts` with the rules, the way the dial loop uses it: each pass
  reads 50 due contacts, evaluates each, defers the ones outside their hours
  (state "deferred", next_attempt_at = when they open) and keeps the others;
  the sweep that moves every contact outside its hours out of the way, then
  the steady state (median and p95 per pass, ms) once only callable contacts
  are left in the ready queue.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from engine.compliance.campaign import HoursConfig, calling_hours
from engine.compliance.hours import parse_window
from engine.store import Store

AREA = ["212", "305", "850", "713", "405", "312", "303", "208", "602", "213", "907", "808",
        "605", "701", "410", "617", "215", "206", "801", "205"]  # fmt: skip
ZIPS = ["32301", "33101", "75201", "73102", "21201", "10001", "60601", "94103", "97910",
        "83702", "02108", "19103", "84101", "35203", "70112"]  # fmt: skip


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    zones = [f"Etc/GMT{-o:+d}" if o else "Etc/GMT" for o in range(-12, 15)]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "phone", "zip", "tz"])
        for i in range(rows):
            phone = f"+1{rng.choice(AREA)}{rng.randrange(200, 1000)}{i % 10000:04d}"
            zip_code = rng.choice(ZIPS) if rng.random() < 0.5 else ""
            tz = rng.choice(zones) if rng.random() < 0.1 else ""
            w.writerow([f"c{i}", phone, zip_code, tz])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        csv_path = work / "contacts.csv"
        t = time.perf_counter()
        generate(csv_path, args.rows)
        print(f"generated         {args.rows:,} rows in {time.perf_counter() - t:.1f} s")
        store = await Store.open(f"sqlite:///{work / 'hours.db'}")
        try:
            t = time.perf_counter()
            summary = await store.import_contacts("hours", csv_path)
            took = time.perf_counter() - t
            print(f"import            {summary.imported:,} contacts in {took:.1f} s")
            await store.upsert_campaign("hours", "hours", {"mode": "agentless"})
            await store.sync_campaign_contacts("hours")
            await run(store)
        finally:
            await store.close()


async def run(store: Store) -> None:
    cfg = HoursConfig(week=(parse_window("08:30-20:30"),) * 6 + (None,), public_holidays=True)
    hours = calling_hours(cfg, "bench.yaml")
    locator = cfg.locator()
    now = datetime.now(UTC)
    sample = await store.due_contacts("hours", now, 20_000)
    # Per contact, cold (every locale computed) and cached (the dial loop's steady state).
    for label in ("cold", "cached"):
        if label == "cold":
            hours._cache.clear()
        t = time.perf_counter()
        for c in sample:
            hours.verdict(locator.locate(c.attributes, c.phones[0]), now)
        per = (time.perf_counter() - t) / len(sample) * 1e6
        print(f"rule evaluation   {label:6s} {per:6.1f} us per contact "
              f"({len(sample):,} contacts, {len(hours._cache):,} distinct locales)")  # fmt: skip
    callable_share = sum(
        hours.verdict(locator.locate(c.attributes, c.phones[0]), now).callable for c in sample
    ) / len(sample)
    print(f"callable now      {callable_share:.1%} of a sample of {len(sample):,} "
          f"({now:%Y-%m-%d %H:%M} UTC)")  # fmt: skip
    # The sweep: passes that defer what is outside its hours, until a pass finds
    # 50 callable contacts (the dial loop then places them; here they are marked done,
    # which takes them out of the ready queue as a placed call does).
    passes: list[float] = []
    deferred = 0
    t0 = time.perf_counter()
    while True:
        t = time.perf_counter()
        due = await store.due_contacts("hours", datetime.now(UTC), 512)
        found = 0
        for c in due:
            v = hours.verdict(locator.locate(c.attributes, c.phones[0]), datetime.now(UTC))
            if v.callable:
                found += 1
                store.set_contact_state("hours", c.contact_id, state="done")  # dialled
            else:
                store.set_contact_state("hours", c.contact_id, state="deferred",
                                        next_attempt_at=v.until, skip_reason=v.reason)  # fmt: skip
                deferred += 1
        passes.append(time.perf_counter() - t)
        if found >= 50 or not due:
            break
    await store.flush()
    print(f"first pass        found 50 callable after {len(passes)} passes of 512 "
          f"({deferred:,} deferred) in {time.perf_counter() - t0:.2f} s")  # fmt: skip
    # Steady state: 50 a pass, as the dial loop asks (callable ones are dialled).
    # `query`: due_contacts + the rules for its 50 contacts, after the previous
    # pass's writes are committed; `pass`: the same plus committing the pass's
    # 50 state changes (what the dial loop's own writes cost on top).
    query: list[float] = []
    whole: list[float] = []
    for _ in range(200):
        await store.flush()
        t = time.perf_counter()
        due = await store.due_contacts("hours", datetime.now(UTC), 50)
        verdicts = [
            hours.verdict(locator.locate(c.attributes, c.phones[0]), datetime.now(UTC)) for c in due
        ]
        query.append(time.perf_counter() - t)
        for c, v in zip(due, verdicts, strict=True):
            if v.callable:  # dialled
                store.set_contact_state("hours", c.contact_id, state="done")
            else:
                store.set_contact_state("hours", c.contact_id, state="deferred",
                                        next_attempt_at=v.until, skip_reason=v.reason)  # fmt: skip
                deferred += 1
        await store.flush()
        whole.append(time.perf_counter() - t)
    for label, xs in (("query+rules", query), ("pass+commit", whole)):
        xs.sort()
        print(f"{label:17s} limit 50, 200 passes: median {statistics.median(xs) * 1000:.2f} ms, "
              f"p95 {xs[189] * 1000:.2f} ms, max {xs[-1] * 1000:.2f} ms")  # fmt: skip
    print(f"deferred          {deferred:,} in all")


if __name__ == "__main__":
    asyncio.run(main())
