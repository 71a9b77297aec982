"""Relaying a customer's call to an agent's persistent leg, on the media clock.

The media clock plays out every call's received frame before it runs any
handler (`RtpEndpoint.last_frame`), so each side's handler can send the
other side's audio of the same 20 ms tick: the bridge adds no delay of its
own beyond the two jitter buffers. Each leg's session encodes with its own
negotiated codec, so a PCMU customer and a PCMA agent phone are transcoded
through linear PCM with the G.711 tables. RFC 4733 digits received on one
leg are sent as RFC 4733 events on the other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from engine.voice.telephony import MediaLeg

Pcm = NDArray[np.int16]


class Bridge:
    """Two legs joined both ways until `unbridge`.

    `install()` points both legs' flows at the bridge; `unbridge()` hands
    them back to whoever owns them next (the agent leg goes back to
    silence, the customer leg to its call flow or a hang-up)."""

    def __init__(self, customer: MediaLeg, agent: MediaLeg) -> None:
        self.customer = customer
        self.agent = agent
        self.active = False
        self._digits_seen = {id(customer): 0, id(agent): 0}
        self.digits_to_agent = ""
        self.digits_to_customer = ""
        self.frames = 0

    def install(self) -> None:
        self.active = True
        self._digits_seen[id(self.customer)] = len(self.customer.endpoint.session.dtmf_events)
        self._digits_seen[id(self.agent)] = len(self.agent.endpoint.session.dtmf_events)
        self.customer.flow = self._relay(self.customer, self.agent, to_agent=True)
        self.agent.flow = self._relay(self.agent, self.customer, to_agent=False)

    def unbridge(self) -> None:
        if not self.active:
            return
        self.active = False
        self.agent.flow = None
        self.customer.flow = None

    def _relay(
        self, source: MediaLeg, sink: MediaLeg, *, to_agent: bool
    ) -> Callable[[Pcm], Pcm | None]:
        """The handler of `source`'s frames: what `source` is sent is what
        `sink` was heard saying this tick."""

        def on_frame(_received: Pcm) -> Pcm | None:
            if not self.active:
                return None
            if to_agent:
                self.frames += 1
            self._pass_digits(sink, source, to_agent=not to_agent)
            frame = sink.endpoint.last_frame
            return frame if frame is not None and not sink.endpoint.closed else None

        return on_frame

    def _pass_digits(self, heard_on: MediaLeg, send_on: MediaLeg, *, to_agent: bool) -> None:
        events = heard_on.endpoint.session.dtmf_events
        seen = self._digits_seen[id(heard_on)]
        if len(events) <= seen:
            return
        digits = "".join(e.digit for e in events[seen:])
        self._digits_seen[id(heard_on)] = len(events)
        if send_on.endpoint.session.dtmf_payload_type is not None:
            send_on.endpoint.session.send_dtmf(digits)
        if to_agent:
            self.digits_to_agent += digits
        else:
            self.digits_to_customer += digits
