"""The one thin asyncio adapter around the sans-IO `UserAgent`.

One UDP socket carries all signalling; TCP connections are opened on demand
(and accepted, when a listener is asked for) with RFC 3261 18.3 framing. After
every input the adapter drains what the core wants sent, dispatches its
events, and re-arms a single `loop.call_at` for the core's next timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from carriers.sip.call import CallSpec
from carriers.sip.errors import SipError, SipParseError
from carriers.sip.events import (
    CallAnswered,
    CallDtmfInfo,
    CallEarlyMedia,
    CallEnded,
    CallMediaChanged,
    CallProgress,
    CallTransferResult,
    OptionsResult,
)
from carriers.sip.message import SipURI
from carriers.sip.parser import StreamParser
from carriers.sip.registrar import Registrar
from carriers.sip.transaction import Target
from carriers.sip.trunk import TrunkMonitor, TrunkStateChanged
from carriers.sip.ua import UaEvent, UserAgent

log = logging.getLogger("outdial.sip")

CallEvent = (
    CallProgress
    | CallEarlyMedia
    | CallAnswered
    | CallMediaChanged
    | CallDtmfInfo
    | CallTransferResult
    | CallEnded
)


class TransportError(SipError):
    """A socket could not be opened, or a peer could not be reached."""


@dataclass(slots=True)
class CallHandle:
    """What the caller of `SipEndpoint.place_call` holds: every event of the
    call in order, and futures for the answer and the end."""

    call_id: str
    events: asyncio.Queue[CallEvent] = field(default_factory=asyncio.Queue)
    answered: asyncio.Future[CallAnswered | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ended: asyncio.Future[CallEnded] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    on_event: Callable[[CallEvent], None] | None = None

    def deliver(self, event: CallEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                # The caller's bug must not cost the call its CallEnded.
                log.exception("call event handler failed for %s", self.call_id)
        self.events.put_nowait(event)
        if isinstance(event, CallAnswered) and not self.answered.done():
            self.answered.set_result(event)
        elif isinstance(event, CallEnded):
            if not self.answered.done():
                self.answered.set_result(None)
            if not self.ended.done():
                self.ended.set_result(event)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), int(str(addr[1]))
        self.endpoint.feed(data, Target(host, port, "UDP"))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction timers decide.
        pass


class SipEndpoint:
    """A running user agent: sockets, timer, and per-call event delivery."""

    def __init__(self, ua: UserAgent, loop: asyncio.AbstractEventLoop) -> None:
        self.ua = ua
        self.loop = loop
        self._udp: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._calls: dict[str, CallHandle] = {}
        self._probes: dict[str, asyncio.Future[OptionsResult]] = {}
        self._streams: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._connecting: dict[tuple[str, int], list[bytes]] = {}
        self._resolved: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        # Every event of the core, registrar events included, goes to each listener.
        self.listeners: list[Callable[[UaEvent], None]] = []

    @classmethod
    async def open(
        cls,
        host: str,
        port: int = 0,
        *,
        rng: random.Random | None = None,
        user_agent: str = "outdial/0.1",
        tcp_listen: bool = False,
        registrar: Registrar | None = None,
    ) -> SipEndpoint:
        """Bind the UDP signalling socket (port 0: any free port).

        With a `registrar`, phones can REGISTER here; its `Registered`,
        `Unregistered` and `RegistrationRejected` go to `listeners`.
        """
        loop = asyncio.get_running_loop()
        ua = UserAgent(host=host, port=port, rng=rng or random.Random(), user_agent=user_agent)
        ua.registrar = registrar
        endpoint = cls(ua, loop)
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(endpoint), local_addr=(host, port)
            )
        except OSError as exc:
            raise TransportError(f"cannot bind SIP/UDP on {host}:{port}: {exc}") from exc
        endpoint._udp = transport
        ua.local_port = transport.get_extra_info("sockname")[1]
        if tcp_listen:
            endpoint._server = await asyncio.start_server(endpoint._accept, host, ua.local_port)
        return endpoint

    @property
    def local_address(self) -> tuple[str, int]:
        return self.ua.local_host, self.ua.local_port

    # ------------------------------------------------------------ operations

    def place_call(
        self, spec: CallSpec, on_event: Callable[[CallEvent], None] | None = None
    ) -> CallHandle:
        call_id = self.ua.new_call_id()
        handle = CallHandle(call_id, on_event=on_event)
        self._calls[call_id] = handle
        self.ua.place_call(spec, self.loop.time(), call_id=call_id)
        self._pump()
        return handle

    def hangup(self, call_id: str, reason: str | None = None) -> None:
        self.ua.hangup(call_id, self.loop.time(), reason)
        self._pump()

    def cancel(self, call_id: str) -> None:
        self.ua.cancel(call_id, self.loop.time())
        self._pump()

    def refer(self, call_id: str, target: str) -> bool:
        """Ask the far end to transfer an answered call to `target` (a SIP or
        tel URI); the answer comes as a CallTransferResult event. False when
        the call is not answered or a REFER is already out."""
        sent = self.ua.refer(call_id, target, self.loop.time())
        self._pump()
        return sent

    async def options(self, uri: SipURI, target: Target) -> OptionsResult:
        """Probe a peer with OPTIONS; waits for the answer or timer F."""
        probe_id = self.ua.options(uri, target, self.loop.time())
        future: asyncio.Future[OptionsResult] = self.loop.create_future()
        self._probes[probe_id] = future
        self._pump()
        return await future

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for writer in self._streams.values():
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    # --------------------------------------------------------------- the pump

    def feed(self, data: bytes, source: Target) -> None:
        self.ua.receive(data, source, self.loop.time())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.ua.handle_timer(self.loop.time())
        self._pump()

    def _pump(self) -> None:
        ua = self.ua
        for data, target in ua.datagrams_to_send():
            self._send(data, target)
        while (event := ua.next_event()) is not None:
            self._dispatch(event)
        when = ua.get_timer()
        if when != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(when, self._on_timer) if when is not None else None
            self._timer_at = when

    def _dispatch(self, event: UaEvent) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("SIP event listener failed")
        match event:
            case OptionsResult(probe_id=probe_id):
                future = self._probes.pop(probe_id, None)
                if future is not None and not future.done():
                    future.set_result(event)
            case (
                CallProgress()
                | CallEarlyMedia()
                | CallAnswered()
                | CallMediaChanged()
                | CallDtmfInfo()
                | CallTransferResult()
            ):
                handle = self._calls.get(event.call_id)
                if handle is not None:
                    handle.deliver(event)
            case CallEnded():
                handle = self._calls.pop(event.call_id, None)
                if handle is not None:
                    handle.deliver(event)
            case _:
                pass

    # ------------------------------------------------------------ transports

    def _send(self, data: bytes, target: Target) -> None:
        host = self._resolved.get(target.host) or _literal(target.host)
        if host is None:
            self._spawn(self._resolve_then_send(data, target))
            return
        try:
            if target.transport == "UDP":
                if self._udp is not None:
                    self._udp.sendto(data, (host, target.port))
            else:
                self._send_stream(data, (host, target.port))
        except (OSError, ValueError) as exc:
            # One unreachable address (say an IPv6 Contact on an IPv4 socket)
            # must not stop the rest of the batch; the transaction's timers
            # report the failure.
            log.warning("cannot send to %s:%d: %s", host, target.port, exc)

    async def _resolve_then_send(self, data: bytes, target: Target) -> None:
        try:
            family = socket.AF_INET6 if ":" in self.ua.local_host else socket.AF_INET
            infos = await self.loop.getaddrinfo(
                target.host, target.port, family=family, type=socket.SOCK_DGRAM
            )
        except OSError:
            return  # the transaction's timer B/F reports the failure
        self._resolved[target.host] = str(infos[0][4][0])
        self._send(data, target)

    def _send_stream(self, data: bytes, peer: tuple[str, int]) -> None:
        writer = self._streams.get(peer)
        if writer is not None and not writer.is_closing():
            writer.write(data)
            return
        pending = self._connecting.get(peer)
        if pending is not None:
            pending.append(data)
            return
        self._connecting[peer] = [data]
        self._spawn(self._connect(peer))

    async def _connect(self, peer: tuple[str, int]) -> None:
        try:
            reader, writer = await asyncio.open_connection(*peer)
        except OSError:
            self._connecting.pop(peer, None)
            return
        self._streams[peer] = writer
        for data in self._connecting.pop(peer, []):
            writer.write(data)
        await self._read_stream(reader, peer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        self._streams[(host, port)] = writer
        await self._read_stream(reader, (host, port))

    async def _read_stream(self, reader: asyncio.StreamReader, peer: tuple[str, int]) -> None:
        parser = StreamParser()
        source = Target(peer[0], peer[1], "TCP")
        try:
            while data := await reader.read(65536):
                try:
                    messages = parser.feed(data)
                except SipParseError:
                    break  # a stream that lost its framing cannot be resynchronised
                for message in messages:
                    self.ua.receive_message(message, source, self.loop.time())
                self._pump()
        finally:
            writer = self._streams.pop(peer, None)
            if writer is not None:
                writer.close()

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = self.loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def local_address_for(remote_host: str, remote_port: int = 5060) -> str:
    """The local address the kernel would use to reach `remote_host` (no
    packet is sent: a connected UDP socket only consults the routing table)."""
    family = socket.AF_INET6 if ":" in remote_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((remote_host, remote_port))
        except OSError as exc:
            raise TransportError(f"no route to {remote_host}: {exc}") from exc
        return str(probe.getsockname()[0])


class TrunkKeepalive:
    """Probes each trunk with OPTIONS on its `TrunkMonitor`'s schedule and
    reports state changes (up/down) to `on_change`."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        trunks: dict[str, tuple[SipURI, Target]],
        on_change: Callable[[TrunkStateChanged], None],
        *,
        interval: float = 30.0,
        down_interval: float = 5.0,
        failures_to_down: int = 2,
    ) -> None:
        now = endpoint.loop.time()
        self.endpoint = endpoint
        self.trunks = trunks
        self.on_change = on_change
        self.monitors = {
            name: TrunkMonitor(
                name, interval=interval, down_interval=down_interval,
                failures_to_down=failures_to_down, now=now,
            )
            for name in trunks
        }  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self.endpoint.loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = self.endpoint.loop
        while True:
            now = loop.time()
            due = [name for name, m in self.monitors.items() if m.due(now)]
            if due:
                await asyncio.gather(*(self._probe(name) for name in due))
            soonest = min(m.next_probe_at for m in self.monitors.values())
            await asyncio.sleep(max(0.05, soonest - loop.time()))

    async def _probe(self, name: str) -> None:
        uri, target = self.trunks[name]
        result = await self.endpoint.options(uri, target)
        change = self.monitors[name].on_result(result.status, result.rtt, result.at)
        if change is not None:
            self.on_change(change)
