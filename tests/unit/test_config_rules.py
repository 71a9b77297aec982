"""Campaign files with rules carried out by the dial loop: `sort:` (what the
store keeps), `priority`, `set` and `move_to` (its target checked against the
other campaigns), and the located errors for what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.campaign_config import campaign_definition, load_campaign, load_campaigns
from engine.config import ConfigError, DaemonConfig, load_config
from engine.store.dialorder import spec_of
from tests.unit.test_config import line_of, wav_bytes, write

BASE = """\
name: {name}
channel: voice
mode: agentless
contact_list: {list}
trunk: carrier1
prompt: welcome.wav
"""


@pytest.fixture
def config(tmp_path: Path) -> DaemonConfig:
    etc = tmp_path / "etc"
    (etc / "prompts").mkdir(parents=True)
    (etc / "campaigns").mkdir()
    (etc / "prompts" / "welcome.wav").write_bytes(wav_bytes())
    path = etc / "outdial.yaml"
    path.write_text("trunks:\n  - name: carrier1\n    uri: sip:127.0.0.1:5070\n")
    return load_config(path)


def campaign(config: DaemonConfig, name: str, extra: str = "", lst: str = "l1") -> Path:
    text = BASE.format(name=name, list=lst) + extra
    return write(config.campaigns_dir / f"{name}.yaml", text)


ACTIONS = """\
sort: [{column: balance, order: desc}, last_attempt_at]
rules:
  - when: before_call
    if: "segment == 'vip'"
    then: {priority: 10, set: {tier: gold, old: null}}
  - when: after_call
    if: "result == 'busy'"
    then: {move_to: later}
"""


def test_sort_priority_set_and_move_to_load(config: DaemonConfig) -> None:
    campaign(config, "first", ACTIONS)
    campaign(config, "later")
    campaigns, errors = load_campaigns(config)
    assert errors == []
    c = campaigns["first"]
    assert c.sort is not None and [(k.column, k.descending) for k in c.sort.keys] == [
        ("balance", True), ("last_attempt_at", False),
    ]  # fmt: skip
    assert c.rules.move_targets == {"later"}
    definition = campaign_definition(c)
    assert spec_of(definition) == (("balance", True), ("last_attempt_at", False))
    assert spec_of(campaign_definition(campaigns["later"])) == ()


def test_sort_by_attempts_today_is_refused_at_its_key(config: DaemonConfig) -> None:
    extra = "sort:\n  - balance\n  - {column: attempts_today}\n"
    path = campaign(config, "c", extra)
    with pytest.raises(ConfigError) as info:
        load_campaign(path, config)
    text = path.read_text()
    assert (info.value.line, info.value.field) == (line_of(text, "attempts_today"), "sort[1]")
    assert "last_attempt_at" in str(info.value)


@pytest.mark.parametrize(
    ("target", "lst", "message"),
    [
        ("latr", "l1", "no campaign 'latr' (did you mean 'later'?)"),
        ("first", "l1", "cannot move to its own campaign"),
        ("later", "l2", "'later' dials list 'l2', this campaign 'l1'"),
    ],
)
def test_move_to_targets_are_checked_at_the_rule(
    config: DaemonConfig, target: str, lst: str, message: str
) -> None:
    path = campaign(config, "first", ACTIONS.replace("move_to: later", f"move_to: {target}"))
    campaign(config, "later", lst=lst)
    campaigns, errors = load_campaigns(config)
    assert sorted(campaigns) == ["later"]
    (error,) = errors
    assert (error.file, error.line, error.field) == (
        str(path), line_of(path.read_text(), "when: after_call"), "rules[1].then.move_to",
    )  # fmt: skip
    assert message in str(error), error


def test_a_rejected_campaign_is_no_move_target(config: DaemonConfig) -> None:
    campaign(config, "first", ACTIONS)
    campaign(config, "later", "ring_timeout: 5s\n")  # refused: under 15 s
    campaigns, errors = load_campaigns(config)
    assert campaigns == {}
    assert sorted(e.field for e in errors) == ["ring_timeout", "rules[1].then.move_to"]
