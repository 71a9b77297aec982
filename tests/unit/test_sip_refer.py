"""Blind transfer with REFER (RFC 3515) on the sans-IO user agent: the REFER
we send, and how the far end's answer and NOTIFYs become one result."""

from __future__ import annotations

from carriers.sip.events import CallTransferResult
from carriers.sip.message import Request, Response
from tests.unit.test_sip_ua import answered_call
from tests.unit.test_sip_ua import in_dialog as far_request


def notify(invite: Request, cseq: int, sipfrag: str, event: str = "refer",
           state: str = "terminated;reason=noresource") -> bytes:  # fmt: skip
    head = far_request(invite, "NOTIFY", cseq, Event=event, Subscription_State=state)
    body = sipfrag.encode()
    head = head.replace(b"Content-Length: 0\r\n", b"Content-Type: message/sipfrag;version=2.0\r\n"
                        + f"Content-Length: {len(body)}\r\n".encode())  # fmt: skip
    return head + body


def results(peer) -> list[CallTransferResult]:  # type: ignore[no-untyped-def]
    return [e for e in peer.of_type(CallTransferResult) if isinstance(e, CallTransferResult)]


def referred():  # type: ignore[no-untyped-def]
    peer, call_id, invite, _ = answered_call()
    assert peer.ua.refer(call_id, "sip:+12125553011@192.0.2.1", peer.now)
    peer.drain()
    return peer, call_id, invite, peer.last("REFER")


def test_refer_goes_in_the_dialog_with_refer_to_and_contact() -> None:
    peer, call_id, invite, refer = referred()
    assert refer.call_id == invite.call_id and refer.cseq.method == "REFER"
    assert refer.cseq.number > invite.cseq.number
    assert refer.headers.get("Refer-To") == "<sip:+12125553011@192.0.2.1>"
    assert refer.headers.get("Contact") is not None
    assert "tag=callee" in (refer.headers.get("To") or "")  # the dialog's remote tag
    assert not peer.ua.refer(call_id, "sip:x@192.0.2.1", peer.now)  # one at a time


def test_accepted_then_target_answered_is_one_success() -> None:
    peer, call_id, invite, refer = referred()
    peer.respond(refer, 202)
    assert results(peer) == []
    out = peer.feed(notify(invite, 2, "SIP/2.0 100 Trying\r\n", state="active;expires=60"))
    assert [m.status for m in out if isinstance(m, Response)] == [200]
    assert results(peer) == []  # provisional: not the result yet
    peer.feed(notify(invite, 3, "SIP/2.0 200 OK\r\n"))
    peer.feed(notify(invite, 4, "SIP/2.0 200 OK\r\n"))  # a repeat changes nothing
    (result,) = results(peer)
    assert result.accepted and result.status == 200 and result.call_id == call_id


def test_refused_refer_and_a_failed_target_are_failures() -> None:
    peer, _, _, refer = referred()
    peer.respond(refer, 405)
    (result,) = results(peer)
    assert not result.accepted and result.status == 405 and "refused" in result.reason
    peer, _, invite, refer = referred()
    peer.respond(refer, 202)
    peer.feed(notify(invite, 2, "SIP/2.0 486 Busy Here\r\n"))
    (result,) = results(peer)
    assert not result.accepted and result.status == 486 and "486 Busy Here" in result.reason


def test_notify_of_another_event_or_a_garbled_sipfrag_is_not_a_result() -> None:
    peer, _, invite, refer = referred()
    peer.respond(refer, 202)
    out = peer.feed(notify(invite, 2, "SIP/2.0 200 OK\r\n", event="dialog"))
    assert [m.status for m in out if isinstance(m, Response)] == [200]
    peer.feed(notify(invite, 3, "hello there\r\n"))
    assert results(peer) == []


def test_unanswered_refer_times_out_as_a_failure() -> None:
    peer, _, _, _ = referred()
    peer.advance(peer.now + 40.0)  # timer F: 64*T1
    (result,) = results(peer)
    assert not result.accepted and result.status is None and "timer F" in result.reason


def test_refer_before_the_answer_is_not_sent() -> None:
    from tests.unit.test_sip_ua import start_call

    peer, call_id, _ = start_call()
    assert not peer.ua.refer(call_id, "sip:x@192.0.2.1", peer.now)
    assert peer.requests("REFER") == []
