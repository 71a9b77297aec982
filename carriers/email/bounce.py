"""What an inbound message is: a bounce, a complaint, an auto-reply or a reply (pure).

``classify(data)`` looks, in this order, for:

1. an RFC 5965 feedback report (``message/feedback-report``) of type abuse: a
   ``Complaint``; other feedback types are ``Unknown``;
2. an RFC 3464 DSN (``message/delivery-status``): a ``Bounce`` from its fields;
3. for a message that looks like a bounce (null reverse-path, from MAILER-DAEMON
   or postmaster, X-Failed-Recipients, a bounce-like Subject) but carries no DSN,
   ``flufl.bounce``'s detectors: a ``Bounce``, hard where flufl says permanent;
   one whose header says bounce but that names no recipient is ``Unknown``;
4. RFC 3834 ``Auto-Submitted`` other than ``no``, or the vacation headers
   responders use instead: an ``AutoReply``;
5. anything else with a From address: a human ``Reply``.

Nothing raises: a message nothing can be made of is ``Unknown`` with a reason.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from email.message import Message
from typing import TypeAlias

from flufl.bounce import all_failures

from carriers.email.dsn import (
    BouncedRecipient,
    DsnAction,
    delivery_status_blocks,
    enhanced_status,
    parse_recipient_block,
    typed_value,
)
from carriers.email.mime import (
    embedded_headers,
    first_address,
    header_text,
    html_to_text,
    leaf_parts,
    msg_ids,
    parse_message,
    part_text,
)
from carriers.email.verp import verp_token

__all__ = [
    "AutoReply",
    "Bounce",
    "BounceSource",
    "BouncedRecipient",
    "Complaint",
    "DsnAction",
    "InboundKind",
    "Reply",
    "Unknown",
    "classify",
    "strip_quoted",
]

log = logging.getLogger("outdial.email")


class BounceSource(enum.Enum):
    DSN = "dsn"  # RFC 3464 fields
    FLUFL = "flufl"  # flufl.bounce's heuristics on a non-DSN bounce


@dataclass(frozen=True, slots=True)
class Bounce:
    """A delivery report: one entry per recipient it names.

    ``original_message_id`` comes from the returned message (``message/rfc822``)
    or its header (``text/rfc822-headers``); ``verp_token`` from the envelope
    recipient when the caller passed it.
    """

    recipients: tuple[BouncedRecipient, ...]
    original_message_id: str | None
    verp_token: str | None
    source: BounceSource
    reporting_mta: str | None = None

    @property
    def hard(self) -> bool:
        """True if any recipient is undeliverable."""
        return any(r.hard for r in self.recipients)


@dataclass(frozen=True, slots=True)
class Complaint:
    """An RFC 5965 abuse report: the recipient marked our message as spam."""

    feedback_type: str
    recipient: str | None
    original_message_id: str | None
    user_agent: str | None
    verp_token: str | None


@dataclass(frozen=True, slots=True)
class AutoReply:
    """An automatic response (vacation, out of office): not a human reply.

    ``reason`` names the header that gave it away, as ``Name: value``.
    """

    reason: str
    from_address: str | None
    subject: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    verp_token: str | None


@dataclass(frozen=True, slots=True)
class Reply:
    """A human reply.

    Message-ids keep their angle brackets (``<id@host>``), as ``make_msgid``
    returns them. ``text`` is the first text/plain part (or the first HTML part,
    crudely stripped); ``new_text`` is that without the quoted original.
    """

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    from_address: str
    subject: str | None
    text: str
    new_text: str
    verp_token: str | None

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Candidate originals, most likely first: In-Reply-To, then References
        newest first (RFC 5322 section 3.6.4)."""
        ordered = [self.in_reply_to] if self.in_reply_to else []
        ordered += reversed(self.references)
        return tuple(dict.fromkeys(ordered))


@dataclass(frozen=True, slots=True)
class Unknown:
    reason: str
    verp_token: str | None = None


InboundKind: TypeAlias = Bounce | Complaint | AutoReply | Reply | Unknown


def classify(
    data: bytes,
    *,
    envelope_from: str | None = None,
    envelope_to: str | None = None,
    verp_domain: str | None = None,
    verp_local: str = "bounce",
) -> InboundKind:
    """Classify one inbound message; never raises.

    ``envelope_from`` is the SMTP MAIL FROM (``""`` or ``"<>"`` for the null
    reverse-path of RFC 5321 section 4.5.5), ``envelope_to`` the RCPT TO the
    message came in on: ``verp_token`` on the result is taken from it.
    ``verp_domain`` None accepts the token on any domain.
    """
    token = verp_token(envelope_to, verp_domain, verp_local) if envelope_to else None
    if not data.strip():
        return Unknown("empty message", token)
    try:
        return _classify(parse_message(data), envelope_from, token)
    except Exception as exc:  # the edge of the core: no parse error escapes
        log.debug("unclassifiable inbound message", exc_info=True)
        return Unknown(f"unparseable: {type(exc).__name__}: {exc}", token)


def _classify(msg: Message, envelope_from: str | None, token: str | None) -> InboundKind:
    if not msg.keys():
        return Unknown("no header fields: not a mail message", token)
    parts = list(_all_parts(msg))
    feedback = _first_of(parts, "message/feedback-report")
    if feedback is not None:
        return _complaint(msg, feedback, parts, token)
    status = _first_of(parts, "message/delivery-status")
    if status is not None:
        bounce = _dsn_bounce(status, parts, token)
        if bounce is not None:
            return bounce
    # flufl's heuristics would misread a human reply quoting an error: gate them.
    bounce_like = _looks_like_bounce(msg)
    if bounce_like or _is_null(envelope_from) or _bounce_subject(msg):
        bounce = _flufl_bounce(msg, parts, token)
        if bounce is not None:
            return bounce
    if bounce_like:
        return Unknown("looks like a bounce but names no recipient", token)
    auto = _auto_reply(msg, token)
    if auto is not None:
        return auto
    if _is_null(envelope_from) or status is not None:
        return Unknown("a bounce (null reverse-path or DSN) naming no recipient", token)
    return _reply(msg, token)


def _all_parts(msg: Message) -> list[Message]:
    """Every part of the report's own tree, embedded messages not entered."""
    found = [msg]
    payload = msg.get_payload()
    if msg.is_multipart() and msg.get_content_maintype() != "message":
        for part in payload if isinstance(payload, list) else []:
            if isinstance(part, Message):
                found += _all_parts(part)
    return found


def _first_of(parts: list[Message], content_type: str) -> Message | None:
    return next((p for p in parts if p.get_content_type() == content_type), None)


_ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")


def _original(parts: list[Message]) -> Message | None:
    for part in parts:
        if part.get_content_type() in _ORIGINAL_TYPES:
            original = embedded_headers(part)
            if original is not None:
                return original
    return None


def _original_message_id(parts: list[Message]) -> str | None:
    original = _original(parts)
    if original is None:
        return None
    ids = msg_ids(header_text(original, "Message-ID"))
    return ids[0] if ids else None


def _complaint(
    msg: Message, feedback: Message, parts: list[Message], token: str | None
) -> InboundKind:
    # The parser reads message/feedback-report as a message whose header is the report.
    fields = embedded_headers(feedback) or feedback
    kind = (header_text(fields, "Feedback-Type") or "").lower()
    if kind != "abuse":
        return Unknown(f"feedback report of type {kind or 'none'!r}, not abuse", token)
    original = _original(parts)
    recipient = first_address(header_text(fields, "Original-Rcpt-To"))
    if recipient is None and original is not None:
        recipient = first_address(header_text(original, "To"))
    return Complaint(
        feedback_type=kind,
        recipient=recipient,
        original_message_id=_original_message_id(parts),
        user_agent=header_text(fields, "User-Agent"),
        verp_token=token,
    )


def _dsn_bounce(status: Message, parts: list[Message], token: str | None) -> Bounce | None:
    blocks = delivery_status_blocks(status)
    if not blocks:
        return None
    per_message, per_recipient = blocks[0], blocks[1:]
    recipients = [r for r in map(parse_recipient_block, per_recipient) if r is not None]
    if not recipients:
        # A report whose parser saw one block only: try it as a recipient block too.
        single = parse_recipient_block(per_message)
        recipients = [single] if single is not None else []
    if not recipients:
        return None
    return Bounce(
        recipients=tuple(recipients),
        original_message_id=_original_message_id(parts),
        verp_token=token,
        source=BounceSource.DSN,
        reporting_mta=typed_value(header_text(per_message, "Reporting-MTA")),
    )


_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status|fail|notification|problem)|returned mail|failure notice"
    r"|mail delivery (failed|system)|non-?delivery|could not be delivered",
    re.IGNORECASE,
)
_REPLY_PREFIX = re.compile(r"\s*(re|aw|sv|fw|fwd|wg|tr)\s*(\[\d+\])?\s*:", re.IGNORECASE)


def _is_null(envelope_from: str | None) -> bool:
    return envelope_from is not None and envelope_from.strip() in ("", "<>")


def _looks_like_bounce(msg: Message) -> bool:
    """Evidence in the header that a message is a bounce: the sender or the report
    format. A null reverse-path alone is not enough (RFC 3834 section 3.3 has
    auto-replies use it too), nor is a Subject: a person may write one."""
    if msg.get("X-Failed-Recipients") is not None:
        return True
    if msg.get_content_type() == "multipart/report":
        return True
    sender = first_address(header_text(msg, "From")) or ""
    return sender.partition("@")[0].lower() in _DAEMONS


def _bounce_subject(msg: Message) -> bool:
    """A bounce-like Subject that is not a reply to or a forward of one."""
    subject = header_text(msg, "Subject") or ""
    return not _REPLY_PREFIX.match(subject) and bool(_BOUNCE_SUBJECT.search(subject))


def _flufl_bounce(msg: Message, parts: list[Message], token: str | None) -> Bounce | None:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on odd input: treat as nothing found
        log.debug("flufl.bounce detector failed", exc_info=True)
        return None
    body = _body_text(msg)
    recipients: list[BouncedRecipient] = []
    for raw, hard in [(a, True) for a in sorted(permanent)] + [
        (a, False) for a in sorted(temporary - permanent)
    ]:
        address = raw.decode("ascii", "replace")
        diagnostic = _diagnostic_near(body, address)
        recipients.append(
            BouncedRecipient(
                address=address,
                action=DsnAction.FAILED if hard else DsnAction.DELAYED,
                status=enhanced_status(diagnostic),
                diagnostic=diagnostic,
                remote_mta=None,
                hard=hard,
            )
        )
    if not recipients:
        return None
    message_id = _original_message_id(parts) or _inline_message_id(body)
    return Bounce(tuple(recipients), message_id, token, BounceSource.FLUFL)


_SMTP_REPLY = re.compile(r"^\s*([45]\d\d[ -].*)$", re.MULTILINE)
_INLINE_ID = re.compile(r"^Message-ID:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)


def _diagnostic_near(body: str, address: str) -> str | None:
    """The first SMTP reply line within a few lines after the address, if any."""
    at = body.lower().find(address.lower())
    if at < 0:
        return None
    found = _SMTP_REPLY.search(body, at, at + 600)
    return " ".join(found.group(1).split()) if found else None


def _inline_message_id(body: str) -> str | None:
    """A non-DSN bounce quotes the original inline, header and all."""
    found = _INLINE_ID.search(body)
    return found.group(1) if found else None


# RFC 3834 section 5; the others are what vacation programs and Exchange write.
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Autogenerated")
_AUTO_PRECEDENCE = ("auto_reply", "auto-reply")


def _auto_reply(msg: Message, token: str | None) -> AutoReply | None:
    reason = None
    submitted = header_text(msg, "Auto-Submitted")
    if submitted and submitted.split(";")[0].strip().lower() != "no":
        reason = f"Auto-Submitted: {submitted}"
    for name in _AUTO_HEADERS:
        value = header_text(msg, name)
        if reason is None and value is not None and value.lower() not in ("no", "false"):
            reason = f"{name}: {value}"
    for name in ("Precedence", "X-Precedence"):
        value = header_text(msg, name)
        if reason is None and value and value.lower() in _AUTO_PRECEDENCE:
            reason = f"{name}: {value}"
    if reason is None:
        return None
    in_reply_to = msg_ids(header_text(msg, "In-Reply-To"))
    return AutoReply(
        reason=reason,
        from_address=first_address(header_text(msg, "From")),
        subject=header_text(msg, "Subject"),
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=tuple(msg_ids(header_text(msg, "References"))),
        verp_token=token,
    )


def _reply(msg: Message, token: str | None) -> InboundKind:
    sender = first_address(header_text(msg, "From"))
    if sender is None:
        return Unknown("no From address", token)
    text = _body_text(msg)
    message_id = msg_ids(header_text(msg, "Message-ID"))
    in_reply_to = msg_ids(header_text(msg, "In-Reply-To"))
    return Reply(
        message_id=message_id[0] if message_id else None,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=tuple(msg_ids(header_text(msg, "References"))),
        from_address=sender,
        subject=header_text(msg, "Subject"),
        text=text,
        new_text=strip_quoted(text),
        verp_token=token,
    )


def _body_text(msg: Message) -> str:
    """The first inline text/plain part, else the first text/html one stripped."""
    html_text = None
    for part in leaf_parts(msg):
        if part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/plain":
            return (part_text(part) or "").replace("\r\n", "\n").strip()
        if kind == "text/html" and html_text is None:
            html_text = html_to_text(part_text(part) or "")
    return html_text or ""


_ATTRIBUTION = re.compile(
    r"^(On\b.{0,200}\bwrote:|-{2,}\s*Original Message\s*-{2,}|_{10,}"
    r"|Le\b.{0,200}\ba écrit\s?:)\s*$",
    re.IGNORECASE,
)


def strip_quoted(text: str) -> str:
    """The new text of a reply: quoted (``>``) lines, the attribution line and all
    after it, and an RFC 3676 section 4.3 signature (``-- ``) dropped. Crude."""
    kept: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        joined = f"{line} {lines[i + 1]}" if i + 1 < len(lines) else line
        if _ATTRIBUTION.match(line.strip()) or (
            line.startswith("On ") and _ATTRIBUTION.match(joined.strip())
        ):
            break
        if line.rstrip() == "--":
            break
        if not line.lstrip().startswith(">"):
            kept.append(line.rstrip())
    return "\n".join(kept).strip()
