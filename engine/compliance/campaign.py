"""A campaign's calling-hours settings, read from its YAML with located errors.

```yaml
calling_hours:              # in the contact's local time; the law's hours apply as well
  weekdays: 09:00-20:00     # every_day, weekdays, weekend, or monday..sunday;
  saturday: 10:00-16:00     #   later, narrower keys override earlier ones
  sunday: off
restricted_days:
  public_holidays: true     # the contact's country and state (the `holidays` package)
  dates: [2026-12-24, 2026-12-31]
contact_location:
  timezone_column: tz       # default: the first of timezone, time_zone, tz present
  postal_code_column: zip   # default: zip, zip_code, zipcode, postal_code, postcode
  default_timezone: America/New_York   # for contacts nothing locates (default: none; not called)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import yaml

from engine.compliance.hours import (
    DAYS,
    CallingHours,
    HoursRule,
    Week,
    Window,
    load_legal_rules,
    parse_window,
)
from engine.compliance.locate import LocateError, Locator, check_zone
from engine.config import _Node

__all__ = ["HoursConfig", "calling_hours", "parse_hours_config"]

TIMEZONE_COLUMNS = ("timezone", "time_zone", "tz")
POSTAL_COLUMNS = ("zip", "zip_code", "zipcode", "postal_code", "postcode")
_GROUPS = {
    "every_day": DAYS, "weekdays": DAYS[:5], "weekend": DAYS[5:],
    **{d: (d,) for d in DAYS},
}  # fmt: skip
_OFF = {"off", "closed", "none", "no"}


@dataclass(frozen=True, slots=True)
class HoursConfig:
    """What a campaign says about when and where its contacts are (see the module doc)."""

    week: Week | None = None
    public_holidays: bool = False
    dates: frozenset[date] = frozenset()
    timezone_columns: tuple[str, ...] = TIMEZONE_COLUMNS
    postal_code_columns: tuple[str, ...] = POSTAL_COLUMNS
    default_timezone: str | None = None

    def rule(self, file: str) -> HoursRule | None:
        if self.week is None:
            return None
        return HoursRule("campaign", f"calling_hours in {file}", self.week)

    def locator(self) -> Locator:
        return Locator(self.timezone_columns, self.postal_code_columns)


def parse_hours_config(m: _Node) -> HoursConfig:
    week = _week(m)
    public_holidays, dates = _restricted(m)
    tz_cols, zip_cols, default = _location(m)
    return HoursConfig(week, public_holidays, dates, tz_cols, zip_cols, default)


def _week(m: _Node) -> Week | None:
    node = m.mapping("calling_hours")
    if node is None:
        return None
    node.check_keys(set(_GROUPS))
    days: list[Window | None] = [(0, 1440)] * 7
    # Broad keys first, then the single days, whatever the order written.
    for key in sorted(node.items, key=lambda k: len(_GROUPS[k]), reverse=True):
        raw = node.present(key)
        if raw is None or (isinstance(raw, yaml.ScalarNode) and str(raw.value).lower() in _OFF):
            window: Window | None = None
        elif isinstance(raw, yaml.ScalarNode):
            try:
                window = parse_window(str(raw.value))
            except ValueError as exc:
                raise node.error(key, str(exc)) from None
        elif isinstance(raw, yaml.SequenceNode):
            try:
                window = parse_window([str(n.value) for n in raw.value])
            except ValueError as exc:
                raise node.error(key, str(exc)) from None
        else:
            raise node.error(key, "expected a window like 09:00-20:00, or off")
        for day in _GROUPS[key]:
            days[DAYS.index(day)] = window
    return tuple(days)


def _restricted(m: _Node) -> tuple[bool, frozenset[date]]:
    node = m.mapping("restricted_days")
    if node is None:
        return False, frozenset()
    node.check_keys({"public_holidays", "dates"})
    public = bool(node.scalar("public_holidays", bool, False))
    raw = node.present("dates")
    if raw is None:
        return public, frozenset()
    if not isinstance(raw, yaml.SequenceNode):
        raise node.error("dates", "expected a list of dates like 2026-12-24")
    dates: set[date] = set()
    for item in raw.value:
        text = str(getattr(item, "value", ""))
        try:
            dates.add(date.fromisoformat(text))
        except ValueError:
            message = f"expected a date like 2026-12-24, got {text!r}"
            raise _item_error(node, item, message) from None
    return public, frozenset(dates)


def _item_error(node: _Node, item: yaml.Node, message: str) -> Exception:
    from engine.config import ConfigError

    return ConfigError(node.file, item.start_mark.line + 1, node.field("dates"), message)


def _location(m: _Node) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    node = m.mapping("contact_location")
    if node is None:
        return TIMEZONE_COLUMNS, POSTAL_COLUMNS, None
    node.check_keys({"timezone_column", "postal_code_column", "default_timezone"})
    tz = node.text("timezone_column")
    postal = node.text("postal_code_column")
    default = node.text("default_timezone")
    if default is not None:
        try:
            check_zone(default)
        except LocateError as exc:
            raise node.error("default_timezone", str(exc)) from None
    return (
        (tz,) if tz else TIMEZONE_COLUMNS,
        (postal,) if postal else POSTAL_COLUMNS,
        default,
    )


def calling_hours(hours: HoursConfig, file: str, legal_hours: str = "enforce") -> CallingHours:
    """The hours engine of a campaign: the law (unless a lab rig) and its own settings."""
    return CallingHours(
        legal=load_legal_rules() if legal_hours == "enforce" else None,
        campaign=hours.rule(file), public_holidays=hours.public_holidays, dates=hours.dates,
        default_zone=hours.default_timezone,
    )  # fmt: skip
