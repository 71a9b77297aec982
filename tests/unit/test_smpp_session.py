"""The sans-IO SMPP session against a scripted SMSC: float clock, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carriers.sms.smpp.errors import SmppStateError
from carriers.sms.smpp.events import (
    BadPduReceived,
    BindFailed,
    Bound,
    LinkClosed,
    MessageReceived,
    ProtocolNotice,
    ReceiptReceived,
    SessionEvent,
    SubmitAccepted,
    SubmitFailed,
    SubmitRejected,
    Unbound,
)
from carriers.sms.smpp.pdu import (
    Bind,
    BindResp,
    CommandId,
    MessageIdResp,
    Pdu,
    PduStream,
    ShortMessage,
    Status,
    Tag,
    Tlv,
    encode,
)
from carriers.sms.smpp.receipt import MessageState
from carriers.sms.smpp.session import BindMode, SessionConfig, SessionState, SmppSession

MSG = ShortMessage("447700900123", b"hello", source_addr="Clinic", registered_delivery=1)


class Smsc:
    """The far end, as PDUs: reads what the session sent, writes what it receives."""

    def __init__(self, session: SmppSession) -> None:
        self.session = session
        self.stream = PduStream()

    def read(self) -> list[Pdu]:
        items = self.stream.feed(self.session.data_to_send())
        assert all(isinstance(i, Pdu) for i in items)
        return [i for i in items if isinstance(i, Pdu)]

    def send(self, pdu: Pdu, now: float) -> None:
        self.session.receive(encode(pdu), now)


def events(session: SmppSession) -> list[SessionEvent]:
    out = []
    while (e := session.next_event()) is not None:
        out.append(e)
    return out


def bound(window: int = 10, mode: BindMode = BindMode.TRANSCEIVER) -> tuple[SmppSession, Smsc]:
    session = SmppSession(
        SessionConfig(
            "outdial",
            "secret",
            mode=mode,
            window=window,
            response_timeout=5.0,
            enquire_link_interval=30.0,
        )
    )
    smsc = Smsc(session)
    session.bind(0.0)
    (bind,) = smsc.read()
    assert bind.command_id == mode.value
    assert bind.body == Bind("outdial", "secret")
    smsc.send(Pdu(mode.value | 0x80000000, bind.sequence, 0, BindResp("SMSC")), 0.1)
    assert events(session) == [Bound("SMSC")]
    assert session.state is SessionState.BOUND
    return session, smsc


def test_bind_refused() -> None:
    session = SmppSession(SessionConfig("outdial", "bad"))
    smsc = Smsc(session)
    session.bind(0.0)
    (bind,) = smsc.read()
    smsc.send(Pdu(CommandId.BIND_TRANSCEIVER_RESP, bind.sequence, Status.ESME_RINVPASWD), 0.1)
    assert events(session) == [BindFailed(Status.ESME_RINVPASWD, "ESME_RINVPASWD")]
    assert session.closed


def test_bind_timeout() -> None:
    session = SmppSession(SessionConfig("outdial", response_timeout=5.0))
    session.bind(0.0)
    assert session.get_timer() == 5.0
    session.handle_timer(5.0)
    (event,) = events(session)
    assert isinstance(event, BindFailed) and event.status is None
    assert session.closed and session.get_timer() is None


def test_submit_before_bind_is_refused() -> None:
    session = SmppSession(SessionConfig("outdial"))
    with pytest.raises(SmppStateError, match="open"):
        session.submit(MSG, 0.0)


def test_receiver_cannot_submit() -> None:
    session, _ = bound(mode=BindMode.RECEIVER)
    assert session.window_free == 0
    with pytest.raises(SmppStateError, match="receiver"):
        session.submit(MSG, 1.0)


def test_transmitter_bind() -> None:
    session, smsc = bound(mode=BindMode.TRANSMITTER)
    handle = session.submit(MSG, 1.0)
    (pdu,) = smsc.read()
    smsc.send(Pdu(CommandId.SUBMIT_SM_RESP, pdu.sequence, 0, MessageIdResp("m1")), 1.1)
    assert events(session) == [SubmitAccepted(handle, "m1")]


def test_window_limits_outstanding_submits_and_responses_match_by_sequence() -> None:
    session, smsc = bound(window=3)
    handles = [session.submit(MSG, 1.0) for _ in range(3)]
    assert session.window_free == 0
    with pytest.raises(SmppStateError, match="window of 3 is full"):
        session.submit(MSG, 1.0)
    sent = smsc.read()
    assert [p.sequence for p in sent] == handles
    assert len(set(handles)) == 3
    # Answered out of order: each response goes to its own handle.
    smsc.send(Pdu(CommandId.SUBMIT_SM_RESP, sent[2].sequence, 0, MessageIdResp("c")), 1.2)
    smsc.send(Pdu(CommandId.SUBMIT_SM_RESP, sent[0].sequence, 0, MessageIdResp("a")), 1.3)
    assert events(session) == [SubmitAccepted(handles[2], "c"), SubmitAccepted(handles[0], "a")]
    assert session.window_free == 2 and session.outstanding == 1


@pytest.mark.parametrize("status", [Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL])
def test_throttling_and_queue_full_are_retryable(status: Status) -> None:
    session, smsc = bound()
    handle = session.submit(MSG, 1.0)
    (pdu,) = smsc.read()
    smsc.send(Pdu(CommandId.SUBMIT_SM_RESP, pdu.sequence, status, MessageIdResp()), 1.1)
    (event,) = events(session)
    assert event == SubmitRejected(handle, status, retryable=True)
    assert event.status_name == status.name
    assert session.window_free == 10


def test_permanent_rejection_is_not_retryable() -> None:
    session, smsc = bound()
    handle = session.submit(MSG, 1.0)
    (pdu,) = smsc.read()
    smsc.send(Pdu(CommandId.SUBMIT_SM_RESP, pdu.sequence, Status.ESME_RINVDSTADR), 1.1)
    assert events(session) == [SubmitRejected(handle, Status.ESME_RINVDSTADR, retryable=False)]


def test_generic_nack_answers_a_submit() -> None:
    session, smsc = bound()
    handle = session.submit(MSG, 1.0)
    (pdu,) = smsc.read()
    smsc.send(Pdu(CommandId.GENERIC_NACK, pdu.sequence, Status.ESME_RINVCMDLEN), 1.1)
    assert events(session) == [SubmitRejected(handle, Status.ESME_RINVCMDLEN, retryable=False)]


def test_response_to_nothing_is_a_notice() -> None:
    session, smsc = bound()
    smsc.send(Pdu(CommandId.SUBMIT_SM_RESP, 999, 0, MessageIdResp("x")), 1.0)
    (event,) = events(session)
    assert isinstance(event, ProtocolNotice) and "999" in event.reason
    assert session.state is SessionState.BOUND


def test_submit_timeout_frees_the_window_and_says_no_response() -> None:
    session, smsc = bound(window=2)
    first = session.submit(MSG, 1.0)
    second = session.submit(MSG, 2.0)
    smsc.read()
    assert session.get_timer() == 6.0
    session.handle_timer(6.0)
    assert events(session) == [SubmitFailed(first, "no submit_sm_resp within 5s")]
    assert session.window_free == 1
    session.handle_timer(7.0)
    assert events(session) == [SubmitFailed(second, "no submit_sm_resp within 5s")]
    # A late response after the timeout is not reported as accepted.
    smsc.send(Pdu(CommandId.SUBMIT_SM_RESP, first, 0, MessageIdResp("late")), 8.0)
    assert [type(e) for e in events(session)] == [ProtocolNotice]


def test_we_answer_their_enquire_link() -> None:
    session, smsc = bound()
    smsc.send(Pdu(CommandId.ENQUIRE_LINK, 4242), 5.0)
    assert smsc.read() == [Pdu(CommandId.ENQUIRE_LINK_RESP, 4242)]
    assert events(session) == []


def test_we_send_enquire_link_when_idle_and_it_keeps_the_link() -> None:
    session, smsc = bound()
    assert session.get_timer() == pytest.approx(30.1)
    session.handle_timer(20.0)
    assert smsc.read() == []
    session.handle_timer(30.1)
    (probe,) = smsc.read()
    assert probe.command_id == CommandId.ENQUIRE_LINK
    assert session.get_timer() == pytest.approx(35.1)  # its response timeout
    session.handle_timer(31.0)
    assert smsc.read() == []  # one probe at a time
    smsc.send(Pdu(CommandId.ENQUIRE_LINK_RESP, probe.sequence), 31.0)
    assert events(session) == []
    assert session.get_timer() == pytest.approx(61.0)


def test_traffic_postpones_enquire_link() -> None:
    session, smsc = bound()
    smsc.send(Pdu(CommandId.ENQUIRE_LINK, 7), 25.0)
    smsc.read()
    session.handle_timer(30.1)
    assert smsc.read() == []
    assert session.get_timer() == pytest.approx(55.0)


def test_missing_enquire_link_resp_is_a_dead_link_and_fails_outstanding() -> None:
    session, smsc = bound()
    handle = session.submit(MSG, 0.2)
    smsc.send(Pdu(CommandId.ENQUIRE_LINK, 8), 30.0)  # keeps the link "alive" a while
    session.handle_timer(5.2)  # submit times out first
    events(session)
    session.handle_timer(60.0)
    (_probe,) = [p for p in smsc.read() if p.command_id == CommandId.ENQUIRE_LINK]
    h2 = session.submit(MSG, 61.0)
    session.handle_timer(65.0)
    got = events(session)
    assert got == [
        SubmitFailed(h2, "link dead: no enquire_link_resp within 5s"),
        LinkClosed("link dead: no enquire_link_resp within 5s"),
    ]
    assert handle != h2 and session.closed and session.get_timer() is None


def test_deliver_sm_receipt_is_answered_and_surfaced() -> None:
    session, smsc = bound()
    receipt = ShortMessage(
        "Clinic",
        b"id:m1 sub:001 dlvrd:001 submit date:2612031050 done date:2612031051 stat:DELIVRD err:000 text:hello",
        source_addr="447700900123",
        esm_class=0x04,
    )
    smsc.send(Pdu(CommandId.DELIVER_SM, 55, 0, receipt), 2.0)
    assert smsc.read() == [Pdu(CommandId.DELIVER_SM_RESP, 55, 0, MessageIdResp())]
    (event,) = events(session)
    assert isinstance(event, ReceiptReceived)
    assert event.receipt.message_id == "m1"
    assert event.receipt.state is MessageState.DELIVERED


def test_deliver_sm_receipt_with_tlvs() -> None:
    session, smsc = bound()
    sm = ShortMessage(
        "Clinic",
        b"",
        esm_class=0x04,
        tlvs=(Tlv.cstring(Tag.RECEIPTED_MESSAGE_ID, "ab12"), Tlv.integer(Tag.MESSAGE_STATE, 5)),
    )
    smsc.send(Pdu(CommandId.DELIVER_SM, 56, 0, sm), 2.0)
    (event,) = events(session)
    assert isinstance(event, ReceiptReceived)
    assert (event.receipt.message_id, event.receipt.state) == ("ab12", MessageState.UNDELIVERABLE)


def test_mobile_originated_message() -> None:
    session, smsc = bound()
    mo = ShortMessage("Clinic", b"STOP", source_addr="447700900123")
    smsc.send(Pdu(CommandId.DELIVER_SM, 57, 0, mo), 2.0)
    assert smsc.read() == [Pdu(CommandId.DELIVER_SM_RESP, 57, 0, MessageIdResp())]
    assert events(session) == [MessageReceived(mo)]


def test_bad_deliver_sm_gets_an_error_response_and_the_session_lives() -> None:
    session, smsc = bound()
    good = encode(Pdu(CommandId.DELIVER_SM, 58, 0, ShortMessage("1", b"hello")))
    truncated = len(good[:-2]).to_bytes(4, "big") + good[4:-2]
    session.receive(truncated, 2.0)
    assert smsc.read() == [Pdu(CommandId.DELIVER_SM_RESP, 58, Status.ESME_RSYSERR, MessageIdResp())]
    (event,) = events(session)
    assert isinstance(event, BadPduReceived) and event.field == "short_message"
    assert session.state is SessionState.BOUND
    handle = session.submit(MSG, 3.0)
    assert handle > 0


def test_unknown_command_gets_generic_nack() -> None:
    session, smsc = bound()
    session.receive(b"\x00\x00\x00\x10\x00\x00\x01\x03\x00\x00\x00\x00\x00\x00\x00\x09", 2.0)
    assert smsc.read() == [Pdu(CommandId.GENERIC_NACK, 9, Status.ESME_RINVCMDID)]
    assert isinstance(events(session)[0], BadPduReceived)
    assert session.state is SessionState.BOUND


def test_framing_error_closes_the_link() -> None:
    session, smsc = bound()
    handle = session.submit(MSG, 1.0)
    smsc.read()
    session.receive(b"\x00\x00\x00\x03" + bytes(12), 2.0)
    assert smsc.read() == [Pdu(CommandId.GENERIC_NACK, 0, Status.ESME_RINVCMDLEN)]
    got = events(session)
    assert isinstance(got[0], SubmitFailed) and got[0].handle == handle
    assert isinstance(got[1], LinkClosed) and "command_length" in got[1].reason
    assert session.closed


def test_our_unbind() -> None:
    session, smsc = bound()
    session.unbind(1.0)
    (pdu,) = smsc.read()
    assert pdu.command_id == CommandId.UNBIND
    assert session.state is SessionState.UNBINDING
    with pytest.raises(SmppStateError):
        session.submit(MSG, 1.1)
    smsc.send(Pdu(CommandId.UNBIND_RESP, pdu.sequence), 1.2)
    assert events(session) == [Unbound(by_peer=False)]
    assert session.closed


def test_unbind_waits_for_outstanding_responses() -> None:
    session, smsc = bound()
    handle = session.submit(MSG, 1.0)
    session.unbind(1.0)
    submit, unbind = smsc.read()
    smsc.send(Pdu(CommandId.SUBMIT_SM_RESP, submit.sequence, 0, MessageIdResp("m")), 1.1)
    smsc.send(Pdu(CommandId.UNBIND_RESP, unbind.sequence), 1.2)
    assert events(session) == [SubmitAccepted(handle, "m"), Unbound(by_peer=False)]


def test_unbind_timeout_still_ends_the_session() -> None:
    session, smsc = bound()
    session.unbind(1.0)
    smsc.read()
    session.handle_timer(6.0)
    assert events(session) == [Unbound(by_peer=False)]


def test_their_unbind_is_answered_and_fails_outstanding() -> None:
    session, smsc = bound()
    handle = session.submit(MSG, 1.0)
    smsc.read()
    smsc.send(Pdu(CommandId.UNBIND, 31), 1.5)
    assert smsc.read() == [Pdu(CommandId.UNBIND_RESP, 31)]
    assert events(session) == [
        SubmitFailed(handle, "unbound before submit_sm_resp"),
        Unbound(by_peer=True),
    ]


def test_connection_lost_fails_every_outstanding_submit() -> None:
    session, smsc = bound(window=5)
    handles = [session.submit(MSG, 1.0) for _ in range(5)]
    sent = smsc.read()
    smsc.send(Pdu(CommandId.SUBMIT_SM_RESP, sent[1].sequence, 0, MessageIdResp("ok")), 1.1)
    session.connection_lost()
    got = events(session)
    assert got[0] == SubmitAccepted(handles[1], "ok")
    failed = [e for e in got if isinstance(e, SubmitFailed)]
    assert sorted(e.handle for e in failed) == sorted(set(handles) - {handles[1]})
    assert got[-1] == LinkClosed("connection lost")


def test_sequence_numbers_wrap() -> None:
    session, _smsc = bound()
    session._next_sequence = 0x7FFFFFFF
    assert session.submit(MSG, 1.0) == 0x7FFFFFFF
    assert session.submit(MSG, 1.0) == 1  # the bind's 1 is long answered
    session._next_sequence = 0x7FFFFFFF
    assert session.submit(MSG, 1.0) == 2  # 0x7FFFFFFF and 1 are still outstanding


@given(chunks=st.lists(st.binary(max_size=80), max_size=8))
def test_fuzz_nothing_escapes_receive(chunks: list[bytes]) -> None:
    session, smsc = bound()
    session.submit(MSG, 1.0)
    smsc.read()
    now = 1.0
    for chunk in chunks:
        now += 0.1
        session.receive(chunk, now)
        session.handle_timer(now)
    events(session)
    session.data_to_send()


@given(
    body=st.binary(max_size=120),
    command=st.sampled_from([*CommandId, 0x00000103, 0x80000103]),
)
def test_fuzz_well_framed_garbage_never_kills_a_deliver_path(body: bytes, command: int) -> None:
    session, _smsc = bound()
    frame = (16 + len(body)).to_bytes(4, "big") + command.to_bytes(4, "big") + bytes(4)
    session.receive(frame + (5).to_bytes(4, "big") + body, 1.0)
    if command not in (CommandId.UNBIND,):
        assert session.state is SessionState.BOUND
    session.data_to_send()


@given(st.lists(st.tuples(st.sampled_from(["submit", "answer", "tick"]),
                          st.floats(0.01, 3.0), st.integers(0, 20)), max_size=60))  # fmt: skip
def test_the_next_timer_is_the_earliest_deadline_whatever_is_outstanding(
    steps: list[tuple[str, float, int]],
) -> None:
    """get_timer takes the oldest outstanding request's deadline without
    scanning the window: whatever was sent, answered out of order or timed
    out, it is when the first response timeout or the idle probe falls due."""
    session, smsc = bound(window=8)
    now = 0.0
    outstanding: list[int] = []
    probes: set[int] = set()
    for op, dt, pick in steps:
        now += dt
        if op == "submit" and session.window_free:
            session.submit(MSG, now)
        elif op == "answer" and outstanding:
            seq = outstanding.pop(pick % len(outstanding))
            resp = CommandId.ENQUIRE_LINK_RESP if seq in probes else CommandId.SUBMIT_SM_RESP
            body = None if seq in probes else MessageIdResp(f"m{seq}")
            smsc.send(Pdu(resp, seq, 0, body), now)
        elif op == "tick" and (when := session.get_timer()) is not None:
            now = max(now, when)
            session.handle_timer(now)
        for pdu in smsc.read():
            outstanding.append(pdu.sequence)
            if pdu.command_id == CommandId.ENQUIRE_LINK:
                probes.add(pdu.sequence)
        events(session)
        if session.closed:
            return
        pending = session._pending.values()
        deadlines = [p.deadline for p in pending]
        if not any(p.command_id == CommandId.ENQUIRE_LINK for p in pending):
            deadlines.append(session._last_received + 30.0)
        assert session.get_timer() == pytest.approx(min(deadlines))
