"""Digest authentication: published vectors first, then session behaviour.

Expected response values come from documents, not from this implementation:
RFC 2617 section 3.5, RFC 7616 section 3.9.1, and the SIP worked examples of
draft-smith-sipping-auth-examples-01 (bob / zanzibar at biloxi.com), which
several independent SIP stacks test against.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carriers.sip.auth import (
    AuthError,
    Challenge,
    Credentials,
    DigestSession,
    choose_challenge,
    compute_response,
    parse_authorization,
    parse_challenge,
    supported_algorithms,
    verify_authorization,
)
from carriers.sip.errors import SipError

# --- RFC 2617 section 3.5 ------------------------------------------------------

RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa",\r\n'
    '        realm="testrealm@host.com",\r\n'
    '        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    '        uri="/dir/index.html",\r\n'
    "        qop=auth,\r\n"
    "        nc=00000001,\r\n"
    '        cnonce="0a4f113b",\r\n'
    '        response="6629fae49393a05397450978507c4ef1",\r\n'
    '        opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_rfc2617_example_response() -> None:
    assert (
        compute_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            nc="00000001",
            cnonce="0a4f113b",
            qop="auth",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_rfc2617_example_header_verifies_with_folded_lines() -> None:
    assert verify_authorization(RFC2617_AUTHORIZATION, method="GET", password="Circle Of Life")
    # RFC 7616 changed the example password's "Of" to "of": one letter must matter.
    assert not verify_authorization(RFC2617_AUTHORIZATION, method="GET", password="Circle of Life")
    assert not verify_authorization(RFC2617_AUTHORIZATION, method="POST", password="Circle Of Life")


# --- RFC 7616 section 3.9.1 ----------------------------------------------------

RFC7616_CHALLENGES = [
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
]
RFC7616_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def test_rfc7616_challenges_parse() -> None:
    sha, md5 = (parse_challenge(v) for v in RFC7616_CHALLENGES)
    assert sha == Challenge(
        realm="http-auth@example.org",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        algorithm="SHA-256",
        qop=("auth", "auth-int"),
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    )
    assert md5.algorithm == "MD5"
    # The RFC's client prefers SHA-256 when both are offered, whatever the order.
    assert choose_challenge([md5, sha]) is sha
    assert choose_challenge([sha, md5]) is sha


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_responses(algorithm: str) -> None:
    challenge = next(
        c for c in map(parse_challenge, RFC7616_CHALLENGES) if c.algorithm == algorithm
    )
    response = compute_response(
        algorithm=challenge.algorithm,
        username="Mufasa",
        realm=challenge.realm,
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        nonce=challenge.nonce,
        nc="00000001",
        cnonce=RFC7616_CNONCE,
        qop="auth",
    )
    assert response == RFC7616_RESPONSES[algorithm]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_authorization_headers_verify(algorithm: str) -> None:
    header = (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f'algorithm={algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        f'nc=00000001, cnonce="{RFC7616_CNONCE}", qop=auth, '
        f'response="{RFC7616_RESPONSES[algorithm]}", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    assert verify_authorization(header, method="GET", password="Circle of Life")
    assert not verify_authorization(header, method="GET", password="Circle Of Life")


def test_sha512_256_primitive_is_the_fips_one() -> None:
    # FIPS 180-4 SHA-512/256("abc"); a plain truncated SHA-512 would differ.
    if "SHA-512-256" not in supported_algorithms():
        pytest.skip("this OpenSSL has no SHA-512/256")
    expected_abc = "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    assert hashlib.new("sha512_256", b"abc").hexdigest() == expected_abc
    response = compute_response(
        algorithm="SHA-512-256",
        username="u",
        realm="r",
        password="p",
        method="M",
        uri="x",
        nonce="n",
        nc=None,
        cnonce=None,
        qop=None,
    )
    assert len(response) == 64
    assert response != compute_response(
        algorithm="SHA-256",
        username="u",
        realm="r",
        password="p",
        method="M",
        uri="x",
        nonce="n",
        nc=None,
        cnonce=None,
        qop=None,
    )


# --- draft-smith-sipping-auth-examples-01: SIP INVITE worked examples ----------

BOB_BODY = (
    b"v=0\r\n"
    b"o=bob 2890844526 2890844526 IN IP4 media.biloxi.com\r\n"
    b"s=-\r\n"
    b"c=IN IP4 media.biloxi.com\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"m=video 51372 RTP/AVP 31\r\n"
    b"a=rtpmap:31 H261/90000\r\n"
    b"m=video 53000 RTP/AVP 32\r\n"
    b"a=rtpmap:32 MPV/90000\r\n"
)
BOB = {
    "username": "bob",
    "realm": "biloxi.com",
    "password": "zanzibar",
    "method": "INVITE",
    "uri": "sip:bob@biloxi.com",
    "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
}


def test_draft_body_hash_matches_the_draft() -> None:
    # The draft prints H(entity-body); checking it proves the body above is theirs.
    assert hashlib.md5(BOB_BODY).hexdigest() == "c1ed018b8ec4a3b170c0921f5b564e48"


@pytest.mark.parametrize(
    ("section", "algorithm", "qop", "expected"),
    [
        ("3.1 no qop (RFC 2069 form)", "MD5", None, "bf57e4e0d0bffc0fbaedce64d59add5e"),
        ("3.2/3.3 auth", "MD5", "auth", "89eb0059246c02b2f6ee02c7961d5ea3"),
        ("3.4 auth, MD5-sess", "MD5-sess", "auth", "e4e4ea61d186d07a92c9e1f6919902e9"),
        ("3.5 auth-int", "MD5", "auth-int", "bdbeebb2da6adb6bca02599c2239e192"),
        ("3.6 auth-int, MD5-sess", "MD5-sess", "auth-int", "91984da2d8663716e91554859c22ca70"),
    ],
)
def test_sip_worked_examples(section: str, algorithm: str, qop: str | None, expected: str) -> None:
    with_qop = qop is not None or algorithm.endswith("-sess")
    response = compute_response(
        algorithm=algorithm,
        qop=qop,
        nc="00000001" if qop else None,
        cnonce="0a4f113b" if with_qop else None,
        body=BOB_BODY,
        **BOB,
    )
    assert response == expected, section


def test_sip_worked_example_header_verifies_and_binds_the_body() -> None:
    header = (
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'uri="sip:bob@biloxi.com", qop=auth-int, algorithm=MD5, nc=00000001, cnonce="0a4f113b", '
        'response="bdbeebb2da6adb6bca02599c2239e192", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert verify_authorization(header, method="INVITE", password="zanzibar", body=BOB_BODY)
    assert not verify_authorization(
        header, method="INVITE", password="zanzibar", body=BOB_BODY.replace(b"49170", b"49171")
    )


def test_sip_no_qop_example_through_session() -> None:
    # Section 3.1 end to end: no qop means no cnonce, so the whole header is fixed.
    session = DigestSession(Credentials("bob", "zanzibar"), random.Random(1))
    challenge = parse_challenge(
        'Digest realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    name, value = session.authorize(challenge, "INVITE", "sip:bob@biloxi.com")
    assert name == "Authorization"
    assert value == (
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'uri="sip:bob@biloxi.com", response="bf57e4e0d0bffc0fbaedce64d59add5e", '
        'algorithm=MD5, opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )


# --- parsing -----------------------------------------------------------------------


def test_parse_quoting_order_and_whitespace() -> None:
    value = (
        'DIGEST  NONCE = abc/def+= ,\t,REALM="sip \\"trunk\\" \\\\ one, two" ,\r\n'
        ' stale="TRUE", algorithm="sha-256-SESS", qop="auth-int , AUTH", OPAQUE=""'
    )
    challenge = parse_challenge(value, proxy=True)
    assert challenge == Challenge(
        realm='sip "trunk" \\ one, two',
        nonce="abc/def+=",
        algorithm="SHA-256-sess",
        qop=("auth-int", "auth"),
        opaque="",
        stale=True,
        proxy=True,
    )


@pytest.mark.parametrize(
    ("stale", "expected"), [("true", True), ("TRUE", True), ('"true"', True), ("false", False)]
)
def test_stale_flag(stale: str, expected: bool) -> None:
    assert parse_challenge(f'Digest realm="r", nonce="n", stale={stale}').stale is expected


def test_unknown_algorithm_is_kept_but_not_chosen() -> None:
    aka = parse_challenge('Digest realm="r", nonce="n", algorithm=AKAv1-MD5')
    assert aka.algorithm == "AKAv1-MD5"
    assert choose_challenge([aka]) is None
    with pytest.raises(AuthError):
        DigestSession(Credentials("u", "p"), random.Random(0)).authorize(aka, "REGISTER", "sip:r")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        'Basic realm="WallyWorld"',
        'Digest nonce="n"',
        'Digest realm="r"',
        'Digest realm="r", nonce="unterminated',
        'Digest realm="r" nonce="n"',
        'Digest realm="r", nonce="n", realm="again"',
        'Digest realm="r", nonce="n", flag',
        'Digest realm="r", nonce="n", =x',
    ],
)
def test_parse_errors(value: str) -> None:
    with pytest.raises(AuthError):
        parse_challenge(value)


def test_auth_error_is_a_sip_error() -> None:
    with pytest.raises(SipError):
        parse_challenge("Basic realm=x")


@given(st.text(max_size=200))
def test_parse_challenge_only_raises_auth_error(value: str) -> None:
    try:
        parse_challenge(value)
    except AuthError:
        pass


def test_parse_authorization_lowercases_keys() -> None:
    params = parse_authorization('Digest UserName="a\\"b", NC=00000002')
    assert params == {"username": 'a"b', "nc": "00000002"}
    with pytest.raises(AuthError):
        parse_authorization('Bearer token="x"')


def test_verify_rejects_malformed_or_incomplete_headers() -> None:
    assert not verify_authorization("Basic abc", method="GET", password="p")
    assert not verify_authorization('Digest username="u"', method="GET", password="p")


# --- choose_challenge ------------------------------------------------------------------


def _ch(algorithm: str, nonce: str = "n", qop: tuple[str, ...] = ("auth",)) -> Challenge:
    return Challenge(realm="r", nonce=nonce, algorithm=algorithm, qop=qop)


def test_choose_prefers_sha256_and_treats_sess_as_equal() -> None:
    md5, md5_sess = _ch("MD5"), _ch("MD5-sess")
    sha, sha_sess = _ch("SHA-256", "a"), _ch("SHA-256-sess", "b")
    assert choose_challenge([md5, sha]) is sha
    assert choose_challenge([md5_sess, sha_sess]) is sha_sess
    assert choose_challenge([sha_sess, sha]) is sha_sess  # equal rank: first offered
    assert choose_challenge([sha, sha_sess]) is sha
    assert choose_challenge([md5_sess, md5]) is md5_sess
    assert choose_challenge([]) is None


def test_choose_ignores_unsupported() -> None:
    md5 = _ch("MD5")
    assert choose_challenge([_ch("SHA3-512"), md5]) is md5
    assert choose_challenge([_ch("SHA-256", qop=("auth-conf",)), md5]) is md5
    assert choose_challenge([_ch("SHA3-512")]) is None


# --- DigestSession ---------------------------------------------------------------------------


def _session(realm: str | None = None, seed: int = 7) -> DigestSession:
    return DigestSession(Credentials("alice", "s3cret", realm), random.Random(seed))


def _challenge(
    nonce: str = "n1",
    *,
    algorithm: str = "MD5",
    qop: tuple[str, ...] = ("auth",),
    opaque: str | None = None,
    stale: bool = False,
    proxy: bool = False,
) -> Challenge:
    return Challenge("sip.example.net", nonce, algorithm, qop, opaque, stale, proxy)


def test_authorize_builds_a_header_the_server_accepts() -> None:
    session = _session()
    challenge = _challenge(opaque="op", algorithm="SHA-256")
    name, value = session.authorize(challenge, "INVITE", "sip:+15551234567@sip.example.net")
    assert name == "Authorization"
    params = parse_authorization(value)
    assert params["username"] == "alice"
    assert params["qop"] == "auth"
    assert params["nc"] == "00000001"
    assert params["algorithm"] == "SHA-256"
    assert params["opaque"] == "op"
    assert len(params["cnonce"]) == 16
    assert verify_authorization(value, method="INVITE", password="s3cret")
    assert not verify_authorization(value, method="INVITE", password="wrong")
    # qop, nc and algorithm are tokens (RFC 7616 section 3.4): never quoted.
    assert "qop=auth," in value
    assert "nc=00000001" in value
    assert "algorithm=SHA-256," in value


def test_proxy_challenge_gets_proxy_authorization() -> None:
    name, _ = _session().authorize(_challenge(proxy=True), "INVITE", "sip:x@y")
    assert name == "Proxy-Authorization"


def test_cnonce_comes_from_the_injected_rng() -> None:
    first = parse_authorization(_session(seed=3).authorize(_challenge(), "REGISTER", "sip:y")[1])
    again = parse_authorization(_session(seed=3).authorize(_challenge(), "REGISTER", "sip:y")[1])
    other = parse_authorization(_session(seed=4).authorize(_challenge(), "REGISTER", "sip:y")[1])
    assert first["cnonce"] == again["cnonce"] != other["cnonce"]


def test_nonce_count_increments_and_resets_on_new_nonce() -> None:
    session = _session()

    def nc(challenge: Challenge) -> str:
        return parse_authorization(session.authorize(challenge, "INVITE", "sip:a@b")[1])["nc"]

    assert [nc(_challenge("n1")) for _ in range(3)] == ["00000001", "00000002", "00000003"]
    assert nc(_challenge("n2")) == "00000001"
    assert nc(_challenge("n2")) == "00000002"
    other_realm = Challenge(realm="other", nonce="n2", qop=("auth",))
    assert nc(other_realm) == "00000001"  # counts are per realm
    assert nc(_challenge("n2")) == "00000003"


def test_nonce_count_is_hex() -> None:
    session = _session()
    for _ in range(16):
        _, value = session.authorize(_challenge(), "OPTIONS", "sip:a@b")
    assert parse_authorization(value)["nc"] == "00000010"


def test_cached_challenge_preauthorises_next_request() -> None:
    session = _session()
    assert session.cached_challenge() is None
    challenge = _challenge("n9")
    session.authorize(challenge, "REGISTER", "sip:sip.example.net")
    cached = session.cached_challenge()
    assert cached == challenge
    assert session.cached_challenge("sip.example.net") == challenge
    assert session.cached_challenge("elsewhere") is None
    _, value = session.authorize(cached, "INVITE", "sip:bob@sip.example.net")
    assert parse_authorization(value)["nc"] == "00000002"
    session.forget("sip.example.net")
    assert session.cached_challenge() is None


def test_qop_choice_and_auth_int_body() -> None:
    session = _session()
    _, both = session.authorize(_challenge(qop=("auth-int", "auth")), "INVITE", "sip:a@b", b"x")
    assert parse_authorization(both)["qop"] == "auth"
    _, only_int = session.authorize(_challenge(qop=("auth-int",)), "INVITE", "sip:a@b", b"v=0\r\n")
    assert parse_authorization(only_int)["qop"] == "auth-int"
    assert verify_authorization(only_int, method="INVITE", password="s3cret", body=b"v=0\r\n")
    assert not verify_authorization(only_int, method="INVITE", password="s3cret", body=b"v=1\r\n")
    with pytest.raises(AuthError):
        session.authorize(_challenge(qop=("auth-conf",)), "INVITE", "sip:a@b")


def test_no_qop_sends_rfc2069_form() -> None:
    _, value = _session().authorize(Challenge(realm="r", nonce="n"), "BYE", "sip:a@b")
    params = parse_authorization(value)
    assert not {"qop", "nc", "cnonce"} & params.keys()
    assert verify_authorization(value, method="BYE", password="s3cret")


def test_realm_mismatch() -> None:
    pinned = _session(realm="sip.example.net")
    pinned.authorize(_challenge(), "INVITE", "sip:a@b")
    foreign = Challenge(realm="evil.example.com", nonce="n", qop=("auth",))
    with pytest.raises(AuthError, match="realm"):
        pinned.authorize(foreign, "INVITE", "sip:a@b")
    assert not pinned.should_retry(foreign, previous_failed=False)
    # Without a pinned realm, any realm is answered.
    _session().authorize(foreign, "INVITE", "sip:a@b")


def test_should_retry_first_challenge_then_only_on_stale() -> None:
    session = _session()
    first = _challenge("n1")
    assert session.should_retry(first, previous_failed=False)
    session.authorize(first, "INVITE", "sip:a@b")
    # The same credentials failed again and the nonce was fine: wrong password.
    assert not session.should_retry(_challenge("n2"), previous_failed=True)
    # stale=true: only the nonce was wrong (RFC 7616 section 3.3), so retry.
    stale = _challenge("n2", stale=True)
    assert session.should_retry(stale, previous_failed=True)
    session.authorize(stale, "INVITE", "sip:a@b")
    # A server repeating stale with the nonce we just used would loop us forever.
    assert not session.should_retry(_challenge("n2", stale=True), previous_failed=True)


def test_should_retry_refuses_unusable_challenge() -> None:
    assert not _session().should_retry(_ch("SHA3-512"), previous_failed=False)


@given(
    username=st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20),
    realm=st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20),
    password=st.text(max_size=20),
    algorithm=st.sampled_from(supported_algorithms()),
    qop=st.sampled_from([(), ("auth",), ("auth-int",)]),
    body=st.binary(max_size=64),
)
def test_any_quoted_values_survive_and_verify(
    username: str, realm: str, password: str, algorithm: str, qop: tuple[str, ...], body: bytes
) -> None:
    session = DigestSession(Credentials(username, password), random.Random(0))
    challenge = Challenge(realm=realm, nonce='n"\\', algorithm=algorithm, qop=qop)
    _, value = session.authorize(challenge, "INVITE", "sip:a@b", body)
    params = parse_authorization(value)
    assert (params["username"], params["realm"], params["nonce"]) == (username, realm, 'n"\\')
    assert verify_authorization(value, method="INVITE", password=password, body=body)
    assert not verify_authorization(value, method="INVITE", password=password + "x", body=body)
