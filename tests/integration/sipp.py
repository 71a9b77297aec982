"""Running real SIPp (Debian's sip-tester) as the carrier, on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "config" / "sipp"
INSTALL_HINT = "sudo apt-get install -y sip-tester   (or run `make test`, which installs it)"


def require(tool: str, package: str) -> str:
    """The path of a peer tool; a missing one fails the test with the install command."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: sudo apt-get install -y {package}", pytrace=False)
    return path


def free_port(kind: int = socket.SOCK_DGRAM, even: bool = False) -> int:
    """A currently free loopback port (even, with its odd neighbour free, for RTP)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if not even:
            return port
        if port % 2 == 0 and port < 65000 and _udp_free(port + 1) and _udp_free(port + 2):
            return port
    raise RuntimeError("no free port pair on loopback")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Sipp:
    """One SIPp process playing a scenario as the carrier (UAS)."""

    scenario: str
    keys: dict[str, str] = field(default_factory=dict)
    duration_ms: int = 1000
    calls: int = 1
    transport: str = "u1"
    extra: list[str] = field(default_factory=list)
    port: int = 0
    media_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None

    def start(self, workdir: Path) -> Sipp:
        sipp = require("sipp", "sip-tester")
        self.workdir = workdir
        kind = socket.SOCK_STREAM if self.transport.startswith("t") else socket.SOCK_DGRAM
        self.port = self.port or free_port(kind)
        self.media_port = self.media_port or free_port(even=True)
        cmd = [
            sipp, "-sf", str(SCENARIOS / self.scenario), "-i", "127.0.0.1",
            "-p", str(self.port), "-mi", "127.0.0.1", "-mp", str(self.media_port),
            "-t", self.transport, "-d", str(self.duration_ms),
            "-nostdin", "-trace_err", "-error_file", str(workdir / "sipp_errors.log"),
            "-trace_stat", "-stf", str(workdir / "sipp_stats.csv"),
        ]  # fmt: skip
        if self.calls:  # else: serve calls until stopped
            cmd += ["-m", str(self.calls)]
        for name, value in self.keys.items():
            cmd += ["-key", name, value]
        cmd += self.extra
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"SIPp exited at start ({self.proc.returncode}): {err}")
            if self.transport.startswith("u"):
                if not _udp_free(self.port):
                    return
            else:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", self.port)) == 0:
                        return
            time.sleep(0.05)
        raise RuntimeError("SIPp did not start listening within 5 s")

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.port}"

    def wait(self, timeout: float = 30) -> int:
        """SIPp's exit code: 0 when every call followed the scenario to its end."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def errors(self) -> str:
        assert self.workdir is not None
        log = self.workdir / "sipp_errors.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


def make_tone(path: Path, freq: float, seconds: float, volume: float = 0.5) -> Path:
    """Headerless 8 kHz mu-law tone made by sox (an encoder independent of ours)."""
    sox = require("sox", "sox")
    subprocess.run(
        [sox, "-n", "-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul", str(path),
         "synth", str(seconds), "sine", str(freq), "vol", str(volume)],
        check=True,
    )  # fmt: skip
    return path
