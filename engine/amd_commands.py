"""The AMD sample of the command layer (registered in `engine.commands`):
list a campaign's recorded samples and mark one a person or a machine.

The marks give Ofcom's AMD false-positive estimate that `compliance.report`
applies to a UK campaign (engine.store.amdsampledb); every mark, a re-mark
too, is a row of the compliance ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import BadRequest
from engine.store.amdsampledb import MIN_MARKS

if TYPE_CHECKING:
    from engine.app import App


async def amd_samples(
    app: App, campaign: str, unmarked: bool = False, limit: int | None = None
) -> dict[str, Any]:
    """A campaign's recorded AMD samples (unmarked first: attempt, number,
    WAV path, mark) and the counts by mark."""
    if limit is not None and limit < 1:
        raise BadRequest(f"limit: must be at least 1, got {limit}")
    await app.store.campaign(campaign)  # NotFound for an unknown campaign
    counts = await app.store.amd_mark_counts(campaign)
    rows = await app.store.amd_samples(campaign, unmarked, limit)
    return {"campaign": campaign, "counts": counts, "min_marks": MIN_MARKS, "samples": rows}


async def amd_mark(app: App, attempt: int, mark: str, by: str) -> dict[str, Any]:
    """Mark the AMD sample of an attempt `person` (a false positive) or
    `machine`, by the operator `by`; re-marking replaces the mark."""
    return await app.store.mark_amd_sample(attempt, mark, by)
