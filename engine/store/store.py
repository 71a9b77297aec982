"""The store: outdial's system of record, behind an async API.

Every method's database work runs on the store's one thread (writer.py),
never on the event loop. The dialer's writes (`create_attempt`,
`update_attempt`, `set_contact_state`) are group-committed; `create_attempt`
returns only once its row is committed, so the attempt is on disk before its
INVITE leaves, and a crash loses nothing (`reconcile_in_flight` then closes
what was left open).

SQLite (default): WAL journal, foreign keys on, `synchronous=NORMAL`. A
committed transaction survives the process being killed (kill -9, a crash):
it is in the WAL file, which the OS holds. It may be lost on power loss or
an OS crash; add `?synchronous=full` to the URL to fsync every commit (group
commit keeps that affordable: one fsync per group, not per attempt).
PostgreSQL (`postgresql+psycopg://...`) takes the same code.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.engine import URL

from engine import contacts as contact_io
from engine.errors import BadRequest
from engine.store import agentdb, amdsampledb, compliancedb, dnc, prepared, queries, reports, ruledb
from engine.store.dialorder import spec_of
from engine.store.emailstore import EmailMethods
from engine.store.messagestore import MessageMethods
from engine.store.phones import PhoneNormalizer
from engine.store.types import (
    ATTEMPT_TIME_FIELDS,
    ATTEMPT_UPDATE_FIELDS,
    CAMPAIGN_STATES,
    CONTACT_STATES,
    AttemptIntent,
    DialCandidate,
    DncHit,
    ImportSummary,
    dial_queue,
)
from engine.store.writer import Writer

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_SYNCHRONOUS = {"off": "OFF", "normal": "NORMAL", "full": "FULL", "extra": "EXTRA"}
_SYNC_CHUNK = 20_000  # contact ids per sync transaction


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _names(lists: Sequence[str] | None) -> tuple[str, ...] | None:
    if lists is None:
        return None
    if isinstance(lists, str):
        raise TypeError("lists: give a sequence of list names, not one string")
    return tuple(lists)


def _aware(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise TypeError(f"{name}: expected an aware datetime, got {value!r}")


def build_engine(url: str) -> Engine:
    """The SQLAlchemy engine for `url`, with SQLite's pragmas and the
    `synchronous` option taken out of the query string."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        engine = create_engine(parsed)
        prepared.install(engine)
        return engine
    mode = parsed.query.get("synchronous", "normal")
    if isinstance(mode, tuple):
        mode = mode[-1]
    if mode.lower() not in _SYNCHRONOUS:
        raise BadRequest(f"store URL: synchronous={mode!r}; expected normal, full, extra or off")
    pragma = _SYNCHRONOUS[mode.lower()]
    parsed = parsed.difference_update_query(["synchronous"])
    _make_parent(parsed)
    engine = create_engine(parsed)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        for statement in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={pragma}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=10000",
            "PRAGMA cache_size=-32768",  # 32 MiB of page cache
            # Checkpoint every ~40 MiB of WAL instead of 4: each checkpoint
            # costs two fsyncs, and a big import otherwise pays them per batch.
            "PRAGMA wal_autocheckpoint=10000",
        ):
            cursor.execute(statement)
        cursor.close()

    prepared.install(engine)
    return engine


def _make_parent(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def migrate(conn: Connection) -> None:
    """Bring the schema to the newest revision (Alembic, configured in code)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


class Store(MessageMethods, EmailMethods):
    """The system of record (see the module docstring); open with `Store.open`."""

    def __init__(self, url: str, writer: Writer) -> None:
        self.url = url
        self._writer = writer
        self._ids = queries.CampaignIds()  # used on the store thread only

    @classmethod
    async def open(cls, url: str, *, commit_interval: float = 0.0) -> Store:
        """Connect, start the store thread and migrate to the newest schema.
        `url`: "sqlite:///var/outdial.db" (parent directory created;
        `?synchronous=full` for power-loss durability) or a PostgreSQL URL.
        `commit_interval`: minimum seconds between group commits (see writer.py)."""
        engine = build_engine(url)
        writer = Writer(engine, commit_interval=commit_interval)
        writer.start()
        store = cls(make_url(url).render_as_string(hide_password=True), writer)
        try:
            await writer.run(migrate)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Commit everything queued, stop the thread, release the database."""
        await self._writer.stop()
        self._writer.engine.dispose()

    @property
    def commits(self) -> int:
        """Group commits made so far."""
        return self._writer.commits

    # ------------------------------------------------------ lists, contacts

    async def ensure_list(self, name: str) -> int:
        return await self._writer.run(partial(queries.ensure_list, name=name, now=_utcnow()))

    async def lists(self) -> list[dict[str, Any]]:
        """[{"name", "contacts", "created_at"}], by name."""
        return await self._writer.run(queries.lists)

    async def import_contacts(
        self,
        list_name: str,
        csv_path: Path,
        *,
        phone_columns: Sequence[str] | None = None,
        region: str = "US",
        error_path: Path | None = None,
        encoding: str = "utf-8",
    ) -> ImportSummary:
        """Stream a CSV file into a list (created if new); see engine.contacts.
        Campaigns under way on the list pick the new contacts up."""
        queries.check_name("list", list_name)
        cancel = threading.Event()
        work = partial(
            contact_io.import_csv,
            self._writer.submit,
            list_name,
            Path(csv_path),
            phone_columns=phone_columns,
            region=region,
            error_path=error_path,
            encoding=encoding,
            cancel=cancel,
        )
        try:
            summary = await asyncio.to_thread(work)
        except asyncio.CancelledError:
            cancel.set()  # stop after the batch in progress
            raise
        await self._enrol_list(list_name)
        return summary

    async def _enrol_list(self, list_name: str) -> None:
        for campaign in await self.campaigns():
            if campaign["list"] == list_name and campaign["state"] != "completed":
                await self.sync_campaign_contacts(campaign["name"])

    async def add_contact(
        self,
        list_name: str,
        phones: Sequence[str],
        attributes: Mapping[str, str] | None = None,
        *,
        region: str = "US",
        priority: int = 0,
        top: bool = False,
        external_id: str | None = None,
    ) -> int:
        """Add one contact; BadRequest on an invalid number, Conflict if a
        number is in the list already. `top=True` puts it ahead of every
        contact of the list. Campaigns under way on the list include it."""
        if not phones:
            raise BadRequest("phones: give at least one phone number")
        normalizer = PhoneNormalizer(region)
        numbers = list(dict.fromkeys(normalizer.normalize(p) for p in phones))
        attrs = {str(k): str(v) for k, v in (attributes or {}).items()}
        return await self._writer.run(
            partial(
                queries.add_contact,
                list_name=list_name,
                phones=numbers,
                attributes=attrs,
                priority=priority,
                top=top,
                external_id=external_id,
                now=_utcnow(),
            )
        )

    async def export_list(self, list_name: str, out_path: Path) -> int:
        """Write the list as CSV with each contact's latest campaign state;
        returns the rows written."""
        work = partial(contact_io.export_csv, self._writer.submit, list_name, Path(out_path))
        return await asyncio.to_thread(work)

    async def contact(self, contact_id: int) -> dict[str, Any]:
        """The contact with its phones, attributes and per-campaign state."""
        return await self._writer.run(partial(queries.contact, contact_id=contact_id))

    # ------------------------------------------------------------ campaigns

    async def upsert_campaign(
        self, name: str, list_name: str, definition: Mapping[str, Any]
    ) -> int:
        """Create (state "stopped") or update a campaign; its list is created
        if new. Conflict if it would switch lists after dialling began. When
        its `sort` changed, the sort keys of its contacts are recomputed."""
        queries.check_name("campaign", name)

        def work(conn: Connection) -> tuple[int, bool]:
            self._ids.forget(name)
            before = ruledb.stored_spec(conn, name)
            cid = queries.upsert_campaign(conn, name, list_name, definition, _utcnow())
            return cid, before is not None and before != spec_of(definition)

        cid, resort = await self._writer.run(work)
        if resort:
            span = await self._writer.run(partial(ruledb.enrolled_range, ids=self._ids, name=name))
            for low in range(span[0], span[1] + 1, _SYNC_CHUNK) if span else ():
                await self._writer.run(partial(queries.rekey_range, ids=self._ids, name=name,
                                               low=low, high=low + _SYNC_CHUNK - 1))  # fmt: skip
        return cid

    async def campaign(self, name: str) -> dict[str, Any]:
        rows = await self._writer.run(partial(queries.campaign_rows, name=name))
        return rows[0]

    async def campaigns(self) -> list[dict[str, Any]]:
        return await self._writer.run(queries.campaign_rows)

    async def set_campaign_state(self, name: str, state: str) -> None:
        if state not in CAMPAIGN_STATES:
            raise BadRequest(
                f"state: {state!r}; expected one of {', '.join(sorted(CAMPAIGN_STATES))}"
            )
        await self._writer.run(
            partial(queries.set_campaign_state, name=name, state=state, now=_utcnow())
        )

    # -------------------------------------------------------------- dialing

    async def sync_campaign_contacts(self, campaign: str) -> int:
        """Enrol every contact of the campaign's list that is not enrolled yet
        (state "pending"); returns how many. Done in slices of contact ids,
        each its own transaction, so the dialer's commits are never held up."""

        def bounds(conn: Connection) -> tuple[int, int] | None:
            _, lid = self._ids.get(conn, campaign)
            return queries.contact_id_range(conn, lid)

        span = await self._writer.run(bounds)
        if span is None:
            return 0
        added, now = 0, _utcnow()
        for low in range(span[0], span[1] + 1, _SYNC_CHUNK):
            added += await self._writer.run(
                partial(
                    queries.sync_range,
                    ids=self._ids,
                    name=campaign,
                    low=low,
                    high=min(low + _SYNC_CHUNK - 1, span[1]),
                    now=now,
                )
            )
        return added

    async def due_contacts(
        self, campaign: str, now: datetime, limit: int, exclude: Collection[int] = ()
    ) -> list[DialCandidate]:
        """Up to `limit` contacts to dial now: "pending", or "retry" with
        next_attempt_at <= now; by priority (highest first), then position."""
        _aware("now", now)
        work = partial(
            queries.due_contacts,
            ids=self._ids,
            name=campaign,
            now=now,
            limit=limit,
            exclude=tuple(exclude),
        )
        while True:  # None: a slice of a retry backlog was promoted, ask again
            due = await self._writer.run(work)
            if due is not None:
                return due

    async def create_attempt(self, attempt: AttemptIntent) -> int:
        """Insert the attempt; returns its id once the row is committed."""
        _aware("created_at", attempt.created_at)
        return await self._writer.write_wait(
            partial(queries.create_attempt, ids=self._ids, intent=attempt), "create_attempt"
        )

    def update_attempt(self, attempt_id: int, **fields: Any) -> None:
        """Queue changes to an attempt for the next group commit."""
        unknown = set(fields) - ATTEMPT_UPDATE_FIELDS
        if unknown:
            raise TypeError(f"update_attempt: unknown fields {', '.join(sorted(unknown))}")
        for name in ATTEMPT_TIME_FIELDS & set(fields):
            _aware(name, fields[name])
        if isinstance(fields.get("local_time"), datetime):
            local: datetime = fields["local_time"]
            if local.tzinfo is None:
                raise TypeError("local_time: a naive time (whose zone?); give it its offset")
            fields["local_time"] = local.isoformat()
        if fields.get("ivr_path") is not None and not isinstance(fields["ivr_path"], str):
            fields["ivr_path"] = json.dumps(fields["ivr_path"], default=str)
        if fields:
            self._writer.write(
                partial(queries.update_attempt, attempt_id=attempt_id, fields=fields),
                f"update_attempt {attempt_id}",
            )

    def set_contact_state(
        self,
        campaign: str,
        contact_id: int,
        *,
        state: str,
        next_attempt_at: datetime | None = None,
        last_result: str | None = None,
        skip_reason: str | None = None,
        attempts_delta: int = 0,
    ) -> None:
        """Queue a contact's new state in a campaign for the next group commit.
        `next_attempt_at` is always set (None clears it, except that a retry
        without a time is due now); `last_result` and `skip_reason` only when
        given."""
        if state not in CONTACT_STATES:
            raise ValueError(f"state: {state!r}; expected one of {sorted(CONTACT_STATES)}")
        _aware("next_attempt_at", next_attempt_at)
        now = _utcnow()
        if state == "retry" and next_attempt_at is None:
            next_attempt_at = now  # a retry without a time is due at once
        values: dict[str, Any] = {
            "state": state,
            "next_attempt_at": next_attempt_at,
            "dial_queue": dial_queue(state, next_attempt_at, now),
            "updated_at": now,
        }
        if last_result is not None:
            values["last_result"] = last_result
        if skip_reason is not None:
            values["skip_reason"] = skip_reason
        elif state == "in_flight":
            values["skip_reason"] = None  # a deferral's reason no longer holds
        self._writer.write(
            partial(
                queries.set_contact_state,
                ids=self._ids,
                name=campaign,
                contact_id=contact_id,
                values=values,
                attempts_delta=attempts_delta,
            ),
            f"set_contact_state {campaign}/{contact_id}",
        )

    # Campaign rules (ruledb.py): queued for the next group commit, like the state.

    def set_contact_columns(self, contact_id: int, columns: Mapping[str, str | None]) -> None:
        """Write the contact's columns (None removes one): a rule's `set`."""
        work = partial(ruledb.set_columns, ids=self._ids, contact_id=contact_id,
                       columns=dict(columns), now=_utcnow())  # fmt: skip
        self._writer.write(work, f"set_contact_columns {contact_id}")

    def set_contact_priority(self, campaign: str, contact_id: int, priority: int) -> None:
        """The contact's priority in one campaign: a rule's `priority`."""
        work = partial(ruledb.set_priority, ids=self._ids, name=campaign, contact_id=contact_id,
                       priority=priority, now=_utcnow())  # fmt: skip
        self._writer.write(work, f"set_contact_priority {campaign}/{contact_id}")

    def move_contact(self, campaign: str, contact_id: int, target: str, reason: str) -> None:
        """The contact leaves `campaign` (done) for `target` (same list): a rule's `move_to`."""
        work = partial(ruledb.move_contact, ids=self._ids, name=campaign, contact_id=contact_id,
                       target=target, reason=reason, now=_utcnow())  # fmt: skip
        self._writer.write(work, f"move_contact {campaign}/{contact_id} -> {target}")

    async def reconcile_in_flight(self, now: datetime) -> list[dict[str, Any]]:
        """After a crash: attempts without an end become "interrupted" (ended
        `now`); contacts "in_flight" become "retry" due `now`, attempt counts
        unchanged. Returns the reconciled attempts (with "campaign")."""
        _aware("now", now)
        return await self._writer.run(partial(queries.reconcile_in_flight, now=now))

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self._writer.flush()

    # -------------------------------------------------------- do-not-contact
    # Several named lists (dnc.py); `list` defaults to "internal", the one
    # list of earlier versions. Every add writes a compliance ledger row.

    async def dnc_add(
        self,
        number: str | None = None,
        *,
        contact_id: int | None = None,
        list: str = dnc.DEFAULT_LIST,  # the command layer's name
        source: str = "manual",
        expires_at: datetime | None = None,
        note: str | None = None,
        region: str = "US",
        campaign: str | None = None,
    ) -> str | None:
        """Put a number (or a contact: all its numbers) on a list, replacing
        its entry there; returns the E.164 number (None for a contact). The
        ledger gets an `opt_out` row on an optout list, else `dnc_added`,
        with `source` and `campaign`. NotFound for an unknown list or contact."""
        _aware("expires_at", expires_at)
        e164 = self._dnc_target(number, contact_id, region)
        await self._writer.run(
            partial(dnc.add, list_name=list, number=e164, contact_id=contact_id, source=source,
                    expires_at=expires_at, note=note, now=_utcnow(), campaign=campaign)
        )  # fmt: skip
        return e164

    @staticmethod
    def _dnc_target(number: str | None, contact_id: int | None, region: str) -> str | None:
        if (number is None) == (contact_id is None):
            raise BadRequest("give a phone number or a contact id (one of them)")
        return None if number is None else PhoneNormalizer(region).normalize(number)

    async def dnc_remove(
        self,
        number: str | None = None,
        *,
        contact_id: int | None = None,
        list: str = dnc.DEFAULT_LIST,
        region: str = "US",
    ) -> bool:
        """Take a number (or contact) off one list; False if it was not on it."""
        e164 = self._dnc_target(number, contact_id, region)
        return await self._writer.run(
            partial(dnc.remove, list_name=list, number=e164, contact_id=contact_id)
        )

    async def dnc_check(
        self,
        number: str | None = None,
        now: datetime | None = None,
        *,
        contact_id: int | None = None,
        region: str = "US",
    ) -> list[dict[str, Any]]:
        """Every active entry, on any list, that blocks the number (its own,
        and those of contacts that have it) or the contact; [] if none."""
        _aware("now", now)
        e164 = self._dnc_target(number, contact_id, region)
        return await self._writer.run(
            partial(dnc.check, number=e164, contact_id=contact_id, now=now or _utcnow())
        )

    async def dnc_numbers(
        self, numbers: Collection[str], now: datetime, lists: Sequence[str] | None = None
    ) -> dict[str, DncHit]:
        """Which of these E.164 numbers are listed (unexpired at `now`) on one
        of `lists` (a campaign's dnc_lists plus its optout_list; None: on any
        list), each with the first of those lists that has it. NotFound if a
        list named does not exist (fail closed: an unknown list is never
        taken as empty)."""
        _aware("now", now)
        if not numbers:
            return {}
        return await self._writer.run(
            partial(dnc.listed, numbers=tuple(numbers), now=now, lists=_names(lists))
        )

    async def dnc_contact(
        self, contact_id: int, now: datetime | None = None, lists: Sequence[str] | None = None
    ) -> DncHit | None:
        """The contact's own entry (by contact id) on one of `lists`, or None."""
        found = await self.dnc_contacts([contact_id], now or _utcnow(), lists)
        return found.get(contact_id)

    async def dnc_contacts(
        self, contact_ids: Collection[int], now: datetime, lists: Sequence[str] | None = None
    ) -> dict[int, DncHit]:
        """`dnc_numbers` for contact entries."""
        _aware("now", now)
        if not contact_ids:
            return {}
        return await self._writer.run(
            partial(dnc.contacts_listed, contact_ids=tuple(contact_ids), now=now,
                    lists=_names(lists))
        )  # fmt: skip

    async def dnc_lists(self) -> list[dict[str, Any]]:
        """Every list: name, kind, created_at, active numbers and contacts, expired."""
        return await self._writer.run(partial(dnc.lists_of, now=_utcnow()))

    async def dnc_create_list(self, name: str, kind: str) -> dict[str, Any]:
        """A new list (Conflict if the name is taken)."""
        return await self._writer.run(partial(dnc.create_list, name=name, kind=kind, now=_utcnow()))

    async def dnc_missing_lists(self, names: Collection[str]) -> list[str]:
        """The names that are no list (a campaign refuses to start with any)."""
        return await self._writer.run(partial(dnc.missing_lists, names=tuple(names)))

    async def dnc_import(
        self,
        csv_path: Path,
        *,
        list: str = dnc.DEFAULT_LIST,
        column: str | None = None,
        source: str = "import",
        region: str = "US",
        error_path: Path | None = None,
    ) -> ImportSummary:
        """Stream a CSV of numbers (or contact ids) onto a list; see dnc.import_csv."""
        work = partial(
            dnc.import_csv,
            self._writer.submit,
            Path(csv_path),
            list_name=list,
            column=column,
            source=source,
            region=region,
            error_path=error_path,
        )
        return await asyncio.to_thread(work)

    async def dnc_export(self, list_name: str, out_path: Path) -> int:
        """Write a list as CSV (the import format); returns the entries written."""
        work = partial(dnc.export_csv, self._writer.submit, list_name, Path(out_path))
        return await asyncio.to_thread(work)

    # ---------------------------------------------------- compliance ledger

    def ledger(self, kind: str, **fields: Any) -> None:
        """Queue a compliance ledger row for the next group commit (in order
        with update_attempt and the rest; fire and forget). `kind`: one of
        call_placed, skip, deferral, abandon, opt_out, dnc_added, amd_mark
        (written by mark_amd_sample). Fields:
        source (required: dialer, ivr, agent:ID, sms, email, import,
        operator), at (default now), campaign, contact_id, number, rule (the
        rule or statute), detail (a JSON-able mapping), local_time (the
        contact's local time, an aware datetime or ISO text with offset).
        Bad fields raise here, not on the store thread."""
        row = compliancedb.ledger_row(kind, fields, _utcnow())
        self._writer.write(partial(compliancedb.append, rows=[row]), f"ledger {kind}")

    async def ledger_rows(
        self,
        campaign: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        kinds: Collection[str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Ledger rows in [since, until), oldest first (detail parsed)."""
        _aware("since", since)
        _aware("until", until)
        return await self._writer.run(
            partial(compliancedb.ledger_rows, campaign=campaign, since=since, until=until,
                    kinds=kinds, limit=limit)
        )  # fmt: skip

    async def compliance_report(
        self, campaign: str, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        """Abandon rate per legal window, calls outside hours, repeat calls
        after an abandon, skips, deferrals and opt-outs; see compliancedb."""
        _aware("since", since)
        _aware("until", until)
        return await self._writer.run(
            partial(compliancedb.report, campaign=campaign, since=since, until=until,
                    now=_utcnow())
        )  # fmt: skip

    # ---------------------------------------------------------- AMD samples

    def add_amd_sample(self, **values: Any) -> None:
        """Queue a recorded AMD sample (campaign, attempt_id, number, path,
        recorded_at) for the next group commit."""
        _aware("recorded_at", values["recorded_at"])
        self._writer.write(partial(amdsampledb.add_sample, values=values), "amd_sample")

    async def amd_samples(
        self, campaign: str, unmarked: bool = False, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """A campaign's AMD samples, unmarked first (see amdsampledb)."""
        return await self._writer.run(
            partial(amdsampledb.samples_of, campaign=campaign, unmarked=unmarked, limit=limit)
        )

    async def mark_amd_sample(self, attempt_id: int, mark: str, by: str) -> dict[str, Any]:
        """Mark an attempt's sample person or machine (again: re-marked), with
        an `amd_mark` ledger row in the same transaction. BadRequest for a bad
        mark or name, NotFound for an attempt without a sample."""
        mark, by = amdsampledb.check_mark(mark, by)

        def work(conn: Connection) -> dict[str, Any]:
            now = _utcnow()
            sample = amdsampledb.mark_sample(conn, attempt_id, mark, by, now)
            detail = {"attempt_id": attempt_id, "mark": mark, "previous": sample["previous"],
                      "path": sample["path"]}  # fmt: skip
            row = compliancedb.ledger_row("amd_mark", {
                "at": now, "campaign": sample["campaign"], "number": sample["number"],
                "rule": amdsampledb.FP_RULE, "detail": detail, "source": f"operator:{by}",
            }, now)  # fmt: skip
            compliancedb.append(conn, [row])
            return sample

        return await self._writer.run(work)

    async def amd_mark_counts(self, campaign: str) -> dict[str, int]:
        return await self._writer.run(partial(amdsampledb.mark_counts, campaign=campaign))

    # --------------------------------------------------------------- agents

    def record_agent_state(
        self,
        agent: str,
        state: str,
        at: datetime,
        *,
        reason: str | None = None,
        campaign: str | None = None,
        attempt_id: int | None = None,
    ) -> None:
        """Queue one agent state change (the history reporting reads)."""
        _aware("at", at)
        values = {"agent": agent, "state": state, "reason": reason, "campaign": campaign,
                  "attempt_id": attempt_id, "at": at}  # fmt: skip
        self._writer.write(
            partial(agentdb.record_agent_state, values=values), f"agent_state {agent}"
        )

    async def agent_history(
        self, agent: str | None = None, since: datetime | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        return await self._writer.run(
            partial(agentdb.agent_history, agent=agent, since=since, limit=limit)
        )

    async def last_agent_states(self) -> dict[str, str]:
        return await self._writer.run(agentdb.last_agent_states)

    async def add_agent_account(self, **values: Any) -> None:
        """Store an agent added by command (Conflict if the id or username exists)."""
        await self._writer.write_wait(
            partial(agentdb.add_agent_account, values=values), "add_agent_account"
        )

    async def remove_agent_account(self, agent_id: str) -> bool:
        return await self._writer.write_wait(
            partial(agentdb.remove_agent_account, agent_id=agent_id), "remove_agent_account"
        )

    async def agent_accounts(self) -> list[dict[str, Any]]:
        return await self._writer.run(agentdb.agent_accounts_of)

    async def record_abandon(self, **values: Any) -> int:
        """Write an abandon to the ledger; returns its id once committed."""
        for name in ("answered_at", "greeting_end_at", "at"):
            _aware(name, values[name])
        return await self._writer.write_wait(
            partial(agentdb.record_abandon, values=values), "record_abandon"
        )

    async def abandons(
        self, campaign: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        return await self._writer.run(
            partial(agentdb.abandons_of, campaign=campaign, since=since, limit=limit)
        )

    async def abandon_window(self, campaign: str, since: datetime) -> dict[str, Any]:
        return await self._writer.run(
            partial(agentdb.abandon_window, campaign=campaign, since=since)
        )

    async def abandoned_since(self, numbers: Collection[str], since: datetime) -> dict[str, Any]:
        if not numbers:
            return {}
        return await self._writer.run(
            partial(agentdb.abandoned_since, numbers=tuple(numbers), since=since)
        )

    async def calls_since(self, contact_id: int, since: datetime) -> list[datetime]:
        _aware("since", since)
        return await self._writer.run(
            partial(agentdb.calls_since, contact_id=contact_id, since=since)
        )

    async def attempt_history(self, contact_id: int) -> list[tuple[datetime, str, str | None, int]]:
        return await self._writer.run(partial(agentdb.attempt_history, contact_id=contact_id))

    async def add_callback(self, **values: Any) -> int:
        _aware("due_at", values["due_at"])
        return await self._writer.write_wait(
            partial(agentdb.add_callback, values=values), "add_callback"
        )

    async def due_callbacks(self, campaign: str, now: datetime, limit: int) -> list[dict[str, Any]]:
        return await self._writer.run(
            partial(agentdb.due_callbacks, campaign=campaign, now=now, limit=limit)
        )

    def set_callback(self, callback_id: int, **values: Any) -> None:
        self._writer.write(
            partial(agentdb.set_callback, callback_id=callback_id, values=values),
            f"callback {callback_id}",
        )

    async def reset_dialling_callbacks(self) -> int:
        return await self._writer.write_wait(
            agentdb.reset_dialling_callbacks, "reset_dialling_callbacks"
        )

    async def callbacks(
        self, campaign: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._writer.run(partial(agentdb.callbacks_of, campaign=campaign, state=state))

    # -------------------------------------------------------------- reports

    async def progress(self, campaign: str) -> dict[str, Any]:
        return await self._writer.run(partial(reports.progress, ids=self._ids, name=campaign))

    async def attempts(self, campaign: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The campaign's attempts in order (the first `limit`), every column,
        times in ISO-8601, plus "campaign"."""
        return await self._writer.run(
            partial(reports.attempts_of, ids=self._ids, name=campaign, limit=limit)
        )

    async def summary(self, campaign: str) -> dict[str, Any]:
        return await self._writer.run(partial(reports.summary, ids=self._ids, name=campaign))
