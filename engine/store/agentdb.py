"""Store queries for agents: state history, the abandon ledger, callbacks.

Run on the store thread (`Store` wraps each in a partial). Times are aware
UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from engine.errors import Conflict
from engine.store import compliancedb
from engine.store.queries import iso
from engine.store.schema import (
    abandons,
    agent_accounts,
    agent_states,
    attempts,
    callbacks,
    campaigns,
)

# Answers that reached a live person (the denominator of 47 CFR
# 64.1200(a)(7)): answered, and AMD (when on) did not call it a machine, fax
# or an intercept.
_NOT_A_PERSON = ("machine", "fax", "sit")


def record_agent_state(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(insert(agent_states).values(**values))


def agent_history(
    conn: Connection, agent: str | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    query = select(agent_states).order_by(agent_states.c.id.desc()).limit(limit)
    if agent is not None:
        query = query.where(agent_states.c.agent == agent)
    if since is not None:
        query = query.where(agent_states.c.at >= since)
    rows = [{k: iso(v) for k, v in r.items()} for r in conn.execute(query).mappings()]
    rows.reverse()
    return rows


def last_agent_states(conn: Connection) -> dict[str, str]:
    """Each agent's last recorded state (to log out, after a crash, agents
    the previous run left logged in)."""
    latest = (
        select(agent_states.c.agent, func.max(agent_states.c.id).label("last"))
        .group_by(agent_states.c.agent)
        .subquery()
    )
    rows = conn.execute(
        select(agent_states.c.agent, agent_states.c.state).join(
            latest, agent_states.c.id == latest.c.last
        )
    ).all()
    return {str(agent): str(state) for agent, state in rows}


def record_abandon(conn: Connection, values: dict[str, Any]) -> int:
    """An abandon, and its compliance ledger row in the same transaction (the
    two can never disagree)."""
    result = conn.execute(insert(abandons).values(**values))
    abandon_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    compliancedb.append(conn, [compliancedb.abandon_row(conn, values, abandon_id)])
    return abandon_id


def abandons_of(
    conn: Connection, campaign: str | None, since: datetime | None, limit: int | None
) -> list[dict[str, Any]]:
    query = select(abandons).order_by(abandons.c.id)
    if campaign is not None:
        query = query.where(abandons.c.campaign == campaign)
    if since is not None:
        query = query.where(abandons.c.at >= since)
    if limit is not None:
        query = query.limit(limit)
    return [{k: iso(v) for k, v in r.items()} for r in conn.execute(query).mappings()]


def abandon_window(conn: Connection, campaign: str, since: datetime) -> dict[str, Any]:
    """Abandons and calls answered by a person since `since`, with their times
    (the pacing ledger is rebuilt from these on start)."""
    abandoned = [
        t
        for (t,) in conn.execute(
            select(abandons.c.at).where(abandons.c.campaign == campaign, abandons.c.at >= since)
        )
    ]
    live = [
        t
        for (t,) in conn.execute(
            select(attempts.c.answered_at)
            .join(campaigns, campaigns.c.id == attempts.c.campaign_id)
            .where(
                campaigns.c.name == campaign,
                attempts.c.answered_at >= since,
                or_(attempts.c.amd_result.is_(None), attempts.c.amd_result.not_in(_NOT_A_PERSON)),
            )
        )
    ]
    machines = int(
        conn.execute(
            select(func.count())
            .select_from(attempts)
            .join(campaigns, campaigns.c.id == attempts.c.campaign_id)
            .where(
                campaigns.c.name == campaign,
                attempts.c.answered_at >= since,
                attempts.c.amd_result == "machine",
            )
        ).scalar_one()
    )
    return {"abandons": abandoned, "live_answers": live, "machines": machines}


def abandoned_since(conn: Connection, numbers: tuple[str, ...], since: datetime) -> dict[str, Any]:
    """The latest abandon time of each of `numbers` since `since` (Ofcom's
    72-hour rule)."""
    rows = conn.execute(
        select(abandons.c.number, func.max(abandons.c.at))
        .where(abandons.c.number.in_(numbers), abandons.c.at >= since)
        .group_by(abandons.c.number)
    ).all()
    return {str(n): at for n, at in rows}


def calls_since(conn: Connection, contact_id: int, since: datetime) -> list[datetime]:
    """When the contact was called (INVITE sent) since `since`, in any campaign,
    oldest first (the states' "N calls per 24 hours" rules)."""
    rows = conn.execute(
        select(attempts.c.invite_sent_at)
        .where(attempts.c.contact_id == contact_id, attempts.c.invite_sent_at >= since)
        .order_by(attempts.c.invite_sent_at)
    ).scalars()
    return list(rows)


def attempt_history(
    conn: Connection, contact_id: int
) -> list[tuple[datetime, str, str | None, int]]:
    """Every attempt at the contact, oldest first: (created_at, number, result,
    campaign id), for the campaign rules' counts and limits."""
    rows = conn.execute(
        select(attempts.c.created_at, attempts.c.number, attempts.c.result,
               attempts.c.campaign_id)
        .where(attempts.c.contact_id == contact_id)
        .order_by(attempts.c.id)
    ).all()  # fmt: skip
    return [(r[0], str(r[1]), r[2], int(r[3])) for r in rows]


def add_callback(conn: Connection, values: dict[str, Any]) -> int:
    result = conn.execute(insert(callbacks).values(**values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def due_callbacks(
    conn: Connection, campaign: str, now: datetime, limit: int
) -> list[dict[str, Any]]:
    query = (
        select(callbacks)
        .where(
            and_(
                callbacks.c.campaign == campaign,
                callbacks.c.state == "pending",
                callbacks.c.due_at <= now,
            )
        )
        .order_by(callbacks.c.due_at, callbacks.c.id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def set_callback(conn: Connection, callback_id: int, values: dict[str, Any]) -> None:
    conn.execute(update(callbacks).where(callbacks.c.id == callback_id).values(**values))


def callbacks_of(conn: Connection, campaign: str | None, state: str | None) -> list[dict[str, Any]]:
    query = select(callbacks).order_by(callbacks.c.due_at, callbacks.c.id)
    if campaign is not None:
        query = query.where(callbacks.c.campaign == campaign)
    if state is not None:
        query = query.where(callbacks.c.state == state)
    return [{k: iso(v) for k, v in r.items()} for r in conn.execute(query).mappings()]


def add_agent_account(conn: Connection, values: dict[str, Any]) -> None:
    taken = conn.execute(
        select(agent_accounts.c.id).where(
            or_(agent_accounts.c.id == values["id"],
                agent_accounts.c.username == values["username"])
        )
    ).first()  # fmt: skip
    if taken is not None:
        raise Conflict(
            f"an agent with id {values['id']!r} or username {values['username']!r} exists"
        )
    conn.execute(insert(agent_accounts).values(**values))


def remove_agent_account(conn: Connection, agent_id: str) -> bool:
    return bool(
        conn.execute(delete(agent_accounts).where(agent_accounts.c.id == agent_id)).rowcount
    )


def agent_accounts_of(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(agent_accounts).order_by(agent_accounts.c.id)).mappings()
    return [dict(r) for r in rows]


def reset_dialling_callbacks(conn: Connection) -> int:
    """After a crash: callbacks caught between "dialling" and "dialled" are
    pending again (their attempt, if one was made, is reconciled apart)."""
    return int(
        conn.execute(
            update(callbacks).where(callbacks.c.state == "dialling").values(state="pending")
        ).rowcount
    )
