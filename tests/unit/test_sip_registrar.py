"""The REGISTER server with a float clock: digest challenges answered by our
own client (its vectors are checked against RFC 2617/7616 in test_sip_auth),
expiry on the timer, ordering, one phone per agent, and the wiring into the
user agent core."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carriers.sip.auth import Credentials, DigestSession, choose_challenge, parse_challenge
from carriers.sip.message import Request, Response, SipURI
from carriers.sip.parser import parse
from carriers.sip.registrar import (
    ContactPolicy,
    Registered,
    Registrar,
    RegistrarEvent,
    RegistrationRejected,
    Unregistered,
)
from carriers.sip.transaction import Target
from carriers.sip.ua import UserAgent

PHONE = Target("192.0.2.20", 5062, "UDP")
OTHER = Target("192.0.2.30", 5070, "UDP")
CONTACT = "<sip:agent1@192.0.2.20:5062>"
URI = "sip:192.0.2.10"


def register_bytes(
    user: str = "agent1",
    *,
    contacts: list[str] | None = None,
    expires: int | None = None,
    cseq: int = 1,
    call_id: str = "reg-1",
    auth: tuple[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> bytes:
    lines = [
        f"REGISTER {URI} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.20:5062;branch=z9hG4bK{call_id}x{cseq};rport",
        f"From: <sip:{user}@192.0.2.10>;tag=ph{call_id}",
        f"To: <sip:{user}@192.0.2.10>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        "Max-Forwards: 70",
        *(f"Contact: {c}" for c in ([CONTACT] if contacts is None else contacts)),
        *([f"Expires: {expires}"] if expires is not None else []),
        *([f"{auth[0]}: {auth[1]}"] if auth else []),
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def as_request(data: bytes) -> Request:
    message = parse(data)
    assert isinstance(message, Request)
    return message


def make_registrar(**kwargs: object) -> Registrar:
    options: dict[str, object] = {
        "realm": "outdial",
        "accounts": {"agent1": "secret", "agent2": "hunter2"},
        "rng": random.Random(5),
    }
    options.update(kwargs)
    return Registrar(**options)  # type: ignore[arg-type]


@dataclass
class Phone:
    """A phone's REGISTER client: one Call-ID, CSeq counting up (RFC 3261 10.2.4)."""

    registrar: Registrar
    user: str = "agent1"
    password: str = "secret"
    call_id: str = "reg-1"
    source: Target = PHONE
    cseq: int = 0
    digest: DigestSession = field(init=False)
    events: list[RegistrarEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.digest = DigestSession(Credentials(self.user, self.password), random.Random(7))

    def send(self, now: float, **kwargs: object) -> Response:
        self.cseq += 1
        data = register_bytes(self.user, cseq=self.cseq, call_id=self.call_id, **kwargs)  # type: ignore[arg-type]
        response = self.registrar.handle_request(as_request(data), self.source, now)
        while (event := self.registrar.next_event()) is not None:
            self.events.append(event)
        return response

    def answer(self, challenge: Response, algorithm: str = "SHA-256") -> tuple[str, str]:
        values = challenge.headers.get_all("WWW-Authenticate")
        chosen = next(v for v in values if f"algorithm={algorithm}" in v)
        return self.digest.authorize(parse_challenge(chosen), "REGISTER", URI)

    def register(self, now: float, algorithm: str = "SHA-256", **kwargs: object) -> Response:
        challenge = self.send(now, **kwargs)
        assert challenge.status == 401, challenge
        return self.send(now, auth=self.answer(challenge, algorithm), **kwargs)


def of(events: list[RegistrarEvent], kind: type) -> list[RegistrarEvent]:
    return [e for e in events if isinstance(e, kind)]


# ---------------------------------------------------------------- challenge


def test_first_register_is_challenged_with_md5_then_sha256() -> None:
    phone = Phone(make_registrar())
    challenge = phone.send(0.0, expires=600)
    assert challenge.status == 401
    assert challenge.to.tag  # 8.2.6.2
    parsed = [parse_challenge(v) for v in challenge.headers.get_all("WWW-Authenticate")]
    # MD5 first, for UAs that read only the first challenge (SIPp 3.6.1)
    assert [c.algorithm for c in parsed] == ["MD5", "SHA-256"]
    assert all(c.realm == "outdial" and c.qop == ("auth",) and not c.stale for c in parsed)
    assert parsed[0].nonce == parsed[1].nonce
    assert phone.events == []  # a challenge is a normal step, not a rejection
    assert phone.registrar.binding("agent1") is None


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_challenge_then_200_lists_the_binding(algorithm: str) -> None:
    phone = Phone(make_registrar())
    ok = phone.register(10.0, algorithm, expires=600)
    assert ok.status == 200
    assert ok.headers.get_all("Contact") == [f"{CONTACT};expires=600"]
    binding = phone.registrar.binding("agent1")
    assert binding is not None
    assert binding.contact == SipURI(host="192.0.2.20", user="agent1", port=5062)
    assert binding.target == Target("192.0.2.20", 5062, "UDP")
    assert binding.source == PHONE and binding.expires_at == 610.0
    assert phone.events == [
        Registered("agent1", binding.contact, PHONE, 610.0, 10.0, refreshed=False)
    ]


def test_an_rfc8760_client_still_answers_sha256_with_md5_listed_first() -> None:
    phone = Phone(make_registrar())
    challenge = phone.send(0.0)
    offered = [parse_challenge(v) for v in challenge.headers.get_all("WWW-Authenticate")]
    chosen = choose_challenge(offered)
    assert chosen is not None and chosen.algorithm == "SHA-256"
    name, value = phone.digest.authorize(chosen, "REGISTER", URI)
    assert "algorithm=SHA-256" in value
    assert phone.send(0.0, auth=(name, value)).status == 200


def test_algorithms_order_is_a_constructor_option() -> None:
    strict = Phone(make_registrar(algorithms=("SHA-256", "MD5")))
    challenge = strict.send(0.0)
    assert [
        parse_challenge(v).algorithm for v in challenge.headers.get_all("WWW-Authenticate")
    ] == [
        "SHA-256",
        "MD5",
    ]
    phone = Phone(make_registrar(algorithms=("MD5",)))
    challenge = phone.send(0.0)
    assert [
        parse_challenge(v).algorithm for v in challenge.headers.get_all("WWW-Authenticate")
    ] == ["MD5"]
    assert phone.send(0.0, auth=phone.answer(challenge, "MD5")).status == 200


def test_wrong_password_after_a_valid_challenge_is_403() -> None:
    phone = Phone(make_registrar(), password="wrong")
    assert phone.register(0.0).status == 403
    assert phone.registrar.binding("agent1") is None
    (rejected,) = phone.events
    assert rejected == RegistrationRejected("agent1", 403, "wrong password", PHONE, 0.0)


def test_unknown_user_is_404_before_any_challenge() -> None:
    phone = Phone(make_registrar(), user="nobody")
    response = phone.send(0.0)
    assert response.status == 404 and not response.headers.get_all("WWW-Authenticate")
    assert phone.events == [RegistrationRejected("nobody", 404, "unknown user", PHONE, 0.0)]


def test_credentials_of_another_agent_are_403() -> None:
    registrar = make_registrar()
    intruder = Phone(registrar, user="agent2", password="hunter2")
    challenge = intruder.send(0.0)
    auth = intruder.answer(challenge)
    # agent2's valid credentials on a REGISTER for agent1's address-of-record
    response = registrar.handle_request(as_request(register_bytes(auth=auth, cseq=9)), PHONE, 0.0)
    assert response.status == 403
    assert registrar.binding("agent1") is None


def test_a_stale_nonce_gets_a_new_challenge_marked_stale() -> None:
    phone = Phone(make_registrar(nonce_lifetime=300.0))
    auth = phone.answer(phone.send(0.0))
    late = phone.send(300.0, auth=auth)
    assert late.status == 401
    challenges = [parse_challenge(v) for v in late.headers.get_all("WWW-Authenticate")]
    assert all(c.stale for c in challenges)
    assert phone.digest.should_retry(challenges[0], previous_failed=True)
    assert phone.send(300.0, auth=phone.answer(late)).status == 200
    assert of(phone.events, RegistrationRejected) == []


def test_a_replayed_nonce_count_is_stale_and_a_higher_one_is_accepted() -> None:
    phone = Phone(make_registrar())
    challenge = phone.send(0.0)
    auth = phone.answer(challenge)  # nc=00000001
    assert phone.send(1.0, auth=auth).status == 200
    replay = phone.send(2.0, auth=auth)
    assert replay.status == 401 and "stale=true" in replay.headers.get_all("WWW-Authenticate")[0]
    again = phone.answer(challenge)  # the same nonce, nc=00000002
    assert phone.send(3.0, auth=again).status == 200


def test_a_nonce_not_issued_here_is_challenged_again() -> None:
    phone = Phone(make_registrar())
    forged = parse_challenge('Digest realm="outdial", nonce="0.1.2", qop="auth"')
    right = phone.digest.authorize(forged, "REGISTER", URI)
    response = phone.send(0.0, auth=right)
    assert response.status == 401 and "stale=true" in response.headers.get("WWW-Authenticate")
    wrong = DigestSession(Credentials("agent1", "guess"), random.Random(1))
    response = phone.send(0.0, auth=wrong.authorize(forged, "REGISTER", URI))
    assert response.status == 401 and "stale" not in response.headers.get("WWW-Authenticate")
    assert phone.registrar.binding("agent1") is None


def test_credentials_for_another_realm_get_our_challenge() -> None:
    phone = Phone(make_registrar())
    theirs = parse_challenge('Digest realm="carrier", nonce="n", qop="auth"')
    response = phone.send(0.0, auth=phone.digest.authorize(theirs, "REGISTER", URI))
    assert response.status == 401 and phone.events == []


MALFORMED = [
    "Basic YWdlbnQxOnNlY3JldA==",
    "Digest",
    "Digest realm=",
    "Digest ,,,",
    'Digest realm="outdial"',
    'Digest realm="outdial", username="agent1", nonce="x", uri="sip:a"',
    'Digest realm="outdial", realm="outdial"',
    'Digest realm="outdial", username="agent1", nonce="1.2.3", uri="u", response="r", '
    "algorithm=SHA-999",
    'Digest realm="outdial", username="agent1", nonce="1.2.3", uri="u", response="r", nc=zz',
    'Digest realm="outdial", username="agent1", nonce="", uri="", response="", qop=auth',
    'Digest realm="outdial", username="agent1", nonce="1.2.3", uri="u", response="r", qop=auth',
]


@pytest.mark.parametrize("header", MALFORMED)
def test_malformed_authorization_is_400_or_401_never_an_exception(header: str) -> None:
    phone = Phone(make_registrar())
    response = phone.send(0.0, auth=("Authorization", header))
    assert response.status in (400, 401)
    assert phone.registrar.binding("agent1") is None


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=120))
def test_any_authorization_text_is_answered(text: str) -> None:
    registrar = make_registrar()
    value = ("Digest " + text).strip()
    response = registrar.handle_request(
        as_request(register_bytes(auth=("Authorization", value))), PHONE, 0.0
    )
    assert response.status in (400, 401, 403)


# ------------------------------------------------------------------- expiry


def test_expiry_fires_unregistered_exactly_when_due() -> None:
    phone = Phone(make_registrar())
    phone.register(0.0, expires=120)
    registrar = phone.registrar
    assert registrar.get_timer() == 120.0
    registrar.handle_timer(119.99)
    assert registrar.binding("agent1") is not None
    assert registrar.binding("agent1", now=120.0) is None  # lookups never see a dead one
    registrar.handle_timer(120.0)
    assert registrar.binding("agent1") is None
    assert registrar.next_event() == Unregistered(
        "agent1", "expired", SipURI(host="192.0.2.20", user="agent1", port=5062), 120.0
    )
    assert registrar.get_timer() is None


def test_refresh_extends_the_binding() -> None:
    phone = Phone(make_registrar())
    phone.register(0.0, expires=120)
    ok = phone.register(100.0, expires=120)
    assert ok.headers.get("Contact") == f"{CONTACT};expires=120"
    registrar = phone.registrar
    assert registrar.get_timer() == 220.0
    registrar.handle_timer(120.0)  # the first expiry is gone
    binding = registrar.binding("agent1")
    assert binding is not None and binding.registered_at == 0.0
    registered = of(phone.events, Registered)
    assert [e.refreshed for e in registered if isinstance(e, Registered)] == [False, True]
    query = phone.register(150.0, contacts=[])  # no Contact: list the bindings
    assert query.headers.get("Contact") == f"{CONTACT};expires=70"


def test_expires_zero_removes_the_binding() -> None:
    phone = Phone(make_registrar())
    phone.register(0.0)
    ok = phone.register(5.0, expires=0)
    assert ok.status == 200 and ok.headers.get("Contact") is None
    assert phone.registrar.binding("agent1") is None
    assert isinstance(phone.events[-1], Unregistered) and phone.events[-1].reason == "removed"
    assert phone.registrar.get_timer() is None


def test_contact_expires_parameter_wins_over_the_header() -> None:
    phone = Phone(make_registrar())
    phone.register(0.0, contacts=[f"{CONTACT};expires=300"], expires=3600)
    binding = phone.registrar.binding("agent1")
    assert binding is not None and binding.expires_at == 300.0
    phone.register(1.0, contacts=[f"{CONTACT};expires=0"], expires=3600)
    assert phone.registrar.binding("agent1") is None


def test_no_expiry_anywhere_means_the_default() -> None:
    phone = Phone(make_registrar(default_expires=1800))
    phone.register(0.0, contacts=[f"{CONTACT};expires=soon"])
    binding = phone.registrar.binding("agent1")
    assert binding is not None and binding.expires_at == 1800.0


def test_contact_star_with_expires_zero_removes_everything() -> None:
    phone = Phone(make_registrar())
    phone.register(0.0)
    assert phone.register(1.0, contacts=["*"], expires=30).status == 400
    assert phone.register(1.0, contacts=["*", CONTACT], expires=0).status == 400
    assert phone.registrar.binding("agent1") is not None
    assert phone.register(2.0, contacts=["*"], expires=0).status == 200
    assert phone.registrar.binding("agent1") is None
    assert isinstance(phone.events[-1], Unregistered) and phone.events[-1].reason == "removed"


def test_too_brief_is_423_with_min_expires_and_too_long_is_clamped() -> None:
    phone = Phone(make_registrar(min_expires=60, max_expires=3600))
    brief = phone.register(0.0, expires=10)
    assert brief.status == 423 and brief.headers.get("Min-Expires") == "60"
    assert phone.registrar.binding("agent1") is None
    assert isinstance(phone.events[-1], RegistrationRejected)
    assert phone.events[-1].status == 423
    long = phone.register(0.0, expires=86400)
    assert long.headers.get("Contact") == f"{CONTACT};expires=3600"
    binding = phone.registrar.binding("agent1")
    assert binding is not None and binding.expires_at == 3600.0


# ----------------------------------------------------------------- ordering


def test_an_older_cseq_of_the_same_call_id_changes_nothing() -> None:
    phone = Phone(make_registrar())
    phone.register(0.0, expires=600)  # CSeq 2 bound
    phone.cseq = 0  # a delayed REGISTER of the same Call-ID: challenged at 1, sent at 2
    late = phone.send(5.0, expires=0, auth=phone.answer(phone.send(5.0)))
    assert late.status == 500
    binding = phone.registrar.binding("agent1")
    assert binding is not None and binding.cseq == 2 and binding.expires_at == 600.0
    assert isinstance(phone.events[-1], RegistrationRejected)


def test_a_new_call_id_may_start_its_cseq_anywhere() -> None:
    registrar = make_registrar()
    Phone(registrar, call_id="boot-1", cseq=50).register(0.0)
    rebooted = Phone(registrar, call_id="boot-2")  # CSeq 1 again after a reboot
    assert rebooted.register(10.0, expires=600).status == 200
    binding = registrar.binding("agent1")
    assert binding is not None and binding.call_id == "boot-2"


# ------------------------------------------------------- one phone per agent


def test_last_registration_wins_and_replaces_the_other_phone() -> None:
    registrar = make_registrar()
    desk = Phone(registrar)
    desk.register(0.0)
    soft = Phone(registrar, call_id="soft-1", source=OTHER)
    ok = soft.register(5.0, contacts=["<sip:agent1@192.0.2.30:5070;transport=tcp>"])
    assert ok.headers.get_all("Contact") == [
        "<sip:agent1@192.0.2.30:5070;transport=tcp>;expires=3600"
    ]
    binding = registrar.binding("agent1")
    assert binding is not None and binding.target == Target("192.0.2.30", 5070, "TCP")
    replaced, registered = soft.events
    assert isinstance(replaced, Unregistered) and replaced.reason == "replaced"
    assert replaced.contact.host == "192.0.2.20"
    assert isinstance(registered, Registered) and registered.source == OTHER


def test_refuse_policy_keeps_the_first_phone_until_it_goes() -> None:
    registrar = make_registrar(policy=ContactPolicy.REFUSE)
    desk = Phone(registrar)
    desk.register(0.0, expires=60)
    soft = Phone(registrar, call_id="soft-1", source=OTHER)
    refused = soft.register(5.0, contacts=["<sip:agent1@192.0.2.30:5070>"])
    assert refused.status == 403
    binding = registrar.binding("agent1")
    assert binding is not None and binding.source == PHONE
    assert desk.register(6.0, expires=60).status == 200  # the same phone refreshes
    registrar.handle_timer(66.0)
    assert soft.register(70.0, contacts=["<sip:agent1@192.0.2.30:5070>"]).status == 200


def test_several_contacts_in_one_register_bind_the_highest_q() -> None:
    phone = Phone(make_registrar())
    low, high = "<sip:agent1@192.0.2.20:5062>;q=0.1", "<sip:agent1@192.0.2.21:5062>;q=0.9"
    phone.register(0.0, contacts=[high, low])
    binding = phone.registrar.binding("agent1")
    assert binding is not None and binding.contact.host == "192.0.2.21"


def test_moving_phone_removes_old_contact_and_adds_new_in_one_request() -> None:
    phone = Phone(make_registrar(policy=ContactPolicy.REFUSE))
    phone.register(0.0)
    moved = "<sip:agent1@192.0.2.22:5062>"
    ok = phone.register(1.0, contacts=[f"{CONTACT};expires=0", moved])
    assert ok.status == 200 and ok.headers.get("Contact") == f"{moved};expires=3600"
    assert [type(e).__name__ for e in phone.events[-2:]] == ["Unregistered", "Registered"]


def test_route_to_source_sends_the_invite_where_the_register_came_from() -> None:
    phone = Phone(make_registrar(route_to_source=True), source=Target("198.51.100.7", 40123))
    phone.register(0.0, contacts=["<sip:agent1@10.0.0.5:5060>"])
    binding = phone.registrar.binding("agent1")
    assert binding is not None and binding.contact.host == "10.0.0.5"
    assert binding.target == Target("198.51.100.7", 40123, "UDP")


def test_non_sip_contacts_are_refused() -> None:
    phone = Phone(make_registrar())
    assert phone.register(0.0, contacts=["<tel:+12125550100>"]).status == 400
    assert phone.registrar.binding("agent1") is None


def test_removing_an_account_ends_its_binding() -> None:
    phone = Phone(make_registrar())
    phone.register(0.0)
    phone.registrar.remove_account("agent1", 3.0)
    assert phone.registrar.binding("agent1") is None
    event = phone.registrar.next_event()
    assert isinstance(event, Unregistered) and event.reason == "removed"
    assert phone.send(4.0).status == 404


# -------------------------------------------------------- in the user agent


def drain(ua: UserAgent) -> tuple[list[Request | Response], list[object]]:
    sent = [parse(data) for data, _ in ua.datagrams_to_send()]
    events: list[object] = []
    while (event := ua.next_event()) is not None:
        events.append(event)
    return sent, events


def run_until(ua: UserAgent, until: float) -> list[object]:
    """Fire the user agent's timers in order up to `until` (transactions' too)."""
    events: list[object] = []
    while (when := ua.get_timer()) is not None and when <= until:
        ua.handle_timer(when)
        events += drain(ua)[1]
    return events


def expiry_times(ua: UserAgent, until: float) -> list[tuple[str, float]]:
    """(agent, time) of every expiry fired up to `until`."""
    return [(e.aor, e.at) for e in run_until(ua, until) if isinstance(e, Unregistered)]


def ua_register(ua: UserAgent, now: float, cseq: int, **kwargs: object) -> Response:
    ua.receive(register_bytes(cseq=cseq, **kwargs), PHONE, now)  # type: ignore[arg-type]
    sent, _ = drain(ua)
    assert len(sent) == 1 and isinstance(sent[0], Response)
    return sent[0]


def test_without_a_registrar_register_is_405() -> None:
    ua = UserAgent(host="192.0.2.10", port=5060, rng=random.Random(3))
    response = ua_register(ua, 0.0, 1)
    assert response.status == 405 and "REGISTER" not in response.headers.get_all("Allow")


def test_the_user_agent_answers_register_and_fires_expiry_on_its_heap() -> None:
    ua = UserAgent(host="192.0.2.10", port=5060, rng=random.Random(3))
    ua.registrar = make_registrar()
    digest = DigestSession(Credentials("agent1", "secret"), random.Random(2))
    challenge = ua_register(ua, 1.0, 1, expires=60)
    assert challenge.status == 401
    header = challenge.headers.get_all("WWW-Authenticate")[0]
    auth = digest.authorize(parse_challenge(header), "REGISTER", URI)
    ua.receive(register_bytes(cseq=2, expires=60, auth=auth), PHONE, 1.0)
    sent, events = drain(ua)
    assert isinstance(sent[0], Response) and sent[0].status == 200
    assert [type(e) for e in events] == [Registered]
    assert run_until(ua, 60.99) == []  # timer J of both transactions fired on the way
    assert ua.get_timer() == 61.0
    (expired,) = run_until(ua, 61.0)
    assert isinstance(expired, Unregistered) and expired.reason == "expired" and expired.at == 61.0
    assert ua.get_timer() is None


def test_an_earlier_expiry_is_armed_even_after_a_later_one() -> None:
    ua = UserAgent(host="192.0.2.10", port=5060, rng=random.Random(3))
    registrar = make_registrar()
    ua.registrar = registrar
    for user, password, expires in (("agent1", "secret", 3600), ("agent2", "hunter2", 60)):
        digest = DigestSession(Credentials(user, password), random.Random(2))
        challenge = ua_register(ua, 0.0, 1, user=user, call_id=user)
        auth = digest.authorize(
            parse_challenge(challenge.headers.get_all("WWW-Authenticate")[0]), "REGISTER", URI
        )
        assert (
            ua_register(ua, 0.0, 2, user=user, call_id=user, expires=expires, auth=auth).status
            == 200
        )
    assert expiry_times(ua, 3599.0) == [("agent2", 60.0)]
    assert ua.get_timer() == 3600.0
    assert expiry_times(ua, 4000.0) == [("agent1", 3600.0)]


def test_options_advertises_register_once_a_registrar_is_attached() -> None:
    ua = UserAgent(host="192.0.2.10", port=5060, rng=random.Random(3))
    options = register_bytes().replace(b"REGISTER", b"OPTIONS")
    ua.receive(options, PHONE, 0.0)
    assert "REGISTER" not in drain(ua)[0][0].headers.get_all("Allow")
    ua.registrar = make_registrar()
    ua.receive(options.replace(b"reg-1x1", b"reg-1x2"), PHONE, 0.0)
    assert "REGISTER" in drain(ua)[0][0].headers.get_all("Allow")
