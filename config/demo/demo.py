"""`make demo`: a real campaign against a local SIPp carrier, start to finish.

It generates the audio (espeak-ng, sox) and a contact list, starts a SIPp
carrier on loopback whose answers depend on each number's last digit (answer,
busy, ring out, invalid, unavailable), starts `outdial run` with
config/demo/outdial.yaml, imports the list, adds two numbers to the
do-not-contact list, starts the campaign, shows live progress, prints the
report, and stops everything.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VAR = ROOT / "var" / "demo"
PY = sys.executable
CONTACTS = 300
CARRIER_PORT = 5070
OUTCOMES = {0: "answer", 1: "answer", 2: "answer", 3: "answer", 4: "answer", 5: "busy",
            6: "busy", 7: "no answer", 8: "invalid", 9: "unavailable"}  # fmt: skip
BAR = 40


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"demo: {tool} is missing; run `make demo`, which installs it")
    return path


def make_audio() -> tuple[Path, Path]:
    prompts = VAR / "prompts"
    prompts.mkdir(parents=True, exist_ok=True)
    prompt = prompts / "reminder.wav"
    text = ("Hello. This is Acme Dental with a reminder of your appointment "
            "tomorrow at ten a m. Goodbye.")  # fmt: skip
    subprocess.run([need("espeak-ng"), "-v", "en-us", "-s", "165", "-w", str(prompt), text],
                   check=True)  # fmt: skip
    hello = VAR / "callee.wav"
    subprocess.run([need("espeak-ng"), "-v", "en-us+f3", "-w", str(hello), "Hello? Who is this?"],
                   check=True)  # fmt: skip
    callee = VAR / "callee.ul"
    subprocess.run([need("sox"), str(hello), "-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul",
                    str(callee), "pad", "0", "2"], check=True)  # fmt: skip
    return prompt, callee


def make_contacts() -> tuple[Path, list[str]]:
    rng = random.Random(2026)
    path = VAR / "contacts.csv"
    phones = []
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["customer_id", "first_name", "phone", "mobile"])
        for i in range(CONTACTS):
            area = rng.choice(["212", "646", "312", "415", "617"])
            phone = f"+1{area}555{1000 + i:04d}"
            phones.append(phone)
            out.writerow(
                [f"C{i:05d}", rng.choice(["Ana", "Ben", "Chen", "Dara", "Eli"]), phone, ""]
            )
        out.writerow(["C99998", "Bad", "12345", ""])  # shown in the import report
        out.writerow(["C99999", "Dup", phones[0], ""])
    return path, phones


def ctl(*args: str) -> dict | list | str:
    cmd = [PY, "-m", "engine.cli", "ctl", "--socket", str(VAR / "outdial.sock"), "--json", *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"outdial ctl {' '.join(args)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def wait_for_socket(daemon: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            sys.exit(f"demo: the daemon exited early; see {VAR / 'daemon.log'}")
        if (VAR / "outdial.sock").exists():
            try:
                ctl("status")
                return
            except RuntimeError:
                pass
        time.sleep(0.2)
    sys.exit("demo: the daemon did not open its control socket in time")


def progress_line(show: dict) -> str:
    p = show["progress"]
    total = max(1, p["total"])
    done = p["processed"]
    filled = int(BAR * done / total)
    by = p.get("by_result", {})
    short = {"answered": "ans", "busy": "busy", "no_answer": "noans",
             "invalid_number": "inval", "unavailable": "unav"}  # fmt: skip
    counts = " ".join(f"{short.get(k, k)} {v}" for k, v in sorted(by.items()))
    return (f"\r[{'#' * filled}{'.' * (BAR - filled)}] {done}/{p['total']} contacts, "
            f"{show['in_flight']:>2} calls | attempts: {counts}\033[K")  # fmt: skip


def main() -> int:
    if VAR.exists():
        shutil.rmtree(VAR)
    VAR.mkdir(parents=True)
    print("outdial demo: generating audio and a contact list ...")
    _, callee = make_audio()
    contacts, phones = make_contacts()
    sipp = subprocess.Popen(
        [need("sipp"), "-sf", str(ROOT / "config" / "sipp" / "mix.xml"), "-i", "127.0.0.1",
         "-p", str(CARRIER_PORT), "-mi", "127.0.0.1", "-mp", "16000", "-d", "2000",
         "-key", "audio", f"{callee},-1,0", "-nostdin", "-bg"],
        cwd=VAR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sipp.wait()  # -bg: SIPp forks to the background and leaves its pid behind
    log = (VAR / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [PY, "-m", "engine.cli", "run", "--config", str(HERE / "outdial.yaml")],
        cwd=ROOT, stdout=log, stderr=log,
    )  # fmt: skip
    started = time.monotonic()
    try:
        wait_for_socket(daemon)
        print(f"carrier: SIPp on 127.0.0.1:{CARRIER_PORT} (numbers ending 0-4 answer, 5-6 busy, "
              "7 ring out, 8 invalid, 9 unavailable)")  # fmt: skip
        summary = ctl("contacts", "import", "demo-patients", str(contacts),
                      "--errors", str(VAR / "import-errors.csv"))  # fmt: skip
        print(
            f"imported {summary['imported']} contacts, {summary['invalid']} invalid and "
            f"{summary['duplicates']} duplicate rows reported in var/demo/import-errors.csv"
        )
        blocked = [p for p in phones if p[-1] in "01234"][3:5]  # two that would answer
        for number in blocked:
            ctl("dnc", "add", number, "--source", "demo")
        print(f"do-not-contact: {', '.join(blocked)}; starting campaign 'reminders'")
        ctl("campaign", "start", "reminders")
        while True:
            show = ctl("campaign", "show", "reminders")
            assert isinstance(show, dict)
            print(progress_line(show), end="", flush=True)
            if show["state"] == "completed":
                break
            if time.monotonic() - started > 300:
                print("\ndemo: the campaign did not finish within 5 minutes")
                return 1
            time.sleep(0.5)
        print()
        report = ctl("report", "summary", "reminders")
        print_report(report, time.monotonic() - started)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        subprocess.run(["pkill", "-f", f"sipp.*-p {CARRIER_PORT}"], check=False)
    return 0


def print_report(report: dict, seconds: float) -> None:
    print(f"\nCampaign 'reminders' finished in {seconds:.0f} s")
    print(f"  contacts        {report['total']}")
    print(f"  call attempts   {report['attempts']}, by result:")
    for result, count in sorted(report["by_result"].items(), key=lambda kv: -kv[1]):
        print(f"    {result:<16}{count}")
    print(f"  skipped (DNC)   {report.get('skipped', 0)}")
    print(f"  connect rate    {100 * report['connect_rate']:.1f}%")
    print(
        f"  average ring    {report['avg_ring_ms'] / 1000:.1f} s (first ring to answer or give-up)"
    )
    print(f"  post-dial delay {report['avg_pdd_ms'] or 0} ms (INVITE to first ring)")
    print(f"  average talk    {report['avg_talk_ms'] / 1000:.1f} s")
    print(
        f"\nEvery attempt: .venv/bin/outdial ctl --socket {VAR / 'outdial.sock'} "
        "report attempts reminders (while a daemon runs), or the SQLite file "
        f"{VAR / 'outdial.db'}"
    )


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
