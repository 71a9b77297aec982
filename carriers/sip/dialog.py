"""SIP dialog state (RFC 3261 section 12) and in-dialog request construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from carriers.sip.errors import SipError
from carriers.sip.message import Address, Headers, Request, Response, SipURI
from carriers.sip.transaction import Target

DialogId = tuple[str, str, str]  # (Call-ID, local tag, remote tag)


class DialogError(SipError):
    """A dialog could not be formed or used (for example a 2xx without Contact)."""


@dataclass(slots=True)
class Dialog:
    """One confirmed or early dialog, seen from our (UAC) side."""

    call_id: str
    local: Address  # our From, with our tag
    remote: Address  # their To, with their tag
    remote_target: SipURI
    route_set: list[Address] = field(default_factory=list)
    local_cseq: int = 1
    remote_cseq: int | None = None

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local.tag or "", self.remote.tag or "")

    @classmethod
    def from_response(cls, request: Request, response: Response) -> Dialog:
        """Build the UAC side of a dialog from the INVITE and a 18x/2xx (12.1.2)."""
        contacts = response.contact
        if not contacts or not isinstance(contacts[0].uri, SipURI):
            raise DialogError(f"{response.status} response carries no usable SIP Contact")
        return cls(
            call_id=request.call_id,
            local=request.from_,
            remote=response.to,
            remote_target=contacts[0].uri,
            # 12.1.2: the route set is the Record-Route list in reverse order.
            route_set=list(reversed(response.record_route)),
            local_cseq=request.cseq.number,
        )

    def update_from_response(self, response: Response) -> None:
        """A target refresh (2xx to a re-INVITE, or the 2xx after 18x) updates
        the remote target; the route set is fixed once confirmed (12.2.1.2)."""
        contacts = response.contact
        if contacts and isinstance(contacts[0].uri, SipURI):
            self.remote_target = contacts[0].uri

    def request(
        self, method: str, via: str, *, cseq: int | None = None, max_forwards: int = 70
    ) -> Request:
        """An in-dialog request (12.2.1.1), with loose or strict routing."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        uri: SipURI = self.remote_target
        routes = [str(r) for r in self.route_set]
        if self.route_set and isinstance(self.route_set[0].uri, SipURI):
            first = self.route_set[0].uri
            if first.param("lr") is None:
                # Strict router: it becomes the Request-URI and the remote
                # target goes to the end of the Route set.
                uri = SipURI(host=first.host, user=first.user, port=first.port, scheme=first.scheme)
                routes = [*routes[1:], f"<{self.remote_target}>"]
        headers = Headers()
        headers.add("Via", via)
        for route in routes:
            headers.add("Route", route)
        headers.add("Max-Forwards", str(max_forwards))
        headers.add("From", str(self.local))
        headers.add("To", str(self.remote))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        return Request(method, uri, headers)

    def next_hop(self, default_transport: str = "UDP") -> Target:
        """Where an in-dialog request goes: the first route, else the target."""
        if self.route_set and isinstance(self.route_set[0].uri, SipURI):
            return uri_target(self.route_set[0].uri, default_transport)
        return uri_target(self.remote_target, default_transport)

    def accept_remote_cseq(self, request: Request) -> bool:
        """12.2.2: a request with a lower CSeq than the last one is out of order."""
        number = request.cseq.number
        if self.remote_cseq is not None and number < self.remote_cseq:
            return False
        self.remote_cseq = number
        return True


def uri_target(uri: SipURI, default_transport: str = "UDP") -> Target:
    """Next hop for a SIP URI: its maddr or host, its port, its transport.

    Without DNS SRV (RFC 3263 lookups live in the transport adapter), a
    missing port means 5060, or 5061 for sips.
    """
    transport = (uri.param("transport") or default_transport).upper()
    if uri.scheme == "sips":
        transport = "TLS"
    host = uri.param("maddr") or uri.host
    port = uri.port or (5061 if transport == "TLS" else 5060)
    return Target(host.strip("[]"), port, transport)
