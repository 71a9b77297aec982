"""Agents under load: the real daemon (`outdial run`) with hundreds of agents
on persistent legs, customer calls bridged to them, and call analysis.

outdial is pinned to core 0 (`taskset -c 0`), SIPp to core 1: ONE SIPp plays
every agent's phone (`config/sipp/agent_static.xml`, agents configured with
static URIs `sip:aN@127.0.0.1:PORT`, all at its port, streaming a 1300 Hz
tone), another plays the carrier (`config/sipp/answer.xml` with its BYE moved
out to an hour, streaming a 700 Hz tone). Every leg carries RTP both ways.

Phase 1 (steady load). Each case is run twice on the same legs:

- bridged: a `power` campaign (ratio 1) gives every logged-in agent a
  customer call, bridged at the answer (analysis off); the other customer
  calls are an agentless campaign playing a 10-minute prompt;
- unbridged: the same agents logged in and idle (their legs get comfort
  silence), and all the customer calls playing the prompt.

Over a steady window we read, through the control socket (`media.stats`),
the media clock's lateness p50/p99/max since the window's reset and the RTP
received and lost (sequence gaps) on our sessions; kernel drops on our RTP
sockets come from /proc/net/udp; our CPU and RSS from /proc/PID. CPU per
bridged call = (CPU bridged - CPU unbridged) / bridged calls: what a bridge
costs over a customer call that plays a prompt plus an idle agent leg.

Phase 2 (burst): an agentless campaign with call analysis (`amd:` section:
AMD + beep, fax and SIT detectors on every answered call) places 300 calls
at once; the carrier answers each 200 ms after its INVITE with a recorded
voicemail greeting. We print the lateness p99/max over the second of the
answers and over the seconds of analysis that follow.

Phase 3 (micro-benchmark, in this process on core 0): per-frame analysis CPU
per call with N = 1, 100, 300 calls, frame by frame (as before batching)
and batched (one `analyze_frames` over the (N, 160) block per tick).

    python -m benchmarks.agents_load [--cases 200x600,300x600] [--window 15]
        [--burst 300] [--skip-micro]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from dsp.wav import encode_wav

ROOT = Path(__file__).resolve().parents[1]
SIPP_DIR = ROOT / "config" / "sipp"
HOST = "127.0.0.1"
PY = sys.executable


# ------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
    return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def udp_drops(low: int, high: int) -> int:
    """Datagrams the kernel dropped on our RTP sockets (per-socket counter)."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if low <= int(fields[1].split(":")[1], 16) < high:
            total += int(fields[-1])
    return total


def request(sock_path: Path, cmd: str, **args: Any) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(str(sock_path))
        s.sendall((json.dumps({"id": 1, "cmd": cmd, "args": args}) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if not reply["ok"]:
        raise RuntimeError(f"{cmd}: {reply['error']}")
    return reply["result"]


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise RuntimeError(f"{what}: not within {timeout} s")


def sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True)


def tone_ul(path: Path, hz: float) -> Path:
    if not path.exists():
        sox("-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul", str(path),
            "synth", "2", "sine", str(hz), "vol", "0.4")  # fmt: skip
    return path


def greeting_ul(work: Path) -> Path:
    """A voicemail greeting (espeak-ng, 8 kHz mu-law) with 1 s of pause after it."""
    out = work / "greeting.ul"
    if not out.exists():
        raw = work / "greeting.22k.wav"
        text = ("Hi, you have reached Sam Miller. I can't take your call right now. "
                "Please leave your name and number and I will call you back.")  # fmt: skip
        subprocess.run(["espeak-ng", "-v", "en-us+f3", "-w", str(raw), text], check=True)
        sox(str(raw), "-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul", str(out),
            "pad", "0.3", "1")  # fmt: skip
    return out


class Sipp:
    def __init__(
        self, work: Path, scenario: Path, audio: Path, ring_ms: int, extra: tuple[str, ...] = ()
    ) -> None:
        self.port, self.media_port = free_port(), free_port() & ~1
        cmd = [
            "sipp", "-sf", str(scenario), "-i", HOST, "-p", str(self.port), "-mi", HOST,
            "-mp", str(self.media_port), "-d", str(ring_ms), "-nostdin",
            "-key", "audio", f"{audio},-1,0", "-max_socket", "65000", *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.sched_setaffinity(self.proc.pid, {1})
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError(f"SIPp exited at start: {' '.join(cmd)}")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def long_answer_scenario(work: Path) -> Path:
    """answer.xml with the carrier's own BYE an hour away (the window is long)."""
    out = work / "answer_long.xml"
    text = (SIPP_DIR / "answer.xml").read_text()
    out.write_text(text.replace('timeout="120000"', 'timeout="3600000"'))
    return out


def agent_scenario(work: Path) -> Path:
    """The agents' phones: `agent_static.xml` (answers, streams, stays up),
    or where it is absent the same flow from answer.xml with its BYE an hour away."""
    static = SIPP_DIR / "agent_static.xml"
    return static if static.exists() else long_answer_scenario(work)


class Daemon:
    def __init__(self, work: Path, trunk_port: int, agents: list[str], agent_port: int,
                 campaigns: dict[str, str], rtp: tuple[int, int], cps: int,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.work = work
        self.socket = work / "outdial.sock"
        self.rtp = rtp
        # The store on tmpfs: the benchmark measures media, not the disk's fsync.
        self.db = Path(tempfile.mkdtemp(prefix="outdial-db-", dir="/dev/shm")) / "outdial.db"
        (work / "campaigns").mkdir(exist_ok=True)
        for f in (work / "campaigns").glob("*.yaml"):
            f.unlink()
        lines = [
            "trunks:", "  - name: carrier", f"    uri: sip:{HOST}:{trunk_port}",
            "    max_calls: 2000", f"    calls_per_second: {cps}",
            f"store_url: sqlite:///{self.db}", f"control_socket: {self.socket}",
            f"sip_host: {HOST}", "sip_port: 0", f"rtp_ports: [{rtp[0]}, {rtp[1]}]",
            f"prompts_dir: {work}", "shutdown_grace: 2", "log:", "  level: info",
            "  format: json", "compliance:", "  legal_hours: lab",
        ]  # fmt: skip
        if agents:
            lines.append("agents:")
            for a in agents:
                lines += [f"  - id: {a}", f"    uri: sip:{a}@{HOST}:{agent_port}"]
        config = work / "outdial.yaml"
        config.write_text("\n".join(lines) + "\n")
        for name, text in campaigns.items():
            (work / "campaigns" / f"{name}.yaml").write_text(text)
        log = (work / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", PY, "-m", "engine.cli", "run", "--config", str(config)],
            cwd=ROOT, stdout=log, stderr=log, env={**os.environ, **(env or {})},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError((work / "daemon.log").read_text()[-3000:])
            try:
                self("status")
                break
            except (OSError, RuntimeError, json.JSONDecodeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def __call__(self, cmd: str, **args: Any) -> Any:
        return request(self.socket, cmd, **args)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in self.db.parent.iterdir():
            f.unlink()
        self.db.parent.rmdir()


def campaign(name: str, mode: str, contacts: str, lines: int, extra: str = "") -> str:
    return (
        f"name: {name}\nchannel: voice\nmode: {mode}\ncontact_list: {contacts}\n"
        f"trunk: carrier\nlines: {lines}\nmax_attempts: 1\nring_timeout: 15\n"
        f"max_duration: 1h\nprompt: long.wav\nsafe_harbor: safe.wav\n{extra}"
    )


def write_prompts(work: Path) -> None:
    t = np.arange(8000 * 600) / 8000  # 10 minutes: it outlasts any window
    long = (np.sin(2 * np.pi * 500 * t) * 6000).astype(np.int16)
    (work / "long.wav").write_bytes(encode_wav(long))
    t = np.arange(12000) / 8000
    safe = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    (work / "safe.wav").write_bytes(encode_wav(safe))


def import_contacts(d: Daemon, work: Path, listname: str, count: int, prefix: str) -> None:
    path = work / f"{listname}.csv"
    path.write_text("phone\n" + "".join(f"+1212{prefix}{i:04d}\n" for i in range(count)))
    d("contacts.import", list=listname, file=str(path))


# ---------------------------------------------------------- phase 1: steady


def steady_case(work: Path, agents: int, calls: int, bridged: bool, window: float,
                settle: float) -> dict[str, Any]:  # fmt: skip
    n_bridged = agents if bridged else 0
    n_prompt = calls - n_bridged
    phones = Sipp(work, agent_scenario(work), tone_ul(work / "agent.ul", 1300), 50)
    carrier = Sipp(work, long_answer_scenario(work), tone_ul(work / "cust.ul", 700), 100)
    ids = [f"a{i}" for i in range(agents)]
    campaigns = {"prompted": campaign("prompted", "agentless", "prompt-list", max(1, n_prompt))}
    if n_bridged:
        dialing = "dialing:\n  ratio: 1\n  wrapup_timeout: 1h\n"
        campaigns["sales"] = campaign("sales", "power", "agent-list", n_bridged, dialing)
    rtp = (20000, 24000)  # below the ephemeral range, where SIPp's own ports come from
    d = Daemon(work, carrier.port, ids, phones.port, campaigns, rtp, cps=200)
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda a: d("agent.login", agent=a), ids))
        wait_for(lambda: d("status")["agents"]["ready"] == agents, 60, "agents ready")
        if n_prompt:
            import_contacts(d, work, "prompt-list", n_prompt, "555")
            d("campaign.start", name="prompted")
        if n_bridged:
            import_contacts(d, work, "agent-list", n_bridged, "556")
            d("campaign.start", name="sales")
        legs = agents + calls

        def ready() -> bool:
            # media.stats is answered from memory; status reads the store's
            # progress, which would queue behind the dial loop's writes.
            if d("media.stats")["endpoints"] < legs:
                return False
            s = d("status")
            seen = (s["calls_in_flight"], s["agents"]["on_call"], s["calls_waiting_for_agent"])
            if os.environ.get("AGENTS_LOAD_DEBUG"):
                print("in flight, on call, waiting:", seen, flush=True)
            return bool(seen[:2] == (calls, n_bridged))

        wait_for(ready, 600, "every call up", every=2.0)
        time.sleep(settle)
        before = d("media.stats", reset=True)
        drops0, cpu0, sipp0 = udp_drops(*rtp), d.cpu(), phones.cpu() + carrier.cpu()
        wall0 = time.monotonic()
        time.sleep(window)
        after = d("media.stats")
        wall = time.monotonic() - wall0
        cpu = d.cpu() - cpu0
        sipp_cpu = phones.cpu() + carrier.cpu() - sipp0
        drops = udp_drops(*rtp) - drops0
        status = d("status")
        lat = after["lateness_ms"]
        return {
            "agents": agents, "customer_calls": calls, "bridged": n_bridged,
            "prompt_calls": n_prompt, "legs": legs, "clock_endpoints": after["endpoints"],
            "on_call": status["agents"]["on_call"],
            "p50_ms": round(lat["p50"], 2), "p99_ms": round(lat["p99"], 2),
            "max_ms": round(lat["max"], 2), "ticks": lat["ticks"],
            "rtp_received": after["rtp_received"] - before["rtp_received"],
            "rtp_expected": round(legs * window / 0.02),
            "rtp_lost": after["rtp_lost"] - before["rtp_lost"],
            "kernel_drops": drops,
            "skipped_frames": after["skipped_frames"] - before["skipped_frames"],
            "cpu_pct": round(100 * cpu / wall, 1),
            "sipp_cpu_pct": round(100 * sipp_cpu / wall, 1),
            "rss_mib": round(rss_mib(d.proc.pid), 1),
            "loadavg_1m": round(os.getloadavg()[0], 1),  # others' runs share the 2 cores
        }  # fmt: skip
    finally:
        d.stop()
        phones.stop()
        carrier.stop()
        time.sleep(2)


# ----------------------------------------------------------- phase 2: burst


def burst_case(work: Path, calls: int, env: dict[str, str], hold: bool) -> dict[str, Any]:
    """`hold`: the carrier SIPp is stopped (SIGSTOP) until every INVITE is out
    (our retransmissions queue in its 4 MiB socket buffer), then resumed, so
    every call is answered within a second whatever the dial loop's pace."""
    carrier = Sipp(work, long_answer_scenario(work), greeting_ul(work), 200,
                   ("-buff_size", "4194304"))  # fmt: skip
    amd = (
        "amd:\n  mode: default\n  on_machine: message_after_beep\n"
        "  machine_prompt: long.wav\n  max_beep_wait: 20s\n"
    )
    campaigns = {"burst": campaign("burst", "agentless", "burst-list", calls, amd)}
    rtp = (20000, 24000)  # below the ephemeral range, where SIPp's own ports come from
    d = Daemon(work, carrier.port, [], 0, campaigns, rtp, cps=calls, env=env)
    try:
        import_contacts(d, work, "burst-list", calls, "557")
        if hold:
            carrier.proc.send_signal(signal.SIGSTOP)
            d("campaign.start", name="burst")
            wait_for(lambda: d("status")["calls_in_flight"] == calls, 12, "INVITEs out", 0.1)
        cpu0 = d.cpu()
        d("media.stats", reset=True)
        t0 = time.monotonic()
        if hold:
            carrier.proc.send_signal(signal.SIGCONT)
        else:
            d("campaign.start", name="burst")
        time.sleep(1.5)  # the answers (200 ms after SIPp takes each INVITE)
        burst = d("media.stats", reset=True)
        t1 = time.monotonic()
        cpu1 = d.cpu()
        time.sleep(3.0)  # every call in analysis (a machine is decided after its greeting)
        analysis = d("media.stats")
        cpu2 = d.cpu()
        t2 = time.monotonic()
        attempts = d("report.attempts", campaign="burst")
        answered = sorted(a["answered_at"] for a in attempts if a.get("answered_at"))
        spread = None
        if answered:
            first, last = np.datetime64(answered[0][:26]), np.datetime64(answered[-1][:26])
            spread = float((last - first) / np.timedelta64(1, "ms"))
        b, a = burst["lateness_ms"], analysis["lateness_ms"]
        return {
            "calls": calls, "batch": env.get("OUTDIAL_ANALYSIS_BATCH", "1"), "held": hold,
            "answered": len(answered), "answer_spread_ms": spread,
            "burst_p50_ms": round(b["p50"], 2), "burst_p99_ms": round(b["p99"], 2),
            "burst_max_ms": round(b["max"], 2),
            "analysis_p99_ms": round(a["p99"], 2), "analysis_max_ms": round(a["max"], 2),
            "burst_cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "analysis_cpu_pct": round(100 * (cpu2 - cpu1) / (t2 - t1), 1),
            "skipped_frames": analysis["skipped_frames"],
            "rss_mib": round(rss_mib(d.proc.pid), 1),
            "loadavg_1m": round(os.getloadavg()[0], 1),
        }  # fmt: skip
    finally:
        if carrier.proc.poll() is None:
            carrier.proc.send_signal(signal.SIGCONT)
        d.stop()
        carrier.stop()
        time.sleep(2)


# ----------------------------------------------------------- phase 3: micro


def micro(ns: list[int], seconds: float = 4.0) -> list[dict[str, Any]]:
    """Per-frame analysis CPU per call: N independent AnalysisFlow-like
    analysers (AMD + beep/SIT/fax), fed the same voicemail greeting at
    different offsets, frame by frame vs batched per tick."""
    from benchmarks.analysis_micro import run_micro

    return run_micro(ns, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="200x600,300x600", help="AGENTSxCALLS,...")
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--settle", type=float, default=4.0)
    parser.add_argument("--burst", type=int, default=300, help="0: skip the burst")
    parser.add_argument("--burst-modes", default="1,0", help="OUTDIAL_ANALYSIS_BATCH values")
    parser.add_argument(
        "--no-hold",
        dest="hold",
        action="store_false",
        help="burst: do not hold the carrier until every INVITE is out",
    )
    parser.add_argument("--micro", default="1,100,300", help="'': skip the micro-benchmark")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="outdial-agents-"))
    write_prompts(work)
    report: dict[str, Any] = {"steady": [], "burst": [], "micro": []}
    print("steady load: case (a) 200 agents + 600 calls = 200 bridged + 400 playing a prompt;"
          " case (b) 300 agents + 600 calls = 300 bridged (the literal half) + 300 prompt",
          flush=True)  # fmt: skip
    for case in [c for c in args.cases.split(",") if c]:
        agents, calls = (int(x) for x in case.split("x"))
        pair = {}
        for bridged in (True, False):
            r = steady_case(work, agents, calls, bridged, args.window, args.settle)
            r["mode"] = "bridged" if bridged else "unbridged"
            pair[r["mode"]] = r
            report["steady"].append(r)
            print(json.dumps(r), flush=True)
        if agents:
            extra = pair["bridged"]["cpu_pct"] - pair["unbridged"]["cpu_pct"]
            per = {
                "agents": agents, "calls": calls,
                "cpu_per_bridged_call_pct": round(extra / agents, 3),
                "method": "(CPU bridged - CPU unbridged) / bridged calls",
            }  # fmt: skip
            report["steady"].append(per)
            print(json.dumps(per), flush=True)
    if args.burst:
        for mode in args.burst_modes.split(","):
            r = burst_case(work, args.burst, {"OUTDIAL_ANALYSIS_BATCH": mode}, args.hold)
            report["burst"].append(r)
            print(json.dumps(r), flush=True)
    if args.micro:
        os.sched_setaffinity(0, {0})
        for r in micro([int(x) for x in args.micro.split(",")]):
            report["micro"].append(r)
            print(json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
