"""The email policy pieces on their own: the `email:` section and email
campaign files (located errors), templates (HTML autoescaped, one-line
subjects), the composed message, and the signed tokens."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest

from engine.config import ConfigError, DaemonConfig, _read_mapping, load_config
from engine.email.campaign import parse_email_campaign
from engine.email.compose import build_message, compile_email_template
from engine.email.config import EmailTemplate
from engine.email.tokens import BOUNCE, UNSUBSCRIBE, load_secret, make_token, read_token
from engine.sms.template import MissingColumn, TemplateError

BASE = """\
trunks:
  - name: carrier
    uri: sip:127.0.0.1:5070
email:
  domain: mail.clinic.test
  from: "Clinic <news@clinic.test>"
  relays:
    out:
      host: 127.0.0.1
      port: 2525
  templates:
    receipt:
      subject: "Receipt {{ number }}"
      text: "Thanks {{ name }}"
"""

CAMPAIGN = """\
name: spring
channel: email
contact_list: customers
subject: "Spring news for {{ first_name }}"
html: "<p>Hello {{ first_name }}</p>"
"""


def config_of(tmp_path: Path, text: str = BASE) -> DaemonConfig:
    path = tmp_path / "outdial.yaml"
    path.write_text(text)
    (tmp_path / "campaigns").mkdir(exist_ok=True)
    (tmp_path / "prompts").mkdir(exist_ok=True)
    return load_config(path)


def test_email_section_parses(tmp_path: Path) -> None:
    cfg = config_of(tmp_path).email
    assert cfg is not None
    assert (cfg.domain, cfg.from_address, cfg.default_relay) == (
        "mail.clinic.test",
        "news@clinic.test",
        "out",
    )
    assert (cfg.relays["out"].port, cfg.relays["out"].tls) == (2525, "none")
    assert (cfg.optout_list, cfg.bounce_list) == ("email-optout", "email-bounces")
    assert (cfg.retry_attempts, cfg.retry_after) == (5, 60.0)  # notifications' default
    retried = config_of(tmp_path, BASE.replace("  relays:", "  retry: {after: 2m}\n  relays:"))
    assert retried.email is not None
    assert (retried.email.retry_attempts, retried.email.retry_after) == (5, 120.0)


EMAIL_ERRORS = [
    ("  domain: mail.clinic.test", "  domain: clinic", "email.domain", "like mail.example.com"),
    ('  from: "Clinic <news@clinic.test>"', "  from: nobody", "email.from", "Name <user@"),
    ("      port: 2525", "      port: 2525\n      tls: ssl", "email.relays.out.tls",
     "expected one of"),
    ("      host: 127.0.0.1", "      host: smtp.example.com\n      username: u\n"
     "      password: p", "email.relays.out.tls", "plaintext"),
    ("      port: 2525", "      port: 2525\n      username: u", "email.relays.out.password",
     "both"),
    ('      text: "Thanks {{ name }}"', '      text: "Thanks {{ name"', "email.templates.receipt",
     "text line 1"),
    ("  relays:", "  default_relay: other\n  relays:", "email.default_relay", "no relay"),
    ("  relays:", "  retry: {attempts: 0}\n  relays:", "email.retry.attempts", "at least 1"),
    ("  relays:", "  retry: {attempt: 3}\n  relays:", "email.retry.attempt", "attempts"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "field", "words"), EMAIL_ERRORS)
def test_email_section_errors_name_the_field(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    assert old in BASE
    with pytest.raises(ConfigError) as info:
        config_of(tmp_path, BASE.replace(old, new, 1))
    assert info.value.field == field and words in info.value.message, str(info.value)


def campaign_of(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    config = config_of(tmp_path)
    path = tmp_path / "campaigns" / "spring.yaml"
    path.write_text(text)
    return parse_email_campaign(_read_mapping(path), path, config)


def test_email_campaign_parses(tmp_path: Path) -> None:
    cfg = campaign_of(tmp_path, CAMPAIGN)
    assert (cfg.name, cfg.relay, cfg.sender) == ("spring", "out", "Clinic <news@clinic.test>")
    assert cfg.template.columns == {"first_name"}
    assert cfg.checked_dnc_lists("email-bounces") == ("internal", "email-optout", "email-bounces")
    assert (cfg.retry_attempts, cfg.retry_after) == (5, 300.0)
    cfg = campaign_of(tmp_path, CAMPAIGN.replace("channel: email", "channel: email\nretry: "
                                                 "{attempts: 2}"))  # fmt: skip
    assert (cfg.retry_attempts, cfg.retry_after) == (2, 300.0)


CAMPAIGN_ERRORS = [
    ('subject: "Spring news for {{ first_name }}"\n', "", "subject", "missing"),
    ('html: "<p>Hello {{ first_name }}</p>"\n', "", "text", "text part"),
    ("channel: email", "channel: email\ntemplate_name: nope", "subject",
     "not both"),
    ("channel: email", "channel: email\nrelay: nope", "relay", "no relay 'nope'"),
    ("channel: email", "channel: email\nfrom: bad", "from", "Name <user@"),
    ("{{ first_name }}</p>", "{{ first_name </p>", "html", "html line 1"),
    ("channel: email", "channel: email\nthroughput: {messages_per_second: 0}",
     "throughput.messages_per_second", "above 0"),
    ("channel: email", "channel: email\nretry: {attempts: 3, after: soon}", "retry.after",
     "duration"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "field", "words"), CAMPAIGN_ERRORS)
def test_email_campaign_errors_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    assert old in CAMPAIGN
    with pytest.raises(ConfigError) as info:
        campaign_of(tmp_path, CAMPAIGN.replace(old, new, 1))
    assert info.value.field == field and words in info.value.message, str(info.value)
    assert info.value.file.endswith("spring.yaml")


def test_templates_escape_html_only_and_keep_subjects_on_one_line() -> None:
    t = compile_email_template(EmailTemplate("Hi {{ name }}", "Dear {{ name }}",
                                             "<p>Dear {{ name }}</p>"))  # fmt: skip
    subject, text, html = t.render({"name": "<Ann & Co>"})
    assert subject == "Hi <Ann & Co>" and text == "Dear <Ann & Co>"
    assert html == "<p>Dear &lt;Ann &amp; Co&gt;</p>"
    with pytest.raises(MissingColumn, match="'name'"):
        t.render({"name": " "})
    with pytest.raises(TemplateError, match="several lines"):
        t.render({"name": "x\nBcc: victim@example.com"})
    with pytest.raises(TemplateError, match="unsafe"):
        compile_email_template(EmailTemplate("{{ x.__class__.__mro__ }}", "t")).render({"x": "a"})


def test_built_message_has_the_one_click_headers_and_both_parts() -> None:
    raw = build_message(
        sender="Clinic <news@clinic.test>", to="ann@dest.test", subject="Grüße", text="Hallo",
        html="<p>Hallo</p>", message_id="<1.x@mail.clinic.test>",
        date=datetime(2026, 12, 3, 12, 0, tzinfo=UTC), reply_to="reply+t@mail.clinic.test",
        unsubscribe=("https://mail.clinic.test/u/t0k", "unsubscribe+t0k@mail.clinic.test"),
    )  # fmt: skip
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Grüße" and msg["Date"] == "Thu, 03 Dec 2026 12:00:00 +0000"
    assert msg["List-Unsubscribe"] == (
        "<https://mail.clinic.test/u/t0k>, <mailto:unsubscribe+t0k@mail.clinic.test>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_tokens_are_signed_and_single_purpose(tmp_path: Path) -> None:
    secret = load_secret(tmp_path / "s" / "email.secret")
    assert (tmp_path / "s" / "email.secret").stat().st_mode & 0o777 == 0o600
    assert load_secret(tmp_path / "s" / "email.secret") == secret  # kept, not remade
    token = make_token(secret, UNSUBSCRIBE, 12345)
    assert token.isalnum() and token == token.lower()
    assert read_token(secret, UNSUBSCRIBE, token) == 12345
    assert read_token(secret, UNSUBSCRIBE, token.upper()) == 12345
    assert read_token(secret, BOUNCE, token) is None  # made for another purpose
    assert read_token(b"another secret!!", UNSUBSCRIBE, token) is None
    # Any one character changed, anywhere (the last one included, whose
    # trailing bit base32 leaves unused), is refused.
    for i, ch in enumerate(token):
        for other in "abcdefghijklmnopqrstuvwxyz234567":
            if other != ch:
                changed = token[:i] + other + token[i + 1 :]
                assert read_token(secret, UNSUBSCRIBE, changed) is None, changed
    for junk in ("", "!!", "a" * 200, "zzzz"):
        assert read_token(secret, UNSUBSCRIBE, junk) is None
