"""The SMS channel in the daemon: accounts, campaigns, notifications, receipts,
inbound keywords and reply threading.

Start order (`start`): the accounts connect (an SMPP account keeps retrying
in the background), the opt-out list is made if missing, messages a crash
left `submitting` are put back in the queue flagged in doubt, the campaign
files load, and every message still owed to a carrier is handed to the
sender again. Nothing is made twice: a campaign has at most one message per
contact (a unique index), and a restart resumes the rows it finds.

Inbound (an SMPP deliver_sm, a Twilio-shaped webhook, a Kannel MO call): a
whole single-word message that is an opt-out word (STOP, STOPALL,
UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT) puts the number on the SMS
opt-out list (source `sms`) and sends the configured confirmation once;
HELP/INFO answer the help text; START/YES/UNSTOP take the number off the list
with a confirmation; a sender's own keywords answer their text. Every
inbound message is stored, threaded to the last outbound message to that
number within `reply_window`, and published on the event stream; an
interaction (an outbound message with replies) closes once the customer has
been quiet for `interaction_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carriers.sms.encoding import decode_gsm7, decode_ucs2, preview, segment
from carriers.sms.errors import SmsEncodingError
from carriers.sms.reassembly import MoMessage, Reassembler
from carriers.sms.smpp.events import (
    BindFailed,
    Bound,
    LinkClosed,
    MessageReceived,
    ReceiptReceived,
    SessionEvent,
)
from carriers.sms.smpp.receipt import MessageState
from engine.campaign_config import channel_files
from engine.config import ConfigError, DaemonConfig, _read_mapping
from engine.errors import BadRequest, InvalidState, NotFound
from engine.sms.campaign import SmsCampaignConfig, channel_of, parse_sms_campaign, sms_definition
from engine.sms.campaigns import RUNNING, STOPPED, SmsCampaignRunner
from engine.sms.channels import ESM_UDHI, Channel, make_channel
from engine.sms.config import HELP_WORDS, START_WORDS, STOP_WORDS, SmsConfig
from engine.sms.sender import DEFAULT_RETRY, Pending, Sender
from engine.sms.template import TemplateError, compile_template
from engine.store.phones import InvalidNumber, PhoneNormalizer
from engine.store.types import DncHit

if TYPE_CHECKING:
    from engine.bus import EventBus
    from engine.store import Store

log = logging.getLogger("outdial.sms")

_RECEIPT_STATUS = {
    MessageState.DELIVERED: "delivered",
    MessageState.EXPIRED: "expired",
    MessageState.DELETED: "undelivered",
    MessageState.UNDELIVERABLE: "undelivered",
    MessageState.REJECTED: "undelivered",
}
RESUME_PAGE = 1000
# A long reply whose segments stop coming is stored with what came after this long.
MO_REASSEMBLY_TIMEOUT = 120.0


def keyword_of(text: str) -> str | None:
    """The keyword a whole message is (trimmed, case-insensitive, one word), or None."""
    word = text.strip().upper()
    if not word or any(c.isspace() for c in word):
        return None
    return word.strip(".!")


def decode_mo(data: bytes, coding: int, esm_class: int) -> str:
    """A mobile-originated short message as text (a UDH, if any, dropped)."""
    if esm_class & ESM_UDHI and data:
        data = data[1 + data[0] :]
    if coding == 0x08:
        return decode_ucs2(data)
    if coding == 0x03:
        return data.decode("latin-1")
    if coding == 0x00 and all(b < 0x80 for b in data):
        return decode_gsm7(data)
    return data.decode("latin-1" if coding in (0x00, 0x01) else "utf-8", errors="replace")


class SmsService:
    def __init__(self, store: Store, bus: EventBus, config: DaemonConfig) -> None:
        self.store, self.bus, self.daemon = store, bus, config
        self.cfg: SmsConfig | None = config.sms
        self.channels: dict[str, Channel] = {}
        self.runners: dict[str, SmsCampaignRunner] = {}
        self.load_errors: list[str] = []
        self.normalizer = PhoneNormalizer("US")
        self.sender: Sender | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.receipts_unknown = 0
        # Per account: the segments of long replies until each is whole.
        self.reassembly: dict[str, Reassembler] = {}

    @property
    def enabled(self) -> bool:
        return self.cfg is not None

    def _config(self) -> SmsConfig:
        if self.cfg is None:
            raise InvalidState(
                f"SMS is not configured: add an `sms:` section to {self.daemon.path}"
            )
        return self.cfg

    # -------------------------------------------------------------- lifecycle

    async def start(self, taken: set[str] | None = None) -> None:
        """`taken`: the voice campaigns' names (an SMS campaign may not reuse one)."""
        if self.cfg is None:
            return
        cfg = self.cfg
        for account in cfg.accounts.values():
            self.channels[account.name] = make_channel(account, self.daemon.http, self._on_smpp)
        concurrency = {
            a.name: max(4, a.window * a.binds * 2) if a.type == "smpp" else 32
            for a in cfg.accounts.values()
        }
        self.sender = Sender(self.store, self.bus, self.channels, self._retry_of, concurrency)
        for channel in self.channels.values():
            await channel.start()
        await self._ensure_optout_list(cfg.optout_list)
        doubt = await self.store.reconcile_messages("sms")
        if doubt:
            log.warning(
                "sms: %d messages had no carrier answer before the restart; "
                "re-submitting them (flagged in doubt)",
                len(doubt),
            )
        await self.load_all(taken)
        await self._resume_open()
        self._spawn(self._close_threads_loop())

    async def _ensure_optout_list(self, name: str) -> None:
        if await self.store.dnc_missing_lists([name]):
            await self.store.dnc_create_list(name, "optout")
            log.info("sms: created the opt-out list %s", name)

    async def _resume_open(self) -> None:
        assert self.sender is not None
        after = 0
        while True:
            rows = await self.store.open_messages("sms", after, RESUME_PAGE)
            for row in rows:
                self.sender.schedule(Pending.of(row))
            if len(rows) < RESUME_PAGE:
                return
            after = int(rows[-1]["id"])

    async def resume_running(self) -> None:
        for runner in self.runners.values():
            stored = await self.store.campaign(runner.name)
            if stored["state"] == RUNNING:
                missing = await self.store.dnc_missing_lists(runner.cfg.checked_dnc_lists)
                if missing:
                    log.error(
                        "sms campaign %s not resumed: no do-not-contact list %s",
                        runner.name,
                        ", ".join(missing),
                    )
                    continue
                await runner.start()

    async def shutdown(self, grace: float) -> None:
        for runner in self.runners.values():
            await runner.shutdown()
        for account, parts in self.reassembly.items():  # half-received replies are kept
            for mo in parts.drain():
                await self._on_mo(account, mo)
        if self.sender is not None:
            await self.sender.drain(grace)
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for channel in self.channels.values():
            try:
                await channel.close()
            except Exception:
                log.exception("sms: closing account %s", channel.name)
        await self.store.flush()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _retry_of(self, campaign: str | None) -> tuple[int, float]:
        runner = self.runners.get(campaign) if campaign else None
        if runner is None:
            cfg = self.cfg
            if cfg is None:
                return DEFAULT_RETRY
            return cfg.notification_attempts, cfg.notification_retry_after
        return runner.cfg.retry_attempts, runner.cfg.retry_after

    # -------------------------------------------------------------- campaigns

    async def load_all(self, taken: set[str] | None = None) -> None:
        """Load every `channel: sms` file of campaigns_dir; a broken one is reported."""
        self.load_errors = []
        for file, top in channel_files(self.daemon.campaigns_dir, "sms"):
            try:
                cfg = parse_sms_campaign(top, file, self.daemon)
                if taken and cfg.name in taken:
                    raise top.error(
                        "name", f"campaign name {cfg.name!r} is taken by a voice campaign"
                    )
                if cfg.name in self.runners and self.runners[cfg.name].cfg.file != cfg.file:
                    raise top.error(
                        "name",
                        f"duplicate campaign name {cfg.name!r}, already "
                        f"defined in {self.runners[cfg.name].cfg.file}",
                    )
                await self._install(cfg)
            except ConfigError as exc:
                self.load_errors.append(str(exc))
                log.error("campaign file rejected: %s", exc)
                self.bus.publish("campaign.load_error", error=str(exc))

    def is_sms_file(self, path: Path) -> bool:
        try:
            return channel_of(_read_mapping(path)) == "sms"
        except ConfigError:
            return False

    async def load(self, path: Path, taken: set[str]) -> str:
        cfg = parse_sms_campaign(_read_mapping(path), path, self.daemon)
        if cfg.name in taken:
            raise ConfigError(
                str(path), None, "name", f"campaign name {cfg.name!r} is taken by a voice campaign"
            )
        await self._install(cfg)
        self.bus.publish("campaign.loaded", campaign=cfg.name, file=str(path), channel="sms")
        return cfg.name

    async def _install(self, cfg: SmsCampaignConfig) -> None:
        if self.sender is None:
            raise ConfigError(str(cfg.file), None, "channel", "SMS is not configured")
        await self.store.ensure_list(cfg.contact_list)
        await self.store.upsert_campaign(cfg.name, cfg.contact_list, sms_definition(cfg))
        runner = self.runners.get(cfg.name)
        if runner is not None:
            runner.configure(cfg)  # for the messages it makes from now on
            return
        runner = SmsCampaignRunner(self.store, self.bus, self.sender, cfg, self.daemon.legal_hours)
        stored = (await self.store.campaign(cfg.name))["state"]
        runner.state = STOPPED if stored == RUNNING else stored  # resume_running restarts it
        self.runners[cfg.name] = runner

    def runner(self, name: str) -> SmsCampaignRunner:
        runner = self.runners.get(name)
        if runner is None:
            raise NotFound(f"no SMS campaign {name!r}")
        return runner

    # ---------------------------------------------------------- notifications

    async def send(
        self,
        number: str,
        text: str | None = None,
        *,
        template: str | None = None,
        data: Mapping[str, str] | None = None,
        sender: str | None = None,
        account: str | None = None,
        region: str = "US",
        smart: bool = True,
        bypass_optout: bool = False,
    ) -> dict[str, Any]:
        """One message without a campaign: stored (committed) before this
        returns, then handed to the sender. BadRequest names what is wrong;
        a number on the SMS opt-out list is refused (InvalidState)."""
        cfg = self._config()
        assert self.sender is not None
        try:
            to = PhoneNormalizer(region).normalize(number)
        except InvalidNumber as exc:
            raise BadRequest(f"number: {exc}") from None
        if (text is None) == (template is None):
            raise BadRequest("give the text or a template (one of them)")
        if template is not None:
            source = cfg.templates.get(template)
            if source is None:
                known = ", ".join(sorted(cfg.templates)) or "none"
                raise BadRequest(f"template: no template {template!r} (known: {known})")
            try:
                text = compile_template(source).render(data or {})
            except TemplateError as exc:
                raise BadRequest(f"data: {exc} (template {template!r})") from None
        assert text is not None
        if not text.strip():
            raise BadRequest("text: empty message")
        name = account or cfg.default_account
        if name not in cfg.accounts:
            raise BadRequest(f"account: no SMS account {name!r} (known: {', '.join(cfg.accounts)})")
        source_addr = sender or cfg.default_sender
        if not source_addr:
            raise BadRequest("sender: missing (and no sms.default_sender in the daemon config)")
        try:
            seg = segment(text, smart=smart)
        except SmsEncodingError as exc:
            raise BadRequest(f"text: {exc}") from None
        values = {
            "channel": "sms",
            "address": to,
            "sender": source_addr,
            "account": name,
            "body": seg.text,
            "encoding": seg.encoding.value,
            "segments": len(seg.segments),
            "template": template,
        }
        if bypass_optout:
            message_id = await self.store.create_message(values)
        else:  # the opt-out check and the message in one commit
            created = await self.store.create_message_unless_listed(values, [cfg.optout_list])
            if isinstance(created, DncHit):
                raise InvalidState(f"{to} opted out of SMS ({created.reason})")
            message_id = created
        self.sender.schedule(Pending(message_id, to, source_addr, name, seg.text, seg=seg))
        self.bus.publish("sms.queued", id=message_id, to=to, segments=len(seg.segments))
        return {
            "id": message_id,
            "to": to,
            "status": "queued",
            "segments": len(seg.segments),
            "encoding": seg.encoding.value,
        }

    @staticmethod
    def preview(text: str, smart: bool = False) -> dict[str, Any]:
        try:
            p = preview(text, smart=smart)
        except SmsEncodingError as exc:
            raise BadRequest(f"text: {exc}") from None
        return {
            "encoding": p.encoding.value,
            "segments": p.segment_count,
            "capacity": p.capacity,
            "characters_per_segment": list(p.characters_per_segment),
            "forced_ucs2": [{"position": i, "character": c} for i, c in p.forced_ucs2],
            "replacements": [{"position": i, "from": o, "to": r} for i, o, r in p.replacements],
            "warnings": list(p.warnings),
            "summary": p.summary(),
        }

    # ------------------------------------------------------ receipts, inbound

    def _on_smpp(self, account: str, bind: str, event: SessionEvent) -> None:
        match event:
            case ReceiptReceived(receipt, _message):
                status = _RECEIPT_STATUS.get(receipt.state) if receipt.state else None
                detail = {"stat": receipt.stat, "err": receipt.error, "bind": bind}
                error = f"{receipt.stat} err:{receipt.error}" if status == "undelivered" else None
                self._spawn(
                    self.on_receipt(
                        account, receipt.message_id, status or "submitted", detail, error
                    )
                )
            case MessageReceived(message):
                parts = self.reassembly.setdefault(account, Reassembler(MO_REASSEMBLY_TIMEOUT))
                loop = asyncio.get_running_loop()
                whole = parts.add(message, loop.time())
                if whole is not None:
                    self._spawn(self._on_mo(account, whole))
                else:  # more segments to come: hand it over by the timeout in any case
                    loop.call_later(parts.timeout + 0.05, self._expire_mo, account)
            case Bound(system_id):
                self.bus.publish(
                    "sms.link", account=account, bind=bind, state="bound", smsc=system_id
                )
            case BindFailed() | LinkClosed():
                self.bus.publish(
                    "sms.link", account=account, bind=bind, state="down", reason=event.reason
                )

    def _expire_mo(self, account: str) -> None:
        parts = self.reassembly.get(account)
        if parts is None:
            return
        for mo in parts.expire(asyncio.get_running_loop().time()):
            self._spawn(self._on_mo(account, mo))

    async def _on_mo(self, account: str, mo: MoMessage) -> None:
        m = mo.message
        text = decode_mo(m.short_message, m.data_coding, m.esm_class)
        if mo.missing:
            log.warning(
                "sms: reply from %s on %s: segment(s) %s never came; stored as received",
                m.source_addr, account, ", ".join(map(str, mo.missing)),
            )  # fmt: skip
        await self.on_inbound(account, m.source_addr, m.destination_addr, text,
                              segments=mo.segments)  # fmt: skip

    async def on_receipt(
        self,
        account: str,
        carrier_id: str,
        status: str,
        detail: Any,
        error: str | None = None,
        *,
        patience: float = 0.0,
    ) -> dict[str, Any] | None:
        """Apply a receipt; one for an id no message has yet is tried again for
        `patience` s: an aggregator's webhook (another connection) can overtake
        its answer to the send, which is what records the id."""
        found = await self.store.apply_receipt(account, carrier_id, status, detail, error)
        waited, pause = 0.0, 0.05
        while found is None and waited < patience:
            await asyncio.sleep(pause)
            waited, pause = waited + pause, min(pause * 2, 0.5)
            found = await self.store.apply_receipt(account, carrier_id, status, detail, error)
        if found is None:
            self.receipts_unknown += 1
            log.warning("sms: receipt from %s for an id no message has: %s", account, carrier_id)
            self.bus.publish(
                "sms.receipt_unknown", account=account, carrier_id=carrier_id, status=status
            )
            return None
        if found["changed"]:
            self.bus.publish(
                "sms.status",
                id=found["id"],
                status=found["status"],
                to=found["address"],
                campaign=found["campaign"],
            )
        return found

    def _address(self, raw: str) -> str:
        text = raw.strip()
        digits = text.lstrip("+")
        if digits.isdigit() and len(digits) >= 10:
            return "+" + digits
        try:
            return self.normalizer.normalize(text)
        except InvalidNumber:
            return text  # a short code or an alphanumeric: kept as it came

    def _ours(self, to: str) -> str:
        """Our sender as the config spells it (an SMSC drops the + of E.164)."""
        cfg = self._config()
        bare = to.strip().lstrip("+")
        for known in (*cfg.senders, cfg.default_sender or ""):
            if known and known.lstrip("+") == bare:
                return known
        return self._address(to)

    async def on_inbound(
        self,
        account: str,
        from_: str,
        to: str,
        text: str,
        *,
        segments: int = 1,
        carrier_id: str | None = None,
    ) -> dict[str, Any]:
        """A message from a handset (`segments`: how many it came in; the
        aggregator's id, if it gives one): stored, threaded, keywords acted on.
        The same id again (a retried webhook) is neither stored nor acted on twice."""
        cfg = self._config()
        address, ours = self._address(from_), self._ours(to)
        word = keyword_of(text)
        kind: str | None = None
        reply: str | None = None
        custom = cfg.senders.get(ours)
        if word in STOP_WORDS:
            kind = "stop"
        elif word in HELP_WORDS:
            kind, reply = "help", cfg.help_reply
        elif word in START_WORDS:
            kind = "start"
        elif word is not None and custom is not None and word in custom.keywords:
            kind, reply = word.lower(), custom.keywords[word]
        since = datetime.now(UTC) - timedelta(seconds=cfg.reply_window)
        stored = await self.store.record_inbound(
            {
                "channel": "sms",
                "address": address,
                "sender": ours,
                "account": account,
                "body": text,
                "keyword": kind,
                "segments": segments,
                "carrier_id": carrier_id,
            },
            since,
        )
        if stored.get("duplicate"):
            log.info("sms: %s sent inbound message %s again; stored once", account, carrier_id)
            return stored
        if kind == "stop":
            reply = await self._opt_out(address, word or "STOP", ours)
        elif kind == "start":
            reply = await self._opt_in(address)
        self.bus.publish(
            "sms.inbound",
            id=stored["id"],
            **{"from": address},
            to=ours,
            text=text,
            keyword=kind,
            thread=stored["thread"],
        )
        if reply:
            try:
                await self.send(
                    address,
                    reply,
                    sender=ours if ours else None,
                    account=account,
                    bypass_optout=True,
                )
            except (BadRequest, InvalidState) as exc:
                log.warning("sms: cannot answer %s to %s: %s", kind, address, exc)
        return stored

    async def _opt_out(self, address: str, word: str, ours: str) -> str | None:
        cfg = self._config()
        listed = await self.store.dnc_numbers([address], datetime.now(UTC), lists=[cfg.optout_list])
        if address in listed:
            return None  # opted out already: one confirmation, not one per STOP
        try:
            await self.store.dnc_add(
                address, list=cfg.optout_list, source="sms", note=f"{word} to {ours}"
            )
        except BadRequest as exc:
            log.warning("sms: %s from %s could not be recorded: %s", word, address, exc)
            return None
        self.bus.publish("sms.opt_out", number=address, keyword=word, to=ours)
        return cfg.stop_reply

    async def _opt_in(self, address: str) -> str | None:
        cfg = self._config()
        try:
            removed = await self.store.dnc_remove(address, list=cfg.optout_list)
        except BadRequest:
            return None
        if removed:
            self.bus.publish("sms.opt_in", number=address)
        return cfg.start_reply

    async def _close_threads_loop(self) -> None:
        cfg = self._config()
        every = min(60.0, max(0.2, cfg.interaction_timeout / 4))
        while True:
            await asyncio.sleep(every)
            quiet = datetime.now(UTC) - timedelta(seconds=cfg.interaction_timeout)
            try:
                closed = await self.store.close_threads("sms", quiet)
            except Exception:
                log.exception("sms: closing interactions")
                continue
            for message_id in closed:
                self.bus.publish("sms.interaction_closed", id=message_id)

    # ---------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        if self.cfg is None:
            return {"enabled": False}
        return {
            "enabled": True,
            "accounts": {name: c.describe() for name, c in self.channels.items()},
            "campaigns": {name: r.state for name, r in self.runners.items()},
            "sending": self.sender.active if self.sender is not None else 0,
            "counts": dict(self.sender.counts) if self.sender is not None else {},
            "receipts_unknown": self.receipts_unknown,
            "load_errors": self.load_errors,
        }
