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

Conditions are a small expression language compiled once into closures
(never `eval`): `== != < <= > >=`, `in [..]`, `not in [..]`, `contains`,
`startswith`, `endswith` (text), `and`, `or`, `not`, parentheses, and the
literals 'text' / "text" (backslash escapes), numbers, true, false, null.
A name is a contact column, or a built-in: attempts, attempts_today,
number_attempts, number_attempts_today, last_result,
minutes_since_last_attempt (null if never called), local_hour (0-23),
local_weekday ('monday'..'sunday'), result (after_call, after_wrapup) and
wrapup_code (after_wrapup). A built-in hides a column of the same name;
`` `attempts` `` in backticks is always the column, as is any name in a
filter. A missing column is null. A name close to a built-in compiles with
a did-you-mean warning; a built-in compared with what it can never hold
('bussy', attempts > 'x', local_weekday == 'mon') is an error.

Values: columns are text; two values compare as numbers when both read as
finite numbers ("0100" == 100), else as text when both are text; text
against a number is never equal and never ordered. Null equals only null and
orders with nothing (`balance > 5` is false when there is no balance). true
and false match the texts true/yes/1 and false/no/0 in any case.

Rules: every matching rule of a phase applies, in file order, a later one
overriding an earlier one field by field (retry_in, move_to and uncallable
are one outcome: the last wins). `skip` and `uncallable` end the phase:
no later rule is looked at (columns `set` before a skip are still set). No
matching rule: the campaign's own settings (retry table, caller ID,
priority) apply unchanged.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from types import MappingProxyType
from typing import Any

import yaml

from carriers.sip.errors import SipParseError
from carriers.sip.outcome import CallResult
from carriers.sip.parser import parse_address
from engine.compliance.hours import DAYS
from engine.config import ConfigError, _closest, _Node

__all__ = [
    "PHASES", "AttemptLimits", "Condition", "Filter", "PostCallDecision", "PreCallDecision",
    "Rule", "RuleContext", "RuleSet", "Sort", "SortKey", "after_context", "compile_condition",
    "next_local_midnight", "parse_filter", "parse_limits", "parse_rules", "parse_sort",
    "rule_context", "start_of_local_day",
]  # fmt: skip

PHASES = ("before_call", "after_call", "after_wrapup")
Test = Callable[[Any], bool]
Getter = Callable[[Any], Any]


@dataclass(slots=True)
class RuleContext:
    """What a rule, a limit or a sort key sees of one contact (and one of its numbers).

    `now` is aware and in the contact's own zone (local_hour, local_weekday
    and "today" come from it). After a call the counts include that call and
    `last_result` / `last_attempt_at` are its own; `result` is set after a call,
    `wrapup_code` after a wrap-up. The number counts are for the number about
    to be (or just) dialled.
    """

    now: datetime
    attributes: Mapping[str, str] = field(default_factory=dict)
    attempts: int = 0
    attempts_today: int = 0
    number_attempts: int = 0
    number_attempts_today: int = 0
    last_result: str | None = None
    last_attempt_at: datetime | None = None
    result: str | None = None
    wrapup_code: str | None = None


# --- values ---------------------------------------------------------------------------

_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


def _num(value: Any) -> Any:
    """The value as a number when it is one or its text reads as a finite one; else None."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    if kind is str:
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) and "_" not in value else None
    return None


def _as_bool(value: Any) -> bool | None:
    if type(value) is bool:
        return value
    text = str(value).strip().lower() if value is not None else None
    return True if text in _TRUE else False if text in _FALSE else None


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if type(a) is bool or type(b) is bool:
        x, y = _as_bool(a), _as_bool(b)
        return x is not None and x is y
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return bool(na == nb)
    return type(a) is str and type(b) is str and a == b


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_TEXT_OPS: dict[str, Callable[[str, str], bool]] = {
    "contains": operator.contains, "startswith": str.startswith, "endswith": str.endswith,
}  # fmt: skip


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op in _TEXT_OPS:
        return type(a) is str and type(b) is str and _TEXT_OPS[op](a, b)
    if type(a) is bool or type(b) is bool:
        return False
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return _ORDER[op](na, nb)
    return type(a) is str and type(b) is str and na is None and nb is None and _ORDER[op](a, b)


def _against(get: Getter, op: str, k: Any) -> Test:
    """`get(ctx) op k` for a literal k, specialised (the hot path of a rule)."""
    if op == "!=":
        eq = _against(get, "==", k)
        return lambda c: not eq(c)
    if k is None:
        return lambda c: get(c) is None
    if type(k) is bool:
        return lambda c: _as_bool(get(c)) is k
    if op in _TEXT_OPS:
        fn = _TEXT_OPS[op]
        return lambda c: type(v := get(c)) is str and fn(v, k)
    kn = _num(k)
    if kn is not None:
        if op == "==":
            return lambda c: (n := _num(get(c))) is not None and n == kn
        order = _ORDER[op]
        return lambda c: (n := _num(get(c))) is not None and order(n, kn)
    if op == "==":
        return lambda c: bool(get(c) == k)
    order = _ORDER[op]
    return lambda c: type(v := get(c)) is str and order(v, k) and _num(v) is None


def _member(get: Getter, items: list[Any]) -> Test:
    """`get(ctx) in [items]`: the same equality as ==, with sets."""
    texts = frozenset(i for i in items if type(i) is str and _num(i) is None)
    numbers = frozenset(float(n) for i in items if (n := _num(i)) is not None)
    bools = frozenset(i for i in items if type(i) is bool)
    has_null = any(i is None for i in items)

    def test(c: Any) -> bool:
        v = get(c)
        if v is None:
            return has_null
        if v in texts and type(v) is str:
            return True
        n = _num(v)
        if n is not None and n in numbers:
            return True
        return bool(bools) and _as_bool(v) in bools

    return test


def _all(parts: list[Test]) -> Test:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda c: a(c) and b(c)
    many = tuple(parts)
    return lambda c: all(p(c) for p in many)


def _any(parts: list[Test]) -> Test:
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda c: a(c) or b(c)
    many = tuple(parts)
    return lambda c: any(p(c) for p in many)


# --- names ----------------------------------------------------------------------------


def _minutes_since(c: RuleContext) -> float | None:
    last = c.last_attempt_at
    return None if last is None else (c.now - last).total_seconds() / 60.0


_RESULTS = frozenset(r.value for r in CallResult)
# name: (kind, getter, the phases that know it)
_BUILTINS: dict[str, tuple[str, Getter, tuple[str, ...]]] = {
    "attempts": ("number", lambda c: c.attempts, PHASES),
    "attempts_today": ("number", lambda c: c.attempts_today, PHASES),
    "number_attempts": ("number", lambda c: c.number_attempts, PHASES),
    "number_attempts_today": ("number", lambda c: c.number_attempts_today, PHASES),
    "last_result": ("result", lambda c: c.last_result, PHASES),
    "minutes_since_last_attempt": ("number", _minutes_since, PHASES),
    "local_hour": ("number", lambda c: c.now.hour, PHASES),
    "local_weekday": ("weekday", lambda c: DAYS[c.now.weekday()], PHASES),
    "result": ("result", lambda c: c.result, PHASES[1:]),
    "wrapup_code": ("code", lambda c: c.wrapup_code, PHASES[2:]),
}
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null", *_TEXT_OPS})
_LITERAL_WORDS = {"true": True, "false": False, "null": None}


class _ExprError(Exception):
    def __init__(self, col: int, message: str) -> None:
        super().__init__(message)
        self.col, self.message = col, message


class _Scope:
    """How names resolve: a rule phase (built-ins and columns) or a filter (columns only)."""

    def __init__(self, phase: str | None, codes: Collection[str] | None = None) -> None:
        self.phase, self.codes = phase, codes
        self.warnings: list[tuple[int, str]] = []

    def resolve(self, name: str, col: int, quoted: bool) -> tuple[Getter, str]:
        if not quoted and name.lower() in ("true", "false", "null", "none") and name != "none":
            word = "null" if name.lower() == "none" else name.lower()
            raise _ExprError(col, f"write {word} in lower case (or `{name}` for a column)")
        builtin = None if quoted else _BUILTINS.get(name)
        if builtin is not None and self.phase is not None:
            kind, getter, phases = builtin
            if self.phase not in phases:
                raise _ExprError(col, _unknown_here(name, self.phase))
            return getter, kind
        if builtin is not None:
            self.warnings.append((col, f"{name!r} is read as a contact column: a filter "
                                       "sees only the list's columns"))  # fmt: skip
        elif not quoted and (hint := _closest(name, set(_BUILTINS))) is not None:
            self.warnings.append((col, f"{name!r} is read as a contact column; "
                                       f"did you mean {hint!r}?"))  # fmt: skip
        if self.phase is None:
            return (lambda a: a.get(name)), "column"
        return (lambda c: c.attributes.get(name)), "column"


def _unknown_here(name: str, phase: str) -> str:
    if name == "result":
        return (
            "result is known only after a call (when: after_call or after_wrapup); "
            "before a call use last_result"
        )
    return f"{name} is known only after a wrap-up (when: after_wrapup), not in {phase}"


# --- tokens ---------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NAME_RE = re.compile(r"[^\W\d]\w*")
_OPS = ("==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",", "-", "=")
_HINTS = {"&": "use 'and'", "|": "use 'or'", "!": "use 'not' (or '!=')"}


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # num, name, column (in backticks), str, op, end
    text: str  # as written (for messages); the value for str and column
    col: int  # 1-based


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "'\"":
            value, end = _string(text, i)
            toks.append(_Tok("str", value, i + 1))
            i = end
        elif ch == "`":
            end = text.find("`", i + 1)
            if end < 0 or end == i + 1:
                raise _ExprError(i + 1, "expected a column name between backticks")
            toks.append(_Tok("column", text[i + 1 : end], i + 1))
            i = end + 1
        elif m := _NUMBER_RE.match(text, i):
            if (after := _NAME_RE.match(text, m.end())) is not None:
                word = text[i : after.end()]
                raise _ExprError(i + 1, f"{word!r} is not a number (nor a name: names start "
                                        "with a letter)")  # fmt: skip
            toks.append(_Tok("num", m.group(), i + 1))
            i = m.end()
        elif m := _NAME_RE.match(text, i):
            toks.append(_Tok("name", m.group(), i + 1))
            i = m.end()
        else:
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is None:
                hint = _HINTS.get(ch)
                raise _ExprError(
                    i + 1, f"unexpected character {ch!r}" + (f"; {hint}" if hint else "")
                )
            toks.append(_Tok("op", op, i + 1))
            i += len(op)
    toks.append(_Tok("end", "the end", n + 1))
    return toks


def _string(text: str, start: int) -> tuple[str, int]:
    """The quoted text at `start` (backslash escapes the next character) and the index after it."""
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise _ExprError(start + 1, "unterminated string: no closing quote for the one here")


# --- the parser: a condition compiled to closures ----------------------------------------

_NOTHING: Any = object()
_MAX_DEPTH = 50  # parentheses and `not`s: deep enough for any real rule, and no RecursionError


@dataclass(slots=True)
class _Operand:
    col: int
    text: str
    get: Getter | None = None
    kind: str = "literal"
    const: Any = _NOTHING


class _Parser:
    """Recursive descent over the tokens; each production returns a compiled test.

    condition := and ('or' and)*          and := not ('and' not)*
    not := 'not' not | '(' condition ')' | comparison
    comparison := value (op value | ['not'] 'in' list | textop 'text') | true | false
    """

    def __init__(self, text: str, scope: _Scope) -> None:
        self.toks, self.i, self.scope, self.depth = _tokenize(text), 0, scope, 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def word(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "name" and tok.text in words

    def parse(self) -> Test:
        if self.peek().kind == "end":
            raise _ExprError(1, "empty condition")
        test = self.any_of()
        tok = self.peek()
        if tok.kind != "end":
            raise _ExprError(tok.col, _trailing(tok))
        return test

    def nest(self, col: int) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _ExprError(col, f"nested too deeply (at most {_MAX_DEPTH} levels)")

    def any_of(self) -> Test:
        parts = [self.all_of()]
        while self.word("or"):
            self.take()
            parts.append(self.all_of())
        return _any(parts)

    def all_of(self) -> Test:
        parts = [self.negation()]
        while self.word("and"):
            self.take()
            parts.append(self.negation())
        return _all(parts)

    def negation(self) -> Test:
        tok = self.peek()
        if self.word("not"):
            self.take()
            self.nest(tok.col)
            inner = self.negation()
            self.depth -= 1
            return lambda c: not inner(c)
        if tok.kind == "op" and tok.text == "(":
            self.take()
            self.nest(tok.col)
            inner = self.any_of()
            close = self.take()
            if close.text != ")" or close.kind != "op":
                raise _ExprError(close.col, f"expected ')' to close the '(' at column {tok.col}, "
                                            f"got {_shown(close)}")  # fmt: skip
            self.depth -= 1
            after = self.peek()
            if after.kind == "op" and after.text in _FLIP:
                raise _ExprError(after.col, "a condition in parentheses cannot be compared")
            return inner
        return self.comparison()

    def comparison(self) -> Test:
        left = self.value(None)
        tok = self.peek()
        if tok.kind == "op" and tok.text in _FLIP:
            self.take()
            test = self.compare(left, tok.text, self.value(tok.text), tok.col)
        elif tok.kind == "op" and tok.text == "=":
            raise _ExprError(tok.col, "'=' is not a comparison; use '=='")
        elif self.word("in"):
            self.take()
            test = self.member(left, tok)
        elif self.word("not"):
            self.take()
            if not self.word("in"):
                raise _ExprError(
                    self.peek().col, f"expected 'in' after 'not', got {_shown(self.peek())}"
                )
            inside = self.member(left, self.take())
            test = lambda c: not inside(c)  # noqa: E731
        elif self.word(*_TEXT_OPS):
            self.take()
            right = self.value(tok.text)
            if type(right.const) is not str:
                raise _ExprError(right.col, f"expected quoted text after '{tok.text}'")
            test = self.compare(left, tok.text, right, tok.col)
        elif type(left.const) is bool:
            constant = left.const
            return lambda c: constant
        else:
            raise _ExprError(left.col, f"{left.text} is a value, not a condition: compare it "
                                       "(==, !=, <, <=, >, >=, in, contains)")  # fmt: skip
        after = self.peek()
        if (after.kind == "op" and after.text in _FLIP) or self.word("in", *_TEXT_OPS):
            raise _ExprError(after.col, "comparisons cannot be chained; join them with 'and'")
        return test

    def value(self, after: str | None) -> _Operand:
        tok = self.take()
        expected = f"expected a value after '{after}'" if after else "expected a value"
        if tok.kind == "op" and tok.text == "-" and self.peek().kind == "num":
            number = self.take()
            return _Operand(tok.col, "-" + number.text, const=-_number(number))
        if tok.kind == "num":
            return _Operand(tok.col, tok.text, const=_number(tok))
        if tok.kind == "str":
            return _Operand(tok.col, repr(tok.text), const=tok.text)
        if tok.kind == "name" and tok.text in _LITERAL_WORDS:
            return _Operand(tok.col, tok.text, const=_LITERAL_WORDS[tok.text])
        if tok.kind == "end" or (tok.kind == "name" and tok.text in _KEYWORDS) or tok.kind == "op":
            raise _ExprError(
                tok.col, expected if tok.kind == "end" else f"{expected}, got {_shown(tok)}"
            )
        get, kind = self.scope.resolve(tok.text, tok.col, tok.kind == "column")
        return _Operand(tok.col, tok.text, get=get, kind=kind)

    def member(self, left: _Operand, word: _Tok) -> Test:
        opening = self.take()
        if opening.kind != "op" or opening.text != "[":
            raise _ExprError(
                opening.col, f"expected a list like ['a', 'b'] after 'in', got {_shown(opening)}"
            )
        items: list[_Operand] = []
        while not (self.peek().kind == "op" and self.peek().text == "]"):
            item = self.value("[" if not items else ",")
            if item.get is not None:
                raise _ExprError(item.col, "a list holds literal values ('text', numbers, true, "
                                           f"false, null), not the name {item.text!r}")  # fmt: skip
            items.append(item)
            sep = self.peek()
            if sep.kind == "op" and sep.text == ",":
                self.take()
            elif not (sep.kind == "op" and sep.text == "]"):
                raise _ExprError(sep.col, f"expected ',' or ']' in the list opened at column "
                                          f"{opening.col}, got {_shown(sep)}")  # fmt: skip
        self.take()
        for item in items:
            _check(left, "==", item, self.scope.codes)
        values = [i.const for i in items]
        if left.get is None:
            found = any(_equal(left.const, v) for v in values)
            return lambda c: found
        return _member(left.get, values)

    def compare(self, left: _Operand, op: str, right: _Operand, col: int) -> Test:
        if left.get is None and right.get is None:
            for a, b in ((left, right), (right, left)):
                _check(a, op, b, self.scope.codes)
            constant = _compare(op, left.const, right.const)
            return lambda c: constant
        if left.get is None and op not in _TEXT_OPS:
            left, right, op = right, left, _FLIP[op]
        if right.get is None and left.get is not None:
            _check(left, op, right, self.scope.codes)
            return _against(left.get, op, right.const)
        _check(left, op, right, self.scope.codes)
        _check(right, op, left, self.scope.codes)
        lget = left.get or _constant(left.const)
        rget = right.get or _constant(right.const)
        return lambda c: _compare(op, lget(c), rget(c))


def _constant(value: Any) -> Getter:
    return lambda c: value


def _number(tok: _Tok) -> float | int:
    value = float(tok.text)
    if not math.isfinite(value):
        raise _ExprError(tok.col, f"number out of range: {tok.text[:20]}")
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _shown(tok: _Tok) -> str:
    return "the end" if tok.kind == "end" else repr(tok.text)


def _trailing(tok: _Tok) -> str:
    hint = ""
    if tok.kind == "name" and tok.text.lower() in _KEYWORDS:
        hint = f" (keywords are lower case: {tok.text.lower()!r})"
    return f"unexpected {_shown(tok)}{hint}; expected 'and', 'or' or the end of the condition"


_NAMED = {"result": ("a call result", _RESULTS), "weekday": ("a day name", frozenset(DAYS))}


def _check(name: _Operand, op: str, lit: _Operand, codes: Collection[str] | None) -> None:
    """Reject comparisons of a built-in with a literal it can never hold (a typo never matches)."""
    if lit.get is not None:
        return
    value, ordered = lit.const, op in _ORDER
    if ordered and (value is None or type(value) is bool):
        raise _ExprError(lit.col, f"{lit.text} has no order; compare it with == or !=")
    kind = name.kind
    if kind == "number":
        if op in _TEXT_OPS:
            raise _ExprError(lit.col, f"'{op}' needs text; {name.text} is a number")
        if type(value) is bool or (type(value) is str and _num(value) is None):
            raise _ExprError(lit.col, f"{name.text} is a number; {lit.text} is not one")
    elif kind in _NAMED and value is not None:
        what, known = _NAMED[kind]
        if ordered or op in _TEXT_OPS:
            raise _ExprError(lit.col, f"{name.text} is {what}: compare it with ==, != or in")
        if value not in known:
            hint = _closest(str(value), set(known))
            extra = f" (did you mean {hint!r}?)" if hint else ""
            raise _ExprError(
                lit.col, f"{lit.text} is not {what}{extra}; known: {', '.join(sorted(known))}"
            )
    elif kind == "code" and name.get is not None and value is not None:
        if codes is not None and value not in codes:
            hint = _closest(str(value), set(codes))
            extra = f" (did you mean {hint!r}?)" if hint else ""
            raise _ExprError(lit.col, f"no wrap-up code {lit.text} in dialing.wrapup_codes{extra}")


# --- conditions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: `test(ctx)` (a RuleContext; a filter's takes the attributes)."""

    text: str
    test: Test = field(repr=False, compare=False)
    warnings: tuple[str, ...] = ()

    def __call__(self, ctx: Any) -> bool:
        return self.test(ctx)


def compile_condition(
    text: str, phase: str | None = "before_call", *, wrapup_codes: Collection[str] | None = None
) -> Condition:
    """Compile one condition for a rule phase (None: a filter over the list's columns).

    Raises ConfigError (file "<condition>") with the column where it fails.
    """
    scope = _Scope(phase, wrapup_codes)
    try:
        test = _Parser(text, scope).parse()
    except _ExprError as exc:
        message = f"at column {exc.col}: {exc.message}"
        raise ConfigError("<condition>", None, "condition", message) from None
    warnings = tuple(f"at column {col}: {message}" for col, message in scope.warnings)
    return Condition(text, test, warnings)


def _condition(
    m: _Node, key: str, phase: str | None, codes: Collection[str] | None
) -> Condition | None:
    text = m.text(key)
    if text is None:
        return None
    scope = _Scope(phase, codes)
    try:
        test = _Parser(text, scope).parse()
    except _ExprError as exc:
        raise m.error(key, f"at column {exc.col}: {exc.message}") from None
    warnings = tuple(str(m.error(key, f"at column {c}: {msg}")) for c, msg in scope.warnings)
    return Condition(text, test, warnings)


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
        when, line, condition, skip=skip, caller_id=_caller_id(then),
        priority=then.scalar("priority", int), set_columns=_set_columns(then),
    )  # fmt: skip


def _reason(m: _Node, key: str) -> str | None:
    text = m.text(key)
    if text is not None and not text.strip():
        raise m.error(key, "expected a reason (text), got nothing")
    return None if text is None else text.strip()


def _caller_id(m: _Node) -> str | None:
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
