"""Running the npm `smpp` package's server (tests/peers/smsc/smsc.js) as a real SMSC on loopback."""

from __future__ import annotations

import select
import shutil
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


@dataclass
class NodeSmsc:
    """One node SMSC process; commands go to its stdin, replies come on its stdout."""

    extra: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[str] | None = None

    def start(self) -> NodeSmsc:
        node = shutil.which("node")
        if node is None or not (PEER / "node_modules" / "smpp").is_dir():
            pytest.fail(f"the node SMSC is not installed: {INSTALL_HINT}", pytrace=False)
        self.proc = subprocess.Popen(
            [node, str(PEER / "smsc.js"), "--port", "0", *self.extra],
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


def run_smsc(*extra: str) -> Iterator[NodeSmsc]:
    smsc = NodeSmsc(list(extra)).start()
    try:
        yield smsc
    finally:
        smsc.stop()
