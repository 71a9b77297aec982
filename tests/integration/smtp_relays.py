"""SMTP relays for the pool tests, on loopback: Postfix's `smtp-sink` as a
subprocess (no mail system started), aiosmtpd in the test's own event loop with a
scripted handler, and a self-signed certificate made with `cryptography`."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SMTP_SINK = "/usr/sbin/smtp-sink"
INSTALL_HINT = (
    "echo 'postfix postfix/main_mailer_type select No configuration' | sudo debconf-set-selections"
    " && sudo apt-get install -y postfix   (or run `make test`, which does both)"
)
_MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.MULTILINE | re.IGNORECASE)
_COUNTERS = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_message(n: int, rcpt: str, body_lines: int = 20) -> tuple[str, bytes]:
    """A message with a unique Message-ID and lines that need dot-stuffing."""
    message_id = f"<{n}.{os.getpid()}@outdial.test>"
    msg = EmailMessage()
    msg["From"] = "Outdial <notify@outdial.test>"
    msg["To"] = rcpt
    msg["Subject"] = f"Test message {n}"
    msg["Message-ID"] = message_id
    lines = [f"line {i} of message {n}" for i in range(body_lines)]
    lines[3] = "."  # a lone dot would end DATA early if not stuffed
    lines[7] = ".. starts with two dots"
    msg.set_content("\n".join(lines) + "\n")
    return message_id, msg.as_bytes().replace(b"\n", b"\r\n")


def message_ids(content: bytes) -> list[str]:
    return [m.decode() for m in _MESSAGE_ID.findall(content)]


@dataclass
class SmtpSink:
    """`smtp-sink -c -d DIR/...` on 127.0.0.1: every transaction dumped to its own
    file, running counters (sessions, QUITs, messages) on stdout."""

    workdir: Path
    extra: list[str] = field(default_factory=list)
    """More smtp-sink options (-q, -r, -f: drop, 4xx, 5xx at given commands)."""
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def dump_dir(self) -> Path:
        return self.workdir / "dump"

    @property
    def command(self) -> list[str]:
        # -u is required when running as root (the sink drops to that user after
        # binding); the dump directory stays writable because we stay root.
        user = ["-u", "root"] if os.geteuid() == 0 else []
        template = str(self.dump_dir / "%H%M%S.")
        return [
            *(SMTP_SINK, *user, "-c", "-d", template, *self.extra),
            *(f"127.0.0.1:{self.port}", "64"),
        ]

    def start(self) -> SmtpSink:
        if not os.access(SMTP_SINK, os.X_OK):
            pytest.fail(f"smtp-sink is not installed: {INSTALL_HINT}", pytrace=False)
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        out = (self.workdir / "stdout").open("wb")
        self.proc = subprocess.Popen(
            self.command, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        out.close()
        self._wait_listening()
        return self

    def _wait_listening(self, timeout: float = 5.0) -> None:
        # Poll the socket table rather than connecting: a probe connection would
        # count as a session in the sink's counters.
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smtp-sink exited: {self.output()!r}")
            conns = psutil.Process(self.proc.pid).net_connections(kind="tcp")
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in conns):
                return
            time.sleep(0.02)
        raise TimeoutError("smtp-sink did not start listening")

    def output(self) -> bytes:
        return (self.workdir / "stdout").read_bytes()

    def counters(self) -> tuple[int, int, int]:
        """The last (sessions, quits, messages) the sink printed."""
        found = _COUNTERS.findall(self.output())
        if not found:
            return (0, 0, 0)
        sess, quit_, mesg = found[-1]
        return int(sess), int(quit_), int(mesg)

    def wait_counters(self, sessions: int, timeout: float = 5.0) -> tuple[int, int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.counters()[0] < sessions:
            time.sleep(0.05)
        return self.counters()

    def dumps(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.dump_dir.iterdir())]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def self_signed_cert(workdir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (EC P-256: fast to make)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.outdial.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "relay.crt", workdir / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


Script = dict[str, list[str]]
"""Per recipient, the replies to give in turn (then the default); a reply of
"drop" aborts the connection without answering, "sleep:S" waits S seconds."""


@dataclass
class ScriptedHandler:
    """aiosmtpd handler: records every message received (by Message-ID), answers
    RCPT and DATA from per-recipient scripts, and tracks transactions in progress
    per recipient domain (from an accepted RCPT to the end of DATA or RSET)."""

    mail_script: Script = field(default_factory=dict)
    """Keyed by the return path."""
    rcpt_script: Script = field(default_factory=dict)
    data_script: Script = field(default_factory=dict)
    data_reply: str = "250 OK"
    data_delay: float = 0.0
    received: Counter[str] = field(default_factory=Counter)
    contents: list[bytes] = field(default_factory=list)
    sessions_with_tls: int = 0
    active: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    max_active: Counter[str] = field(default_factory=Counter)
    max_active_total: int = 0

    async def _play(self, script: Script, rcpt: str, server: Any) -> str | None:
        replies = script.get(rcpt)
        if not replies:
            return None
        reply = replies.pop(0)
        if reply == "drop":
            server.transport.abort()
            await asyncio.sleep(3600)  # cancelled by aiosmtpd's connection_lost
        if reply.startswith("sleep:"):
            await asyncio.sleep(float(reply.split(":")[1]))
            return None
        return reply

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = await self._play(self.mail_script, address, server)
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = await self._play(self.rcpt_script, address, server)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        domain = address.rpartition("@")[2]
        self.active[domain].add(id(session))
        self.max_active[domain] = max(self.max_active[domain], len(self.active[domain]))
        total = sum(len(s) for s in self.active.values())
        self.max_active_total = max(self.max_active_total, total)
        return "250 OK"

    def _done(self, session: Any, envelope: Any) -> None:
        for rcpt in envelope.rcpt_tos:
            self.active[rcpt.rpartition("@")[2]].discard(id(session))

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        self._done(session, envelope)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content
        self.contents.append(content)
        self.received.update(message_ids(content))
        if session.ssl is not None:
            self.sessions_with_tls += 1
        try:
            if self.data_delay:
                await asyncio.sleep(self.data_delay)
            reply = await self._play(self.data_script, envelope.rcpt_tos[0], server)
        finally:
            self._done(session, envelope)
        return reply if reply is not None else self.data_reply


@dataclass
class Authenticator:
    """Accepts one login and password; records the mechanisms tried."""

    login: bytes
    password: bytes
    mechanisms: list[str] = field(default_factory=list)

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.login
            and auth_data.password == self.password
        )
        return AuthResult(success=ok, handled=False)


async def start_aiosmtpd(handler: ScriptedHandler, **kwargs: Any) -> tuple[asyncio.Server, int]:
    """aiosmtpd listening on 127.0.0.1 (a free port) in the running loop; kwargs
    go to aiosmtpd's SMTP (tls_context, authenticator, timeout...) except
    ``implicit_tls``, a server context for TLS from the first byte."""
    loop = asyncio.get_running_loop()
    implicit_tls = kwargs.pop("implicit_tls", None)
    kwargs.setdefault("hostname", "relay.outdial.test")
    server = await loop.create_server(
        lambda: AiosmtpdSMTP(handler, loop=loop, **kwargs), "127.0.0.1", 0, ssl=implicit_tls
    )
    port: int = server.sockets[0].getsockname()[1]
    return server, port


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
