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


def test_the_beep_gives_a_machine_away() -> None:
    people = [[(0.5, 1.0)]]
    limit = talk_limit(people, 0.0)
    # Short talk, then a beep: told apart at the beep, not before.
    assert machine_bound([(0.3, 0.7)], people, limit, 0.1, beep=1.2) == pytest.approx(1.2)
    # Long talk gives it away before its beep.
    assert machine_bound([(0.3, 3.0)], people, limit, 0.1, beep=3.5) == pytest.approx(0.8)


def test_machines_lost_counts_silences_longer_than_the_wait_before_the_giveaway() -> None:
    machines = [
        ([(0.2, 0.6), (1.5, 4.0)], 1.5),  # pauses 0.9 s before giving itself away
        ([(0.2, 3.0)], 0.9),  # never pauses
        ([(0.2, 2.0), (3.0, 5.0)], 1.0),  # pauses only after it was told apart
    ]
    assert machines_lost(machines, 0.8) == 1
    assert machines_lost(machines, 0.95) == 0
    # Never told apart: the silence after its talk outlasts any wait.
    assert machines_lost([([(0.3, 0.7)], None)], 5.0) == 1
    # Told apart by a beep 0.5 s after its talk: lost only to a shorter wait.
    assert machines_lost([([(0.3, 0.7)], 1.2)], 0.4) == 1
    assert machines_lost([([(0.3, 0.7)], 1.2)], 0.6) == 0


def test_a_longer_wait_after_a_short_first_utterance() -> None:
    machines = [([(0.2, 0.6), (1.5, 4.0)], 1.5)]  # "Hello?" (0.4 s), 0.9 s pause, more
    assert machines_lost(machines, 0.8) == 1
    assert machines_lost(machines, 0.8, short_wait=1.0, split=0.5) == 0
    assert machines_lost(machines, 0.8, short_wait=1.0, split=0.3) == 1


def test_bounds_reports_the_median_and_the_wait_tables() -> None:
    labels = [
        _label("human", (0.5, 1.0)),
        _label("human", (0.3, 0.8), (2.0, 2.5)),
        _label("human", (0.2, 0.4)),
        _label("machine", (1.0, 5.0)),
        _label("machine", (0.2, 0.6), (0.9, 1.2)),
        _label("machine", (0.3, 0.7)),
        {"class": "fax", "speech": []},
    ]
    result = bounds(labels, 0.0, 0.1, [0.2, 0.4], short_wait=0.6, split=0.45)
    assert result["talk_limit_ms"] == 500
    assert result["false_machines"] == 0
    # Bounds 1.5 and 0.9 s; the third machine is never told apart (counts as late).
    assert result["machine_bound_ms"]["median"] == 1500
    assert result["machine_bound_ms"]["never"] == 1
    # The never-told-apart machine is lost at any wait; the pausing one (0.3 s) at 0.2 s.
    assert [row["machines_lost"] for row in result["people_wait"]] == [2, 1]
    assert result["people_wait"][0]["best_accuracy"] == pytest.approx(100 * 5 / 7, abs=0.01)
    split = result["people_wait_split"]["rows"]
    # The pausing machine said 0.4 s first: it gets the 0.6 s wait and is not lost.
    assert [row["machines_lost"] for row in split] == [1, 1]
    # People: 0.5, 0.5 and 0.2 s first utterances -> waits W, W, 0.6 s.
    assert [row["people_median_ms"] for row in split] == [200, 400]


def test_best_accuracy_counts_the_talk_length_rules_own_false_machines() -> None:
    labels = [_label("human", (0.0, 0.5 + i / 100)) for i in range(100)]
    labels.append(_label("machine", (0.0, 5.0)))
    result = bounds(labels, 1.0, 0.1, [0.8])
    assert result["false_machines"] == 1
    assert result["people_wait"][0]["best_accuracy"] == pytest.approx(100 * 100 / 101, abs=0.01)
