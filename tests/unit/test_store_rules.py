"""The store's side of the campaign rules: the dialling order of `sort:` (the
stored key, checked against rules.Sort), a rule's `set`, `priority` and
`move_to`."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.compliance.rules import RuleContext, Sort, SortKey
from engine.errors import BadRequest
from engine.store import AttemptIntent, Store, ruledb
from engine.store.dialorder import sort_key

T0 = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    await s.close()


def sort_def(*keys: str) -> dict[str, Any]:
    """A campaign definition with `sort:` keys like "balance desc"."""
    out = []
    for key in keys:
        column, _, order = key.partition(" ")
        out.append({"column": column, "order": order or "asc"})
    return {"mode": "agentless", "sort": out}


async def sorted_campaign(
    store: Store, rows: list[dict[str, str]], *keys: str, name: str = "c1"
) -> list[int]:
    ids = [await store.add_contact("l1", [f"+1212555{i:04d}"], r) for i, r in enumerate(rows)]
    await store.upsert_campaign(name, "l1", sort_def(*keys))
    await store.sync_campaign_contacts(name)
    return ids


async def order(store: Store, name: str = "c1") -> list[int]:
    return [c.contact_id for c in await store.due_contacts(name, T0, 50)]


# ------------------------------------------------------- the stored key


values = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(-1e9, 1e9, allow_nan=False).map(repr),
    st.text(max_size=6),
    st.sampled_from(["", "0", "-0", "1e3", "abc", "ab", "a\x00b", "inf", "1_000"]),
)
contexts = st.tuples(
    values, st.integers(0, 9), st.one_of(st.none(), st.integers(0, 10**6)),
    st.one_of(st.none(), st.sampled_from(["busy", "answered", "no_answer", ""])),
)  # fmt: skip


@given(
    st.lists(contexts, min_size=2, max_size=8),
    st.lists(
        st.tuples(st.sampled_from(["v", "attempts", "last_attempt_at", "last_result"]),
                  st.booleans()),
        min_size=1, max_size=3, unique_by=lambda k: k[0],
    ),
)  # fmt: skip
def test_the_stored_key_sorts_as_rules_sort_does(
    rows: list[tuple[str | None, int, int | None, str | None]], spec: list[tuple[str, bool]]
) -> None:
    """The index's order (text of the key) is the order of rules.Sort.key."""
    sort = Sort(tuple(SortKey(column, desc) for column, desc in spec))
    pairs = []
    for v, attempts, seconds, result in rows:
        at = None if seconds is None else T0 + timedelta(seconds=seconds)
        attributes = {} if v is None else {"v": v}
        ctx = RuleContext(now=T0, attributes=attributes, attempts=attempts,
                          last_attempt_at=at, last_result=result)  # fmt: skip
        pairs.append((sort.key(ctx), sort_key(spec, attributes, attempts, at, result)))
    for a in pairs:
        for b in pairs:
            assert (a[0] < b[0]) == (a[1] < b[1]), (a, b)
            assert (a[0] == b[0]) == (a[1] == b[1]), (a, b)


def test_no_sort_is_an_empty_key() -> None:
    assert sort_key((), {"balance": "10"}) == ""


# ----------------------------------------------------------- dialling order


async def test_sort_by_a_column_after_priority_then_list_order(store: Store) -> None:
    rows = [{"balance": "5"}, {"balance": "120.5"}, {}, {"balance": "n/a"}, {"balance": "120.5"}]
    a, b, c, d, e = await sorted_campaign(store, rows, "balance desc")
    assert await order(store) == [b, e, a, d, c]  # numbers (desc), text, missing; ties: position
    store.set_contact_priority("c1", c, 5)
    assert await order(store) == [c, b, e, a, d]  # priority first


async def test_a_sorted_campaign_keys_contacts_added_later(store: Store) -> None:
    a, b = await sorted_campaign(store, [{"n": "2"}, {"n": "3"}], "n")
    await store.set_campaign_state("c1", "running")
    c = await store.add_contact("l1", ["+13125550001"], {"n": "1"})  # enrolled at once
    assert await order(store) == [c, a, b]


async def test_dynamic_keys_follow_the_results(store: Store) -> None:
    a, b, c = await sorted_campaign(store, [{}, {}, {}], "attempts", "last_attempt_at")
    for contact, minutes in ((a, 2), (b, 1)):
        intent = AttemptIntent("c1", contact, "+12125550000", "t", None,
                               T0 - timedelta(minutes=minutes))  # fmt: skip
        await store.create_attempt(intent)
        store.set_contact_state("c1", contact, state="retry", next_attempt_at=T0,
                                last_result="busy", attempts_delta=1)  # fmt: skip
    # c never attempted; a's attempt is older than b's
    assert await order(store) == [c, a, b]
    shown = await store.contact(a)
    assert shown["campaigns"][0]["last_attempt_at"] == (T0 - timedelta(minutes=2)).isoformat()


async def test_a_changed_sort_rekeys_the_campaign(store: Store) -> None:
    a, b = await sorted_campaign(store, [{"n": "1"}, {"n": "2"}], "n")
    assert await order(store) == [a, b]
    await store.upsert_campaign("c1", "l1", sort_def("n desc"))
    assert await order(store) == [b, a]
    await store.upsert_campaign("c1", "l1", {"mode": "agentless"})  # no sort: list order
    assert await order(store) == [a, b]


async def test_the_ready_walk_still_needs_no_sort(tmp_path: Path, store: Store) -> None:
    await sorted_campaign(store, [{"n": "1"}], "n")
    conn = sqlite3.connect(tmp_path / "store.db")
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT contact_id FROM campaign_contacts WHERE campaign_id = 1 "
        "AND dial_queue = 0 AND (state = 'pending' OR next_attempt_at <= '2030') "
        "ORDER BY priority DESC, sort_key, position LIMIT 50"
    ).fetchall()
    conn.close()
    text = " ".join(str(r[-1]) for r in plan)
    assert "ix_campaign_contacts_ready" in text and "TEMP B-TREE" not in text, text


# ----------------------------------------------------------- rule actions


async def test_set_writes_and_removes_columns_and_resorts(tmp_path: Path, store: Store) -> None:
    a, b = await sorted_campaign(store, [{"n": "1", "x": "y"}, {"n": "2"}], "n")
    store.set_contact_columns(a, {"n": "3", "x": None, "stage": "called"})
    shown = await store.contact(a)
    assert shown["attributes"] == {"n": "3", "stage": "called"}
    assert await order(store) == [b, a]
    out = tmp_path / "export.csv"
    await store.export_list("l1", out)
    header = out.read_text().splitlines()[0]
    assert "stage" in header.split(","), header


async def test_priority_is_per_campaign(store: Store) -> None:
    a, b = await sorted_campaign(store, [{}, {}])
    await store.upsert_campaign("c2", "l1", {"mode": "agentless"})
    await store.sync_campaign_contacts("c2")
    store.set_contact_priority("c1", b, 9)
    assert await order(store) == [b, a]
    assert await order(store, "c2") == [a, b]
    rows = {r["campaign"]: r for r in (await store.contact(b))["campaigns"]}
    assert (rows["c1"]["priority"], rows["c2"]["priority"]) == (9, 0)


async def test_move_leaves_one_campaign_for_another(store: Store) -> None:
    a, b, c = await sorted_campaign(store, [{}, {}, {}])
    await store.upsert_campaign("c2", "l1", {"mode": "agentless"})  # never synced
    store.move_contact("c1", a, "c2", "moved to c2")
    assert await order(store) == [b, c]
    assert await order(store, "c2") == [a]
    row = next(r for r in (await store.contact(a))["campaigns"] if r["campaign"] == "c1")
    assert (row["state"], row["skip_reason"]) == ("done", "moved to c2")
    # Finished in c2: reopened; under way there: left as it is.
    store.set_contact_state("c2", a, state="done", last_result="answered")
    store.move_contact("c1", a, "c2", "moved to c2")
    assert await order(store, "c2") == [a]
    store.set_contact_state("c2", a, state="retry", next_attempt_at=T0 + timedelta(hours=1))
    store.move_contact("c1", b, "c2", "moved to c2")
    assert await order(store, "c2") == [b]


async def test_move_to_a_campaign_of_another_list_is_refused(store: Store) -> None:
    (a,) = await sorted_campaign(store, [{}])
    await store.add_contact("other", ["+13125550001"])
    await store.upsert_campaign("c3", "other", {"mode": "agentless"})
    work = partial(ruledb.move_contact, ids=store._ids, name="c1", contact_id=a, target="c3",
                   reason="moved", now=T0)  # fmt: skip
    with pytest.raises(BadRequest, match="another list"):
        await store._writer.run(work)
    assert await order(store) == [a]


async def test_before_call_actions_write_only_changes_and_ledger_them(store: Store) -> None:
    from engine.bus import EventBus
    from engine.compliance.rules import PreCallDecision
    from engine.voice import rule_actions

    (a,) = await sorted_campaign(store, [{"tier": "gold", "old": "x"}])
    (cand,) = await store.due_contacts("c1", T0, 1)
    skip = PreCallDecision("no", None, 7, {"tier": "gold", "old": None, "new": "1"})
    rule_actions.apply_before(store, "c1", cand, skip)  # columns even so; no priority
    assert cand.attributes == {"tier": "gold", "new": "1"}  # this call sees them
    assert (await store.contact(a))["attributes"] == {"tier": "gold", "new": "1"}
    rule_actions.apply_before(store, "c1", cand, PreCallDecision(None, None, 7, {"new": "1"}))
    rule_actions.move_to(store, EventBus(), "c1", a, "c1b")  # no such campaign: logged only
    rows = await store.ledger_rows("c1", kinds=["rule_action"])
    assert [r["detail"] for r in rows] == [
        {"action": "set", "columns": {"old": None, "new": "1"}},
        {"action": "priority", "priority": 7, "was": 0},
        {"action": "move_to", "to": "c1b"},
    ]
    assert (await store.contact(a))["campaigns"][0]["priority"] == 7
