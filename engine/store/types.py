"""Value objects and vocabulary of the store, shared by its modules and callers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.errors import InvalidState

# campaign_contacts.state: where a contact stands in one campaign.
# "callback": an agent scheduled a call back (callbacks table); not dialled by
# the queue until the callback is due. "deferred": not callable now (outside
# its calling hours in its own time zone, a restricted day); due again at
# next_attempt_at, the reason in skip_reason. "sending": an SMS or email
# campaign's contact whose message is written and not yet accepted by the
# carrier (the messages table says where it is; a restart resumes the
# message, it does not make a new one).
CONTACT_STATES = frozenset(
    {"pending", "in_flight", "retry", "done", "skipped", "failed", "callback", "deferred",
     "sending"}
)  # fmt: skip
# campaigns.state
CAMPAIGN_STATES = frozenset({"stopped", "running", "paused", "completed"})
# campaign_contacts.dial_queue: READY to dial now (pending, or a retry whose
# time has come), WAITING for its retry time, IDLE (in flight or finished).
READY, WAITING, IDLE = 0, 1, 2

# Contact states that count as processed (the contact needs no more dialling).
FINISHED_STATES = ("done", "skipped", "failed")

# Attempt columns a caller may set after creation (update_attempt).
ATTEMPT_TIME_FIELDS = frozenset(
    {"invite_sent_at", "ringing_at", "answered_at", "ended_at", "bridged_at"}
)
ATTEMPT_UPDATE_FIELDS = ATTEMPT_TIME_FIELDS | {
    "result",
    "sip_status",
    "reason",
    "q850_cause",
    "call_id",
    "ended_by",
    "duration_ms",
    "amd_result",
    "amd_cause",
    "amd_ms",
    "beep_end_ms",
    "message_started_ms",
    "agent",
    "answer_to_agent_ms",
    "greeting_end_ms",
    "wrapup_code",
    "local_time",  # the contact's local time when the INVITE left (aware datetime or ISO text)
    "ivr_path",  # JSON text (or a JSON-able value) of the IVR steps
    "ivr_summary",
}

INTERRUPTED = "interrupted"


def dial_queue(state: str, next_attempt_at: datetime | None, now: datetime) -> int:
    """The dial queue of a contact in `state` (see READY, WAITING, IDLE)."""
    if state == "pending":
        return READY
    if state in ("retry", "deferred"):
        return READY if next_attempt_at is None or next_attempt_at <= now else WAITING
    return IDLE


class StoreClosed(InvalidState):
    """The store was closed; no more work is accepted."""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What a CSV import did.

    `rows` counts data records read (blank lines aside); `imported` the
    contacts (or DNC entries) written; `duplicates` and `invalid` the rows
    rejected, each listed in the error file with its line and reason;
    `warnings` the rows imported without one of their numbers (also listed).
    """

    rows: int
    imported: int
    duplicates: int
    invalid: int
    error_path: str | None
    seconds: float
    warnings: int = 0


@dataclass(frozen=True, slots=True)
class DialCandidate:
    """A contact due for a call in one campaign."""

    contact_id: int
    phones: tuple[str, ...]  # E.164, in column order
    attempts: int
    attributes: dict[str, str]
    priority: int
    columns: tuple[str, ...] = ()  # the phone column of each of `phones`


@dataclass(frozen=True, slots=True)
class AttemptIntent:
    """An attempt about to be dialled: stored (and committed) before its INVITE."""

    campaign: str
    contact_id: int
    number: str
    trunk: str
    caller_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DncHit:
    """Why a number or contact may not be called: the list that has it (its
    kind) and the entry's source. Expired entries never make a hit."""

    list: str
    kind: str
    source: str
    expires_at: datetime | None = None

    @property
    def reason(self) -> str:
        """The skip reason: "do-not-contact list opt-outs (ivr)"."""
        return f"do-not-contact list {self.list} ({self.source})"
