"""The direct message writer makes, byte for byte, what the `email` package
makes of the same input (the MIME boundary aside), and hands every input it
cannot write that way to the package."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.email import compose

DATE = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
_BOUNDARY = re.compile(rb"={15}\d{19}==")


def both(**kw: object) -> tuple[bytes | None, bytes]:
    args = {"sender": "a@b.test", "to": "c@d.test", "subject": "Hi", "text": "t", "html": None,
            "message_id": "<1.x@m.test>", "date": DATE, "reply_to": None,
            "unsubscribe": None, **kw}  # fmt: skip
    text, html = args.pop("text"), args.pop("html")
    fields = compose._header_fields(**args)  # type: ignore[arg-type]
    mailboxes = (args["sender"], args["to"], args["reply_to"])
    direct = compose._direct(fields, mailboxes, args["message_id"], text, html)  # type: ignore[arg-type]
    if direct is None:  # the package writes it (and may refuse what the config would)
        return None, b""
    package = compose._with_package(fields, text, html)  # type: ignore[arg-type]
    return direct, package


def same(direct: bytes, package: bytes) -> bool:
    return _BOUNDARY.sub(b"B", direct) == _BOUNDARY.sub(b"B", package)


def test_a_campaign_message_is_written_directly_and_identically() -> None:
    direct, package = both(
        sender="Example Clinic <reminders@example.com>", to="pat@example.org",
        subject="Your appointment on Monday, Pat", text="Hello Pat,\n\nsee you.\n",
        html="<p>Hello Pat,</p>\n<p>see you.</p>\n", reply_to="reply+abc@mail.example.com",
        unsubscribe=("https://mail.example.com/u/tok", "unsubscribe+tok@mail.example.com"),
    )  # fmt: skip
    assert direct is not None and same(direct, package)
    parsed = email.message_from_bytes(direct, policy=policy.default)
    assert [p.get_content() for p in parsed.iter_parts()] == [
        "Hello Pat,\r\n\r\nsee you.\r\n", "<p>Hello Pat,</p>\r\n<p>see you.</p>\r\n"]  # fmt: skip


def test_single_parts_8bit_bodies_and_every_line_ending() -> None:
    for kw in (
        {"text": "Grüße aus Köln\r\nzweite\rdritte\n"},  # 8bit, CR, CRLF, LF
        {"text": None, "html": "<p>日本語</p>"},
        {"text": "", "html": None},
        {"text": None, "html": None},
        {"text": "x\n\n\n", "html": "y\r\n\r\n"},
    ):
        direct, package = both(**kw)
        assert direct is not None, kw
        assert same(direct, package), kw


def test_what_the_package_must_write_goes_to_it() -> None:
    for kw in (
        {"subject": "Grüße"},  # RFC 2047
        {"subject": "two  spaces"},
        {"subject": "=?utf-8?q?x?="},
        {"sender": "Dr. Who <who@b.test>"},  # a dot in a display name is quoted
        {"to": '"quoted" <x@y.test>'},
        {"text": "x" * 999},  # longer than a line may be: quoted-printable or base64
        {"message_id": "no-brackets@m.test"},
    ):
        direct, _ = both(**kw)
        assert direct is None, kw
    msg = compose.build_message(sender="a@b.test", to="c@d.test", subject="Grüße", text="x",
                                html=None, message_id="<1@m.test>", date=DATE)  # fmt: skip
    assert b"Subject: =?utf-8?" in msg


def test_a_body_holding_the_boundary_gets_another() -> None:
    original = compose._BOUNDARY_RANDOM
    values = iter([42, 42, 7])

    class Fixed:
        def randrange(self, n: int) -> int:
            return next(values)

    compose._BOUNDARY_RANDOM = Fixed()  # type: ignore[assignment]
    try:
        taken = "--" + "=" * 15 + f"{42:019d}" + "=="
        direct, _ = both(text=taken, html="<p>x</p>")
    finally:
        compose._BOUNDARY_RANDOM = original
    assert direct is not None
    assert f'boundary="{"=" * 15}{7:019d}=="'.encode() in direct
    parsed = email.message_from_bytes(direct, policy=policy.default)
    assert next(p.get_content() for p in parsed.iter_parts()) == taken + "\r\n"


_TEXT = st.text(st.sampled_from("ab Z09.,;:<>@\"'()[]\\=?-_~!#\t\r\néü日😀"), max_size=40)
# Mostly-plain words, so that many examples are ones the direct writer takes.
_WORDS = st.lists(st.text(st.sampled_from("abXZ09.,;:'!#?=-_~()<>@"), min_size=1, max_size=8),
                  min_size=1, max_size=5).map(" ".join)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    subject=st.one_of(_WORDS, _TEXT).filter(lambda s: s.strip() != ""),
    name=st.one_of(st.just(""), _WORDS, _TEXT),
    text=st.one_of(st.none(), _TEXT),
    html=st.one_of(st.none(), _TEXT),
    offset=st.integers(-12 * 60, 14 * 60),
)
@example(subject="a b", name="Pat O'Brien", text="x", html="y", offset=0)
def test_direct_and_package_agree_whenever_direct_writes(
    subject: str, name: str, text: str | None, html: str | None, offset: int
) -> None:
    sender = f"{name} <a@b.test>" if name else "a@b.test"
    date = datetime(2026, 12, 4, 12, 0, tzinfo=timezone(timedelta(minutes=offset)))
    direct, package = both(subject=subject, sender=sender, text=text, html=html, date=date)
    if direct is not None:
        assert same(direct, package)
