"""One call-result vocabulary for every way an outbound call can end.

The engine's retry rules, reports and compliance ledger speak this vocabulary,
never raw SIP codes; the SIP status, reason phrase and any Reason header
(RFC 3326, Q.850 cause) are kept alongside so nothing the carrier said is lost.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class CallResult(enum.Enum):
    """What happened to a call attempt, as the dialer acts on it."""

    ANSWERED = "answered"
    BUSY = "busy"
    REJECTED = "rejected"
    NO_ANSWER = "no_answer"
    INVALID_NUMBER = "invalid_number"
    UNAVAILABLE = "unavailable"
    CARRIER_TIMEOUT = "carrier_timeout"
    AUTH_FAILED = "auth_failed"
    CARRIER_FAILURE = "carrier_failure"
    CANCELLED = "cancelled"
    # The engine's own: the daemon stopped (crash, kill -9) while the call was
    # in flight; set when the attempt is reconciled on the next start.
    INTERRUPTED = "interrupted"
    # Set by call analysis on an answered call: an answering machine, or a
    # fax. (A special information tone sets INVALID_NUMBER.)
    MACHINE = "machine"
    FAX = "fax"
    # Set by the dialer: a person answered and no agent took the call within
    # the 2 seconds after their greeting (the safe-harbor message played).
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """The final outcome of one INVITE, with what the carrier said."""

    result: CallResult
    sip_status: int | None = None
    reason: str = ""
    q850_cause: int | None = None
    reason_header: str | None = None


# Q.850 causes that say more than the SIP status they ride on (carriers often
# send 480 or 503 for everything and put the real story in the Reason header).
_Q850_RESULT: dict[int, CallResult] = {
    1: CallResult.INVALID_NUMBER,  # unallocated (unassigned) number
    3: CallResult.INVALID_NUMBER,  # no route to destination
    22: CallResult.INVALID_NUMBER,  # number changed
    28: CallResult.INVALID_NUMBER,  # invalid number format
    17: CallResult.BUSY,  # user busy
    18: CallResult.NO_ANSWER,  # no user responding
    19: CallResult.NO_ANSWER,  # no answer from user (user alerted)
    21: CallResult.REJECTED,  # call rejected
    27: CallResult.UNAVAILABLE,  # destination out of order
    34: CallResult.UNAVAILABLE,  # no circuit/channel available
    38: CallResult.UNAVAILABLE,  # network out of order
    41: CallResult.UNAVAILABLE,  # temporary failure
    42: CallResult.UNAVAILABLE,  # switching equipment congestion
    47: CallResult.UNAVAILABLE,  # resource unavailable, unspecified
}

_STATUS_RESULT: dict[int, CallResult] = {
    486: CallResult.BUSY,
    600: CallResult.BUSY,
    603: CallResult.REJECTED,
    408: CallResult.NO_ANSWER,
    480: CallResult.NO_ANSWER,
    404: CallResult.INVALID_NUMBER,
    484: CallResult.INVALID_NUMBER,
    604: CallResult.INVALID_NUMBER,
    410: CallResult.UNAVAILABLE,
    401: CallResult.AUTH_FAILED,
    407: CallResult.AUTH_FAILED,
}

_CAUSE_RE = re.compile(r"(?i)\bQ\.850\s*;(?:.*?;)?\s*cause\s*=\s*(\d{1,3})")


def q850_cause(reason_header: str | None) -> int | None:
    """Extract the Q.850 cause from a Reason header value (RFC 3326 2)."""
    if not reason_header:
        return None
    match = _CAUSE_RE.search(reason_header)
    return int(match.group(1)) if match else None


def classify_failure(status: int, reason: str, reason_header: str | None = None) -> CallOutcome:
    """Map a final non-2xx response to the call-result vocabulary.

    The SIP status decides first; a Q.850 cause refines the generic statuses
    (480, 5xx, 6xx-other, other 4xx) where it is more specific.
    """
    cause = q850_cause(reason_header)
    result = _STATUS_RESULT.get(status)
    if result is None:
        if cause is not None and cause in _Q850_RESULT:
            result = _Q850_RESULT[cause]
        elif 500 <= status <= 599:
            result = CallResult.UNAVAILABLE
        else:
            result = CallResult.CARRIER_FAILURE
    elif status == 480 and cause in _Q850_RESULT:
        result = _Q850_RESULT[cause]
    return CallOutcome(result, status, reason, cause, reason_header)
