"""The user agent core with a float clock: transactions, dialogs, CANCEL,
forking, auth, session timers, and requests from the far end."""

from __future__ import annotations

import itertools
import random

import pytest

from carriers.sip.auth import Credentials, DigestSession, verify_authorization
from carriers.sip.events import (
    CallAnswered,
    CallEarlyMedia,
    CallEnded,
    CallMediaChanged,
    CallProgress,
    OptionsResult,
)
from carriers.sip.message import Request, Response, SipURI
from carriers.sip.outcome import CallResult
from carriers.sip.sdp import Direction, parse_sdp
from carriers.sip.transaction import Target
from tests.unit.sipfake import ANSWER_SDP, TRUNK, Peer, make_spec, make_ua


def start_call(**kwargs: object) -> tuple[Peer, str, Request]:
    ua = make_ua()
    peer = Peer(ua)
    call_id = ua.place_call(make_spec(**kwargs), 0.0)
    peer.drain()
    return peer, call_id, peer.last("INVITE")


def ended(peer: Peer) -> CallEnded:
    found = peer.of_type(CallEnded)
    assert len(found) == 1, f"expected exactly one CallEnded, got {found}"
    event = found[0]
    assert isinstance(event, CallEnded)
    return event


# ------------------------------------------------------------ INVITE client tx


def test_invite_is_retransmitted_on_timer_a_then_times_out_on_b() -> None:
    peer, _, invite = start_call()
    times = [0.0]
    while peer.ua.get_timer() is not None and peer.now < 40:
        before = len(peer.requests("INVITE"))
        peer.advance(peer.ua.get_timer() or 0)
        if len(peer.requests("INVITE")) > before:
            times.append(peer.now)
    # RFC 3261 17.1.1.2: A doubles from T1; B fires at 64*T1 = 32 s.
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(bytes(r) == bytes(invite) for r in peer.requests("INVITE"))
    event = ended(peer)
    assert event.outcome.result is CallResult.CARRIER_TIMEOUT
    assert event.at == pytest.approx(32.0)


def test_provisional_stops_retransmission_and_timer_b() -> None:
    peer, _, invite = start_call()
    peer.now = 0.2
    peer.respond(invite, 100, tag=None)
    peer.advance(100.0)
    assert len(peer.requests("INVITE")) == 1
    assert not peer.of_type(CallEnded)  # 17.1.1.2: B no longer guards Proceeding


def test_invite_headers_carry_caller_id_and_offer() -> None:
    from carriers.sip.message import Address

    pai = Address(SipURI(host="acme.test", user="+12125550100"))
    _, call_id, invite = start_call(asserted_identity=pai, privacy="id")
    assert invite.call_id == call_id
    assert invite.from_.display_name == "Acme"
    assert invite.from_.tag
    assert invite.to.tag is None
    assert invite.cseq.number == 1 and invite.cseq.method == "INVITE"
    assert invite.top_via.branch and invite.top_via.branch.startswith("z9hG4bK")
    assert invite.headers.get("P-Asserted-Identity") == "<sip:+12125550100@acme.test>"
    assert invite.headers.get("Privacy") == "id"
    assert invite.content_type == "application/sdp"
    offer = parse_sdp(invite.body)
    assert offer.media[0].port == 40000
    assert invite.max_forwards == 70


def test_failure_is_acked_per_17_1_1_3_and_retransmission_reacked() -> None:
    peer, _, invite = start_call()
    peer.respond(invite, 180)
    busy = peer.respond(invite, 486, headers=[("Reason", 'Q.850;cause=17;text="busy"')])
    ack = peer.last("ACK")
    assert ack.top_via.branch == invite.top_via.branch  # same transaction
    assert ack.uri == invite.uri
    assert ack.cseq.number == invite.cseq.number and ack.cseq.method == "ACK"
    assert ack.to.tag == "callee"
    assert ack.from_.tag == invite.from_.tag
    peer.feed(busy)  # retransmitted final response
    assert len(peer.requests("ACK")) == 2
    event = ended(peer)
    assert event.outcome.result is CallResult.BUSY
    assert event.outcome.sip_status == 486
    assert event.outcome.q850_cause == 17
    assert event.ended_by == "remote"


# -------------------------------------------------------------------- answer


def test_answer_confirms_dialog_and_acks_every_2xx_retransmission() -> None:
    peer, call_id, invite = start_call()
    peer.respond(invite, 180)
    ok = peer.respond(
        invite, 200, body=ANSWER_SDP,
        headers=[("Record-Route", "<sip:p2.example;lr>"), ("Record-Route", "<sip:p1.example;lr>")],
    )  # fmt: skip
    ack = peer.last("ACK")
    assert ack.top_via.branch != invite.top_via.branch  # 2xx ACK is its own transaction
    assert str(ack.uri) == "sip:callee@192.0.2.1:5060"  # remote target from Contact
    # 12.1.2: route set = Record-Route reversed
    assert ack.headers.get_all("Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    answered = peer.of_type(CallAnswered)
    assert len(answered) == 1
    media = answered[0].media  # type: ignore[attr-defined]
    assert media.remote_address == "192.0.2.1" and media.remote_port == 30000
    assert media.codec.name == "PCMU" and media.dtmf_payload_type == 101
    for _ in range(3):
        peer.feed(ok)
    assert len(peer.requests("ACK")) == 4
    assert not peer.requests("BYE")
    peer.ua.hangup(call_id, 5.0)
    peer.drain()
    bye = peer.last("BYE")
    assert bye.cseq.number == invite.cseq.number + 1
    assert bye.headers.get_all("Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert peer.sent[-1][1] == Target("p1.example", 5060)  # first route is the next hop
    event = ended(peer)
    assert event.outcome.result is CallResult.ANSWERED and event.ended_by == "local"


def test_forked_second_2xx_is_acked_and_ended_with_bye() -> None:
    peer, _, invite = start_call()
    peer.respond(invite, 180, tag="fork-a", body=ANSWER_SDP)
    peer.respond(invite, 180, tag="fork-b")
    assert len(peer.of_type(CallEarlyMedia)) == 1
    assert len(peer.of_type(CallProgress)) == 2
    peer.respond(invite, 200, tag="fork-b", body=ANSWER_SDP)
    peer.respond(invite, 200, tag="fork-a", body=ANSWER_SDP, contact="<sip:a@192.0.2.7>")
    acks = peer.requests("ACK")
    assert [a.to.tag for a in acks] == ["fork-b", "fork-a"]
    bye = peer.last("BYE")
    assert bye.to.tag == "fork-a" and str(bye.uri) == "sip:a@192.0.2.7"
    assert len(peer.of_type(CallAnswered)) == 1
    assert not peer.of_type(CallEnded)  # the winning dialog is still up


# -------------------------------------------------------------------- CANCEL


def test_ring_timeout_sends_cancel_and_487_gives_no_answer() -> None:
    peer, _, invite = start_call(ring_timeout=20.0)
    peer.respond(invite, 180)
    peer.advance(19.9)
    assert not peer.requests("CANCEL")
    peer.advance(20.0)
    cancel = peer.last("CANCEL")
    # 9.1: CANCEL mirrors the INVITE.
    assert cancel.top_via == invite.top_via
    assert cancel.uri == invite.uri and cancel.call_id == invite.call_id
    assert cancel.cseq.number == invite.cseq.number and cancel.cseq.method == "CANCEL"
    assert cancel.to.tag is None
    peer.respond(cancel, 200, tag="callee")
    peer.respond(invite, 487)
    assert peer.last("ACK").cseq.method == "ACK"
    event = ended(peer)
    assert event.outcome.result is CallResult.NO_ANSWER
    assert event.outcome.sip_status == 487
    assert event.ended_by == "local"


def test_cancel_waits_for_a_provisional_response() -> None:
    peer, call_id, invite = start_call()
    peer.ua.cancel(call_id, 0.1)
    peer.drain()
    assert not peer.requests("CANCEL")  # 9.1: not before a provisional
    peer.now = 0.3
    peer.respond(invite, 100, tag=None)
    assert peer.requests("CANCEL")


def test_200_crossing_cancel_is_acked_and_ended_with_bye() -> None:
    peer, _, invite = start_call(ring_timeout=15.0)
    peer.respond(invite, 180)
    peer.advance(15.0)
    cancel = peer.last("CANCEL")
    peer.respond(invite, 200, body=ANSWER_SDP)  # the callee picked up as we gave up
    peer.respond(cancel, 200)
    assert peer.last("ACK").to.tag == "callee"
    bye = peer.last("BYE")
    assert bye.to.tag == "callee"
    event = ended(peer)
    assert event.outcome.result is CallResult.NO_ANSWER
    assert "CANCEL" in event.outcome.reason
    assert not peer.of_type(CallAnswered)


def test_cancel_without_final_response_gives_up_after_64_t1() -> None:
    peer, call_id, invite = start_call()
    peer.respond(invite, 180)
    peer.ua.cancel(call_id, 1.0)
    peer.drain()
    peer.advance(40.0)
    event = ended(peer)
    assert event.outcome.result is CallResult.CANCELLED
    assert event.at == pytest.approx(33.0)


# ---------------------------------------------------------------------- auth


def test_401_is_answered_with_digest_and_stale_retried_but_bad_password_fails() -> None:
    rng = random.Random(3)
    auth = DigestSession(Credentials("outdial", "secret"), rng)
    peer, _, invite = start_call(auth=auth)
    challenge = 'Digest realm="carrier.test", nonce="n1", qop="auth", algorithm=MD5'
    peer.respond(invite, 401, headers=[("WWW-Authenticate", challenge)])
    second = peer.last("INVITE")
    assert second.cseq.number == 2 and second.call_id == invite.call_id
    assert second.from_.tag == invite.from_.tag
    assert second.top_via.branch != invite.top_via.branch
    value = second.headers.get("Authorization")
    assert value is not None
    assert verify_authorization(value, method="INVITE", password="secret", body=second.body)
    assert not verify_authorization(value, method="INVITE", password="other", body=second.body)
    stale = 'Digest realm="carrier.test", nonce="n2", qop="auth", stale=true'
    peer.respond(second, 401, headers=[("WWW-Authenticate", stale)])
    third = peer.last("INVITE")
    assert third.cseq.number == 3
    peer.respond(third, 401, headers=[("WWW-Authenticate", stale.replace(", stale=true", ""))])
    assert len(peer.requests("INVITE")) == 3
    event = ended(peer)
    assert event.outcome.result is CallResult.AUTH_FAILED
    assert event.outcome.sip_status == 401


def test_407_uses_proxy_authorization() -> None:
    auth = DigestSession(Credentials("outdial", "secret"), random.Random(3))
    peer, _, invite = start_call(auth=auth)
    challenge = 'Digest realm="proxy.test", nonce="p1", algorithm=SHA-256, qop="auth"'
    peer.respond(invite, 407, headers=[("Proxy-Authenticate", challenge)])
    second = peer.last("INVITE")
    value = second.headers.get("Proxy-Authorization")
    assert value is not None and "SHA-256" in value
    assert second.headers.get("Authorization") is None


def test_no_credentials_means_auth_failed_at_once() -> None:
    peer, _, invite = start_call()
    peer.respond(invite, 401, headers=[("WWW-Authenticate", 'Digest realm="r", nonce="n"')])
    assert ended(peer).outcome.result is CallResult.AUTH_FAILED


# ------------------------------------------------------ requests from them


def answered_call(**kwargs: object) -> tuple[Peer, str, Request, Response]:
    peer, call_id, invite = start_call(**kwargs)
    ok = peer.respond(invite, 200, body=ANSWER_SDP, **({}))
    return peer, call_id, invite, ok


def in_dialog(invite: Request, method: str, cseq: int, body: bytes = b"", **headers: str) -> bytes:
    lines = [
        f"{method} sip:outdial@192.0.2.10:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfar{method}{cseq}",
        "Max-Forwards: 70",
        "From: <sip:15551230001@192.0.2.1>;tag=callee",
        f"To: {invite.headers.get('From')}",
        f"Call-ID: {invite.call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:callee@192.0.2.1:5060>",
    ]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_bye_from_far_end_is_answered_and_ends_the_call() -> None:
    peer, _, invite, _ = answered_call()
    peer.now = 4.0
    bye = in_dialog(invite, "BYE", 1, Reason='Q.850;cause=16;text="Normal call clearing"')
    out = peer.feed(bye)
    assert [(m.status, m.cseq.method) for m in out if isinstance(m, Response)] == [(200, "BYE")]
    event = ended(peer)
    assert event.ended_by == "remote" and event.outcome.result is CallResult.ANSWERED
    assert event.outcome.reason_header and "cause=16" in event.outcome.reason_header
    again = peer.feed(bye)  # retransmitted BYE: the server transaction answers again
    assert [m.status for m in again if isinstance(m, Response)] == [200]
    assert len(peer.of_type(CallEnded)) == 1


def test_reinvite_hold_is_answered_with_our_sdp() -> None:
    peer, _, invite, _ = answered_call()
    hold = ANSWER_SDP.replace(b"a=sendrecv", b"a=sendonly").replace(
        b"o=carrier 1 1", b"o=carrier 1 2"
    )
    out = peer.feed(in_dialog(invite, "INVITE", 2, hold))
    ok = [m for m in out if isinstance(m, Response)][-1]
    assert ok.status == 200 and ok.content_type == "application/sdp"
    answer = parse_sdp(ok.body)
    assert answer.media[0].direction is Direction.RECVONLY or answer.direction is Direction.RECVONLY
    assert answer.media[0].port == 40000
    changed = peer.of_type(CallMediaChanged)
    assert len(changed) == 1
    peer.advance(peer.now + 2.0)  # no ACK yet: the 200 is retransmitted
    assert len([m for m, _ in peer.sent if isinstance(m, Response) and m.status == 200]) >= 2


def test_unknown_dialog_gets_481_and_options_gets_200() -> None:
    peer, _, invite, _ = answered_call()
    stray = in_dialog(invite, "BYE", 9).replace(invite.call_id.encode(), b"nosuchcall")
    out = peer.feed(stray)
    assert [m.status for m in out if isinstance(m, Response)] == [481]
    options = (
        b"OPTIONS sip:outdial@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKo1\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:mon@192.0.2.1>;tag=m\r\nTo: <sip:outdial@192.0.2.10>\r\n"
        b"Call-ID: opt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    reply = [m for m in peer.feed(options) if isinstance(m, Response)]
    assert reply[0].status == 200 and "INVITE" in (reply[0].headers.get("Allow") or "")


# ----------------------------------------------------------- session timers


def test_session_timer_we_refresh_at_half_interval() -> None:
    peer, _, invite = start_call()
    peer.respond(
        invite, 200, body=ANSWER_SDP,
        headers=[("Session-Expires", "120;refresher=uac"), ("Allow", "INVITE, ACK, BYE, UPDATE")],
    )  # fmt: skip
    peer.advance(59.9)
    assert not peer.requests("UPDATE")
    peer.advance(60.0)
    update = peer.last("UPDATE")
    assert update.headers.get("Session-Expires") == "120;refresher=uac"
    peer.respond(update, 200)
    peer.advance(119.0)
    assert len(peer.requests("UPDATE")) == 1
    peer.advance(120.0)
    assert len(peer.requests("UPDATE")) == 2
    assert not peer.of_type(CallEnded)


def test_session_timer_expiry_when_far_end_does_not_refresh() -> None:
    peer, _, invite = start_call()
    peer.respond(invite, 200, body=ANSWER_SDP, headers=[("Session-Expires", "90;refresher=uas")])
    peer.advance(100.0)
    # RFC 4028 10: BYE at interval - min(32, interval/3) = 60 s.
    event = ended(peer)
    assert event.ended_by == "timeout" and event.at == pytest.approx(60.0)
    assert peer.last("BYE")


def test_max_duration_hangs_up() -> None:
    peer, _, invite = start_call(max_duration=30.0)
    peer.now = 2.0
    peer.respond(invite, 200, body=ANSWER_SDP)
    peer.advance(40.0)
    assert ended(peer).at == pytest.approx(32.0)
    assert peer.last("BYE")


# ------------------------------------------------------------------- OPTIONS


def test_options_probe_retransmits_on_timer_e_and_times_out_on_f() -> None:
    ua = make_ua()
    peer = Peer(ua)
    ua.options(SipURI(host="192.0.2.1"), TRUNK, 0.0)
    peer.drain()
    sends = [0.0]
    while (when := ua.get_timer()) is not None and when < 40:
        peer.advance(when)
        if len(peer.requests("OPTIONS")) > len(sends):
            sends.append(peer.now)
    # 17.1.2.2: E doubles from T1 up to T2 (4 s); F at 64*T1.
    assert sends[:6] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(b - a <= 4.0 for a, b in itertools.pairwise(sends))
    results = peer.of_type(OptionsResult)
    assert len(results) == 1 and results[0].status is None  # type: ignore[attr-defined]


def test_options_probe_reports_status_and_rtt() -> None:
    ua = make_ua()
    peer = Peer(ua)
    ua.options(SipURI(host="192.0.2.1"), TRUNK, 0.0)
    peer.drain()
    peer.now = 0.042
    peer.respond(peer.last("OPTIONS"), 200)
    result = peer.of_type(OptionsResult)[0]
    assert result.status == 200  # type: ignore[attr-defined]
    assert result.rtt == pytest.approx(0.042)  # type: ignore[attr-defined]


# --------------------------------------------------------------- determinism


def test_same_seed_same_bytes() -> None:
    def run() -> list[bytes]:
        ua = make_ua(seed=42)
        ua.place_call(make_spec(), 0.0)
        return [d for d, _ in ua.datagrams_to_send()]

    assert run() == run()


# ------------------------------------------------- regressions from review


def test_far_end_refresh_keeps_max_duration_armed() -> None:
    peer, _, invite = start_call(max_duration=3600.0)
    peer.respond(invite, 200, body=ANSWER_SDP, headers=[("Session-Expires", "300;refresher=uas")])
    peer.now = 150.0
    peer.feed(in_dialog(invite, "UPDATE", 2, Session_Expires="300;refresher=uas"))
    assert peer.ua.get_timer() is not None
    peer.advance(10_000.0)
    event = ended(peer)
    assert event.at == pytest.approx(150.0 + 300 - 32)  # the refreshed expiry, not never


def test_cancel_without_final_response_leaves_no_transaction_behind() -> None:
    peer, call_id, invite = start_call()
    peer.respond(invite, 180)
    peer.ua.cancel(call_id, 1.0)
    peer.drain()
    peer.respond(peer.last("CANCEL"), 200)  # but the 487 never comes
    peer.advance(200.0)
    assert ended(peer).outcome.result is CallResult.CANCELLED
    assert peer.ua._client_txs == {}
    assert peer.ua.get_timer() is None


def test_cancelled_call_is_not_resent_after_a_challenge() -> None:
    auth = DigestSession(Credentials("outdial", "secret"), random.Random(3))
    peer, call_id, invite = start_call(auth=auth)
    peer.ua.cancel(call_id, 0.1)
    challenge = 'Digest realm="p", nonce="n", qop="auth"'
    peer.respond(invite, 407, headers=[("Proxy-Authenticate", challenge)])
    assert len(peer.requests("INVITE")) == 1
    assert ended(peer).outcome.result is CallResult.CANCELLED


def test_unanswered_bye_to_a_losing_fork_does_not_end_the_call() -> None:
    peer, _, invite = start_call()
    peer.respond(invite, 200, body=ANSWER_SDP, headers=[("Session-Expires", "1800;refresher=uas")])
    peer.respond(invite, 200, tag="fork2", body=ANSWER_SDP)
    assert peer.last("BYE").to.tag == "fork2"
    peer.advance(40.0)  # that BYE times out (timer F)
    assert not peer.of_type(CallEnded)


def test_retransmitted_2xx_to_our_refresh_reinvite_is_acked_again() -> None:
    peer, _, invite = start_call()
    peer.respond(invite, 200, body=ANSWER_SDP, headers=[("Session-Expires", "120;refresher=uac")])
    peer.advance(60.0)
    refresh = peer.last("INVITE")
    assert refresh.cseq.number == 2
    ok = peer.respond(refresh, 200, body=ANSWER_SDP)
    peer.feed(ok)
    peer.feed(ok)
    acks = [a for a in peer.requests("ACK") if a.cseq.number == 2]
    assert len(acks) == 3


def test_malformed_content_type_on_200_still_confirms_the_call() -> None:
    peer, _, invite = start_call(max_duration=10.0)
    peer.respond(invite, 100, tag=None)
    ok = make_200_with_headers(invite, [("Content-Type", "application")])
    peer.feed(ok)
    assert len(peer.of_type(CallAnswered)) == 1
    peer.advance(20.0)
    assert ended(peer).at == pytest.approx(10.0)  # max_duration still ends it


def make_200_with_headers(invite: Request, headers: list[tuple[str, str]]) -> bytes:
    from carriers.sip.message import make_response

    extra = [("Contact", "<sip:callee@192.0.2.1:5060>"), *headers]
    return bytes(make_response(invite, 200, to_tag="callee", headers=extra, body=ANSWER_SDP))


def test_retransmitted_reinvite_after_ack_is_absorbed() -> None:
    peer, _, invite, _ = answered_call()
    reinvite = in_dialog(invite, "INVITE", 2, ANSWER_SDP)
    peer.feed(reinvite)
    ack = in_dialog(invite, "ACK", 2).replace(b"branch=z9hG4bKfarACK2", b"branch=z9hG4bKack2")
    peer.feed(ack)
    before = len(peer.sent)
    peer.feed(reinvite)  # a late copy of the re-INVITE
    peer.advance(peer.now + 40.0)
    assert len(peer.sent) == before
    assert len(peer.of_type(CallMediaChanged)) == 1
    assert peer.ua._awaiting_ack == {}


def test_challenged_bye_is_resent_with_credentials_for_bye() -> None:
    auth = DigestSession(Credentials("outdial", "secret"), random.Random(3))
    peer, call_id, invite = start_call(auth=auth)
    peer.respond(invite, 200, body=ANSWER_SDP)
    peer.ua.hangup(call_id, 1.0)
    peer.drain()
    bye = peer.last("BYE")
    challenge = 'Digest realm="carrier", nonce="b1", qop="auth"'
    peer.respond(bye, 401, headers=[("WWW-Authenticate", challenge)])
    second = peer.last("BYE")
    assert second.cseq.number == bye.cseq.number + 1
    value = second.headers.get("Authorization")
    assert value is not None
    assert verify_authorization(value, method="BYE", password="secret")
    peer.respond(second, 401, headers=[("WWW-Authenticate", challenge)])
    assert len(peer.requests("BYE")) == 2  # once only


def test_tiny_session_expires_does_not_cause_a_refresh_storm() -> None:
    peer, _, invite = start_call()
    peer.respond(
        invite, 200, body=ANSWER_SDP,
        headers=[("Session-Expires", "0;refresher=uac"), ("Allow", "INVITE, UPDATE")],
    )  # fmt: skip
    peer.advance(44.0)
    assert not peer.requests("UPDATE")  # clamped to 90 s: first refresh at 45 s
    peer.advance(45.0)
    assert len(peer.requests("UPDATE")) == 1
