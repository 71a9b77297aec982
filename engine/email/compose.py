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


def compile_email_template(template: EmailTemplate) -> CompiledEmail:
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
    List-Unsubscribe and RFC 8058's List-Unsubscribe-Post (one-click)."""
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if reply_to:
        msg["Reply-To"] = reply_to
    if unsubscribe is not None:
        url, mailto = unsubscribe
        targets = [f"<{url}>"] + ([f"<mailto:{mailto}>"] if mailto else [])
        msg["List-Unsubscribe"] = ", ".join(targets)
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in (headers or {}).items():
        msg[name] = value
    if text is not None and html is not None:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(text or "")
    return msg.as_bytes()
