"""Trunk health from OPTIONS keep-alives: a small pure state machine.

Any response proves the trunk alive (RFC 3261 11: a 404 or 405 to OPTIONS
still means the server is there), except 503, which says it will not take
traffic now. A trunk goes down after `failures_to_down` failed probes in a row
and comes back up on the first good one; while down it is probed more often.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TrunkState(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class TrunkStateChanged:
    trunk: str
    state: TrunkState
    previous: TrunkState
    reason: str
    at: float


class TrunkMonitor:
    """Decides when to probe one trunk and what its answers mean."""

    def __init__(
        self,
        name: str,
        *,
        interval: float = 30.0,
        down_interval: float = 5.0,
        failures_to_down: int = 2,
        now: float = 0.0,
    ) -> None:
        self.name = name
        self.interval = interval
        self.down_interval = down_interval
        self.failures_to_down = failures_to_down
        self.state = TrunkState.UNKNOWN
        self.failures = 0
        self.last_rtt: float | None = None
        self.next_probe_at = now

    def due(self, now: float) -> bool:
        return now >= self.next_probe_at

    def on_result(
        self, status: int | None, rtt: float | None, now: float
    ) -> TrunkStateChanged | None:
        """Feed one probe's answer (status None: no answer within timer F)."""
        ok = status is not None and status != 503
        previous = self.state
        if ok:
            self.failures = 0
            self.last_rtt = rtt
            self.state = TrunkState.UP
            reason = f"OPTIONS answered {status}"
        else:
            self.failures += 1
            reason = "no answer to OPTIONS" if status is None else f"OPTIONS answered {status}"
            if self.failures >= self.failures_to_down or previous is TrunkState.UNKNOWN:
                self.state = TrunkState.DOWN
        wait = self.interval if self.state is TrunkState.UP else self.down_interval
        self.next_probe_at = now + wait
        if self.state is previous:
            return None
        return TrunkStateChanged(self.name, self.state, previous, reason, now)
