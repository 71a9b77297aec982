"""Callable times: may this contact be called now, and if not, why and from when.

Pure: no clock, no I/O. Rules are sets of weekly windows in the contact's
local time, each with where it comes from:

- the law, built in (`LegalRules`, loaded from `data/us_rules.yaml`): the
  US federal 8:00-21:00 (47 CFR 64.1200(c)(1)) for every number in the US
  and its territories, and each state's own hours, weekday bans and
  holiday bans for the states the contact is in (`locate.Locale.states`);
- the campaign's own `calling_hours`, per weekday, and its restricted days
  (public holidays of the contact's country and state from `holidays`,
  and custom dates).

A time is callable when it is inside every applicable window in every one of
the contact's zones and no restricted day applies. The law's windows come
first and a campaign can only narrow them: the rules intersect.

`CallingHours.verdict(locale, now)` answers with `callable`, the `reason`
when not (naming the rule and its source), and `until`: when the answer
can next change (the window's close, or the next opening). Verdicts are
cached per locale key until then, so a contact costs a dictionary lookup
in the dial loop.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from engine.compliance.locate import Locale, zone

__all__ = [
    "CALL_LIMIT_WINDOW", "DAYS", "CallingHours", "HoursRule", "LegalRules", "Verdict", "Week",
    "load_legal_rules", "parse_window", "within_call_limit",
]  # fmt: skip

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Minutes since local midnight, [start, end); end may be 1440 (midnight).
Window = tuple[int, int]
Week = tuple[Window | None, ...]  # monday..sunday; None: no calls that day
US_REGIONS = frozenset({"US", "PR", "VI", "GU", "AS", "MP"})  # the TCPA's reach
SEARCH_DAYS = 21  # how far ahead an opening is looked for
DATA = Path(__file__).parent / "data" / "us_rules.yaml"
CALL_LIMIT_WINDOW = timedelta(hours=24)  # the states' "N calls per 24 hours" (call_limit)


def _minutes(text: str) -> int:
    hh, sep, mm = str(text).partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2:
        raise ValueError(f"expected a time like 08:00, got {text!r}")
    value = int(hh) * 60 + int(mm)
    if int(mm) > 59 or value > 1440:
        raise ValueError(f"expected a time from 00:00 to 24:00, got {text!r}")
    return value


def parse_window(text: str | Iterable[str]) -> Window:
    """A window written "08:00-20:00" or ["08:00", "20:00"] -> minutes [start, end)."""
    parts = text.split("-") if isinstance(text, str) else list(text)
    if len(parts) != 2:
        raise ValueError(f"expected a window like 08:00-20:00, got {text!r}")
    start, end = _minutes(parts[0].strip()), _minutes(parts[1].strip())
    if start >= end:
        raise ValueError(f"the window's start must be before its end, got {text!r}")
    return start, end


def _fmt(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class HoursRule:
    """Weekly windows with their source (`label`: "US federal", "FL", "campaign").

    `holidays`: no calls on the public holidays of the contact's country and
    state; `holiday_source` names the law that says so.
    """

    label: str
    source: str
    week: Week
    holidays: bool = False
    holiday_source: str | None = None
    max_calls_24h: int | None = None
    max_calls_source: str | None = None


@dataclass(frozen=True, slots=True)
class LegalRules:
    """The built-in law: the federal rule and the states' rules by USPS code."""

    federal: HoursRule
    states: Mapping[str, HoursRule]

    def for_locale(self, locale: Locale) -> list[HoursRule]:
        if locale.country not in US_REGIONS:
            return []
        return [self.federal, *(self.states[s] for s in locale.states if s in self.states)]


def _week(hours: Any, days: Mapping[str, Any] | None, where: str) -> Week:
    default = parse_window(hours)
    week: list[Window | None] = [default] * 7
    for name, value in (days or {}).items():
        if name not in DAYS:
            raise ValueError(f"{where}: unknown weekday {name!r}")
        week[DAYS.index(name)] = None if value is None else parse_window(value)
    return tuple(week)


@functools.cache
def load_legal_rules(path: Path = DATA) -> LegalRules:
    """The rules table shipped in the repository (see data/SOURCES.md)."""
    doc = yaml.safe_load(path.read_text())
    fed = doc["federal"]
    federal = HoursRule("US federal", fed["statute"], _week(fed["hours"], None, "federal"))
    states: dict[str, HoursRule] = {}
    for code, rule in (doc.get("states") or {}).items():
        where = f"{path.name}: states.{code}"
        states[code] = HoursRule(
            label=str(code), source=str(rule["statute"]),
            week=_week(rule["hours"], rule.get("days"), where),
            holidays=bool(rule.get("holidays")), holiday_source=rule.get("holiday_statute"),
            max_calls_24h=rule.get("max_calls_24h"), max_calls_source=rule.get("max_calls_statute"),
        )  # fmt: skip
    return LegalRules(federal, states)


@dataclass(frozen=True, slots=True)
class Verdict:
    """May the contact be called now; if not, why; `until`: when that may change (UTC)."""

    callable: bool
    reason: str
    until: datetime
    rule: str = ""  # the rule that decides it ("FL: Fla. Stat. 501.616(6)(a)"), for the ledger


def within_call_limit(calls: Sequence[datetime], limit: tuple[int, str], now: datetime) -> Verdict:
    """A state's "at most N calls in 24 hours" (`limit`: `CallingHours.call_limit`)
    for a contact called at `calls` (its INVITEs, oldest first; those older than
    `CALL_LIMIT_WINDOW` do not count). The dial loop passes `Store.calls_since`,
    the compliance audit its own record of the calls."""
    most, source = limit
    recent = calls[bisect.bisect_left(calls, now - CALL_LIMIT_WINDOW) :]
    if len(recent) < most:
        return Verdict(True, "", now)
    # Just past the 24 h: a call exactly 24 h old still counts (calls_since's `>=`).
    until = recent[len(recent) - most] + CALL_LIMIT_WINDOW + timedelta(milliseconds=1)
    why = f"{len(recent)} calls in the last 24 h, at most {most} ({source})"
    return Verdict(False, why, until, source)


@functools.lru_cache(maxsize=4096)
def _holidays(country: str, state: str | None, year: int) -> Mapping[date, str]:
    import holidays

    try:
        return holidays.country_holidays(country, subdiv=state, years=year)
    except NotImplementedError:  # no data for the country (or the subdivision)
        try:
            return holidays.country_holidays(country, years=year)
        except NotImplementedError:
            return {}


@dataclass(slots=True)
class CallingHours:
    """The hours engine for one campaign (see the module doc).

    `campaign`: the campaign's own weekly windows (None: no campaign limit);
    `public_holidays`: the campaign does not call on public holidays;
    `dates`: the campaign's own restricted dates (in the contact's local
    calendar); `default_zone`: the zone of a contact nothing locates;
    `legal`: the built-in law (None: a lab rig on loopback carriers, see
    the daemon's `compliance.legal_hours`).
    """

    legal: LegalRules | None
    campaign: HoursRule | None = None
    public_holidays: bool = False
    dates: frozenset[date] = frozenset()
    default_zone: str | None = None
    _cache: dict[str, tuple[datetime, Verdict]] = field(default_factory=dict)

    def rules_for(self, locale: Locale) -> list[HoursRule]:
        rules = self.legal.for_locale(locale) if self.legal is not None else []
        return [*rules, self.campaign] if self.campaign is not None else rules

    def call_limit(self, locale: Locale) -> tuple[int, str] | None:
        """The strictest "at most N calls per 24 h" of the law for `locale`, and its source."""
        limits = [
            (r.max_calls_24h, f"{r.label}: {r.max_calls_source or r.source}")
            for r in self.rules_for(locale) if r.max_calls_24h
        ]  # fmt: skip
        return min(limits) if limits else None

    def verdict(self, locale: Locale, now: datetime) -> Verdict:
        """May `locale` be called at `now` (aware); cached until the answer can change."""
        key = locale.key
        hit = self._cache.get(key)
        if hit is not None and hit[0] <= now < hit[1].until:
            return hit[1]  # it holds from when it was computed until it can change
        result = self._verdict(locale, now)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = (now, result)
        return result

    def _verdict(self, locale: Locale, now: datetime) -> Verdict:
        rules = self.rules_for(locale)
        restricted = self.public_holidays or bool(self.dates) or any(r.holidays for r in rules)
        if not rules and not restricted:
            return Verdict(True, "", now + timedelta(days=SEARCH_DAYS))
        zones = locale.zones or ((self.default_zone,) if self.default_zone else ())
        if not zones:
            return Verdict(
                False,
                f"no time zone for the contact ({locale.source}): set a time-zone or "
                "postal-code column, or the campaign's default_timezone",
                now + timedelta(days=1),
                "no time zone",
            )
        t = now
        first: Verdict | None = None
        for _ in range(4 * len(zones) + 4):
            verdicts = [self._zone(zone(z), z, locale, rules, t) for z in zones]
            closed = [v for v in verdicts if not v.callable]
            if not closed:
                until = min(v.until for v in verdicts)
                if t == now:
                    return Verdict(True, "", until)
                assert first is not None
                return Verdict(False, first.reason, t, first.rule)
            if first is None:
                first = closed[0]
            t = max(v.until for v in closed)
            if t - now > timedelta(days=SEARCH_DAYS):
                break
        assert first is not None
        return Verdict(False, first.reason, max(t, now + timedelta(days=1)), first.rule)

    def _day(
        self, day: date, locale: Locale, rules: list[HoursRule]
    ) -> tuple[Window | None, str, str]:
        """The day's window (intersection of the rules), and what sets its start and end
        (or, for a closed day, why it is closed and the rule that closes it)."""
        if day in self.dates:
            return (
                None,
                f"restricted date {day.isoformat()} (campaign)",
                "campaign: restricted_days",
            )
        states = locale.states or (None,)
        country = locale.country
        banning = [r for r in rules if r.holidays]
        if country and (self.public_holidays or banning):
            for state in states:
                name = _holidays(country, state, day.year).get(day)
                if name is None:
                    continue
                where = f"{country}-{state}" if state else country
                if self.public_holidays:
                    why = f"public holiday {name} ({where}; campaign)"
                    return None, why, "campaign: public_holidays"
                for rule in banning:
                    if state in (None, rule.label):
                        why = f"public holiday {name} ({where}; {rule.holiday_source})"
                        return None, why, f"{rule.label}: {rule.holiday_source}"
        start, end = 0, 1440
        start_by = end_by = ""
        weekday = day.weekday()
        for rule in rules:
            window = rule.week[weekday]
            if window is None:
                by = f"{rule.label}: {rule.source}"
                return None, f"no calls on {DAYS[weekday].title()} ({by})", by
            if window[0] > start:
                start, start_by = window[0], f"{rule.label}: {rule.source}"
            if window[1] < end:
                end, end_by = window[1], f"{rule.label}: {rule.source}"
        if start >= end:
            return None, f"no common window on {DAYS[weekday].title()}", start_by
        return (start, end), start_by, end_by

    def _zone(
        self, tz: ZoneInfo, name: str, locale: Locale, rules: list[HoursRule], now: datetime
    ) -> Verdict:
        local = now.astimezone(tz)
        today = local.date()
        reason = rule = ""
        for offset in range(SEARCH_DAYS):
            day = today + timedelta(days=offset)
            window, start_by, end_by = self._day(day, locale, rules)
            if window is None:
                if not reason:
                    reason, rule = start_by, end_by
                continue
            opens = _at(day, window[0], tz)
            closes = _at(day, window[1], tz)
            if offset == 0 and opens <= now < closes:
                return Verdict(True, "", closes)
            if now < opens:
                if not reason:
                    if offset == 0:
                        reason, rule = f"before {_fmt(window[0])} {name} ({start_by})", start_by
                    else:
                        reason, rule = f"after {_fmt(window[1])} {name} ({end_by})", end_by
                return Verdict(False, reason, opens, rule)
            if offset == 0:
                reason, rule = f"after {_fmt(window[1])} {name} ({end_by})", end_by
        later = now + timedelta(days=SEARCH_DAYS)
        return Verdict(False, reason or "no callable day ahead", later, rule)


def _at(day: date, minutes: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of `minutes` past local midnight of `day` in `tz`."""
    # Aware + timedelta is wall-clock arithmetic in zoneinfo: the offset is
    # the one in force at the resulting local time, so DST days come out right.
    return (datetime.combine(day, time(0), tzinfo=tz) + timedelta(minutes=minutes)).astimezone(UTC)
