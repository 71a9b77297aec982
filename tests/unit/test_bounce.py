"""The inbound classifier: DSNs, non-DSN bounces, complaints, auto-replies, replies."""

from __future__ import annotations

import base64
import quopri

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carriers.email.bounce import (
    AutoReply,
    Bounce,
    BounceSource,
    Complaint,
    DsnAction,
    Reply,
    Unknown,
    classify,
    strip_quoted,
)
from carriers.email.mime import header_text, parse_message
from tests.unit.mail_samples import (
    ARF_COMPLAINT,
    BAD_CHARSET_REPLY,
    EXCHANGE_AUTO_REPLY,
    EXIM_BOUNCE,
    GARBAGE,
    HTML_ONLY_REPLY,
    HUMAN_REPLY,
    POSTFIX_DSN_5_1_1,
    POSTFIX_DSN_DELAYED_4_2_2,
    mail,
)

DOMAIN = "outdial.example"


def test_postfix_dsn_5_1_1_is_a_hard_bounce() -> None:
    result = classify(
        POSTFIX_DSN_5_1_1,
        envelope_from="<>",
        envelope_to="bounce+c0ffee42@outdial.example",
        verp_domain=DOMAIN,
    )
    assert isinstance(result, Bounce)
    assert result.source is BounceSource.DSN
    assert result.verp_token == "c0ffee42"
    assert result.reporting_mta == "mail.example.net"
    assert result.original_message_id == "<campaign-7.contact-42@outdial.example>"
    assert result.hard
    [rcpt] = result.recipients
    # Original-Recipient is the address we gave in RCPT TO: the one to mark.
    assert rcpt.address == "Nobody@Example.org"
    assert rcpt.final_recipient == "nobody@example.org"
    assert rcpt.action is DsnAction.FAILED and rcpt.action == "failed"
    assert rcpt.status == "5.1.1"
    assert rcpt.remote_mta == "mx.example.org"
    assert rcpt.diagnostic == (
        "550 5.1.1 <nobody@example.org>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert rcpt.hard


def test_dsn_with_lf_line_endings_reads_the_same() -> None:
    lf = POSTFIX_DSN_5_1_1.replace(b"\r\n", b"\n")
    assert classify(lf) == classify(POSTFIX_DSN_5_1_1)


def test_delayed_4_2_2_is_soft_with_the_original_from_message_rfc822() -> None:
    result = classify(POSTFIX_DSN_DELAYED_4_2_2, envelope_to="bounce+d31a7ed@outdial.example")
    assert isinstance(result, Bounce)
    assert result.verp_token == "d31a7ed"  # any domain when verp_domain is not given
    assert result.original_message_id == "<campaign-7.contact-43@outdial.example>"
    assert not result.hard
    [rcpt] = result.recipients
    assert (rcpt.address, rcpt.action, rcpt.status) == ("full@example.org", "delayed", "4.2.2")
    assert rcpt.diagnostic == "452 4.2.2 <full@example.org>: Mailbox full"


def _dsn_fields(recipient_blocks: str) -> bytes:
    return mail(
        "From: MAILER-DAEMON@mx.example\n"
        "To: bounce+t@outdial.example\n"
        "Subject: report\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n'
        "\n--B\nContent-Type: text/plain\n\nSee below.\n"
        "\n--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example\n\n" + recipient_blocks + "\n--B--\n"
    )


def test_dsn_several_recipients_each_with_its_own_verdict() -> None:
    result = classify(
        _dsn_fields(
            "Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.2.1\n\n"
            "Final-Recipient: rfc822; b@example.com\nAction: failed\n"
            "Status: 4.4.7 (delivery time expired)\n\n"
            "Final-Recipient: RFC822; <c@example.com>\nAction: delivered (to mailbox)\n"
            "Status: 2.0.0\n\n"
            "Final-Recipient: rfc822; d@example.com\nAction: error\n"
            "Diagnostic-Code: smtp; 550 no such user\n\n"
            "Final-Recipient: rfc822; e@example.com\nAction: relayed\nStatus: 2.0.0\n\n"
            "Action: failed\nStatus: 5.1.1\n"  # no recipient: skipped
        )
    )
    assert isinstance(result, Bounce)
    verdicts = [(r.address, r.action, r.status, r.hard) for r in result.recipients]
    assert verdicts == [
        ("a@example.com", DsnAction.FAILED, "5.2.1", True),
        ("b@example.com", DsnAction.FAILED, "4.4.7", False),  # gave up: not the address
        ("c@example.com", DsnAction.DELIVERED, "2.0.0", False),
        ("d@example.com", DsnAction.FAILED, None, True),  # opensmtpd's "error", 550
        ("e@example.com", DsnAction.RELAYED, "2.0.0", False),
    ]
    assert result.original_message_id is None  # no returned message part


def test_dsn_without_action_takes_it_from_the_status_class() -> None:
    result = classify(_dsn_fields("Final-Recipient: rfc822; a@example.com\nStatus: 5.1.1\n"))
    assert isinstance(result, Bounce)
    assert result.recipients[0].action is DsnAction.FAILED and result.hard


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_dsn_with_an_encoded_delivery_status_part(encoding: str) -> None:
    fields = (
        b"Reporting-MTA: dns; mx.example\n\n"
        b"Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.1.1 (bo\xeete inconnue)\n"
    )
    body = (
        base64.encodebytes(fields) if encoding == "base64" else quopri.encodestring(fields)
    ).replace(b"\n", b"\r\n")
    message = (
        mail(
            "From: MAILER-DAEMON@mx.example\nSubject: report\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n'
            "\n--B\nContent-Type: text/plain\n\nSee below.\n"
            f"\n--B\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: {encoding}\n\n"
        )
        + body
        + b"\r\n--B--\r\n"
    )
    result = classify(message)
    assert isinstance(result, Bounce) and result.source is BounceSource.DSN
    assert [(r.address, r.status, r.hard) for r in result.recipients] == [
        ("a@example.com", "5.1.1", True)
    ]
    assert result.reporting_mta == "mx.example"


def test_exim_bounce_only_flufl_recognises() -> None:
    result = classify(EXIM_BOUNCE, envelope_from="", envelope_to="bounce+b00b5@outdial.example")
    assert isinstance(result, Bounce)
    assert result.source is BounceSource.FLUFL
    assert result.verp_token == "b00b5"
    assert result.hard
    [rcpt] = result.recipients
    assert rcpt.address == "gone@example.com"
    assert rcpt.action is DsnAction.FAILED
    assert rcpt.status == "5.1.1"
    assert rcpt.diagnostic is not None and rcpt.diagnostic.startswith("550 5.1.1")
    # The original is quoted inline, after the bounce's own header.
    assert result.original_message_id == "<campaign-7.contact-99@outdial.example>"


def test_exim_bounce_recognised_without_the_envelope() -> None:
    result = classify(EXIM_BOUNCE)
    assert isinstance(result, Bounce) and result.verp_token is None


def test_arf_abuse_complaint() -> None:
    result = classify(ARF_COMPLAINT, envelope_to="bounce+fb1ab5e@outdial.example")
    assert result == Complaint(
        feedback_type="abuse",
        recipient="annoyed@isp.example",
        original_message_id="<campaign-7.contact-7@outdial.example>",
        user_agent="IspFeedbackLoop/2.1",
        verp_token="fb1ab5e",
    )


def test_arf_without_original_rcpt_to_takes_the_embedded_to() -> None:
    redacted = ARF_COMPLAINT.replace(b"Original-Rcpt-To: <annoyed@isp.example>\r\n", b"")
    result = classify(redacted)
    assert isinstance(result, Complaint) and result.recipient == "annoyed@isp.example"


def test_arf_not_spam_is_not_a_complaint() -> None:
    result = classify(ARF_COMPLAINT.replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam"))
    assert isinstance(result, Unknown) and "not-spam" in result.reason


def test_exchange_auto_reply() -> None:
    result = classify(EXCHANGE_AUTO_REPLY)
    assert isinstance(result, AutoReply)
    assert result.reason == "Auto-Submitted: auto-replied"
    assert result.from_address == "pat.jones@example.com"
    assert result.in_reply_to == "<campaign-7.contact-5@outdial.example>"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("X-Autoreply: yes", "X-Autoreply: yes"),
        ("X-Autorespond: Out of office", "X-Autorespond: Out of office"),
        ("Precedence: auto_reply", "Precedence: auto_reply"),
        ("Auto-Submitted: auto-generated; owner-email=x@y", "Auto-Submitted: auto-generated"),
    ],
)
def test_vacation_headers_are_auto_replies(header: str, reason: str) -> None:
    message = mail(
        f"From: a@example.com\nTo: notify@outdial.example\nSubject: Away\n{header}\n\nAway.\n"
    )
    result = classify(message)
    assert isinstance(result, AutoReply) and result.reason.startswith(reason)


def test_auto_reply_with_the_null_reverse_path_is_still_an_auto_reply() -> None:
    # RFC 3834 section 3.3: responders send from <>, as bounces do.
    assert isinstance(classify(EXCHANGE_AUTO_REPLY, envelope_from="<>"), AutoReply)


def test_bounce_header_naming_no_recipient_is_unknown() -> None:
    message = mail(
        "From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail Returned to Sender\n"
        "Auto-Submitted: auto-replied\n\nSomething went wrong.\n"
    )
    result = classify(message)
    assert isinstance(result, Unknown) and "names no recipient" in result.reason


def test_auto_submitted_no_is_a_human() -> None:
    message = mail("From: a@example.com\nSubject: Re: x\nAuto-Submitted: no\n\nSure.\n")
    assert isinstance(classify(message), Reply)


def test_human_reply_threads_and_strips_the_quote() -> None:
    result = classify(HUMAN_REPLY, envelope_to="reply+r3ply7@outdial.example", verp_local="reply")
    assert isinstance(result, Reply)
    assert result.message_id == "<4f1c9a2e-77b1-4d0e-9d43-2b1c1e0f9a11@example.com>"
    assert result.in_reply_to == "<campaign-7.contact-8@outdial.example>"
    assert result.references == (
        "<campaign-6.contact-8@outdial.example>",
        "<campaign-7.contact-8@outdial.example>",
    )
    assert result.thread_ids == (
        "<campaign-7.contact-8@outdial.example>",
        "<campaign-6.contact-8@outdial.example>",
    )
    assert result.from_address == "sam@example.com"
    assert result.subject == "Re: Your appointment on Friday"
    assert result.verp_token == "r3ply7"
    # The text/plain part, quoted-printable UTF-8 decoded, not the HTML one.
    assert "Merci, été is busy." in result.text
    assert "> Hello, this is a reminder" in result.text
    assert result.new_text == (
        "Yes, Friday at 10 is fine. Could I bring my daughter? Merci, été is busy.\n\nSam"
    )


def test_html_only_reply_is_stripped_crudely() -> None:
    result = classify(HTML_ONLY_REPLY)
    assert isinstance(result, Reply)
    assert result.text == "Please move it to Monday & call me.\n\nKim"


def test_bad_charset_still_reads() -> None:
    result = classify(BAD_CHARSET_REPLY)
    assert isinstance(result, Reply)
    assert result.from_address == "emile@example.fr"
    assert result.subject == "Re: café time"  # unknown charset: Windows-1252 guess
    assert result.text.startswith("Oui, café at 10 works.")
    assert header_text(parse_message(BAD_CHARSET_REPLY), "From") == (
        "Émile Dupont <emile@example.fr>"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (GARBAGE, "no header fields"),
        (b"", "empty message"),
        (b"\r\n\r\n", "empty message"),
        (b"Subject: hello\r\n\r\nno sender\r\n", "no From address"),
    ],
)
def test_unparseable_is_unknown_with_a_reason(data: bytes, reason: str) -> None:
    result = classify(data, envelope_to="bounce+g@outdial.example")
    assert isinstance(result, Unknown)
    assert reason in result.reason
    assert result.verp_token == "g"


def test_null_sender_naming_nobody_is_unknown_not_a_reply() -> None:
    message = mail("From: someone@mx.example\nSubject: hi\n\nSomething happened.\n")
    result = classify(message, envelope_from="<>")
    assert isinstance(result, Unknown) and "null reverse-path" in result.reason


def test_human_reply_quoting_an_error_is_not_run_through_flufl() -> None:
    message = mail(
        "From: sam@example.com\nSubject: Re: hello\nIn-Reply-To: <x@outdial.example>\n\n"
        "My colleague got this:\n  gone@example.com\n  550 5.1.1 User unknown\n"
    )
    assert isinstance(classify(message, envelope_from="sam@example.com"), Reply)


def test_reply_to_a_notification_with_a_bounce_like_subject_is_a_reply() -> None:
    message = mail(
        "From: sam@example.com\nSubject: Re: Your parcel could not be delivered\n"
        "In-Reply-To: <x@outdial.example>\n\nCan you try again tomorrow?\n\n"
        "On Thu, Riverside Parcels wrote:\n> Your parcel could not be delivered.\n"
    )
    result = classify(message, envelope_from="sam@example.com")
    assert isinstance(result, Reply) and result.new_text == "Can you try again tomorrow?"


def test_bounce_subject_alone_lets_flufl_look() -> None:
    # A relay that rewrote From and dropped X-Failed-Recipients: the Subject remains.
    rewritten = EXIM_BOUNCE.replace(b"X-Failed-Recipients", b"X-Was-Failed").replace(
        b"Mailer-Daemon@mx1.example.com", b"relay@lists.example"
    )
    result = classify(rewritten, envelope_from="relay@lists.example")
    assert isinstance(result, Bounce) and result.source is BounceSource.FLUFL
    assert [(r.address, r.hard) for r in result.recipients] == [("gone@example.com", True)]


@pytest.mark.parametrize("cut", [200, 900, 1500, 2100, 2600])
def test_truncated_dsn_does_not_raise(cut: int) -> None:
    result = classify(POSTFIX_DSN_5_1_1[:cut])
    assert isinstance(result, Bounce | Unknown)


def test_strip_quoted_outlook_separator() -> None:
    text = "Fine by me.\n\n-----Original Message-----\nFrom: Clinic\nSent: Thursday\n"
    assert strip_quoted(text) == "Fine by me."


def test_strip_quoted_wrapped_attribution() -> None:
    text = "OK\n\nOn Thu, 3 Dec 2026 at 15:02, Riverside Clinic <notify@outdial.example>\nwrote:\n> hi\n"
    assert strip_quoted(text) == "OK"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_nothing_raises_on_any_bytes(data: bytes) -> None:
    classify(data, envelope_from="<>")


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(POSTFIX_DSN_5_1_1)), st.binary(min_size=1, max_size=40))
def test_nothing_raises_on_a_mangled_dsn(at: int, junk: bytes) -> None:
    classify(POSTFIX_DSN_5_1_1[:at] + junk + POSTFIX_DSN_5_1_1[at:])
