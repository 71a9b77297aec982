"""The command layer and the control socket, over real Unix sockets.

The daemon's App is built from small fakes of the Store and the
CampaignManager that follow the documented signatures (iface3); the fakes do
real work (read CSV files, keep DNC entries with expiry) so that the tests
can check what arrived at the store, not only that something did.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engine.app import App
from engine.bus import EventBus
from engine.commands import COMMANDS, Arg, Command, parse_expiry, run_command
from engine.config import ConfigError
from engine.control import (
    MAX_LINE,
    ControlClient,
    ControlError,
    ControlServer,
    ControlSocketError,
    DaemonUnavailable,
    request_sync,
)
from engine.errors import BadRequest, InvalidState, NotFound
from engine.store import ImportSummary

# ------------------------------------------------------------------- fakes


def fake_e164(text: str, region: str = "US") -> str:
    """Enough of E.164 normalisation for the fakes: +digits, or a national
    number of the US (10 digits) or GB (0 and 10 digits)."""
    digits = re.sub(r"[\s().-]", "", text)
    if re.fullmatch(r"\+[1-9]\d{7,14}", digits):
        return digits
    if region == "US" and re.fullmatch(r"[2-9]\d{9}", digits):
        return "+1" + digits
    if region == "GB" and re.fullmatch(r"0\d{10}", digits):
        return "+44" + digits[1:]
    raise BadRequest(f"invalid phone number {text!r}")


class FakeStore:
    """The documented Store API, in memory."""

    url = "sqlite:///fake/outdial.db"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.campaign_rows: dict[str, dict[str, Any]] = {}
        self.lists: dict[str, list[dict[str, Any]]] = {}
        self.dnc: dict[str, dict[str, Any]] = {}
        self.dnc_list_kinds = {"internal": "internal", "opt-outs": "optout"}
        self.attempt_rows: dict[str, list[dict[str, Any]]] = {}
        self.import_gate: asyncio.Event | None = None
        self.summary_override: Any = None

    def _record(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))

    def last(self, name: str) -> dict[str, Any]:
        return [kw for n, kw in self.calls if n == name][-1]

    async def ensure_list(self, name: str) -> int:
        self.lists.setdefault(name, [])
        return list(self.lists).index(name) + 1

    async def campaign(self, name: str) -> dict[str, Any]:
        if name not in self.campaign_rows:
            raise NotFound(f"no campaign {name!r}")
        return dict(self.campaign_rows[name])

    async def progress(self, campaign: str) -> dict[str, Any]:
        rows = self.attempt_rows.get(campaign, [])
        total = len(self.lists.get(self.campaign_rows[campaign]["list"], []))
        return {"total": total, "processed": len(rows), "in_flight": 0, "pending": total}

    async def import_contacts(
        self,
        list_name: str,
        csv_path: Path,
        *,
        phone_columns: Sequence[str] | None = None,
        region: str = "US",
        error_path: Path | None = None,
        encoding: str = "utf-8",
    ) -> ImportSummary:
        self._record("import_contacts", list_name=list_name, csv_path=csv_path,
                     phone_columns=phone_columns, region=region, error_path=error_path,
                     encoding=encoding)  # fmt: skip
        if self.import_gate is not None:
            await self.import_gate.wait()
        rows, errors = 0, []
        seen = {p for c in self.lists.get(list_name, []) for p in c["phones"]}
        contacts = self.lists.setdefault(list_name, [])
        with csv_path.open(encoding=encoding, newline="") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                rows += 1
                try:
                    phones = [fake_e164(row[c], region) for c in phone_columns or ["phone"]]
                except BadRequest as exc:
                    errors.append((line, "invalid", exc.message))
                    continue
                if seen & set(phones):
                    errors.append((line, "duplicate", phones[0]))
                    continue
                seen.update(phones)
                contacts.append({"phones": phones, "attributes": {}, "priority": 0})
        if error_path is not None:
            with error_path.open("w", newline="") as fh:
                csv.writer(fh).writerows(errors)
        dups = sum(1 for e in errors if e[1] == "duplicate")
        return ImportSummary(rows=rows, imported=rows - len(errors), duplicates=dups,
                             invalid=len(errors) - dups,
                             error_path=str(error_path) if error_path else None,
                             seconds=0.01)  # fmt: skip

    async def add_contact(
        self,
        list_name: str,
        phones: Sequence[str],
        attributes: Mapping[str, str] | None = None,
        *,
        region: str = "US",
        priority: int = 0,
        top: bool = False,
        external_id: str | None = None,
    ) -> int:
        numbers = [fake_e164(p, region) for p in phones]
        contact = {"phones": numbers, "attributes": dict(attributes or {}), "priority": priority}
        contacts = self.lists.setdefault(list_name, [])
        if top:
            contacts.insert(0, contact)
        else:
            contacts.append(contact)
        self._record("add_contact", list_name=list_name, top=top)
        return sum(len(c) for c in self.lists.values())

    async def export_list(self, list_name: str, out_path: Path) -> int:
        if list_name not in self.lists:
            raise NotFound(f"no contact list {list_name!r}")
        with out_path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["phone", "priority"])
            for c in self.lists[list_name]:
                writer.writerow([c["phones"][0], c["priority"]])
        return len(self.lists[list_name])

    async def dnc_add(
        self,
        number: str | None = None,
        *,
        contact_id: int | None = None,
        list: str = "internal",
        source: str = "manual",
        expires_at: datetime | None = None,
        note: str | None = None,
        region: str = "US",
        campaign: str | None = None,
    ) -> str | None:
        assert number is not None, "the fake keeps numbers only"
        if list not in self.dnc_list_kinds:
            raise NotFound(f"no do-not-contact list {list!r}")
        e164 = fake_e164(number, region)
        self.dnc[e164] = {"number": e164, "list": list, "source": source,
                          "expires_at": expires_at, "added_at": datetime.now(UTC)}  # fmt: skip
        return e164

    async def dnc_remove(
        self,
        number: str | None = None,
        *,
        contact_id: int | None = None,
        list: str = "internal",
        region: str = "US",
    ) -> bool:
        assert number is not None
        e164 = fake_e164(number, region)
        if self.dnc.get(e164, {}).get("list") != list:
            return False
        return self.dnc.pop(e164, None) is not None

    async def dnc_check(
        self,
        number: str | None = None,
        now: datetime | None = None,
        *,
        contact_id: int | None = None,
        region: str = "US",
    ) -> list[dict[str, Any]]:
        assert number is not None
        entry = self.dnc.get(fake_e164(number, region))
        now = now or datetime.now(UTC)
        if entry is None or (entry["expires_at"] is not None and entry["expires_at"] <= now):
            return []
        out = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in entry.items()}
        return [{**out, "kind": self.dnc_list_kinds[entry["list"]], "via": "number",
                 "contact_id": None, "note": None}]  # fmt: skip

    async def dnc_numbers(
        self, numbers: Collection[str], now: datetime, lists: Sequence[str] | None = None
    ) -> dict[str, Any]:
        return {n: self.dnc[n] for n in numbers if n in self.dnc}

    async def dnc_missing_lists(self, names: Collection[str]) -> list[str]:
        return [n for n in names if n not in self.dnc_list_kinds]

    async def dnc_lists(self) -> list[dict[str, Any]]:
        return [{"name": n, "kind": k} for n, k in self.dnc_list_kinds.items()]

    async def dnc_create_list(self, name: str, kind: str) -> dict[str, Any]:
        self.dnc_list_kinds[name] = kind
        return {"name": name, "kind": kind, "created_at": datetime.now(UTC).isoformat()}

    async def dnc_import(
        self,
        csv_path: Path,
        *,
        list: str = "internal",
        column: str | None = None,
        source: str = "import",
        region: str = "US",
        error_path: Path | None = None,
    ) -> ImportSummary:
        self._record("dnc_import", column=column, source=source, region=region)
        rows = imported = invalid = 0
        with csv_path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            name = column or (reader.fieldnames or [""])[0]
            for row in reader:
                rows += 1
                try:
                    await self.dnc_add(row[name], list=list, source=source, region=region)
                    imported += 1
                except BadRequest:
                    invalid += 1
        return ImportSummary(rows, imported, 0, invalid, None, 0.01)

    async def summary(self, campaign: str) -> dict[str, Any]:
        if self.summary_override is not None:
            return {"weird": self.summary_override}
        rows = self.attempt_rows.get(campaign, [])
        by_result: dict[str, int] = {}
        for r in rows:
            by_result[r["result"]] = by_result.get(r["result"], 0) + 1
        answered = by_result.get("answered", 0)
        return {"attempts": len(rows), "by_result": by_result,
                "connect_rate": answered / len(rows) if rows else 0.0,
                "avg_ring_ms": 3000, "avg_talk_ms": 12000}  # fmt: skip

    async def attempts(self, campaign: str, limit: int | None = None) -> list[dict[str, Any]]:
        self._record("attempts", campaign=campaign, limit=limit)
        rows = self.attempt_rows.get(campaign, [])
        return rows[:limit] if limit is not None else list(rows)


class FakeCampaigns:
    """The documented CampaignManager API; states live in the fake store."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.broken_status = False
        self.runners: dict[str, object] = {}  # the loaded voice campaigns, by name

    def _row(self, name: str) -> dict[str, Any]:
        if name not in self.store.campaign_rows:
            raise NotFound(f"no campaign {name!r}")
        return self.store.campaign_rows[name]

    async def list(self) -> list[dict[str, Any]]:
        return [await self.show(name) for name in self.store.campaign_rows]

    async def show(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        return {"name": name, "state": row["state"], "list": row["list"], "trunk": "carrier",
                "lines": row["definition"].get("lines", 10), "in_flight": 0,
                "progress": await self.store.progress(name)}  # fmt: skip

    async def load(self, path: Path) -> str:
        text = await asyncio.to_thread(path.read_text)
        match = re.search(r"^name: (\S+)$", text, re.M)
        if match is None or "lines: ten" in text:
            raise ConfigError(str(path), 3, "lines", "expected an integer, got 'ten'")
        name = match.group(1)
        self.store.campaign_rows.setdefault(
            name, {"name": name, "list": "leads", "state": "stopped", "definition": {"lines": 5}}
        )
        return name

    async def _move(self, name: str, allowed: tuple[str, ...], state: str) -> None:
        row = self._row(name)
        if row["state"] not in allowed:
            raise InvalidState(f"campaign {name!r} is {row['state']}")
        row["state"] = state

    async def start(self, name: str) -> None:
        await self._move(name, ("stopped", "paused", "completed"), "running")

    async def pause(self, name: str) -> None:
        await self._move(name, ("running",), "paused")

    async def resume(self, name: str) -> None:
        await self._move(name, ("paused",), "running")

    async def stop(self, name: str) -> None:
        await self._move(name, ("running", "paused"), "stopped")

    def status(self) -> dict[str, Any]:
        if self.broken_status:
            raise RuntimeError("telephony is on fire")
        rows = self.store.campaign_rows
        return {"campaigns": {n: r["state"] for n, r in rows.items()}, "calls_in_flight": 0}


def seeded_store() -> FakeStore:
    store = FakeStore()
    store.lists["leads"] = [{"phones": ["+12125550100"], "attributes": {}, "priority": 0}]
    store.campaign_rows["spring"] = {"name": "spring", "list": "leads", "state": "stopped",
                                     "definition": {"lines": 10}}  # fmt: skip
    store.attempt_rows["spring"] = [
        {"id": i, "contact_id": 1, "number": "+12125550100", "trunk": "carrier",
         "result": result, "sip_status": status, "created_at": "2030-01-01T10:00:00+00:00",
         "duration_ms": 1000 * i}
        for i, (result, status) in enumerate(
            [("answered", 200), ("busy", 486), ("answered", 200), ("no_answer", 487)], start=1
        )
    ]  # fmt: skip
    return store


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 107 bytes of a Unix socket path.
    path = Path(tempfile.mkdtemp(prefix="odctl", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Daemon:
    app: App
    store: FakeStore
    campaigns: FakeCampaigns
    server: ControlServer
    path: Path


def make_app(store: FakeStore) -> App:
    return App(store=store, campaigns=FakeCampaigns(store), bus=EventBus(),  # type: ignore[arg-type]
               config=SimpleNamespace(), started_at=time.time() - 42)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
async def daemon(sock_dir: Path) -> AsyncIterator[Daemon]:
    store = seeded_store()
    app = make_app(store)
    server = ControlServer(app, sock_dir / "ctl.sock")
    await server.start()
    yield Daemon(app, store, app.campaigns, server, server.path)  # type: ignore[arg-type]
    await server.stop()


async def call(path: Path, cmd: str, /, **args: Any) -> Any:
    async with ControlClient(path) as client:
        return await client.request(cmd, **args)


async def error_of(path: Path, cmd: str, /, **args: Any) -> ControlError:
    with pytest.raises(ControlError) as info:
        await call(path, cmd, **args)
    return info.value


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(500):  # 5 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


class Raw:
    """A bare connection: bytes in, parsed JSON lines out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path) -> Raw:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)
        return cls(reader, writer)

    async def send(self, data: bytes | dict[str, Any]) -> None:
        self.writer.write(data if isinstance(data, bytes) else json.dumps(data).encode() + b"\n")
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), 5)
        assert line, "connection closed"
        return json.loads(line)  # type: ignore[no-any-return]

    async def close(self) -> None:
        self.writer.close()


# ------------------------------------------------------------ socket file


async def test_socket_is_private_even_with_an_open_umask(sock_dir: Path) -> None:
    old = os.umask(0)
    try:
        server = ControlServer(make_app(seeded_store()), sock_dir / "sub" / "ctl.sock")
        await server.start()
    finally:
        os.umask(old)
    try:
        st = os.stat(server.path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
    finally:
        await server.stop()
    assert not server.path.exists()


async def test_stale_socket_file_is_replaced(sock_dir: Path) -> None:
    path = sock_dir / "ctl.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # a socket file nobody listens on: a crashed daemon's
    dead.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    server = ControlServer(make_app(seeded_store()), path)
    await server.start()
    try:
        assert (await call(path, "status"))["pid"] == os.getpid()
    finally:
        await server.stop()


async def test_refuses_a_live_daemons_socket(daemon: Daemon) -> None:
    second = ControlServer(make_app(seeded_store()), daemon.path)
    with pytest.raises(ControlSocketError, match="another outdial daemon"):
        await second.start()
    # the first daemon is untouched and still answers
    assert (await call(daemon.path, "campaign.show", name="spring"))["name"] == "spring"


async def test_refuses_to_replace_a_regular_file(sock_dir: Path) -> None:
    path = sock_dir / "ctl.sock"
    path.write_text("precious")
    with pytest.raises(ControlSocketError, match="not a socket"):
        await ControlServer(make_app(seeded_store()), path).start()
    assert path.read_text() == "precious"


async def test_stop_leaves_a_successors_socket_alone(sock_dir: Path) -> None:
    path = sock_dir / "ctl.sock"
    first = ControlServer(make_app(seeded_store()), path)
    await first.start()
    os.unlink(path)  # an operator removed it; a new daemon took the path
    second = ControlServer(make_app(seeded_store()), path)
    await second.start()
    await first.stop()
    assert path.exists()
    assert (await call(path, "status"))["store"] == FakeStore.url
    await second.stop()
    assert not path.exists()


async def test_no_daemon_is_reported_as_such(sock_dir: Path) -> None:
    with pytest.raises(DaemonUnavailable) as info:
        await call(sock_dir / "nothing.sock", "status")
    assert info.value.code == "no_daemon"
    assert str(sock_dir / "nothing.sock") in info.value.message


# ---------------------------------------------------------------- protocol


async def test_request_response_shape_and_id_echo(daemon: Daemon) -> None:
    raw = await Raw.open(daemon.path)
    await raw.send({"id": "abc-7", "cmd": "campaign.show", "args": {"name": "spring"}})
    response = await raw.recv()
    assert response["id"] == "abc-7" and response["ok"] is True
    assert response["result"]["state"] == "stopped"
    await raw.send({"id": 8, "cmd": "campaign.show", "args": {"name": "nope"}})
    assert await raw.recv() == {
        "id": 8, "ok": False, "error": {"code": "not_found", "message": "no campaign 'nope'"},
    }  # fmt: skip
    await raw.close()


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"{not json\n", "not a JSON line"),
        (b"\xff\xfe\n", "not a JSON line"),
        (b"[1, 2]\n", "JSON object"),
        (b'{"id": 3}\n', "missing 'cmd'"),
        (b'{"id": 3, "cmd": 5}\n', "missing 'cmd'"),
        (b'{"id": 3, "cmd": "status", "args": [1]}\n', "'args' must be a JSON object"),
    ],
)
async def test_malformed_requests_keep_the_connection(
    daemon: Daemon, line: bytes, fragment: str
) -> None:
    raw = await Raw.open(daemon.path)
    await raw.send(line)
    response = await raw.recv()
    assert response["ok"] is False
    assert response["error"]["code"] == "bad_request"
    assert fragment in response["error"]["message"]
    await raw.send({"id": 4, "cmd": "status"})
    assert (await raw.recv())["ok"] is True
    await raw.close()


async def test_unknown_command_with_suggestion(daemon: Daemon) -> None:
    raw = await Raw.open(daemon.path)
    await raw.send({"id": 1, "cmd": "campaign.strat", "args": {"name": "spring"}})
    response = await raw.recv()
    assert response["id"] == 1
    assert response["error"]["code"] == "unknown_command"
    assert "campaign.start" in response["error"]["message"]
    await raw.close()


async def test_pipelined_requests_answered_in_order_blank_lines_skipped(daemon: Daemon) -> None:
    raw = await Raw.open(daemon.path)
    lines = [json.dumps({"id": i, "cmd": cmd, "args": args}).encode() + b"\n"
             for i, (cmd, args) in enumerate([
                 ("campaign.start", {"name": "spring"}),
                 ("campaign.start", {"name": "spring"}),
                 ("campaign.pause", {"name": "spring"}),
                 ("campaign.show", {"name": "spring"}),
             ])]  # fmt: skip
    await raw.send(b"\n  \n".join(lines))
    responses = [await raw.recv() for _ in lines]
    assert [r["id"] for r in responses] == [0, 1, 2, 3]
    assert responses[0]["result"]["state"] == "running"
    assert responses[1]["error"]["code"] == "invalid_state"
    assert responses[2]["result"]["state"] == "paused"
    assert responses[3]["result"]["state"] == "paused"
    await raw.close()


async def test_request_without_id_or_args(daemon: Daemon) -> None:
    raw = await Raw.open(daemon.path)
    await raw.send(b'{"cmd": "campaign.list"}')  # no newline: the last line before EOF
    raw.writer.write_eof()
    response = await raw.recv()
    assert response["id"] is None and response["ok"] is True
    assert [c["name"] for c in response["result"]] == ["spring"]
    assert await raw.reader.readline() == b""  # server closes after EOF
    await raw.close()


async def test_overlong_line_rejected_then_connection_usable(daemon: Daemon) -> None:
    raw = await Raw.open(daemon.path)
    big = json.dumps({"id": 1, "cmd": "status", "args": {"pad": "x" * MAX_LINE}}).encode()
    await raw.send(big + b"\n")
    response = await raw.recv()
    assert response["error"]["code"] == "bad_request"
    assert "longer than" in response["error"]["message"]
    await raw.send({"id": 2, "cmd": "campaign.show", "args": {"name": "spring"}})
    response = await raw.recv()
    assert response["id"] == 2 and response["ok"] is True
    await raw.close()


async def test_line_just_under_the_limit_is_accepted(daemon: Daemon) -> None:
    head = b'{"id": 1, "cmd": "campaign.show", "args": {"name": "spring"}}'
    line = head + b" " * (MAX_LINE - len(head))  # JSON allows trailing whitespace
    assert len(line) == MAX_LINE
    raw = await Raw.open(daemon.path)
    await raw.send(line + b"\n")
    assert (await raw.recv())["ok"] is True
    await raw.close()


async def test_internal_error_is_reported_and_server_survives(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    daemon.campaigns.broken_status = True
    error = await error_of(daemon.path, "status")
    assert error.code == "internal"
    assert "RuntimeError: telephony is on fire" in error.message
    assert any("status" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    daemon.campaigns.broken_status = False
    assert (await call(daemon.path, "status"))["pid"] == os.getpid()


async def test_unserialisable_result_is_an_internal_error(daemon: Daemon) -> None:
    daemon.store.summary_override = object()
    error = await error_of(daemon.path, "report.summary", campaign="spring")
    assert error.code == "internal"
    daemon.store.summary_override = None
    assert (await call(daemon.path, "report.summary", campaign="spring"))["attempts"] == 4


async def test_two_clients_one_waiting_on_a_slow_command(daemon: Daemon) -> None:
    csv_file = daemon.path.parent / "leads.csv"
    csv_file.write_text("phone\n2125550111\n")
    daemon.store.import_gate = asyncio.Event()
    slow = asyncio.ensure_future(call(daemon.path, "contacts.import", list="leads",
                                      file=str(csv_file)))  # fmt: skip
    await asyncio.sleep(0.05)
    # the other client is served while the import waits
    assert (await asyncio.wait_for(call(daemon.path, "campaign.start", name="spring"), 2))[
        "state"
    ] == "running"
    assert not slow.done()
    daemon.store.import_gate.set()
    assert (await asyncio.wait_for(slow, 2))["imported"] == 1


async def test_client_shared_by_concurrent_tasks(daemon: Daemon) -> None:
    async with ControlClient(daemon.path) as client:
        results = await asyncio.gather(
            *(client.request("dnc.add", number=f"+1212555{n:04d}") for n in range(20))
        )
    assert sorted(r["number"] for r in results) == sorted(f"+1212555{n:04d}" for n in range(20))
    assert len(daemon.store.dnc) == 20


async def test_client_disconnecting_mid_request_does_not_hurt(daemon: Daemon) -> None:
    daemon.store.import_gate = asyncio.Event()
    csv_file = daemon.path.parent / "leads.csv"
    csv_file.write_text("phone\n2125550111\n")
    raw = await Raw.open(daemon.path)
    await raw.send({"id": 1, "cmd": "contacts.import",
                    "args": {"list": "leads", "file": str(csv_file)}})  # fmt: skip
    await asyncio.sleep(0.05)
    await raw.close()
    daemon.store.import_gate.set()
    await asyncio.sleep(0.05)
    assert (await call(daemon.path, "status"))["pid"] == os.getpid()


# ------------------------------------------------------------------ events


async def test_event_stream(daemon: Daemon) -> None:
    raw = await Raw.open(daemon.path)
    await raw.send({"id": 9, "cmd": "events"})
    assert await raw.recv() == {"id": 9, "ok": True, "result": "subscribed"}
    assert daemon.app.bus.subscribers == 1
    daemon.app.bus.publish("campaign.state", campaign="spring", state="running")
    daemon.app.bus.publish("call.ended", number="+12125550100", result="busy")
    first, second = await raw.recv(), await raw.recv()
    assert first["event"] == "campaign.state" and first["state"] == "running"
    assert second["event"] == "call.ended" and second["result"] == "busy"
    await raw.close()
    await eventually(lambda: daemon.app.bus.subscribers == 0)


async def test_event_client_iterator(daemon: Daemon) -> None:
    client = ControlClient(daemon.path)
    stream = client.events()
    seen: list[dict[str, Any]] = []

    async def collect() -> None:
        async for event in stream:
            seen.append(event)
            if len(seen) == 3:
                break

    task = asyncio.ensure_future(collect())
    await eventually(lambda: daemon.app.bus.subscribers == 1)
    for n in range(3):
        daemon.app.bus.publish("tick", n=n)
    await asyncio.wait_for(task, 5)
    await stream.aclose()
    assert [e["n"] for e in seen] == [0, 1, 2]


async def test_slow_event_reader_does_not_block_the_daemon(daemon: Daemon) -> None:
    daemon.app.bus.maxsize = 100
    raw = await Raw.open(daemon.path)  # subscribes, then never reads
    await raw.send({"id": 1, "cmd": "events"})
    await eventually(lambda: daemon.app.bus.subscribers == 1)
    payload = "y" * 4000
    started = time.monotonic()
    for n in range(5000):  # ~20 MB of events: far beyond socket buffers
        daemon.app.bus.publish("flood", n=n, payload=payload)
        if n % 500 == 0:
            await asyncio.sleep(0)
    assert (await asyncio.wait_for(call(daemon.path, "campaign.list"), 2))[0]["name"] == "spring"
    assert time.monotonic() - started < 5
    assert daemon.app.bus.dropped > 0  # the bus dropped, the daemon did not wait
    await raw.close()


async def test_stop_ends_event_streams_and_requests_quietly(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    raw = await Raw.open(daemon.path)
    await raw.send({"id": 1, "cmd": "events"})
    await raw.recv()
    daemon.store.import_gate = asyncio.Event()  # a command still running at stop
    (daemon.path.parent / "a.csv").write_text("phone\n2125550101\n")
    busy = await Raw.open(daemon.path)
    await busy.send({"id": 2, "cmd": "contacts.import",
                     "args": {"list": "x", "file": str(daemon.path.parent / "a.csv")}})  # fmt: skip
    await asyncio.sleep(0.05)
    await asyncio.wait_for(daemon.server.stop(), 5)
    assert await asyncio.wait_for(raw.reader.read(), 5) == b""
    assert await asyncio.wait_for(busy.reader.read(), 5) == b""
    assert daemon.app.bus.subscribers == 0
    assert not daemon.path.exists()
    await asyncio.sleep(0.05)  # let asyncio run the connection tasks' done callbacks
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


# ---------------------------------------------------------------- commands


async def test_status(daemon: Daemon) -> None:
    result = await call(daemon.path, "status")
    assert result["pid"] == os.getpid()
    assert 42 <= result["uptime_s"] < 60
    assert result["store"] == FakeStore.url
    assert result["campaigns"] == {"spring": "stopped"}
    assert result["progress"]["spring"]["total"] == 1
    assert result["progress"]["spring"]["processed"] == 4
    started = datetime.fromisoformat(result["started_at"])
    assert abs((datetime.now(UTC) - started).total_seconds() - 42) < 5


async def test_campaign_list_and_show(daemon: Daemon) -> None:
    rows = await call(daemon.path, "campaign.list")
    assert [(r["name"], r["state"], r["lines"]) for r in rows] == [("spring", "stopped", 10)]
    shown = await call(daemon.path, "campaign.show", name="spring")
    assert shown["list"] == "leads" and shown["progress"]["processed"] == 4
    error = await error_of(daemon.path, "campaign.show", name="autumn")
    assert (error.code, error.message) == ("not_found", "no campaign 'autumn'")


async def test_campaign_lifecycle_and_invalid_states(daemon: Daemon) -> None:
    p = daemon.path
    assert (await error_of(p, "campaign.pause", name="spring")).code == "invalid_state"
    assert (await error_of(p, "campaign.resume", name="spring")).code == "invalid_state"
    assert (await error_of(p, "campaign.stop", name="spring")).code == "invalid_state"
    assert (await call(p, "campaign.start", name="spring"))["state"] == "running"
    assert (await error_of(p, "campaign.start", name="spring")).code == "invalid_state"
    assert (await call(p, "campaign.pause", name="spring"))["state"] == "paused"
    assert (await call(p, "campaign.resume", name="spring"))["state"] == "running"
    assert (await call(p, "campaign.stop", name="spring")) == {
        "campaign": "spring", "state": "stopped"}  # fmt: skip
    for cmd in ("start", "pause", "resume", "stop"):
        assert (await error_of(p, f"campaign.{cmd}", name="ghost")).code == "not_found"


async def test_campaign_load(daemon: Daemon) -> None:
    good = daemon.path.parent / "autumn.yaml"
    good.write_text("name: autumn\nlist: leads\n")
    result = await call(daemon.path, "campaign.load", path=str(good))
    assert result == {"campaign": "autumn", "file": str(good), "state": "stopped"}
    assert "autumn" in daemon.store.campaign_rows
    bad = daemon.path.parent / "bad.yaml"
    bad.write_text("name: bad\nlist: leads\nlines: ten\n")
    error = await error_of(daemon.path, "campaign.load", path=str(bad))
    assert error.code == "bad_request"
    assert error.message == f"{bad}:3: lines: expected an integer, got 'ten'"
    error = await error_of(daemon.path, "campaign.load", path="bad.yaml")
    assert error.code == "bad_request" and "absolute path" in error.message


async def test_contacts_import(daemon: Daemon) -> None:
    d = daemon.path.parent
    source = d / "people.csv"
    source.write_text("name,mobile,home\nann,2125550101,2125550201\nbob,nope,2125550202\n"
                      "cy,212-555-0101,2125550203\ndee,+442079460000,2125550204\n")  # fmt: skip
    result = await call(daemon.path, "contacts.import", list="fresh", file=str(source),
                        phone_columns=["mobile"], region="US",
                        error_file=str(d / "errors.csv"))  # fmt: skip
    # 4 rows: ann ok, bob invalid, cy duplicates ann's number, dee ok
    assert result.pop("warnings", 0) == 0
    assert result == {"list": "fresh", "rows": 4, "imported": 2, "duplicates": 1, "invalid": 1,
                      "error_path": str(d / "errors.csv"), "seconds": 0.01}  # fmt: skip
    sent = daemon.store.last("import_contacts")
    assert sent["csv_path"] == source and isinstance(sent["csv_path"], Path)
    assert sent["phone_columns"] == ["mobile"] and sent["encoding"] == "utf-8"
    lines = (d / "errors.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in lines] == [["3", "invalid"], ["4", "duplicate"]]


async def test_contacts_import_errors(daemon: Daemon) -> None:
    d, p = daemon.path.parent, daemon.path
    error = await error_of(p, "contacts.import", list="x", file=str(d / "missing.csv"))
    assert error.code == "bad_request" and "no such file" in error.message
    (d / "a.csv").write_text("phone\n2125550101\n")
    error = await error_of(p, "contacts.import", list="x", file=str(d / "a.csv"),
                           error_file=str(d / "no" / "such" / "dir.csv"))  # fmt: skip
    assert error.code == "bad_request" and "does not exist" in error.message
    error = await error_of(p, "contacts.import", list="x", file=str(d / "a.csv"),
                           phone_columns=[])  # fmt: skip
    assert error.code == "bad_request" and "phone_columns" in error.message
    error = await error_of(p, "contacts.import", list="x", file=str(d / "a.csv"),
                           phone_columns="phone")  # fmt: skip
    assert error.code == "bad_request" and "list of strings" in error.message
    (d / "latin.csv").write_bytes("phone,name\n2125550101,Jos\xe9\n".encode("latin-1"))
    error = await error_of(p, "contacts.import", list="x", file=str(d / "latin.csv"))
    assert error.code == "bad_request" and "latin.csv" in error.message
    error = await error_of(p, "contacts.import", list="x", file=str(d / "a.csv"),
                           encoding="klingon")  # fmt: skip
    assert error.code == "bad_request" and "klingon" in error.message


async def test_contacts_add(daemon: Daemon) -> None:
    p = daemon.path
    first = await call(p, "contacts.add", list="leads", phones=["2125550199"],
                       attributes={"name": "Ann"}, priority=3)  # fmt: skip
    top = await call(p, "contacts.add", list="leads", phones=["020 7946 0000"], region="GB",
                     top=True)  # fmt: skip
    assert first["list"] == "leads" and first["contact_id"] != top["contact_id"]
    contacts = daemon.store.lists["leads"]
    assert contacts[0]["phones"] == ["+442079460000"]  # top of the list
    assert contacts[-1] == {"phones": ["+12125550199"], "attributes": {"name": "Ann"},
                            "priority": 3}  # fmt: skip
    error = await error_of(p, "contacts.add", list="leads", phones=["12"])
    assert (error.code, error.message) == ("bad_request", "invalid phone number '12'")
    assert (await error_of(p, "contacts.add", list="leads", phones=[])).code == "bad_request"
    error = await error_of(p, "contacts.add", list="leads", phones=["2125550199"],
                           attributes={"age": 40})  # fmt: skip
    assert "attributes" in error.message and "object of strings" in error.message
    error = await error_of(p, "contacts.add", list="leads", phones=["2125550199"], priority=True)
    assert "'priority' must be an integer, got a boolean" in error.message
    error = await error_of(p, "contacts.add", list="leads", phones=["2125550199"], top="yes")
    assert "'top' must be true or false" in error.message


async def test_contacts_export(daemon: Daemon) -> None:
    out = daemon.path.parent / "out.csv"
    result = await call(daemon.path, "contacts.export", list="leads", file=str(out))
    assert result == {"list": "leads", "file": str(out), "rows": 1}
    assert out.read_text().splitlines() == ["phone,priority", "+12125550100,0"]
    error = await error_of(daemon.path, "contacts.export", list="ghosts", file=str(out))
    assert error.code == "not_found"
    error = await error_of(daemon.path, "contacts.export", list="leads",
                           file=str(daemon.path.parent))  # fmt: skip
    assert error.code == "bad_request" and "is a directory" in error.message


async def test_dnc_add_check_remove(daemon: Daemon) -> None:
    p = daemon.path
    before = datetime.now(UTC)
    added = await call(p, "dnc.add", number="(212) 555-0100", expires="30d", source="phone")
    after = datetime.now(UTC)
    assert added["number"] == "+12125550100" and added["source"] == "phone"
    expires = datetime.fromisoformat(added["expires_at"])
    assert before + timedelta(days=30) <= expires <= after + timedelta(days=30)
    checked = await call(p, "dnc.check", number="+12125550100")
    assert checked["listed"] is True and checked["source"] == "phone"
    assert checked["list"] == "internal" and checked["lists"][0]["kind"] == "internal"
    assert (await call(p, "dnc.remove", number="2125550100")) == {
        "number": "2125550100", "list": "internal", "removed": True}  # fmt: skip
    assert (await call(p, "dnc.check", number="2125550100")) == {
        "number": "2125550100", "listed": False, "lists": []}  # fmt: skip
    error = await error_of(p, "dnc.remove", number="2125550100")
    assert error.code == "not_found" and "not on the do-not-contact list" in error.message


async def test_dnc_add_expiry_forms_and_errors(daemon: Daemon) -> None:
    p = daemon.path
    added = await call(p, "dnc.add", number="+12125550111", expires="2099-05-01T12:00+02:00")
    assert datetime.fromisoformat(added["expires_at"]) == datetime(2099, 5, 1, 10, tzinfo=UTC)
    assert (await call(p, "dnc.add", number="+12125550112"))["expires_at"] is None
    for expires, fragment in (("2001-01-01", "in the past"), ("soonish", "expected a duration"),
                              ("0d", "zero")):  # fmt: skip
        error = await error_of(p, "dnc.add", number="+12125550113", expires=expires)
        assert error.code == "bad_request" and fragment in error.message
    error = await error_of(p, "dnc.add", number="555")
    assert error.code == "bad_request" and "invalid phone number" in error.message
    assert (await error_of(p, "dnc.check", number="x")).code == "bad_request"


async def test_dnc_expired_entry_is_not_listed(daemon: Daemon) -> None:
    await call(daemon.path, "dnc.add", number="+12125550120", expires="1s")
    assert (await call(daemon.path, "dnc.check", number="+12125550120"))["listed"] is True
    daemon.store.dnc["+12125550120"]["expires_at"] = datetime.now(UTC) - timedelta(seconds=1)
    assert (await call(daemon.path, "dnc.check", number="+12125550120"))["listed"] is False


async def test_a_campaign_with_a_missing_dnc_list_does_not_start(daemon: Daemon) -> None:
    row = daemon.store.campaign_rows["spring"]
    row["definition"] = {**row["definition"], "dnc_lists": ["internal", "national-2026"],
                         "optout_list": "opt-outs"}  # fmt: skip
    error = await error_of(daemon.path, "campaign.start", name="spring")
    assert error.code == "invalid_state" and "'national-2026'" in error.message
    assert "dnc create" in error.message and row["state"] == "stopped"
    created = await call(daemon.path, "dnc.create", list="national-2026", kind="national")
    assert created["kind"] == "national"
    assert (await call(daemon.path, "campaign.start", name="spring"))["state"] == "running"


async def test_dnc_import(daemon: Daemon) -> None:
    source = daemon.path.parent / "dnc.csv"
    source.write_text("id,number\n1,2125550131\n2,garbage\n3,+12125550133\n")
    result = await call(daemon.path, "dnc.import", file=str(source), column="number",
                        source="state-list")  # fmt: skip
    assert (result["rows"], result["imported"], result["invalid"]) == (3, 2, 1)
    assert set(daemon.store.dnc) == {"+12125550131", "+12125550133"}
    assert daemon.store.dnc["+12125550131"]["source"] == "state-list"
    error = await error_of(daemon.path, "dnc.import", file=str(source.with_name("x.csv")))
    assert error.code == "bad_request"


async def test_reports(daemon: Daemon) -> None:
    p = daemon.path
    summary = await call(p, "report.summary", campaign="spring")
    assert summary["campaign"] == "spring" and summary["attempts"] == 4
    assert summary["by_result"] == {"answered": 2, "busy": 1, "no_answer": 1}
    assert summary["connect_rate"] == 0.5
    rows = await call(p, "report.attempts", campaign="spring", limit=2)
    assert [r["id"] for r in rows] == [1, 2]
    assert len(await call(p, "report.attempts", campaign="spring")) == 4
    assert daemon.store.last("attempts") == {"campaign": "spring", "limit": None}
    assert (await error_of(p, "report.summary", campaign="ghost")).code == "not_found"
    assert (await error_of(p, "report.attempts", campaign="ghost")).code == "not_found"
    error = await error_of(p, "report.attempts", campaign="spring", limit=0)
    assert error.code == "bad_request" and "limit" in error.message
    error = await error_of(p, "report.attempts", campaign="spring", limit="5")
    assert "'limit' must be an integer, got a string" in error.message


async def test_argument_validation_over_the_wire(daemon: Daemon) -> None:
    error = await error_of(daemon.path, "campaign.start", nmae="spring")
    assert error.code == "bad_request"
    assert "unknown argument 'nmae' (did you mean 'name'?)" in error.message
    error = await error_of(daemon.path, "campaign.start")
    assert error.message == "campaign.start: missing argument 'name' (str)"
    error = await error_of(daemon.path, "campaign.start", name=["spring"])
    assert error.message == "campaign.start: argument 'name' must be a string, got a list"
    # an explicit null is the same as leaving an optional argument out
    assert len(await call(daemon.path, "report.attempts", campaign="spring", limit=None)) == 4


# -------------------------------------------------------------- pure parts


def test_registry_covers_the_issue() -> None:
    expected = {
        "status", "campaign.list", "campaign.show", "campaign.load", "campaign.start",
        "campaign.pause", "campaign.resume", "campaign.stop", "contacts.import",
        "contacts.add", "contacts.show", "contacts.export", "dnc.add", "dnc.remove", "dnc.check",
        "dnc.import", "dnc.lists", "dnc.create", "dnc.export", "compliance.report",
        "compliance.amd_samples", "compliance.amd_mark",
        "report.summary", "report.attempts", "report.abandons",
        "agent.login", "agent.logout", "agent.add", "agent.remove", "agent.ready", "agent.not_ready", "agent.hangup",
        "agent.wrapup", "agent.preview_accept", "agent.preview_skip", "agent.status",
        "agent.history", "callback.list", "media.stats",
        "sms.send", "sms.preview", "sms.show", "sms.list", "sms.report", "email.send",
        "email.list", "email.unsubscribe", "dnc.add_address", "dnc.remove_address",
        "dnc.check_address",
    }  # fmt: skip
    assert set(COMMANDS) == expected
    for name, command in COMMANDS.items():
        assert command.name == name
        assert all(a.type in {"str", "int", "bool", "path", "str_list", "str_map"}
                   for a in command.args)  # fmt: skip


def test_validate_drops_nulls_and_keeps_values() -> None:
    async def noop(app: Any, **kw: Any) -> Any:
        return kw

    cmd = Command("x.y", noop, (Arg("a", "str", True), Arg("n", "int"), Arg("p", "path")), "")
    assert cmd.validate({"a": "v", "n": None}) == {"a": "v"}
    assert cmd.validate({"a": "v", "n": 0, "p": "/x"}) == {"a": "v", "n": 0, "p": "/x"}
    with pytest.raises(BadRequest, match="missing argument 'a'"):
        cmd.validate({"a": None})
    with pytest.raises(BadRequest, match="'n' must be an integer, got a number"):
        cmd.validate({"a": "v", "n": 1.5})
    with pytest.raises(BadRequest, match="absolute path"):
        cmd.validate({"a": "v", "p": "rel/x"})


async def test_run_command_without_a_socket() -> None:
    app = make_app(seeded_store())
    assert (await run_command(app, "campaign.start", {"name": "spring"}))["state"] == "running"
    with pytest.raises(BadRequest):
        await run_command(app, "campaign.start", {})


def test_parse_expiry() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("1w2d", now) == now + timedelta(days=9)
    assert parse_expiry("1h30m", now) == now + timedelta(minutes=90)
    assert parse_expiry("45s", now) == now + timedelta(seconds=45)
    assert parse_expiry("2030-02-01", now) == datetime(2030, 2, 1, tzinfo=UTC)
    assert parse_expiry("2030-01-01T01:00-05:00", now) == datetime(2030, 1, 1, 6, tzinfo=UTC)
    for bad in ("", "d", "30x", "30 days", "2029-12-31", "0s", "-5d"):
        with pytest.raises(BadRequest):
            parse_expiry(bad, now)


def test_request_sync_from_plain_code(sock_dir: Path) -> None:
    with pytest.raises(DaemonUnavailable):
        request_sync(sock_dir / "none.sock", "status")


# ------------------------------------------------- with the real store


class StoreCampaigns:
    """Just enough of a CampaignManager over the real store: states only."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def list(self) -> list[dict[str, Any]]:
        return [{"name": c["name"], "state": c["state"], "list": c["list"],
                 "progress": await self.store.progress(c["name"])}
                for c in await self.store.campaigns()]  # fmt: skip

    async def start(self, name: str) -> None:
        await self.store.campaign(name)
        await self.store.set_campaign_state(name, "running")

    def status(self) -> dict[str, Any]:
        return {"calls_in_flight": 0}


@pytest.fixture
async def real(sock_dir: Path) -> AsyncIterator[SimpleNamespace]:
    from engine.store import Store

    store = await Store.open(f"sqlite:///{sock_dir}/var/outdial.db")
    app = App(store=store, campaigns=StoreCampaigns(store), bus=EventBus(),  # type: ignore[arg-type]
              config=SimpleNamespace(), started_at=time.time())  # type: ignore[arg-type]  # fmt: skip
    server = ControlServer(app, sock_dir / "ctl.sock")
    await server.start()
    yield SimpleNamespace(store=store, path=server.path, dir=sock_dir)
    await server.stop()
    await store.close()


async def test_real_store_contacts_import_add_export(real: SimpleNamespace) -> None:
    source = real.dir / "people.csv"
    source.write_text(
        "name,phone,alt\n"
        "ann,(212) 555-0101,\n"
        "bob,not a number,\n"
        "cy,212-555-0101,\n"  # ann's number again
        "dee,+44 20 7946 0000,2125550104\n"
    )
    errors = real.dir / "errors.csv"
    result = await call(real.path, "contacts.import", list="leads", file=str(source),
                        phone_columns=["phone", "alt"], error_file=str(errors))  # fmt: skip
    assert (result["rows"], result["imported"]) == (4, 2)
    assert (result["invalid"], result["duplicates"]) == (1, 1)
    assert result["error_path"] == str(errors)
    with errors.open(newline="") as fh:
        rejected = list(csv.reader(fh))
    flat = [",".join(row) for row in rejected]
    assert any("3" in row and "bob" in row for row in flat)  # line 3 of the file
    assert any("4" in row and "cy" in row for row in flat)
    added = await call(real.path, "contacts.add", list="leads", phones=["2125550199"],
                       attributes={"name": "zed"}, top=True)  # fmt: skip
    assert isinstance(added["contact_id"], int)
    error = await error_of(real.path, "contacts.add", list="leads", phones=["2125550101"])
    assert error.code == "conflict"
    error = await error_of(real.path, "contacts.add", list="leads", phones=["555"])
    assert error.code == "bad_request"
    out = real.dir / "export.csv"
    exported = await call(real.path, "contacts.export", list="leads", file=str(out))
    assert exported["rows"] == 3
    with out.open(newline="") as fh:
        text = fh.read()
    for number in ("+12125550101", "+442079460000", "+12125550104", "+12125550199"):
        assert number in text
    assert text.index("+12125550199") < text.index("+12125550101")  # top=True first


async def test_real_store_import_errors(real: SimpleNamespace) -> None:
    latin = real.dir / "latin.csv"
    latin.write_bytes("phone,name\n2125550101,Jos\xe9\n".encode("latin-1"))
    # the store reports undecodable rows one by one rather than failing the file
    bad = await call(real.path, "contacts.import", list="x", file=str(latin))
    assert (bad["rows"], bad["imported"], bad["invalid"]) == (1, 0, 1)
    ok = await call(real.path, "contacts.import", list="x", file=str(latin),
                    encoding="latin-1")  # fmt: skip
    assert ok["imported"] == 1
    error = await error_of(real.path, "contacts.export", list="nope",
                           file=str(real.dir / "o.csv"))  # fmt: skip
    assert error.code == "not_found"


async def test_real_store_dnc(real: SimpleNamespace) -> None:
    p = real.path
    added = await call(p, "dnc.add", number="212 555 0100", expires="7d", source="complaint")
    assert added["number"] == "+12125550100"
    checked = await call(p, "dnc.check", number="+1 212 555 0100")
    assert checked["listed"] is True and checked["source"] == "complaint"
    assert checked["number"] == "+12125550100"
    expires = datetime.fromisoformat(checked["expires_at"])
    assert timedelta(days=6.9) < expires - datetime.now(UTC) <= timedelta(days=7)
    assert (await call(p, "dnc.remove", number="2125550100"))["removed"] is True
    assert (await call(p, "dnc.check", number="2125550100"))["listed"] is False
    assert (await error_of(p, "dnc.remove", number="2125550100")).code == "not_found"
    assert (await error_of(p, "dnc.add", number="12")).code == "bad_request"
    assert (await error_of(p, "dnc.check", number="2125550100", region="XX")).code == (
        "bad_request"
    )
    source = real.dir / "dnc.csv"
    source.write_text("number\n2125550131\nbogus\n+12125550133\n")
    result = await call(p, "dnc.import", file=str(source), source="state")
    assert (result["rows"], result["imported"], result["invalid"]) == (3, 2, 1)
    assert (await call(p, "dnc.check", number="2125550133"))["source"] == "state"


async def test_real_store_reports(real: SimpleNamespace) -> None:
    from engine.store import AttemptIntent

    store = real.store
    await store.ensure_list("leads")
    for n in range(3):
        await store.add_contact("leads", [f"+1212555{n:04d}"])
    await store.upsert_campaign("spring", "leads", {"lines": 2})
    await store.sync_campaign_contacts("spring")
    t0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    contacts = await store.due_contacts("spring", t0, 10)
    plans = [  # result, ring after (s), answered after, ended after
        ("answered", 2, 5, 15), ("busy", None, None, 1), ("no_answer", 4, None, 30)
    ]  # fmt: skip
    for cand, (result, ring, answer, end) in zip(contacts, plans, strict=True):
        aid = await store.create_attempt(AttemptIntent("spring", cand.contact_id,
                                                       cand.phones[0], "carrier", None, t0))  # fmt: skip
        fields: dict[str, Any] = {"invite_sent_at": t0, "result": result,
                                  "ended_at": t0 + timedelta(seconds=end)}  # fmt: skip
        if ring is not None:
            fields["ringing_at"] = t0 + timedelta(seconds=ring)
        if answer is not None:
            fields["answered_at"] = t0 + timedelta(seconds=answer)
        store.update_attempt(aid, **fields)
    await store.flush()
    summary = await call(real.path, "report.summary", campaign="spring")
    assert summary["campaign"] == "spring" and summary["attempts"] == 3
    assert summary["by_result"] == {"answered": 1, "busy": 1, "no_answer": 1}
    assert summary["connect_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert summary["avg_ring_ms"] == 14500  # rang 2->5 s and 4->30 s: (3 + 26) / 2
    assert summary["avg_pdd_ms"] == 3000  # INVITE to first ring: (2 s + 4 s) / 2
    assert summary["avg_talk_ms"] == 10000  # 15 s - 5 s, one answered call
    rows = await call(real.path, "report.attempts", campaign="spring")
    assert sorted(r["result"] for r in rows) == ["answered", "busy", "no_answer"]
    assert all(r["number"].startswith("+1212555") for r in rows)
    assert len(await call(real.path, "report.attempts", campaign="spring", limit=2)) == 2
    assert (await error_of(real.path, "report.summary", campaign="autumn")).code == "not_found"
    started = await call(real.path, "campaign.start", name="spring")
    assert started == {"campaign": "spring", "state": "running"}
    assert (await error_of(real.path, "campaign.start", name="autumn")).code == "not_found"
    status = await call(real.path, "status")
    assert status["store"].startswith("sqlite:///") and status["progress"]["spring"]["total"] == 3
