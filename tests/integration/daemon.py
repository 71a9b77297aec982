"""Running the real daemon (`outdial run`) as a subprocess, and talking to it
over its control socket with the raw JSON-lines protocol."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.sipp import ROOT, free_port


class ControlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def request(sock_path: Path, cmd: str, **args: Any) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
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
        raise ControlError(reply["error"]["code"], reply["error"]["message"])
    return reply["result"]


class Daemon:
    """`outdial run` on a config written into a temporary directory."""

    def __init__(
        self, workdir: Path, trunk_port: int, campaign: str, prompt: Path, extra: str = ""
    ) -> None:
        self.workdir = workdir
        self.config = workdir / "outdial.yaml"
        self.socket = workdir / "outdial.sock"
        (workdir / "campaigns").mkdir(exist_ok=True)
        low = free_port(even=True)
        self.config.write_text(
            "trunks:\n"
            f"  - name: carrier\n    uri: sip:127.0.0.1:{trunk_port}\n"
            "    max_calls: 200\n    calls_per_second: 50\n"
            f"store_url: sqlite:///{workdir / 'outdial.db'}\n"
            f"control_socket: {self.socket}\n"
            "sip_host: 127.0.0.1\nsip_port: 0\n"
            f"rtp_ports: [{low}, {low + 1000}]\n"
            f"prompts_dir: {prompt.parent}\n"
            "shutdown_grace: 2\n"
            "log:\n  level: info\n  format: json\n"
            # SIPp carriers on loopback, at whatever hour the suite runs: the
            # law's calling hours are tested on their own (test_hours_daemon).
            + ("" if "compliance:" in extra else "compliance:\n  legal_hours: lab\n")
            + extra
        )
        (workdir / "campaigns" / "test.yaml").write_text(campaign)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "daemon.log"

    def start(self) -> Daemon:
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "run", "--config", str(self.config)],
            cwd=ROOT, stdout=log, stderr=log,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.log.read_text()[-3000:]}")
            try:
                request(self.socket, "status")
                return self
            except (OSError, ControlError, json.JSONDecodeError):
                time.sleep(0.1)
        raise RuntimeError(f"daemon did not start: {self.log.read_text()[-3000:]}")

    def __call__(self, cmd: str, **args: Any) -> Any:
        return request(self.socket, cmd, **args)

    def wait_state(self, campaign: str, state: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        show: dict[str, Any] = {}
        while time.monotonic() < deadline:
            show = self("campaign.show", name=campaign)
            if show["state"] == state:
                return show
            time.sleep(0.25)
        raise AssertionError(f"campaign not {state} after {timeout} s: {show}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
