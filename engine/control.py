"""The control socket: a Unix socket speaking JSON lines.

One request per line, one response per line, in order:

    -> {"id": 1, "cmd": "campaign.start", "args": {"name": "spring"}}
    <- {"id": 1, "ok": true, "result": {"campaign": "spring", "state": "running"}}
    <- {"id": 1, "ok": false, "error": {"code": "not_found", "message": "..."}}

`{"cmd": "events"}` turns the connection into a stream: a `subscribed`
response, then one line per event of the daemon's bus until the client goes.
The socket file is private to the daemon's user (mode 0600): whoever can
connect can start campaigns.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.commands import run_command, to_jsonable
from engine.errors import OutdialError

if TYPE_CHECKING:
    from engine.app import App

log = logging.getLogger("outdial.control")

#: Longest request line accepted, newline excluded.
MAX_LINE = 1 << 20
#: Longest response line a client accepts (an attempts report can be large).
CLIENT_MAX_LINE = 1 << 30

Response = dict[str, Any]


class ControlSocketError(OutdialError):
    """The control socket cannot be opened: in use, not a socket, bad path."""

    code = "control_socket"


def _error(req_id: Any, code: str, message: str) -> Response:
    return {"id": req_id, "ok": False, "error": {"code": code, "message": message}}


def _encode(message: Response) -> bytes:
    return json.dumps(message, default=to_jsonable).encode() + b"\n"


class _TooLong:
    """Marker: the line was over MAX_LINE and has been discarded."""


_TOO_LONG = _TooLong()


async def _read_line(reader: asyncio.StreamReader) -> bytes | _TooLong | None:
    """The next line (None at end of stream). An overlong line is skipped
    up to and including its newline, so the connection stays in step."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial or None
    except asyncio.LimitOverrunError as exc:
        await reader.readexactly(exc.consumed)
    while True:
        try:
            await reader.readuntil(b"\n")
            return _TOO_LONG
        except asyncio.IncompleteReadError:
            return _TOO_LONG
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)


def _parse(line: bytes) -> tuple[Any, str, dict[str, Any]] | Response:
    """(id, cmd, args) of a request line, or the error response to send."""
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        return _error(None, "bad_request", f"not a JSON line: {exc}")
    if not isinstance(request, dict):
        return _error(None, "bad_request", "a request is a JSON object with 'cmd'")
    req_id = request.get("id")
    cmd, args = request.get("cmd"), request.get("args")
    if not isinstance(cmd, str) or not cmd:
        return _error(req_id, "bad_request", "missing 'cmd' (a string)")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return _error(req_id, "bad_request", "'args' must be a JSON object")
    return req_id, cmd, args


def _bind_private(path: Path) -> socket.socket:
    """A listening Unix socket at `path` created with mode 0600.

    fchmod before bind makes Linux create the file with that mode, so there
    is no moment when another user could connect; the chmod after bind
    covers systems where it does not (os.umask would be racy: it is
    process-wide and the store's thread creates files too).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.fchmod(sock.fileno(), 0o600)
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ControlSocketError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
    return sock


async def _clear_stale(path: Path) -> None:
    """Remove a socket file left by a daemon that died; refuse to touch a
    live daemon's socket or a file that is not a socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlSocketError(f"{path} exists and is not a socket; not replacing it")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2.0)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        log.info("removed stale control socket %s", path)
        return
    except (TimeoutError, OSError) as exc:
        raise ControlSocketError(f"{path}: cannot tell whether a daemon listens: {exc}") from exc
    writer.close()
    raise ControlSocketError(f"another outdial daemon is listening on {path}")


class ControlServer:
    """Serves the command layer on a Unix socket (JSON lines).

    Connections are independent tasks; the requests of one connection are
    answered one after another, in order.
    """

    def __init__(self, app: App, path: str | Path) -> None:
        self.app = app
        self.path = Path(path)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._inode: tuple[int, int] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Listen; raises ControlSocketError if a daemon answers at the path."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await _clear_stale(self.path)
        sock = _bind_private(self.path)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        log.info("control socket listening on %s", self.path)

    async def stop(self) -> None:
        """Stop listening, end every connection (event streams included) and
        remove the socket file if it is still ours."""
        if self._server is None:
            return
        self._stopping = True
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server, self._stopping = None, False
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._requests(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("control client went away: %s", exc)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # stop() cancelled us: end quietly (asyncio's stream callback
            # would log a cancelled connection task as an error)
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (line := await _read_line(reader)) is not None:
            if isinstance(line, _TooLong):
                message = f"request line longer than {MAX_LINE} bytes"
                await self._send(writer, _error(None, "bad_request", message))
                continue
            if not line.strip():
                continue
            parsed = _parse(line)
            if isinstance(parsed, dict):
                await self._send(writer, parsed)
                continue
            req_id, cmd, args = parsed
            if cmd == "events":
                await self._stream_events(req_id, reader, writer)
                return
            await self._send(writer, await self._execute(req_id, cmd, args))

    async def _execute(self, req_id: Any, cmd: str, args: dict[str, Any]) -> Response:
        try:
            result = await run_command(self.app, cmd, args)
        except OutdialError as exc:
            return _error(req_id, exc.code, exc.message)
        except Exception as exc:
            log.exception("control command %s failed", cmd)
            return _error(req_id, "internal", f"{type(exc).__name__}: {exc}")
        return {"id": req_id, "ok": True, "result": result}

    async def _send(self, writer: asyncio.StreamWriter, response: Response) -> None:
        try:
            data = _encode(response)
        except (TypeError, ValueError) as exc:
            log.exception("control response not serialisable")
            data = _encode(_error(response.get("id"), "internal", f"bad result: {exc}"))
        writer.write(data)
        await writer.drain()

    async def _stream_events(
        self, req_id: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Forward bus events until the client disconnects. The bus queue is
        bounded and drops the oldest events, so a client that does not read
        loses events instead of holding the daemon back."""
        queue = self.app.bus.subscribe()
        pump: asyncio.Task[None] | None = None
        watch: asyncio.Task[None] | None = None
        try:
            await self._send(writer, {"id": req_id, "ok": True, "result": "subscribed"})
            pump = asyncio.ensure_future(_pump(queue, writer))
            watch = asyncio.ensure_future(_until_eof(reader))
            done, _ = await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            for ended in done:
                if not ended.cancelled() and ended.exception() is not None:
                    log.debug("event stream ended: %s", ended.exception())
        finally:
            self.app.bus.unsubscribe(queue)
            for task in (pump, watch):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                        await task


async def _pump(queue: asyncio.Queue[dict[str, Any]], writer: asyncio.StreamWriter) -> None:
    while True:
        events = [await queue.get()]
        while not queue.empty():
            events.append(queue.get_nowait())
        writer.write(b"".join(json.dumps(e, default=to_jsonable).encode() + b"\n" for e in events))
        await writer.drain()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Wait for the client to close; anything it sends meanwhile is ignored."""
    while await reader.read(65536):
        pass


# ------------------------------------------------------------------- client


class ControlError(Exception):
    """An error response from the daemon (or no daemon): code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code, self.message = code, message


class DaemonUnavailable(ControlError):
    """Nothing listens at the socket path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__("no_daemon", f"no outdial daemon at {path} ({reason})")
        self.path = path


class ControlClient:
    """Talks to a running daemon. One connection, opened on first use;
    requests from several tasks are sent one at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_unix_connection(str(self.path), limit=CLIENT_MAX_LINE)
        except FileNotFoundError:
            raise DaemonUnavailable(self.path, "no such socket") from None
        except ConnectionRefusedError:
            raise DaemonUnavailable(self.path, "connection refused") from None
        except PermissionError:
            message = f"permission denied on {self.path} (it belongs to the daemon's user)"
            raise ControlError("permission", message) from None
        except OSError as exc:
            raise ControlError("connect", f"cannot connect to {self.path}: {exc}") from None

    async def close(self) -> None:
        """Close the connection (a later request opens a new one)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, cmd: str, /, **args: Any) -> Any:
        """Run one command; returns its result or raises ControlError."""
        async with self._lock:
            if self._writer is None:
                self._reader, self._writer = await self._open()
            assert self._reader is not None
            req_id = next(self._ids)
            message = {"id": req_id, "cmd": cmd, "args": args}
            try:
                self._writer.write(_encode(message))
                await self._writer.drain()
                line = await self._reader.readline()
            except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
                await self.close()
                raise ControlError("disconnected", f"connection to the daemon lost: {exc}") from exc
            if not line:
                await self.close()
                raise ControlError("disconnected", "the daemon closed the connection")
            return _result(line, req_id)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Subscribe (on a connection of its own) and yield every event."""
        reader, writer = await self._open()
        try:
            writer.write(_encode({"id": 0, "cmd": "events"}))
            await writer.drain()
            _result(await reader.readline(), 0)
            while line := await reader.readline():
                yield json.loads(line)
        finally:
            writer.close()


def _result(line: bytes, req_id: int) -> Any:
    if not line:
        raise ControlError("disconnected", "the daemon closed the connection")
    try:
        response = json.loads(line)
    except ValueError as exc:
        raise ControlError("protocol", f"unreadable response from the daemon: {exc}") from exc
    if not isinstance(response, dict) or "ok" not in response:
        raise ControlError("protocol", f"unexpected response from the daemon: {line[:200]!r}")
    if response.get("id") != req_id:
        raise ControlError("protocol", f"response to request {response.get('id')}, not {req_id}")
    if response["ok"]:
        return response.get("result")
    error = response.get("error") or {}
    raise ControlError(str(error.get("code", "error")), str(error.get("message", "")))


def request_sync(path: str | Path, cmd: str, /, **args: Any) -> Any:
    """One request from synchronous code (the CLI): connect, ask, close."""

    async def once() -> Any:
        async with ControlClient(path) as client:
            return await client.request(cmd, **args)

    return asyncio.run(once())
