"""The campaign rules' actions on a contact, as the dial loops carry them out:
a before_call rule's `set` and `priority`, an after_call or after_wrapup
rule's `move_to` (see engine.compliance.rules for when they apply). Each is
a queued store write plus a `rule_action` row in the compliance ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.bus import EventBus
    from engine.compliance.rules import PreCallDecision
    from engine.store import DialCandidate, Store


def apply_before(
    store: Store, campaign: str, candidate: DialCandidate, decision: PreCallDecision
) -> None:
    """`set` (written even when the call is skipped; this call, its IVR and
    its after_call rules see the new columns) and `priority` (the contact's
    in this campaign, for its next turn). Only changes are written."""
    cid, attributes = candidate.contact_id, candidate.attributes
    changed = {k: v for k, v in decision.set_columns.items()
               if (attributes.get(k) != v if v is not None else k in attributes)}  # fmt: skip
    if changed:
        store.set_contact_columns(cid, changed)
        for column, value in changed.items():
            if value is None:
                attributes.pop(column, None)
            else:
                attributes[column] = value
        _ledger(store, campaign, cid, "set", {"columns": changed})
    priority = decision.priority
    if priority is not None and decision.skip_reason is None and priority != candidate.priority:
        store.set_contact_priority(campaign, cid, priority)
        _ledger(store, campaign, cid, "priority", {"priority": priority, "was": candidate.priority})


def move_to(store: Store, bus: EventBus, campaign: str, contact_id: int, target: str) -> None:
    """The contact is done in `campaign` (its reason says where it went) and
    enrolled in `target`, a campaign of the same list (checked at load)."""
    store.move_contact(campaign, contact_id, target, f"moved to {target} (campaign rule)")
    _ledger(store, campaign, contact_id, "move_to", {"to": target})
    bus.publish("contact.moved", campaign=campaign, contact=contact_id, to=target)


def _ledger(
    store: Store, campaign: str, contact_id: int, action: str, detail: dict[str, Any]
) -> None:
    store.ledger("rule_action", source="dialer", campaign=campaign, contact_id=contact_id,
                 rule=f"rules: then.{action}", detail={"action": action, **detail})  # fmt: skip
