"""Email composition: templates filled from contact data, and the RFC 5322
message they become (the standard library's `email` package).

Templates are Jinja2 in its sandbox with the usual `{{ column }}` delimiters
(an SMS template's single braces would collide with CSS in an HTML part),
strict undefined (a missing or empty column is a per-contact error naming
it), and autoescaping in the HTML part only: a contact whose name is
`<script>` gets `&lt;script&gt;` in the HTML and the name as written in the
text part and the subject. A subject is one line: newlines in it are refused,
so no contact data can add a header.
"""

from __future__ import annotations

import functools
import random
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from engine.email.config import EmailTemplate
from engine.sms.template import TemplateError, render_strict

_PLAIN = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                              keep_trailing_newline=True)  # fmt: skip
_HTML = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=True,
                             keep_trailing_newline=True)  # fmt: skip
# Lines up to RFC 5322's hard limit of 998: the package folds a long
# List-Unsubscribe right after its colon, which some clients read with the
# leading space as part of the first URL.
_POLICY = SMTP.clone(max_line_length=998)


@dataclass(frozen=True, slots=True)
class _Part:
    source: str
    compiled: jinja2.Template

    def render(self, data: Mapping[str, str]) -> str:
        return render_strict(self.compiled, data)


def _compile(env: SandboxedEnvironment, source: str, what: str) -> tuple[_Part, set[str]]:
    try:
        tree = env.parse(source)
        return _Part(source, env.from_string(source)), set(meta.find_undeclared_variables(tree))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{what} line {exc.lineno}: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class CompiledEmail:
    subject: _Part
    text: _Part | None
    html: _Part | None
    columns: frozenset[str]

    def render(self, data: Mapping[str, str]) -> tuple[str, str | None, str | None]:
        """(subject, text, html) for one contact; MissingColumn names a column."""
        subject = self.subject.render(data).strip()
        if "\n" in subject or "\r" in subject:
            raise TemplateError("subject: filled in, it spans several lines")
        if not subject:
            raise TemplateError("subject: empty once filled in")
        text = self.text.render(data) if self.text is not None else None
        html = self.html.render(data) if self.html is not None else None
        return subject, text, html


@functools.lru_cache(maxsize=256)
def compile_email_template(template: EmailTemplate) -> CompiledEmail:
    """Compiled once per distinct template (a notification's named or ad-hoc
    one is compiled on its first use, not on every send)."""
    subject, columns = _compile(_PLAIN, template.subject, "subject")
    text = html = None
    if template.text is not None:
        text, more = _compile(_PLAIN, template.text, "text")
        columns |= more
    if template.html is not None:
        html, more = _compile(_HTML, template.html, "html")
        columns |= more
    return CompiledEmail(subject, text, html, frozenset(columns))


def build_message(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str | None,
    html: str | None,
    message_id: str,
    date: datetime,
    reply_to: str | None = None,
    unsubscribe: tuple[str, str | None] | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """The message as bytes with CRLF line ends, ready to sign and send.
    `unsubscribe`: (https URL, mailto address or None) for RFC 2369's
    List-Unsubscribe and RFC 8058's List-Unsubscribe-Post (one-click).

    The common message (ASCII header values in their plain form, no extra
    headers, parts whose lines fit 998 bytes) is written directly, byte for
    byte what the `email` package makes of it but ~90 times faster (the
    package parses and refolds every header it writes: ~1.3-1.5 ms a message,
    which alone would hold a campaign under 1,000 messages/s); anything else
    goes through the package."""
    fields = _header_fields(sender, to, subject, message_id, date, reply_to, unsubscribe)
    if not headers:
        direct = _direct(fields, (sender, to, reply_to), message_id, text, html)
        if direct is not None:
            return direct
    return _with_package([*fields, *(headers or {}).items()], text, html)


def _header_fields(
    sender: str,
    to: str,
    subject: str,
    message_id: str,
    date: datetime,
    reply_to: str | None,
    unsubscribe: tuple[str, str | None] | None,
) -> list[tuple[str, str]]:
    """The header fields, in order, both writers put above the MIME ones."""
    fields = [("From", sender), ("To", to), ("Subject", subject),
              ("Date", format_datetime(date)), ("Message-ID", message_id)]  # fmt: skip
    if reply_to:
        fields.append(("Reply-To", reply_to))
    if unsubscribe is not None:
        url, mailto = unsubscribe
        targets = [f"<{url}>"] + ([f"<mailto:{mailto}>"] if mailto else [])
        fields.append(("List-Unsubscribe", ", ".join(targets)))
        fields.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return fields


def _with_package(fields: list[tuple[str, str]], text: str | None, html: str | None) -> bytes:
    msg = EmailMessage(policy=_POLICY)
    for name, value in fields:
        msg[name] = value
    if text is not None and html is not None:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(text or "")
    return msg.as_bytes()


# ------------------------------------------------------------- direct writer
#
# What the package writes for the inputs `_direct` accepts (checked byte for
# byte against it in tests/unit/test_email_compose.py, the MIME boundary
# aside): the headers in the order set, each value as given; a part's
# Content-Type/Content-Transfer-Encoding (7bit when its lines are ASCII, 8bit
# otherwise: the SMTP policy allows 8-bit bodies), the body's lines each
# ended by CRLF; the html part of an alternative repeats MIME-Version.

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_MAILBOX = re.compile(rf"(?:{_ADDR_SPEC}|{_ATEXT}(?: {_ATEXT})* <{_ADDR_SPEC}>)")
_MSG_ID = re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>")
# Printable ASCII words separated by single spaces; "=?" could read as an
# RFC 2047 encoded word, so the package's handling is kept for it.
_PLAIN_VALUE = re.compile(r"[!-~]+(?: [!-~]+)*")
_MAX_LINE = 998
# A boundary need only be absent from the parts (checked), not unguessable:
# the package draws it from `random` too.
_BOUNDARY_RANDOM = random.Random()


def _plain(value: str) -> bool:
    return _PLAIN_VALUE.fullmatch(value) is not None and "=?" not in value


def _body(text: str) -> tuple[str, bytes] | None:
    """(Content-Transfer-Encoding, body) as the package writes a text part."""
    lines = text.encode("utf-8", "surrogateescape").splitlines()
    if lines and max(map(len, lines)) > _MAX_LINE:
        return None  # the package picks quoted-printable or base64
    body = b"\r\n".join(lines) + b"\r\n"
    return ("7bit" if body.isascii() else "8bit"), body


def _part_head(subtype: str, cte: str) -> bytes:
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {cte}\r\n").encode()  # fmt: skip


def _direct(
    fields: list[tuple[str, str]],
    mailboxes: tuple[str, str, str | None],
    message_id: str,
    text: str | None,
    html: str | None,
) -> bytes | None:
    for name, value in fields:
        if len(name) + 2 + len(value) > _MAX_LINE or not _plain(value):
            return None
    for mailbox in mailboxes:
        if mailbox and _MAILBOX.fullmatch(mailbox) is None:
            return None
    if _MSG_ID.fullmatch(message_id) is None:
        return None
    head = "".join(f"{name}: {value}\r\n" for name, value in fields).encode("ascii")
    if text is not None and html is not None:
        plain, rich = _body(text), _body(html)
        if plain is None or rich is None:
            return None
        while True:
            boundary = "=" * 15 + f"{_BOUNDARY_RANDOM.randrange(sys.maxsize):019d}" + "=="
            mark = b"--" + boundary.encode()
            if mark not in plain[1] and mark not in rich[1]:
                break
        return b"".join((
            head, b"MIME-Version: 1.0\r\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode(),
            mark, b"\r\n", _part_head("plain", plain[0]), b"\r\n", plain[1], b"\r\n",
            mark, b"\r\n", _part_head("html", rich[0]), b"MIME-Version: 1.0\r\n\r\n",
            rich[1], b"\r\n", mark, b"--\r\n",
        ))  # fmt: skip
    subtype, content = ("html", html) if text is None and html is not None else ("plain", text)
    single = _body(content or "")
    if single is None:
        return None
    return b"".join((head, _part_head(subtype, single[0]), b"MIME-Version: 1.0\r\n\r\n", single[1]))
