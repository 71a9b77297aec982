"""The daemon config's `sms:` section and `http:` listener, with located errors.

```yaml
http:
  listen: 127.0.0.1:8080          # status callbacks, inbound webhooks (the API extends it)
  public_url: https://sms.example.com   # what the aggregators are told (default: http://listen)
sms:
  accounts:
    smsc1:
      type: smpp                  # smpp, twilio, kannel
      host: 127.0.0.1
      port: 2775
      system_id: outdial
      password: secret
      window: 10                  # outstanding submits per bind
      binds: 2
      rate: 200                   # submits/s for the account (default: no limit)
      bind_rate: 100              # submits/s per bind
    aggregator:
      type: twilio
      url: https://api.twilio.com
      account_sid: AC123
      auth_token: secret
    kannel1:
      type: kannel
      url: http://127.0.0.1:13013
      username: outdial
      password: secret
      dlr_key: a-long-random-string   # our dlr-url carries it; reports without it get 403
      refused_pause: 60s              # after a 401/403 from it: wait, keep the messages
  default_account: smsc1
  default_sender: "+15550100"
  optout_list: sms-optout         # DNC list (kind optout) that STOP adds to
  reply_window: 24h               # replies thread to the last message sent this recently
  interaction_timeout: 1h         # an interaction closes after this long without a reply
  notification_retry: {attempts: 3, after: 60s}   # notifications' temporary failures
  stop_reply: "You are unsubscribed and will get no more messages. Reply START to resubscribe."
  help_reply: "Reminders from Example Clinic. Reply STOP to unsubscribe."
  start_reply: "You are subscribed again. Reply STOP to unsubscribe."
  senders:
    "+15550100":
      keywords: {HOURS: "We are open 9-17, Monday to Friday."}
  templates:
    reminder: "Hi {first_name}, your appointment is on {date}."
```
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.config import ConfigError, _kind, _Node

ACCOUNT_TYPES = ("smpp", "twilio", "kannel")
STOP_WORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")
HELP_WORDS = ("HELP", "INFO")
START_WORDS = ("START", "YES", "UNSTOP")
DEFAULT_STOP_REPLY = (
    "You are unsubscribed and will receive no more messages from this number. "
    "Reply START to subscribe again."
)
DEFAULT_HELP_REPLY = "Reply STOP to unsubscribe, START to subscribe again."
DEFAULT_START_REPLY = "You are subscribed again. Reply STOP to unsubscribe."


@dataclass(frozen=True, slots=True)
class SmsAccountConfig:
    name: str
    type: str
    # smpp
    host: str = ""
    port: int = 2775
    system_id: str = ""
    password: str = field(default="", repr=False)
    system_type: str = ""
    window: int = 10
    binds: int = 1
    rate: float | None = None
    bind_rate: float | None = None
    response_timeout: float = 10.0
    # twilio, kannel
    url: str = ""
    account_sid: str = ""
    auth_token: str = field(default="", repr=False)
    username: str = ""
    dlr_key: str | None = field(default=None, repr=False)
    timeout: float = 15.0
    # An aggregator that refuses us (HTTP 401/403: credentials, permissions) is
    # not sent to again for this long; the message is kept, never rejected.
    refused_pause: float = 60.0


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """One of our sender addresses and its own keywords (word -> reply)."""

    address: str
    keywords: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SmsConfig:
    accounts: dict[str, SmsAccountConfig]
    default_account: str
    default_sender: str | None = None
    optout_list: str = "sms-optout"
    reply_window: float = 86_400.0
    interaction_timeout: float = 3_600.0
    stop_reply: str = DEFAULT_STOP_REPLY
    help_reply: str = DEFAULT_HELP_REPLY
    start_reply: str = DEFAULT_START_REPLY
    senders: dict[str, SenderConfig] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    # Notifications and keyword replies (no campaign): temporary failures retried
    # this many times in all, the first after this long, doubling.
    notification_attempts: int = 3
    notification_retry_after: float = 60.0


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str
    port: int
    public_url: str

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


_SMS_FIELDS = {
    "accounts",
    "notification_retry",
    "default_account",
    "default_sender",
    "optout_list",
    "reply_window",
    "interaction_timeout",
    "stop_reply",
    "help_reply",
    "start_reply",
    "senders",
    "templates",
}
_SMPP_FIELDS = {
    "type",
    "host",
    "port",
    "system_id",
    "password",
    "system_type",
    "window",
    "binds",
    "rate",
    "bind_rate",
    "response_timeout",
}
_TWILIO_FIELDS = {"type", "url", "account_sid", "auth_token", "timeout", "refused_pause"}
_KANNEL_FIELDS = {"type", "url", "username", "password", "dlr_key", "timeout", "refused_pause"}


def parse_http(top: _Node) -> HttpConfig | None:
    node = top.mapping("http")
    if node is None:
        return None
    node.check_keys({"listen", "public_url"})
    listen = node.required_text("listen").strip()
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise node.error("listen", f"expected HOST:PORT like 127.0.0.1:8080, got {listen!r}")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise node.error("listen", f"expected an IP address to listen on, got {host!r}") from None
    port = int(port_text)
    public = node.text("public_url") or f"http://{listen}"
    if not public.startswith(("http://", "https://")):
        raise node.error("public_url", f"expected an http:// or https:// URL, got {public!r}")
    return HttpConfig(host, port, public.rstrip("/"))


def parse_sms(top: _Node) -> SmsConfig | None:
    node = top.mapping("sms")
    if node is None:
        return None
    node.check_keys(_SMS_FIELDS)
    accounts_node = node.mapping("accounts")
    if accounts_node is None or not accounts_node.items:
        raise node.error("accounts", "missing: at least one SMS account (smpp, twilio or kannel)")
    accounts = {name: _account(accounts_node, name) for name in accounts_node.items}
    default = node.text("default_account") or next(iter(accounts))
    if default not in accounts:
        raise node.error(
            "default_account", f"no account {default!r} (accounts: {', '.join(accounts)})"
        )
    window = node.duration("reply_window", 86_400.0, low=1.0)
    timeout = node.duration("interaction_timeout", 3_600.0, low=1.0)
    attempts, retry_after = node.retry("notification_retry", 3, 60.0)
    return SmsConfig(
        accounts=accounts,
        default_account=default,
        default_sender=node.text("default_sender"),
        optout_list=(node.text("optout_list") or "sms-optout").strip(),
        reply_window=window or 86_400.0,
        interaction_timeout=timeout or 3_600.0,
        stop_reply=node.text("stop_reply") or DEFAULT_STOP_REPLY,
        help_reply=node.text("help_reply") or DEFAULT_HELP_REPLY,
        start_reply=node.text("start_reply") or DEFAULT_START_REPLY,
        senders=_senders(node),
        templates=_templates(node),
        notification_attempts=attempts,
        notification_retry_after=retry_after,
    )


def _account(parent: _Node, name: str) -> SmsAccountConfig:
    node = parent.mapping(name)
    if node is None:
        raise parent.error(name, "expected a mapping with the account's type and settings")
    kind = node.choice("type", ACCOUNT_TYPES, "")
    if kind == "smpp":
        node.check_keys(_SMPP_FIELDS)
        port = node.number("port", int, 2775, low=1)
        if port > 65535:
            raise node.error("port", f"expected a port 1..65535, got {port}")
        rate = node.scalar("rate", float)
        bind_rate = node.scalar("bind_rate", float)
        for key, value in (("rate", rate), ("bind_rate", bind_rate)):
            if value is not None and value <= 0:
                raise node.error(key, f"must be above 0, got {value:g}")
        return SmsAccountConfig(
            name=name,
            type=kind,
            host=node.required_text("host"),
            port=port,
            system_id=node.required_text("system_id"),
            password=node.text("password") or "",
            system_type=node.text("system_type") or "",
            window=node.number("window", int, 10, low=1),
            binds=node.number("binds", int, 1, low=1),
            rate=rate,
            bind_rate=bind_rate,
            response_timeout=node.duration("response_timeout", 10.0, low=0.1) or 10.0,
        )
    if kind == "twilio":
        node.check_keys(_TWILIO_FIELDS)
        return SmsAccountConfig(
            name=name,
            type=kind,
            url=_url(node, "https://api.twilio.com"),
            account_sid=node.required_text("account_sid"),
            auth_token=node.required_text("auth_token"),
            timeout=node.duration("timeout", 15.0, low=0.1) or 15.0,
            refused_pause=node.duration("refused_pause", 60.0, low=0.1) or 60.0,
        )
    node.check_keys(_KANNEL_FIELDS)
    dlr_key = node.text("dlr_key")
    if dlr_key is not None and not (dlr_key.isascii() and dlr_key.isprintable()):
        # Kannel reads %C3, %E2... of a URL-encoded non-ASCII key as its own escapes.
        raise node.error("dlr_key", "expected printable ASCII (it goes into Kannel's dlr-url)")
    return SmsAccountConfig(
        name=name,
        type=kind,
        url=_url(node, None),
        username=node.required_text("username"),
        password=node.required_text("password"),
        dlr_key=dlr_key,
        timeout=node.duration("timeout", 15.0, low=0.1) or 15.0,
        refused_pause=node.duration("refused_pause", 60.0, low=0.1) or 60.0,
    )


def _url(node: _Node, default: str | None) -> str:
    url = node.text("url") or default
    if url is None:
        raise node.error("url", "missing (expected the smsbox URL, like http://127.0.0.1:13013)")
    if not url.startswith(("http://", "https://")):
        raise node.error("url", f"expected an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def _texts(node: _Node, key: str) -> dict[str, str]:
    raw = node.present(key)
    if raw is None:
        return {}
    if not isinstance(raw, yaml.MappingNode):
        raise node.error(key, f"expected a mapping of names to texts, got a {_kind(raw)}")
    inner = _Node(node.file, raw, node.field(key))
    out: dict[str, str] = {}
    for name in inner.items:
        text = inner.text(name)
        if not text:
            raise inner.error(name, "expected a text")
        out[name] = text
    return out


def _templates(node: _Node) -> dict[str, str]:
    from engine.sms.template import TemplateError, compile_template

    templates = _texts(node, "templates")
    inner = node.mapping("templates")
    for name, text in templates.items():
        try:
            compile_template(text)
        except TemplateError as exc:
            assert inner is not None
            raise inner.error(name, str(exc)) from None
    return templates


def _senders(node: _Node) -> dict[str, SenderConfig]:
    inner = node.mapping("senders")
    if inner is None:
        return {}
    out: dict[str, SenderConfig] = {}
    reserved = set(STOP_WORDS) | set(HELP_WORDS) | set(START_WORDS)
    for address in inner.items:
        sender = inner.mapping(address)
        if sender is None:
            raise inner.error(address, "expected a mapping (keywords: ...)")
        sender.check_keys({"keywords"})
        keywords = {k.strip().upper(): v for k, v in _texts(sender, "keywords").items()}
        clash = sorted(reserved & set(keywords))
        if clash:
            raise sender.error(
                "keywords",
                f"{', '.join(clash)} are built in (opt-out, help, opt-in); choose other words",
            )
        out[address] = SenderConfig(address, keywords)
    return out


def describe(config: SmsConfig) -> dict[str, Any]:
    """The section without secrets, for `status`."""
    return {
        "accounts": {n: a.type for n, a in config.accounts.items()},
        "default_account": config.default_account,
        "optout_list": config.optout_list,
    }


__all__ = [
    "ConfigError",
    "HttpConfig",
    "SenderConfig",
    "SmsAccountConfig",
    "SmsConfig",
    "parse_http",
    "parse_sms",
]
