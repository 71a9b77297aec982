"""The compliance ledger and the compliance report (store thread functions).

The ledger is append-only: this module has no function that updates or
deletes a row, and the database refuses both (triggers of migration 0004).
Each row names its kind (LEDGER_KINDS), the rule or statute that applied,
and its source (what wrote it: dialer, ivr, agent:ID, sms, email, import,
operator...).

The report reads the abandon ledger (`abandons`), the attempts and this
ledger, per legal window: 47 CFR 64.1200(a)(7) measures a US campaign's
abandon rate over 30 days; Ofcom's statement on persistent misuse (2016,
para. A1.22) a UK campaign's over 24 hours, counting an estimate of AMD
false positives (from the operator-marked sample once it is big enough, see
amdsampledb; else the configured rate).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, func, or_, select

from engine.errors import BadRequest, NotFound
from engine.store import amdsampledb
from engine.store.queries import iso
from engine.store.schema import LEDGER_KINDS, abandons, attempts, campaigns, compliance_ledger

L = compliance_ledger.c
LEDGER_FIELDS = frozenset(
    {"at", "campaign", "contact_id", "number", "rule", "detail", "source", "local_time"}
)
# Why a list's entries block (the ledger's `rule` for entries added to it).
DNC_RULES = {
    "optout": "47 CFR 64.1200(d)(3)",  # a do-not-call request, recorded when made
    "internal": "47 CFR 64.1200(d)",  # the caller's own do-not-call list
    "national": "47 CFR 64.1200(c)(2)",  # a national do-not-call registry
}
ABANDON_RULES = {
    "us": "47 CFR 64.1200(a)(7)",
    "uk": "Ofcom persistent misuse statement (2016), abandoned calls",
}
LIMIT = Decimal("0.03")  # both: at most 3 % of calls answered by a person
WINDOWS = {"us": timedelta(days=30), "uk": timedelta(hours=24)}
# 47 CFR 64.1200(c)(1): no calls before 8 a.m. or after 9 p.m. at the
# called party's location (Ofcom's guidance keeps the same hours).
DAY_START, DAY_END = time(8), time(21)
REPEAT_AFTER_ABANDON = timedelta(hours=72)  # Ofcom: no repeat call within 72 h
_NOT_A_PERSON = ("machine", "fax", "sit")
_LISTED = 100  # rows of evidence listed in the report per finding


# ------------------------------------------------------------------ ledger


def ledger_row(kind: str, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """A ledger row from `fields`, checked (TypeError/ValueError at the caller,
    not later on the store thread): known kind and fields, a source, aware
    times; `detail` a JSON-able mapping; `local_time` an aware datetime or
    ISO-8601 text with its offset."""
    if kind not in LEDGER_KINDS:
        raise ValueError(f"ledger: kind {kind!r}; expected one of {', '.join(LEDGER_KINDS)}")
    unknown = set(fields) - LEDGER_FIELDS
    if unknown:
        raise TypeError(f"ledger: unknown fields {', '.join(sorted(unknown))}")
    source = fields.get("source")
    if not isinstance(source, str) or not source:
        raise TypeError("ledger: every row names its source (dialer, ivr, agent:ID, ...)")
    at = fields.get("at") or now
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise TypeError(f"ledger: at: expected an aware datetime, got {at!r}")
    row = {name: fields.get(name) for name in LEDGER_FIELDS}
    row.update(kind=kind, at=at, local_time=_local_text(fields.get("local_time")))
    detail = fields.get("detail")
    if detail is not None:
        if not isinstance(detail, Mapping):
            raise TypeError(f"ledger: detail: expected a mapping, got {detail!r}")
        row["detail"] = json.dumps(dict(detail), sort_keys=True, default=iso)
    return row


def _local_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("ledger: local_time: a naive time (whose zone?); give it its offset")
        return value.isoformat()
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise TypeError(f"ledger: local_time: {value!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            raise TypeError(f"ledger: local_time: {value!r} has no offset")
        return value
    raise TypeError(f"ledger: local_time: expected a datetime or ISO text, got {value!r}")


def append(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Append rows (from `ledger_row`) in one statement."""
    if rows:
        conn.execute(compliance_ledger.insert(), rows)


def ledger_rows(
    conn: Connection,
    campaign: str | None,
    since: datetime | None,
    until: datetime | None,
    kinds: Collection[str] | None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Ledger rows in order (oldest first), times ISO-8601, detail parsed."""
    query = select(compliance_ledger).order_by(L.id)
    if campaign is not None:
        query = query.where(L.campaign == campaign)
    if since is not None:
        query = query.where(L.at >= since)
    if until is not None:
        query = query.where(L.at < until)
    if kinds:
        query = query.where(L.kind.in_(list(kinds)))
    if limit is not None:
        query = query.limit(limit)
    out = []
    for row in conn.execute(query).mappings():
        item = {k: iso(v) for k, v in row.items()}
        item["detail"] = json.loads(row["detail"]) if row["detail"] else None
        out.append(item)
    return out


def abandon_row(conn: Connection, values: Mapping[str, Any], abandon_id: int) -> dict[str, Any]:
    """The ledger row of an abandon just written to `abandons`: the rule of
    the campaign's jurisdiction."""
    jurisdiction = _jurisdiction(_definition(conn, values["campaign"]))
    detail = {
        "abandon_id": abandon_id, "attempt_id": values["attempt_id"],
        "reason": values["reason"], "answered_at": values["answered_at"],
        "greeting_end_at": values["greeting_end_at"],
        "message_started_at": values.get("message_started_at"),
    }  # fmt: skip
    return ledger_row(
        "abandon",
        {"at": values["at"], "campaign": values["campaign"], "contact_id": values["contact_id"],
         "number": values["number"], "rule": ABANDON_RULES.get(jurisdiction),
         "detail": detail, "source": "dialer"},
        values["at"],
    )  # fmt: skip


def _definition(conn: Connection, campaign: str) -> dict[str, Any]:
    text = conn.execute(select(campaigns.c.definition).where(campaigns.c.name == campaign)).scalar()
    return json.loads(text) if text else {}


def _jurisdiction(definition: Mapping[str, Any]) -> str:
    dialing = definition.get("dialing") or {}
    return str(dialing.get("jurisdiction") or "us").lower()


# ------------------------------------------------------------------ report


def report(
    conn: Connection,
    campaign: str,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """The compliance report of a campaign over [since, until) (default: from
    its creation to now), window by legal window; see the module docstring."""
    row = conn.execute(
        select(campaigns.c.id, campaigns.c.definition, campaigns.c.created_at).where(
            campaigns.c.name == campaign
        )
    ).first()
    if row is None:
        raise NotFound(f"no campaign {campaign!r}")
    cid, definition = int(row[0]), json.loads(row[1])
    since, until = since or row[2], until or now
    if since >= until:
        raise BadRequest(f"from {since.isoformat()} is not before to {until.isoformat()}")
    jurisdiction = _jurisdiction(definition)
    span = WINDOWS.get(jurisdiction, WINDOWS["us"])
    notes: list[str] = []
    fp = _false_positive(conn, campaign, definition, jurisdiction, notes)
    fp_rate = fp.rate if jurisdiction == "uk" else Decimal(0)
    facts = _Facts(conn, cid, campaign, since, until)
    windows = []
    start = since
    while start < until:
        end = min(start + span, until)
        windows.append(facts.window(start, end, fp_rate))
        start = end
    if facts.sent > len(facts.placed):
        notes.append(
            f"{facts.sent} attempts sent an INVITE but the ledger has {len(facts.placed)} "
            "call_placed rows: the calls without one are not checked for hours"
        )
    by_kind = _ledger_counts(conn, campaign, since, until)
    outside = [p for p in facts.placed if p["outside_hours"]]
    result = {
        "campaign": campaign, "jurisdiction": jurisdiction,
        "rule": ABANDON_RULES.get(jurisdiction), "window": _span_text(span),
        "from": since.isoformat(), "to": until.isoformat(), "limit": float(LIMIT),
        "windows": windows,
        "calls_placed": len(facts.placed), "calls_outside_hours": len(outside),
        "outside_hours": [{**p, "at": p["at"].isoformat()} for p in outside[:_LISTED]],
        "repeat_calls_72h": len(facts.repeats), "repeat_calls": facts.repeats[:_LISTED],
        **by_kind, "amd_false_positive": {**fp.as_dict(), "applied": jurisdiction == "uk"},
        "notes": notes,
    }  # fmt: skip
    # The 72-hour rule is Ofcom's: repeats are shown for every campaign but
    # break only a UK campaign's report.
    repeats_break = jurisdiction == "uk" and bool(facts.repeats)
    result["ok"] = not outside and not repeats_break and not any(w["over_limit"] for w in windows)
    return result


def _span_text(span: timedelta) -> str:
    hours = int(span.total_seconds()) // 3600
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


def _false_positive(
    conn: Connection, campaign: str, definition: Mapping[str, Any], jurisdiction: str,
    notes: list[str],
) -> amdsampledb.FalsePositiveEstimate:  # fmt: skip
    """Ofcom counts AMD false positives (people taken for machines and hung up
    on) as abandons: a rate times the machine verdicts. The rate is the
    operator-marked sample's once it has MIN_MARKS marks, else the campaign's
    `dialing.amd_false_positive_rate` (a fraction, or a percentage "2%").
    Only a UK campaign's report applies it (and says which in its notes)."""
    configured, problem = _configured_rate(definition)
    counts = amdsampledb.mark_counts(conn, campaign)
    estimate = amdsampledb.FalsePositiveEstimate(
        counts["person"], counts["machine"], counts["unmarked"], configured
    )
    if jurisdiction == "uk":
        if problem is not None and estimate.source != "sample":
            notes.append(problem)
        notes.append(estimate.note())
    return estimate


def _configured_rate(definition: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
    raw = (definition.get("dialing") or {}).get("amd_false_positive_rate")
    if raw is None:
        return None, (
            "dialing.amd_false_positive_rate is not configured: the AMD false-positive "
            "estimate is 0 (Ofcom expects a reasoned estimate when AMD is used)"
        )
    text = str(raw).strip()
    try:
        return Decimal(text[:-1]) / 100 if text.endswith("%") else Decimal(text), None
    except InvalidOperation:
        return None, f"dialing.amd_false_positive_rate {raw!r} is not a rate: estimate 0"


class _Facts:
    """What the windows are counted from, read once for [since, until)."""

    def __init__(
        self, conn: Connection, cid: int, campaign: str, since: datetime, until: datetime
    ) -> None:
        a = attempts.c
        in_span = (a.campaign_id == cid, a.answered_at >= since, a.answered_at < until)
        self.abandons = conn.execute(
            select(abandons.c.at, abandons.c.number, abandons.c.attempt_id)
            .where(abandons.c.campaign == campaign, abandons.c.at >= since, abandons.c.at < until)
            .order_by(abandons.c.at)
        ).all()
        self.abandon_times = [r[0] for r in self.abandons]
        self.live = sorted(
            conn.execute(
                select(a.answered_at).where(
                    *in_span, or_(a.amd_result.is_(None), a.amd_result.not_in(_NOT_A_PERSON))
                )
            ).scalars()
        )
        self.machines = sorted(
            conn.execute(select(a.answered_at).where(*in_span, a.amd_result == "machine")).scalars()
        )
        self.sent = int(
            conn.execute(
                select(func.count()).where(
                    a.campaign_id == cid, a.invite_sent_at >= since, a.invite_sent_at < until
                )
            ).scalar_one()
        )
        self.placed = [
            _placed(r)
            for r in conn.execute(
                select(L.at, L.number, L.contact_id, L.local_time)
                .where(L.campaign == campaign, L.kind == "call_placed", L.at >= since, L.at < until)
                .order_by(L.at)
            )
        ]
        self.placed_times = [p["at"] for p in self.placed]
        self.repeats = _repeats(conn, self.abandons)
        self.repeat_times = [datetime.fromisoformat(r["abandon_at"]) for r in self.repeats]

    def window(self, start: datetime, end: datetime, fp_rate: Decimal) -> dict[str, Any]:
        abandoned = _count(self.abandon_times, start, end)
        live = _count(self.live, start, end)
        machines = _count(self.machines, start, end)
        estimate = machines * fp_rate
        # Ofcom: estimated false positives are abandoned calls to live people,
        # so they join the numerator and the denominator.
        numerator, denominator = abandoned + estimate, live + estimate
        rate = numerator / denominator if denominator else None
        placed = self.placed[bisect_left(self.placed_times, start) :][
            : _count(self.placed_times, start, end)
        ]
        return {
            "from": start.isoformat(), "to": end.isoformat(),
            "live_answers": live, "abandons": abandoned, "machines": machines,
            "amd_false_positive_rate": float(fp_rate),
            "amd_false_positive_estimate": float(estimate),
            "abandon_rate": None if rate is None else round(float(rate), 6),
            "over_limit": rate > LIMIT if rate is not None else abandoned > 0,
            "calls_placed": len(placed),
            "outside_hours": sum(1 for p in placed if p["outside_hours"]),
            "repeat_calls_72h": _count(self.repeat_times, start, end),
        }  # fmt: skip


def _count(times: list[datetime], start: datetime, end: datetime) -> int:
    return bisect_left(times, end) - bisect_left(times, start)


def _placed(row: Any) -> dict[str, Any]:
    at, number, contact_id, local = row
    outside: bool | None = None
    if local:
        clock = datetime.fromisoformat(local).time()
        outside = not (DAY_START <= clock < DAY_END)
    return {"at": at, "number": number, "contact_id": contact_id, "local_time": local,
            "outside_hours": outside}  # fmt: skip


def _repeats(conn: Connection, abandoned: Sequence[Any]) -> list[dict[str, Any]]:
    """Calls (an INVITE sent, any campaign) to a number within 72 h after it
    got an abandoned call; `agent` says whether one was reserved for it."""
    a = attempts.c
    found = []
    for at, number, attempt_id in abandoned:
        for row in conn.execute(
            select(a.id, a.invite_sent_at, a.agent, campaigns.c.name)
            .join(campaigns, campaigns.c.id == a.campaign_id)
            .where(
                a.number == number,
                a.id != attempt_id,
                a.invite_sent_at > at,
                a.invite_sent_at <= at + REPEAT_AFTER_ABANDON,
            )
            .order_by(a.invite_sent_at)
        ):
            found.append(
                {"number": number, "abandon_at": at.isoformat(), "attempt_id": row[0],
                 "called_at": row[1].isoformat(), "agent": row[2], "campaign": row[3]}
            )  # fmt: skip
    return found


def _ledger_counts(
    conn: Connection, campaign: str, since: datetime, until: datetime
) -> dict[str, Any]:
    """Skips and deferrals by rule, opt-outs by source (this campaign's, and
    how many were recorded with no campaign, e.g. by an operator)."""
    in_span = (L.at >= since, L.at < until)
    counts: dict[str, Counter[str]] = {"skip": Counter(), "deferral": Counter(),
                                       "opt_out": Counter()}  # fmt: skip
    for kind, rule, source, n in conn.execute(
        select(L.kind, L.rule, L.source, func.count())
        .where(L.campaign == campaign, L.kind.in_(list(counts)), *in_span)
        .group_by(L.kind, L.rule, L.source)
    ):
        key = source if kind == "opt_out" else (rule or "(no rule)")
        counts[kind][key] += int(n)
    unattached = conn.execute(
        select(func.count()).where(L.campaign.is_(None), L.kind == "opt_out", *in_span)
    ).scalar_one()
    return {
        "skips": dict(sorted(counts["skip"].items())),
        "deferrals": dict(sorted(counts["deferral"].items())),
        "opt_outs": dict(sorted(counts["opt_out"].items())),
        "opt_outs_without_campaign": int(unattached),
    }
