"""The daemon config and campaign files: values, and located errors for bad input.

Expected line numbers are found by searching the test's own YAML text for the
offending key, never taken from the parser.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from carriers.sip.outcome import CallResult
from dsp.wav import encode_wav
from engine.campaign_config import (
    CampaignConfig,
    campaign_definition,
    load_campaign,
    load_campaigns,
)
from engine.config import (
    ConfigError,
    DaemonConfig,
    LogConfig,
    format_duration,
    load_config,
    load_trunks,
    parse_duration,
)

ROOT = Path(__file__).resolve().parents[2]

DAEMON = """\
# test daemon
trunks:
  - name: carrier1
    uri: sip:127.0.0.1:5070
    max_calls: 40
  - name: backup
    uri: sip:backup.example;transport=tcp
    password: 0123
store_url: sqlite:///state/out.db
control_socket: state/ctl.sock
sip_host: 0.0.0.0
sip_port: 0
rtp_ports: [30000, 30100]
campaigns_dir: camps
prompts_dir: audio
log:
  level: debug
  format: json
shutdown_grace: 1m30s
"""

CAMPAIGN = """\
# test campaign
name: spring
channel: voice
mode: agentless
contact_list: customers
trunk: carrier1
caller_id: "+15550100"
lines: 5
max_attempts: 4
ring_timeout: 25s
max_duration: 2m
retry:
  busy: 10m
  no_answer: 2h
  carrier_failure: 1m
prompt: welcome.wav
priority: 3
calls_per_second: 2.5
"""


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of `text` containing `needle`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the test text")


def expect_error(call: Callable[[], Any], file: Path | str, line: int | None, field: str) -> str:
    with pytest.raises(ConfigError) as info:
        call()
    where = f"{file}:{line}" if line is not None else str(file)
    message = str(info.value)
    assert message.startswith(f"{where}: {field}: "), message
    assert (info.value.file, info.value.line, info.value.field) == (str(file), line, field)
    return message


def wav_bytes(seconds: float = 0.25, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return encode_wav((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16), rate)


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    """A daemon config in tmp_path/etc with prompts/welcome.wav and campaigns/."""
    etc = tmp_path / "etc"
    (etc / "prompts").mkdir(parents=True)
    (etc / "campaigns").mkdir()
    (etc / "prompts" / "welcome.wav").write_bytes(wav_bytes())
    path = etc / "outdial.yaml"
    path.write_text("trunks:\n  - name: carrier1\n    uri: sip:127.0.0.1:5070\n")
    return load_config(path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- the daemon config ------------------------------------------------------------------


def test_every_daemon_field_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "etc" / "outdial.yaml", DAEMON)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(path)
    assert cfg.path == path
    assert list(cfg.trunks) == ["carrier1", "backup"]
    carrier = cfg.trunks["carrier1"]
    assert (carrier.uri.host, carrier.uri.port, carrier.max_calls) == ("127.0.0.1", 5070, 40)
    assert cfg.trunks["backup"].transport == "TCP"
    assert cfg.trunks["backup"].password == "0123"  # not YAML 1.1's octal 83
    # store and socket stay relative: relative to the working directory at run time
    assert cfg.store_url == "sqlite:///state/out.db"
    assert cfg.control_socket == Path("state/ctl.sock")
    assert (cfg.sip_host, cfg.sip_port, cfg.rtp_ports) == ("0.0.0.0", 0, (30000, 30100))
    # directories are relative to the config file, not to the working directory
    assert cfg.campaigns_dir == tmp_path / "etc" / "camps"
    assert cfg.prompts_dir == tmp_path / "etc" / "audio"
    assert cfg.log == LogConfig(level="debug", format="json")
    assert cfg.shutdown_grace == 90.0


def test_daemon_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "o.yaml", "trunks:\n  - name: t\n    uri: sip:10.0.0.1\n")
    cfg = load_config(path)
    assert cfg.store_url == "sqlite:///var/outdial.db"
    assert cfg.control_socket == Path("var/outdial.sock")
    assert (cfg.sip_host, cfg.sip_port, cfg.rtp_ports) == ("127.0.0.1", 5060, (20000, 30000))
    assert cfg.campaigns_dir == tmp_path / "campaigns"
    assert cfg.prompts_dir == tmp_path / "prompts"
    assert cfg.log == LogConfig("info", "auto")
    assert cfg.shutdown_grace == 30.0
    assert cfg.trunks["t"].max_calls == 100


def test_absolute_directories_and_port_range_text(tmp_path: Path) -> None:
    text = (
        "trunks:\n  - name: t\n    uri: sip:10.0.0.1\n"
        f"campaigns_dir: {tmp_path / 'c'}\nrtp_ports: 40000-40010\nlog:\n  format: CONSOLE\n"
    )
    cfg = load_config(write(tmp_path / "o.yaml", text))
    assert cfg.campaigns_dir == tmp_path / "c"
    assert cfg.rtp_ports == (40000, 40010)
    assert cfg.log.format == "console"


def test_shipped_example_config(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "config" / "outdial.yaml")
    trunk = cfg.trunks["carrier1"]
    assert (trunk.uri.host, trunk.uri.port) == ("127.0.0.1", 5070)
    assert cfg.campaigns_dir == ROOT / "config" / "campaigns"
    assert cfg.prompts_dir == ROOT / "config" / "prompts"
    assert cfg.store_url.startswith("sqlite:///var/")
    assert cfg.control_socket == Path("var/outdial.sock")
    # the example campaign, with its prompt supplied in a scratch prompts dir
    (tmp_path / "welcome.wav").write_bytes(wav_bytes())
    example = load_campaign(
        ROOT / "config" / "campaigns" / "example.yaml", replace(cfg, prompts_dir=tmp_path)
    )
    assert (example.name, example.channel, example.mode) == ("example", "voice", "agentless")
    assert example.trunk == "carrier1"
    assert example.ring_timeout >= 15
    assert example.retry[CallResult.BUSY] == 600
    assert example.retry[CallResult.NO_ANSWER] == 7200
    assert example.prompt == tmp_path / "welcome.wav"


def test_service_unit_runs_the_daemon_as_specified() -> None:
    unit = (ROOT / "config" / "outdial.service").read_text()
    lines = {line.strip() for line in unit.splitlines()}
    for expected in (
        "Type=simple",
        "ExecStart=/opt/outdial/.venv/bin/outdial run --config /etc/outdial/outdial.yaml",
        "WorkingDirectory=/var/lib/outdial",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=60",
        "Restart=on-failure",
        "User=outdial",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/outdial",
        "PrivateTmp=yes",
    ):
        assert expected in lines, expected


def test_schema_documents_every_field() -> None:
    schema = (ROOT / "config" / "schema.md").read_text()
    daemon_fields = [f for f in DaemonConfig.__dataclass_fields__ if f not in ("path", "log")]
    campaign_fields = [f for f in CampaignConfig.__dataclass_fields__ if f != "file"]
    # `hours` is read from calling_hours, restricted_days and contact_location.
    campaign_fields = [f for f in campaign_fields if f != "hours"]
    campaign_fields += ["calling_hours", "restricted_days", "contact_location"]
    for name in [*daemon_fields, *campaign_fields, "log.level", "log.format", "options_interval"]:
        assert f"| `{name}` |" in schema, name
    for result in CallResult:
        assert f"| `{result.value}` |" in schema, result


DAEMON_ERRORS = [
    # (replace this, with this, field, words in the message)
    ("sip_port: 0", "sip_prot: 0", "sip_prot", "did you mean 'sip_port'"),
    ("sip_port: 0", "sip_port: five", "sip_port", "expected an integer"),
    ("sip_port: 0", "sip_port: 70000", "sip_port", "0..65535"),
    ("sip_port: 0", "sip_port: [1]", "sip_port", "got a list"),
    ("    max_calls: 40", "    max_calls: 0", "trunks[0].max_calls", "at least 1"),
    ("    max_calls: 40", "    max_cals: 40", "trunks[0].max_cals", "did you mean 'max_calls'"),
    ("rtp_ports: [30000, 30100]", "rtp_ports: [30001, 30100]", "rtp_ports", "even"),
    ("rtp_ports: [30000, 30100]", "rtp_ports: [30100, 30000]", "rtp_ports", "low < high"),
    ("rtp_ports: [30000, 30100]", "rtp_ports: [80, 30100]", "rtp_ports", "1024"),
    ("rtp_ports: [30000, 30100]", "rtp_ports: [30000, 70000]", "rtp_ports", "65535"),
    ("rtp_ports: [30000, 30100]", "rtp_ports: [30000, 30001]", "rtp_ports", "no RTP/RTCP"),
    ("rtp_ports: [30000, 30100]", "rtp_ports: [30000]", "rtp_ports", "two ports"),
    ("rtp_ports: [30000, 30100]", "rtp_ports: [a, b]", "rtp_ports", "two ports"),
    ("  level: debug", "  level: loud", "log.level", "debug, info, warning"),
    ("  level: debug", "  levle: debug", "log.levle", "did you mean 'level'"),
    ("log:\n  level: debug\n  format: json", "log: info", "log", "expected a mapping"),
    ("store_url: sqlite:///state/out.db", "store_url: mysql://h/db", "store_url", "unsupported"),
    ("store_url: sqlite:///state/out.db", "store_url: sqlite://", "store_url", "in-memory"),
    ("store_url: sqlite:///state/out.db", "store_url: not a url", "store_url", "expected a URL"),
    ("sip_host: 0.0.0.0", "sip_host: not a host!", "sip_host", "IP address or host name"),
    ("shutdown_grace: 1m30s", "shutdown_grace: soon", "shutdown_grace", "like \"90s\""),
    ("shutdown_grace: 1m30s", "shutdown_grace: -5", "shutdown_grace", "at least 0s"),
    ("control_socket: state/ctl.sock", "control_socket: " + "s" * 120, "control_socket", "long"),
    ("prompts_dir: audio", "prompts_dir: audio\nprompts_dir: sounds", "prompts_dir",
     "duplicate field (first on line 15)"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "field", "words"), DAEMON_ERRORS)
def test_daemon_config_errors_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    assert old in DAEMON
    text = DAEMON.replace(old, new, 1)
    path = write(tmp_path / "outdial.yaml", text)
    key = field.rsplit(".", 1)[-1].split("[")[0] + ":"
    line = line_of(text, key)
    if "duplicate" in words:  # the second occurrence is the one reported
        line = line_of(text, "prompts_dir: sounds")
    message = expect_error(lambda: load_config(path), path, line, field)
    assert words in message


def test_missing_trunks_is_located_at_the_top_mapping(tmp_path: Path) -> None:
    text = "# comment\n\nsip_port: 5060\n"
    path = write(tmp_path / "o.yaml", text)
    message = expect_error(lambda: load_config(path), path, line_of(text, "sip_port"), "trunks")
    assert "missing" in message


def test_missing_trunk_uri_names_the_trunk(tmp_path: Path) -> None:
    text = "trunks:\n  - name: a\n    transport: udp\n"
    path = write(tmp_path / "o.yaml", text)
    message = expect_error(lambda: load_config(path), path, 2, "trunks[0].uri")
    assert "missing" in message


def test_duplicate_trunk_names(tmp_path: Path) -> None:
    text = "trunks:\n  - name: a\n    uri: sip:h1\n  - name: a\n    uri: sip:h2\n"
    path = write(tmp_path / "o.yaml", text)
    message = expect_error(lambda: load_config(path), path, 4, "trunks[1].name")
    assert "duplicate trunk 'a'" in message


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    text = "trunks:\n  - name: a\n    uri: sip:h1\nsip_port: 5060\n  bad: [1, 2\n"
    path = write(tmp_path / "o.yaml", text)
    message = expect_error(lambda: load_config(path), path, 5, "-")
    assert "invalid YAML" in message


def test_tab_indentation_is_a_located_yaml_error(tmp_path: Path) -> None:
    text = "trunks:\n  - name: a\n\turi: sip:h1\n"
    path = write(tmp_path / "o.yaml", text)
    assert "invalid YAML" in expect_error(lambda: load_config(path), path, 3, "-")


@pytest.mark.parametrize(("text", "words"), [("", "mapping"), ("- a\n- b\n", "mapping")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path / "o.yaml", text)
    assert words in expect_error(lambda: load_config(path), path, 1, "-")


def test_unreadable_and_undecodable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert "cannot read" in expect_error(lambda: load_config(missing), missing, None, "-")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("trunks: caf\xe9\n".encode("latin-1"))
    assert "UTF-8" in expect_error(lambda: load_config(latin), latin, None, "-")


def test_load_trunks_keeps_its_contract(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.yaml", "trunks:\n  - name: a\n    uri: sip:127.0.0.1\n    max_cals: 3\n"
    )
    message = expect_error(lambda: load_trunks(path), path, 4, "trunks[0].max_cals")
    assert "unknown field (did you mean 'max_calls'?)" in message
    good = write(tmp_path / "good.yaml", "trunks:\n  - name: a\n    uri: sip:127.0.0.1:5070\n")
    assert load_trunks(good)["a"].uri.port == 5070


# --- campaign files ---------------------------------------------------------------------


def test_campaign_values(config: DaemonConfig) -> None:
    path = write(config.campaigns_dir / "spring.yaml", CAMPAIGN)
    c = load_campaign(path, config)
    assert c.name == "spring"
    assert c.file == path
    assert (c.channel, c.mode, c.contact_list, c.trunk) == (
        "voice",
        "agentless",
        "customers",
        "carrier1",
    )
    assert c.caller_id == "+15550100"
    assert (c.lines, c.max_attempts, c.priority, c.calls_per_second) == (5, 4, 3, 2.5)
    assert (c.ring_timeout, c.max_duration) == (25.0, 120.0)
    assert c.retry == {
        CallResult.BUSY: 600.0, CallResult.NO_ANSWER: 7200.0, CallResult.CARRIER_FAILURE: 60.0
    }  # fmt: skip
    assert c.prompt == config.prompts_dir / "welcome.wav"


def test_campaign_defaults(config: DaemonConfig) -> None:
    text = (
        "channel: voice\nmode: agentless\ncontact_list: l\ntrunk: carrier1\nprompt: welcome.wav\n"
    )
    c = load_campaign(write(config.campaigns_dir / "autumn-2.yaml", text), config)
    assert c.name == "autumn-2"  # the file name
    assert c.caller_id is None
    assert (c.lines, c.max_attempts, c.priority, c.calls_per_second) == (1, 3, 0, None)
    assert (c.ring_timeout, c.max_duration, c.retry) == (30.0, 300.0, {})


def test_dnc_lists_default_and_given(config: DaemonConfig) -> None:
    c = load_campaign(write(config.campaigns_dir / "spring.yaml", CAMPAIGN), config)
    assert (c.dnc_lists, c.optout_list) == (("internal",), "opt-outs")
    assert c.checked_dnc_lists == ("internal", "opt-outs")
    text = CAMPAIGN + "dnc_lists: [national-2026, internal]\noptout_list: internal\n"
    c = load_campaign(write(config.campaigns_dir / "spring.yaml", text), config)
    assert (c.dnc_lists, c.checked_dnc_lists) == (
        ("national-2026", "internal"), ("national-2026", "internal"))  # fmt: skip
    assert campaign_definition(c)["dnc_lists"] == ["national-2026", "internal"]


def test_caller_id_forms(config: DaemonConfig) -> None:
    path = config.campaigns_dir / "c.yaml"
    for value, expected in [
        ("+15550100", "+15550100"),  # a plain YAML scalar would be the int 15550100
        ("15550100", "15550100"),
        ('"Acme <sip:+15550100@acme.example>"', "Acme <sip:+15550100@acme.example>"),
        ("sip:acme@acme.example", "sip:acme@acme.example"),
    ]:
        write(path, CAMPAIGN.replace('caller_id: "+15550100"', f"caller_id: {value}"))
        assert load_campaign(path, config).caller_id == expected


def test_ring_timeout_of_exactly_15_seconds_is_allowed(config: DaemonConfig) -> None:
    path = write(
        config.campaigns_dir / "c.yaml", CAMPAIGN.replace("ring_timeout: 25s", "ring_timeout: 15")
    )
    assert load_campaign(path, config).ring_timeout == 15.0


def test_prompt_may_be_absolute_and_any_wav(config: DaemonConfig, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "hello.wav"
    other.parent.mkdir()
    other.write_bytes(wav_bytes(0.1, rate=16000))
    path = write(config.campaigns_dir / "c.yaml", CAMPAIGN.replace("welcome.wav", str(other)))
    assert load_campaign(path, config).prompt == other


CAMPAIGN_ERRORS = [
    # (replace this, with this, field, words in the message)
    ("ring_timeout: 25s", "ring_timout: 25s", "ring_timout", "did you mean 'ring_timeout'"),
    ("lines: 5", "lines: five", "lines", "expected an integer"),
    ("lines: 5", "lines: 0", "lines", "at least 1"),
    ("lines: 5", "lines: 2.5", "lines", "expected an integer"),
    ("lines: 5", "lines: true", "lines", "expected an integer"),
    ("max_attempts: 4", "max_attempts: 0", "max_attempts", "at least 1"),
    ("ring_timeout: 25s", "ring_timeout: 10", "ring_timeout", "47 CFR 64.1200(a)(6)"),
    ("ring_timeout: 25s", "ring_timeout: 14.9s", "ring_timeout", "at least 15s"),
    ("ring_timeout: 25s", "ring_timeout: 30m", "ring_timeout", "at most 5m"),
    ("ring_timeout: 25s", "ring_timeout: [25]", "ring_timeout", "got a list"),
    ("trunk: carrier1", "trunk: carrier2", "trunk", "did you mean 'carrier1'"),
    ("prompt: welcome.wav", "prompt: missing.wav", "prompt", "no such file"),
    ("  busy: 10m", "  busy: 10 minutes", "retry.busy", "'10 minutes'"),
    ("  busy: 10m", "  answered: 10m", "retry.answered", "never retried"),
    ("  busy: 10m", "  buzy: 10m", "retry.buzy", "did you mean 'busy'"),
    ("  busy: 10m", "  busy:", "retry.busy", "missing"),
    ("max_duration: 2m", "max_duration: 0", "max_duration", "at least 1s"),
    ("channel: voice", "channel: fax", "channel", "expected voice"),
    ("mode: agentless", "mode: agentless\ndialing: {ratio: 2}", "dialing", "only agent modes"),
    ("mode: agentless", "mode: robocall", "mode", "expected agentless"),
    ('caller_id: "+15550100"', "caller_id: Acme", "caller_id", "expected a number"),
    ('caller_id: "+15550100"', 'caller_id: "Acme <sip:>"', "caller_id", "Name <sip:user@host>"),
    ("name: spring", "name: spring time", "name", "letters, digits"),
    ("contact_list: customers", "contact_list: ''", "contact_list", "must not be empty"),
    ("contact_list: customers", "contact_list: [a]", "contact_list", "expected a string"),
    ("calls_per_second: 2.5", "calls_per_second: 0", "calls_per_second", "above 0"),
    ("calls_per_second: 2.5", "calls_per_second: fast", "calls_per_second", "expected a number"),
    ("retry:\n  busy: 10m\n  no_answer: 2h\n  carrier_failure: 1m", "retry: 10m", "retry",
     "expected a mapping"),
    ("priority: 3", "priority: 3\nlines: 6", "lines", "duplicate field"),
    ("priority: 3", "priority: 3\ndnc_lists: internal", "dnc_lists", "expected a list"),
    ("priority: 3", "priority: 3\ndnc_lists: [internal, internal]", "dnc_lists", "named twice"),
    ("priority: 3", "priority: 3\ndnc_lists: [national 2026]", "dnc_lists", "letters, digits"),
    ("priority: 3", "priority: 3\noptout_list: 'opt outs'", "optout_list", "letters, digits"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "field", "words"), CAMPAIGN_ERRORS)
def test_campaign_errors_name_file_line_and_field(
    config: DaemonConfig, old: str, new: str, field: str, words: str
) -> None:
    assert old in CAMPAIGN
    text = CAMPAIGN.replace(old, new, 1)
    path = write(config.campaigns_dir / "spring.yaml", text)
    key = field.rsplit(".", 1)[-1] + ":"
    line = line_of(text, new.split("\n")[-1]) if "duplicate" in words else line_of(text, key)
    message = expect_error(lambda: load_campaign(path, config), path, line, field)
    assert words in message


@pytest.mark.parametrize("field", ["channel", "mode", "contact_list", "trunk", "prompt"])
def test_missing_campaign_field_is_located_at_the_top_mapping(
    config: DaemonConfig, field: str
) -> None:
    text = "\n".join(line for line in CAMPAIGN.splitlines() if not line.startswith(f"{field}:"))
    path = write(config.campaigns_dir / "spring.yaml", text + "\n")
    first_field_line = line_of(text, "name:")  # after the comment line
    message = expect_error(lambda: load_campaign(path, config), path, first_field_line, field)
    assert "missing" in message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not a wav file at all", "not a usable WAV"),
        (encode_wav(np.zeros(0, np.int16)), "no audio"),
    ],
)
def test_prompt_must_decode(config: DaemonConfig, content: bytes, words: str) -> None:
    (config.prompts_dir / "bad.wav").write_bytes(content)
    text = CAMPAIGN.replace("welcome.wav", "bad.wav")
    path = write(config.campaigns_dir / "spring.yaml", text)
    message = expect_error(
        lambda: load_campaign(path, config), path, line_of(text, "prompt:"), "prompt"
    )
    assert words in message


def test_campaign_yaml_syntax_error(config: DaemonConfig) -> None:
    text = CAMPAIGN.replace("lines: 5", "lines: 5\n  oops: : :")
    path = write(config.campaigns_dir / "spring.yaml", text)
    message = expect_error(lambda: load_campaign(path, config), path, line_of(text, "oops"), "-")
    assert "invalid YAML" in message


def test_retry_keys_cover_every_result_but_answered(config: DaemonConfig) -> None:
    retryable = [r for r in CallResult if r is not CallResult.ANSWERED]
    rules = "".join(f"  {r.value}: {i + 1}m\n" for i, r in enumerate(retryable))
    text = CAMPAIGN.replace("  busy: 10m\n  no_answer: 2h\n  carrier_failure: 1m\n", rules)
    c = load_campaign(write(config.campaigns_dir / "spring.yaml", text), config)
    assert c.retry == {r: 60.0 * (i + 1) for i, r in enumerate(retryable)}


# --- load_campaigns ---------------------------------------------------------------------


def test_a_broken_file_does_not_stop_the_others(config: DaemonConfig) -> None:
    d = config.campaigns_dir
    write(d / "a.yaml", CAMPAIGN.replace("name: spring", "name: alpha"))
    write(d / "b.yml", CAMPAIGN.replace("name: spring", "name: beta"))
    bad_text = CAMPAIGN.replace("name: spring", "name: gamma").replace(
        "ring_timeout: 25s", "ring_timeout: 10s"
    )
    write(d / "c.yaml", bad_text)
    write(d / "d.yaml", "name: [\n")
    write(d / "notes.txt", "not a campaign")
    write(d / ".hidden.yaml", "garbage: [")
    campaigns, errors = load_campaigns(config)
    assert sorted(campaigns) == ["alpha", "beta"]
    assert campaigns["beta"].file == d / "b.yml"
    assert [(e.file, e.field) for e in errors] == [
        (str(d / "c.yaml"), "ring_timeout"),
        (str(d / "d.yaml"), "-"),
    ]
    assert errors[0].line == line_of(bad_text, "ring_timeout")


def test_duplicate_campaign_name_is_an_error_for_the_second_file(config: DaemonConfig) -> None:
    d = config.campaigns_dir
    write(d / "first.yaml", CAMPAIGN)
    second_text = "# again\n" + CAMPAIGN.replace("lines: 5", "lines: 7")
    second = write(d / "second.yaml", second_text)
    # a file without `name:` takes its file name, which may collide too
    unnamed = CAMPAIGN.replace("name: spring\n", "")
    write(d / "spring.yml", unnamed)
    campaigns, errors = load_campaigns(config)
    assert list(campaigns) == ["spring"]
    assert campaigns["spring"].lines == 5  # the first file wins
    assert len(errors) == 2
    assert str(errors[0]).startswith(
        f"{second}:{line_of(second_text, 'name:')}: name: duplicate campaign"
    )
    assert str(d / "first.yaml") in str(errors[0])
    assert errors[1].file == str(d / "spring.yml")
    assert errors[1].line == line_of(unnamed, "channel:")  # the mapping's first line


def test_missing_campaigns_dir_is_reported(config: DaemonConfig, tmp_path: Path) -> None:
    campaigns, errors = load_campaigns(replace(config, campaigns_dir=tmp_path / "none"))
    assert campaigns == {}
    assert [e.field for e in errors] == ["campaigns_dir"]


def test_campaign_definition_is_json_and_complete(config: DaemonConfig) -> None:
    c = load_campaign(write(config.campaigns_dir / "spring.yaml", CAMPAIGN), config)
    definition = json.loads(json.dumps(campaign_definition(c)))
    assert definition["retry"] == {"busy": 600.0, "no_answer": 7200.0, "carrier_failure": 60.0}
    assert definition["prompt"] == str(config.prompts_dir / "welcome.wav")
    assert definition["ring_timeout"] == 25.0
    assert set(definition) == set(CampaignConfig.__dataclass_fields__)


# --- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("1d", 86400),
        ("45", 45), ("0.5", 0.5), ("1.5h", 5400), ("1d2h3m4s", 93784), (" 2H ", 7200),
        ("1h 30m", 5400), ("0s", 0),
    ],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10 minutes", "", "m", "1:30", "5x", "1m1h", "2hh", "1,5h", "h1"])
def test_parse_duration_rejects(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (90, "1m30s"),
        (600, "10m"),
        (5400, "1h30m"),
        (86400, "1d"),
        (90061, "1d1h1m1s"),
        (1.5, "1.5s"),
        (0.25, "0.25s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_duration_rejects_negative_and_infinite() -> None:
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            format_duration(bad)


@given(st.integers(min_value=0, max_value=10**10))
def test_duration_round_trip(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-9)


# --- agents and agent campaigns ---------------------------------------------------------

AGENTS = """\
agents:
  - id: ana
    name: Ana Silva
    password: s3cret
    campaigns: [sales]
  - id: bo
    uri: sip:bo@10.0.0.7:5062
registrar:
  realm: acme
  min_expires: 120
"""


def test_agents_and_registrar_parse(tmp_path: Path) -> None:
    path = write(tmp_path / "outdial.yaml", DAEMON + AGENTS)
    cfg = load_config(path)
    ana, bo = cfg.agents["ana"], cfg.agents["bo"]
    assert (ana.name, ana.username, ana.password, ana.campaigns) == (
        "Ana Silva", "ana", "s3cret", ("sales",))  # fmt: skip
    assert bo.uri is not None and (bo.uri.host, bo.uri.port) == ("10.0.0.7", 5062)
    assert bo.password is None and bo.campaigns == ()
    assert (cfg.registrar.realm, cfg.registrar.min_expires, cfg.registrar.max_expires) == (
        "acme", 120, 3600)  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("    password: s3cret\n", "", "agents[0].password", "needs a password"),
        ("  - id: bo\n", "  - id: ana\n", "agents[1].id", "duplicate agent 'ana'"),
        ("  - id: bo\n", "  - id: bo\n    username: ana\n", "agents[1].username", "already used"),
        ("  - id: ana\n", "  - id: 'a b'\n", "agents[0].id", "letters, digits"),
        ("    uri: sip:bo@10.0.0.7:5062", "    uri: tel:+1555", "agents[1].uri", "sip: URI"),
        ("    campaigns: [sales]", "    campaigns: sales", "agents[0].campaigns", "a list"),
        ("  min_expires: 120", "  min_expires: 120\n  max_expires: 60", "registrar.max_expires",
         "at least min_expires"),
    ],
)  # fmt: skip
def test_agent_config_errors_are_located(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    assert old in AGENTS
    text = DAEMON + AGENTS.replace(old, new, 1)
    path = write(tmp_path / "outdial.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == field, str(info.value)
    assert words in str(info.value)
    assert info.value.line is not None and info.value.line > DAEMON.count("\n")


AGENT_CAMPAIGN = (
    CAMPAIGN.replace("mode: agentless", "mode: predictive")
    + """\
safe_harbor: welcome.wav
dialing:
  abandon_target: 2.5%
  jurisdiction: uk
  connect_wait: 1.2s
  wrapup_timeout: 45s
  wrapup_codes:
    - code: sale
      description: Sold
    - code: later
      retry: 1d
  default_wrapup: sale
"""
)


def test_agent_campaign_parses_dialing_and_wrapup(config: DaemonConfig) -> None:
    c = load_campaign(write(config.campaigns_dir / "spring.yaml", AGENT_CAMPAIGN), config)
    d = c.dialing
    assert c.with_agents and c.safe_harbor is not None
    assert (d.abandon_target, d.jurisdiction, d.connect_wait, d.wrapup_timeout) == (
        0.025, "uk", 1.2, 45.0)  # fmt: skip
    assert d.abandon_window == 86400.0  # Ofcom: 24 h
    sale, later = d.wrapup_codes
    assert (sale.final, sale.retry, later.final, later.retry) == (True, None, False, 86400.0)
    assert d.code("later") is later and d.code("nope") is None
    assert campaign_definition(c)["dialing"]["wrapup_codes"][1]["retry"] == 86400.0


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("  abandon_target: 2.5%", "  abandon_target: 5%", "dialing.abandon_target",
         "above the legal limit of 3% for UK"),
        ("  abandon_target: 2.5%", "  abandon_target: lots", "dialing.abandon_target",
         "a percentage"),
        ("  connect_wait: 1.2s", "  connect_wait: 2s", "dialing.connect_wait",
         "64.1200(a)(7)"),
        ("  jurisdiction: uk", "  jurisdiction: fr", "dialing.jurisdiction", "us"),
        ("  default_wrapup: sale", "  default_wrapup: gone", "dialing.default_wrapup",
         "no wrap-up code 'gone'"),
        ("      retry: 1d", "      retry: 1d\n      final: true", "dialing.wrapup_codes[1].retry",
         "never retried"),
        ("    - code: later", "    - code: sale", "dialing.wrapup_codes[1].code", "duplicate"),
        ("safe_harbor: welcome.wav\n", "", "safe_harbor", "no agent is free"),
    ],
)  # fmt: skip
def test_agent_campaign_errors_are_located(
    config: DaemonConfig, old: str, new: str, field: str, words: str
) -> None:
    assert old in AGENT_CAMPAIGN
    text = AGENT_CAMPAIGN.replace(old, new, 1)
    path = write(config.campaigns_dir / "spring.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_campaign(path, config)
    assert info.value.field == field, str(info.value)
    assert words in str(info.value)
