"""Long-run regressions: a media tick over many calls must not make the
garbage collector run, and a finished call leaves nothing behind in the UA."""

from __future__ import annotations

import gc
import random

import numpy as np

from carriers.rtp.session import RtpSession
from carriers.rtp.transport import MediaClock
from tests.unit.sipfake import ANSWER_SDP, Peer, make_spec, make_ua

CALLS = 1500  # past the ~780 calls where the old send path collected every tick
TONE = np.zeros(160, dtype=np.int16)


class _Endpoint:
    def __init__(self, session: RtpSession) -> None:
        self.session = session
        self.closed = False
        self.local_port = session.local_port
        self.last_frame: object = None
        self.sent = 0

    def send(self, datagrams: list[bytes]) -> None:
        self.sent += len(datagrams)


def test_media_tick_over_many_calls_triggers_no_garbage_collection() -> None:
    rng = random.Random(3)
    clock = MediaClock()
    endpoints = []
    for i in range(CALLS):
        session = RtpSession(
            local_port=30000 + 2 * i, remote=("192.0.2.1", 40000 + 2 * i), payload_type=0,
            codec="PCMU", dtmf_payload_type=101, rng=rng,
        )  # fmt: skip
        endpoint = _Endpoint(session)
        endpoints.append(endpoint)
        clock.add(endpoint, lambda _ep, _frame: TONE)  # type: ignore[arg-type]
    clock._step(0.0)  # builds the cached entries
    collections = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        for k in range(1, 11):
            clock._step(0.02 * k)
    finally:
        gc.callbacks.remove(count)
    assert collections == []
    assert all(endpoint.sent == 11 for endpoint in endpoints)


def test_finished_calls_leave_no_dialog_transaction_or_timer_behind() -> None:
    ua = make_ua(seed=5)
    peer = Peer(ua)
    for _ in range(20):
        call_id = ua.place_call(make_spec(session_expires=None), peer.now)
        invite = peer.drain()[0]
        peer.respond(invite, 180)
        peer.respond(invite, 200, body=ANSWER_SDP)
        peer.advance(peer.now + 1.0)
        ua.hangup(call_id, peer.now)
        peer.drain()
        peer.respond(peer.last("BYE"), 200)
    assert ua.active_calls == 0
    peer.advance(peer.now + 64 * 0.5 + 1.0)  # 64*T1: linger, timers M, K, ...
    assert ua._heap == []
    assert ua._dialogs == {}
    assert ua._client_txs == {}
    assert ua._server_txs == {}
    assert ua._awaiting_ack == {}
    assert ua.get_timer() is None
