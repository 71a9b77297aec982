"""The SMS links' token bucket and reconnect backoff: a float clock, a seeded rng."""

from __future__ import annotations

import random

import pytest

from carriers.sms.pacing import Backoff, TokenBucket


def test_a_full_bucket_lets_the_burst_through_then_spaces_the_rest() -> None:
    bucket = TokenBucket(rate=50.0)  # burst 5
    waits = [bucket.reserve(0.0) for _ in range(10)]
    assert waits[:5] == [0.0] * 5
    assert waits[5:] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.10])


def test_concurrent_reservations_hold_the_rate_over_a_long_run() -> None:
    bucket = TokenBucket(rate=50.0)
    # 1,000 callers reserve at once: the last one is told its slot 19.9 s out.
    waits = [bucket.reserve(0.0) for _ in range(1000)]
    assert waits == sorted(waits)
    assert waits[-1] == pytest.approx((1000 - 5) / 50)


def test_tokens_refill_with_time_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=2.0)
    assert [bucket.reserve(0.0), bucket.reserve(0.0)] == [0.0, 0.0]
    assert bucket.reserve(0.0) == pytest.approx(0.1)
    # An idle hour refills only the burst, not an hour's worth.
    assert [bucket.reserve(3600.0) for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])


def test_a_paced_caller_gets_the_rate_it_asked_for() -> None:
    bucket = TokenBucket(rate=20.0, burst=1.0)
    now = 0.0
    sent = []
    for _ in range(100):
        now += bucket.reserve(now)  # wait for the slot, then send
        sent.append(now)
    assert sent[-1] - sent[0] == pytest.approx(99 / 20)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, None), (-1.0, None), (10.0, 0.5)])
def test_bad_bucket_parameters_are_refused(rate: float, burst: float | None) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


def test_backoff_doubles_to_the_maximum_each_delay_in_its_upper_half() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(7))
    ceilings = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    for ceiling in ceilings:
        assert backoff.ceiling() == ceiling
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.failures == len(ceilings)


def test_backoff_jitter_spreads_binds_that_failed_together() -> None:
    rng = random.Random(1)
    firsts = [Backoff(1.0, 60.0, rng).next_delay() for _ in range(200)]
    assert min(firsts) >= 0.5 and max(firsts) <= 1.0
    assert max(firsts) - min(firsts) > 0.4  # not one instant for all of them


def test_backoff_reset_starts_over_and_days_of_failures_stay_finite() -> None:
    backoff = Backoff(0.5, 30.0, random.Random(3))
    for _ in range(10_000):
        assert backoff.next_delay() <= 30.0
    backoff.reset()
    assert backoff.failures == 0 and backoff.ceiling() == 0.5
    assert 0.25 <= backoff.next_delay() <= 0.5


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_bad_backoff_parameters_are_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum, random.Random(0))
