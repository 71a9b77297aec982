"""The media clock's window, for load tests and operators: lateness over
the ticks since the last reset, and RTP receive totals of the calls on the
clock now (`media.stats`, with `reset: true` to start a new window)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.app import App


async def media_stats(app: App, reset: bool = False) -> dict[str, Any]:
    """Lateness percentiles (ms) of the media clock since the last reset (the
    last 4096 ticks at most), the endpoints it drives, and RTP received and
    lost (sequence gaps, RFC 3550 A.3) summed over their sessions; then, with
    `reset`, forget the lateness recorded so far."""
    clock = app.campaigns.tel.clock
    sessions = clock.sessions()
    result: dict[str, Any] = {
        "lateness_ms": clock.lateness_percentiles(),
        "endpoints": len(sessions),
        "rtp_received": sum(s.stats.received for s in sessions),
        "rtp_lost": sum(max(0, s.stats.lost) for s in sessions),
        "frames": clock.frames,
        "skipped_frames": clock.skipped_frames,
        "handler_errors": clock.handler_errors,
    }
    if reset:
        clock.reset_lateness()
    return result
