"""`outdial ctl`: argument parsing, printing and exit codes, against a live
ControlServer running in a background thread (its own event loop)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.app import App
from engine.control import ControlServer
from engine.ctl import add_ctl_parser, format_csv, format_mapping, format_table, run_ctl
from engine.store import Store
from tests.unit.test_control import FakeStore, StoreCampaigns, make_app, seeded_store

ROOT = Path(__file__).resolve().parents[2]


class ThreadedDaemon:
    """A ControlServer on its own loop in a thread, as `outdial run` would be."""

    def __init__(self, path: Path) -> None:
        self.store: FakeStore = seeded_store()
        self.app: App = make_app(self.store)
        self.path = path
        self.server = ControlServer(self.app, path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> None:
        self.thread.start()
        self.run(self.server.start())

    def publish(self, kind: str, **fields: Any) -> None:
        self.loop.call_soon_threadsafe(lambda: self.app.bus.publish(kind, **fields))

    def wait_subscribers(self, n: int) -> None:
        deadline = time.monotonic() + 10
        while self.app.bus.subscribers != n:
            assert time.monotonic() < deadline, "subscriber did not arrive"
            time.sleep(0.01)

    def stop(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 107 bytes of a Unix socket path.
    path = Path(tempfile.mkdtemp(prefix="odctl", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon(sock_dir: Path) -> Iterator[ThreadedDaemon]:
    d = ThreadedDaemon(sock_dir / "ctl.sock")
    d.start()
    yield d
    if d.thread.is_alive():
        d.stop()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="outdial")
    sub = parser.add_subparsers(dest="command", required=True)
    add_ctl_parser(sub)
    return parser.parse_args(argv)


def ctl(capsys: pytest.CaptureFixture[str], path: Path | None, *argv: str) -> tuple[int, str, str]:
    head = ["ctl", "--socket", str(path)] if path is not None else ["ctl"]
    code = run_ctl(parse([*head, *argv]))
    out, err = capsys.readouterr()
    return code, out, err


def columns_of(header: str) -> list[tuple[str, int]]:
    """(name, start offset) of each header word."""
    out, i = [], 0
    for word in header.split():
        i = header.index(word, i)
        out.append((word, i))
        i += len(word)
    return out


# ----------------------------------------------------------------- status


def test_status_readable(daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = ctl(capsys, daemon.path, "status")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert any(line.split() == ["pid:", str(os.getpid())] for line in lines)
    assert any(line.split() == ["store:", FakeStore.url] for line in lines)
    i = lines.index("campaigns:")
    assert lines[i + 1].split() == ["spring:", "stopped"] and lines[i + 1].startswith("  ")
    assert "progress:" in lines
    # keys of one block are aligned: every value starts in the same column
    top = [line for line in lines if not line.startswith(" ") and not line.endswith(":")]
    starts = {len(line) - len(line.split(None, 1)[1]) for line in top}
    assert len(starts) == 1


def test_json_flag(daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = ctl(capsys, daemon.path, "--json", "status")
    assert code == 0
    assert json.loads(out)["campaigns"] == {"spring": "stopped"}


def test_no_daemon(sock_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = sock_dir / "gone.sock"
    code, out, err = ctl(capsys, path, "status")
    assert (code, out) == (1, "")
    assert err == f"outdial: error: no outdial daemon at {path} (is `outdial run` running?)\n"


def test_default_socket_path_is_relative_to_cwd(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(sock_dir)
    code, _, err = ctl(capsys, None, "status")
    assert code == 1
    assert "no outdial daemon at var/outdial.sock" in err
    (sock_dir / "var").mkdir()
    d = ThreadedDaemon(sock_dir / "var" / "outdial.sock")
    d.start()
    try:
        assert ctl(capsys, None, "status")[0] == 0
    finally:
        d.stop()


CONFIG = """trunks:
  - name: carrier
    uri: sip:127.0.0.1:5070
control_socket: {socket}
"""


def test_socket_from_config(
    daemon: ThreadedDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = daemon.path.parent
    cfg = d / "outdial.yaml"
    cfg.write_text(CONFIG.format(socket=daemon.path))
    code, out, _ = ctl(capsys, None, "--config", str(cfg), "campaign", "list")
    assert code == 0 and "spring" in out
    # a relative control_socket is relative to the working directory, as for the daemon
    cfg.write_text(CONFIG.format(socket=daemon.path.name))
    monkeypatch.chdir(d)
    assert ctl(capsys, None, "--config", "outdial.yaml", "status")[0] == 0
    cfg.write_text("trunks: []\ncontrol_socket: x.sock\n")
    code, out, err = ctl(capsys, None, "--config", str(cfg), "status")
    assert code == 1 and out == ""
    assert err.startswith(f"outdial: error: {cfg}:1: trunks:")


def test_socket_and_config_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["ctl", "--socket", "a", "--config", "b", "status"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# -------------------------------------------------------------- campaigns


def test_campaign_list_table(daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.store.campaign_rows["a-much-longer-campaign-name"] = {
        "name": "a-much-longer-campaign-name", "list": "leads", "state": "running",
        "definition": {"lines": 250},
    }  # fmt: skip
    code, out, _ = ctl(capsys, daemon.path, "campaign", "list")
    assert code == 0
    header, *rows = out.splitlines()
    cols = dict(columns_of(header))
    assert list(cols)[:5] == ["NAME", "STATE", "LIST", "TRUNK", "LINES"]
    assert len(rows) == 2
    for row in rows:
        # text columns start under their header...
        for name in ("NAME", "STATE", "LIST", "TRUNK"):
            assert row[cols[name] - 1 : cols[name]] in ("", " ")
            assert row[cols[name]] != " "
        # ...numbers end under the end of theirs
        end = cols["LINES"] + len("LINES")
        assert row[end - 1] != " " and row[end : end + 1] in ("", " ")
    values = {r.split()[0]: r.split() for r in rows}
    assert values["spring"][:5] == ["spring", "stopped", "leads", "carrier", "10"]
    assert values["a-much-longer-campaign-name"][4] == "250"


def test_campaign_show(daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = ctl(capsys, daemon.path, "campaign", "show", "spring")
    assert code == 0
    assert "progress:" in out.splitlines()
    assert any(line.split() == ["processed:", "4"] for line in out.splitlines())


def test_campaign_actions_and_errors(
    daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    p = daemon.path
    assert ctl(capsys, p, "campaign", "start", "spring") == (0, "campaign spring: running\n", "")
    assert ctl(capsys, p, "campaign", "pause", "spring") == (0, "campaign spring: paused\n", "")
    assert ctl(capsys, p, "campaign", "resume", "spring") == (0, "campaign spring: running\n", "")
    assert ctl(capsys, p, "campaign", "stop", "spring") == (0, "campaign spring: stopped\n", "")
    code, out, err = ctl(capsys, p, "campaign", "pause", "spring")
    assert (code, out) == (1, "")
    assert err == "outdial: error: campaign 'spring' is stopped (invalid_state)\n"
    code, _, err = ctl(capsys, p, "campaign", "show", "winter")
    assert (code, err) == (1, "outdial: error: no campaign 'winter' (not_found)\n")


def test_campaign_load_sends_an_absolute_path(
    daemon: ThreadedDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = daemon.path.parent
    (d / "camp").mkdir()
    (d / "camp" / "autumn.yaml").write_text("name: autumn\n")
    monkeypatch.chdir(d / "camp")
    code, out, _ = ctl(capsys, daemon.path, "--json", "campaign", "load", "autumn.yaml")
    assert code == 0
    assert json.loads(out)["file"] == str(d / "camp" / "autumn.yaml")
    (d / "camp" / "bad.yaml").write_text("name: bad\nx: 1\nlines: ten\n")
    code, _, err = ctl(capsys, daemon.path, "campaign", "load", "bad.yaml")
    assert code == 1
    assert err == (f"outdial: error: {d}/camp/bad.yaml:3: lines: expected an integer, "
                   "got 'ten' (bad_request)\n")  # fmt: skip


# --------------------------------------------------------------- contacts


def test_contacts_import(
    daemon: ThreadedDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = daemon.path.parent
    monkeypatch.chdir(d)
    Path("people.csv").write_text("mobile,home\n2125550101,2125550201\nbad,2125550202\n"
                                  "2125550101,2125550203\n2125550104,2125550204\n")  # fmt: skip
    code, out, err = ctl(capsys, daemon.path, "contacts", "import", "fresh", "people.csv",
                         "--phone-column", "mobile", "--phone-column", "home",
                         "--region", "US", "--errors", "rejected.csv")  # fmt: skip
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "imported 2 of 4 rows into fresh (1 duplicates, 1 invalid) in 0.0 s",
        f"rejected rows: {d}/rejected.csv",
    ]
    sent = daemon.store.last("import_contacts")
    assert sent["csv_path"] == d / "people.csv"
    assert sent["phone_columns"] == ["mobile", "home"]
    assert sent["error_path"] == d / "rejected.csv"
    assert len((d / "rejected.csv").read_text().splitlines()) == 2


def test_contacts_import_missing_file(
    daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = daemon.path.parent / "nope.csv"
    code, _, err = ctl(capsys, daemon.path, "contacts", "import", "x", str(missing))
    assert code == 1
    assert err == f"outdial: error: file: no such file: {missing} (bad_request)\n"


def test_contacts_add(daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = ctl(capsys, daemon.path, "contacts", "add", "leads", "2125550150",
                       "+442079460001", "--attr", "name=Ann Lee", "--attr", "note=a=b",
                       "--priority", "5", "--top")  # fmt: skip
    assert code == 0 and out.startswith("added contact ") and out.endswith(" to leads\n")
    first = daemon.store.lists["leads"][0]
    assert first == {"phones": ["+12125550150", "+442079460001"],
                     "attributes": {"name": "Ann Lee", "note": "a=b"}, "priority": 5}  # fmt: skip
    code, _, err = ctl(capsys, daemon.path, "contacts", "add", "leads", "123")
    assert (code, err) == (1, "outdial: error: invalid phone number '123' (bad_request)\n")


@pytest.mark.parametrize("bad", [["--attr", "nokey"], ["--attr", "=v"], ["--priority", "high"]])
def test_contacts_add_bad_options(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["ctl", "contacts", "add", "leads", "2125550150", *bad])
    assert info.value.code == 2
    assert "expected" in capsys.readouterr().err


def test_contacts_export(
    daemon: ThreadedDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(daemon.path.parent)
    code, out, _ = ctl(capsys, daemon.path, "contacts", "export", "leads", "out.csv")
    assert code == 0
    assert out == f"wrote 1 contacts of leads to {daemon.path.parent}/out.csv\n"
    assert (daemon.path.parent / "out.csv").read_text().splitlines()[1] == "+12125550100,0"


# -------------------------------------------------------------------- dnc


def test_dnc_commands(daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    p = daemon.path
    code, out, _ = ctl(capsys, p, "dnc", "add", "212-555-0100", "--source", "complaint")
    assert (code, out) == (0, "+12125550100 is on the do-not-contact list (source complaint)\n")
    code, out, _ = ctl(capsys, p, "dnc", "add", "+12125550101", "--expires", "2099-01-01")
    assert out == ("+12125550101 is on the do-not-contact list "
                   "(source manual, until 2099-01-01T00:00:00+00:00)\n")  # fmt: skip
    code, out, _ = ctl(capsys, p, "dnc", "check", "2125550100")
    assert out.startswith(
        "+12125550100: on do-not-contact list internal (internal, source complaint, since "
    )
    code, out, _ = ctl(capsys, p, "dnc", "remove", "2125550100")
    assert out == "2125550100 removed from the do-not-contact list\n"
    code, out, _ = ctl(capsys, p, "dnc", "check", "2125550100")
    assert (code, out) == (0, "2125550100: not on any do-not-contact list\n")
    code, _, err = ctl(capsys, p, "dnc", "remove", "2125550100")
    assert code == 1 and err.endswith("is not on the do-not-contact list (not_found)\n")
    code, _, err = ctl(capsys, p, "dnc", "add", "+12125550102", "--expires", "tomorrow")
    assert code == 1 and "expires: expected a duration" in err and "(bad_request)" in err


def test_dnc_import(
    daemon: ThreadedDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(daemon.path.parent)
    Path("dnc.csv").write_text("who,tel\nann,2125550161\nbob,junk\n")
    code, out, _ = ctl(capsys, daemon.path, "dnc", "import", "dnc.csv", "--column", "tel")
    assert code == 0
    assert out == "imported 1 of 2 rows into internal (0 duplicates, 1 invalid) in 0.0 s\n"
    assert daemon.store.last("dnc_import")["column"] == "tel"
    assert set(daemon.store.dnc) == {"+12125550161"}


# ---------------------------------------------------------------- reports


def test_report_summary_formats(daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    p = daemon.path
    code, out, _ = ctl(capsys, p, "report", "summary", "spring")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["campaign:", "spring"]
    assert any(line.split() == ["attempts:", "4"] for line in lines)
    i = lines.index("by_result:")
    assert {tuple(line.split()) for line in lines[i + 1 : i + 4]} == {
        ("answered:", "2"), ("busy:", "1"), ("no_answer:", "1")}  # fmt: skip
    code, out, _ = ctl(capsys, p, "report", "summary", "spring", "--format", "json")
    data = json.loads(out)
    assert data["by_result"] == {"answered": 2, "busy": 1, "no_answer": 1}
    assert data["connect_rate"] == 0.5
    code, out, _ = ctl(capsys, p, "report", "summary", "spring", "--format", "csv")
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["campaign"] == "spring" and row["by_result.busy"] == "1"
    assert float(row["connect_rate"]) == 0.5
    code, _, err = ctl(capsys, p, "report", "summary", "winter")
    assert (code, err) == (1, "outdial: error: no campaign 'winter' (not_found)\n")


def test_report_attempts_formats(
    daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    p = daemon.path
    expected = daemon.store.attempt_rows["spring"]
    code, out, _ = ctl(capsys, p, "report", "attempts", "spring")
    header, *rows = out.splitlines()
    assert code == 0 and len(rows) == 4
    cols = [c for c, _ in columns_of(header)]
    assert cols[:3] == ["ID", "CONTACT_ID", "NUMBER"] and "RESULT" in cols
    assert [r.split()[cols.index("RESULT")] for r in rows] == [e["result"] for e in expected]
    code, out, _ = ctl(capsys, p, "report", "attempts", "spring", "--format", "csv", "--limit", "2")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert parsed == [{k: str(v) for k, v in e.items()} for e in expected[:2]]
    assert daemon.store.last("attempts") == {"campaign": "spring", "limit": 2}
    code, out, _ = ctl(capsys, p, "report", "attempts", "spring", "--format", "json")
    assert json.loads(out) == expected
    with pytest.raises(SystemExit):
        parse(["ctl", "report", "attempts", "spring", "--limit", "0"])
    with pytest.raises(SystemExit):
        parse(["ctl", "report", "attempts", "spring", "--format", "xml"])


def test_empty_attempts_table(daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    daemon.store.attempt_rows["spring"] = []
    assert ctl(capsys, daemon.path, "report", "attempts", "spring") == (0, "(none)\n", "")


# ----------------------------------------------------------------- events


def test_events_until_the_daemon_goes(
    daemon: ThreadedDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(run_ctl(parse(["ctl", "--socket", str(daemon.path),
                                                    "events"]))))  # fmt: skip
    worker.start()
    daemon.wait_subscribers(1)
    daemon.publish("call.ended", number="+12125550100", result="busy")
    time.sleep(0.2)
    daemon.stop()
    worker.join(10)
    out, err = capsys.readouterr()
    assert result == [1]
    event = json.loads(out.splitlines()[0])
    assert (event["event"], event["result"]) == ("call.ended", "busy")
    assert err == "outdial: error: the daemon closed the event stream\n"


def test_events_stops_cleanly_on_ctrl_c(daemon: ThreadedDaemon) -> None:
    script = (
        "import argparse, sys\n"
        "from engine.ctl import add_ctl_parser, run_ctl\n"
        "p = argparse.ArgumentParser(prog='outdial')\n"
        "add_ctl_parser(p.add_subparsers(dest='command'))\n"
        "sys.exit(run_ctl(p.parse_args(sys.argv[1:])))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "ctl", "--socket", str(daemon.path), "events"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        daemon.wait_subscribers(1)
        daemon.publish("campaign.state", campaign="spring", state="running")
        daemon.publish("campaign.progress", campaign="spring", processed=3)
        assert proc.stdout is not None
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [e["event"] for e in lines] == ["campaign.state", "campaign.progress"]
    assert lines[1]["processed"] == 3
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    daemon.wait_subscribers(0)


# --------------------------------------------------------------- printing


def test_format_table_alignment_and_cells() -> None:
    rows = [{"name": "a", "n": 5, "ok": True, "x": None},
            {"name": "bbbbbb", "n": 12345, "ok": False, "x": [1, 2]}]  # fmt: skip
    assert format_table(rows, ["name", "n", "ok", "x", "missing"]).splitlines() == [
        "NAME        N  OK   X",
        "a           5  yes  -",
        "bbbbbb  12345  no   1, 2",
    ]
    assert format_table([], ["a"]) == "(none)"
    # a column with no value yet is text, left-aligned
    assert format_table([{"result": None, "n": 1}], ["result", "n"]).splitlines() == [
        "RESULT  N",
        "-       1",
    ]


def test_format_mapping_nested() -> None:
    text = format_mapping({"a": 1, "long_key": {"x": 0.25, "y": "z"}, "rows": [{"k": 1}]})
    assert text.splitlines() == [
        "a:        1",
        "long_key:",
        "  x: 0.25",
        "  y: z",
        "rows:",
        "  K",
        "  1",
    ]


def test_format_csv_flattens_and_quotes() -> None:
    text = format_csv([{"a": "x,y", "b": {"c": 1}, "d": None}])
    assert list(csv.reader(io.StringIO(text))) == [["a", "b.c", "d"], ["x,y", "1", ""]]


# -------------------------------------------------------- with the real store


def test_real_store_import_and_empty_report(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = ThreadedDaemon(sock_dir / "ctl.sock")
    d.thread.start()
    store = d.run(Store.open(f"sqlite:///{sock_dir}/outdial.db"))
    d.app.store, d.app.campaigns = store, StoreCampaigns(store)  # type: ignore[assignment]
    d.run(d.server.start())
    try:
        monkeypatch.chdir(sock_dir)
        Path("in.csv").write_text("phone,alt\n2125550101,2125550201\n2125550102,oops\nbad,\n")
        code, out, err = ctl(capsys, d.path, "contacts", "import", "leads", "in.csv",
                             "--phone-column", "phone", "--phone-column", "alt",
                             "--errors", "rej.csv")  # fmt: skip
        assert (code, err) == (0, "")
        first, second = out.splitlines()
        assert first.startswith("imported 2 of 3 rows into leads (0 duplicates, 1 invalid, "
                                "1 with a number dropped) in ")  # fmt: skip
        assert second == f"rejected rows: {sock_dir}/rej.csv"
        d.run(store.upsert_campaign("spring", "leads", {"lines": 1}))
        d.run(store.sync_campaign_contacts("spring"))
        code, out, _ = ctl(capsys, d.path, "report", "summary", "spring")
        lines = {tuple(line.split()) for line in out.splitlines()}
        assert ("total:", "2") in lines and ("pending:", "2") in lines
        assert ("avg_ring_ms:", "-") in lines  # no data yet: printed as a dash
        code, out, _ = ctl(capsys, d.path, "report", "attempts", "spring", "--format", "csv")
        assert (code, out) == (0, "")
    finally:
        d.run(d.server.stop())
        d.run(store.close())
        d.loop.call_soon_threadsafe(d.loop.stop)
        d.thread.join(10)
