"""Phone numbers to E.164, with `phonenumbers`, and a fast path for NANP.

`phonenumbers.parse` + `is_valid_number` cost ~20 us a number, which makes it
the bottleneck of a million-row import. Most numbers in a North American list
come in a handful of shapes ("2125551234", "(212) 555-1234", "+1 212-555-1234",
"1-212-555-1234"): for those the national number is read directly and checked
against phonenumbers' own metadata, compiled once into two regular expressions
per NANP region, following `is_valid_number` step by step:

1. the region is the first of country code 1's regions (in phonenumbers'
   order) whose leading-digits pattern matches the number's start or, for a
   region without one, for which the number has a known type;
2. the number is valid if it has a known type in that region: its length is
   one of the general description's possible lengths and it fully matches
   the general pattern and at least one type's pattern (premium rate, toll
   free, ..., fixed line, mobile; each with its own possible lengths).

Everything else (other countries, letters, extensions, odd punctuation) takes
phonenumbers' full parser. `tests/unit/test_contacts.py` checks that both
paths agree on hundreds of thousands of numbers in every shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat

from engine.errors import BadRequest

NANP_LENGTH = 10
# Separators of the fast path; anything else (letters, extensions, slashes,
# Unicode digits) takes the full parser.
_SEPARATORS = str.maketrans("", "", " -.()")
# phonenumbers' _number_type_helper order; fixed line and mobile come last.
_TYPE_FIELDS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)


class InvalidNumber(BadRequest):
    """Not a valid phone number (the message says why)."""


@dataclass(frozen=True, slots=True)
class _RegionRule:
    """One NANP region's validity test for 10-digit national numbers."""

    region: str
    leading: re.Pattern[str] | None  # prefix match that claims a number for the region
    general: re.Pattern[str] | None  # None: no 10-digit number is valid here
    types: re.Pattern[str] | None  # any type's pattern

    def known_type(self, nsn: str) -> bool:
        return bool(
            self.general is not None
            and self.types is not None
            and self.general.fullmatch(nsn)
            and self.types.fullmatch(nsn)
        )


def _pattern(desc: Any) -> str | None:
    """The desc's pattern if it can match a 10-digit number (phonenumbers'
    `_is_number_matching_desc`: possible lengths first, then the pattern)."""
    pattern = getattr(desc, "national_number_pattern", None)
    if desc is None or not pattern:
        return None
    lengths = desc.possible_length
    if lengths and NANP_LENGTH not in lengths:
        return None
    return str(pattern)


def _region_rules() -> tuple[_RegionRule, ...]:
    rules = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
        md = PhoneMetadata.metadata_for_region(region, None)
        if md is None:
            continue
        fields = (
            _TYPE_FIELDS if md.same_mobile_and_fixed_line_pattern else (*_TYPE_FIELDS, "mobile")
        )
        patterns = [p for p in (_pattern(getattr(md, f, None)) for f in fields) if p is not None]
        general = _pattern(md.general_desc)
        rules.append(
            _RegionRule(
                region=region,
                leading=re.compile(md.leading_digits) if md.leading_digits else None,
                general=re.compile(general) if general else None,
                types=re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None,
            )
        )
    return tuple(rules)


_NANP_RULES = _region_rules()


def nanp_valid(nsn: str) -> bool:
    """`phonenumbers.is_valid_number` for +1 and a 10-digit national number."""
    for rule in _NANP_RULES:
        if rule.leading is not None:
            if rule.leading.match(nsn):
                return rule.known_type(nsn)
        elif rule.known_type(nsn):
            return True
    return False


def check_region(region: str) -> str:
    """The upper-cased region code; BadRequest if phonenumbers does not know it."""
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise BadRequest(f"region: unknown region code {region!r} (expected e.g. US, CA, GB, FR)")
    return code


class PhoneNormalizer:
    """Turns user-typed numbers into E.164 for one default region."""

    __slots__ = ("_nanp", "region")

    def __init__(self, region: str = "US") -> None:
        self.region = check_region(region)
        self._nanp = phonenumbers.country_code_for_region(self.region) == 1

    def normalize(self, raw: str) -> str:
        """E.164 form of `raw`; InvalidNumber if it is not a valid number."""
        nsn = self._nanp_national(raw)
        if nsn is not None:
            if nanp_valid(nsn):
                return "+1" + nsn
            raise InvalidNumber(f"{raw.strip()!r} is not a valid phone number")
        return self._slow(raw)

    def _nanp_national(self, raw: str) -> str | None:
        """The 10-digit national number when `raw` has a plain NANP shape."""
        text = raw.strip()
        plus = text.startswith("+")
        digits = (text[1:] if plus else text).translate(_SEPARATORS)
        if not (digits.isascii() and digits.isdigit()):
            return None
        if len(digits) == 11 and digits[0] == "1" and (plus or self._nanp):
            digits = digits[1:]
        elif len(digits) != NANP_LENGTH or plus or not self._nanp:
            return None
        return digits if digits[0] in "23456789" else None

    def _slow(self, raw: str) -> str:
        text = raw.strip()
        try:
            number = phonenumbers.parse(text, self.region)
        except NumberParseException as exc:
            raise InvalidNumber(f"{text!r} is not a phone number ({_parse_error(exc)})") from None
        if not phonenumbers.is_valid_number(number):
            raise InvalidNumber(f"{text!r} is not a valid phone number")
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def reference_normalize(raw: str, region: str) -> str | None:
    """phonenumbers alone (no fast path): the yardstick the tests compare with."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


_ERROR_TEXT = re.compile(r"^\(\d+\)\s*")


def _parse_error(exc: NumberParseException) -> str:
    return _ERROR_TEXT.sub("", str(exc)).rstrip(".").lower() or "unparseable"
