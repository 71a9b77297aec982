"""The HTTP aggregator adapters, sans-IO: Twilio-shaped requests, answers, webhooks and
signatures (cross-checked with the `twilio` package's own RequestValidator), and
Kannel's sendsms URL, replies and delivery reports."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, parse_qsl, unquote_to_bytes, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from carriers.sms.http.errors import (
    BadResponseError,
    SendRejectedError,
    SignatureError,
    SmsHttpError,
    WebhookError,
)
from carriers.sms.http.kannel import (
    ALL_REPORTS,
    DlrType,
    KannelAccount,
    build_dlr_url,
    build_sendsms_request,
    parse_delivery_report,
    parse_sendsms_reply,
)
from carriers.sms.http.twilio import (
    MessageStatus,
    TwilioAccount,
    build_send_request,
    compute_signature,
    parse_form,
    parse_inbound_message,
    parse_send_response,
    parse_status_callback,
    read_signed_form,
    verify_signature,
)

ACCOUNT = TwilioAccount("AC0123456789abcdef0123456789abcdef", "token-s3cret", "https://api.example")
TOKEN = ACCOUNT.auth_token
HOOK = "https://hooks.example/sms/status?campaign=7"
STATUS_FORM = {
    "AccountSid": ACCOUNT.account_sid,
    "MessageSid": "SM11111111111111111111111111111111",
    "SmsSid": "SM11111111111111111111111111111111",
    "MessageStatus": "undelivered",
    "SmsStatus": "undelivered",
    "ErrorCode": "30003",
    "To": "+447700900123",
    "From": "+15005550006",
}

# --- Twilio: the send request -------------------------------------------------------


def test_send_request_is_a_form_post_with_basic_auth() -> None:
    req = build_send_request(
        ACCOUNT,
        to="+447700900123",
        body="Your code is 1234 — ok?",
        from_="+15005550006",
        status_callback=HOOK,
    )
    assert req.method == "POST"
    assert req.url == f"https://api.example/2010-04-01/Accounts/{ACCOUNT.account_sid}/Messages.json"
    scheme, _, creds = (req.header("authorization") or "").partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(creds).decode() == f"{ACCOUNT.account_sid}:{TOKEN}"
    assert (req.header("Content-Type") or "").startswith("application/x-www-form-urlencoded")
    assert dict(parse_qsl(req.body.decode())) == {
        "To": "+447700900123",
        "From": "+15005550006",
        "Body": "Your code is 1234 — ok?",
        "StatusCallback": HOOK,
    }


def test_send_request_through_a_messaging_service() -> None:
    req = build_send_request(ACCOUNT, to="+15551234567", body="hi", messaging_service_sid="MG1")
    form = dict(parse_qsl(req.body.decode()))
    assert form == {"To": "+15551234567", "MessagingServiceSid": "MG1", "Body": "hi"}


@pytest.mark.parametrize(
    "kwargs", [{}, {"from_": "+1", "messaging_service_sid": "MG1"}], ids=["neither", "both"]
)
def test_send_request_needs_exactly_one_sender(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        build_send_request(ACCOUNT, to="+15551234567", body="hi", **kwargs)


def test_token_is_not_in_the_repr() -> None:
    assert TOKEN not in repr(ACCOUNT)


# --- Twilio: the answer -------------------------------------------------------------


def _resource(**over: object) -> bytes:
    doc: dict[str, object] = {
        "sid": "SM22222222222222222222222222222222",
        "status": "queued",
        "num_segments": "2",
        "error_code": None,
        "error_message": None,
    }
    doc.update(over)
    return json.dumps(doc).encode()


def test_created_answer_gives_sid_status_and_segments() -> None:
    sent = parse_send_response(201, _resource())
    assert sent.sid == "SM22222222222222222222222222222222"
    assert sent.status is MessageStatus.QUEUED
    assert sent.num_segments == 2
    assert sent.error_code is None


def test_an_unknown_status_is_kept_raw() -> None:
    sent = parse_send_response(201, _resource(status="pending_review"))
    assert sent.status is MessageStatus.UNKNOWN and sent.raw_status == "pending_review"


def test_a_resource_already_failed_is_a_rejection() -> None:
    with pytest.raises(SendRejectedError) as info:
        parse_send_response(201, _resource(status="failed", error_code=30007))
    assert info.value.code == 30007 and not info.value.retryable


def test_twilio_error_json_names_code_and_message() -> None:
    body = json.dumps(
        {
            "code": 21211,
            "message": "The 'To' number +1555 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400,
        }
    ).encode()
    with pytest.raises(SendRejectedError) as info:
        parse_send_response(400, body)
    err = info.value
    assert (err.http_status, err.code, err.retryable) == (400, 21211, False)
    assert "21211" in str(err) and "not a valid phone number" in str(err)


def test_too_many_requests_is_retryable_with_retry_after() -> None:
    body = json.dumps({"code": 20429, "message": "Too Many Requests", "status": 429}).encode()
    with pytest.raises(SendRejectedError) as info:
        parse_send_response(429, body, {"Retry-After": "3"})
    assert info.value.retryable and info.value.retry_after == 3.0 and info.value.code == 20429


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retryable_even_without_json(status: int) -> None:
    with pytest.raises(SendRejectedError) as info:
        parse_send_response(status, b"<html>Bad Gateway</html>")
    assert info.value.retryable and info.value.code is None
    assert "Bad Gateway" in str(info.value)


def test_unauthorized_is_final() -> None:
    body = json.dumps({"code": 20003, "message": "Authenticate", "status": 401}).encode()
    with pytest.raises(SendRejectedError) as info:
        parse_send_response(401, body)
    assert not info.value.retryable and info.value.code == 20003


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"status": "queued"}', b"\xff"])
def test_unreadable_success_is_a_bad_response(body: bytes) -> None:
    with pytest.raises(BadResponseError):
        parse_send_response(201, body)


@given(st.integers(100, 599), st.binary(max_size=200))
def test_nothing_but_our_errors_escape_the_answer_parser(status: int, body: bytes) -> None:
    try:
        parse_send_response(status, body)
    except SmsHttpError:
        pass


# --- Twilio: webhooks ---------------------------------------------------------------


def test_status_callback() -> None:
    cb = parse_status_callback(STATUS_FORM)
    assert cb.message_sid == STATUS_FORM["MessageSid"]
    assert cb.status is MessageStatus.UNDELIVERED and cb.status.final
    assert cb.error_code == 30003
    assert (cb.to, cb.from_) == ("+447700900123", "+15005550006")


@pytest.mark.parametrize("status", ["queued", "sent", "delivered", "undelivered", "failed"])
def test_every_callback_status(status: str) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": status}
    cb = parse_status_callback(form)
    assert cb.status.value == status and cb.error_code is None
    assert cb.status.final == (status in {"delivered", "undelivered", "failed"})


def test_status_callback_with_the_older_names_only() -> None:
    cb = parse_status_callback({"SmsSid": "SM9", "SmsStatus": "sent"})
    assert (cb.message_sid, cb.status) == ("SM9", MessageStatus.SENT)


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": "SM1"}, "MessageStatus"),
        ({"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "x"}, "ErrorCode"),
    ],
)
def test_malformed_status_callback_names_the_field(form: dict[str, str], field: str) -> None:
    with pytest.raises(WebhookError) as info:
        parse_status_callback(form)
    assert info.value.field == field


def test_inbound_message() -> None:
    form = {
        "MessageSid": "SM3",
        "From": "+447700900123",
        "To": "+15005550006",
        "Body": " STOP ",
        "NumSegments": "1",
        "NumMedia": "0",
        "AccountSid": ACCOUNT.account_sid,
    }
    msg = parse_inbound_message(form)
    assert (msg.message_sid, msg.from_, msg.to, msg.body) == (
        "SM3",
        "+447700900123",
        "+15005550006",
        " STOP ",
    )
    assert msg.num_segments == 1 and msg.account_sid == ACCOUNT.account_sid


def test_inbound_message_empty_body_is_kept_and_missing_body_refused() -> None:
    base = {"MessageSid": "SM3", "From": "+1", "To": "+2"}
    assert parse_inbound_message({**base, "Body": ""}).body == ""
    with pytest.raises(WebhookError) as info:
        parse_inbound_message(base)
    assert info.value.field == "Body"


def test_form_parsing_keeps_blanks_order_and_unicode() -> None:
    body = urlencode([("Body", "Olá 😀 & = +"), ("Empty", ""), ("A", "1")]).encode()
    assert parse_form(body) == [("Body", "Olá 😀 & = +"), ("Empty", ""), ("A", "1")]
    with pytest.raises(WebhookError):
        parse_form(b"\xff\xfe")


# --- Twilio: X-Twilio-Signature, cross-checked with twilio's RequestValidator --------


def test_our_signature_is_twilios() -> None:
    ours = compute_signature(TOKEN, HOOK, STATUS_FORM)
    validator = RequestValidator(TOKEN)
    assert ours == validator.compute_signature(HOOK, STATUS_FORM)
    assert validator.validate(HOOK, STATUS_FORM, ours)


def test_twilios_signature_is_accepted_and_alterations_refused() -> None:
    signature = RequestValidator(TOKEN).compute_signature(HOOK, STATUS_FORM)
    verify_signature(TOKEN, HOOK, STATUS_FORM, signature)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(TOKEN, HOOK, {**STATUS_FORM, "MessageStatus": "delivered"}, signature)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(TOKEN, HOOK.replace("campaign=7", "campaign=8"), STATUS_FORM, signature)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("another-token", HOOK, STATUS_FORM, signature)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(TOKEN, HOOK, {**STATUS_FORM, "Extra": ""}, signature)


@pytest.mark.parametrize("signature", [None, "", "not base64 ü"])
def test_missing_or_garbled_signature_is_refused(signature: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_signature(TOKEN, HOOK, STATUS_FORM, signature)


def test_the_url_with_or_without_its_default_port_is_accepted() -> None:
    # Twilio's validator accepts both; the URL Twilio signed may carry :443 or not.
    with_port = "https://hooks.example:443/sms/status?campaign=7"
    validator = RequestValidator(TOKEN)
    verify_signature(TOKEN, HOOK, STATUS_FORM, validator.compute_signature(with_port, STATUS_FORM))
    verify_signature(TOKEN, with_port, STATUS_FORM, validator.compute_signature(HOOK, STATUS_FORM))
    other_port = "https://hooks.example:8443/sms/status?campaign=7"
    with pytest.raises(SignatureError):
        verify_signature(
            TOKEN, HOOK, STATUS_FORM, validator.compute_signature(other_port, STATUS_FORM)
        )


def test_read_signed_form_checks_the_raw_body() -> None:
    body = urlencode(STATUS_FORM).encode()
    signature = RequestValidator(TOKEN).compute_signature(HOOK, STATUS_FORM)
    assert read_signed_form(TOKEN, HOOK, body, signature) == STATUS_FORM
    tampered = body.replace(b"undelivered", b"delivered")
    with pytest.raises(SignatureError):
        read_signed_form(TOKEN, HOOK, tampered, signature)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(
    st.dictionaries(_TEXT.filter(bool), _TEXT, max_size=8),
    st.sampled_from([HOOK, "http://127.0.0.1:8080/in", "https://x.example/a?b=c&d=é"]),
)
def test_signatures_agree_with_twilio_on_any_form(params: dict[str, str], url: str) -> None:
    validator = RequestValidator(TOKEN)
    ours = compute_signature(TOKEN, url, params)
    assert ours == validator.compute_signature(url, params)
    assert validator.validate(url, params, ours)
    verify_signature(TOKEN, url, params, validator.compute_signature(url, params))


# --- Kannel: sendsms ----------------------------------------------------------------

KANNEL = KannelAccount("http://127.0.0.1:13013", "tester", "p&ss=word")


def _query(url: str) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for part in urlsplit(url).query.split("&"):
        name, _, value = part.partition("=")
        out.setdefault(name, []).append(unquote_to_bytes(value))
    return out


def test_sendsms_gsm_text() -> None:
    req = build_sendsms_request(KANNEL, to="+447700900123", text="Hi {Ana} €5", from_="Clinic")
    assert req.method == "GET" and req.body == b""
    assert req.url.startswith("http://127.0.0.1:13013/cgi-bin/sendsms?")
    q = _query(req.url)
    assert q["username"] == [b"tester"] and q["password"] == [b"p&ss=word"]
    assert q["to"] == [b"+447700900123"] and q["from"] == [b"Clinic"]
    assert q["coding"] == [b"0"] and q["charset"] == [b"UTF-8"]
    assert q["text"] == ["Hi {Ana} €5".encode()]
    assert "dlr-url" not in q and "dlr-mask" not in q


def test_sendsms_ucs2_text_is_utf16be() -> None:
    text = "Olá — 😀"
    q = _query(build_sendsms_request(KANNEL, to="+1", text=text).url)
    assert q["coding"] == [b"2"] and q["charset"] == [b"UTF-16BE"]
    assert q["text"] == [text.encode("utf-16-be")]


def test_sendsms_with_delivery_reports() -> None:
    dlr = build_dlr_url("https://hooks.example/kannel/dlr?key=k1", "msg 42/a")
    assert dlr == (
        "https://hooks.example/kannel/dlr?key=k1&ref=msg%2042%2Fa"
        "&type=%d&answer=%A&ts=%T&to=%p&from=%P&smsc=%i&smsc_id=%F"
    )
    req = build_sendsms_request(
        KANNEL, to="+1", text="x", dlr_url=dlr, dlr_mask=DlrType.DELIVERED | DlrType.UNDELIVERED
    )
    q = parse_qs(urlsplit(req.url).query)
    assert q["dlr-mask"] == ["3"]
    assert q["dlr-url"] == [dlr]  # the escapes reach Kannel literally
    assert int(ALL_REPORTS) == 31


def test_sendsms_routes_to_an_smsc() -> None:
    account = KannelAccount("http://k:13013/", "u", "p", smsc="fake")
    req = build_sendsms_request(account, to="+1", text="x")
    assert req.url.startswith("http://k:13013/cgi-bin/sendsms?")
    assert parse_qs(urlsplit(req.url).query)["smsc"] == ["fake"]


@pytest.mark.parametrize(
    ("body", "code", "queued"),
    [
        (b"0: Accepted for delivery", 0, False),
        (b"3: Queued for later delivery\n", 3, True),
        (b"Sent.", 0, False),
    ],
)
def test_sendsms_success_replies(body: bytes, code: int, queued: bool) -> None:
    reply = parse_sendsms_reply(202, body)
    assert (reply.code, reply.queued) == (code, queued)


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (403, b"Authorization failed for sendsms", False),
        (400, b"Missing receiver number", False),
        (403, b"Number(s) has/have been denied by white- and/or black-lists.", False),
        (503, b"Sending failed.", True),
        (500, b"", True),
        (202, b"4: Something unexpected", False),
    ],
)
def test_sendsms_error_replies(status: int, body: bytes, retryable: bool) -> None:
    with pytest.raises(SendRejectedError) as info:
        parse_sendsms_reply(status, body)
    assert info.value.retryable == retryable and info.value.http_status == status
    assert (body.decode()[:20] or "(empty)") in str(info.value)


# --- Kannel: delivery reports -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "final"),
    [
        (1, DlrType.DELIVERED, True),
        (2, DlrType.UNDELIVERED, True),
        (4, DlrType.QUEUED_ON_SMSC, False),
        (8, DlrType.DELIVERED_TO_SMSC, False),
        (16, DlrType.NOT_DELIVERED_TO_SMSC, True),
    ],
)
def test_delivery_report_types(value: int, kind: DlrType, final: bool) -> None:
    report = parse_delivery_report(
        {
            "ref": "msg-42",
            "type": str(value),
            "answer": "id:abc sub:001 dlvrd:001 stat:DELIVRD err:000",
            "ts": "1764760000",
            "from": "Clinic",
            "to": "+447700900123",
            "smsc": "fake",
            "smsc_id": "abc",
        }
    )
    assert report.type is kind and report.type.final == final
    assert (report.reference, report.timestamp, report.smsc_message_id) == (
        "msg-42",
        1764760000,
        "abc",
    )
    assert report.answer.startswith("id:abc")


def test_delivery_report_from_kannels_query_string() -> None:
    # What smsbox fetches for build_dlr_url's URL after substituting the escapes.
    query = "key=k1&ref=msg%2042%2Fa&type=8&answer=ACK%2F&ts=1764760000&from=Clinic&to=%2B1&smsc=fake&smsc_id=7"
    report = parse_delivery_report(dict(parse_qsl(query, keep_blank_values=True)))
    assert report.reference == "msg 42/a" and report.type is DlrType.DELIVERED_TO_SMSC
    assert (report.answer, report.to) == ("ACK/", "+1")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"type": "1"}, "ref"),
        ({"ref": "r"}, "type"),
        ({"ref": "r", "type": "%d"}, "type"),
        ({"ref": "r", "type": "0"}, "type"),
        ({"ref": "r", "type": "64"}, "type"),
    ],
)
def test_malformed_delivery_report_names_the_field(query: dict[str, str], field: str) -> None:
    with pytest.raises(WebhookError) as info:
        parse_delivery_report(query)
    assert info.value.field == field


def test_unsubstituted_timestamp_does_not_lose_the_report() -> None:
    assert parse_delivery_report({"ref": "r", "type": "1", "ts": "%T"}).timestamp is None


@pytest.mark.parametrize("reference", ["", "réf", "a\nb"])
def test_dlr_reference_must_survive_kannels_escapes(reference: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        build_dlr_url("http://h/dlr", reference)
