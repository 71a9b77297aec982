"""The store's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL.

The Alembic migrations in `engine/store/migrations/versions/` create exactly
these tables; `tests/unit/test_store.py` compares the migrated database with
this metadata so the two cannot drift apart.

Times: aware UTC datetimes in Python. SQLite has no time zone type, so they
are stored as naive UTC text (fixed-width, so they compare and sort as text);
PostgreSQL gets `timestamp with time zone`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

# SQLite only auto-increments an `INTEGER PRIMARY KEY` (the rowid alias), not BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive ones are refused
    (a naive time is a bug: whose local time would it be?)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(DateTime(timezone=dialect.name != "sqlite"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store takes aware (UTC) times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Compared bytewise (dialorder.py): SQLite's default BINARY collation, "C" in PostgreSQL.
SortKeyText = Text().with_variant(Text(collation="C"), "postgresql")

metadata = MetaData()

contact_lists = Table(
    "contact_lists",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    # JSON: {"phones": [column names], "attributes": [keys]} seen in this list,
    # in first-seen order; the export's header.
    Column("fields", Text, nullable=False, server_default="{}"),
    Column("created_at", UTCDateTime, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("list_id", Integer, ForeignKey("contact_lists.id"), nullable=False),
    Column("external_id", String(200)),
    # Import order within the list; a contact added with top=True gets min - 1.
    Column("position", BigInteger, nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("attributes", Text, nullable=False, server_default="{}"),  # JSON object of strings
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("list_id", "position", name="uq_contacts_list_position"),
)

contact_phones = Table(
    "contact_phones",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("contact_id", BigInteger, ForeignKey("contacts.id"), nullable=False),
    # Denormalised so that "this number is already in the list" is one index probe.
    Column("list_id", Integer, ForeignKey("contact_lists.id"), nullable=False),
    Column("number", String(20), nullable=False),  # E.164
    Column("column_name", String(200), nullable=False),
    Column("rank", SmallInteger, nullable=False),  # column order within the contact
    UniqueConstraint("list_id", "number", name="uq_contact_phones_list_number"),
    Index("ix_contact_phones_number", "number"),
    Index("ix_contact_phones_contact", "contact_id"),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("list_id", Integer, ForeignKey("contact_lists.id"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("definition", Text, nullable=False),  # JSON of the campaign file
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

campaign_contacts = Table(
    "campaign_contacts",
    metadata,
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), primary_key=True),
    Column("contact_id", BigInteger, ForeignKey("contacts.id"), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime),
    Column("last_result", String(32)),
    Column("skip_reason", Text),
    # Copies of the contact's priority and position, so that the dialer's
    # "next due contacts" query walks one index in order instead of sorting
    # a million joined rows every 100 ms.
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("position", BigInteger, nullable=False, server_default="0"),
    # READY (pending, or a retry whose time has come), WAITING (a retry
    # before its time), IDLE (in flight or finished): see queries.due_contacts.
    Column("dial_queue", SmallInteger, nullable=False, server_default="2"),
    Column("updated_at", UTCDateTime, nullable=False),
    # The campaign's `sort:` as one key (migration 0005; dialorder.py), and
    # the time of the contact's last attempt in this campaign.
    Column("sort_key", SortKeyText, nullable=False, server_default=""),
    Column("last_attempt_at", UTCDateTime),
    Index("ix_campaign_contacts_due", "campaign_id", "state", "next_attempt_at"),
    Index("ix_campaign_contacts_waiting", "campaign_id", "dial_queue", "next_attempt_at"),
    Index("ix_campaign_contacts_contact", "contact_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id"), nullable=False),
    Column("contact_id", BigInteger, ForeignKey("contacts.id"), nullable=False),
    Column("number", String(20), nullable=False),
    Column("trunk", String(200), nullable=False),
    Column("caller_id", String(64)),
    Column("call_id", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("invite_sent_at", UTCDateTime),
    Column("ringing_at", UTCDateTime),
    Column("answered_at", UTCDateTime),
    Column("ended_at", UTCDateTime),
    Column("result", String(32)),
    Column("sip_status", Integer),
    Column("reason", Text),
    Column("q850_cause", Integer),
    Column("ended_by", String(32)),
    Column("duration_ms", Integer),
    # Call analysis (migration 0002): what answered, when it was decided, the
    # voicemail beep, and when our message started (ms after the answer).
    Column("amd_result", String(16)),
    Column("amd_cause", String(64)),
    Column("amd_ms", Integer),
    Column("beep_end_ms", Integer),
    Column("message_started_ms", Integer),
    # Agents (migration 0003): who took the call, when it was bridged, how long
    # after the end of the person's greeting (47 CFR 64.1200(a)(7): under 2 s),
    # the greeting's end (ms after the answer) and the wrap-up code entered.
    Column("agent", String(64)),
    Column("bridged_at", UTCDateTime),
    Column("answer_to_agent_ms", Integer),
    Column("greeting_end_ms", Integer),
    Column("wrapup_code", String(64)),
    # Compliance (migration 0004): the contact's local time when the INVITE
    # left (ISO-8601 with its offset), and the IVR steps the caller went
    # through (JSON) with a one-line summary ("greet > main: 9 > optout > bye").
    Column("local_time", String(40)),
    Column("ivr_path", Text),
    Column("ivr_summary", Text),
    Index("ix_attempts_campaign", "campaign_id"),
    Index("ix_attempts_contact", "contact_id"),
)

# Contacts ready to dial, in dialling order (priority DESC, the sort key,
# position ASC): the index itself is in that order, so LIMIT n stops after n
# entries.
Index(
    "ix_campaign_contacts_ready",
    campaign_contacts.c.campaign_id,
    campaign_contacts.c.dial_queue,
    campaign_contacts.c.priority.desc(),
    campaign_contacts.c.sort_key,
    campaign_contacts.c.position,
)
# Attempts still open: what reconciliation after a crash looks for (partial,
# so it stays tiny however many attempts the table holds).
Index(
    "ix_attempts_open",
    attempts.c.ended_at,
    sqlite_where=attempts.c.ended_at.is_(None),
    postgresql_where=attempts.c.ended_at.is_(None),
)

# Every agent state change, with its time: reporting reads occupancy and
# idle time from here; the daemon keeps the live state in memory.
agent_states = Table(
    "agent_states",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("agent", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(200)),
    Column("campaign", String(200)),
    Column("attempt_id", BigInteger),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_agent_states_agent_at", "agent", "at"),
)

# Agents added through the command layer (the daemon config's `agents:` are
# not copied here). The password is what their phone's digest answers are
# checked against, like the config file holds it: protect the store as the
# config is protected.
agent_accounts = Table(
    "agent_accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("username", String(64), nullable=False, unique=True),
    Column("password", String(200)),
    Column("uri", String(500)),
    Column("campaigns", Text, nullable=False, server_default="[]"),  # JSON list
    Column("created_at", UTCDateTime, nullable=False),
)

# The abandon ledger: one row per call answered by a person that no agent
# took in time (47 CFR 64.1200(a)(7); Ofcom's persistent-misuse statement).
abandons = Table(
    "abandons",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("campaign", String(200), nullable=False),
    Column("attempt_id", BigInteger, nullable=False),
    Column("contact_id", BigInteger, nullable=False),
    Column("number", String(20), nullable=False),
    Column("answered_at", UTCDateTime, nullable=False),
    Column("greeting_end_at", UTCDateTime, nullable=False),
    Column("message_started_at", UTCDateTime),
    Column("reason", String(200), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_abandons_campaign_at", "campaign", "at"),
    Index("ix_abandons_number_at", "number", "at"),
)

# Callbacks an agent scheduled: a contact to call again at a time, for that
# agent (agent set) or for any agent of the campaign.
callbacks = Table(
    "callbacks",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("campaign", String(200), nullable=False),
    Column("contact_id", BigInteger, nullable=False),
    Column("number", String(20), nullable=False),
    Column("agent", String(64)),
    Column("due_at", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),  # pending, dialled, cancelled
    Column("created_by", String(64)),
    Column("attempt_id", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_callbacks_due", "campaign", "state", "due_at"),
)

# Do-not-contact lists (migration 0004): several per store, each of a kind
# (internal, optout, national, other); a campaign checks the lists its
# `dnc_lists` names plus its `optout_list`.
DNC_LIST_KINDS = ("internal", "optout", "national", "other")

dnc_lists = Table(
    "dnc_lists",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# One entry blocks a number (E.164) or a contact (every number of it), on one
# list; an expired entry is inert. `source`: free text (manual, ivr, agent:ID,
# sms, unsubscribe, import...).
dnc_entries = Table(
    "dnc_entries",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("list_id", Integer, ForeignKey("dnc_lists.id"), nullable=False),
    Column("number", String(20)),
    Column("contact_id", BigInteger),
    Column("source", String(64), nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("note", Text),
    CheckConstraint(
        "(number IS NULL) <> (contact_id IS NULL)", name="ck_dnc_entries_number_or_contact"
    ),
    UniqueConstraint("list_id", "number", name="uq_dnc_entries_list_number"),
    UniqueConstraint("list_id", "contact_id", name="uq_dnc_entries_list_contact"),
    Index("ix_dnc_entries_number", "number"),
    Index("ix_dnc_entries_contact", "contact_id"),
)

# The compliance ledger (migration 0004): append-only. Every call placed (with
# the contact's local time), skip, deferral, abandon, opt-out and DNC entry,
# each naming the rule that applied and what wrote it. The migration (and
# create_all, below) add triggers that refuse UPDATE and DELETE. A campaign
# rule's change to a contact (`set`, `priority`, `move_to`) is a rule_action;
# an operator's mark on an AMD sample (migration 0006) an amd_mark.
LEDGER_KINDS = (
    "call_placed", "skip", "deferral", "abandon", "opt_out", "dnc_added", "rule_action",
    "amd_mark",
)  # fmt: skip

compliance_ledger = Table(
    "compliance_ledger",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("campaign", String(200)),
    Column("contact_id", BigInteger),
    Column("number", String(20)),
    Column("kind", String(16), nullable=False),
    Column("rule", Text),
    Column("detail", Text),  # JSON object
    Column("source", String(64), nullable=False),
    Column("local_time", String(40)),  # ISO-8601 with offset, for call_placed
    Index("ix_compliance_ledger_campaign_at", "campaign", "at"),
    Index("ix_compliance_ledger_kind_at", "kind", "at"),
)

# AMD samples (migration 0006): the first seconds of a share of the calls AMD
# classified as machines, recorded for an operator to mark as a person or a
# machine; the marks give Ofcom's AMD false-positive estimate. One per attempt;
# a re-mark overwrites the mark here, and every mark is also a ledger row.
AMD_MARKS = ("person", "machine")

amd_samples = Table(
    "amd_samples",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("campaign", String(200), nullable=False),
    Column("attempt_id", BigInteger, nullable=False, unique=True),
    Column("number", String(20), nullable=False),
    Column("path", Text, nullable=False),  # the WAV file (8 kHz mono PCM16)
    Column("recorded_at", UTCDateTime, nullable=False),  # the answer
    Column("mark", String(8)),  # NULL until marked: person or machine
    Column("marked_by", String(64)),
    Column("marked_at", UTCDateTime),
    CheckConstraint("mark IS NULL OR mark IN ('person', 'machine')", name="ck_amd_samples_mark"),
    Index("ix_amd_samples_campaign_mark", "campaign", "mark"),
)

# Messages (migration 0007): every SMS (and, with the email channel, every
# email) we send or receive, one table and one status vocabulary for both
# channels. An outbound row is written, committed, before the message is handed
# to the carrier (intent before submit, as an attempt before its INVITE), and
# `submitting` is committed just before the PDU leaves: after a crash, a row
# still `submitting` has no carrier answer and is re-submitted with `in_doubt`
# set (the carrier may hold it twice); a row still `queued` was never handed
# over. Inbound rows (direction "in") are replies and keywords, threaded to
# the outbound message they answer (`thread_id`).
MESSAGE_CHANNELS = ("sms", "email")
MESSAGE_STATUSES = (
    "queued", "submitting", "deferred", "submitted", "rejected", "delivered", "undelivered",
    "failed", "expired", "bounced", "complained", "unsubscribed", "received",
)  # fmt: skip
# Statuses that still need the sender (the rest wait only for receipts, or nothing).
# `deferred`: a temporary failure (SMPP throttling, HTTP 429, SMTP 4xx) waiting for
# its retry time.
OPEN_MESSAGE_STATUSES = ("queued", "submitting", "deferred")

messages = Table(
    "messages",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("channel", String(8), nullable=False),
    Column("direction", String(3), nullable=False),  # out, in
    Column("campaign_id", Integer, ForeignKey("campaigns.id")),  # NULL: a notification
    Column("contact_id", BigInteger),
    Column("address", String(320), nullable=False),  # theirs: E.164 (SMS) or email address
    Column("sender", String(320), nullable=False),  # ours: short/long code, alphanumeric ID
    Column("account", String(64), nullable=False),  # the carrier account it went through
    Column("body", Text, nullable=False),
    Column("encoding", String(8)),  # gsm7, ucs2
    Column("segments", SmallInteger, nullable=False, server_default="1"),
    Column("template", String(200)),
    Column("subject", Text),  # email
    Column("html", Text),  # email: the HTML part (body holds the text part)
    Column("message_ref", String(255)),  # email: our Message-ID, for In-Reply-To threading
    Column("status", String(16), nullable=False),
    Column("carrier_id", String(100)),  # the SMSC's message id (submit_sm_resp)
    Column("error", Text),  # the last rejection or failure, as the carrier said it
    Column("tries", SmallInteger, nullable=False, server_default="0"),  # submits made
    Column("in_doubt", SmallInteger, nullable=False, server_default="0"),  # 1: re-submitted
    Column("next_attempt_at", UTCDateTime),  # a temporary failure's retry time
    Column("thread_id", BigInteger),  # inbound: the outbound message it answers
    Column("keyword", String(32)),  # inbound: the keyword it was (STOP, HELP, ...)
    Column("replies", Integer, nullable=False, server_default="0"),  # outbound: replies threaded
    Column("thread_closed_at", UTCDateTime),  # outbound: the interaction ended
    Column("created_at", UTCDateTime, nullable=False),
    Column("submitted_at", UTCDateTime),
    Column("final_at", UTCDateTime),  # delivered, undelivered, expired, rejected, failed
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_messages_campaign_status", "campaign_id", "status"),
    Index("ix_messages_address", "address", "direction", "created_at"),
    Index("ix_messages_ref", "message_ref"),
)
# One message per contact and campaign (its retries reuse the row), so a
# restart can never make a second one.
Index(
    "uq_messages_campaign_contact",
    messages.c.campaign_id,
    messages.c.contact_id,
    unique=True,
    sqlite_where=messages.c.campaign_id.is_not(None),
    postgresql_where=messages.c.campaign_id.is_not(None),
)
# Messages the sender still owes (tiny, however many were sent).
Index(
    "ix_messages_open",
    messages.c.status,
    messages.c.next_attempt_at,
    sqlite_where=messages.c.status.in_(OPEN_MESSAGE_STATUSES),
    postgresql_where=messages.c.status.in_(OPEN_MESSAGE_STATUSES),
)

# The carrier's id for each segment (part) of a message it accepted: a long
# SMS goes as several submit_sm, each answered with its own id and followed by
# its own receipt. A part with a row here was accepted; after a crash only the
# parts without one are submitted again.
message_parts = Table(
    "message_parts",
    metadata,
    Column("message_id", BigInteger, primary_key=True),
    Column("part", SmallInteger, primary_key=True),  # 1..segments
    Column("account", String(64), nullable=False),
    Column("carrier_id", String(100), nullable=False),
    Column("status", String(16), nullable=False),  # submitted, delivered, undelivered...
    Column("at", UTCDateTime, nullable=False),
    Index("ix_message_parts_carrier", "account", "carrier_id"),
)

# Every status a message went through, with its time and what said so.
message_events = Table(
    "message_events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("message_id", BigInteger, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", Text),
    Index("ix_message_events_message", "message_id", "id"),
)

# Email addresses on do-not-contact lists (an unsubscribe, a hard bounce, an
# upload): the lists are the same `dnc_lists`; numbers are in dnc_entries.
dnc_addresses = Table(
    "dnc_addresses",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("list_id", Integer, ForeignKey("dnc_lists.id"), nullable=False),
    Column("address", String(320), nullable=False),  # lower-cased
    Column("source", String(64), nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("note", Text),
    UniqueConstraint("list_id", "address", name="uq_dnc_addresses_list_address"),
    Index("ix_dnc_addresses_address", "address"),
)

APPEND_ONLY_MESSAGE = "compliance_ledger is append-only"
SQLITE_APPEND_ONLY = tuple(
    f"CREATE TRIGGER compliance_ledger_no_{verb.lower()} BEFORE {verb} ON compliance_ledger "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
    for verb in ("UPDATE", "DELETE")
)
POSTGRESQL_APPEND_ONLY = (
    "CREATE FUNCTION compliance_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$",
    "CREATE TRIGGER compliance_ledger_append_only BEFORE UPDATE OR DELETE ON "
    "compliance_ledger FOR EACH ROW EXECUTE FUNCTION compliance_ledger_append_only()",
)
for _dialect, _statements in (("sqlite", SQLITE_APPEND_ONLY),
                               ("postgresql", POSTGRESQL_APPEND_ONLY)):  # fmt: skip
    for _statement in _statements:
        _ddl = DDL(_statement)  # type: ignore[no-untyped-call]
        event.listen(compliance_ledger, "after_create", _ddl.execute_if(dialect=_dialect))


@dataclass(frozen=True, slots=True)
class _RawInsert:
    sql: str
    positional: bool
    order: tuple[int, ...] | None  # positional parameters' order, if not the columns'


_INSERTS: dict[tuple[str, str, tuple[str, ...]], _RawInsert] = {}


def _raw_insert(conn: Connection, table: Table, columns: tuple[str, ...]) -> _RawInsert:
    key = (conn.dialect.name, table.name, columns)
    found = _INSERTS.get(key)
    if found is None:
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(columns))
        order = None
        if compiled.positional:
            order = tuple(columns.index(name) for name in compiled.positiontup or ())
            if order == tuple(range(len(columns))):
                order = None
        found = _INSERTS[key] = _RawInsert(compiled.string, compiled.positional, order)
    return found


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """executemany straight to the driver, for big batches.

    SQLAlchemy's per-row parameter processing costs about three times what
    SQLite spends inserting; here the statement is compiled once for the
    dialect (its paramstyle) and the rows go to the driver as they are. The
    values must be in the driver's form already: ints and strings, or what
    `driver_value` made of anything else.
    """
    if not rows:
        return
    raw = _raw_insert(conn, table, tuple(columns))
    params: list[Any]
    if not raw.positional:
        params = [dict(zip(columns, row, strict=True)) for row in rows]
    elif raw.order is not None:
        params = [tuple(row[i] for i in raw.order) for row in rows]
    else:
        params = rows
    conn.exec_driver_sql(raw.sql, params)


def driver_value(conn: Connection, column: Column[Any], value: Any) -> Any:
    """`value` as the driver receives it for `column` (type processing)."""
    processor = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor(value) if processor is not None else value


_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def select_in(conn: Connection, template: str, count: int) -> str:
    """Raw SQL for `template` with "{}" for one positional parameter, then
    "{}" for `count` of them (an IN list), in the driver's paramstyle.
    For hot probes where SQLAlchemy's expanding IN costs more than the query."""
    mark = _PLACEHOLDERS.get(conn.dialect.paramstyle)
    if mark is None:
        raise NotImplementedError(f"paramstyle {conn.dialect.paramstyle!r}")
    return template.format(mark, ", ".join([mark] * count))
