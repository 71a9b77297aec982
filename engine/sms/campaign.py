"""SMS campaign files (`channel: sms`), validated with located errors.

```yaml
name: flu-reminders
channel: sms
contact_list: patients
phone_columns: [mobile]       # default: every phone column, first usable number
account: smsc1                # default: sms.default_account
sender: "+15550100"           # short code, long code (E.164) or alphanumeric (<= 11)
template: "Hi {first_name}, your flu shot is on {date}. Reply STOP to opt out."
# template_name: reminder     # or one of sms.templates
# message_column: text        # or each contact's own text
smart_encoding: true          # curly quotes, dashes... -> GSM-7 when the whole text then fits
max_segments: 3               # longer messages are a per-contact error
throughput: {messages_per_second: 50, segments_per_second: 100}
retry: {attempts: 3, after: 5m}    # temporary failures (throttling, queue full, no answer)
dnc_lists: [internal]
optout_list: sms-optout       # default: sms.optout_list
calling_hours: {every_day: "09:00-20:00"}   # the contact's local time (texts are calls
                                            # under the TCPA: the law's hours apply too)
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.campaign_config import _campaign_name, _dnc_lists, _nonempty
from engine.compliance.campaign import HoursConfig, parse_hours_config
from engine.config import ConfigError, DaemonConfig, _Node, format_duration
from engine.sms.config import SmsConfig
from engine.sms.template import Template, TemplateError, compile_template

_FIELDS = {
    "name",
    "channel",
    "contact_list",
    "phone_columns",
    "account",
    "sender",
    "template",
    "template_name",
    "message_column",
    "smart_encoding",
    "max_segments",
    "throughput",
    "retry",
    "dnc_lists",
    "optout_list",
    "calling_hours",
    "restricted_days",
    "contact_location",
    "priority",
}
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9 ._&'-]{1,11}")
_NUMERIC = re.compile(r"\+?[0-9]{3,15}")


@dataclass(frozen=True, slots=True)
class SmsCampaignConfig:
    name: str
    file: Path
    contact_list: str
    account: str
    sender: str
    template: Template | None  # None: message_column
    template_name: str | None = None
    message_column: str | None = None
    phone_columns: tuple[str, ...] = ()
    smart_encoding: bool = True
    max_segments: int = 10
    messages_per_second: float | None = None
    segments_per_second: float | None = None
    retry_attempts: int = 3
    retry_after: float = 300.0
    dnc_lists: tuple[str, ...] = ("internal",)
    optout_list: str = "sms-optout"
    hours: HoursConfig = field(default_factory=HoursConfig)
    priority: int = 0
    channel: str = "sms"

    @property
    def checked_dnc_lists(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.dnc_lists, self.optout_list)))


def channel_of(m: _Node) -> str:
    """A campaign file's channel, as written (voice when absent is an error elsewhere)."""
    return (m.text("channel") or "").strip().lower()


def parse_sms_campaign(m: _Node, file: Path, config: DaemonConfig) -> SmsCampaignConfig:
    m.check_keys(_FIELDS)
    sms: SmsConfig | None = config.sms
    if sms is None:
        raise m.error("channel", f"an SMS campaign needs an `sms:` section in {config.path}")
    name = _campaign_name(m, file)
    contact_list = _nonempty(m, "contact_list")
    account = m.text("account") or sms.default_account
    if account not in sms.accounts:
        raise m.error("account", f"no SMS account {account!r} (known: {', '.join(sms.accounts)})")
    sender = (m.text("sender") or sms.default_sender or "").strip()
    if not sender:
        raise m.error("sender", "missing (and no sms.default_sender in the daemon config)")
    if not (_NUMERIC.fullmatch(sender) or _ALPHANUMERIC.fullmatch(sender)):
        raise m.error(
            "sender",
            "expected a number (short or long code) or up to 11 letters and digits, "
            f"got {sender!r}",
        )
    template, template_name, column = _text_source(m, sms)
    phone_columns = _columns(m)
    smart = bool(m.scalar("smart_encoding", bool, True))
    max_segments = m.number("max_segments", int, 10, low=1)
    if max_segments > 255:
        raise m.error("max_segments", f"concatenation allows 255 segments, got {max_segments}")
    mps, sps = _throughput(m)
    attempts, after = m.retry("retry", 3, 300.0)
    dnc_lists, _ = _dnc_lists(m)
    optout = (m.text("optout_list") or sms.optout_list).strip()
    hours = parse_hours_config(m)
    return SmsCampaignConfig(
        name=name,
        file=file.absolute(),
        contact_list=contact_list,
        account=account,
        sender=sender,
        template=template,
        template_name=template_name,
        message_column=column,
        phone_columns=phone_columns,
        smart_encoding=smart,
        max_segments=max_segments,
        messages_per_second=mps,
        segments_per_second=sps,
        retry_attempts=attempts,
        retry_after=after,
        dnc_lists=dnc_lists,
        optout_list=optout,
        hours=hours,
        priority=m.scalar("priority", int, 0),
    )


def _text_source(m: _Node, sms: SmsConfig) -> tuple[Template | None, str | None, str | None]:
    given = [k for k in ("template", "template_name", "message_column") if m.present(k)]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise m.error(
            given[1] if len(given) > 1 else "template",
            f"give exactly one of template, template_name, message_column (got {what})",
        )
    key = given[0]
    if key == "message_column":
        return None, None, _nonempty(m, key)
    if key == "template_name":
        name = _nonempty(m, key)
        if name not in sms.templates:
            known = ", ".join(sorted(sms.templates)) or "none"
            raise m.error(key, f"no template {name!r} in sms.templates (known: {known})")
        return compile_template(sms.templates[name]), name, None
    try:
        return compile_template(_nonempty(m, key)), None, None
    except TemplateError as exc:
        raise m.error(key, str(exc)) from None


def _columns(m: _Node) -> tuple[str, ...]:
    node = m.present("phone_columns")
    if node is None:
        return ()
    if isinstance(node, yaml.ScalarNode):
        return (str(node.value),)
    if not isinstance(node, yaml.SequenceNode) or not all(
        isinstance(n, yaml.ScalarNode) for n in node.value
    ):
        raise m.error("phone_columns", "expected a list of phone column names")
    return tuple(str(n.value) for n in node.value)


def _throughput(m: _Node) -> tuple[float | None, float | None]:
    node = m.mapping("throughput")
    if node is None:
        return None, None
    node.check_keys({"messages_per_second", "segments_per_second"})
    out = []
    for key in ("messages_per_second", "segments_per_second"):
        value = node.scalar(key, float)
        if value is not None and value <= 0:
            raise node.error(key, f"must be above 0, got {value:g}")
        out.append(value)
    return out[0], out[1]


def sms_definition(c: SmsCampaignConfig) -> dict[str, Any]:
    """The campaign as a JSON-able dict (stored in campaigns.definition, shown by ctl)."""
    return {
        "name": c.name,
        "file": str(c.file),
        "channel": "sms",
        "contact_list": c.contact_list,
        "account": c.account,
        "sender": c.sender,
        "template": c.template.source if c.template is not None else None,
        "template_name": c.template_name,
        "message_column": c.message_column,
        "phone_columns": list(c.phone_columns),
        "smart_encoding": c.smart_encoding,
        "max_segments": c.max_segments,
        "messages_per_second": c.messages_per_second,
        "segments_per_second": c.segments_per_second,
        "retry": {"attempts": c.retry_attempts, "after": format_duration(c.retry_after)},
        "dnc_lists": list(c.dnc_lists),
        "optout_list": c.optout_list,
        "priority": c.priority,
    }


__all__ = ["ConfigError", "SmsCampaignConfig", "channel_of", "parse_sms_campaign", "sms_definition"]
