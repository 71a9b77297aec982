"""A scripted far end for driving the sans-IO user agent with a float clock.

No sockets: the test reads what the UA wants sent, parses it with our parser,
and feeds back responses or requests built from it. Addresses are from the
documentation ranges and never leave the process.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from carriers.sip.call import CallSpec
from carriers.sip.events import Event
from carriers.sip.message import Address, Request, Response, SipURI, make_response
from carriers.sip.parser import parse
from carriers.sip.sdp import build_offer
from carriers.sip.transaction import Target
from carriers.sip.ua import UserAgent

TRUNK = Target("192.0.2.1", 5060)
LOCAL = "192.0.2.10"
ANSWER_SDP = (
    b"v=0\r\no=carrier 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


def make_ua(seed: int = 1) -> UserAgent:
    return UserAgent(host=LOCAL, port=5060, rng=random.Random(seed))


def make_spec(**kwargs: object) -> CallSpec:
    number = SipURI(host="192.0.2.1", user="15551230001")
    defaults: dict[str, object] = {
        "request_uri": number,
        "from_addr": Address(SipURI(host=LOCAL, user="2125550100"), "Acme"),
        "to_addr": Address(number),
        "target": TRUNK,
        "offer": build_offer(LOCAL, 40000, session_id=7),
    }
    defaults.update(kwargs)
    return CallSpec(**defaults)  # type: ignore[arg-type]


class Peer:
    """Collects what the UA sends and answers it."""

    def __init__(self, ua: UserAgent) -> None:
        self.ua = ua
        self.now = 0.0
        self.sent: list[tuple[Request | Response, Target]] = []
        self.events: list[Event] = []

    def drain(self) -> list[Request | Response]:
        new = [(parse(data), target) for data, target in self.ua.datagrams_to_send()]
        self.sent += new
        while (event := self.ua.next_event()) is not None:
            self.events.append(event)
        return [m for m, _ in new]

    def requests(self, method: str) -> list[Request]:
        return [m for m, _ in self.sent if isinstance(m, Request) and m.method == method]

    def last(self, method: str) -> Request:
        found = self.requests(method)
        assert found, f"no {method} was sent; sent: {[type(m).__name__ for m, _ in self.sent]}"
        return found[-1]

    def respond(
        self,
        request: Request,
        status: int,
        *,
        tag: str | None = "callee",
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        contact: str | None = "<sip:callee@192.0.2.1:5060>",
    ) -> Response:
        extra = list(headers)
        if contact and status < 300 and request.method == "INVITE":
            extra.insert(0, ("Contact", contact))
        if body:
            extra.append(("Content-Type", "application/sdp"))
        response = make_response(request, status, to_tag=tag, headers=extra, body=body)
        self.feed(response)
        return response

    def feed(self, message: Request | Response | bytes) -> list[Request | Response]:
        data = message if isinstance(message, bytes) else bytes(message)
        self.ua.receive(data, TRUNK, self.now)
        return self.drain()

    def advance(self, until: float) -> list[Request | Response]:
        """Run the clock to `until`, firing timers exactly when they are due."""
        out: list[Request | Response] = []
        while (when := self.ua.get_timer()) is not None and when <= until:
            self.now = max(self.now, when)
            self.ua.handle_timer(self.now)
            out += self.drain()
        self.now = until
        return out

    def of_type(self, kind: type) -> list[object]:
        return [e for e in self.events if isinstance(e, kind)]
