"""The condition language of campaign rules and filters (pure: no I/O, no clock).

A condition is the `if:` of a rule or a campaign's `filter:` (see
engine.compliance.rules), e.g. "attempts >= 2 and segment == 'vip'".

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
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from carriers.sip.outcome import CallResult
from engine.compliance.hours import DAYS
from engine.config import ConfigError, _closest, _Node

__all__ = ["PHASES", "Condition", "RuleContext", "compile_condition"]

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
