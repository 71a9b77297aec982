"""AMD samples and Ofcom's AMD false-positive estimate (store thread functions).

A share of a campaign's answered calls (`amd.sample_share`) keep their first
seconds of audio; those AMD classified as machines are written as WAV files
(engine.compliance.amd_sample) and listed here for an operator to mark: a
person (AMD was wrong, a false positive, which Ofcom counts as an abandoned
call) or a machine. The estimate is the share of marked samples that were
people, with a 95 % Wilson score interval. With fewer than MIN_MARKS marks
the campaign's configured `dialing.amd_false_positive_rate` stands instead,
and the compliance report says which one it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from math import sqrt
from typing import Any

from sqlalchemy import Connection, func, select, update

from engine.errors import BadRequest, NotFound
from engine.store.queries import iso
from engine.store.schema import AMD_MARKS, amd_samples, attempts

S = amd_samples.c
# Marks it takes before the sample replaces the configured rate: below it
# the Wilson interval is wider than +-15 points around a 10 % rate.
MIN_MARKS = 20
Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
FP_RULE = "Ofcom persistent misuse statement (2016), AMD false positives"
MAX_OPERATOR = 55  # the ledger's source is "operator:NAME" in 64 characters


def add_sample(conn: Connection, values: dict[str, Any]) -> int:
    """Store one recorded sample (unmarked); returns its id."""
    result = conn.execute(amd_samples.insert().values(**values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def samples_of(
    conn: Connection, campaign: str, unmarked: bool = False, limit: int | None = None
) -> list[dict[str, Any]]:
    """A campaign's samples, unmarked ones first, each group oldest first."""
    query = select(amd_samples).where(S.campaign == campaign)
    if unmarked:
        query = query.where(S.mark.is_(None))
    query = query.order_by(S.mark.is_not(None), S.recorded_at, S.id)
    if limit is not None:
        query = query.limit(limit)
    return [{k: iso(v) for k, v in row.items()} for row in conn.execute(query).mappings()]


def check_mark(mark: str, by: str) -> tuple[str, str]:
    """The mark and the operator's name, checked (BadRequest says what is wrong)."""
    clean = mark.strip().lower()
    if clean not in AMD_MARKS:
        raise BadRequest(f"mark: expected person or machine, got {mark!r}")
    name = by.strip()
    if not name:
        raise BadRequest("by: the operator who marks the sample must be named")
    if len(name) > MAX_OPERATOR:
        raise BadRequest(f"by: at most {MAX_OPERATOR} characters, got {len(name)}")
    return clean, name


def mark_sample(
    conn: Connection, attempt_id: int, mark: str, by: str, now: datetime
) -> dict[str, Any]:
    """Mark the sample of `attempt_id` (a re-mark replaces the mark; the
    caller appends the ledger row in the same transaction). Returns the
    sample as it is now, plus "previous": the mark it had."""
    row = conn.execute(select(amd_samples).where(S.attempt_id == attempt_id)).mappings().first()
    if row is None:
        found = conn.execute(
            select(attempts.c.amd_result).where(attempts.c.id == attempt_id)
        ).first()
        if found is None:
            raise NotFound(f"no attempt {attempt_id}")
        raise NotFound(
            f"attempt {attempt_id} has no AMD sample (AMD said {found[0] or 'nothing'}; "
            "only the sampled share of machine verdicts is recorded)"
        )
    conn.execute(
        update(amd_samples).where(S.id == row["id"]).values(mark=mark, marked_by=by, marked_at=now)
    )
    out = {k: iso(v) for k, v in row.items()}
    out.update(previous=row["mark"], mark=mark, marked_by=by, marked_at=now.isoformat())
    return out


def mark_counts(conn: Connection, campaign: str) -> dict[str, int]:
    """{"person", "machine", "unmarked"}: the campaign's samples by mark."""
    counts = {"person": 0, "machine": 0, "unmarked": 0}
    for mark, n in conn.execute(
        select(S.mark, func.count()).where(S.campaign == campaign).group_by(S.mark)
    ):
        counts[mark or "unmarked"] = int(n)
    return counts


# ---------------------------------------------------------------- estimate


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion k/n (None for n = 0): unlike
    the normal approximation it stays inside [0, 1] and is not empty at 0 or n."""
    if n <= 0:
        return None
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _pct(value: float | Decimal) -> str:
    return f"{float(value) * 100:.2f}%"


@dataclass(frozen=True, slots=True)
class FalsePositiveEstimate:
    """The AMD false-positive rate a report applies, and where it came from:
    "sample" (the operator's marks), "configured" (dialing.amd_false_positive_rate)
    or "none" (neither: 0)."""

    person: int
    machine: int
    unmarked: int
    configured: Decimal | None
    min_marks: int = MIN_MARKS

    @property
    def marked(self) -> int:
        return self.person + self.machine

    @property
    def source(self) -> str:
        if self.marked >= self.min_marks:
            return "sample"
        return "configured" if self.configured is not None else "none"

    @property
    def sample_rate(self) -> Decimal | None:
        return Decimal(self.person) / Decimal(self.marked) if self.marked else None

    @property
    def rate(self) -> Decimal:
        sample = self.sample_rate
        if self.source == "sample" and sample is not None:
            return sample
        return self.configured if self.configured is not None else Decimal(0)

    def as_dict(self) -> dict[str, Any]:
        sample, interval = self.sample_rate, wilson_interval(self.person, self.marked)
        return {
            "source": self.source, "rate": float(self.rate),
            "configured_rate": None if self.configured is None else float(self.configured),
            "sample_rate": None if sample is None else round(float(sample), 6),
            "interval_95": None if interval is None else [round(v, 6) for v in interval],
            "marked": self.marked, "person": self.person, "machine": self.machine,
            "unmarked": self.unmarked, "min_marks": self.min_marks,
        }  # fmt: skip

    def note(self) -> str:
        """The report's note: which rate is used, the counts, the interval."""
        interval = wilson_interval(self.person, self.marked)
        counts = f"{self.person} of {self.marked} marked machine verdicts were people"
        if interval is not None:
            counts += f" (95% Wilson interval {_pct(interval[0])}-{_pct(interval[1])})"
        configured = "none" if self.configured is None else _pct(self.configured)
        if self.source == "sample":
            return (
                f"AMD false-positive rate {_pct(self.rate)} from the operator-marked sample: "
                f"{counts}; the configured dialing.amd_false_positive_rate ({configured}) "
                "is not used"
            )
        what = "the configured dialing.amd_false_positive_rate" if self.configured is not None \
            else "none configured"  # fmt: skip
        if not self.marked:
            counts = "no sample is marked yet"
        return (
            f"AMD false-positive rate {_pct(self.rate)}: {what}; the operator-marked sample "
            f"replaces it from {self.min_marks} marks, it has {self.marked}: {counts}"
            + (f"; {self.unmarked} unmarked" if self.unmarked else "")
        )
