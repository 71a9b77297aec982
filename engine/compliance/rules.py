"""A campaign's rules, contact filter, dialling order and attempt limits (pure: no I/O, no clock).

```yaml
filter: "state in ['CA', 'NY'] and balance >= 100"   # which contacts of the list are dialled
sort: [{column: balance, order: desc}, {column: last_attempt_at, order: asc}]
limits: {per_contact: {total: 6, per_day: 2}, per_number: {total: 3, per_day: 1}}
rules:
  - when: before_call                      # before_call, after_call or after_wrapup
    if: "attempts >= 2 and segment == 'vip'"   # optional: no `if` always matches
    then: {caller_id: "+15550100"}         # skip: reason, priority: 10, set: {column: value}
  - when: after_call
    if: "result == 'busy' and attempts < 4"
    then: {retry_in: 15m}       # or move_to: campaign, dnc: {list: internal}, uncallable: reason
```

Conditions (a rule's `if:`, the `filter:`) are the expression language of
engine.compliance.expr; its module doc gives the operators, names and values.

Rules: every matching rule of a phase applies, in file order, a later one
overriding an earlier one field by field (retry_in, move_to and uncallable
are one outcome: the last wins). `skip` and `uncallable` end the phase:
no later rule is looked at (columns `set` before a skip are still set). No
matching rule: the campaign's own settings (retry table, caller ID,
priority) apply unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from types import MappingProxyType
from typing import Any

import yaml

from carriers.sip.errors import SipParseError
from carriers.sip.parser import parse_address
from engine.compliance.expr import (
    _BUILTINS,
    _FALSE,
    _TRUE,
    PHASES,
    Condition,
    RuleContext,
    Test,
    _condition,
    _num,
    compile_condition,
)
from engine.config import ConfigError, _closest, _Node

__all__ = [
    "PHASES", "AttemptLimits", "Condition", "Filter", "PostCallDecision", "PreCallDecision",
    "Rule", "RuleContext", "RuleSet", "Sort", "SortKey", "after_context", "compile_condition",
    "next_local_midnight", "parse_filter", "parse_limits", "parse_rules", "parse_sort",
    "rule_context", "start_of_local_day",
]  # fmt: skip


# --- rules ----------------------------------------------------------------------------

_AFTER_ACTIONS = ("retry_in", "move_to", "dnc", "uncallable")
_ACTIONS = {
    "before_call": ("skip", "caller_id", "priority", "set"),
    "after_call": _AFTER_ACTIONS, "after_wrapup": _AFTER_ACTIONS,
}  # fmt: skip
_OUTCOMES = ("retry_in", "move_to", "uncallable")
_CAMPAIGN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NUMBER_ID_RE = re.compile(r"\+?[0-9]{2,20}")
DEFAULT_DNC_LIST = "internal"


@dataclass(frozen=True, slots=True)
class Rule:
    """One `rules:` entry: when, the condition (None: always) and its actions."""

    when: str
    line: int
    condition: Condition | None = None
    skip: str | None = None
    caller_id: str | None = None
    priority: int | None = None
    set_columns: tuple[tuple[str, str | None], ...] = ()
    retry_in_s: float | None = None
    move_to: str | None = None
    dnc_list: str | None = None
    uncallable: str | None = None


_EMPTY: Mapping[str, str | None] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PreCallDecision:
    """What the before_call rules say; None fields leave the campaign's settings.

    `set_columns` (None: remove the column) is written even when the call is skipped.
    """

    skip_reason: str | None = None
    caller_id: str | None = None
    priority: int | None = None
    set_columns: Mapping[str, str | None] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class PostCallDecision:
    """What the after_call / after_wrapup rules say: at most one of retry_in_s,
    move_to and uncallable; dnc_list puts the number called on the DNC list."""

    retry_in_s: float | None = None
    move_to: str | None = None
    dnc_list: str | None = None
    uncallable: str | None = None

    @property
    def decided(self) -> bool:
        """A rule chose the contact's next step (else the campaign's retry table does)."""
        return (
            self.retry_in_s is not None or self.move_to is not None or self.uncallable is not None
        )


_NO_PRE, _NO_POST = PreCallDecision(), PostCallDecision()


class RuleSet:
    """A campaign's rules by phase; see the module doc for the semantics."""

    __slots__ = ("_phases", "rules", "warnings")

    def __init__(self, rules: tuple[Rule, ...] = (), warnings: tuple[str, ...] = ()) -> None:
        self.rules, self.warnings = rules, warnings
        self._phases = {
            p: tuple((r.condition.test if r.condition else None, r) for r in rules if r.when == p)
            for p in PHASES
        }

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def move_targets(self) -> frozenset[str]:
        """The campaigns named by move_to (the loader checks that they exist)."""
        return frozenset(r.move_to for r in self.rules if r.move_to is not None)

    def before_call(self, ctx: RuleContext) -> PreCallDecision:
        skip = caller_id = priority = None
        columns: dict[str, str | None] | None = None
        for test, rule in self._phases["before_call"]:
            if test is not None and not test(ctx):
                continue
            if rule.caller_id is not None:
                caller_id = rule.caller_id
            if rule.priority is not None:
                priority = rule.priority
            if rule.set_columns:
                columns = columns or {}
                columns.update(rule.set_columns)
            if rule.skip is not None:
                skip = rule.skip
                break
        if skip is None and caller_id is None and priority is None and columns is None:
            return _NO_PRE
        return PreCallDecision(skip, caller_id, priority, columns or _EMPTY)

    def after_call(self, ctx: RuleContext) -> PostCallDecision:
        """The after_call rules, on `ctx.result` (the counts include this call)."""
        return self._after(self._phases["after_call"], ctx)

    def after_wrapup(self, ctx: RuleContext) -> PostCallDecision:
        """The after_wrapup rules, on `ctx.wrapup_code` (and the call's `result`)."""
        return self._after(self._phases["after_wrapup"], ctx)

    @staticmethod
    def _after(rules: tuple[tuple[Test | None, Rule], ...], ctx: RuleContext) -> PostCallDecision:
        retry = move = dnc = uncallable = None
        matched = False
        for test, rule in rules:
            if test is not None and not test(ctx):
                continue
            matched = True
            if rule.dnc_list is not None:
                dnc = rule.dnc_list
            if rule.retry_in_s is not None:
                retry, move = rule.retry_in_s, None
            elif rule.move_to is not None:
                retry, move = None, rule.move_to
            elif rule.uncallable is not None:
                retry, move, uncallable = None, None, rule.uncallable
                break
        return PostCallDecision(retry, move, dnc, uncallable) if matched else _NO_POST


def parse_rules(m: _Node, *, wrapup_codes: Collection[str] | None = None) -> RuleSet:
    """The campaign's `rules:` list; `wrapup_codes`, when given, checks wrapup_code literals."""
    node = m.present("rules")
    if node is None:
        return RuleSet()
    if not isinstance(node, yaml.SequenceNode):
        raise m.error("rules", "expected a list of rules, each {when, if, then}")
    rules: list[Rule] = []
    for index, item in enumerate(node.value):
        where = m.field(f"rules[{index}]")
        if not isinstance(item, yaml.MappingNode):
            line = item.start_mark.line + 1
            raise ConfigError(m.file, line, where, "expected a mapping with when, if and then")
        rules.append(_rule(_Node(m.file, item, where), wrapup_codes))
    warnings = tuple(w for r in rules if r.condition for w in r.condition.warnings)
    return RuleSet(tuple(rules), warnings)


def _rule(r: _Node, codes: Collection[str] | None) -> Rule:
    r.check_keys({"when", "if", "then"})
    when = r.required_text("when").strip()
    if when not in PHASES:
        hint = _closest(when, set(PHASES))
        extra = f" (did you mean {hint!r}?)" if hint else ""
        raise r.error("when", f"expected one of {', '.join(PHASES)}; got {when!r}{extra}")
    condition = _condition(r, "if", when, codes)
    allowed = _ACTIONS[when]
    then = r.mapping("then")
    if then is None or not then.items:
        raise r.error("then", f"missing: what the rule does (one of {', '.join(allowed)})")
    for key in then.items:
        other = next((p for p, actions in _ACTIONS.items() if key in actions), None)
        if other is not None and key not in allowed:
            raise then.error(key, f"{key} is an {other} action; a {when} rule may do "
                                  f"{', '.join(allowed)}")  # fmt: skip
    then.check_keys(set(allowed))
    if when == "before_call":
        return _before_rule(then, when, r.line, condition)
    outcomes = [k for k in then.items if k in _OUTCOMES]
    if len(outcomes) > 1:
        raise then.error(outcomes[1], f"{outcomes[0]} and {outcomes[1]} are two outcomes; a "
                                      "rule has one of retry_in, move_to, uncallable")  # fmt: skip
    return Rule(
        when, r.line, condition, retry_in_s=then.duration("retry_in"),
        move_to=_move_to(then), dnc_list=_dnc(then), uncallable=_reason(then, "uncallable"),
    )  # fmt: skip


def _before_rule(then: _Node, when: str, line: int, condition: Condition | None) -> Rule:
    skip = _reason(then, "skip")
    if skip is not None:
        for key in ("caller_id", "priority"):
            if key in then.items:
                raise then.error(key, "the call is skipped, so this does nothing; "
                                      "put it in a rule of its own")  # fmt: skip
    return Rule(
        when, line, condition, skip=skip, caller_id=caller_id_field(then),
        priority=then.scalar("priority", int), set_columns=_set_columns(then),
    )  # fmt: skip


def _reason(m: _Node, key: str) -> str | None:
    text = m.text(key)
    if text is not None and not text.strip():
        raise m.error(key, "expected a reason (text), got nothing")
    return None if text is None else text.strip()


def caller_id_field(m: _Node) -> str | None:
    """`caller_id` of a mapping (a campaign, a rule's `then`): a number, or
    'Name <sip:user@host>'; None when absent."""
    text = m.text("caller_id")
    if text is None:
        return None
    text = text.strip()
    if "<" in text or "sip:" in text or "sips:" in text:
        try:
            parse_address(text)
        except SipParseError as exc:
            raise m.error("caller_id", f"expected 'Name <sip:user@host>' ({exc})") from None
    elif not _NUMBER_ID_RE.fullmatch(text):
        raise m.error("caller_id", f"expected a number like +15551234567 or "
                                   f"'Name <sip:user@host>', got {text!r}")  # fmt: skip
    return text


def _set_columns(m: _Node) -> tuple[tuple[str, str | None], ...]:
    node = m.mapping("set")
    if node is None:
        return ()
    if not node.items:
        raise m.error("set", "expected at least one column: value")
    columns: list[tuple[str, str | None]] = []
    for column, value in node.items.items():
        if column in _BUILTINS:
            raise node.error(column, f"{column} is kept by the dialer, not a contact column")
        if node.present(column) is None:
            columns.append((column, None))
        elif isinstance(value, yaml.ScalarNode):
            columns.append((column, str(value.value)))
        else:
            raise node.error(column, "expected a text value, or null to remove the column")
    return tuple(columns)


def _move_to(m: _Node) -> str | None:
    name = m.text("move_to")
    if name is not None and not _CAMPAIGN_RE.fullmatch(name.strip()):
        raise m.error("move_to", f"expected a campaign name, got {name!r}")
    return None if name is None else name.strip()


def _dnc(m: _Node) -> str | None:
    node = m.present("dnc")
    if node is None:
        return None
    if isinstance(node, yaml.MappingNode):
        d = m.mapping("dnc")
        assert d is not None
        d.check_keys({"list"})
        name = (d.text("list") or DEFAULT_DNC_LIST).strip()
        key, where = "list", d
    elif isinstance(node, yaml.ScalarNode):
        name = str(node.value).strip()
        if name.lower() in _FALSE:
            raise m.error("dnc", "false does nothing; remove it")
        name = DEFAULT_DNC_LIST if name.lower() in _TRUE else name
        key, where = "dnc", m
    else:
        raise m.error("dnc", "expected true, a list name, or {list: name}")
    if not _CAMPAIGN_RE.fullmatch(name):
        raise where.error(key, f"expected a list name like {DEFAULT_DNC_LIST}, got {name!r}")
    return name


# --- limits ---------------------------------------------------------------------------


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be aware, in the contact's own time zone")
    return now


def start_of_local_day(now: datetime) -> datetime:
    """Midnight that began `now`'s day, in `now`'s zone ("today" for per-day counts)."""
    return datetime.combine(_aware(now).date(), time(0), tzinfo=now.tzinfo)


def next_local_midnight(now: datetime) -> datetime:
    """The next midnight in `now`'s zone, when per-day limits lift (DST days are 23 or 25 h)."""
    return datetime.combine(_aware(now).date() + timedelta(days=1), time(0), tzinfo=now.tzinfo)


@dataclass(frozen=True, slots=True)
class AttemptLimits:
    """At most so many attempts per contact and per number, in total and per local day."""

    contact_total: int | None = None
    contact_per_day: int | None = None
    number_total: int | None = None
    number_per_day: int | None = None

    def contact_reason(self, ctx: RuleContext) -> str | None:
        """Why the contact may not be called now (totals first), or None."""
        return _over("per_contact.total", ctx.attempts, self.contact_total, "") or _over(
            "per_contact.per_day", ctx.attempts_today, self.contact_per_day, " today"
        )

    def number_reason(self, ctx: RuleContext) -> str | None:
        """Why the number in `ctx` may not be called now, or None."""
        return _over("per_number.total", ctx.number_attempts, self.number_total, "") or _over(
            "per_number.per_day", ctx.number_attempts_today, self.number_per_day, " today"
        )

    def check(self, ctx: RuleContext) -> str | None:
        """The reason a limit is reached (the contact's before the number's), or None."""
        return self.contact_reason(ctx) or self.number_reason(ctx)

    def next_allowed(self, ctx: RuleContext) -> datetime | None:
        """When the limits next allow this call: `ctx.now` if none is reached, the
        next local midnight if only per-day ones are, None if a total is (never)."""
        if _reached(ctx.attempts, self.contact_total) or _reached(
            ctx.number_attempts, self.number_total
        ):
            return None
        if _reached(ctx.attempts_today, self.contact_per_day) or _reached(
            ctx.number_attempts_today, self.number_per_day
        ):
            return next_local_midnight(ctx.now)
        return ctx.now


def _reached(count: int, limit: int | None) -> bool:
    return limit is not None and count >= limit


def _over(name: str, count: int, limit: int | None, when: str) -> str | None:
    if limit is None or count < limit:
        return None
    return f"limits.{name}: {count} attempts{when}, at most {limit}"


def parse_limits(m: _Node) -> AttemptLimits:
    """The campaign's `limits:` (absent: no limits beyond max_attempts)."""
    node = m.mapping("limits")
    if node is None:
        return AttemptLimits()
    node.check_keys({"per_contact", "per_number"})
    values: list[int | None] = []
    for scope in ("per_contact", "per_number"):
        s = node.mapping(scope)
        if s is None:
            values += [None, None]
            continue
        s.check_keys({"total", "per_day"})
        total, per_day = s.number("total", int, None, low=1), s.number("per_day", int, None, low=1)
        if total is not None and per_day is not None and per_day > total:
            raise s.error("per_day", f"{per_day} is above total ({total}): it would never apply")
        if scope == "per_contact" and total is not None and m.present("max_attempts") is not None:
            raise s.error("total", "max_attempts says the same; give only one of them")
        values += [total, per_day]
    return AttemptLimits(*values)


# --- filter and sort ------------------------------------------------------------------


class Filter:
    """Which contacts of the list a campaign dials (the `filter:` condition)."""

    __slots__ = ("condition",)

    def __init__(self, condition: Condition) -> None:
        self.condition = condition

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.condition.warnings

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return self.condition.test(attributes)


def parse_filter(m: _Node) -> Filter | None:
    """The campaign's `filter:`; its names are all columns of the list."""
    condition = _condition(m, "filter", None, None)
    return None if condition is None else Filter(condition)


DYNAMIC_SORT_KEYS = ("last_attempt_at", "attempts", "attempts_today", "last_result")


@dataclass(frozen=True, slots=True)
class SortKey:
    column: str
    descending: bool = False

    @property
    def dynamic(self) -> bool:
        """Changes as results come in (the batch must be sorted again)."""
        return self.column in DYNAMIC_SORT_KEYS


class _Desc:
    """Text in reverse order, for a descending key."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.text == other.text

    def __lt__(self, other: _Desc) -> bool:
        return self.text > other.text

    __hash__ = None  # type: ignore[assignment]


SortPart = Callable[[RuleContext], tuple[int, Any]]


def _sort_part(key: SortKey) -> SortPart:
    sign, desc, name = (-1 if key.descending else 1), key.descending, key.column
    if name == "last_attempt_at":
        # Never attempted sorts as the oldest: first ascending, last descending.
        return lambda c: (
            0,
            sign * (c.last_attempt_at.timestamp() if c.last_attempt_at else -math.inf),
        )
    if name in ("attempts", "attempts_today"):
        return lambda c: (0, sign * getattr(c, name))

    def part(c: RuleContext) -> tuple[int, Any]:
        # Numbers, then text, then missing, in either order.
        v = c.last_result if name == "last_result" else c.attributes.get(name)
        if v is None:
            return (2, 0)
        n = _num(v) if name != "last_result" else None
        if n is not None:
            return (0, sign * n)
        return (1, _Desc(v) if desc else v)

    return part


class Sort:
    """The dialling order: `key(ctx)` is a tuple for sorted(), column keys and dynamic ones."""

    __slots__ = ("_parts", "keys")

    def __init__(self, keys: tuple[SortKey, ...]) -> None:
        self.keys, self._parts = keys, tuple(_sort_part(k) for k in keys)

    @property
    def dynamic(self) -> bool:
        return any(k.dynamic for k in self.keys)

    def key(self, ctx: RuleContext) -> tuple[Any, ...]:
        out: list[Any] = []
        for part in self._parts:
            out.extend(part(ctx))
        return tuple(out)


def parse_sort(m: _Node) -> Sort | None:
    """The campaign's `sort:` list of {column, order: asc|desc} (or bare column names)."""
    node = m.present("sort")
    if node is None:
        return None
    if not isinstance(node, yaml.SequenceNode):
        raise m.error("sort", "expected a list like [{column: balance, order: desc}]")
    keys: list[SortKey] = []
    for index, item in enumerate(node.value):
        where = m.field(f"sort[{index}]")
        if isinstance(item, yaml.ScalarNode) and str(item.value).strip():
            key = SortKey(str(item.value).strip())
        elif isinstance(item, yaml.MappingNode):
            s = _Node(m.file, item, where)
            s.check_keys({"column", "order"})
            column = s.required_text("column").strip()
            if not column:
                raise s.error("column", "must not be empty")
            key = SortKey(column, s.choice("order", ("asc", "desc"), "asc") == "desc")
        else:
            line = item.start_mark.line + 1
            raise ConfigError(m.file, line, where, "expected {column: name, order: asc|desc}")
        if any(k.column == key.column for k in keys):
            raise ConfigError(m.file, item.start_mark.line + 1, where,
                              f"{key.column!r} is already a sort key")  # fmt: skip
        keys.append(key)
    return Sort(tuple(keys)) if keys else None


def rule_context(
    now: datetime,
    attributes: Mapping[str, str],
    history: Sequence[tuple[datetime, str, str | None, int]],
    number: str,
) -> RuleContext:
    """The context before a call to `number`: `history` is every attempt at the
    contact, oldest first, as (created_at, number, result, campaign id);
    `now` is aware, in the contact's zone ("today" is its local day)."""
    day = start_of_local_day(now)
    today = [h for h in history if h[0] >= day]
    last = history[-1] if history else None
    return RuleContext(
        now=now, attributes=attributes, attempts=len(history), attempts_today=len(today),
        number_attempts=sum(1 for h in history if h[1] == number),
        number_attempts_today=sum(1 for h in today if h[1] == number),
        last_result=last[2] if last else None, last_attempt_at=last[0] if last else None,
    )  # fmt: skip


def after_context(before: RuleContext, result: str, now: datetime) -> RuleContext:
    """The context after the call `before` was made for: its counts include it."""
    return replace(
        before, now=now.astimezone(before.now.tzinfo), attempts=before.attempts + 1,
        attempts_today=before.attempts_today + 1, number_attempts=before.number_attempts + 1,
        number_attempts_today=before.number_attempts_today + 1, last_result=result,
        last_attempt_at=now, result=result,
    )  # fmt: skip
