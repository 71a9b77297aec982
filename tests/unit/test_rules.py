"""Campaign rules, filters, sort orders and attempt limits: the condition
language (precedence, values, null), every error located, rule semantics per
phase, limits at their edges, and fuzzing (only ConfigError ever escapes)."""

from __future__ import annotations

import math
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.compliance.rules import (
    AttemptLimits,
    PostCallDecision,
    PreCallDecision,
    RuleContext,
    SortKey,
    compile_condition,
    next_local_midnight,
    parse_filter,
    parse_limits,
    parse_rules,
    parse_sort,
    start_of_local_day,
)
from engine.config import ConfigError, _Node

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 3, 3, 10, 30, tzinfo=NY)  # a Tuesday


def campaign(text: str) -> _Node:
    root = yaml.compose(textwrap.dedent(text))
    assert isinstance(root, yaml.MappingNode)
    return _Node("c.yaml", root, "")


def ctx(**kw: Any) -> RuleContext:
    kw.setdefault("now", NOW)
    return RuleContext(**kw)


def holds(expr: str, phase: str | None = "after_wrapup", **kw: Any) -> bool:
    cond = compile_condition(expr, phase)
    if phase is None:
        return cond(kw.get("attributes", {}))
    return cond(ctx(**kw))


def error(expr: str, phase: str | None = "before_call") -> str:
    with pytest.raises(ConfigError) as info:
        compile_condition(expr, phase)
    return info.value.message


# --- the grammar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("a == 1 or b == 1 and c == 1", True),  # and binds tighter: a==1 or (b==1 and c==1)
        ("(a == 1 or b == 1) and c == 1", False),
        ("not a == 1 and b == 1", False),  # not binds tighter than and
        ("not (a == 2 and b == 1)", True),
        ("not not a == 1", True),
        ("a == 2 or a == 3 or a == 1", True),
        ("a == 1 and b == 2 and c == 2 and a != 2", True),
        ("((((a == 1))))", True),
        ("true", True),
        ("false or a == 1", True),
        ("1 == 1.0", True),
        ("'x' == 'y'", False),
    ],
)
def test_precedence_and_parentheses(expr: str, expected: bool) -> None:
    assert holds(expr, attributes={"a": "1", "b": "2", "c": "2"}) is expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("state in ['CA', 'NY']", True),
        ("state not in ['CA', 'NY']", False),
        ("state in []", False),
        ("state in ['TX',]", False),
        ("zip in [90210, 10001]", True),  # "090210" reads as the number 90210
        ("balance in ['100', 7]", True),
        ("missing in [null, 'x']", True),
        ("missing not in ['x']", True),
        ("flag in [true]", True),
        ("1 in [1, 2]", True),
    ],
)
def test_in_and_not_in(expr: str, expected: bool) -> None:
    attrs = {"state": "CA", "zip": "090210", "balance": "100.0", "flag": "Yes"}
    assert holds(expr, attributes=attrs) is expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("n == 100", True),  # "0100" and 100 both read as numbers
        ("n == '100'", True),
        ("n > 99.5", True),
        ("small < big", True),  # "9" < "10" as numbers, not as text
        ("word < 'abd'", True),  # text against text
        ("word > 5", False),  # text against a number: never ordered...
        ("word < 5", False),
        ("word == 5", False),  # ...never equal
        ("word != 5", True),
        ("neg < -2", True),
        ("neg == -3", True),
        ("sci == 1000", True),
        ("nan == 'nan'", True),  # "nan" is not a finite number: text
        ("nan > 1", False),
        ("under == 1000", False),  # "1_000" is text, not a number
        ("name contains 'mit'", True),
        ("name startswith 'Sm'", True),
        ("name endswith 'h'", True),
        ("name startswith 'sm'", False),  # case matters
        ("n contains '10'", True),
        ("missing contains 'x'", False),
        ("flag == true", True),
        ("off == false", True),
        ("flag != false", True),
        ("word == true", False),
        ("word != true", True),
        ('name == "Smith"', True),
        ("quote == 'it\\'s'", True),
        ("`odd column` == 'yes'", True),
        ("prénom == 'Zoë'", True),
    ],
)
def test_values(expr: str, expected: bool) -> None:
    attrs = {
        "n": "0100", "small": "9", "big": "10", "word": "abc", "neg": "-3", "sci": "1e3",
        "nan": "nan", "under": "1_000", "name": "Smith", "flag": "YES", "off": "0",
        "quote": "it's", "odd column": "yes", "prénom": "Zoë",
    }  # fmt: skip
    assert holds(expr, attributes=attrs) is expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("missing == null", True),
        ("missing != null", False),
        ("present == null", False),
        ("missing == 'x'", False),
        ("missing != 'x'", True),
        ("missing > 5", False),
        ("missing < 5", False),
        ("missing == other_missing", True),
        ("present > missing", False),
        ("last_result == null", True),
        ("minutes_since_last_attempt == null", True),
        ("minutes_since_last_attempt > 10", False),
        ("null == null", True),
    ],
)
def test_null(expr: str, expected: bool) -> None:
    assert holds(expr, attributes={"present": "1"}) is expected


def test_builtins() -> None:
    last = NOW - timedelta(minutes=90)
    c = ctx(attributes={"attempts": "99"}, attempts=3, attempts_today=1, number_attempts=2,
            number_attempts_today=1, last_result="busy", last_attempt_at=last.astimezone(UTC),
            result="no_answer", wrapup_code="SALE")  # fmt: skip
    for expr in [
        "attempts == 3", "`attempts` == 99", "attempts_today == 1", "number_attempts == 2",
        "number_attempts_today == 1", "last_result == 'busy'", "result == 'no_answer'",
        "minutes_since_last_attempt == 90", "local_hour == 10", "local_weekday == 'tuesday'",
        "local_weekday in ['monday', 'tuesday']", "wrapup_code == 'SALE'",
        "attempts > number_attempts", "result != last_result",
    ]:  # fmt: skip
        assert compile_condition(expr, "after_wrapup")(c), expr


# --- errors, located --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "at column 1: empty condition"),
        ("   ", "at column 1: empty condition"),
        ("attempts >= ", "at column 13: expected a value after '>='"),
        ("attempts >= )", "at column 13: expected a value after '>=', got ')'"),
        ("a == 1 b", "at column 8: unexpected 'b'; expected 'and', 'or' or the end"),
        ("a == 1 AND b == 2", "at column 8: unexpected 'AND' (keywords are lower case: 'and')"),
        ("(a == 1", "at column 8: expected ')' to close the '(' at column 1, got the end"),
        ("(a == 1]", "at column 8: expected ')' to close the '(' at column 1, got ']'"),
        ("a = 1", "at column 3: '=' is not a comparison; use '=='"),
        ("a && b", "at column 3: unexpected character '&'; use 'and'"),
        ("a || b", "at column 3: unexpected character '|'; use 'or'"),
        ("!a", "at column 1: unexpected character '!'; use 'not'"),
        ("a == $", "at column 6: unexpected character '$'"),
        ("a == 'open", "at column 6: unterminated string"),
        ("a == 1 == 2", "at column 8: comparisons cannot be chained"),
        ("a in b", "at column 6: expected a list like ['a', 'b'] after 'in', got 'b'"),
        ("a in [1 2]", "at column 9: expected ',' or ']' in the list opened at column 6"),
        ("a in [1, b]", "at column 10: a list holds literal values"),
        ("a in [1,", "at column 9: expected a value after ','"),
        ("a not b", "at column 7: expected 'in' after 'not', got 'b'"),
        ("segment", "at column 1: segment is a value, not a condition"),
        ("segment and a == 1", "at column 1: segment is a value, not a condition"),
        ("(a == 1) == 2", "at column 10: a condition in parentheses cannot be compared"),
        ("a == and", "at column 6: expected a value after '==', got 'and'"),
        ("a contains 5", "at column 12: expected quoted text after 'contains'"),
        ("retry_in > 15m", "at column 12: '15m' is not a number"),
        ("a == 1e999", "at column 6: number out of range"),
        ("a == True", "at column 6: write true in lower case (or `True` for a column)"),
        ("a == None", "at column 6: write null in lower case"),
        ("a > null", "at column 5: null has no order"),
        ("a <= true", "at column 6: true has no order"),
        ("attempts > 'two'", "at column 12: attempts is a number; 'two' is not one"),
        ("attempts == true", "at column 13: attempts is a number; true is not one"),
        ("attempts in [1, 'x']", "at column 17: attempts is a number; 'x' is not one"),
        ("local_hour contains '1'", "at column 21: 'contains' needs text; local_hour is a number"),
        (
            "last_result == 'bussy'",
            "at column 16: 'bussy' is not a call result (did you mean 'busy'?)",
        ),
        ("last_result > 'busy'", "at column 15: last_result is a call result: compare it with"),
        (
            "local_weekday == 'mon'",
            "at column 18: 'mon' is not a day name (did you mean 'monday'?)",
        ),
        ("result == 'busy'", "at column 1: result is known only after a call"),
        ("wrapup_code == 'X'", "at column 1: wrapup_code is known only after a wrap-up"),
        ("``", "at column 1: expected a column name between backticks"),
        ("(" * 60 + "a == 1" + ")" * 60, "at column 51: nested too deeply"),
        ("not " * 60 + "a == 1", "at column 201: nested too deeply"),
    ],
)
def test_condition_errors_name_the_column(expr: str, message: str) -> None:
    assert error(expr).startswith(message)


def test_rule_errors_name_file_line_and_field() -> None:
    m = campaign("""\
        name: x
        rules:
          - when: before_call
            if: "attempts >= 2"
            then: {priority: 3}
          - when: after_call
            if: "attempts >= "
            then: {retry_in: 1m}
        """)
    with pytest.raises(ConfigError) as info:
        parse_rules(m)
    assert str(info.value) == "c.yaml:7: rules[1].if: at column 13: expected a value after '>='"


@pytest.mark.parametrize(
    ("rules", "where", "message"),
    [
        ("rules: {when: before_call}", "c.yaml:1: rules", "expected a list of rules"),
        ("rules:\n  - skip", "c.yaml:2: rules[0]", "expected a mapping"),
        ("rules:\n  - {if: 'a == 1', then: {skip: x}}", "c.yaml:2: rules[0].when", "missing"),
        (
            "rules:\n  - {when: before, then: {skip: x}}",
            "c.yaml:2: rules[0].when",
            "expected one of before_call, after_call, after_wrapup; got 'before' (did you mean",
        ),
        (
            "rules:\n  - {when: before_call, iff: 'a == 1', then: {skip: x}}",
            "c.yaml:2: rules[0].iff",
            "unknown field (did you mean 'if'?)",
        ),
        (
            "rules:\n  - when: before_call\n    if: 'a =='",
            "c.yaml:3: rules[0].if",
            "at column 5: expected a value after '=='",
        ),
        (
            "rules:\n  - {when: before_call}",
            "c.yaml:2: rules[0].then",
            "missing: what the rule does",
        ),
        ("rules:\n  - {when: before_call, then: {}}", "c.yaml:2: rules[0].then", "missing"),
        (
            "rules:\n  - {when: before_call, then: skip}",
            "c.yaml:2: rules[0].then",
            "expected a mapping",
        ),
        (
            "rules:\n  - when: before_call\n    then:\n      retry_in: 1m",
            "c.yaml:4: rules[0].then.retry_in",
            "retry_in is an after_call action; a before_call rule may do skip, caller_id",
        ),
        (
            "rules:\n  - when: after_call\n    then: {priority: 1}",
            "c.yaml:3: rules[0].then.priority",
            "priority is an before_call action",
        ),
        (
            "rules:\n  - when: after_call\n    then: {retry: 1m}",
            "c.yaml:3: rules[0].then.retry",
            "unknown field (did you mean 'retry_in'?)",
        ),
        (
            "rules:\n  - when: after_call\n    then: {retry_in: 1m, move_to: b}",
            "c.yaml:3: rules[0].then.move_to",
            "retry_in and move_to are two outcomes",
        ),
        (
            "rules:\n  - when: after_call\n    then: {retry_in: soon}",
            "c.yaml:3: rules[0].then.retry_in",
            "expected a duration",
        ),
        (
            "rules:\n  - when: after_call\n    then: {move_to: 'a b'}",
            "c.yaml:3: rules[0].then.move_to",
            "expected a campaign name",
        ),
        (
            "rules:\n  - when: after_call\n    then: {dnc: false}",
            "c.yaml:3: rules[0].then.dnc",
            "false does nothing",
        ),
        (
            "rules:\n  - when: after_call\n    then: {dnc: {list: 'a b'}}",
            "c.yaml:3: rules[0].then.dnc.list",
            "expected a list name",
        ),
        (
            "rules:\n  - when: after_call\n    then: {dnc: {name: x}}",
            "c.yaml:3: rules[0].then.dnc.name",
            "unknown field",
        ),
        (
            "rules:\n  - when: after_call\n    then: {uncallable: ''}",
            "c.yaml:3: rules[0].then.uncallable",
            "expected a reason",
        ),
        (
            "rules:\n  - when: before_call\n    then: {skip: x, caller_id: '+15550100'}",
            "c.yaml:3: rules[0].then.caller_id",
            "the call is skipped, so this does nothing",
        ),
        (
            "rules:\n  - when: before_call\n    then: {caller_id: 'call me'}",
            "c.yaml:3: rules[0].then.caller_id",
            "expected a number like +15551234567",
        ),
        (
            "rules:\n  - when: before_call\n    then: {priority: high}",
            "c.yaml:3: rules[0].then.priority",
            "expected an integer",
        ),
        (
            "rules:\n  - when: before_call\n    then: {set: {attempts: 0}}",
            "c.yaml:3: rules[0].then.set.attempts",
            "attempts is kept by the dialer",
        ),
        (
            "rules:\n  - when: before_call\n    then: {set: {a: [1]}}",
            "c.yaml:3: rules[0].then.set.a",
            "expected a text value, or null",
        ),
        (
            "rules:\n  - when: before_call\n    then: {set: {}}",
            "c.yaml:3: rules[0].then.set",
            "expected at least one column",
        ),
    ],
)
def test_rule_structure_errors(rules: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules(campaign(rules))
    assert str(info.value).startswith(f"{where}: {message}"), str(info.value)


def test_wrapup_codes_checked_when_given() -> None:
    m = campaign("rules:\n  - when: after_wrapup\n    if: \"wrapup_code == 'WRNG'\"\n"
                 "    then: {uncallable: wrong number}\n")  # fmt: skip
    assert len(parse_rules(m)) == 1  # without the codes: any text
    with pytest.raises(ConfigError) as info:
        parse_rules(m, wrapup_codes={"WRONG", "SALE"})
    assert str(info.value) == (
        "c.yaml:3: rules[0].if: at column 16: no wrap-up code 'WRNG' in "
        "dialing.wrapup_codes (did you mean 'WRONG'?)"
    )


def test_did_you_mean_warnings_are_located() -> None:
    m = campaign("""\
        rules:
          - when: before_call
            if: "attempt >= 2 and segmnt == 'vip'"
            then: {skip: x}
        filter: "attempts > 1"
        """)
    rules = parse_rules(m)
    assert rules.warnings == (
        "c.yaml:3: rules[0].if: at column 1: 'attempt' is read as a contact column; "
        "did you mean 'attempts'?",
    )
    flt = parse_filter(m)
    assert flt is not None
    assert flt.warnings == (
        "c.yaml:5: filter: at column 1: 'attempts' is read as a contact column: a filter "
        "sees only the list's columns",
    )
    assert flt.matches({"attempts": "2"})


# --- rule semantics ---------------------------------------------------------------------

RULES = """\
rules:
  - when: before_call
    if: "segment == 'vip'"
    then: {caller_id: "+15550100", priority: 10, set: {tier: gold, old: null}}
  - when: before_call
    if: "attempts >= 2 and segment == 'vip'"
    then: {caller_id: "Sales <sip:+15550199@example.com>", set: {tier: platinum}}
  - when: before_call
    if: "state == 'TX'"
    then: {skip: "not licensed in TX", set: {flag: "1"}}
  - when: before_call
    then: {priority: 1}
  - when: after_call
    if: "result == 'busy' and attempts < 4"
    then: {retry_in: 15m}
  - when: after_call
    if: "result == 'busy' and segment == 'vip'"
    then: {move_to: vip-callbacks}
  - when: after_call
    if: "result == 'invalid_number'"
    then: {dnc: {list: internal}, uncallable: "invalid number"}
  - when: after_call
    if: "result == 'invalid_number' or result == 'rejected'"
    then: {retry_in: 1h}
  - when: after_call
    if: "result == 'rejected'"
    then: {dnc: true}
  - when: after_wrapup
    if: "wrapup_code == 'WRONG'"
    then: {uncallable: "wrong number"}
  - when: after_wrapup
    if: "wrapup_code == 'LATER'"
    then: {retry_in: 2h, dnc: other}
"""


def test_before_call_all_matching_rules_apply_in_order() -> None:
    rules = parse_rules(campaign(RULES))
    assert len(rules) == 11
    assert rules.move_targets == {"vip-callbacks"}
    vip = rules.before_call(ctx(attributes={"segment": "vip"}, attempts=2))
    assert vip == PreCallDecision(None, "Sales <sip:+15550199@example.com>", 1,
                                  {"tier": "platinum", "old": None})  # fmt: skip
    first = rules.before_call(ctx(attributes={"segment": "vip"}, attempts=1))
    assert (first.caller_id, first.priority) == ("+15550100", 1)
    assert dict(first.set_columns) == {"tier": "gold", "old": None}


def test_skip_stops_and_keeps_the_columns_set() -> None:
    rules = parse_rules(campaign(RULES))
    tx = rules.before_call(ctx(attributes={"segment": "vip", "state": "TX"}))
    # The skip ends the phase: the last (priority 1) rule is never reached.
    assert tx.skip_reason == "not licensed in TX"
    assert tx.priority == 10
    assert dict(tx.set_columns) == {"tier": "gold", "old": None, "flag": "1"}


def test_no_matching_rule_changes_nothing() -> None:
    m = campaign("rules:\n  - when: before_call\n    if: \"a == 'x'\"\n    then: {priority: 2}\n")
    rules = parse_rules(m)
    assert rules.before_call(ctx()) == PreCallDecision()
    assert rules.after_call(ctx(result="busy")) == PostCallDecision()
    assert not rules.after_call(ctx(result="busy")).decided
    assert len(parse_rules(campaign("name: x"))) == 0


def test_after_call_outcomes_last_wins_and_uncallable_stops() -> None:
    rules = parse_rules(campaign(RULES))
    busy = rules.after_call(ctx(result="busy", attempts=2, attributes={"segment": "vip"}))
    assert busy == PostCallDecision(move_to="vip-callbacks")  # the later outcome wins
    assert busy.decided
    plain = rules.after_call(ctx(result="busy", attempts=2))
    assert plain == PostCallDecision(retry_in_s=900.0)
    assert rules.after_call(ctx(result="busy", attempts=4)) == PostCallDecision()
    # uncallable stops: the later retry_in: 1h rule does not apply.
    invalid = rules.after_call(ctx(result="invalid_number"))
    assert invalid == PostCallDecision(dnc_list="internal", uncallable="invalid number")
    rejected = rules.after_call(ctx(result="rejected"))
    assert rejected == PostCallDecision(retry_in_s=3600.0, dnc_list="internal")
    # A DNC rule alone decides nothing about the contact.
    m = campaign("rules:\n  - when: after_call\n    then: {dnc: true}\n")
    assert not parse_rules(m).after_call(ctx(result="answered")).decided


def test_after_wrapup() -> None:
    rules = parse_rules(campaign(RULES))
    assert rules.after_wrapup(ctx(result="answered", wrapup_code="WRONG")) == PostCallDecision(
        uncallable="wrong number"
    )
    assert rules.after_wrapup(ctx(wrapup_code="LATER")) == PostCallDecision(
        retry_in_s=7200.0, dnc_list="other"
    )
    # after_call rules are not wrap-up rules, and the other way round.
    assert rules.after_wrapup(ctx(result="busy", attempts=1)) == PostCallDecision()
    assert rules.after_call(ctx(wrapup_code="WRONG")) == PostCallDecision()


# --- limits ---------------------------------------------------------------------------

LIMITS = "limits: {per_contact: {total: 6, per_day: 2}, per_number: {total: 3, per_day: 1}}"


def test_limits_at_their_edges() -> None:
    limits = parse_limits(campaign(LIMITS))
    assert limits == AttemptLimits(6, 2, 3, 1)
    assert limits.check(ctx(attempts=5, attempts_today=1, number_attempts=2)) is None
    assert limits.check(ctx(attempts=6)) == "limits.per_contact.total: 6 attempts, at most 6"
    assert limits.check(ctx(attempts=1, attempts_today=2)) == (
        "limits.per_contact.per_day: 2 attempts today, at most 2"
    )
    assert limits.check(ctx(attempts=3, number_attempts=3)) == (
        "limits.per_number.total: 3 attempts, at most 3"
    )
    assert limits.check(ctx(attempts=1, number_attempts_today=1)) == (
        "limits.per_number.per_day: 1 attempts today, at most 1"
    )
    both = ctx(attempts=6, attempts_today=2)
    assert limits.check(both) == "limits.per_contact.total: 6 attempts, at most 6"
    assert limits.contact_reason(ctx(number_attempts=3)) is None
    assert limits.number_reason(ctx(attempts=6)) is None
    assert AttemptLimits().check(ctx(attempts=10**6)) is None


def test_next_allowed_is_the_next_local_midnight() -> None:
    limits = AttemptLimits(contact_total=6, contact_per_day=2, number_per_day=1)
    late = datetime(2026, 3, 3, 23, 59, 59, tzinfo=LA)  # 07:59:59 UTC on the 4th
    assert limits.next_allowed(ctx(now=late, attempts=1)) == late
    day_over = limits.next_allowed(ctx(now=late, attempts=2, attempts_today=2))
    assert day_over == datetime(2026, 3, 4, 0, 0, tzinfo=LA)
    assert day_over is not None
    assert day_over - late == timedelta(seconds=1)
    number = limits.next_allowed(ctx(now=late, number_attempts_today=1))
    assert number == datetime(2026, 3, 4, 0, 0, tzinfo=LA)
    assert limits.next_allowed(ctx(now=late, attempts=6, attempts_today=2)) is None


def test_local_day_across_dst_and_zones() -> None:
    # 2026-03-08: New York springs forward at 02:00; the day is 23 hours long.
    morning = datetime(2026, 3, 8, 1, 30, tzinfo=NY)
    start, end = start_of_local_day(morning), next_local_midnight(morning)
    assert (start, end) == (datetime(2026, 3, 8, tzinfo=NY), datetime(2026, 3, 9, tzinfo=NY))
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)
    # The same instant is still the 3rd in Los Angeles when it is the 4th in UTC.
    utc = datetime(2026, 3, 4, 7, 30, tzinfo=UTC)
    assert start_of_local_day(utc.astimezone(LA)) == datetime(2026, 3, 3, tzinfo=LA)
    assert start_of_local_day(utc) == datetime(2026, 3, 4, tzinfo=UTC)
    with pytest.raises(ValueError, match="aware"):
        next_local_midnight(datetime(2026, 3, 3, 12, 0))


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("limits: 3", "c.yaml:1: limits", "expected a mapping"),
        (
            "limits: {per_contact: {total: 0}}",
            "c.yaml:1: limits.per_contact.total",
            "must be at least 1",
        ),
        (
            "limits: {per_contact: {total: 2, per_day: 3}}",
            "c.yaml:1: limits.per_contact.per_day",
            "3 is above total (2)",
        ),
        (
            "limits: {per_number: {per_days: 1}}",
            "c.yaml:1: limits.per_number.per_days",
            "unknown field (did you mean 'per_day'?)",
        ),
        ("limits: {per_person: {total: 1}}", "c.yaml:1: limits.per_person", "unknown field"),
        (
            "max_attempts: 3\nlimits: {per_contact: {total: 6}}",
            "c.yaml:2: limits.per_contact.total",
            "max_attempts says the same",
        ),
    ],
)
def test_limit_errors(text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_limits(campaign(text))
    assert str(info.value).startswith(f"{where}: {message}"), str(info.value)


def test_no_limits() -> None:
    assert parse_limits(campaign("max_attempts: 3")) == AttemptLimits()
    assert parse_limits(campaign("limits: {per_number: {per_day: 1}}")) == AttemptLimits(
        number_per_day=1
    )


# --- filter and sort --------------------------------------------------------------------


def test_filter() -> None:
    flt = parse_filter(campaign("filter: \"state in ['CA', 'NY'] and balance >= 100\""))
    assert flt is not None
    assert flt.matches({"state": "CA", "balance": "100"})
    assert not flt.matches({"state": "CA", "balance": "99.99"})
    assert not flt.matches({"state": "TX", "balance": "500"})
    assert not flt.matches({"state": "NY"})  # no balance: null is not >= 100
    assert parse_filter(campaign("name: x")) is None
    with pytest.raises(ConfigError) as info:
        parse_filter(campaign("name: x\nfilter: \"state in ['CA' 'NY']\""))
    assert str(info.value).startswith(
        "c.yaml:2: filter: at column 16: expected ',' or ']' in the list opened at column 10"
    )
    with pytest.raises(ConfigError, match="filter: expected a string"):
        parse_filter(campaign("filter: [a]"))


def test_sort_static_and_dynamic_keys() -> None:
    sort = parse_sort(campaign(
        "sort: [{column: balance, order: desc}, {column: last_attempt_at, order: asc}, name]"
    ))  # fmt: skip
    assert sort is not None
    assert sort.keys == (SortKey("balance", True), SortKey("last_attempt_at"), SortKey("name"))
    assert sort.dynamic
    t = NOW
    people = {
        "rich-old": ctx(attributes={"balance": "900"}, last_attempt_at=t - timedelta(hours=2)),
        "rich-new": ctx(attributes={"balance": "900"}, last_attempt_at=t - timedelta(hours=1)),
        "rich-never": ctx(attributes={"balance": "900.0"}),
        "poor": ctx(attributes={"balance": "10"}),
        "text": ctx(attributes={"balance": "n/a"}),
        "none": ctx(attributes={}),
        "none-b": ctx(attributes={"name": "b"}),
        "none-a": ctx(attributes={"name": "a"}),
    }
    order = sorted(people, key=lambda k: sort.key(people[k]))
    assert order == ["rich-never", "rich-old", "rich-new", "poor", "text", "none-a", "none-b",
                     "none"]  # fmt: skip


def test_sort_descending_text_and_dynamic() -> None:
    sort = parse_sort(campaign("sort: [{column: city, order: desc}, {column: attempts}]"))
    assert sort is not None
    rows = [
        ctx(attributes={"city": "Austin"}, attempts=1),
        ctx(attributes={"city": "Boston"}, attempts=3),
        ctx(attributes={"city": "Boston"}, attempts=0),
        ctx(attributes={"city": "12"}),
        ctx(attributes={}),
    ]
    got = [(r.attributes.get("city"), r.attempts) for r in sorted(rows, key=sort.key)]
    assert got == [("12", 0), ("Boston", 0), ("Boston", 3), ("Austin", 1), (None, 0)]
    last = parse_sort(campaign("sort: [{column: last_result, order: desc}]"))
    assert last is not None
    rs = [ctx(last_result="busy"), ctx(), ctx(last_result="no_answer")]
    assert [r.last_result for r in sorted(rs, key=last.key)] == ["no_answer", "busy", None]
    static = parse_sort(campaign("sort: [zip]"))
    assert static is not None
    assert not static.dynamic
    assert parse_sort(campaign("sort: []")) is None


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("sort: balance", "c.yaml:1: sort", "expected a list"),
        ("sort: [{column: a, order: down}]", "c.yaml:1: sort[0].order", "expected one of asc"),
        ("sort: [{order: asc}]", "c.yaml:1: sort[0].column", "missing"),
        ("sort: [{column: a, direction: asc}]", "c.yaml:1: sort[0].direction", "unknown field"),
        ("sort:\n  - a\n  - [b]", "c.yaml:3: sort[1]", "expected {column"),
        ("sort:\n  - a\n  - {column: a}", "c.yaml:3: sort[1]", "'a' is already a sort key"),
    ],
)
def test_sort_errors(text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sort(campaign(text))
    assert str(info.value).startswith(f"{where}: {message}"), str(info.value)


# --- fuzzing ----------------------------------------------------------------------------

NAMES = ["a", "b", "n", "attempts", "attempts_today", "number_attempts", "last_result",
         "minutes_since_last_attempt", "local_hour", "local_weekday", "result",
         "wrapup_code", "`attempts`", "segment", "missing"]  # fmt: skip
LITERALS = ["1", "-2", "0.5", "1e3", "'busy'", "'monday'", "'x'", "'10'", '"vip"', "true",
            "false", "null", "''"]  # fmt: skip
OPS = ["==", "!=", "<", "<=", ">", ">=", "contains", "startswith", "endswith"]
PIECES = NAMES + LITERALS + OPS + ["and", "or", "not", "in", "(", ")", "[", "]", ",", "=", "-"]
COLUMN_VALUES = st.one_of(st.none(), st.sampled_from(["1", "-2", "0.50", "x", "", "10", "vip",
                          "busy", "nan", "1e400", "TRUE", "no"]), st.text(max_size=5))  # fmt: skip


def values() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NAMES), st.sampled_from(LITERALS))


def lists() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(LITERALS), max_size=4).map(lambda xs: f"[{', '.join(xs)}]")


comparisons = st.one_of(
    st.tuples(values(), st.sampled_from(OPS), values()).map(" ".join),
    st.tuples(values(), st.sampled_from(["in", "not in"]), lists()).map(" ".join),
    st.sampled_from(["true", "false"]),
)
expressions = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(" ".join),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=8,
)
contexts = st.builds(
    RuleContext,
    now=st.datetimes(timezones=st.sampled_from([UTC, NY, LA])),
    attributes=st.dictionaries(
        st.sampled_from(["a", "b", "n", "segment", "attempts"]),
        COLUMN_VALUES.filter(lambda v: v is not None),
    ),
    attempts=st.integers(0, 10),
    attempts_today=st.integers(0, 10),
    number_attempts=st.integers(0, 10),
    number_attempts_today=st.integers(0, 10),
    last_result=st.one_of(st.none(), st.sampled_from(["busy", "no_answer", "x"])),
    last_attempt_at=st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
    result=st.one_of(st.none(), st.sampled_from(["busy", "machine"])),
    wrapup_code=st.one_of(st.none(), st.text(max_size=3)),
)


def evaluate_or_config_error(text: str, phase: str | None, c: RuleContext) -> None:
    try:
        cond = compile_condition(text, phase)
    except ConfigError as exc:
        failure = exc
    else:
        assert type(cond(c.attributes if phase is None else c)) is bool
        return
    assert failure.message.startswith("at column ")
    col = int(failure.message.split()[2].rstrip(":"))
    assert 1 <= col <= len(text) + 1


@settings(max_examples=400, deadline=None)
@given(expressions, st.sampled_from(["before_call", "after_call", "after_wrapup", None]), contexts)
def test_generated_expressions_evaluate_or_raise_config_error(
    text: str, phase: str | None, c: RuleContext
) -> None:
    evaluate_or_config_error(text, phase, c)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12).map(" ".join), contexts)
def test_token_soup_only_raises_config_error(text: str, c: RuleContext) -> None:
    evaluate_or_config_error(text, "after_wrapup", c)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40), contexts)
def test_garbage_only_raises_config_error(text: str, c: RuleContext) -> None:
    evaluate_or_config_error(text, "before_call", c)
    evaluate_or_config_error(text, None, c)


# The specialised comparisons (a name against a literal) must agree with the
# general rule; the reference below is the documented semantics, written plainly.


def reference(op: str, a: Any, b: Any) -> bool:
    def num(v: Any) -> float | None:
        if isinstance(v, bool) or v is None:
            return None
        if isinstance(v, int | float):
            return float(v)
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) and "_" not in v else None

    def truth(v: Any) -> bool | None:
        if isinstance(v, bool):
            return v
        s = str(v).strip().lower()
        return True if s in ("true", "yes", "1") else False if s in ("false", "no", "0") else None

    if op in ("==", "!="):
        if a is None or b is None:
            eq = a is b
        elif isinstance(a, bool) or isinstance(b, bool):
            eq = truth(a) is not None and truth(a) is truth(b)
        elif num(a) is not None and num(b) is not None:
            eq = num(a) == num(b)
        else:
            eq = isinstance(a, str) and isinstance(b, str) and a == b
        return eq if op == "==" else not eq
    if op in ("contains", "startswith", "endswith"):
        if not (isinstance(a, str) and isinstance(b, str)):
            return False
        return {"contains": b in a, "startswith": a.startswith(b), "endswith": a.endswith(b)}[op]
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return False
    na, nb = num(a), num(b)
    pairs = (na, nb) if na is not None and nb is not None else (a, b)
    if (na is None) != (nb is None) or not all(isinstance(x, str | float) for x in pairs):
        return False
    x, y = pairs
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


LITERAL_VALUES: dict[str, Any] = {"1": 1, "-2": -2, "0.5": 0.5, "'x'": "x", "'10'": "10",
                                  "'1e3'": "1e3", "true": True, "false": False, "null": None,
                                  "''": ""}  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(OPS), st.sampled_from(sorted(LITERAL_VALUES)), COLUMN_VALUES,
       st.booleans())  # fmt: skip
def test_name_against_literal_matches_the_reference(
    op: str, literal: str, column: str | None, flipped: bool
) -> None:
    k = LITERAL_VALUES[literal]
    text = f"{literal} {op} a" if flipped else f"a {op} {literal}"
    try:
        cond = compile_condition(text, None)
    except ConfigError:
        assert op in ("<", "<=", ">", ">=", "contains", "startswith", "endswith")
        return
    attrs = {} if column is None else {"a": column}
    expected = reference(op, k, column) if flipped else reference(op, column, k)
    assert cond(attrs) is expected, (text, column)
