"""SMTP submission through our own connection pool (aiosmtplib has none).

`SmtpPool` keeps up to ``connections`` aiosmtplib sessions to one relay and
runs one transaction at a time on each: MAIL, one RCPT (the return path is per
message under VERP, so one recipient per transaction), DATA. A session carries
``messages_per_connection`` transactions, then QUITs and a new one is opened;
one idle longer than ``idle_timeout`` is QUIT before the relay drops it. A
session that broke (dropped, timed out, 421, a reply that does not parse) is
discarded and replaced; after a refused transaction it is RSET and reused
(RFC 5321 section 4.1.1.5).

`send` returns `Accepted` or raises one of the outcomes in
`carriers.email.smtp_errors`. DATA is driven here rather than through
aiosmtplib's ``data()``: we must know whether the content went out before the
connection failed, because that decides between "not delivered, retry"
(`SmtpTemporaryError`) and "in doubt" (`SmtpNotAcknowledgedError`).

Limits, all taken before a session is checked out so no session sits idle
while a message waits: at most ``per_domain_concurrency`` transactions at once
to recipients of one domain, ``per_domain_rate`` and ``rate`` messages a second
(`carriers.sms.pacing.TokenBucket`: each caller is told its slot, nobody polls).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib

from carriers.email.smtp_errors import (
    SmtpError,
    SmtpNotAcknowledgedError,
    SmtpPermanentError,
    SmtpReplyError,
    SmtpStage,
    SmtpTemporaryError,
)
from carriers.sms.pacing import TokenBucket

__all__ = [
    "Accepted",
    "RelayConfig",
    "SmtpError",
    "SmtpNotAcknowledgedError",
    "SmtpPermanentError",
    "SmtpPool",
    "SmtpPoolStats",
    "SmtpReplyError",
    "SmtpStage",
    "SmtpTemporaryError",
    "dot_stuffed",
    "parse_queue_id",
]

TlsMode = Literal["none", "starttls", "tls"]

# Postfix and sendmail-style "250 2.0.0 Ok: queued as 4ZqW8x1Yc9z9sVD", Exim's
# "250 OK id=1tXyZ-000Abc-2D".
_QUEUED_AS = re.compile(r"\bqueued as\s+<?([^\s<>]+)>?", re.IGNORECASE)
_EXIM_ID = re.compile(r"\bid=(\S+)")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_FORBIDDEN_IN_ADDRESS = re.compile(r"[\x00-\x20\x7f<>]")
_DOMAIN_GATES_KEPT = 1024


@dataclass(frozen=True)
class RelayConfig:
    """One relay and how to use it."""

    name: str
    host: str
    port: int = 587
    tls: TlsMode = "starttls"
    """"starttls" (RFC 3207, required: a relay that does not offer it is refused),
    "tls" (implicit TLS from the first byte, RFC 8314, usually port 465), "none"."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    """AUTH (PLAIN or LOGIN, whichever the relay offers) when a username is set."""
    allow_plain_auth: bool = False
    """Allow AUTH on a connection without TLS (the password goes in the clear)."""
    connections: int = 4
    messages_per_connection: int = 100
    timeout: float = 60.0
    """Seconds for the connect and for each command's reply."""
    data_timeout: float = 600.0
    """Seconds for the reply to the message content: RFC 5321 section 4.5.3.2.6
    gives 10 minutes; the longer we wait, the fewer messages end up in doubt."""
    idle_timeout: float = 50.0
    """A session idle this long is QUIT, not reused."""
    rate: float | None = None
    """Messages a second through this relay (None: unlimited)."""
    per_domain_concurrency: int = 4
    """Transactions at once to recipients of one domain."""
    per_domain_rate: float | None = None
    """Messages a second to recipients of one domain (None: unlimited)."""
    helo: str | None = None
    """The EHLO name (None: this host's FQDN)."""
    tls_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    """Used as is for TLS when set (tests: one that trusts a self-signed cert)."""
    cafile: str | None = None
    """Otherwise a default context, trusting this CA bundle if set."""

    def __post_init__(self) -> None:
        if self.tls not in ("none", "starttls", "tls"):
            raise ValueError(f"relay {self.name}: tls must be none, starttls or tls")
        if not 0 < self.port < 65536:
            raise ValueError(f"relay {self.name}: port out of range")
        if (self.username is None) != (self.password is None):
            raise ValueError(f"relay {self.name}: username and password go together")
        if self.username is not None and self.tls == "none" and not self.allow_plain_auth:
            raise ValueError(
                f"relay {self.name}: AUTH without TLS sends the password in the clear;"
                " use tls starttls or tls, or set allow_plain_auth"
            )
        for name in ("connections", "messages_per_connection", "per_domain_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"relay {self.name}: {name} must be at least 1")
        for name in ("timeout", "data_timeout", "idle_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"relay {self.name}: {name} must be positive")
        for name in ("rate", "per_domain_rate"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"relay {self.name}: {name} must be positive or None")


@dataclass(frozen=True, slots=True)
class Accepted:
    """The relay took responsibility for the message (a 250 to the final dot)."""

    queue_id: str | None
    """The relay's queue id when its reply names one, else None."""
    reply: str
    """The full reply, code first."""


@dataclass
class SmtpPoolStats:
    """Counters since the pool was made (a live object: read, do not write)."""

    connections_opened: int = 0
    connections_quit: int = 0
    """Sessions we ended with QUIT (used up, idle, or the pool closing)."""
    connections_discarded: int = 0
    """Sessions that broke: dropped, timed out, 421, a reply that did not parse."""
    connect_failures: int = 0
    accepted: int = 0
    temporary_failures: int = 0
    permanent_failures: int = 0
    not_acknowledged: int = 0
    stale_retries: int = 0
    """Transactions moved to a new session because a reused one was found dead
    at MAIL (the relay had closed it while idle): nothing had been sent."""
    open: int = 0
    idle: int = 0


def parse_queue_id(reply: str) -> str | None:
    """The queue id in a reply to the final dot, if the relay gives one."""
    match = _QUEUED_AS.search(reply) or _EXIM_ID.search(reply)
    return match.group(1).rstrip(".,;") if match else None


def dot_stuffed(data: bytes) -> bytes:
    """The message as DATA sends it: CRLF line ends (RFC 5321 section 2.3.8: no
    bare CR or LF), a dot doubled at the start of a line (section 4.5.2), and
    the terminating CRLF.CRLF."""
    crlf = data.count(b"\r\n")
    if crlf == data.count(b"\n") == data.count(b"\r"):  # CRLF only (what we compose)
        text = data
    else:
        text = _LINE_BREAK.sub(b"\r\n", data)
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    if text.startswith(b".") or b"\n." in text:
        text = _LEADING_DOT.sub(b"..", text)
    return text + b".\r\n"


def _full_reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.splitlines())}".rstrip()


def _reply_error(code: int, message: str, stage: SmtpStage) -> SmtpReplyError:
    """A refusal as its outcome: 5xx final, anything else (4xx, or a code that
    makes no sense here) worth another try."""
    if 500 <= code < 600:
        return SmtpPermanentError(code, _full_reply(code, message), stage)
    if code < 0:  # aiosmtplib's code for a reply that does not parse
        return SmtpTemporaryError(None, message, stage)
    return SmtpTemporaryError(code, _full_reply(code, message), stage)


def _check_address(address: str) -> str:
    if not address or _FORBIDDEN_IN_ADDRESS.search(address):
        raise ValueError(f"not an address to put on the wire: {address!r}")
    return address


def _domain_of(rcpt: str) -> str:
    local, at, domain = rcpt.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"recipient has no domain: {rcpt!r}")
    return domain.lower()


class _Broken(Exception):
    """Inside a transaction: the session failed; ``content_sent`` says whether
    the message content had gone out."""

    def __init__(
        self, stage: SmtpStage, reason: str, *, content_sent: bool, timed_out: bool
    ) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
        self.content_sent = content_sent
        self.timed_out = timed_out


@dataclass(eq=False)
class _Session:
    smtp: aiosmtplib.SMTP
    transactions: int = 0
    idle_since: float = 0.0


@dataclass(eq=False)
class _DomainGate:
    slots: asyncio.Semaphore
    bucket: TokenBucket | None
    users: int = 0
    last_used: float = 0.0


class SmtpPool:
    """Up to ``config.connections`` sessions to one relay; see the module doc."""

    def __init__(self, config: RelayConfig, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.stats = SmtpPoolStats()
        self._clock = clock
        self._slots = asyncio.Semaphore(config.connections)
        self._idle: deque[_Session] = deque()
        self._bucket = TokenBucket(config.rate) if config.rate is not None else None
        self._domains: dict[str, _DomainGate] = {}
        self._tls_context: ssl.SSLContext | None = None
        self._state: Literal["new", "started", "closing", "closed"] = "new"

    async def start(self, *, connect: bool = True) -> None:
        """Ready the pool; with ``connect``, open one session now so that an
        unreachable relay or a wrong password shows at once (the error is raised
        and the pool stays unstarted)."""
        if self._state != "new":
            raise RuntimeError(f"pool {self.config.name} is {self._state}")
        if self.config.tls != "none" and self._tls_context is None:
            self._tls_context = self.config.tls_context or await asyncio.to_thread(
                ssl.create_default_context, cafile=self.config.cafile
            )
        if connect:
            session = await self._open()
            self._idle.append(session)
            self.stats.idle = len(self._idle)
        self._state = "started"

    async def close(self) -> None:
        """Refuse new sends, let those already waiting for a session and those in
        flight finish (a reply can take ``data_timeout``; cancel the senders to
        cut it short), then QUIT every session."""
        if self._state in ("closing", "closed"):
            return
        self._state = "closing"
        for _ in range(self.config.connections):
            await self._slots.acquire()
        try:
            await asyncio.gather(*(self._quit(s) for s in self._idle))
            self._idle.clear()
            self.stats.idle = 0
        finally:
            for _ in range(self.config.connections):
                self._slots.release()
            self._state = "closed"

    async def send(self, mail_from: str, rcpt: str, data: bytes) -> Accepted:
        """Submit ``data`` (the whole message, headers and body) from ``mail_from``
        (the return path; "" for a null sender) to ``rcpt``, in one transaction.

        Raises `SmtpTemporaryError`, `SmtpPermanentError` or
        `SmtpNotAcknowledgedError` (carriers.email.smtp_errors); ValueError for
        an address that cannot go on the wire; RuntimeError when not started;
        `SmtpTemporaryError` "pool closed" once `close` has begun.
        """
        if mail_from:
            _check_address(mail_from)
        domain = _domain_of(_check_address(rcpt))
        if self._state == "new":
            raise RuntimeError(f"pool {self.config.name} is not started")
        if self._state != "started":
            raise SmtpTemporaryError(None, "pool closed", SmtpStage.CONNECT)
        try:
            async with self._domain_gate(domain):
                if self._bucket is not None:
                    await self._wait_for_token(self._bucket)
                accepted = await self._send_on_a_session(mail_from, rcpt, data)
        except SmtpTemporaryError:
            self.stats.temporary_failures += 1
            raise
        except SmtpPermanentError:
            self.stats.permanent_failures += 1
            raise
        except SmtpNotAcknowledgedError:
            self.stats.not_acknowledged += 1
            raise
        self.stats.accepted += 1
        return accepted

    # Limits

    @asynccontextmanager
    async def _domain_gate(self, domain: str) -> AsyncIterator[None]:
        gate = self._domains.get(domain)
        if gate is None:
            rate = self.config.per_domain_rate
            gate = _DomainGate(
                asyncio.Semaphore(self.config.per_domain_concurrency),
                TokenBucket(rate) if rate is not None else None,
            )
            self._domains[domain] = gate
        gate.users += 1
        try:
            async with gate.slots:
                if gate.bucket is not None:
                    await self._wait_for_token(gate.bucket)
                yield
        finally:
            gate.users -= 1
            gate.last_used = self._clock()
            if len(self._domains) > _DOMAIN_GATES_KEPT:
                self._forget_quiet_domains()

    def _forget_quiet_domains(self) -> None:
        """Drop the gates nobody waits on whose bucket has refilled (forgetting a
        bucket that has not would let a burst through early)."""
        now = self._clock()
        for domain, gate in list(self._domains.items()):
            refill = gate.bucket.burst / gate.bucket.rate if gate.bucket else 0.0
            if gate.users == 0 and now - gate.last_used > refill:
                del self._domains[domain]

    async def _wait_for_token(self, bucket: TokenBucket) -> None:
        delay = bucket.reserve(self._clock())
        if delay > 0:
            await asyncio.sleep(delay)

    # Sessions

    async def _send_on_a_session(self, mail_from: str, rcpt: str, data: bytes) -> Accepted:
        for attempt in (1, 2):
            session = await self._checkout()
            reused = session.transactions > 0
            healthy = False
            try:
                accepted = await self._transaction(session, mail_from, rcpt, data)
                healthy = True
                return accepted
            except SmtpReplyError:
                healthy = await self._reset(session)
                raise
            except _Broken as exc:
                if exc.content_sent:
                    raise SmtpNotAcknowledgedError(exc.reason, timed_out=exc.timed_out) from exc
                if reused and attempt == 1 and exc.stage is SmtpStage.MAIL:
                    self.stats.stale_retries += 1
                    continue
                raise SmtpTemporaryError(None, exc.reason, exc.stage) from exc
            finally:
                await self._checkin(session, healthy)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _checkout(self) -> _Session:
        await self._slots.acquire()
        try:
            if self._state == "closed":  # waited past close(): it took every slot
                raise SmtpTemporaryError(None, "pool closed", SmtpStage.CONNECT)
            now = self._clock()
            while self._idle:
                session = self._idle.pop()
                self.stats.idle = len(self._idle)
                if not session.smtp.is_connected:
                    self._discard(session)
                elif now - session.idle_since > self.config.idle_timeout:
                    await self._quit(session)
                else:
                    return session
            return await self._open()
        except BaseException:
            self._slots.release()
            raise

    async def _checkin(self, session: _Session, healthy: bool) -> None:
        try:
            if not healthy or not session.smtp.is_connected:
                self._discard(session)
            elif session.transactions >= self.config.messages_per_connection:
                await self._quit(session)
            else:
                session.idle_since = self._clock()
                self._idle.append(session)
                self.stats.idle = len(self._idle)
        finally:
            self._slots.release()

    async def _open(self) -> _Session:
        config = self.config
        smtp = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            local_hostname=config.helo,
            timeout=config.timeout,
            use_tls=config.tls == "tls",
            start_tls=False,
            tls_context=self._tls_context,
        )
        stage = SmtpStage.CONNECT
        try:
            await smtp.connect()
            await self._hello(smtp)
            if config.tls == "starttls":
                if not smtp.supports_extension("starttls"):
                    raise SmtpPermanentError(None, "relay does not offer STARTTLS", stage)
                await smtp.starttls()
                await self._hello(smtp)  # RFC 3207 section 4.2: forget, ask again
            if config.username is not None and config.password is not None:
                stage = SmtpStage.AUTH
                if not smtp.supports_extension("auth"):
                    raise SmtpPermanentError(None, "relay does not offer AUTH", stage)
                await smtp.login(config.username, config.password)
        except BaseException as exc:
            smtp.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            self.stats.connect_failures += 1
            if isinstance(exc, aiosmtplib.SMTPResponseException):
                raise _reply_error(exc.code, exc.message, stage) from exc
            if isinstance(exc, aiosmtplib.SMTPException | OSError):
                raise SmtpTemporaryError(None, f"{type(exc).__name__}: {exc}", stage) from exc
            raise
        self.stats.connections_opened += 1
        self.stats.open += 1
        return _Session(smtp, idle_since=self._clock())

    @staticmethod
    async def _hello(smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not smtp.is_connected:
                raise
            await smtp.helo()  # RFC 5321 section 3.2: fall back for an old server

    async def _reset(self, session: _Session) -> bool:
        """RSET after a refused transaction; False when the session is unusable."""
        if not session.smtp.is_connected:
            return False
        try:
            reply = await session.smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            return False
        return reply.code == 250

    async def _quit(self, session: _Session) -> None:
        try:
            await session.smtp.quit(timeout=min(self.config.timeout, 10.0))
        except (aiosmtplib.SMTPException, OSError):
            session.smtp.close()
        self.stats.connections_quit += 1
        self.stats.open -= 1

    def _discard(self, session: _Session) -> None:
        session.smtp.close()
        self.stats.connections_discarded += 1
        self.stats.open -= 1

    # One transaction

    async def _transaction(
        self, session: _Session, mail_from: str, rcpt: str, data: bytes
    ) -> Accepted:
        """MAIL, RCPT, DATA on ``session``: a refusal raises its outcome, a broken
        session `_Broken`."""
        smtp = session.smtp
        session.transactions += 1
        stage = SmtpStage.MAIL
        content_sent = False
        try:
            options, encoding = self._mail_options(smtp, mail_from, rcpt, data)
            # MAIL and RCPT through execute_command with the addresses as given
            # (`send` checked them: no spaces, brackets or controls), not
            # smtp.mail/rcpt, which re-parse each address with email.utils.
            extra = [option.encode("ascii") for option in options]
            reply = await smtp.execute_command(
                b"MAIL", b"FROM:<" + mail_from.encode(encoding) + b">", *extra
            )
            if reply.code != 250:
                raise _reply_error(reply.code, reply.message, stage)
            stage = SmtpStage.RCPT
            reply = await smtp.execute_command(b"RCPT", b"TO:<" + rcpt.encode(encoding) + b">")
            if reply.code not in (250, 251):
                raise _reply_error(reply.code, reply.message, stage)
            stage = SmtpStage.DATA
            reply = await smtp.execute_command(b"DATA")
            if reply.code != 354:
                raise _reply_error(reply.code, reply.message, stage)
            protocol = smtp.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost after 354")
            protocol.write(dot_stuffed(data))
            content_sent = True
            reply = await protocol.read_response(timeout=self.config.data_timeout)
        except SmtpReplyError:
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 0:
                raise _reply_error(exc.code, exc.message, stage) from exc
            smtp.close()  # a reply that does not parse: out of step with the relay
            raise _Broken(stage, exc.message, content_sent=content_sent, timed_out=False) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            timed_out = isinstance(exc, TimeoutError)
            reason = f"{type(exc).__name__}: {exc}"
            raise _Broken(stage, reason, content_sent=content_sent, timed_out=timed_out) from exc
        except BaseException:
            smtp.close()  # cancelled mid-transaction: the session is out of step
            raise
        return self._final(smtp, reply)

    @staticmethod
    def _final(smtp: aiosmtplib.SMTP, reply: aiosmtplib.SMTPResponse) -> Accepted:
        full = _full_reply(reply.code, reply.message)
        if reply.code == 250:
            return Accepted(parse_queue_id(reply.message), full)
        if 400 <= reply.code < 600:
            raise _reply_error(reply.code, reply.message, SmtpStage.DATA)
        smtp.close()
        raise _Broken(
            SmtpStage.DATA, f"unexpected reply {full}", content_sent=True, timed_out=False
        )

    @staticmethod
    def _mail_options(
        smtp: aiosmtplib.SMTP, mail_from: str, rcpt: str, data: bytes
    ) -> tuple[list[str], str]:
        options: list[str] = []
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(data)}")  # RFC 1870: refused at MAIL, not after
        if smtp.supports_extension("8bitmime") and not data.isascii():
            options.append("BODY=8BITMIME")  # RFC 6152
        if (mail_from + rcpt).isascii():
            return options, "ascii"
        if not smtp.supports_extension("smtputf8"):
            raise SmtpPermanentError(
                None, "relay does not offer SMTPUTF8 for a non-ASCII address", SmtpStage.MAIL
            )
        return [*options, "SMTPUTF8"], "utf-8"  # RFC 6531
