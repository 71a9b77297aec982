"""Running a real Kannel on loopback: bearerbox, smsbox, and Kannel's own fakesmsc as the SMSC."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

INSTALL_HINT = "sudo apt-get install -y kannel kannel-extras   (or run `make test`)"
FAKESMSC_PATHS = ("/usr/lib/kannel/test/fakesmsc", "/usr/lib/kannel/fakesmsc")
USERNAME, PASSWORD = "tester", "s3cret"

CONFIG = """\
group = core
admin-port = {admin}
admin-password = {password}
smsbox-port = {box}
box-allow-ip = 127.0.0.1
log-file = "{dir}/bearerbox.log"
log-level = 0
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {smsc}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box}
sendsms-port = {sendsms}
log-file = "{dir}/smsbox.log"
log-level = 0

group = sendsms-user
username = {username}
password = {password}

group = sms-service
keyword = default
{service}
"""
NO_SERVICE = 'text = "No service"'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def _binary(name: str, *paths: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    for path in paths:
        if found is None and Path(path).exists():
            found = path
    if found is None:
        pytest.fail(f"Kannel's {name} is not installed: {INSTALL_HINT}", pytrace=False)
    return found


@dataclass
class Kannel:
    """bearerbox + smsbox + fakesmsc in ``workdir``; ``sendsms_url`` is smsbox's."""

    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sendsms_port: int = 0
    fakesmsc_out: Path | None = None
    # The default sms-service's lines (a get-url for inbound messages), or "No service".
    service: str = NO_SERVICE
    _smsc_port: int = 0
    _fakesmsc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}"

    def start(self) -> Kannel:
        bearerbox = _binary("bearerbox")
        smsbox = _binary("smsbox")
        fakesmsc = _binary("fakesmsc", *FAKESMSC_PATHS)
        ports = {k: _free_port() for k in ("admin", "box", "smsc", "sendsms")}
        self.sendsms_port = ports["sendsms"]
        conf = self.workdir / "kannel.conf"
        conf.write_text(
            CONFIG.format(
                dir=self.workdir,
                username=USERNAME,
                password=PASSWORD,
                service=self.service,
                **ports,
            )
        )
        self._smsc_port = ports["smsc"]
        self._spawn("bearerbox", [bearerbox, str(conf)])
        # Not the smsc port: a probe there would be taken for fakesmsc connecting.
        _wait_port(ports["admin"], 10)
        time.sleep(0.3)
        self.fakesmsc_out = self.workdir / "fakesmsc.out"
        self._fakesmsc = self._run_fakesmsc(fakesmsc, "0", "100 200 text hello")
        self._spawn("smsbox", [smsbox, str(conf)])
        _wait_port(ports["sendsms"], 10)
        return self

    def _run_fakesmsc(self, fakesmsc: str, count: str, message: str) -> subprocess.Popen[bytes]:
        argv = [fakesmsc, "-H", "127.0.0.1", "-r", str(self._smsc_port), "-m", count, message]
        assert self.fakesmsc_out is not None
        return self._spawn("fakesmsc", argv, stdout=self.fakesmsc_out, append=True)

    def send_mo(self, sender: str, receiver: str, text: str, kind: str = "text") -> None:
        """A message from a handset: fakesmsc (restarted: bearerbox takes one
        connection at a time) sends it to bearerbox, which gives it to smsbox's
        sms-service; fakesmsc then keeps printing what it is sent. ``kind`` is
        fakesmsc's type: ``text`` plain, ``ucs2`` UTF-16BE URL-encoded."""
        assert self._fakesmsc is not None
        self._fakesmsc.terminate()
        self._fakesmsc.wait(5)
        fakesmsc = _binary("fakesmsc", *FAKESMSC_PATHS)
        self._fakesmsc = self._run_fakesmsc(fakesmsc, "1", f"{sender} {receiver} {kind} {text}")

    def _spawn(
        self, name: str, argv: list[str], stdout: Path | None = None, append: bool = False
    ) -> subprocess.Popen[bytes]:
        out = (stdout or self.workdir / f"{name}.stdout").open("ab" if append else "wb")
        proc = subprocess.Popen(argv, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        out.close()
        return proc

    def received(self) -> str:
        """What fakesmsc printed: the messages bearerbox sent it."""
        return self.fakesmsc_out.read_text("utf-8", "replace") if self.fakesmsc_out else ""

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_kannel(workdir: Path, service: str = NO_SERVICE) -> Iterator[Kannel]:
    kannel = Kannel(workdir, service=service)
    try:
        yield kannel.start()
    finally:
        kannel.stop()
