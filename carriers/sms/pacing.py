"""Rate limits and reconnect delays for SMS links, as pure values: time comes in as
``now``, randomness from an injected `random.Random`.

`TokenBucket` is the limiter shape of ``engine.voice.telephony.TokenBucket``
(carriers cannot import the engine): a caller reserves its token and is told
how long to wait for it, so any number of concurrent callers keep the rate
without polling. `Backoff` is the reconnect schedule: ``initial``, doubling up
to ``maximum``, each delay drawn from its upper half ("equal jitter") so binds
that fell together (an SMSC restart) do not all come back in the same instant.
"""

from __future__ import annotations

import random


class TokenBucket:
    """``rate`` tokens a second, bursts of up to ``burst`` (default a tenth of a
    second's worth, at least one)."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        if self.burst < 1:
            raise ValueError("burst must be at least one token")
        self._tokens = self.burst
        self._at: float | None = None

    def reserve(self, now: float) -> float:
        """Take the next token; returns how many seconds to wait before using it.

        Tokens can go negative: concurrent callers queue behind each other, each
        told its own slot, so the rate holds without anyone polling.
        """
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Backoff:
    """Delays after consecutive failures: the nth (from 0) is drawn uniformly from
    [d/2, d] with d = min(maximum, initial * 2**n); `reset` after a success."""

    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("need 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        # Capping the exponent keeps 2**n finite after days of failures.
        return min(self.maximum, self.initial * 2.0 ** min(self.failures, 64))

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        self.failures += 1
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def reset(self) -> None:
        self.failures = 0


__all__ = ["Backoff", "TokenBucket"]
