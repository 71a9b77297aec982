"""The SMS policy pieces on their own: the daemon's `sms:`/`http:` sections and
SMS campaign files (located errors), templates, keywords, decoding what a
handset sent, and the submit_sm bodies a message becomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from carriers.sms.encoding import Encoding, decode_gsm7, encode_gsm7, parse_concatenation, segment
from carriers.sms.smpp.pdu import CommandId, Pdu, decode, encode
from engine.config import ConfigError, DaemonConfig, load_config
from engine.sms.campaign import parse_sms_campaign
from engine.sms.channels import Outgoing, short_messages, source_address
from engine.sms.service import decode_mo, keyword_of
from engine.sms.template import MissingColumn, TemplateError, compile_template

BASE = """\
trunks:
  - name: carrier
    uri: sip:127.0.0.1:5070
http:
  listen: 127.0.0.1:8089
sms:
  accounts:
    smsc1:
      type: smpp
      host: 127.0.0.1
      port: 2775
      system_id: outdial
      password: secret
    agg:
      type: twilio
      account_sid: AC1
      auth_token: tok
  default_sender: "+15550100"
  senders:
    "+15550100":
      keywords: {HOURS: "Open 9-17."}
  templates:
    code: "Your code is {code}."
"""

CAMPAIGN = """\
name: flu
channel: sms
contact_list: patients
template: "Hi {first_name}, your flu shot is on {date}."
throughput: {messages_per_second: 20, segments_per_second: 40}
retry: {attempts: 2, after: 30s}
"""


def config_of(tmp_path: Path, text: str = BASE) -> DaemonConfig:
    path = tmp_path / "outdial.yaml"
    path.write_text(text)
    (tmp_path / "campaigns").mkdir(exist_ok=True)
    (tmp_path / "prompts").mkdir(exist_ok=True)
    return load_config(path)


def campaign_of(tmp_path: Path, text: str, config: DaemonConfig | None = None):  # type: ignore[no-untyped-def]
    from engine.config import _read_mapping

    path = tmp_path / "campaigns" / "flu.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return parse_sms_campaign(_read_mapping(path), path, config or config_of(tmp_path))


def test_sms_and_http_sections_parse(tmp_path: Path) -> None:
    cfg = config_of(tmp_path)
    assert cfg.sms is not None and cfg.http is not None
    assert cfg.http.public_url == "http://127.0.0.1:8089"
    smpp = cfg.sms.accounts["smsc1"]
    assert (smpp.type, smpp.port, smpp.window, smpp.binds) == ("smpp", 2775, 10, 1)
    assert cfg.sms.accounts["agg"].url == "https://api.twilio.com"
    assert cfg.sms.default_account == "smsc1" and cfg.sms.optout_list == "sms-optout"
    assert cfg.sms.senders["+15550100"].keywords == {"HOURS": "Open 9-17."}
    assert "secret" not in repr(smpp)  # secrets stay out of logs and reprs
    assert cfg.sms.accounts["agg"].refused_pause == 60.0
    assert (cfg.sms.notification_attempts, cfg.sms.notification_retry_after) == (3, 60.0)
    tuned = BASE.replace(
        "      auth_token: tok\n", "      auth_token: tok\n      refused_pause: 5m\n"
    )
    tuned += "  notification_retry: {attempts: 5, after: 10s}\n"
    cfg = config_of(tmp_path, tuned)
    assert cfg.sms is not None and cfg.sms.accounts["agg"].refused_pause == 300.0
    assert (cfg.sms.notification_attempts, cfg.sms.notification_retry_after) == (5, 10.0)


SMS_ERRORS = [
    ("      type: smpp", "      type: smtp", "sms.accounts.smsc1.type", "expected one of"),
    ("      port: 2775", "      port: 99999", "sms.accounts.smsc1.port", "1..65535"),
    ("      system_id: outdial", "      system_ig: outdial", "sms.accounts.smsc1.system_ig",
     "did you mean 'system_id'"),
    ("      auth_token: tok\n", "", "sms.accounts.agg.auth_token", "missing"),
    ('  default_sender: "+15550100"', '  default_account: nope', "sms.default_account",
     "no account 'nope'"),
    ('      keywords: {HOURS: "Open 9-17."}', '      keywords: {STOP: "no"}',
     "sms.senders.+15550100.keywords", "built in"),
    ('    code: "Your code is {code}."', '    code: "Your code is {code"', "sms.templates.code",
     "template line 1"),
    ("      auth_token: tok\n", "      auth_token: tok\n      refused_pause: never\n",
     "sms.accounts.agg.refused_pause", "'never'"),
    ('  default_sender: "+15550100"', '  notification_retry: {attempts: 0}',
     "sms.notification_retry.attempts", "at least 1"),
    ('  default_sender: "+15550100"', '  notification_retry: {tries: 2}',
     "sms.notification_retry.tries", "unknown"),
    ("  listen: 127.0.0.1:8089", "  listen: localhost", "http.listen", "HOST:PORT"),
    ("  listen: 127.0.0.1:8089", "  listen: example.com:80", "http.listen", "IP address"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "field", "words"), SMS_ERRORS)
def test_sms_section_errors_name_the_field(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    assert old in BASE
    with pytest.raises(ConfigError) as info:
        config_of(tmp_path, BASE.replace(old, new, 1))
    assert info.value.field == field and words in info.value.message, str(info.value)
    assert info.value.line is not None


def test_sms_campaign_parses(tmp_path: Path) -> None:
    cfg = campaign_of(tmp_path, CAMPAIGN)
    assert (cfg.name, cfg.account, cfg.sender) == ("flu", "smsc1", "+15550100")
    assert cfg.template is not None and cfg.template.columns == {"first_name", "date"}
    assert (cfg.messages_per_second, cfg.segments_per_second) == (20.0, 40.0)
    assert (cfg.retry_attempts, cfg.retry_after) == (2, 30.0)
    assert cfg.checked_dnc_lists == ("internal", "sms-optout")


CAMPAIGN_ERRORS = [
    ("contact_list: patients", "contact_list: ''", "contact_list", "must not be empty"),
    ("template: ", "templat: ", "templat", "did you mean 'template'"),
    ('template: "Hi {first_name}, your flu shot is on {date}."', "template_name: nope",
     "template_name", "no template 'nope'"),
    ("channel: sms", "channel: sms\nmessage_column: text", "message_column",
     "exactly one of"),
    ("channel: sms", "channel: sms\naccount: other", "account", "no SMS account 'other'"),
    ("channel: sms", "channel: sms\nsender: 'Clinic Reminders'", "sender", "11 letters"),
    ("channel: sms", "channel: sms\nmax_segments: 300", "max_segments", "255"),
    ("{messages_per_second: 20,", "{messages_per_second: 0,", "throughput.messages_per_second",
     "above 0"),
    ("retry: {attempts: 2, after: 30s}", "retry: {attempts: 2, after: soon}", "retry.after",
     "'soon'"),
    ("{date}.", "{date.", "template", "template line 1"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "field", "words"), CAMPAIGN_ERRORS)
def test_sms_campaign_errors_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    assert old in CAMPAIGN
    config = config_of(tmp_path)
    with pytest.raises(ConfigError) as info:
        campaign_of(tmp_path, CAMPAIGN.replace(old, new, 1), config)
    assert info.value.field == field and words in info.value.message, str(info.value)
    assert info.value.file.endswith("flu.yaml") and info.value.line is not None


def test_sms_campaign_without_an_sms_section_says_so(tmp_path: Path) -> None:
    config = config_of(tmp_path, BASE[: BASE.index("http:")])
    with pytest.raises(ConfigError, match="needs an `sms:` section"):
        campaign_of(tmp_path, CAMPAIGN, config)


def test_template_fills_columns_and_names_a_missing_one() -> None:
    t = compile_template("Hi {first_name|title}, {balance|default('nothing')} due on {date}.")
    assert t.render({"first_name": "ann", "date": "Monday"}) == "Hi Ann, nothing due on Monday."
    with pytest.raises(MissingColumn, match="'date'"):
        t.render({"first_name": "ann"})
    with pytest.raises(MissingColumn, match="'date'"):
        t.render({"first_name": "ann", "date": "   "})  # empty is as bad as missing
    with pytest.raises(TemplateError, match="unsafe"):
        compile_template("{x.__class__.__mro__}").render({"x": "a"})
    with pytest.raises(TemplateError, match="line 2"):
        compile_template("ok\n{broken")


@pytest.mark.parametrize(
    ("text", "word"),
    [("STOP", "STOP"), ("  stop \n", "STOP"), ("Stop.", "STOP"), ("stop please", None),
     ("", None), ("UNSUBSCRIBE!", "UNSUBSCRIBE"), ("help", "HELP")],
)  # fmt: skip
def test_keyword_is_a_whole_single_word_message(text: str, word: str | None) -> None:
    assert keyword_of(text) == word


def test_decode_mo_in_each_coding() -> None:
    assert decode_mo(encode_gsm7("STOP @ once"), 0x00, 0) == "STOP @ once"
    assert decode_mo("Grüße".encode("utf-16-be"), 0x08, 0) == "Grüße"
    assert decode_mo("café".encode("latin-1"), 0x03, 0) == "café"
    udh = bytes([5, 0, 3, 7, 2, 1])
    assert decode_mo(udh + b"part one", 0x00, 0x40) == "part one"


def test_source_addresses() -> None:
    assert source_address("+15550100") == ("15550100", 1, 1)
    assert source_address("447700900123") == ("447700900123", 1, 1)
    assert source_address("12345") == ("12345", 3, 0)
    assert source_address("Clinic") == ("Clinic", 5, 0)


@pytest.mark.parametrize(("text", "coding", "parts"),
                         [("a" * 160, 0x00, 1), ("a" * 161, 0x00, 2), ("€" * 80, 0x00, 1),
                          ("Привет " * 12, 0x08, 2)])  # fmt: skip
def test_short_messages_carry_the_segments(text: str, coding: int, parts: int) -> None:
    seg = segment(text)
    pdus = short_messages(Outgoing(300, "+447700900123", "Clinic", text, seg))
    assert len(pdus) == parts
    rebuilt = ""
    for index, sm in enumerate(pdus, start=1):
        assert sm.data_coding == coding and sm.registered_delivery == 1
        assert sm.destination_addr == "447700900123" and sm.source_addr_ton == 5
        wire = decode(encode(Pdu(CommandId.SUBMIT_SM, 1, 0, sm)))  # through the codec
        body = wire.body
        assert body == sm
        data = sm.short_message
        if parts > 1:
            assert sm.esm_class & 0x40
            concat = parse_concatenation(data)
            assert concat is not None and (concat.reference, concat.total, concat.sequence) == (
                300 % 256,
                parts,
                index,
            )
            data = concat.payload
        rebuilt += decode_gsm7(data) if coding == 0 else data.decode("utf-16-be")
    assert rebuilt == text
    assert seg.encoding is (Encoding.GSM7 if coding == 0 else Encoding.UCS2)
