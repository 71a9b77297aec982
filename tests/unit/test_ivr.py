"""IVR flows: load-time validation (located errors) and the sans-IO interpreter.

Expected line numbers are found by searching the test's own YAML text for the
offending text, never taken from the parser.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dsp.wav import encode_wav
from engine.config import ConfigError, _Node
from engine.voice.ivr import (
    CollectStep,
    Flow,
    MenuStep,
    MissingColumn,
    TransferNumberStep,
    TransferQueueStep,
    check_queues,
    load_flow,
    parse_flow,
)
from engine.voice.ivr_session import (
    Action,
    CancelTimer,
    Hangup,
    IvrSession,
    OptOut,
    Play,
    SetResult,
    StartTimer,
    StopPlayback,
    StoreValue,
    TransferNumber,
    TransferQueue,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "flows" / "example.yaml"
CONTACT = {"first_name": "Ann"}


def top(text: str, file: str = "flow.yaml") -> _Node:
    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)
    return _Node(file, root, "")


def parse(text: str, prompts_dir: Path | None = None) -> Flow:
    return parse_flow(top(text), prompts_dir)


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the test YAML")


def error(text: str, prompts_dir: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, prompts_dir)
    return caught.value


GOOD = """\
start: greet
steps:
  greet:
    play: {tts: "Hi {contact.first_name}"}
    next: main
  main:
    menu:
      prompt: {tts: "Press 1"}
      options: {"1": bye}
    on_fail: bye
  bye:
    hangup: {}
"""


# --- validation -------------------------------------------------------------------------

# (yaml, field, text on the expected line, words in the message)
# fmt: off
CASES = [
    (GOOD.replace("    play:", "    plya:"), "steps.greet.plya", "plya", "did you mean 'play'"),
    (GOOD.replace("      options:", "      timout: 5s\n      options:"),
     "steps.main.menu.timout", "timout", "did you mean 'timeout'"),
    (GOOD.replace("next: main", "next: mian"), "steps.greet.next", "next: mian",
     "no step 'mian' (did you mean 'main'?)"),
    (GOOD.replace('{"1": bye}', '{"1": byee}'), "steps.main.menu.options.1", "byee",
     "no step 'byee'"),
    (GOOD.replace("on_fail: bye", "on_fail: gone"), "steps.main.on_fail", "gone", "no step"),
    (GOOD.replace("start: greet", "start: gret"), "start", "start:", "no step 'gret'"),
    (GOOD.replace("start: greet\n", "# no start\n"), "start", "steps:", "missing"),
    (GOOD.replace('{"1": bye}', '{"1": bye, "E": bye}'), "steps.main.menu.options.E",
     '"E"', "DTMF key"),
    (GOOD.replace('{"1": bye}', '{"12": bye}'), "steps.main.menu.options.12", '"12"',
     "one DTMF key"),
    (GOOD.replace('{"1": bye}', '{"a": bye, "A": bye}'), "steps.main.menu.options.A",
     '"A"', "given twice"),
    (GOOD.replace("      options:", "      timeout: 5 sec\n      options:"),
     "steps.main.menu.timeout", "timeout", "expected a duration"),
    (GOOD.replace("      options:", "      timeout: 2m\n      options:"),
     "steps.main.menu.timeout", "timeout", "at most 60s"),
    (GOOD.replace("      options:", "      retries: 11\n      options:"),
     "steps.main.menu.retries", "retries", "at most 10"),
    (GOOD.replace("      options:", "      retries: -1\n      options:"),
     "steps.main.menu.retries", "retries", "at least 0"),
    (GOOD.replace("{contact.first_name}", "{first_name}"), "steps.greet.play.tts",
     "first_name", "expected {contact.COLUMN}"),
    (GOOD.replace("{contact.first_name}", "{contact.}"), "steps.greet.play.tts",
     "contact.", "bad placeholder"),
    (GOOD.replace("{contact.first_name}", "{contact.x"), "steps.greet.play.tts",
     "contact.x", "bad placeholder '{'"),
    (GOOD.replace('{tts: "Press 1"}', '{tts: "Press 1", wav: a.wav}'),
     "steps.main.menu.prompt.tts", "Press 1", "not both"),
    (GOOD.replace('{tts: "Press 1"}', "{voice: en}"), "steps.main.menu.prompt",
     "prompt:", "expected {wav: FILE} or {tts: TEXT}"),
    (GOOD.replace('{tts: "Press 1"}', "{wav: a.wav, voice: en}"),
     "steps.main.menu.prompt.voice", "a.wav", "tts only"),
    (GOOD.replace('{tts: "Press 1"}', '{tts: " "}'), "steps.main.menu.prompt.tts",
     'tts: " "', "must not be empty"),
    (GOOD.replace("      prompt:", "      promt:"), "steps.main.menu.promt", "promt",
     "did you mean 'prompt'"),
    (GOOD.replace("      options: {\"1\": bye}\n", ""), "steps.main.menu.options", "menu:",
     "missing"),
    (GOOD.replace("    on_fail: bye", "    next: bye"), "steps.main.next", "next: bye",
     "unknown field"),
    (GOOD.replace("    on_fail: bye", "    on_fail: bye\n    play: {tts: x}"),
     "steps.main.play", "play: {tts: x}", "already 'menu'"),
    (GOOD.replace("    hangup: {}", "    next: greet"), "steps.bye", "  bye:", "no step kind"),
    (GOOD.replace("    hangup: {}", "    hangup: {reason: x}"), "steps.bye.hangup.reason",
     "reason", "unknown field"),
    (GOOD.replace("  bye:\n    hangup: {}", "  bye: hangup"), "steps.bye", "bye: hangup",
     "expected a mapping"),
    (GOOD.replace("  bye:", "  b y e:"), "steps.b y e", "b y e", "expected a step name"),
    (GOOD + "  greet:\n    hangup: {}\n", "steps.greet", "  greet:\n    hangup", "duplicate"),
    (GOOD.replace("    on_fail: bye", "      on_fail: bye\n    on_fail: bye"),
     "steps.main.menu.on_fail", "      on_fail", "given twice"),
    (GOOD.replace("steps:\n", "steps: {}\n").split("  greet:")[0], "steps", "steps:",
     "missing"),
]
# fmt: on


@pytest.mark.parametrize(("text", "field", "needle", "words"), CASES)
def test_errors_are_located(text: str, field: str, needle: str, words: str) -> None:
    exc = error(text)
    assert (exc.file, exc.field) == ("flow.yaml", field), str(exc)
    first = needle.split("\n")[0]
    want = line_of(text, first) if "\n" not in needle else _line_after(text, needle)
    assert exc.line == want, str(exc)
    assert words in exc.message, str(exc)
    assert str(exc).startswith(f"flow.yaml:{want}: {field}: ")


def _line_after(text: str, needle: str) -> int:
    """The line of a multi-line needle's first line, at its last occurrence."""
    return text[: text.rindex(needle)].count("\n") + 1


STEPS_TAIL = """\
  bye:
    hangup: {}
"""


def flow_with(extra: str, start: str = "greet") -> str:
    return (
        f"start: {start}\nsteps:\n  greet:\n    play: {{tts: hi}}\n    next: x\n{extra}{STEPS_TAIL}"
    )


# fmt: off
STEP_CASES = [
    ("  x:\n    transfer: {number: \"2125550100\"}\n", "steps.x.transfer.number",
     "2125550100", "with + and the country code"),
    ("  x:\n    transfer: {number: \"+1555\"}\n", "steps.x.transfer.number", "+1555",
     "not a valid number"),
    ("  x:\n    transfer: {number: \"+1 call me\"}\n", "steps.x.transfer.number", "call me",
     "E.164"),
    ("  x:\n    transfer: {number: \"+12125550100\", queue: this}\n", "steps.x.transfer",
     "transfer:", "one of queue"),
    ("  x:\n    transfer: {}\n", "steps.x.transfer", "transfer:", "one of queue"),
    ("  x:\n    transfer: {queue: this, refer: auto}\n", "steps.x.transfer.refer",
     "refer", "number transfer only"),
    ("  x:\n    transfer: {number: \"+12125550100\", refer: yes}\n",
     "steps.x.transfer.refer", "refer", "expected one of never, auto"),
    ("  x:\n    transfer: {queue: \"no way\"}\n", "steps.x.transfer.queue", "no way",
     "campaign name"),
    ("  x:\n    collect: {min_digits: 2}\n", "steps.x.collect", "collect:",
     "max_digits, a terminator"),
    ("  x:\n    collect: {min_digits: 4, max_digits: 3}\n", "steps.x.collect.max_digits",
     "max_digits", "at least min_digits (4)"),
    ("  x:\n    collect: {max_digits: 33}\n", "steps.x.collect.max_digits", "max_digits",
     "at most 32"),
    ("  x:\n    collect: {terminator: \"#\", min_digits: 40}\n", "steps.x.collect.min_digits",
     "min_digits", "at most 32"),
    ("  x:\n    collect: {max_digits: 0}\n", "steps.x.collect.max_digits", "max_digits",
     "at least 1"),
    ("  x:\n    collect: {terminator: \"5\"}\n", "steps.x.collect.terminator", "terminator",
     'expected "#" or "*"'),
    ("  x:\n    collect: {max_digits: 4, store_as: \"a b\"}\n", "steps.x.collect.store_as",
     "store_as", "expected a name"),
    ("  x:\n    collect: {max_digits: 4, secret: maybe}\n", "steps.x.collect.secret",
     "secret", "true or false"),
    ("  x:\n    collect: {max_digits: 4, store_as: a}\n    store_as: b\n",
     "steps.x.collect.store_as", "store_as: a", "given twice (also on line"),
    ("  x:\n    collect: {max_digits: 4, next: bye}\n    next: bye\n",
     "steps.x.collect.next", "next: bye}", "given twice"),
    ("  x:\n    set_result: \"not ok!\"\n", "steps.x.set_result", "not ok", "expected a result"),
    ("  x:\n    set_result: {a: b}\n", "steps.x.set_result", "set_result", "got a mapping"),
    ("  x:\n    opt_out: {list: \"bad list\"}\n", "steps.x.opt_out.list", "bad list",
     "list name"),
    ("  x:\n    opt_out: {lists: a}\n", "steps.x.opt_out.lists", "lists",
     "did you mean 'list'"),
    ("  x:\n    play: hello.wav\n", "steps.x.play", "hello.wav", "expected a mapping"),
    ("  x:\n    play: {}\n", "steps.x.play", "play: {}", "expected {wav: FILE}"),
    ("  x:\n    menu: {prompt: {tts: a}, options: {\"1\": bye}, on_fail: bye}\n"
     "  orphan:\n    play: {tts: lost}\n", "steps.orphan", "orphan", "unreachable"),
]
# fmt: on


@pytest.mark.parametrize(("extra", "field", "needle", "words"), STEP_CASES)
def test_step_errors_are_located(extra: str, field: str, needle: str, words: str) -> None:
    text = flow_with(extra)
    exc = error(text)
    assert exc.field == field, str(exc)
    assert exc.line == line_of(text, needle), str(exc)
    assert words in exc.message, str(exc)


def test_unreachable_step_named_with_its_line() -> None:
    text = GOOD + "  lonely:\n    play: {tts: nobody}\n    next: bye\n"
    exc = error(text)
    assert (exc.field, exc.line) == ("steps.lonely", line_of(text, "lonely:"))
    assert "unreachable" in exc.message and "'greet'" in exc.message


def test_play_cycle_rejected() -> None:
    text = """\
start: a
steps:
  a: {play: {tts: one}, next: b}
  b: {play: {tts: two}, next: c}
  c: {set_result: x, next: a}
"""
    exc = error(text)
    assert exc.field == "steps.c.next" and exc.line == line_of(text, "c: {")
    assert "a > b > c > a" in exc.message


def test_self_loop_and_on_fail_cycle_rejected() -> None:
    exc = error("start: a\nsteps:\n  a: {play: {tts: x}, next: a}\n")
    assert (exc.field, exc.line) == ("steps.a.next", 3) and "a > a" in exc.message
    text = """\
start: m
steps:
  m:
    menu: {prompt: {tts: x}, options: {"1": bye}}
    on_fail: sorry
  sorry: {play: {tts: again}, next: m}
  bye: {hangup: {}}
"""
    exc = error(text)
    assert exc.field == "steps.sorry.next" and "m > sorry > m" in exc.message
    # a transfer whose failure loops back with no key pressed could hold the line forever
    exc = error("start: t\nsteps:\n  t: {transfer: {queue: this}, on_fail: w}\n"
                "  w: {play: {tts: hold on}, next: t}\n")  # fmt: skip
    assert "t > w > t" in exc.message


def test_menu_loops_through_a_key_are_accepted() -> None:
    flow = parse("""\
start: main
steps:
  main:
    menu:
      prompt: {tts: "1 to hear it again, 2 to leave"}
      options: {"1": repeat, "2": bye, "3": main}
      retries: 5
      on_fail: bye
  repeat: {play: {tts: "Here it is again."}, next: main}
  bye: {hangup: {}}
""")
    menu = flow.steps["main"]
    assert isinstance(menu, MenuStep) and menu.retries == 5
    assert menu.options == {"1": "repeat", "2": "bye", "3": "main"}


def test_collect_next_may_lead_back() -> None:
    flow = parse("""\
start: c
steps:
  c: {collect: {max_digits: 2}, next: p, on_fail: bye}
  p: {play: {tts: "You entered something."}, next: c}
  bye: {hangup: {}}
""")
    step = flow.steps["c"]
    assert isinstance(step, CollectStep) and step.store_as == "c" and step.next == "p"


def test_no_next_is_an_implicit_end() -> None:
    flow = parse("start: a\nsteps:\n  a: {play: {tts: bye now}}\n")
    session = IvrSession(flow, {})
    assert session.start(0.0) == [Play("bye now", None, False)]
    assert session.on_prompt_done(1.0) == [Hangup("end of flow")]
    assert session.done and session.end == "end of flow"


def wav_bytes(frames: int = 800) -> bytes:
    return encode_wav((np.ones(frames) * 1000).astype(np.int16))


def test_wav_checked_against_prompts_dir(tmp_path: Path) -> None:
    text = GOOD.replace('{tts: "Press 1"}', "{wav: menu.wav}")
    line = line_of(text, "menu.wav")
    exc = error(text, tmp_path)
    assert (exc.field, exc.line) == ("steps.main.menu.prompt.wav", line)
    assert f"no such file: {tmp_path / 'menu.wav'}" in exc.message
    (tmp_path / "menu.wav").write_bytes(b"not a wav at all")
    assert "not a usable WAV" in error(text, tmp_path).message
    (tmp_path / "menu.wav").write_bytes(wav_bytes(0))
    assert "holds no audio" in error(text, tmp_path).message
    (tmp_path / "menu.wav").write_bytes(wav_bytes())
    menu = parse(text, tmp_path).steps["main"]
    assert isinstance(menu, MenuStep) and menu.prompt.wav == tmp_path / "menu.wav"
    absolute = tmp_path / "abs.wav"
    absolute.write_bytes(wav_bytes())
    menu = parse(text.replace("menu.wav", str(absolute)), Path("/nowhere")).steps["main"]
    assert isinstance(menu, MenuStep) and menu.prompt.wav == absolute
    unchecked = parse(text.replace("menu.wav", "missing.wav")).steps["main"]
    assert isinstance(unchecked, MenuStep) and unchecked.prompt.wav == Path("missing.wav")


def test_number_normalised_to_e164() -> None:
    flow = parse(
        flow_with(
            '  x:\n    transfer: {number: "+1 (212) 555-0100", refer: AUTO}\n    on_fail: bye\n'
        )
    )
    step = flow.steps["x"]
    assert isinstance(step, TransferNumberStep)
    assert (step.number, step.refer, step.on_fail) == ("+12125550100", "auto", "bye")


def test_routing_inside_or_beside_the_body() -> None:
    inside = parse(flow_with("  x:\n    transfer: {queue: sales, on_fail: bye}\n"))
    beside = parse(flow_with("  x:\n    transfer: {queue: sales}\n    on_fail: bye\n"))
    for flow in (inside, beside):
        step = flow.steps["x"]
        assert isinstance(step, TransferQueueStep)
        assert (step.campaign, step.on_fail) == ("sales", "bye")


def test_campaign_ivr_section_fields_are_prefixed(tmp_path: Path) -> None:
    campaign = tmp_path / "c.yaml"
    text = "name: c\nivr:\n  start: a\n  steps:\n    a: {play: {tts: hi}, next: b}\n"
    campaign.write_text(text)
    node = top(text, str(campaign)).mapping("ivr")
    assert node is not None
    with pytest.raises(ConfigError) as caught:
        parse_flow(node, None)
    exc = caught.value
    assert (exc.file, exc.line, exc.field) == (str(campaign), 5, "ivr.steps.a.next")


def test_check_queues() -> None:
    text = flow_with("  x:\n    transfer: {queue: this}\n    on_fail: y\n"
                     "  y:\n    transfer: {queue: salse}\n    on_fail: bye\n")  # fmt: skip
    flow = parse(text)
    check_queues(flow, has_agents=True, agent_campaigns={"sales", "salse"})
    check_queues(flow, has_agents=True)  # other campaigns not known yet: not checked
    with pytest.raises(ConfigError) as caught:
        check_queues(flow, has_agents=False, agent_campaigns={"salse"})
    assert (caught.value.field, caught.value.line) == (
        "steps.x.transfer.queue", line_of(text, "queue: this"))  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        check_queues(flow, has_agents=True, agent_campaigns={"sales"})
    assert caught.value.line == line_of(text, "salse")
    assert "did you mean 'sales'" in caught.value.message


def test_example_flow_loads(tmp_path: Path) -> None:
    flow = load_flow(EXAMPLE, tmp_path)  # its prompts are all tts: no file needed
    assert flow.start == "greet" and flow.file == str(EXAMPLE)
    assert flow.columns == {"first_name"}
    assert flow.steps["greet"].line == line_of(EXAMPLE.read_text(), "  greet:")
    assert {type(s).__name__ for s in flow.steps.values()} >= {
        "PlayStep", "MenuStep", "CollectStep", "OptOutStep", "TransferQueueStep",
        "TransferNumberStep", "SetResultStep", "HangupStep",
    }  # fmt: skip


def test_load_flow_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_flow(tmp_path / "none.yaml")


# --- placeholders (the grammar and the filler: tests/unit/test_tts.py) -------------------


def test_session_checks_columns_before_any_audio() -> None:
    flow = parse(GOOD)
    with pytest.raises(MissingColumn):
        IvrSession(flow, {"last_name": "Lee"})


# --- the interpreter --------------------------------------------------------------------

MENU = """\
start: greet
voice: en-us
steps:
  greet: {play: {tts: "Hello {contact.first_name}."}, next: main}
  main:
    menu:
      prompt: {wav: /p/menu.wav}
      options: {"1": confirm, "2": agent, "3": pin, "4": out, "9": optout}
      timeout: 4s
      retries: 2
      invalid: {tts: "Not an option.", voice: en-gb}
    on_fail: bye
  confirm: {set_result: confirmed, next: thanks}
  thanks: {play: {tts: Thanks}, next: bye}
  agent: {transfer: {queue: this}, on_fail: sorry}
  sorry: {play: {tts: Sorry}, next: bye}
  out: {transfer: {number: "+442071838750", refer: auto}}
  pin: {collect: {prompt: {tts: PIN}, min_digits: 2, max_digits: 4, terminator: "#",
        timeout: 3s, retries: 1}, store_as: pin, next: thanks, on_fail: bye}
  optout: {opt_out: {list: opt-outs, confirm: {tts: Removed}}, next: bye}
  bye: {hangup: {}}
"""
PROMPT = Play(Path("/p/menu.wav"), None, True)


def at_menu() -> IvrSession:
    session = IvrSession(parse(MENU), CONTACT)
    assert session.start(0.0) == [Play("Hello Ann.", "en-us", False)]
    assert session.on_prompt_done(1.0) == [PROMPT]
    return session


def test_menu_option() -> None:
    s = at_menu()
    assert s.on_prompt_done(3.0) == [StartTimer(4.0, 1)]
    assert s.on_digit("1", 4.0) == [
        CancelTimer(1), SetResult("confirmed"), Play("Thanks", "en-us", False)
    ]  # fmt: skip
    assert s.on_prompt_done(5.0) == [Hangup("hangup")]
    assert s.done and s.result == "confirmed" and s.end == "hangup"
    assert s.summary() == "greet > main: 1 > confirm > thanks > bye"


def test_invalid_then_valid() -> None:
    s = at_menu()
    s.on_prompt_done(3.0)
    assert s.on_digit("7", 4.0) == [CancelTimer(1), Play("Not an option.", "en-gb", True)]
    assert s.on_prompt_done(5.0) == [PROMPT]
    assert s.on_prompt_done(6.0) == [StartTimer(4.0, 2)]
    assert s.on_digit("9", 7.0)[:2] == [CancelTimer(2), OptOut("opt-outs", "ivr")]
    menu = s.history[1]
    assert menu.tries == ["invalid 7", "option 9"] and menu.outcome == "option 9"
    assert menu.digits == [("7", 4.0), ("9", 7.0)]


def test_timeouts_exhaust_retries_then_on_fail() -> None:
    s = at_menu()
    tokens = []
    for i in range(3):
        actions = s.on_prompt_done(2.0 + 10 * i)
        assert len(actions) == 1 and isinstance(actions[0], StartTimer)
        tokens.append(actions[0].token)
        actions = s.on_timeout(actions[0].token, 6.0 + 10 * i)
        if i < 2:
            assert actions == [PROMPT]  # no no_input message: the prompt again
    assert actions == [Hangup("hangup")]
    assert len(set(tokens)) == 3
    menu = s.history[1]
    assert menu.tries == ["timeout"] * 3 and menu.outcome == "retries exhausted"
    assert menu.next == "bye" and s.summary() == "greet > main: timeout timeout timeout > bye"


def test_barge_in_stops_the_prompt() -> None:
    s = at_menu()
    assert s.on_digit("2", 1.5) == [StopPlayback(), TransferQueue(None)]
    assert s.on_prompt_done(1.6) == []  # a late report for the stopped prompt is ignored
    # a key in a plain play step is noted but does not interrupt it
    s = IvrSession(parse(MENU), CONTACT)
    s.start(0.0)
    assert s.on_digit("5", 0.5) == []
    assert s.history[0].digits == [("5", 0.5)] and s.history[0].tries == []


def test_barge_in_during_invalid_message_counts() -> None:
    s = at_menu()
    s.on_digit("8", 1.5)  # stops the prompt, invalid
    assert s.on_digit("4", 2.0) == [StopPlayback(), TransferNumber("+442071838750", "auto")]


def enter_pin() -> IvrSession:
    s = at_menu()
    assert s.on_digit("3", 1.5) == [StopPlayback(), Play("PIN", "en-us", True)]
    return s


def test_collect_with_terminator() -> None:
    s = enter_pin()
    assert s.on_digit("4", 2.0) == [StopPlayback(), StartTimer(3.0, 1)]
    assert s.on_digit("2", 2.5) == [CancelTimer(1), StartTimer(3.0, 2)]
    assert s.on_digit("#", 3.0) == [
        CancelTimer(2), StoreValue("pin", "42"), Play("Thanks", "en-us", False)
    ]  # fmt: skip
    assert s.values == {"pin": "42"}
    assert s.history[2].tries == ["entered 42"] and s.history[2].outcome == "entered"


def test_collect_with_max_digits_and_timeout_accepts() -> None:
    s = enter_pin()
    s.on_prompt_done(2.0)
    for d in "123":
        s.on_digit(d, 3.0)
    assert s.on_digit("4", 3.5)[1] == StoreValue("pin", "1234")
    s = enter_pin()
    s.on_prompt_done(2.0)  # timer 1
    s.on_digit("5", 3.0)
    s.on_digit("6", 3.5)  # timer 3
    assert s.on_timeout(3, 6.5)[0] == StoreValue("pin", "56")  # enough digits: accepted


def test_collect_too_short_retries_then_fails() -> None:
    s = enter_pin()
    s.on_digit("1", 2.0)
    assert s.on_digit("#", 2.5) == [CancelTimer(1), Play("PIN", "en-us", True)]
    s.on_prompt_done(3.0)  # timer 2
    assert s.on_timeout(2, 6.0) == [Hangup("hangup")]
    assert s.history[2].tries == ["invalid 1", "timeout"]
    assert s.summary() == "greet > main: 3 > pin: 1 timeout > bye"


def test_collect_without_max_digits_stops_at_the_limit() -> None:
    flow = parse('start: c\nsteps:\n  c: {collect: {terminator: "#"}}\n')
    s = IvrSession(flow, {})
    s.start(0.0)
    for _ in range(31):
        s.on_digit("1", 1.0)
    assert s.on_digit("2", 2.0)[1:] == [StoreValue("c", "1" * 31 + "2"), Hangup("end of flow")]


def test_collect_secret_is_masked() -> None:
    flow = parse("start: c\nsteps:\n  c: {collect: {max_digits: 3, secret: true}, next: b}\n"
                 "  b: {hangup: {}}\n")  # fmt: skip
    s = IvrSession(flow, {})
    assert s.start(0.0) == [StartTimer(5.0, 1)]  # no prompt: waits at once
    for d in "12":
        s.on_digit(d, 1.0)
    assert s.on_digit("3", 2.0)[1] == StoreValue("c", "123")
    assert s.summary() == "c: *** > b"
    assert "123" not in json.dumps(s.history_json())


def test_opt_out_then_confirmation() -> None:
    s = at_menu()
    assert s.on_digit("9", 1.2) == [
        StopPlayback(), OptOut("opt-outs", "ivr"), Play("Removed", "en-us", False)
    ]  # fmt: skip
    assert s.on_prompt_done(2.0) == [Hangup("hangup")]
    assert s.summary() == "greet > main: 9 > optout > bye"
    flow = parse("start: o\nsteps:\n  o: {opt_out: {}}\n")
    s = IvrSession(flow, {})
    assert s.start(0.0) == [OptOut(None, "ivr"), Hangup("end of flow")]


def test_transfer_failure_follows_on_fail_and_success_ends() -> None:
    s = at_menu()
    s.on_digit("2", 1.5)
    assert s.on_digit("1", 2.0) == []  # keys while transferring are noted, not acted on
    assert s.on_transfer_result(False, 3.0) == [Play("Sorry", "en-us", False)]
    assert s.history[2].outcome == "transfer failed" and s.history[2].next == "sorry"
    assert s.summary().startswith("greet > main: 2 > agent (transfer failed) > sorry")
    s = at_menu()
    s.on_digit("4", 1.5)
    assert s.on_transfer_result(True, 3.0) == []
    assert s.done and s.end == "transferred" and s.history[-1].outcome == "transferred"
    assert s.on_digit("1", 4.0) == [] and s.on_hangup(5.0) == []
    s = at_menu()
    s.on_digit("4", 1.5)
    assert s.on_transfer_result(False, 3.0) == [Hangup("end of flow")]  # no on_fail


def test_stale_timer_ignored() -> None:
    s = at_menu()
    s.on_prompt_done(2.0)  # timer 1
    s.on_digit("7", 3.0)  # cancels 1, invalid message
    assert s.on_timeout(1, 6.0) == []
    assert s.on_timeout(99, 6.0) == []
    s.on_prompt_done(6.5)
    s.on_prompt_done(7.0)  # timer 2
    assert s.on_timeout(1, 7.5) == []
    assert s.on_timeout(2, 11.0) == [PROMPT]


def test_hangup_mid_flow_closes_the_history() -> None:
    s = at_menu()
    s.on_prompt_done(2.0)
    assert s.on_hangup(3.0) == [CancelTimer(1)]
    assert s.done and s.end == "caller hung up"
    last = s.history[-1]
    assert (last.step, last.left_at, last.outcome) == ("main", 3.0, "caller hung up")
    assert s.summary() == "greet > main (caller hung up)"
    assert s.on_timeout(1, 5.0) == [] and s.on_prompt_done(5.0) == []
    s = at_menu()
    assert s.on_hangup(1.5) == [StopPlayback()]


def test_history_json() -> None:
    s = at_menu()
    s.on_digit("7", 1.5)
    s.on_digit("1", 2.0)
    s.on_prompt_done(3.0)
    record = json.loads(json.dumps(s.history_json()))
    assert [r["step"] for r in record] == ["greet", "main", "confirm", "thanks", "bye"]
    assert record[1] == {
        "step": "main", "kind": "menu", "entered_at": 1.0, "left_at": 2.0,
        "digits": [{"digit": "7", "at": 1.5}, {"digit": "1", "at": 2.0}],
        "tries": ["invalid 7", "option 1"], "outcome": "option 1", "next": "confirm",
    }  # fmt: skip
    assert record[2]["outcome"] == "result confirmed" and record[2]["kind"] == "set_result"
    assert record[-1]["outcome"] == "hangup" and record[-1]["left_at"] == 3.0


def test_misuse() -> None:
    s = IvrSession(parse(MENU), CONTACT)
    with pytest.raises(RuntimeError):
        s.on_digit("1", 0.0)
    s.start(0.0)
    with pytest.raises(RuntimeError):
        s.start(0.0)
    with pytest.raises(ValueError, match="DTMF"):
        s.on_digit("x", 0.0)
    assert s.on_digit("a", 0.1) == []  # A-D in either case


# --- property: any events end the call --------------------------------------------------

FLOWS = [
    parse(MENU),
    load_flow(EXAMPLE),
    parse("""\
start: c
steps:
  c: {collect: {max_digits: 3, retries: 0}, next: m, on_fail: t}
  m:
    menu: {prompt: {tts: x}, options: {"1": c, "2": t, "#": n}, retries: 3,
           no_input: {tts: "hello?"}}
  t: {transfer: {queue: other}, on_fail: n}
  n: {transfer: {number: "+12125550100"}}
"""),
]
EVENTS = st.one_of(
    st.tuples(st.just("digit"), st.sampled_from(list("0123456789*#ABCD"))),
    st.tuples(st.just("timeout"), st.integers(0, 30)),
    st.tuples(st.just("done"), st.just(0)),
    st.tuples(st.just("transfer"), st.booleans()),
    st.tuples(st.just("hangup"), st.just(0)),
)


class Media:
    """What the media layer would track, checking the session's actions."""

    def __init__(self) -> None:
        self.playing = False
        self.timers: set[int] = set()
        self.issued: list[int] = []
        self.transferring = False
        self.hung_up = False

    def apply(self, actions: list[Action]) -> None:
        assert not self.hung_up or actions == []
        for action in actions:
            match action:
                case Play():
                    assert not self.playing
                    self.playing = True
                case StopPlayback():
                    assert self.playing
                    self.playing = False
                case StartTimer(token=token):
                    assert token not in self.issued
                    self.timers.add(token)
                    self.issued.append(token)
                case CancelTimer(token=token):
                    self.timers.remove(token)
                case TransferQueue() | TransferNumber():
                    self.transferring = True
                case Hangup():
                    assert action is actions[-1]
                    self.hung_up = True


def feed(s: IvrSession, media: Media, kind: str, arg: object, now: float) -> None:
    if kind == "digit":
        media.apply(s.on_digit(str(arg), now))
    elif kind == "timeout":
        issued = media.issued
        token = issued[int(str(arg)) % len(issued)] if issued else 1
        live = token in media.timers
        actions = s.on_timeout(token, now)
        if live:
            media.timers.discard(token)
        else:
            assert actions == []
        media.apply(actions)
    elif kind == "done":
        if media.playing:
            media.playing = False
            media.apply(s.on_prompt_done(now))
    elif kind == "transfer":
        if media.transferring:
            media.transferring = False
            media.apply(s.on_transfer_result(bool(arg), now))
    elif kind == "hangup":
        media.apply(s.on_hangup(now))
        media.playing, media.timers = False, set()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FLOWS), st.lists(EVENTS, max_size=60))
def test_any_events_end_in_hangup_or_transfer(flow: Flow, events: list[tuple[str, object]]) -> None:
    s = IvrSession(flow, {"first_name": "Ann"})
    media = Media()
    now = 0.0
    media.apply(s.start(now))
    for kind, arg in events:
        now += 0.5
        feed(s, media, kind, arg, now)
    # Then nobody presses anything: the call must end within a bound.
    bound = sum(1 + 3 * (getattr(step, "retries", 0) + 1) for step in flow.steps.values())
    for _ in range(bound):
        if s.done:
            break
        now += 0.5
        if media.playing:
            feed(s, media, "done", 0, now)
        elif media.timers:
            feed(s, media, "timeout", media.issued.index(max(media.timers)), now)
        else:
            assert media.transferring, "stuck: nothing playing, no timer, no transfer"
            feed(s, media, "transfer", False, now)
    assert s.done
    assert s.end in ("hangup", "end of flow", "transferred", "caller hung up")
    assert media.hung_up or s.end in ("transferred", "caller hung up")
    assert not media.timers or s.end == "caller hung up"
    assert all(r.left_at is not None and r.outcome for r in s.history)
    json.dumps(s.history_json())
    assert s.summary().split(" > ")[0].split(":")[0].split(" ")[0] == flow.start
