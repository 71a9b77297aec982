"""Email campaign files (`channel: email`), validated with located errors.

```yaml
name: spring-newsletter
channel: email
contact_list: customers
address_column: email          # default: the first of email, e_mail, mail present
relay: outbound                # default: email.default_relay
from: "Example Shop <news@example.com>"   # default: email.from
reply_to: "Shop <shop@example.com>"       # default: email.reply_to, else our reply+TOKEN address
subject: "Spring offers for {{ first_name }}"
text: "Hello {{ first_name }}, ..."
html: "<p>Hello {{ first_name }}, ...</p>"
# template_name: newsletter    # or one of email.templates
throughput: {messages_per_second: 100}
retry: {attempts: 5, after: 5m}     # 4xx answers, a relay down, no answer
dnc_lists: [internal]
optout_list: email-optout      # default: email.optout_list (the one-click unsubscribe adds here)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.campaign_config import _campaign_name, _dnc_lists, _nonempty
from engine.config import ConfigError, DaemonConfig, _Node, format_duration
from engine.email.compose import CompiledEmail, compile_email_template
from engine.email.config import EmailConfig, EmailTemplate, _mailbox
from engine.sms.template import TemplateError

ADDRESS_COLUMNS = ("email", "e_mail", "mail", "email_address")
_FIELDS = {
    "name", "channel", "contact_list", "address_column", "relay", "from", "reply_to",
    "subject", "text", "html", "template_name", "throughput", "retry", "dnc_lists",
    "optout_list", "priority",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class EmailCampaignConfig:
    name: str
    file: Path
    contact_list: str
    relay: str
    sender: str
    template: CompiledEmail
    template_source: EmailTemplate
    address_columns: tuple[str, ...] = ADDRESS_COLUMNS
    reply_to: str | None = None
    template_name: str | None = None
    messages_per_second: float | None = None
    retry_attempts: int = 5
    retry_after: float = 300.0
    dnc_lists: tuple[str, ...] = ("internal",)
    optout_list: str = "email-optout"
    priority: int = 0
    channel: str = "email"

    def checked_dnc_lists(self, bounce_list: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.dnc_lists, self.optout_list, bounce_list)))


def parse_email_campaign(m: _Node, file: Path, config: DaemonConfig) -> EmailCampaignConfig:
    m.check_keys(_FIELDS)
    email: EmailConfig | None = config.email
    if email is None:
        raise m.error("channel", f"an email campaign needs an `email:` section in {config.path}")
    name = _campaign_name(m, file)
    contact_list = _nonempty(m, "contact_list")
    relay = m.text("relay") or email.default_relay
    if relay not in email.relays:
        raise m.error("relay", f"no relay {relay!r} (known: {', '.join(email.relays)})")
    sender = _mailbox(m, "from", False) or email.sender
    reply_to = _mailbox(m, "reply_to", False) or email.reply_to
    source, template_name = _template(m, email)
    try:
        compiled = compile_email_template(source)
    except TemplateError as exc:
        key = str(exc).split(" ", 1)[0] if template_name is None else "template_name"
        raise m.error(key if key in ("subject", "text", "html") else "subject", str(exc)) from None
    column = m.text("address_column")
    mps = None
    throughput = m.mapping("throughput")
    if throughput is not None:
        throughput.check_keys({"messages_per_second"})
        mps = throughput.scalar("messages_per_second", float)
        if mps is not None and mps <= 0:
            raise throughput.error("messages_per_second", f"must be above 0, got {mps:g}")
    attempts, after = m.retry("retry", 5, 300.0)
    dnc_lists, _ = _dnc_lists(m)
    return EmailCampaignConfig(
        name=name, file=file.absolute(), contact_list=contact_list, relay=relay, sender=sender,
        template=compiled, template_source=source,
        address_columns=(column,) if column else ADDRESS_COLUMNS, reply_to=reply_to,
        template_name=template_name, messages_per_second=mps, retry_attempts=attempts,
        retry_after=after, dnc_lists=dnc_lists,
        optout_list=(m.text("optout_list") or email.optout_list).strip(),
        priority=m.scalar("priority", int, 0),
    )  # fmt: skip


def _template(m: _Node, email: EmailConfig) -> tuple[EmailTemplate, str | None]:
    named = m.text("template_name")
    inline = [k for k in ("subject", "text", "html") if m.present(k) is not None]
    if named is not None:
        if inline:
            raise m.error(inline[0], "give template_name or subject/text/html, not both")
        found = email.templates.get(named)
        if found is None:
            known = ", ".join(sorted(email.templates)) or "none"
            raise m.error("template_name", f"no template {named!r} in email.templates "
                                           f"(known: {known})")  # fmt: skip
        return found, named
    subject = m.text("subject")
    if subject is None:
        raise m.error("subject", "missing (or give template_name)")
    text, html = m.text("text"), m.text("html")
    if text is None and html is None:
        raise m.error("text", "give a text part, an html part, or both")
    for key in ("text", "html"):
        node = m.present(key)
        if node is not None and not isinstance(node, yaml.ScalarNode):
            raise m.error(key, "expected the template as a string")
    return EmailTemplate(subject, text, html), None


def email_definition(c: EmailCampaignConfig) -> dict[str, Any]:
    return {
        "name": c.name, "file": str(c.file), "channel": "email", "contact_list": c.contact_list,
        "relay": c.relay, "from": c.sender, "reply_to": c.reply_to,
        "address_columns": list(c.address_columns), "template_name": c.template_name,
        "subject": c.template_source.subject, "messages_per_second": c.messages_per_second,
        "retry": {"attempts": c.retry_attempts, "after": format_duration(c.retry_after)},
        "dnc_lists": list(c.dnc_lists), "optout_list": c.optout_list, "priority": c.priority,
    }  # fmt: skip


__all__ = ["ConfigError", "EmailCampaignConfig", "email_definition", "parse_email_campaign"]
