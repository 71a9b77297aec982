"""Callable times at their edges: the law's hours and the campaign's, in the
contact's own zone (DST days included), several zones, holidays per state,
restricted dates, and where a contact's zone and state come from."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.compliance.campaign import HoursConfig, calling_hours, parse_hours_config
from engine.compliance.hours import (
    CallingHours,
    HoursRule,
    load_legal_rules,
    parse_window,
    within_call_limit,
)
from engine.compliance.locate import Locale, LocateError, Locator
from engine.config import ConfigError, _read_mapping

RULES = """\
version: 1
federal:
  statute: "47 CFR 64.1200(c)(1)"
  hours: ["08:00", "21:00"]
states:
  FL:
    name: Florida
    statute: "Fla. Stat. 501.616(6)(a)"
    hours: ["08:00", "20:00"]
    holidays: false
    holiday_statute: null
    max_calls_24h: 3
    max_calls_statute: "Fla. Stat. 501.616(6)(b)"
    scope: telephone solicitation
  TX:
    name: Texas
    statute: "Tex. Bus. & Com. Code 301.051"
    hours: ["09:00", "21:00"]
    days: {sunday: ["12:00", "21:00"]}
    holidays: true
    holiday_statute: "a holiday ban (test table)"
    max_calls_24h: null
    max_calls_statute: null
    scope: telephone solicitation
  AL:
    name: Alabama
    statute: "a Sunday ban (test table)"
    hours: ["08:00", "20:00"]
    days: {sunday: null}
    holidays: false
    holiday_statute: null
    max_calls_24h: null
    max_calls_statute: null
    scope: telephone solicitation
"""
NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")


@pytest.fixture
def legal(tmp_path: Path) -> CallingHours:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return CallingHours(load_legal_rules(path))


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)  # type: ignore[misc]


def us(zones: tuple[str, ...], states: tuple[str, ...] = ()) -> Locale:
    return Locale("US", zones, states, "test")


def test_federal_edges_in_the_contacts_zone(legal: CallingHours) -> None:
    ny = us(("America/New_York",), ("NY",))
    assert not legal.verdict(ny, local(NY, 2026, 12, 2, 7, 59, 59)).callable
    opened = legal.verdict(ny, local(NY, 2026, 12, 2, 8, 0, 0))
    assert opened.callable and opened.until == local(NY, 2026, 12, 2, 21, 0)
    assert legal.verdict(ny, local(NY, 2026, 12, 2, 20, 59, 59)).callable
    closed = legal.verdict(ny, local(NY, 2026, 12, 2, 21, 0, 0))
    assert not closed.callable
    assert closed.until == local(NY, 2026, 12, 3, 8, 0)  # the next opening
    assert "after 21:00 America/New_York" in closed.reason
    assert "47 CFR 64.1200(c)(1)" in closed.reason
    assert closed.rule == "US federal: 47 CFR 64.1200(c)(1)"  # the ledger's rule column


def test_state_hours_are_stricter_and_named(legal: CallingHours) -> None:
    fl = us(("America/New_York",), ("FL",))
    assert legal.verdict(fl, local(NY, 2026, 12, 2, 19, 59, 59)).callable
    v = legal.verdict(fl, local(NY, 2026, 12, 2, 20, 0, 0))
    assert not v.callable and "Fla. Stat. 501.616(6)(a)" in v.reason
    assert v.rule == "FL: Fla. Stat. 501.616(6)(a)"
    tx_sunday = us(("America/Chicago",), ("TX",))
    v = legal.verdict(tx_sunday, local(ZoneInfo("America/Chicago"), 2026, 12, 6, 11, 59))
    assert not v.callable and "before 12:00" in v.reason
    assert v.until == local(ZoneInfo("America/Chicago"), 2026, 12, 6, 12, 0)


def test_sunday_ban_defers_to_monday(legal: CallingHours) -> None:
    al = us(("America/Chicago",), ("AL",))
    chicago = ZoneInfo("America/Chicago")
    v = legal.verdict(al, local(chicago, 2026, 12, 6, 10, 0))  # a Sunday
    assert not v.callable and "no calls on Sunday" in v.reason
    assert v.rule == "AL: a Sunday ban (test table)"
    assert v.until == local(chicago, 2026, 12, 7, 8, 0)


def test_a_holiday_in_one_state_only(legal: CallingHours) -> None:
    # 2 March is Texas Independence Day: a Texas holiday, not a federal one.
    chicago = ZoneInfo("America/Chicago")
    noon = local(chicago, 2026, 3, 2, 12, 0)
    tx = legal.verdict(us(("America/Chicago",), ("TX",)), noon)
    assert not tx.callable and "Texas Independence Day" in tx.reason
    assert tx.rule == "TX: a holiday ban (test table)"
    assert tx.until == local(chicago, 2026, 3, 3, 9, 0)
    assert legal.verdict(us(("America/Chicago",), ("OK",)), noon).callable


def test_dst_days_move_the_utc_edges(legal: CallingHours) -> None:
    ny = us(("America/New_York",))
    # 8 March 2026: clocks go forward at 02:00, 8:00 EDT is 12:00 UTC.
    assert legal.verdict(ny, datetime(2026, 3, 8, 11, 59, 59, tzinfo=UTC)).callable is False
    assert legal.verdict(ny, datetime(2026, 3, 8, 12, 0, tzinfo=UTC)).callable
    # The evening before (EST), 21:00 is 02:00 UTC; the opening after is 12:00 UTC.
    v = legal.verdict(ny, datetime(2026, 3, 8, 2, 0, tzinfo=UTC))
    assert not v.callable and v.until == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    # 1 November 2026: back to EST; 21:00 EST is 02:00 UTC the next day.
    assert legal.verdict(ny, datetime(2026, 11, 2, 1, 59, 59, tzinfo=UTC)).callable
    assert not legal.verdict(ny, datetime(2026, 11, 2, 2, 0, tzinfo=UTC)).callable


def test_several_zones_need_every_one_open(legal: CallingHours) -> None:
    both = us(("America/Boise", "America/Los_Angeles"), ("ID",))
    # 08:30 in Boise is 07:30 in Los Angeles: not yet.
    v = legal.verdict(both, local(LA, 2026, 12, 2, 7, 30))
    assert not v.callable and "America/Los_Angeles" in v.reason
    assert v.until == local(LA, 2026, 12, 2, 8, 0)
    # 20:30 in Los Angeles is 21:30 in Boise: over.
    v = legal.verdict(both, local(LA, 2026, 12, 2, 20, 30))
    assert not v.callable and "America/Boise" in v.reason
    ok = legal.verdict(both, local(LA, 2026, 12, 2, 12, 0))
    assert ok.callable and ok.until == local(LA, 2026, 12, 2, 20, 0)  # Boise's 21:00


def test_campaign_hours_only_narrow_the_law(legal: CallingHours) -> None:
    wide = HoursRule("campaign", "test", tuple([parse_window("06:00-23:00")] * 7))
    hours = CallingHours(legal.legal, campaign=wide)
    ny = us(("America/New_York",))
    assert not hours.verdict(ny, local(NY, 2026, 12, 2, 7, 0)).callable  # the law still holds
    narrow = HoursRule("campaign", "test", (parse_window("10:00-12:00"),) * 5 + (None, None))
    hours = CallingHours(legal.legal, campaign=narrow)
    assert not hours.verdict(ny, local(NY, 2026, 12, 2, 9, 0)).callable
    assert hours.verdict(ny, local(NY, 2026, 12, 2, 11, 59)).callable
    v = hours.verdict(ny, local(NY, 2026, 12, 4, 12, 0))  # Friday noon: Monday 10:00 next
    assert v.until == local(NY, 2026, 12, 7, 10, 0)


def test_restricted_dates_and_public_holidays(legal: CallingHours) -> None:
    hours = CallingHours(legal.legal, dates=frozenset({date(2026, 12, 24)}), public_holidays=True)
    ny = us(("America/New_York",), ("NY",))
    v = hours.verdict(ny, local(NY, 2026, 12, 24, 12, 0))
    assert not v.callable and "restricted date 2026-12-24" in v.reason
    assert v.until == local(NY, 2026, 12, 26, 8, 0)  # 25th: Christmas Day, a public holiday


def test_no_law_outside_the_us_and_lab_mode(legal: CallingHours) -> None:
    gb = Locale("GB", ("Europe/London",), (), "test")
    assert legal.verdict(gb, datetime(2026, 12, 2, 3, 0, tzinfo=UTC)).callable
    lab = CallingHours(None)
    assert lab.verdict(us(("America/New_York",)), local(NY, 2026, 12, 2, 3, 0)).callable


def test_no_zone_is_not_callable_unless_a_default(legal: CallingHours) -> None:
    nowhere = us(())
    v = legal.verdict(nowhere, local(NY, 2026, 12, 2, 12, 0))
    assert not v.callable and "no time zone" in v.reason
    hours = CallingHours(legal.legal, default_zone="America/New_York")
    assert hours.verdict(nowhere, local(NY, 2026, 12, 2, 12, 0)).callable


def test_locator_order_column_zip_number() -> None:
    loc = Locator(("tz",), ("zip",))
    by_number = loc.locate({}, "+12085551234")
    assert by_number.zones == ("America/Boise", "America/Los_Angeles")
    assert by_number.states == ("ID",) and by_number.country == "US"
    by_zip = loc.locate({"zip": "32301-1234"}, "+12125551234")  # Tallahassee ZIP, NY number
    assert by_zip.zones == ("America/New_York",) and by_zip.states == ("FL", "NY")
    by_column = loc.locate({"tz": "America/Chicago", "zip": "32301"}, "+12125551234")
    assert by_column.zones == ("America/Chicago",) and "FL" in by_column.states
    with pytest.raises(LocateError, match="'Mars/Base' is not an IANA time zone"):
        loc.locate({"tz": "Mars/Base"}, "+12125551234")
    assert loc.locate({}, "+15555550123").zones == ()  # a fictional range: nothing


def test_number_locales_are_cached_by_prefix_without_mixing_numbers_up() -> None:
    """The cache key is +1 NPA NXX and the length: a second number of the same
    exchange gets the first one's answer, which must be its own, and numbers of
    another exchange, length or country are looked up afresh."""
    loc = Locator()
    for first, second in [
        ("+12085551234", "+12085559876"),  # Idaho: two zones
        ("+12125551234", "+12125550000"),  # New York
        ("+13065551234", "+13065557777"),  # Saskatchewan (CA)
    ]:
        assert loc.locate({}, first) == loc.locate({}, second)
    assert loc.locate({}, "+12085551234").states == ("ID",)
    assert loc.locate({}, "+12085551234") != loc.locate({}, "+12125551234")
    assert loc.locate({}, "+13065551234").country == "CA"
    assert loc.locate({}, "+442071234567").country == "GB"
    # A number one digit short shares the exchange, not the answer: nothing.
    assert loc.locate({}, "+1208555123").country is None
    assert loc.locate({}, "+12085551234").country == "US"


def test_campaign_yaml_errors_are_located(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "calling_hours:\n  weekdays: 09:00-20:00\n  sunday: off\n"
        "restricted_days:\n  public_holidays: true\n  dates: [2026-12-24]\n"
        "contact_location:\n  default_timezone: America/New_York\n"
    )
    cfg = parse_hours_config(_read_mapping(path))
    assert cfg.week is not None and cfg.week[0] == (540, 1200) and cfg.week[6] is None
    assert cfg.week[5] == (0, 1440) and cfg.dates == frozenset({date(2026, 12, 24)})
    for text, where in [
        ("calling_hours:\n  weekdays: 20:00-09:00\n", ":2: calling_hours.weekdays: the window"),
        ("calling_hours:\n  wednsday: 09:00-20:00\n", ":2: calling_hours.wednsday: unknown"),
        ("calling_hours:\n  monday: 9-5\n", ":2: calling_hours.monday: expected a time"),
        ("restricted_days:\n  dates:\n    - 2026-12-24\n    - 2026-13-01\n",
         ":4: restricted_days.dates: expected a date"),
        ("contact_location:\n  default_timezone: Nowhere/City\n",
         ":2: contact_location.default_timezone:"),
    ]:  # fmt: skip
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            parse_hours_config(_read_mapping(path))
        assert where in str(err.value), (text, str(err.value))


def test_shipped_rules_load_and_hold_the_federal_floor() -> None:
    rules = load_legal_rules()
    assert rules.federal.week == ((480, 1260),) * 7
    assert {"FL", "OK", "MD"} <= set(rules.states)
    for code, rule in rules.states.items():
        for window in rule.week:
            assert window is None or window[0] < window[1], code
    fl = rules.states["FL"]
    assert fl.week[0] == (480, 1200) and fl.max_calls_24h == 3
    hours = calling_hours(HoursConfig(), "c.yaml")
    assert hours.legal is rules
    assert calling_hours(HoursConfig(), "c.yaml", "lab").legal is None


def test_cached_verdict_cost_per_contact(legal: CallingHours) -> None:
    """Not a timing test: the cache must answer without recomputing (same object)."""
    ny = us(("America/New_York",), ("FL",))
    now = local(NY, 2026, 12, 2, 12, 0)
    first = legal.verdict(ny, now)
    assert legal.verdict(ny, now + timedelta(hours=1)) is first
    assert legal.verdict(ny, first.until) is not first  # the window closed: recomputed
    assert legal.verdict(ny, now - timedelta(hours=5)).callable is False  # earlier: recomputed


def test_within_call_limit_counts_the_last_24_hours() -> None:
    now = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)
    limit = (3, "FL: Fla. Stat. 501.616(6)(a)")
    calls = [now - timedelta(hours=h) for h in (30, 24, 10, 2)]  # oldest first
    verdict = within_call_limit(calls, limit, now)
    # The call exactly 24 h old still counts; it stops counting just after.
    assert not verdict.callable and verdict.rule == limit[1]
    assert verdict.reason == f"3 calls in the last 24 h, at most 3 ({limit[1]})"
    assert verdict.until == now + timedelta(milliseconds=1)
    assert within_call_limit(calls, limit, verdict.until).callable
    assert within_call_limit(calls[-2:], limit, now).callable
    assert within_call_limit([], limit, now).callable
