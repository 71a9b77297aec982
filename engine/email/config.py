"""The daemon config's `email:` section, with located errors.

```yaml
email:
  domain: mail.example.com          # Message-IDs and the VERP return path (bounce+TOKEN@domain)
  from: "Example Clinic <reminders@example.com>"
  reply_to: "Front desk <desk@example.com>"
  relays:
    outbound:
      host: 127.0.0.1
      port: 587
      tls: starttls                 # none, starttls, tls
      username: outdial
      password: secret
      connections: 4                # SMTP connections kept to the relay
      messages_per_connection: 100
      rate: 200                     # messages/s (default: no limit)
      per_domain_concurrency: 8     # transactions at once to one recipient domain
  default_relay: outbound
  dkim:
    - {domain: example.com, selector: s2026, key_file: keys/s2026.pem}   # rsa or ed25519 PEM
  inbound:
    listen: 127.0.0.1:2526          # bounces (VERP) and replies arrive here
  unsubscribe_url: https://mail.example.com      # + /u/TOKEN; default http.public_url
  optout_list: email-optout         # one-click unsubscribes (source `unsubscribe`)
  bounce_list: email-bounces        # hard bounces (source `bounce`)
  reply_window: 30d                 # replies thread to messages sent this recently
  secret_file: var/email.secret     # signs unsubscribe and VERP tokens; made if missing
  retry: {attempts: 5, after: 1m}   # notifications: 4xx and no answer retried, doubling
  templates:
    receipt:
      subject: "Your receipt {{ number }}"
      text: "Hello {{ name }}, ..."
      html: "<p>Hello {{ name }}, ...</p>"
```
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Literal, cast

import yaml

from engine.config import ConfigError, _kind, _Node

TLS_MODES = ("none", "starttls", "tls")
TlsMode = Literal["none", "starttls", "tls"]


@dataclass(frozen=True, slots=True)
class RelaySettings:
    name: str
    host: str
    port: int = 25
    tls: TlsMode = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    connections: int = 4
    messages_per_connection: int = 100
    rate: float | None = None
    per_domain_concurrency: int = 8
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class DkimSettings:
    domain: str
    selector: str
    key_file: Path


@dataclass(frozen=True, slots=True)
class EmailTemplate:
    subject: str
    text: str | None = None
    html: str | None = None


@dataclass(frozen=True, slots=True)
class EmailConfig:
    domain: str
    sender: str  # the From: "Name <address>"
    relays: dict[str, RelaySettings]
    default_relay: str
    reply_to: str | None = None
    dkim: tuple[DkimSettings, ...] = ()
    inbound: tuple[str, int] | None = None
    unsubscribe_url: str | None = None
    optout_list: str = "email-optout"
    bounce_list: str = "email-bounces"
    reply_window: float = 30 * 86_400.0
    secret_file: Path = Path("var/email.secret")
    templates: dict[str, EmailTemplate] = field(default_factory=dict)
    bounce_local: str = "bounce"
    retry_attempts: int = 5  # notifications' (campaigns have their own `retry`)
    retry_after: float = 60.0

    @property
    def from_address(self) -> str:
        return parseaddr(self.sender)[1]


_FIELDS = {
    "domain", "from", "reply_to", "relays", "default_relay", "dkim", "inbound",
    "unsubscribe_url", "optout_list", "bounce_list", "reply_window", "secret_file", "templates",
    "retry",
}  # fmt: skip
_RELAY_FIELDS = {
    "host", "port", "tls", "username", "password", "connections", "messages_per_connection",
    "rate", "per_domain_concurrency", "timeout",
}  # fmt: skip


def _mailbox(node: _Node, key: str, required: bool) -> str | None:
    text = node.required_text(key) if required else node.text(key)
    if text is None:
        return None
    name, addr = parseaddr(text)
    try:
        Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError) as exc:
        raise node.error(key, f"expected an address like 'Name <user@example.com>': {exc}") from (
            None
        )
    if "@" not in addr:
        raise node.error(key, f"expected an address like 'Name <user@example.com>', got {text!r}")
    return text


def _relay(parent: _Node, name: str) -> RelaySettings:
    node = parent.mapping(name)
    if node is None:
        raise parent.error(name, "expected a mapping with the relay's host and port")
    node.check_keys(_RELAY_FIELDS)
    port = node.number("port", int, 25, low=1)
    if port > 65535:
        raise node.error("port", f"expected a port 1..65535, got {port}")
    username, password = node.text("username"), node.text("password")
    if (username is None) != (password is None):
        raise node.error("username" if username is None else "password",
                         "give both username and password (AUTH), or neither")  # fmt: skip
    tls = cast(TlsMode, node.choice("tls", TLS_MODES, "none"))
    if username is not None and tls == "none" and not _loopback(node.required_text("host")):
        raise node.error("tls", "AUTH over a plaintext connection to a remote relay: use "
                                "starttls or tls")  # fmt: skip
    rate = node.scalar("rate", float)
    if rate is not None and rate <= 0:
        raise node.error("rate", f"must be above 0, got {rate:g}")
    return RelaySettings(
        name=name, host=node.required_text("host"), port=port, tls=tls, username=username,
        password=password, connections=node.number("connections", int, 4, low=1),
        messages_per_connection=node.number("messages_per_connection", int, 100, low=1),
        rate=rate, per_domain_concurrency=node.number("per_domain_concurrency", int, 8, low=1),
        timeout=node.duration("timeout", 30.0, low=0.1) or 30.0,
    )  # fmt: skip


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _dkim(node: _Node, base: Path) -> tuple[DkimSettings, ...]:
    raw = node.present("dkim")
    if raw is None:
        return ()
    if not isinstance(raw, yaml.SequenceNode):
        raise node.error("dkim", f"expected a list of {{domain, selector, key_file}}, got a "
                                 f"{_kind(raw)}")  # fmt: skip
    out = []
    for index, item in enumerate(raw.value):
        if not isinstance(item, yaml.MappingNode):
            raise node.error("dkim", f"item {index}: expected a mapping")
        entry = _Node(node.file, item, f"{node.field('dkim')}[{index}]")
        entry.check_keys({"domain", "selector", "key_file"})
        path = Path(entry.required_text("key_file")).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise entry.error("key_file", f"no such file: {path}")
        out.append(DkimSettings(entry.required_text("domain").lower(),
                                entry.required_text("selector"), path))  # fmt: skip
    return tuple(out)


def _listen(node: _Node) -> tuple[str, int] | None:
    inner = node.mapping("inbound")
    if inner is None:
        return None
    inner.check_keys({"listen"})
    text = inner.required_text("listen")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise inner.error("listen", f"expected IP:PORT like 127.0.0.1:2526, got {text!r}")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise inner.error("listen", f"expected an IP address to listen on, got {host!r}") from None
    return host.strip("[]"), int(port)


def _templates(node: _Node) -> dict[str, EmailTemplate]:
    from engine.email.compose import compile_email_template
    from engine.sms.template import TemplateError

    inner = node.mapping("templates")
    if inner is None:
        return {}
    out = {}
    for name in inner.items:
        spec = inner.mapping(name)
        if spec is None:
            raise inner.error(name, "expected a mapping with subject and text and/or html")
        spec.check_keys({"subject", "text", "html"})
        template = EmailTemplate(spec.required_text("subject"), spec.text("text"),
                                 spec.text("html"))  # fmt: skip
        if template.text is None and template.html is None:
            raise spec.error("text", "give a text part, an html part, or both")
        try:
            compile_email_template(template)
        except TemplateError as exc:
            raise inner.error(name, str(exc)) from None
        out[name] = template
    return out


def parse_email(top: _Node, base: Path) -> EmailConfig | None:
    node = top.mapping("email")
    if node is None:
        return None
    node.check_keys(_FIELDS)
    domain = node.required_text("domain").strip().lower()
    if "." not in domain or "@" in domain:
        raise node.error("domain", f"expected a domain like mail.example.com, got {domain!r}")
    sender = _mailbox(node, "from", True)
    assert sender is not None
    relays_node = node.mapping("relays")
    if relays_node is None or not relays_node.items:
        raise node.error("relays", "missing: at least one SMTP relay")
    relays = {name: _relay(relays_node, name) for name in relays_node.items}
    default = node.text("default_relay") or next(iter(relays))
    if default not in relays:
        raise node.error("default_relay", f"no relay {default!r} (relays: {', '.join(relays)})")
    url = node.text("unsubscribe_url")
    if url is not None and not url.startswith(("http://", "https://")):
        raise node.error("unsubscribe_url", f"expected an http(s) URL, got {url!r}")
    secret = Path(node.text("secret_file") or "var/email.secret").expanduser()
    attempts, after = node.retry("retry", 5, 60.0)
    return EmailConfig(
        domain=domain, sender=sender, relays=relays, default_relay=default,
        reply_to=_mailbox(node, "reply_to", False), dkim=_dkim(node, base),
        inbound=_listen(node), unsubscribe_url=url.rstrip("/") if url else None,
        optout_list=(node.text("optout_list") or "email-optout").strip(),
        bounce_list=(node.text("bounce_list") or "email-bounces").strip(),
        reply_window=node.duration("reply_window", 30 * 86_400.0, low=1.0) or 30 * 86_400.0,
        secret_file=secret, templates=_templates(node), retry_attempts=attempts,
        retry_after=after,
    )  # fmt: skip


__all__ = ["ConfigError", "DkimSettings", "EmailConfig", "EmailTemplate", "RelaySettings",
           "parse_email"]  # fmt: skip
