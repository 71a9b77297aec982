"""The inbound SMTP listener for bounces, complaints and replies (aiosmtpd).

aiosmtpd's ``SMTP`` protocol runs on ``loop.create_server`` in the daemon's own
event loop (its threaded ``Controller`` would put it on a second loop). The
listener only talks SMTP: it hands each accepted message to ``on_message`` and
answers with what happened, so that a message is either in the engine's hands or
still in the sender's queue:

- RCPT for an address ``accept_rcpt`` refuses: ``550`` (RFC 5321 section 4.2.2),
  so nobody can use us as a relay or a mail drop;
- more than ``max_recipients`` RCPTs: ``452`` (RFC 5321 section 4.5.3.1.10);
- a message over ``max_size``: ``552``, at MAIL when the client declares SIZE
  (RFC 1870), else at the end of DATA;
- ``on_message`` raising: ``451``, a transient failure, so the sender keeps the
  message and retries (RFC 5321 section 4.2.5): nothing is lost;
- ``on_message`` returning: ``250``, and the message is ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

__all__ = ["Envelope", "InboundServer", "OnMessage"]

log = logging.getLogger("outdial.email.inbound")

DEFAULT_MAX_SIZE = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    """One accepted message: the SMTP envelope and the message as received.

    ``mail_from`` is ``""`` for the null reverse-path ``<>`` that bounces and
    auto-replies are sent from (RFC 5321 section 4.5.5). ``data`` is the message
    with CRLF line endings and the dot-stuffing undone. ``peer`` is the client's
    (host, port).
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: tuple[str, int] | None


OnMessage = Callable[[Envelope], Awaitable[None]]


class InboundServer:
    """An SMTP server on ``host:port`` (0: a free port, read ``.port`` after start)."""

    def __init__(
        self,
        host: str,
        port: int,
        on_message: OnMessage,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        accept_rcpt: Callable[[str], bool] | None = None,
        max_recipients: int = 100,
        hostname: str | None = None,
        idle_timeout: float = 300.0,
        drain_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self._port = port
        self._on_message = on_message
        self._max_size = max_size
        self._accept_rcpt = accept_rcpt
        self._max_recipients = max_recipients
        self._hostname = hostname
        self._idle_timeout = idle_timeout
        self._drain_timeout = drain_timeout
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def port(self) -> int:
        """The port listened on: the one given, or the free one picked for 0."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        # aiosmtpd would call the blocking getfqdn() for every connection.
        hostname = self._hostname or await loop.run_in_executor(None, socket.getfqdn)

        def new_session() -> SMTP:
            session = SMTP(
                _Handler(self),
                data_size_limit=self._max_size,
                enable_SMTPUTF8=True,
                hostname=hostname,
                timeout=self._idle_timeout,
                loop=loop,
            )
            self._sessions.add(session)
            return session

        self._server = await loop.create_server(new_session, self.host, self._port)
        log.info("inbound SMTP listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening, let messages being handed over finish (up to
        ``drain_timeout``), then close every connection. A client cut off before
        its 250 still has the message and retries."""
        server, self._server = self._server, None
        if server is None:
            return
        self._port = int(server.sockets[0].getsockname()[1]) if server.sockets else self._port
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self._drain_timeout)
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        await server.wait_closed()

    async def __aenter__(self) -> InboundServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _deliver(self, envelope: Envelope) -> str:
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._on_message(envelope)
        except Exception:
            log.exception("inbound message from %r not accepted", envelope.mail_from)
            return "451 4.3.0 Message not accepted, try again later"
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        return "250 2.0.0 OK"

    def _check_rcpt(self, address: str, count: int) -> str | None:
        """The refusal for one more recipient, or None to accept it."""
        if count >= self._max_recipients:
            return "452 4.5.3 Too many recipients"
        if self._accept_rcpt is None:
            return None
        try:
            accepted = self._accept_rcpt(address)
        except Exception:
            log.exception("accept_rcpt failed for %r", address)
            return "451 4.3.0 Recipient check failed, try again later"
        return None if accepted else f"550 5.1.1 <{address}>: Recipient address rejected"


class _Handler:
    """The aiosmtpd handler hooks, bound to one server."""

    def __init__(self, server: InboundServer) -> None:
        self._server = server

    async def handle_RCPT(
        self,
        smtp: SMTP,
        session: Session,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._server._check_rcpt(address, len(envelope.rcpt_tos))
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        mail_from = envelope.mail_from or ""
        content = envelope.original_content
        if content is None:
            raw = envelope.content
            content = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
        return await self._server._deliver(
            Envelope(
                mail_from="" if mail_from == "<>" else mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=content or b"",
                peer=_peer(session.peer),
            )
        )


def _peer(peer: object) -> tuple[str, int] | None:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return None
