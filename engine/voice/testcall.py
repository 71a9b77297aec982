"""`outdial call`: one test call through a trunk, reported as one JSON object.

The first thing an operator does with a new trunk. It runs the real stack (the
SIP user agent, an RTP endpoint on the shared media clock) for a single call:
plays a prompt, sends DTMF, records what the far end sent, and reports every
timing and the media statistics.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from carriers.rtp.session import RtpSession
from carriers.rtp.transport import MediaClock, PortAllocator, RtpEndpoint
from carriers.sip.auth import Credentials, DigestSession
from carriers.sip.call import CallSpec
from carriers.sip.events import (
    CallAnswered,
    CallDtmfInfo,
    CallEarlyMedia,
    CallEnded,
    CallMediaChanged,
    CallProgress,
)
from carriers.sip.message import Address, SipURI
from carriers.sip.sdp import NegotiatedMedia, build_offer
from carriers.sip.transaction import Target
from carriers.sip.transport import CallEvent, SipEndpoint, local_address_for
from dsp.wav import encode_wav

FRAME = 160


@dataclass(slots=True)
class TestCallOptions:
    __test__ = False  # not a pytest test class, despite its name

    trunk: SipURI
    number: str
    transport: str = "UDP"
    username: str | None = None
    password: str | None = None
    realm: str | None = None
    from_addr: Address | None = None
    play: NDArray[np.int16] | None = None
    record: Path | None = None
    ring_timeout: float = 60.0
    max_duration: float = 30.0
    dtmf: str = ""
    rtp_ports: tuple[int, int] = (20000, 30000)
    seed: int | None = None
    asserted_identity: Address | None = None
    privacy: str | None = None


@dataclass(slots=True)
class _CallMedia:
    """Per-call media state driven by the media clock."""

    session: RtpSession
    play: NDArray[np.int16] | None
    active: bool = False
    answered: bool = False
    play_pos: int = 0
    recorded: list[NDArray[np.int16]] = field(default_factory=list)
    record: bool = False
    sent_all: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def playing(self) -> bool:
        return self.play is not None and self.play_pos < len(self.play)

    def on_frame(
        self, _endpoint: RtpEndpoint, received: NDArray[np.int16]
    ) -> NDArray[np.int16] | None:
        if self.active and self.record:
            self.recorded.append(received.copy())
        if not self.answered:
            return None
        if not self.playing:
            if not self.session.dtmf_sending:
                self.sent_all.set()
            return None
        assert self.play is not None
        chunk = self.play[self.play_pos : self.play_pos + FRAME]
        self.play_pos += FRAME
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), dtype=np.int16)])
        return chunk


def _apply_media(media: _CallMedia, negotiated: NegotiatedMedia) -> None:
    session = media.session
    session.set_remote((negotiated.remote_address, negotiated.remote_port))
    session.configure(
        payload_type=negotiated.codec.payload_type,
        codec=negotiated.codec.name.upper(),
        dtmf_payload_type=negotiated.dtmf_payload_type,
    )
    media.active = negotiated.remote_port != 0


async def run_test_call(opts: TestCallOptions) -> dict[str, Any]:
    """Place one call and return the report (see `outdial call --help`)."""
    rng = random.Random(opts.seed)
    trunk_host = opts.trunk.host.strip("[]")
    # A hostname trunk means a DNS lookup: keep it off the event loop.
    local_host = await asyncio.to_thread(local_address_for, trunk_host, opts.trunk.port or 5060)
    sip = await SipEndpoint.open(local_host, 0, rng=rng)
    allocator = PortAllocator(*opts.rtp_ports)
    rtp = await RtpEndpoint.open(
        local_host,
        allocator,
        lambda port: RtpSession(
            local_port=port,
            remote=None,
            payload_type=0,
            codec="PCMU",
            dtmf_payload_type=101,
            rng=rng,
        ),
    )
    clock = MediaClock()
    media = _CallMedia(rtp.session, opts.play, record=opts.record is not None)
    clock.add(rtp, media.on_frame)
    clock.start()
    try:
        return await _drive(opts, rng, sip, rtp, media, local_host)
    finally:
        await clock.stop()
        rtp.close()
        await sip.close()
        if opts.record is not None:
            audio = np.concatenate(media.recorded) if media.recorded else np.zeros(0, np.int16)
            await asyncio.to_thread(opts.record.write_bytes, encode_wav(audio))


async def _drive(
    opts: TestCallOptions,
    rng: random.Random,
    sip: SipEndpoint,
    rtp: RtpEndpoint,
    media: _CallMedia,
    local_host: str,
) -> dict[str, Any]:
    offer = build_offer(local_host, rtp.local_port, session_id=rng.getrandbits(31))
    request_uri = SipURI(host=opts.trunk.host, user=opts.number, port=opts.trunk.port)
    from_addr = opts.from_addr or Address(SipURI(host=local_host, user="outdial"))
    auth = None
    if opts.username is not None:
        credentials = Credentials(opts.username, opts.password or "", opts.realm)
        auth = DigestSession(credentials, rng)
    target = Target(opts.trunk.host.strip("[]"), opts.trunk.port or 5060, opts.transport)
    spec = CallSpec(
        request_uri=request_uri,
        from_addr=from_addr,
        to_addr=Address(SipURI(host=opts.trunk.host, user=opts.number, port=opts.trunk.port)),
        target=target,
        offer=offer,
        ring_timeout=opts.ring_timeout,
        max_duration=opts.max_duration,
        auth=auth,
        asserted_identity=opts.asserted_identity,
        privacy=opts.privacy,
    )
    info_digits: list[str] = []
    loop = asyncio.get_running_loop()
    ringing_at: list[float] = []

    def on_event(event: CallEvent) -> None:
        match event:
            case CallProgress(status=status, at=at) if status > 100 and not ringing_at:
                ringing_at.append(at)
            case CallEarlyMedia(media=negotiated) | CallMediaChanged(media=negotiated):
                _apply_media(media, negotiated)
            case CallAnswered(media=negotiated):
                if negotiated is not None:
                    _apply_media(media, negotiated)
                media.answered = True
                if opts.dtmf:
                    media.session.send_dtmf(opts.dtmf)
            case CallDtmfInfo(digit=digit):
                info_digits.append(digit)
            case _:
                pass

    started = loop.time()
    handle = sip.place_call(spec, on_event)
    answered = await handle.answered
    if answered is not None and (opts.play is not None or opts.dtmf):
        # A prompt or digits to send: the call ends when they are out.
        sent_all: asyncio.Future[Any] = asyncio.ensure_future(media.sent_all.wait())
        ended_fut: asyncio.Future[Any] = handle.ended
        await asyncio.wait([sent_all, ended_fut], return_when=asyncio.FIRST_COMPLETED)
        sent_all.cancel()
        if not handle.ended.done():
            await asyncio.sleep(0.1)  # let the last frames leave
            sip.hangup(handle.call_id, "test call complete")
    ended = await handle.ended
    await asyncio.sleep(0.1)  # RTP still in flight when the BYE crossed it
    ringing = ringing_at[0] if ringing_at else None
    return _report(ended, started, ringing, media, info_digits)


def _report(
    ended: CallEnded,
    started: float,
    ringing: float | None,
    media: _CallMedia,
    info_digits: list[str],
) -> dict[str, Any]:
    outcome = ended.outcome
    stats = media.session.stats
    return {
        "result": outcome.result.value,
        "sip_status": outcome.sip_status,
        "reason": outcome.reason,
        "q850_cause": outcome.q850_cause,
        "ended_by": ended.ended_by,
        "ringing_ms": _ms(ringing, started),
        "answer_ms": _ms(ended.answered_at, started),
        "duration_ms": _ms(ended.at, ended.answered_at),
        "codec": media.session.codec if media.active else None,
        "rtp": {
            "sent": stats.sent,
            "received": stats.received,
            "lost": stats.lost,
            "jitter_ms": round(stats.jitter_ms, 2),
        },
        "dtmf_received": media.session.dtmf_received + "".join(info_digits),
    }


def _ms(later: float | None, earlier: float | None) -> int | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier) * 1000)
