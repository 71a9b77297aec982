"""SMS load: segments/s from the store to a stored `submitted` status, against
the real SMSC on loopback (the npm `smpp` package's server,
tests/peers/smsc/smsc.js, a separate node process) and against a fake
Twilio-shaped Messages API (aiohttp, a separate Python process).

    python -m benchmarks.sms_load [--messages 6000] [--windows 1,10,50]
        [--segments 1,2] [--binds 1] [--paths notify,campaign]
        [--adapters smpp,http] [--clients N] [--warmup 300] [--profile FILE]

Everything on our side runs in this process as in the daemon: a `Store` on a
temporary SQLite file (WAL, synchronous=normal: the daemon's default), the
`SmsService` (its `Sender`, the account's `SmppChannel`/`SmppAccount` or
`HttpChannel`) on uvloop, delivery receipts applied as they come. One fresh
store and service per case; the SMPP account has one bind (``--binds``) with
the case's window. Two paths:

- notify: `SmsService.send` (the API's and `outdial ctl sms send`'s path: the
  opt-out check, the message row committed, then the sender), from
  ``--clients`` concurrent callers, each waiting for its message to be
  stored `submitted` before sending the next;
- campaign: a whole SMS campaign (`SmsCampaignRunner`: a contact list of
  ``--messages`` contacts, template filled per contact, DNC and opt-out
  checks, no throughput limit), from `start` to the last stored `submitted`.

Per case: messages, segments, seconds from the first create to the last
`submitted` commit, segments/s, p50/p99 latency from the call that creates
the message to the commit of its `submitted` status (for a campaign the
runner creates 500 contacts' messages at once, so this includes the wait for
a sender slot), group commits, our process's CPU (both threads: event loop
and store) per 1,000 messages, measured until every receipt is applied, and
the peer's CPU per 1,000 messages, and the store's count of messages
delivered (a check that every receipt was applied; the fake Twilio API sends
no status callbacks). Each case first sends ``--warmup`` notifications that
are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import csv
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from engine.bus import EventBus
from engine.config import load_config
from engine.sms.service import SmsService
from engine.store import Store

ROOT = Path(__file__).resolve().parents[1]
SMSC_DIR = ROOT / "tests" / "peers" / "smsc"
SID = "AC" + "0" * 31 + "1"
TOKEN = "bench-auth-token"
SENDER = "+15550100"
TEXTS = {  # GSM-7; 1 segment holds 160 characters, each of 2 holds 153
    1: "Hi {first_name}, your appointment is on {date}. Reply STOP to opt out.",
    2: (
        "Hi {first_name}, this is a reminder of your appointment on {date} at the "
        "Example Clinic, 12 Main Street. Please bring your insurance card and a list "
        "of the medicines you take. To change the time, call 555-0100. Reply STOP to opt out."
    ),
}


def number(i: int) -> str:
    """Distinct valid NANP mobile-looking numbers (New York 212)."""
    return f"+1212{200 + i // 10_000:03d}{i % 10_000:04d}"


def fill(segments: int, i: int) -> str:
    return TEXTS[segments].format(first_name=f"Pat{i}", date="Monday 3 pm")


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_of(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


# ------------------------------------------------------------------ peers


class Peer:
    """A loopback peer process that prints "ready <port>" once listening."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"{argv[1]} did not start: {line!r}")
        self.port = int(line.split()[1])
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        return cpu_of(self.ps)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # both peers exit when stdin closes
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_smsc() -> Peer:
    if not (SMSC_DIR / "node_modules" / "smpp").is_dir():
        sys.exit("the node SMSC is not installed: (cd tests/peers/smsc && npm ci)")
    return Peer(["node", str(SMSC_DIR / "smsc.js"), "--port", "0"], SMSC_DIR)


def start_fake_twilio() -> Peer:
    return Peer([sys.executable, "-m", "benchmarks.sms_load", "--fake-twilio"], ROOT)


def serve_fake_twilio() -> None:
    """The Messages resource of one account, as Twilio answers a good request
    (201 and the message resource); no status callbacks. Runs until stdin closes."""
    import json
    import uuid

    import uvloop
    from aiohttp import web

    async def messages(request: web.Request) -> web.Response:
        form = await request.post()
        resource = {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": SID,
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "status": "queued",
            "num_segments": "1",
            "error_code": None,
            "error_message": None,
            "api_version": "2010-04-01",
        }
        return web.Response(status=201, text=json.dumps(resource), content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", messages)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"ready {runner.addresses[0][1]}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    uvloop.run(main())


# ------------------------------------------------------------------ our side


def daemon_yaml(workdir: Path, account: str) -> Path:
    path = workdir / "outdial.yaml"
    (workdir / "campaigns").mkdir(exist_ok=True)
    path.write_text(
        "trunks:\n  - name: carrier\n    uri: sip:127.0.0.1:5060\n"
        f"store_url: sqlite:///{workdir / 'outdial.db'}\n"
        f"control_socket: {workdir / 'outdial.sock'}\n"
        "compliance:\n  legal_hours: lab\n"  # a loopback rig, whatever the hour
        "sms:\n  accounts:\n" + account + f'  default_sender: "{SENDER}"\n'
    )
    return path


def smpp_account(port: int, window: int, binds: int) -> str:
    return (
        "    bench:\n      type: smpp\n      host: 127.0.0.1\n"
        f"      port: {port}\n      system_id: outdial\n      password: secret\n"
        f"      window: {window}\n      binds: {binds}\n"
    )


def http_account(port: int) -> str:
    return (
        "    bench:\n      type: twilio\n"
        f"      url: http://127.0.0.1:{port}\n"
        f"      account_sid: {SID}\n      auth_token: {TOKEN}\n"
    )


@dataclass
class Tracker:
    """Times each message from the call that creates it to the commit of its
    `submitted` status, by wrapping the store's two methods on the instance
    (one `flush` per loop iteration that set statuses, not one per message)."""

    store: Store
    created: dict[int, float] = field(default_factory=dict)
    waiting: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    last_commit: float = 0.0
    receipts: int = 0
    _batch: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        store = self.store
        create, set_status = store.create_message, store.set_message_status

        async def create_message(values: Any, campaign: str | None = None) -> int:
            t = time.perf_counter()
            message_id = await create(values, campaign)
            self.created[message_id] = t
            return message_id

        def set_message_status(message_id: int, status: str, detail: Any = None, **f: Any) -> None:
            set_status(message_id, status, detail, **f)
            if status == "submitted":
                self._submitted(message_id)
            elif status in ("rejected", "failed"):
                self.failed += 1

        unless = store.create_message_unless_listed

        async def create_message_unless_listed(values: Any, lists: Any) -> Any:
            t = time.perf_counter()
            created = await unless(values, lists)
            if isinstance(created, int):
                self.created[created] = t
            return created

        store.create_message = create_message  # type: ignore[method-assign]
        store.create_message_unless_listed = create_message_unless_listed  # type: ignore[method-assign]
        store.set_message_status = set_message_status  # type: ignore[method-assign]
        submitted = getattr(store, "message_submitted", None)  # the last part and the status
        if submitted is not None:

            def message_submitted(message_id: int, *a: Any, **f: Any) -> None:
                submitted(message_id, *a, **f)
                self._submitted(message_id)

            store.message_submitted = message_submitted  # type: ignore[method-assign]

    def _submitted(self, message_id: int) -> None:
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._flush)
        self._batch.append(message_id)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        future = asyncio.ensure_future(self.store.flush())
        future.add_done_callback(lambda _: self._committed(batch))

    def _committed(self, batch: list[int]) -> None:
        now = self.last_commit = time.perf_counter()
        for message_id in batch:
            start = self.created.pop(message_id, None)
            if start is not None:
                self.latencies.append(now - start)
            waiter = self.waiting.pop(message_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def submitted(self, message_id: int) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[message_id] = future
        return future

    def reset(self) -> None:
        self.latencies.clear()
        self.failed = 0
        self.receipts = 0


@dataclass
class Result:
    adapter: str
    path: str
    window: str
    segments_each: int
    messages: int
    seconds: float
    p50: float
    p99: float
    commits: int
    cpu: float  # ours, until the receipts are in
    peer_cpu: float
    receipts: int
    unknown: int
    failed: int
    accepted: int  # the store's count of messages the carrier took
    delivered: int  # ... and of those delivered (every receipt applied)

    @property
    def segments(self) -> int:
        return self.messages * self.segments_each


async def wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def notify(service: SmsService, tracker: Tracker, first: int, count: int,
                 segments: int, clients: int) -> None:  # fmt: skip
    numbers: Iterator[int] = iter(range(first, first + count))

    async def caller() -> None:
        for i in numbers:
            sent = await service.send(number(i), fill(segments, i), account="bench")
            await tracker.submitted(sent["id"])

    await asyncio.gather(*(caller() for _ in range(clients)))


def write_contacts(path: Path, count: int) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["phone", "first_name", "date"])
        for i in range(count):
            w.writerow([number(100_000 + i), f"Pat{i}", "Monday 3 pm"])


def campaign_yaml(segments: int) -> str:
    return (
        "name: bench\nchannel: sms\ncontact_list: bench\naccount: bench\n"
        f"template: {TEXTS[segments]!r}\nretry: {{attempts: 3, after: 1s}}\n"
    )


@dataclass
class Case:
    adapter: str  # smpp, http
    path: str  # notify, campaign
    window: int  # SMPP window (HTTP: unused)
    segments: int


async def run_case(case: Case, args: argparse.Namespace, peer: Peer) -> Result:
    with tempfile.TemporaryDirectory(prefix="outdial-smsbench-") as tmp:
        workdir = Path(tmp)
        account = (
            smpp_account(peer.port, case.window, args.binds)
            if case.adapter == "smpp"
            else http_account(peer.port)
        )
        config_path = daemon_yaml(workdir, account)
        if case.path == "campaign":
            (workdir / "campaigns" / "bench.yaml").write_text(campaign_yaml(case.segments))
        config = load_config(config_path)
        store = await Store.open(config.store_url)
        tracker = Tracker(store)
        service = SmsService(store, EventBus(), config)
        on_receipt = service.on_receipt

        async def counted(*a: Any) -> dict[str, Any] | None:
            found = await on_receipt(*a)
            tracker.receipts += 1
            return found

        service.on_receipt = counted  # type: ignore[method-assign,assignment]
        try:
            await service.start()
            channel = service.channels["bench"]
            if case.adapter == "smpp":
                await channel.account.wait_bound(10)  # type: ignore[attr-defined]
            if case.path == "campaign":
                contacts = workdir / "contacts.csv"
                write_contacts(contacts, args.messages)
                summary = await store.import_contacts("bench", contacts, phone_columns=["phone"])
                assert summary.imported == args.messages, summary
            if args.warmup:
                await notify(service, tracker, 0, args.warmup, case.segments, args.clients or 32)
                if case.adapter == "smpp":  # the fake Twilio API sends no status callbacks
                    await wait_for(lambda: tracker.receipts >= args.warmup * case.segments, 10)
            return await measure(case, args, peer, service, store, tracker)
        finally:
            await service.shutdown(2.0)
            await store.close()


async def measure(case: Case, args: argparse.Namespace, peer: Peer, service: SmsService,
                  store: Store, tracker: Tracker) -> Result:  # fmt: skip
    tracker.reset()
    campaign = "bench" if case.path == "campaign" else None
    before = await store.message_report(campaign)
    unknown0, commits0 = service.receipts_unknown, store.commits
    cpu0, peer0, t0 = cpu_self(), peer.cpu(), time.perf_counter()
    n = args.messages
    if case.path == "notify":
        clients = args.clients or (max(16, 4 * case.window * args.binds)
                                   if case.adapter == "smpp" else 64)  # fmt: skip
        await notify(service, tracker, args.warmup, n, case.segments, clients)
    else:
        await service.runner("bench").start()
        await wait_for(lambda: len(tracker.latencies) + tracker.failed >= n, 600)
    seconds = tracker.last_commit - t0
    commits = store.commits - commits0
    expected = n * case.segments if case.adapter == "smpp" else 0
    await wait_for(lambda: tracker.receipts >= expected, 10)
    cpu, peer_cpu = cpu_self() - cpu0, peer.cpu() - peer0
    after = await store.message_report(campaign)  # what the store says, as a check
    accepted, delivered = (after[k] - before[k] for k in ("accepted", "delivered"))
    lat = sorted(tracker.latencies) or [0.0]
    return Result(
        case.adapter, case.path, str(case.window) if case.adapter == "smpp" else "-",
        case.segments, len(tracker.latencies), seconds, statistics.median(lat),
        lat[min(len(lat) - 1, int(len(lat) * 0.99))], commits, cpu, peer_cpu,
        tracker.receipts, service.receipts_unknown - unknown0, tracker.failed, accepted,
        delivered,
    )  # fmt: skip


HEADER = (
    f"{'adapter':7} {'path':8} {'window':>6} {'seg/msg':>7} {'messages':>8} {'segments':>8} "
    f"{'seconds':>7} {'seg/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'commits':>7} "
    f"{'CPU s/1k':>8} {'peer s/1k':>9} {'delivered':>9}"
)


def row(r: Result) -> str:
    per_k = 1000 / max(1, r.messages)
    receipts = f"{r.delivered}" + (f" ({r.unknown} unknown)" if r.unknown else "")
    failed = f"  FAILED {r.failed}" if r.failed else ""
    return (
        f"{r.adapter:7} {r.path:8} {r.window:>6} {r.segments_each:>7} {r.messages:>8,} "
        f"{r.segments:>8,} {r.seconds:>7.2f} {r.segments / r.seconds:>7,.0f} "
        f"{r.p50 * 1000:>7.1f} {r.p99 * 1000:>7.1f} {r.commits:>7,} {r.cpu * per_k:>8.3f} "
        f"{r.peer_cpu * per_k:>9.3f} {receipts:>9}{failed}"
    )


def cases(args: argparse.Namespace) -> list[Case]:
    out: list[Case] = []
    for adapter in args.adapters:
        windows = args.windows if adapter == "smpp" else [0]
        for path in args.paths:
            for segments in args.segments:
                out.extend(Case(adapter, path, w, segments) for w in windows)
    return out


async def run(args: argparse.Namespace, emit: Callable[[str], None] = print) -> list[Result]:
    """Run every case (the test calls this at a tiny size); prints the table."""
    results: list[Result] = []
    todo = cases(args)
    emit(
        f"sms_load: {args.messages:,} messages a case, {args.binds} bind(s), "
        f"{os.cpu_count()} cores, python {sys.version.split()[0]}"
    )
    emit(HEADER)
    for adapter in args.adapters:
        peer = start_smsc() if adapter == "smpp" else start_fake_twilio()
        try:
            for case in (c for c in todo if c.adapter == adapter):
                result = await run_case(case, args, peer)
                results.append(result)
                emit(row(result))
        finally:
            peer.stop()
    return results


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [x for x in text.split(",") if x]
        bad = [x for x in names if x not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{', '.join(bad)}: expected {', '.join(allowed)}")
        return names

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--messages", type=int, default=6000, help="messages per case")
    p.add_argument("--windows", type=_ints, default=[1, 10, 50])
    p.add_argument("--segments", type=_ints, default=[1, 2], help="segments per message")
    p.add_argument("--binds", type=int, default=1)
    p.add_argument("--paths", type=_names(("notify", "campaign")), default=["notify", "campaign"])
    p.add_argument("--adapters", type=_names(("smpp", "http")), default=["smpp", "http"])
    p.add_argument(
        "--clients", type=int, default=0,
        help="notify callers (default: 4 x window x binds, at least 16; HTTP 64)",
    )  # fmt: skip
    p.add_argument("--warmup", type=int, default=300, help="uncounted notifications a case")
    p.add_argument("--profile", type=Path, help="cProfile the event loop thread into FILE")
    p.add_argument("--fake-twilio", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.fake_twilio:
        serve_fake_twilio()
        return
    run_profiled(run(args), args.profile)


def run_profiled(main: Coroutine[Any, Any, Any], profile_to: Path | None) -> None:
    """Run `main` on uvloop; with `profile_to`, under cProfile (the event loop
    thread) with the stats written there."""
    import uvloop

    if profile_to is None:
        uvloop.run(main)
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        uvloop.run(main)
    finally:
        profile.disable()
        profile.dump_stats(profile_to)


if __name__ == "__main__":
    main()
