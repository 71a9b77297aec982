"""Running the npm `smpp` package's server (tests/peers/smsc/smsc.js) as a real SMSC on loopback."""

from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / "tests" / "peers" / "smsc"
INSTALL_HINT = (
    "sudo apt-get install -y nodejs npm && (cd tests/peers/smsc && npm ci)"
    "   (or run `make test`, which does both)"
)


def free_port() -> int:
    """A loopback TCP port free right now (for an SMSC that must come up later on a
    port the client already knows)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NodeSmsc:
    """One node SMSC process; commands go to its stdin, replies come on its stdout.

    ``port`` 0 lets the SMSC pick a free port (read back from its "ready" line);
    ``log`` names a file that gets one JSON line per submit_sm received (see
    smsc.js) and outlives the process.
    """

    extra: list[str] = field(default_factory=list)
    port: int = 0
    log: Path | None = None
    proc: subprocess.Popen[str] | None = None

    def start(self) -> NodeSmsc:
        node = shutil.which("node")
        if node is None or not (PEER / "node_modules" / "smpp").is_dir():
            pytest.fail(f"the node SMSC is not installed: {INSTALL_HINT}", pytrace=False)
        log = ["--log", str(self.log)] if self.log is not None else []
        self.proc = subprocess.Popen(
            [node, str(PEER / "smsc.js"), "--port", str(self.port), *log, *self.extra],
            cwd=PEER,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        line = self.read_line(10.0)
        if not line.startswith("ready "):
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"node SMSC did not start: {line!r} {err}")
        self.port = int(line.split()[1])
        return self

    def read_line(self, timeout: float = 5.0) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("no line from the node SMSC")
        return self.proc.stdout.readline().strip()

    def command(self, line: str) -> str:
        """Send one stdin command and return the SMSC's one-line answer."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.read_line()

    def throttle(self, k: int) -> None:
        """Answer the next ``k`` submit_sm with ESME_RTHROTTLED."""
        assert self.command(f"throttle {k}") == f"throttling {k}"

    def hold(self) -> None:
        """Stop answering submit_sm (they stay unanswered for good)."""
        assert self.command("hold") == "holding"

    def release(self) -> None:
        assert self.command("release").startswith("released ")

    def receipt(self, message_id: str, stat: str = "DELIVRD") -> int:
        """Send a delivery receipt for any id to every session; returns how many."""
        answer = self.command(f"receipt {message_id} {stat}")
        assert answer.startswith("sent receipt "), answer
        return int(answer.split()[2])

    def counts(self) -> dict[str, int]:
        """destination_addr -> number of submit_sm received (answered or not)."""
        answer = self.command("counts")
        assert answer.startswith("counts "), answer
        counts: dict[str, int] = json.loads(answer.removeprefix("counts "))
        return counts

    def stats(self) -> tuple[int, int]:
        """(submit_sm received, answered with a message id)."""
        _, submits, answered = self.command("stats").split()
        return int(submits), int(answered)

    def drop(self) -> None:
        """Destroy every connection without an unbind."""
        assert self.command("drop") == "dropped"

    def close_sessions(self) -> int:
        """Start a clean unbind and close of every session; returns how many. The
        answer comes at once, so a client on the caller's own loop can answer."""
        answer = self.command("close")
        assert answer.startswith("closing "), answer
        return int(answer.split()[1])

    def logged(self) -> list[dict[str, object]]:
        """The --log file's records, in order."""
        assert self.log is not None
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the script exits when stdin closes
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def run_smsc(*extra: str, port: int = 0, log: Path | None = None) -> Iterator[NodeSmsc]:
    smsc = NodeSmsc(list(extra), port=port, log=log).start()
    try:
        yield smsc
    finally:
        smsc.stop()
