"""The email channel in the daemon: relays, DKIM keys, campaigns,
notifications, the one-click unsubscribe, and inbound mail (bounces,
complaints, replies).

Start (`start`): the secret that signs tokens is read (made on first start),
the DKIM keys load, the relays' connection pools start, the opt-out and
bounce lists are made if missing, messages a crash left `submitting` go back
in the queue flagged in doubt, campaign files load, every message still owed
to a relay is handed to the sender again, and the inbound listener starts.

Inbound (`on_envelope`), by the recipient our mail gave out:
`bounce+TOKEN@domain` (the VERP return path) takes DSNs and other bounces:
a hard bounce marks the message `bounced` and puts the address on the bounce
list, a soft one is a note in its history; an ARF complaint marks it
`complained` and opts the address out. `unsubscribe+TOKEN@domain` (the
List-Unsubscribe mailto) opts out. Anything else a person sends back
(`reply+TOKEN@domain`, or In-Reply-To/References naming one of our
Message-IDs) is stored as a reply threaded to the message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.campaign_config import channel_files
from engine.config import ConfigError, DaemonConfig, _read_mapping
from engine.email.campaign import EmailCampaignConfig, email_definition, parse_email_campaign
from engine.email.campaigns import EmailCampaignRunner, message_ref
from engine.email.compose import compile_email_template
from engine.email.config import EmailConfig, EmailTemplate
from engine.email.sender import DEFAULT_RETRY, EmailPending, EmailSender
from engine.email.tokens import BOUNCE, UNSUBSCRIBE, load_secret, read_token
from engine.errors import BadRequest, InvalidState, NotFound
from engine.messaging import RUNNING, STOPPED
from engine.sms.campaign import channel_of
from engine.sms.template import TemplateError
from engine.store.emaildnc import clean

if TYPE_CHECKING:
    from carriers.email.inbound import Envelope, InboundServer
    from carriers.email.smtp import SmtpPool
    from engine.bus import EventBus
    from engine.store import Store

log = logging.getLogger("outdial.email")
RESUME_PAGE = 1000


class EmailService:
    def __init__(self, store: Store, bus: EventBus, config: DaemonConfig) -> None:
        self.store, self.bus, self.daemon = store, bus, config
        self.cfg: EmailConfig | None = config.email
        self.pools: dict[str, SmtpPool] = {}
        self.runners: dict[str, EmailCampaignRunner] = {}
        self.load_errors: list[str] = []
        self.sender: EmailSender | None = None
        self.inbound: InboundServer | None = None
        self.secret = b""
        self.counts = {"bounces": 0, "complaints": 0, "replies": 0, "unsubscribes": 0,
                       "unmatched": 0}  # fmt: skip
        self._signer: Any = None

    @property
    def enabled(self) -> bool:
        return self.cfg is not None

    def _config(self) -> EmailConfig:
        if self.cfg is None:
            raise InvalidState(
                f"email is not configured: add an `email:` section to {self.daemon.path}"
            )
        return self.cfg

    def unsubscribe_base(self) -> str | None:
        cfg = self._config()
        if cfg.unsubscribe_url:
            return cfg.unsubscribe_url
        return self.daemon.http.public_url if self.daemon.http is not None else None

    # -------------------------------------------------------------- lifecycle

    async def start(self, taken: set[str] | None = None) -> None:
        if self.cfg is None:
            return
        from carriers.email.smtp import (
            RelayConfig,
            SmtpPermanentError,
            SmtpPool,
            SmtpTemporaryError,
        )

        cfg = self.cfg
        self.secret = load_secret(cfg.secret_file)
        keys = {}
        if cfg.dkim:
            from carriers.email.dkim import DkimKey
            from carriers.email.signer import Signer
        for entry in cfg.dkim:
            try:
                keys[entry.domain] = DkimKey.from_pem(entry.domain, entry.selector,
                                                      entry.key_file.read_bytes())  # fmt: skip
            except (OSError, ValueError) as exc:
                raise ConfigError(str(self.daemon.path), None, "email.dkim",
                                  f"{entry.key_file}: {exc}") from None  # fmt: skip
        self._signer = Signer() if keys else None
        for relay in cfg.relays.values():
            pool = SmtpPool(RelayConfig(
                name=relay.name, host=relay.host, port=relay.port, tls=relay.tls,
                username=relay.username, password=relay.password,
                connections=relay.connections,
                messages_per_connection=relay.messages_per_connection, timeout=relay.timeout,
                rate=relay.rate, per_domain_concurrency=relay.per_domain_concurrency,
                helo=cfg.domain, allow_plain_auth=relay.tls == "none",
            ))  # fmt: skip
            try:
                await pool.start()
            except (SmtpTemporaryError, SmtpPermanentError) as exc:
                # The daemon runs on: messages wait (deferred) until the relay answers.
                log.error("email: relay %s: %s", relay.name, exc)
                await pool.start(connect=False)
            self.pools[relay.name] = pool
        self.sender = EmailSender(
            self.store, self.bus, cfg, self.pools, self._signer, keys, self.secret,
            self.unsubscribe_base(), self._retry_of, self._reply_to_of,
        )  # fmt: skip
        for name in (cfg.optout_list, cfg.bounce_list):
            if await self.store.dnc_missing_lists([name]):
                await self.store.dnc_create_list(name, "optout")
        doubt = await self.store.reconcile_messages("email")
        if doubt:
            log.warning("email: %d messages had no relay answer before the restart; sending "
                        "them again (flagged in doubt)", len(doubt))  # fmt: skip
        await self.load_all(taken)
        await self._resume_open()
        if cfg.inbound is not None:
            from carriers.email.inbound import InboundServer

            host, port = cfg.inbound
            self.inbound = InboundServer(host, port, self.on_envelope, accept_rcpt=self._ours)
            await self.inbound.start()
            log.info("email: inbound listening on %s:%s", host, self.inbound.port)

    async def _resume_open(self) -> None:
        assert self.sender is not None
        after = 0
        while True:
            rows = await self.store.open_messages("email", after, RESUME_PAGE)
            for row in rows:
                self.sender.schedule(EmailPending.of(row))
            if len(rows) < RESUME_PAGE:
                return
            after = int(rows[-1]["id"])

    async def resume_running(self) -> None:
        for runner in self.runners.values():
            stored = await self.store.campaign(runner.name)
            if stored["state"] == RUNNING:
                await runner.start()

    async def shutdown(self, grace: float) -> None:
        for runner in self.runners.values():
            await runner.shutdown()
        if self.inbound is not None:
            await self.inbound.stop()
        if self.sender is not None:
            await self.sender.drain(grace)
        for pool in self.pools.values():
            with contextlib.suppress(Exception):
                await pool.close()
        if self._signer is not None:
            self._signer.close()
        await self.store.flush()

    def _retry_of(self, campaign: str | None) -> tuple[int, float]:
        runner = self.runners.get(campaign) if campaign else None
        if runner is not None:
            return runner.cfg.retry_attempts, runner.cfg.retry_after
        if self.cfg is not None:
            return self.cfg.retry_attempts, self.cfg.retry_after
        return DEFAULT_RETRY

    def _reply_to_of(self, campaign: str | None) -> str | None:
        runner = self.runners.get(campaign) if campaign else None
        if runner is not None:
            return runner.cfg.reply_to
        return self.cfg.reply_to if self.cfg is not None else None

    # -------------------------------------------------------------- campaigns

    async def load_all(self, taken: set[str] | None = None) -> None:
        self.load_errors = []
        for file, top in channel_files(self.daemon.campaigns_dir, "email"):
            try:
                cfg = parse_email_campaign(top, file, self.daemon)
                if taken and cfg.name in taken:
                    raise top.error("name", f"campaign name {cfg.name!r} is taken")
                await self._install(cfg)
            except ConfigError as exc:
                self.load_errors.append(str(exc))
                log.error("campaign file rejected: %s", exc)
                self.bus.publish("campaign.load_error", error=str(exc))

    def is_email_file(self, path: Path) -> bool:
        try:
            return channel_of(_read_mapping(path)) == "email"
        except ConfigError:
            return False

    async def load(self, path: Path, taken: set[str]) -> str:
        cfg = parse_email_campaign(_read_mapping(path), path, self.daemon)
        if cfg.name in taken:
            raise ConfigError(str(path), None, "name", f"campaign name {cfg.name!r} is taken")
        await self._install(cfg)
        self.bus.publish("campaign.loaded", campaign=cfg.name, file=str(path), channel="email")
        return cfg.name

    async def _install(self, cfg: EmailCampaignConfig) -> None:
        if self.sender is None or self.cfg is None:
            raise ConfigError(str(cfg.file), None, "channel", "email is not configured")
        await self.store.ensure_list(cfg.contact_list)
        await self.store.upsert_campaign(cfg.name, cfg.contact_list, email_definition(cfg))
        runner = self.runners.get(cfg.name)
        if runner is not None:
            runner.configure(cfg)
            return
        runner = EmailCampaignRunner(self.store, self.bus, self.sender, cfg, self.cfg.domain,
                                     self.cfg.bounce_list)  # fmt: skip
        stored = (await self.store.campaign(cfg.name))["state"]
        runner.state = STOPPED if stored == RUNNING else stored
        self.runners[cfg.name] = runner

    def runner(self, name: str) -> EmailCampaignRunner:
        runner = self.runners.get(name)
        if runner is None:
            raise NotFound(f"no email campaign {name!r}")
        return runner

    # ---------------------------------------------------------- notifications

    async def send(
        self,
        address: str,
        *,
        template: str | None = None,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        data: Mapping[str, str] | None = None,
        sender: str | None = None,
        relay: str | None = None,
    ) -> dict[str, Any]:
        """One email without a campaign, stored (committed) before this returns."""
        cfg = self._config()
        assert self.sender is not None
        try:
            to = clean(address)
        except BadRequest as exc:
            raise BadRequest(f"address: {exc}") from None
        if template is not None:
            if subject or text or html:
                raise BadRequest("give a template or subject/text/html, not both")
            source = cfg.templates.get(template)
            if source is None:
                known = ", ".join(sorted(cfg.templates)) or "none"
                raise BadRequest(f"template: no template {template!r} (known: {known})")
        else:
            if not subject or not (text or html):
                raise BadRequest("give a template, or a subject with text and/or html")
            source = EmailTemplate(subject, text, html)
        try:
            filled = compile_email_template(source).render(data or {})
        except TemplateError as exc:
            raise BadRequest(f"data: {exc}") from None
        relay_name = relay or cfg.default_relay
        if relay_name not in cfg.relays:
            raise BadRequest(f"relay: no relay {relay_name!r} (known: {', '.join(cfg.relays)})")
        now = datetime.now(UTC)
        subject_text, text_part, html_part = filled
        values = {
            "channel": "email", "address": to, "sender": sender or cfg.sender,
            "account": relay_name, "body": text_part or "", "html": html_part,
            "subject": subject_text, "message_ref": message_ref(cfg.domain),
            "template": template, "segments": 1, "created_at": now,
        }  # fmt: skip
        # The opt-out and bounce lists checked and the message written in one
        # transaction: an unsubscribe cannot land between the two.
        created = await self.store.create_message_unless_listed(
            values, [cfg.optout_list, cfg.bounce_list]
        )
        if not isinstance(created, int):
            raise InvalidState(f"{to} may not be emailed ({created.reason})")
        message_id = created
        self.sender.schedule(EmailPending.of({**values, "id": message_id}))
        self.bus.publish("email.queued", id=message_id, to=to)
        return {"id": message_id, "to": to, "status": "queued", "subject": subject_text}

    # -------------------------------------------------------------- unsubscribe

    def token_message(self, token: str) -> int | None:
        return read_token(self.secret, UNSUBSCRIBE, token)

    async def describe_token(self, token: str) -> dict[str, Any] | None:
        message_id = self.token_message(token)
        if message_id is None:
            return None
        return await self.store.email_outbound(message_id)

    async def unsubscribe(self, message_id: int, via: str) -> dict[str, Any]:
        """The message's address onto its campaign's opt-out list (source
        `unsubscribe`); the message is marked `unsubscribed`. Idempotent."""
        row = await self.store.email_outbound(message_id)
        if row is None:
            raise NotFound(f"no message {message_id}")
        runner = self.runners.get(row.get("campaign") or "")
        listname = runner.cfg.optout_list if runner is not None else self._config().optout_list
        await self.store.dnc_add_address(row["address"], list=listname, source="unsubscribe",
                                         note=f"{via}, message {message_id}",
                                         campaign=row.get("campaign"))  # fmt: skip
        if row["status"] != "unsubscribed":
            await self.store.message_status(message_id, "unsubscribed", {"via": via})
            self.counts["unsubscribes"] += 1
            self.bus.publish("email.unsubscribed", id=message_id, address=row["address"],
                             campaign=row.get("campaign"), via=via)  # fmt: skip
        return {"address": row["address"], "list": listname, "campaign": row.get("campaign")}

    # ------------------------------------------------------------------ inbound

    def _ours(self, rcpt: str) -> bool:
        cfg = self._config()
        local, _, domain = rcpt.strip("<> ").rpartition("@")
        return domain.lower() == cfg.domain and local.split("+", 1)[0].lower() in (
            cfg.bounce_local,
            "unsubscribe",
            "reply",
        )

    def _token_of(self, rcpt: str) -> tuple[str, int | None]:
        local = rcpt.strip("<> ").rpartition("@")[0]
        kind, _, token = local.partition("+")
        kind = kind.lower()
        purpose = UNSUBSCRIBE if kind == "unsubscribe" else BOUNCE
        return kind, read_token(self.secret, purpose, token) if token else None

    async def on_envelope(self, envelope: Envelope) -> None:
        from carriers.email.bounce import AutoReply, Bounce, Complaint, Reply, classify

        cfg = self._config()
        for rcpt in envelope.rcpt_tos:
            kind, message_id = self._token_of(rcpt)
            if kind == "unsubscribe":
                if message_id is not None:
                    await self.unsubscribe(message_id, "mailto")
                continue
            result = classify(envelope.data, envelope_from=envelope.mail_from, envelope_to=rcpt,
                              verp_domain=cfg.domain, verp_local=cfg.bounce_local)  # fmt: skip
            if isinstance(result, Bounce):
                await self._bounce(result, message_id)
            elif isinstance(result, Complaint):
                await self._complaint(result, message_id)
            elif isinstance(result, Reply | AutoReply):
                await self._reply(result, message_id, envelope, cfg)
            else:
                self.counts["unmatched"] += 1
                log.info("email: inbound message to %s not understood: %s", rcpt,
                         getattr(result, "reason", result))  # fmt: skip

    async def _find(self, message_id: int | None, refs: list[str]) -> int | None:
        if message_id is not None:
            return message_id
        since = datetime.now(UTC) - timedelta(seconds=self._config().reply_window)
        return await self.store.email_by_refs(refs, since)

    async def _bounce(self, bounce: Any, message_id: int | None) -> None:
        cfg = self._config()
        mid = await self._find(message_id, [bounce.original_message_id or ""])
        self.counts["bounces"] += 1
        for rec in bounce.recipients:
            detail = {"action": rec.action, "status": rec.status, "diagnostic": rec.diagnostic,
                      "recipient": rec.address}  # fmt: skip
            if mid is None:
                log.info("email: a bounce for %s matches no message", rec.address)
                continue
            if rec.hard:
                await self.store.message_status(mid, "bounced", detail,
                                                error=rec.diagnostic or rec.status)  # fmt: skip
                await self.store.dnc_add_address(rec.address, list=cfg.bounce_list,
                                                 source="bounce", note=rec.status)  # fmt: skip
                self.bus.publish("email.bounced", id=mid, to=rec.address, hard=True,
                                 status=rec.status)  # fmt: skip
            else:
                await self.store.message_event(mid, "bounce_soft", detail)
                self.bus.publish("email.bounced", id=mid, to=rec.address, hard=False,
                                 status=rec.status)  # fmt: skip

    async def _complaint(self, complaint: Any, message_id: int | None) -> None:
        cfg = self._config()
        mid = await self._find(message_id, [complaint.original_message_id or ""])
        self.counts["complaints"] += 1
        if mid is None:
            return
        row = await self.store.email_outbound(mid)
        address = complaint.recipient or (row["address"] if row else None)
        await self.store.message_status(mid, "complained", {"feedback": "abuse"})
        if address:
            await self.store.dnc_add_address(address, list=cfg.optout_list, source="complaint",
                                             note=f"message {mid}")  # fmt: skip
        self.bus.publish("email.complained", id=mid, address=address)

    async def _reply(self, reply: Any, message_id: int | None, envelope: Envelope,
                     cfg: EmailConfig) -> None:  # fmt: skip
        from carriers.email.bounce import AutoReply

        refs = list(getattr(reply, "thread_ids", ()))
        if not refs:  # an auto-reply: its In-Reply-To and References as they are
            refs = [reply.in_reply_to or "", *reply.references]
        mid = await self._find(message_id, refs)
        sender = (getattr(reply, "from_address", None) or envelope.mail_from or "").lower()
        if mid is None and sender:
            since = datetime.now(UTC) - timedelta(seconds=cfg.reply_window)
            mid = await self.store.email_last_to(sender, since)
        auto = isinstance(reply, AutoReply)
        values = {
            "address": sender or "unknown", "sender": cfg.domain, "account": "inbound",
            "body": getattr(reply, "text", "") or "", "subject": reply.subject,
            "message_ref": getattr(reply, "message_id", None),
            "keyword": "auto_reply" if auto else "reply", "segments": 1,
        }  # fmt: skip
        stored = await self.store.record_email_inbound(values, mid)
        self.counts["replies"] += 1
        self.bus.publish("email.reply", id=stored, thread=mid, **{"from": sender}, auto=auto)

    # ---------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        if self.cfg is None:
            return {"enabled": False}
        return {
            "enabled": True,
            "relays": {n: dataclasses.asdict(p.stats) for n, p in self.pools.items()},
            "campaigns": {n: r.state for n, r in self.runners.items()},
            "sending": self.sender.active if self.sender is not None else 0,
            "counts": {**(self.sender.counts if self.sender else {}), **self.counts},
            "inbound": f"{self.cfg.inbound[0]}:{self.inbound.port}"
            if self.inbound is not None and self.cfg.inbound
            else None,
            "load_errors": self.load_errors,
        }
