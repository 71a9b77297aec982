"""The daemon's one telephony stack, shared by every campaign.

One SIP endpoint (one UDP socket), one RTP port range, one 20 ms media clock,
and per-trunk admission: at most `max_calls` calls in flight and at most
`calls_per_second` new INVITEs per second on each trunk.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from carriers.rtp.session import RtpSession
from carriers.rtp.transport import MediaClock, PortAllocator, RtpEndpoint
from carriers.sip.auth import Credentials, DigestSession
from carriers.sip.call import CallSpec
from carriers.sip.message import Address, SipURI
from carriers.sip.parser import parse_address
from carriers.sip.sdp import NegotiatedMedia, build_offer
from carriers.sip.transaction import Target
from carriers.sip.transport import CallEvent, CallHandle, SipEndpoint
from engine.config import TrunkConfig

FRAME = 160


class TokenBucket:
    """Calls-per-second limiter: `rate` tokens a second, bursts of `burst`."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self.burst
        self._at: float | None = None

    def reserve(self, now: float) -> float:
        """Take the next token; returns how long to wait before using it.

        Tokens can go negative: concurrent callers queue up behind each other,
        each told its own slot, so the rate holds without polling.
        """
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


async def pace(bucket: TokenBucket) -> None:
    """Wait for this caller's slot in the bucket."""
    wait = bucket.reserve(asyncio.get_running_loop().time())
    if wait > 0:
        await asyncio.sleep(wait)


@dataclass(slots=True)
class TrunkState:
    config: TrunkConfig
    bucket: TokenBucket
    auth: DigestSession | None
    in_flight: int = 0
    # campaign -> (priority, lines it wants now): see Telephony.want
    demand: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The trunk answered a REFER with 405/501 (it does not take transfers):
    # later transfers go straight to the bridge.
    refer_refused: bool = False


@dataclass(slots=True)
class MediaLeg:
    """The RTP side of one call and what plays on it.

    `flow` is the answered-call hook: it gets every received 20 ms frame and
    returns the frame to send (or None for comfort silence). Call analysis
    (AMD, tones) and IVR plug in here; today's flow plays a prompt. `tap`
    hears each received frame first and sends nothing (the AMD sample's
    recorder, engine.compliance.amd_sample).
    """

    endpoint: RtpEndpoint
    flow: Callable[[NDArray[np.int16]], NDArray[np.int16] | None] | None = None
    media: NegotiatedMedia | None = None
    frames_in: int = 0
    tap: Callable[[NDArray[np.int16]], None] | None = None

    def on_frame(self, _ep: RtpEndpoint, frame: NDArray[np.int16]) -> NDArray[np.int16] | None:
        self.frames_in += 1
        if self.tap is not None:
            self.tap(frame)
        return self.flow(frame) if self.flow is not None else None

    def apply(self, negotiated: NegotiatedMedia) -> None:
        session = self.endpoint.session
        session.set_remote((negotiated.remote_address, negotiated.remote_port))
        session.configure(
            payload_type=negotiated.codec.payload_type,
            codec=negotiated.codec.name.upper(),
            dtmf_payload_type=negotiated.dtmf_payload_type,
        )
        self.media = negotiated


@dataclass
class Telephony:
    sip: SipEndpoint
    clock: MediaClock
    allocator: PortAllocator
    host: str
    trunks: dict[str, TrunkState] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.SystemRandom)

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        rtp_ports: tuple[int, int],
        trunks: dict[str, TrunkConfig],
    ) -> Telephony:
        rng = random.SystemRandom()
        sip = await SipEndpoint.open(host, port, rng=rng)
        clock = MediaClock()
        clock.start()
        tel = cls(sip, clock, PortAllocator(*rtp_ports), host, rng=rng)
        for name, cfg in trunks.items():
            auth = None
            if cfg.username is not None:
                auth = DigestSession(Credentials(cfg.username, cfg.password or "", cfg.realm), rng)
            tel.trunks[name] = TrunkState(cfg, TokenBucket(cfg.calls_per_second), auth)
        return tel

    async def close(self) -> None:
        await self.clock.stop()
        await self.sip.close()

    # ------------------------------------------------------------- admission

    def capacity(self, trunk: str) -> int:
        state = self.trunks[trunk]
        return max(0, state.config.max_calls - state.in_flight)

    def want(self, trunk: str, campaign: str, priority: int, lines: int) -> None:
        """A campaign's demand on a trunk: `lines` more calls it would place now
        (0: none due, or paused). Lines a higher-priority campaign wants are
        kept for it (`capacity_for`)."""
        state = self.trunks[trunk]
        if lines > 0:
            state.demand[campaign] = (priority, lines)
        else:
            state.demand.pop(campaign, None)

    def capacity_for(self, trunk: str, campaign: str, priority: int) -> int:
        """The trunk's free lines for `campaign`, less what campaigns of higher
        priority sharing it want (equal priorities share first come)."""
        state = self.trunks[trunk]
        kept = sum(n for name, (p, n) in state.demand.items() if p > priority and name != campaign)
        return max(0, state.config.max_calls - state.in_flight - kept)

    async def admit(self, trunk: str) -> None:
        """Wait for the trunk's calls-per-second budget, then take one."""
        await pace(self.trunks[trunk].bucket)

    # ----------------------------------------------------------------- calls

    async def open_media(self) -> MediaLeg:
        rng = self.rng
        endpoint = await RtpEndpoint.open(
            self.host,
            self.allocator,
            lambda port: RtpSession(
                local_port=port, remote=None, payload_type=0, codec="PCMU",
                dtmf_payload_type=101, rng=rng,
            ),
        )  # fmt: skip
        leg = MediaLeg(endpoint)
        self.clock.add(endpoint, leg.on_frame)
        return leg

    def close_media(self, leg: MediaLeg) -> None:
        self.clock.remove(leg.endpoint)
        leg.endpoint.close()

    def place(
        self,
        trunk: str,
        number: str,
        caller_id: str | None,
        leg: MediaLeg,
        *,
        ring_timeout: float,
        max_duration: float,
        on_event: Callable[[CallEvent], None],
    ) -> CallHandle:
        """Send the INVITE for `number` through `trunk` (admission already done)."""
        state = self.trunks[trunk]
        cfg = state.config
        request_uri = SipURI(host=cfg.uri.host, user=number, port=cfg.uri.port)
        from_addr = caller_address(caller_id or cfg.caller_id, self.host)
        spec = CallSpec(
            request_uri=request_uri,
            from_addr=from_addr,
            to_addr=Address(request_uri),
            target=Target(cfg.uri.host.strip("[]"), cfg.uri.port or 5060, cfg.transport),
            offer=build_offer(
                self.host, leg.endpoint.local_port, session_id=self.rng.getrandbits(31)
            ),
            ring_timeout=ring_timeout,
            max_duration=max_duration,
            auth=state.auth,
        )
        state.in_flight += 1
        return self.sip.place_call(spec, on_event)

    def number_uri(self, trunk: str, number: str) -> str:
        """`number` at the trunk's address, as a REFER's Refer-To names it."""
        cfg = self.trunks[trunk].config
        return str(SipURI(host=cfg.uri.host, user=number, port=cfg.uri.port))

    def place_leg(
        self,
        uri: SipURI,
        target: Target,
        leg: MediaLeg,
        *,
        ring_timeout: float,
        session_expires: int,
        on_event: Callable[[CallEvent], None],
    ) -> CallHandle:
        """Call an agent's phone (not through a trunk): the persistent agent
        leg, with no maximum duration, kept alive by RFC 4028 session timers."""
        spec = CallSpec(
            request_uri=uri,
            from_addr=Address(SipURI(host=self.host, user="outdial")),
            to_addr=Address(uri),
            target=target,
            offer=build_offer(
                self.host, leg.endpoint.local_port, session_id=self.rng.getrandbits(31)
            ),
            ring_timeout=ring_timeout,
            max_duration=None,
            session_expires=session_expires,
            extra_headers=(("Subject", "outdial agent session"),),
            # In-dialog requests (refreshes, BYE) follow the INVITE to the
            # address the phone registered from, not the Contact of its 200,
            # which may be a private address behind NAT.
            sticky_target=True,
        )
        return self.sip.place_call(spec, on_event)

    def released(self, trunk: str) -> None:
        self.trunks[trunk].in_flight -= 1


def caller_address(caller_id: str | None, host: str) -> Address:
    """A From address from a campaign's caller ID: 'Name <sip:...>' or a number."""
    if not caller_id:
        return Address(SipURI(host=host, user="outdial"))
    if "<" in caller_id or caller_id.startswith("sip"):
        return parse_address(caller_id)
    return Address(SipURI(host=host, user=caller_id.strip()))
