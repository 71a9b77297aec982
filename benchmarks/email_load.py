"""Email load: messages/s from the store to relay-accepted (a stored
`submitted` status with the relay's queue id), unsigned and DKIM-signed
(rsa-2048, ed25519), to Postfix's `smtp-sink` on loopback (a separate
process), our signer compared with dkimpy in the same run.

    python -m benchmarks.email_load [--messages 3000] [--keys none,rsa-2048,ed25519]
        [--signers ours,dkimpy] [--paths notify,campaign] [--connections 4]
        [--clients 64] [--warmup 200] [--profile FILE]

Everything on our side runs in this process as in the daemon: a `Store` on a
temporary SQLite file (WAL, synchronous=normal), the `EmailService` (its
`EmailSender`, the relay's `SmtpPool` of ``--connections`` connections, the
DKIM `Signer` thread pool) on uvloop. One fresh store and service per case.
The message: multipart/alternative, a text and an HTML part filled from the
contact's columns (~4 KB), From/To/Subject/Date/Message-ID/Reply-To, and for
a campaign RFC 8058's List-Unsubscribe pair, the VERP return path. Two paths:

- notify: `EmailService.send` (`outdial ctl email send`'s and the API's
  path: the template filled, the opt-out check, the message row committed,
  then the sender) from ``--clients`` concurrent callers, each waiting for its
  message's `submitted` commit before sending the next;
- campaign: a whole email campaign (a contact list of ``--messages``
  contacts, no throughput limit), from `start` to the last `submitted` commit.

The dkimpy rows swap the signing function (same pool, same messages) for
`dkim.sign` (relaxed/relaxed, the same headers): the only difference.
Per case: messages/s, p50/p99 from the message's creation to its `submitted`
commit, our process's CPU per 1,000 messages (event loop, store and signing
threads), smtp-sink's CPU per 1,000, and the sink's own count of messages it
took (a check that every message arrived once).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from benchmarks.sms_load import Tracker, _names, cpu_of, cpu_self, run_profiled, wait_for
from carriers.email.dkim import DEFAULT_SIGNED_HEADERS, DkimKey
from engine.bus import EventBus
from engine.config import load_config
from engine.email.service import EmailService
from engine.store import Store

DOMAIN, SELECTOR = "example.com", "bench"
SMTP_SINK = "/usr/sbin/smtp-sink"
SUBJECT = "Your appointment on {{ date }}, {{ first_name }}"
TEXT = (
    "Hello {{ first_name }},\n\nthis is a reminder of your appointment on {{ date }} at the "
    "Example Clinic, 12 Main Street.\n"
    + "Please bring your insurance card and a list of the medicines you take.\n" * 18
    + "\nTo change the time, call 555-0100.\n"
)
HTML = (
    "<html><body><p>Hello {{ first_name }},</p>\n<p>this is a reminder of your "
    "appointment on <b>{{ date }}</b> at the Example Clinic, 12 Main Street.</p>\n"
    + "<p>Please bring your insurance card and a list of the medicines you take.</p>\n" * 18
    + "<p>To change the time, call 555-0100.</p></body></html>\n"
)
_COUNTERS = re.compile(rb"mesg=(\d+)")


def address(i: int) -> str:
    return f"pat{i}@example.org"


# ------------------------------------------------------------------ the sink


class Sink:
    """`smtp-sink -c` on loopback: accepts everything, prints its counters
    (sessions:quits:messages) on stdout as they change."""

    def __init__(self, workdir: Path) -> None:
        if not os.access(SMTP_SINK, os.X_OK):
            raise SystemExit(f"{SMTP_SINK} is missing: apt-get install postfix (make bench does)")
        self.out = workdir / "sink.out"
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        user = ["-u", "root"] if os.geteuid() == 0 else []
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [SMTP_SINK, *user, "-c", f"127.0.0.1:{self.port}", "256"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 5
        while not any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port
                      for c in self.ps.net_connections(kind="tcp")):  # fmt: skip
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"smtp-sink did not start: {self.out.read_bytes()!r}")
            time.sleep(0.02)

    def messages(self) -> int:
        found = _COUNTERS.findall(self.out.read_bytes().replace(b"\r", b"\n"))
        return int(found[-1]) if found else 0

    def cpu(self) -> float:
        return cpu_of(self.ps)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------ config


def write_keys(workdir: Path) -> dict[str, Path]:
    keys: dict[str, Any] = {
        "rsa-2048": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    out = {}
    for name, private in keys.items():
        path = workdir / f"{name}.pem"
        path.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
        out[name] = path
    return out


def daemon_yaml(workdir: Path, port: int, connections: int, key: Path | None) -> Path:
    path = workdir / "outdial.yaml"
    (workdir / "campaigns").mkdir(exist_ok=True)
    dkim = f"  dkim:\n    - {{domain: {DOMAIN}, selector: {SELECTOR}, key_file: {key}}}\n"
    path.write_text(
        "trunks:\n  - name: carrier\n    uri: sip:127.0.0.1:5060\n"
        f"store_url: sqlite:///{workdir / 'outdial.db'}\n"
        f"control_socket: {workdir / 'outdial.sock'}\n"
        "compliance:\n  legal_hours: lab\n"
        "email:\n  domain: mail.example.com\n"
        '  from: "Example Clinic <reminders@example.com>"\n'
        "  unsubscribe_url: https://mail.example.com\n"
        f"  secret_file: {workdir / 'email.secret'}\n"
        "  relays:\n    sink:\n      host: 127.0.0.1\n"
        f"      port: {port}\n      connections: {connections}\n"
        "      messages_per_connection: 1000\n      per_domain_concurrency: 10000\n"
        + (dkim if key is not None else "")
        + "  templates:\n    bench:\n"
        f"      subject: {json.dumps(SUBJECT)}\n      text: {json.dumps(TEXT)}\n"
        f"      html: {json.dumps(HTML)}\n"
    )
    return path


def campaign_yaml() -> str:
    return (
        "name: bench\nchannel: email\ncontact_list: bench\ntemplate_name: bench\n"
        "retry: {attempts: 3, after: 1s}\n"
    )


def write_contacts(path: Path, count: int) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "phone", "first_name", "date"])
        for i in range(count):
            w.writerow([address(100_000 + i), f"+1212{200 + i // 10_000:03d}{i % 10_000:04d}",
                        f"Pat{i}", "Monday 3 pm"])  # fmt: skip


# ------------------------------------------------------------------ dkimpy


def dkimpy_sign(pem: bytes, kind: str) -> Callable[..., bytes]:
    """A drop-in for `carriers.email.dkim.sign` that signs with dkimpy."""
    import dkim as dkimpy

    secret = pem
    if kind == "ed25519":  # dkimpy takes the 32-byte seed, base64
        key = serialization.load_pem_private_key(pem, None)
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())  # fmt: skip
        secret = base64.b64encode(raw)
    algo = b"ed25519-sha256" if kind == "ed25519" else b"rsa-sha256"

    def sign(message: bytes, key: DkimKey, *, headers: Iterable[str] = DEFAULT_SIGNED_HEADERS,
             timestamp: int | None = None, expire: int | None = None) -> bytes:  # fmt: skip
        present = {h.split(b":", 1)[0].strip().lower() for h in
                   message.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if b":" in h}  # fmt: skip
        wanted = [h.encode() for h in headers if h.lower().encode() in present]
        signature: bytes = dkimpy.sign(
            message, SELECTOR.encode(), DOMAIN.encode(), secret, include_headers=wanted,
            canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algo,
        )  # fmt: skip
        return signature

    return sign


# ------------------------------------------------------------------ cases


@dataclass
class Case:
    key: str  # none, rsa-2048, ed25519
    signer: str  # ours, dkimpy ("-" unsigned)
    path: str  # notify, campaign


@dataclass
class Result:
    case: Case
    messages: int
    seconds: float
    p50: float
    p99: float
    cpu: float
    sink_cpu: float
    sink_took: int
    failed: int


async def notify(service: EmailService, tracker: Tracker, numbers: Iterator[int],
                 clients: int) -> None:  # fmt: skip
    async def caller() -> None:
        for i in numbers:
            data = {"first_name": f"Pat{i}", "date": "Monday 3 pm"}
            sent = await service.send(address(i), template="bench", data=data)
            await tracker.submitted(sent["id"])

    await asyncio.gather(*(caller() for _ in range(clients)))


async def run_case(case: Case, args: argparse.Namespace, sink: Sink, keys: dict[str, Path],
                   workdir: Path) -> Result:  # fmt: skip
    casedir = workdir / f"{case.key}-{case.signer}-{case.path}"
    casedir.mkdir()
    key = keys.get(case.key)
    config = load_config(daemon_yaml(casedir, sink.port, args.connections, key))
    if case.path == "campaign":
        (casedir / "campaigns" / "bench.yaml").write_text(campaign_yaml())
    store = await Store.open(config.store_url)
    tracker = Tracker(store)
    service = EmailService(store, EventBus(), config)
    try:
        await service.start()
        if case.signer == "dkimpy":
            import carriers.email.signer as signer_module

            assert key is not None
            signer_module.sign = dkimpy_sign(key.read_bytes(), case.key)  # type: ignore[assignment]
        if case.path == "campaign":
            contacts = casedir / "contacts.csv"
            write_contacts(contacts, args.messages)
            summary = await store.import_contacts("bench", contacts, phone_columns=["phone"])
            assert summary.imported == args.messages, summary
        numbers = iter(range(10_000_000))
        if args.warmup:
            warm = iter(range(args.warmup))
            await notify(service, tracker, (next(numbers) for _ in warm), args.clients)
        tracker.reset()
        took0, cpu0, sink0, t0 = sink.messages(), cpu_self(), sink.cpu(), time.perf_counter()
        n = args.messages
        if case.path == "notify":
            count = iter(range(n))
            await notify(service, tracker, (next(numbers) for _ in count), args.clients)
        else:
            await service.runner("bench").start()
            await wait_for(lambda: len(tracker.latencies) + tracker.failed >= n, 600)
        seconds = tracker.last_commit - t0
        cpu, sink_cpu = cpu_self() - cpu0, sink.cpu() - sink0
        await wait_for(lambda: sink.messages() - took0 >= n, 5)
        lat = sorted(tracker.latencies) or [0.0]
        return Result(case, len(tracker.latencies), seconds, lat[len(lat) // 2],
                      lat[min(len(lat) - 1, int(len(lat) * 0.99))], cpu, sink_cpu,
                      sink.messages() - took0, tracker.failed)  # fmt: skip
    finally:
        import carriers.email.dkim as dkim_module
        import carriers.email.signer as signer_module

        signer_module.sign = dkim_module.sign
        await service.shutdown(2.0)
        await store.close()


HEADER = (
    f"{'key':9} {'signer':6} {'path':8} {'messages':>8} {'seconds':>7} {'msgs/s':>7} "
    f"{'p50 ms':>7} {'p99 ms':>7} {'CPU s/1k':>8} {'sink s/1k':>9} {'sink took':>9}"
)


def row(r: Result) -> str:
    per_k = 1000 / max(1, r.messages)
    failed = f"  FAILED {r.failed}" if r.failed else ""
    return (
        f"{r.case.key:9} {r.case.signer:6} {r.case.path:8} {r.messages:>8,} {r.seconds:>7.2f} "
        f"{r.messages / r.seconds:>7,.0f} {r.p50 * 1000:>7.1f} {r.p99 * 1000:>7.1f} "
        f"{r.cpu * per_k:>8.3f} {r.sink_cpu * per_k:>9.3f} {r.sink_took:>9,}{failed}"
    )


def cases(args: argparse.Namespace) -> list[Case]:
    out = []
    for path in args.paths:
        for key in args.keys:
            for signer in ["-"] if key == "none" else args.signers:
                out.append(Case(key, signer, path))
    return out


async def run(args: argparse.Namespace, emit: Callable[[str], None] = print) -> list[Result]:
    """Run every case (the test calls this at a tiny size); prints the table and,
    per key and path, how many times dkimpy's rate ours is."""
    emit(f"email_load: {args.messages:,} messages a case, {args.connections} SMTP connections, "
         f"{os.cpu_count()} cores, python {sys.version.split()[0]}")  # fmt: skip
    emit(HEADER)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="outdial-emailbench-") as tmp:
        workdir = Path(tmp)
        keys = write_keys(workdir)
        sink = Sink(workdir)
        try:
            for case in cases(args):
                result = await run_case(case, args, sink, keys, workdir)
                results.append(result)
                emit(row(result))
        finally:
            sink.stop()
    rates = {(r.case.key, r.case.signer, r.case.path): r.messages / r.seconds for r in results}
    for (key, signer, path), rate in rates.items():
        theirs = rates.get((key, "dkimpy", path))
        if signer == "ours" and theirs:
            emit(f"{key} {path}: ours {rate:,.0f} msgs/s, dkimpy {theirs:,.0f}: "
                 f"{rate / theirs:.1f}x")  # fmt: skip
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--messages", type=int, default=3000, help="messages per case")
    p.add_argument("--keys", type=_names(("none", "rsa-2048", "ed25519")),
                   default=["none", "rsa-2048", "ed25519"])  # fmt: skip
    p.add_argument("--signers", type=_names(("ours", "dkimpy")), default=["ours", "dkimpy"])
    p.add_argument("--paths", type=_names(("notify", "campaign")), default=["notify", "campaign"])
    p.add_argument("--connections", type=int, default=4, help="SMTP connections to the sink")
    p.add_argument("--clients", type=int, default=64, help="notify callers")
    p.add_argument("--warmup", type=int, default=200, help="uncounted notifications a case")
    p.add_argument("--profile", type=Path, help="cProfile the event loop thread into FILE")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    run_profiled(run(args), args.profile)


if __name__ == "__main__":
    main()
