"""Trunk up/down state from OPTIONS answers."""

from __future__ import annotations

from carriers.sip.trunk import TrunkMonitor, TrunkState


def test_first_answer_brings_the_trunk_up_and_schedules_the_next_probe() -> None:
    m = TrunkMonitor("t1", interval=30, down_interval=5, now=0.0)
    assert m.due(0.0)
    change = m.on_result(200, 0.01, 0.0)
    assert change is not None
    assert (change.previous, change.state) == (TrunkState.UNKNOWN, TrunkState.UP)
    assert m.next_probe_at == 30.0
    assert not m.due(29.9)


def test_any_response_but_503_means_alive() -> None:
    m = TrunkMonitor("t1", now=0.0)
    m.on_result(200, 0.01, 0.0)
    assert m.on_result(404, 0.01, 30.0) is None  # RFC 3261 11: still a live server
    assert m.state is TrunkState.UP


def test_down_after_consecutive_failures_and_back_up() -> None:
    m = TrunkMonitor("t1", interval=30, down_interval=5, failures_to_down=2, now=0.0)
    m.on_result(200, 0.01, 0.0)
    assert m.on_result(None, None, 30.0) is None  # one miss is not enough
    assert m.state is TrunkState.UP
    change = m.on_result(503, 0.01, 60.0)
    assert change is not None and change.state is TrunkState.DOWN
    assert "503" in change.reason
    assert m.next_probe_at == 65.0  # probed more often while down
    up = m.on_result(200, 0.02, 65.0)
    assert up is not None and up.state is TrunkState.UP and m.failures == 0


def test_unknown_trunk_goes_down_on_its_first_failure() -> None:
    m = TrunkMonitor("t1", failures_to_down=3, now=0.0)
    change = m.on_result(None, None, 32.0)
    assert change is not None and change.state is TrunkState.DOWN
