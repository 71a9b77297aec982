"""Where a contact is: the time zones and US states whose calling rules apply.

The time zone comes from, in order: the contact's time-zone column (an IANA
name), its postal-code column (US ZIP codes, from the `zipcodes` package,
which ships its data offline), or the number being dialled (`phonenumbers`'
prefix data). A number can map to several zones (area code 208 covers
America/Boise and America/Los_Angeles); the hours engine then lets a time
through only if it is callable in every one of them.

The states whose laws apply are every state the contact can be placed in:
the ZIP code's state and the area code's state (a Florida area code on a
number whose ZIP is in Georgia gets both rule sets; the stricter wins at
every point, since each rule only ever narrows). State laws follow the
called person, and area codes follow people who move, so taking both is
the conservative reading.

Lookups are cached: ZIP codes in one dictionary built once per process,
numbers by their first 7 digits for NANP (the finest prefix the time-zone
data distinguishes is shorter) and by the whole number elsewhere.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from phonenumbers import geocoder
from phonenumbers import timezone as number_zones

__all__ = ["Locale", "LocateError", "Locator", "check_zone", "zone"]

UNKNOWN_ZONE = "Etc/Unknown"
# ZIP codes that the `zipcodes` data gives one zone but that straddle a
# time-zone line: every zone the ZIP reaches. Kept as data with the source.
SPLIT_ZIPS: dict[str, tuple[str, ...]] = {}


class LocateError(ValueError):
    """A contact's time-zone column names no time zone."""


@dataclass(frozen=True, slots=True)
class Locale:
    """The zones and states of one contact (for one number), and where they came from.

    `country`: the number's region (ISO 3166 alpha-2, e.g. "US", "GB"), or
    None when the number has none (fictional ranges). `zones`: IANA names,
    sorted; empty when nothing gives one. `states`: US state codes, sorted.
    """

    country: str | None
    zones: tuple[str, ...]
    states: tuple[str, ...]
    source: str

    @property
    def key(self) -> str:
        """What the hours engine caches its verdicts by (contacts sharing it share them)."""
        return f"{self.country or '-'}|{','.join(self.states)}|{','.join(self.zones)}"


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo of an IANA name (cached; ZoneInfo objects are immutable)."""
    return ZoneInfo(name)


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


class _ZipTable:
    """ZIP code -> (zones, state), built from `zipcodes` once, on first use."""

    _lock = threading.Lock()
    _table: dict[str, tuple[tuple[str, ...], str]] | None = None

    @classmethod
    def get(cls, code: str) -> tuple[tuple[str, ...], str] | None:
        table = cls._table
        if table is None:
            table = cls._load()
        return table.get(code)

    @classmethod
    def _load(cls) -> dict[str, tuple[tuple[str, ...], str]]:
        with cls._lock:
            if cls._table is None:
                import zipcodes  # 0.8 s to read its data: only when a campaign needs it

                known = _known_zones()
                table: dict[str, tuple[tuple[str, ...], str]] = {}
                for row in zipcodes.list_all():  # type: ignore[no-untyped-call]
                    code, tz, state = row["zip_code"], row.get("timezone") or "", row["state"]
                    zones = SPLIT_ZIPS.get(code) or ((tz,) if tz in known else ())
                    table[code] = (zones, state)
                cls._table = table
            return cls._table


_STATE_CODES: dict[str, str] = {}


def _state_codes() -> dict[str, str]:
    """US state and territory names -> USPS codes (from `holidays`' subdivision data)."""
    global _STATE_CODES
    if not _STATE_CODES:
        import holidays

        aliases: Mapping[str, str] = getattr(getattr(holidays, "US"), "subdivisions_aliases", {})  # noqa: B009
        _STATE_CODES = {name.lower(): code for name, code in aliases.items()}
    return _STATE_CODES


_Found = tuple[str | None, tuple[str, ...], str | None]
_LOCALES: dict[tuple[str, int], _Found] = {}
_LOCALES_MAX = 65536


def _number_locale(number: str) -> _Found:
    """(region, zones, state) of a number, cached by its prefix and length.

    phonenumbers' geocoding and time zone tables for +1 go no deeper than
    +1 NPA NXX (`_prefix`), and its region and validity rules for NANP read the
    area code, the exchange and the length: numbers that share those share the
    answer. Other numbers are their own prefix (cached one by one).
    """
    key = (_prefix(number), len(number))
    found = _LOCALES.get(key)
    if found is None:
        found = _lookup_locale(number)
        if len(_LOCALES) >= _LOCALES_MAX:
            _LOCALES.clear()
        _LOCALES[key] = found
    return found


def _lookup_locale(number: str) -> _Found:
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return None, (), None
    region = phonenumbers.region_code_for_number(parsed)
    found = number_zones.time_zones_for_number(parsed)
    zones = tuple(sorted(z for z in found if z != UNKNOWN_ZONE))
    state = None
    if region == "US":
        place = geocoder.description_for_number(parsed, "en")
        if ", " in place:  # "New York, NY"
            state = place.rsplit(", ", 1)[1]
        else:  # "Florida"
            state = _state_codes().get(place.lower())
    return region, zones, state


def _prefix(number: str) -> str:
    # NANP: area code + exchange decides region, zone and state.
    return number[:8] if number.startswith("+1") else number


class Locator:
    """Finds the Locale of a contact from its columns and the number dialled.

    `timezone_columns` and `postal_code_columns`: the contact columns to read,
    the first present and non-empty one wins; a ZIP is its first five digits
    ("32301-1234").
    """

    def __init__(
        self, timezone_columns: tuple[str, ...] = (), postal_code_columns: tuple[str, ...] = ()
    ):
        self.timezone_columns = timezone_columns
        self.postal_code_columns = postal_code_columns

    def locate(self, attributes: Mapping[str, str], number: str) -> Locale:
        region, by_number, number_state = _number_locale(number)
        states = {number_state} if number_state else set()
        zones: tuple[str, ...] = ()
        source = ""
        column, raw = _first(attributes, self.postal_code_columns)
        if raw and region == "US":
            found = _ZipTable.get(raw[:5]) if raw[:5].isdigit() else None
            if found is not None:
                zones, zip_state = found
                states.add(zip_state)
                source = f"postal code {raw[:5]}"
        column, raw = _first(attributes, self.timezone_columns)
        if raw:
            if raw not in _known_zones():
                raise LocateError(
                    f"column {column!r}: {raw!r} is not an IANA time zone "
                    "(for example America/Chicago)"
                )
            zones, source = (raw,), f"column {column}"
        if not zones:
            zones = by_number
            source = f"number prefix {_prefix(number)}" if zones else f"nothing for {number}"
        return Locale(region, tuple(sorted(zones)), tuple(sorted(states)), source)


def _first(attributes: Mapping[str, str], columns: tuple[str, ...]) -> tuple[str, str]:
    for name in columns:
        value = attributes.get(name, "").strip()
        if value:
            return name, value
    return "", ""


def check_zone(name: str) -> str:
    """`name` if it is an IANA zone, else a LocateError."""
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise LocateError(f"{name!r} is not an IANA time zone") from exc
    return name
