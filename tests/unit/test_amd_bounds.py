"""The timing oracle of benchmarks.amd.bounds on hand-made labels."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.amd.bounds import bounds, machine_bound, machines_lost, talk_limit


def _label(cls: str, *segments: tuple[float, float]) -> dict[str, Any]:
    return {"class": cls, "speech": [list(s) for s in segments]}


def test_talk_limit_spends_the_budget_on_the_longest_talkers() -> None:
    people = [[(0.0, 0.5 + i / 100)] for i in range(100)]  # 0.50 .. 1.49 s
    # No budget: only talk longer than every person's is a machine.
    assert talk_limit(people, 0.0) == pytest.approx(1.49)
    # 1% of 100 people: the longest talker may be called machine.
    assert talk_limit(people, 1.0) == pytest.approx(1.48)
    assert talk_limit(people, 2.0) == pytest.approx(1.47)


def test_machine_bound_takes_the_first_giveaway() -> None:
    people = [[(0.5, 1.0)], [(0.3, 0.8), (2.0, 2.5)]]  # "Hello?" ... and "Hello? ... Hello?"
    limit = talk_limit(people, 0.0)  # 0.5 s
    # Long talk: machine once it has talked longer than any person.
    assert machine_bound([(1.0, 5.0)], people, limit, 0.1) == pytest.approx(1.5)
    # Resumes after a pause no person makes after such a first utterance.
    assert machine_bound([(0.2, 0.6), (0.9, 1.2)], people, limit, 0.1) == pytest.approx(0.9)
    # Same first utterance and pause as the second person: not told apart at the
    # resumption, only when the talk outlasts every person's.
    assert machine_bound([(0.3, 0.8), (2.0, 4.0)], people, limit, 0.1) == pytest.approx(2.5)
    # A third stretch of talk when no person has one.
    assert machine_bound([(0.3, 0.8), (2.0, 2.4), (2.6, 2.9)], people, limit, 0.1) == pytest.approx(
        2.6
    )
    # Short and alone: never told apart by timing.
    assert machine_bound([(0.3, 0.7)], people, limit, 0.1) is None


def test_machines_lost_counts_pauses_longer_than_the_wait_before_the_giveaway() -> None:
    machines = [
        ([(0.2, 0.6), (1.5, 4.0)], 1.5),  # pauses 0.9 s before giving itself away
        ([(0.2, 3.0)], 0.9),  # never pauses
        ([(0.2, 2.0), (3.0, 5.0)], 1.0),  # pauses only after it was told apart
    ]
    assert machines_lost(machines, 0.8) == 1
    assert machines_lost(machines, 0.95) == 0


def test_bounds_reports_the_median_and_the_wait_table() -> None:
    labels = [
        _label("human", (0.5, 1.0)),
        _label("human", (0.3, 0.8), (2.0, 2.5)),
        _label("machine", (1.0, 5.0)),
        _label("machine", (0.2, 0.6), (0.9, 1.2)),
        _label("machine", (0.3, 0.7)),
        {"class": "fax", "speech": []},
    ]
    result = bounds(labels, 0.0, 0.1, [0.2, 0.4])
    assert result["talk_limit_ms"] == 500
    # Bounds 1.5 and 0.9 s; the third machine is never told apart (counts as late).
    assert result["machine_bound_ms"]["median"] == 1500
    assert result["machine_bound_ms"]["never"] == 1
    assert [row["machines_lost"] for row in result["people_wait"]] == [1, 0]
    assert result["people_wait"][0]["best_accuracy"] == pytest.approx(100 * 5 / 6, abs=0.01)
