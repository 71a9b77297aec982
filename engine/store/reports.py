"""Campaign figures: progress (contacts by state, attempts by result) and the
summary (connect rate, average ring and talk time)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Float, cast, func, select

from engine.store.queries import CampaignIds, attempt_rows
from engine.store.schema import attempts, campaign_contacts
from engine.store.types import CONTACT_STATES, FINISHED_STATES

cc = campaign_contacts.c
a = attempts.c


def progress(conn: Connection, ids: CampaignIds, name: str) -> dict[str, Any]:
    """{"total", one count per contact state, "processed" (done + skipped +
    failed), "attempts", "by_result": {result: attempts}} (open attempts
    have no result yet and appear only in "attempts")."""
    cid, _ = ids.get(conn, name)
    counts = dict.fromkeys(sorted(CONTACT_STATES), 0)
    for state, n in conn.execute(
        select(cc.state, func.count()).where(cc.campaign_id == cid).group_by(cc.state)
    ):
        counts[state] = int(n)
    by_result: dict[str, int] = {}
    total_attempts = 0
    for result, n in conn.execute(
        select(a.result, func.count()).where(a.campaign_id == cid).group_by(a.result)
    ):
        total_attempts += int(n)
        if result is not None:
            by_result[result] = int(n)
    return {
        "total": sum(counts.values()),
        **counts,
        "processed": sum(counts[s] for s in FINISHED_STATES),
        "attempts": total_attempts,
        "by_result": dict(sorted(by_result.items())),
    }


def _millis(conn: Connection, start: Any, end: Any) -> ColumnElement[Any]:
    """end - start in milliseconds, in SQL (SQLite keeps times as text)."""
    if conn.dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86_400_000.0
    return cast(func.extract("epoch", end - start), Float) * 1000.0


def summary(conn: Connection, ids: CampaignIds, name: str) -> dict[str, Any]:
    """progress + "answered", "connect_rate" (answered / attempts, attempts
    with an answer time), "avg_ring_ms" (first ring -> answer, or -> the end
    when unanswered: how long phones rang), "avg_pdd_ms" (post-dial delay:
    INVITE sent -> first ring) and "avg_talk_ms" (answered -> ended), as ints
    (None without data)."""
    out = progress(conn, ids, name)
    cid, _ = ids.get(conn, name)
    answered, ring, pdd, talk = conn.execute(
        select(
            func.count(a.answered_at),
            func.avg(_millis(conn, a.ringing_at, func.coalesce(a.answered_at, a.ended_at))),
            func.avg(_millis(conn, a.invite_sent_at, a.ringing_at)),
            func.avg(_millis(conn, a.answered_at, a.ended_at)),
        ).where(a.campaign_id == cid)
    ).one()
    total = out["attempts"]
    out["answered"] = int(answered)
    out["connect_rate"] = round(answered / total, 4) if total else 0.0
    out["avg_ring_ms"] = None if ring is None else round(ring)
    out["avg_pdd_ms"] = None if pdd is None else round(pdd)
    out["avg_talk_ms"] = None if talk is None else round(talk)
    return out


def attempts_of(
    conn: Connection, ids: CampaignIds, name: str, limit: int | None
) -> list[dict[str, Any]]:
    cid, _ = ids.get(conn, name)
    return attempt_rows(conn, a.campaign_id == cid, limit)
