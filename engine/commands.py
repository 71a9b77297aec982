"""The command layer: one async function per operation of the daemon.

The control socket (`engine.control`) and the HTTP API call the same
functions through `COMMANDS`, which also describes each command's arguments
so that a request can be checked before it reaches the store or the campaign
manager. Every function takes the running `App` and keyword arguments and
returns a JSON-able value; failures are `engine.errors` exceptions whose
`code` travels to the client.

Paths in requests are absolute: the client resolves them, because the daemon
may run in another directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import agent_commands as ac
from engine import amd_commands as amd
from engine import email_commands as ec
from engine import media_commands as mc
from engine import sms_commands as sc
from engine.campaign_config import DEFAULT_DNC_LIST, DEFAULT_OPTOUT_LIST
from engine.config import ConfigError
from engine.errors import BadRequest, InvalidState, NotFound, OutdialError

if TYPE_CHECKING:
    from engine.app import App


class UnknownCommand(OutdialError):
    """The request names no command the daemon knows."""

    code = "unknown_command"


# ------------------------------------------------------------ argument schema

#: Argument types, as JSON values: str, int (not bool), bool, an absolute path
#: (a str), a list of str, and an object of str -> str.
ARG_TYPES = ("str", "int", "bool", "path", "str_list", "str_map")


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of a command: its name, type (one of ARG_TYPES), whether
    it is required, and a short help text."""

    name: str
    type: str
    required: bool = False
    help: str = ""


@dataclass(frozen=True, slots=True)
class Command:
    """A wire name (`campaign.start`), the function behind it and its arguments."""

    name: str
    func: Callable[..., Awaitable[Any]]
    args: tuple[Arg, ...]
    help: str

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Check `args` against the schema; return the keyword arguments to
        call `func` with (JSON nulls dropped, so defaults apply).

        Raises BadRequest naming the argument that is unknown, missing or of
        the wrong type.
        """
        known = {a.name: a for a in self.args}
        for key in args:
            if key not in known:
                hint = difflib.get_close_matches(str(key), list(known), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                expected = ", ".join(known) or "none"
                raise BadRequest(
                    f"{self.name}: unknown argument {key!r}{extra}; expected: {expected}"
                )
        out: dict[str, Any] = {}
        for arg in self.args:
            value = args.get(arg.name)
            if value is None:
                if arg.required:
                    raise BadRequest(f"{self.name}: missing argument {arg.name!r} ({arg.type})")
                continue
            problem = _type_problem(arg.type, value)
            if problem:
                raise BadRequest(f"{self.name}: argument {arg.name!r} {problem}")
            out[arg.name] = value
        return out


def _json_kind(value: Any) -> str:
    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "an object"
        case _:
            return type(value).__name__


def _type_problem(kind: str, value: Any) -> str | None:
    """Why `value` is not of argument type `kind`, or None when it is."""
    got = f"got {_json_kind(value)}"
    match kind:
        case "str":
            return None if isinstance(value, str) else f"must be a string, {got}"
        case "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
            return None if ok else f"must be an integer, {got}"
        case "bool":
            return None if isinstance(value, bool) else f"must be true or false, {got}"
        case "path":
            if not isinstance(value, str) or not value:
                return f"must be a path (string), {got}"
            return None if os.path.isabs(value) else f"must be an absolute path, got {value!r}"
        case "str_list":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            return None if ok else f"must be a list of strings, {got}"
        case "str_map":
            ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
            return None if ok else f"must be an object of strings, {got}"
    raise ValueError(f"unknown argument type {kind!r}")  # a bug in COMMANDS


async def run_command(app: App, name: str, args: Mapping[str, Any] | None = None) -> Any:
    """Look up `name` in COMMANDS, validate `args` and run it.

    Raises UnknownCommand, BadRequest, or whatever the command raises.
    """
    command = COMMANDS.get(name)
    if command is None:
        hint = difflib.get_close_matches(name, list(COMMANDS), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise UnknownCommand(f"unknown command {name!r}{extra}")
    return await command.func(app, **command.validate(args or {}))


def to_jsonable(value: Any) -> Any:
    """`json.dumps` default: datetimes as ISO-8601, paths as strings,
    dataclasses as objects, sets and tuples as lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ------------------------------------------------------------------- status


async def status(app: App) -> dict[str, Any]:
    """The daemon at a glance: uptime, store, campaigns and their progress,
    calls in flight, trunks."""
    now = time.time()
    result: dict[str, Any] = {
        "pid": os.getpid(),
        "started_at": datetime.fromtimestamp(app.started_at, UTC).isoformat(),
        "uptime_s": round(now - app.started_at, 1),
        "store": app.store.url,
    }
    result.update(app.campaigns.status())
    if app.agents is not None:
        result["agents"] = app.agents.counts()
    campaigns = await app.campaigns.list()
    result["progress"] = {c["name"]: c.get("progress", {}) for c in campaigns}
    if app.sms is not None:
        result["sms"] = app.sms.status()
    if app.email is not None:
        result["email"] = app.email.status()
    result["event_subscribers"] = app.bus.subscribers
    return result


# ---------------------------------------------------------------- campaigns


async def campaign_list(app: App) -> list[dict[str, Any]]:
    """Every campaign with its state and progress."""
    out = await app.campaigns.list()
    for service in (app.sms, app.email):
        if service is not None:
            out += [await r.describe() for r in service.runners.values()]
    return out


async def campaign_show(app: App, name: str) -> dict[str, Any]:
    """One campaign: configuration, state, progress, calls in flight."""
    runner = sc.message_runner(app, name)
    if runner is not None:
        info = await runner.describe()
        info["config"] = (await app.store.campaign(name)).get("definition")
        info["file"] = str(getattr(runner, "cfg").file)  # noqa: B009 - both channels have one
        return info
    return await app.campaigns.show(name)


async def campaign_load(app: App, path: str) -> dict[str, Any]:
    """(Re)load a campaign file; a broken file is a BadRequest naming the
    file, line and field."""
    try:
        taken = set(app.campaigns.runners)
        if app.sms is not None and app.sms.is_sms_file(Path(path)):
            name = await sc.service(app).load(Path(path), taken | set(_email_names(app)))
        elif app.email is not None and app.email.is_email_file(Path(path)):
            name = await ec.service(app).load(Path(path), taken | set(_sms_names(app)))
        else:
            name = await app.campaigns.load(Path(path))
    except ConfigError as exc:
        raise BadRequest(str(exc)) from exc
    return {"campaign": name, "file": path, "state": await _state(app, name)}


def _sms_names(app: App) -> list[str]:
    return list(app.sms.runners) if app.sms is not None else []


def _email_names(app: App) -> list[str]:
    return list(app.email.runners) if app.email is not None else []


async def _state(app: App, name: str) -> str:
    return str((await app.store.campaign(name))["state"])


async def campaign_start(app: App, name: str) -> dict[str, Any]:
    """Start placing calls (InvalidState when running already, or when one of
    its do-not-contact lists is not in the store)."""
    await _check_dnc_lists(app, name)
    runner = sc.message_runner(app, name)
    if runner is not None:
        await runner.start()
    else:
        await app.campaigns.start(name)
    return {"campaign": name, "state": await _state(app, name)}


async def campaign_pause(app: App, name: str) -> dict[str, Any]:
    """Stop placing new calls; calls in progress finish."""
    runner = sc.message_runner(app, name)
    if runner is not None:
        await runner.pause()
    else:
        await app.campaigns.pause(name)
    return {"campaign": name, "state": await _state(app, name)}


async def campaign_resume(app: App, name: str) -> dict[str, Any]:
    """Resume a paused campaign (its do-not-contact lists checked again)."""
    await _check_dnc_lists(app, name)
    runner = sc.message_runner(app, name)
    if runner is not None:
        await runner.resume()
    else:
        await app.campaigns.resume(name)
    return {"campaign": name, "state": await _state(app, name)}


async def campaign_stop(app: App, name: str) -> dict[str, Any]:
    """Pause and mark stopped."""
    runner = sc.message_runner(app, name)
    if runner is not None:
        await runner.stop()
    else:
        await app.campaigns.stop(name)
    return {"campaign": name, "state": await _state(app, name)}


# ----------------------------------------------------------------- contacts


def _readable_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise BadRequest(f"{what}: no such file: {path}")
    if not os.access(p, os.R_OK):
        raise BadRequest(f"{what}: the daemon cannot read {path}")
    return p


def _writable_target(path: str, what: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise BadRequest(f"{what}: {path} is a directory")
    if not p.parent.is_dir():
        raise BadRequest(f"{what}: directory {p.parent} does not exist")
    if not os.access(p.parent, os.W_OK):
        raise BadRequest(f"{what}: the daemon cannot write to {p.parent}")
    return p


async def contacts_import(
    app: App,
    list: str,
    file: str,
    phone_columns: Sequence[str] | None = None,
    region: str = "US",
    error_file: str | None = None,
    encoding: str = "utf-8",
) -> dict[str, Any]:
    """Stream a CSV file into a contact list; returns the import summary."""
    csv_path = _readable_file(file, "file")
    error_path = _writable_target(error_file, "error_file") if error_file else None
    if phone_columns is not None and not phone_columns:
        raise BadRequest("phone_columns: give at least one column, or leave it out")
    try:
        summary = await app.store.import_contacts(
            list, csv_path, phone_columns=phone_columns, region=region,
            error_path=error_path, encoding=encoding,
        )  # fmt: skip
    except (LookupError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{file}: {exc}") from exc
    except OSError as exc:
        raise BadRequest(f"{file}: {exc.strerror or exc}") from exc
    return {"list": list, **dataclasses.asdict(summary)}


async def contacts_add(
    app: App,
    list: str,
    phones: Sequence[str],
    attributes: Mapping[str, str] | None = None,
    priority: int = 0,
    top: bool = False,
    region: str = "US",
) -> dict[str, Any]:
    """Add one contact (BadRequest on an invalid number); `top` puts it
    ahead of every contact already in the list."""
    if not phones:
        raise BadRequest("phones: give at least one phone number")
    contact_id = await app.store.add_contact(
        list, phones, attributes, region=region, priority=priority, top=top
    )
    return {"list": list, "contact_id": contact_id}


async def contacts_show(app: App, contact_id: int) -> dict[str, Any]:
    """One contact: its columns, phones, and per campaign its state, priority,
    attempts and last attempt (what the campaign rules changed shows here)."""
    return await app.store.contact(contact_id)


async def contacts_export(app: App, list: str, file: str) -> dict[str, Any]:
    """Write a list with each contact's latest result, attempts and skip reason."""
    out = _writable_target(file, "file")
    try:
        rows = await app.store.export_list(list, out)
    except OSError as exc:
        raise BadRequest(f"{file}: {exc.strerror or exc}") from exc
    return {"list": list, "file": file, "rows": rows}


# ------------------------------------------------------------ do-not-contact

_DURATION = re.compile(r"(\d+)([wdhms])")
_UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_expiry(text: str, now: datetime) -> datetime:
    """An expiry given as a duration from `now` ("30d", "12h", "1w2d", "90m",
    "45s") or as an ISO-8601 date or time ("2030-01-31", "2030-01-31T18:00+01:00";
    without an offset it is UTC). Raises BadRequest if unreadable or past."""
    spec = text.strip().lower()
    if spec and _DURATION.sub("", spec) == "":
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(spec))
        if seconds == 0:
            raise BadRequest(f"expires: duration {text!r} is zero")
        return now + timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(
            f"expires: expected a duration like 30d, 12h, 90m or an ISO-8601 time, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= now:
        raise BadRequest(f"expires: {text!r} is in the past")
    return when


def _dnc_target(number: str | None, contact_id: int | None) -> str:
    if (number is None) == (contact_id is None):
        raise BadRequest("give a phone number or a contact_id (one of them)")
    return number if number is not None else f"contact {contact_id}"


async def dnc_add(
    app: App,
    number: str | None = None,
    contact_id: int | None = None,
    list: str = DEFAULT_DNC_LIST,
    source: str = "manual",
    expires: str | None = None,
    note: str | None = None,
    region: str = "US",
    campaign: str | None = None,
) -> dict[str, Any]:
    """Put a number (or a contact: all its numbers) on a do-not-contact list
    (default internal), optionally until `expires`; written to the ledger."""
    _dnc_target(number, contact_id)
    expires_at = parse_expiry(expires, datetime.now(UTC)) if expires else None
    e164 = await app.store.dnc_add(
        number, contact_id=contact_id, list=list, source=source, expires_at=expires_at,
        note=note, region=region, campaign=campaign,
    )  # fmt: skip
    out: dict[str, Any] = {"number": e164} if contact_id is None else {"contact_id": contact_id}
    return {**out, "list": list, "source": source,
            "expires_at": expires_at.isoformat() if expires_at else None}  # fmt: skip


async def dnc_remove(
    app: App,
    number: str | None = None,
    contact_id: int | None = None,
    list: str = DEFAULT_DNC_LIST,
    region: str = "US",
) -> dict[str, Any]:
    """Take a number (or contact) off one list (default internal); NotFound
    if it was not on it."""
    what = _dnc_target(number, contact_id)
    if not await app.store.dnc_remove(number, contact_id=contact_id, list=list, region=region):
        where = (
            "the do-not-contact list"
            if list == DEFAULT_DNC_LIST
            else f"do-not-contact list {list!r}"
        )
        raise NotFound(f"{what} is not on {where}")
    out: dict[str, Any] = {"number": number} if contact_id is None else {"contact_id": contact_id}
    return {**out, "list": list, "removed": True}


async def dnc_check(
    app: App, number: str | None = None, contact_id: int | None = None, region: str = "US"
) -> dict[str, Any]:
    """Every list that blocks the number (or contact) now, each with its
    source and expiry; the first one's fields at the top."""
    _dnc_target(number, contact_id)
    entries = await app.store.dnc_check(number, contact_id=contact_id, region=region)
    out: dict[str, Any] = {"number": number} if contact_id is None else {"contact_id": contact_id}
    if not entries:
        return {**out, "listed": False, "lists": []}
    if contact_id is None:
        out["number"] = next((e["number"] for e in entries if e["number"]), number)
    first = entries[0]
    return {**out, "listed": True, "list": first["list"], "source": first["source"],
            "added_at": first["added_at"], "expires_at": first["expires_at"],
            "lists": entries}  # fmt: skip


async def dnc_add_address(
    app: App,
    address: str,
    list: str,
    source: str = "manual",
    expires: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Put an email address on a do-not-contact list."""
    now = datetime.now(UTC)
    when = parse_expiry(expires, now) if expires is not None else None
    added = await app.store.dnc_add_address(address, list=list, source=source, expires_at=when,
                                            note=note)  # fmt: skip
    return {"address": added, "list": list, "source": source, "expires_at": when}


async def dnc_remove_address(app: App, address: str, list: str) -> dict[str, Any]:
    """Take an email address off a list."""
    removed = await app.store.dnc_remove_address(address, list=list)
    if not removed:
        raise NotFound(f"{address} is not on {list}")
    return {"address": address, "list": list, "removed": True}


async def dnc_check_address(app: App, address: str) -> dict[str, Any]:
    """Every list that blocks an email address now."""
    entries = await app.store.dnc_check_address(address)
    return {"address": address, "listed": bool(entries), "lists": entries}


async def dnc_lists(app: App) -> list[dict[str, Any]]:
    """Every do-not-contact list with its kind and its active entries."""
    rows: list[dict[str, Any]] = await app.store.dnc_lists()
    return rows


async def dnc_create(app: App, list: str, kind: str) -> dict[str, Any]:
    """Create a do-not-contact list (kind internal, optout, national or other)."""
    return await app.store.dnc_create_list(list, kind)


async def dnc_import(
    app: App,
    file: str,
    list: str = DEFAULT_DNC_LIST,
    column: str | None = None,
    source: str = "import",
    region: str = "US",
    error_file: str | None = None,
) -> dict[str, Any]:
    """Add every number of a CSV column (the first column by default), or
    contact ids of a contact_id column, to a list (default internal)."""
    csv_path = _readable_file(file, "file")
    error_path = _writable_target(error_file, "error_file") if error_file else None
    try:
        summary = await app.store.dnc_import(
            csv_path, list=list, column=column, source=source, region=region,
            error_path=error_path,
        )  # fmt: skip
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{file}: {exc}") from exc
    except OSError as exc:
        raise BadRequest(f"{file}: {exc.strerror or exc}") from exc
    return {"list": list, **dataclasses.asdict(summary)}


async def dnc_export(app: App, list: str, file: str) -> dict[str, Any]:
    """Write a list's entries as CSV (the format dnc.import reads)."""
    out = _writable_target(file, "file")
    try:
        rows = await app.store.dnc_export(list, out)
    except OSError as exc:
        raise BadRequest(f"{file}: {exc.strerror or exc}") from exc
    return {"list": list, "file": file, "rows": rows}


async def _check_dnc_lists(app: App, name: str) -> None:
    """A campaign whose do-not-contact lists are not all in the store does not
    start (an unknown list is never taken as an empty one)."""
    definition = (await app.store.campaign(name)).get("definition") or {}
    wanted = [*definition.get("dnc_lists", [DEFAULT_DNC_LIST]),
              definition.get("optout_list", DEFAULT_OPTOUT_LIST)]  # fmt: skip
    missing = await app.store.dnc_missing_lists(wanted)
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise InvalidState(
            f"campaign {name!r} cannot start: no do-not-contact list {names} "
            "(create it: outdial ctl dnc create NAME --kind KIND, then import it)"
        )


# --------------------------------------------------------------- compliance


def parse_when(text: str, now: datetime, what: str) -> datetime:
    """A report bound: ISO-8601 date or time (UTC without an offset), or a
    duration back from now ("30d", "24h")."""
    spec = text.strip().lower()
    if spec and _DURATION.sub("", spec) == "":
        return now - timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u]
                                           for n, u in _DURATION.findall(spec)))  # fmt: skip
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(
            f"{what}: expected an ISO-8601 date or time, or a duration back (30d), got {text!r}"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


async def compliance_report(
    app: App, campaign: str, since: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """Abandon rate per legal window (US 30 days, UK 24 h with the AMD
    false-positive estimate) against the 3 % limit, calls placed outside
    08:00-21:00 local, repeat calls within 72 h of an abandon, skips and
    deferrals by rule, opt-outs by source."""
    now = datetime.now(UTC)
    start = parse_when(since, now, "from") if since else None
    end = parse_when(until, now, "to") if until else None
    return await app.store.compliance_report(campaign, start, end)


# ------------------------------------------------------------------ reports


async def report_summary(app: App, campaign: str) -> dict[str, Any]:
    """Counts per result, connect rate, average ring and talk time."""
    await app.store.campaign(campaign)  # NotFound for an unknown campaign
    if sc.message_runner(app, campaign) is not None:
        return await sc.sms_report(app, campaign)
    return {"campaign": campaign, **await app.store.summary(campaign)}


async def report_attempts(
    app: App, campaign: str, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every attempt of a campaign (the first `limit` ones if given)."""
    if limit is not None and limit < 1:
        raise BadRequest(f"limit: must be at least 1, got {limit}")
    await app.store.campaign(campaign)
    rows: list[dict[str, Any]] = await app.store.attempts(campaign, limit)
    return rows


# ----------------------------------------------------------------- registry

_NAME = Arg("name", "str", True, "campaign name")
_LIST = Arg("list", "str", True, "contact list name")
_REGION = Arg("region", "str", help="region for national numbers (default US)")
_AGENT = Arg("agent", "str", True, "agent id")
_CONTACT = Arg("contact_id", "int", help="a contact (all its numbers) instead of a number")
_DNC_LIST = Arg("list", "str", help="do-not-contact list (default internal)")


def _commands(*commands: Command) -> dict[str, Command]:
    return {c.name: c for c in commands}


COMMANDS: dict[str, Command] = _commands(
    Command("status", status, (), "daemon status"),
    Command("media.stats", mc.media_stats, (Arg("reset", "bool", help="start a new window"),),
            "media clock lateness and RTP loss; reset starts a new window"),
    Command("campaign.list", campaign_list, (), "list campaigns"),
    Command("campaign.show", campaign_show, (_NAME,), "show one campaign"),
    Command("campaign.load", campaign_load, (Arg("path", "path", True, "campaign YAML file"),),
            "load or reload a campaign file"),
    Command("campaign.start", campaign_start, (_NAME,), "start a campaign"),
    Command("campaign.pause", campaign_pause, (_NAME,), "pause a campaign"),
    Command("campaign.resume", campaign_resume, (_NAME,), "resume a paused campaign"),
    Command("campaign.stop", campaign_stop, (_NAME,), "stop a campaign"),
    Command("contacts.import", contacts_import, (
        _LIST, Arg("file", "path", True, "CSV file"),
        Arg("phone_columns", "str_list", help="phone column names (default: detected)"),
        _REGION, Arg("error_file", "path", help="where to write rejected rows (CSV)"),
        Arg("encoding", "str", help="CSV encoding (default utf-8)"),
    ), "import a CSV file into a contact list"),
    Command("contacts.add", contacts_add, (
        _LIST, Arg("phones", "str_list", True, "phone numbers"),
        Arg("attributes", "str_map", help="contact attributes"),
        Arg("priority", "int", help="higher is dialled first (default 0)"),
        Arg("top", "bool", help="put ahead of every contact of the list"), _REGION,
    ), "add one contact"),
    Command("contacts.show", contacts_show, (Arg("contact_id", "int", True, "contact id"),),
            "show one contact with its state in each campaign"),
    Command("contacts.export", contacts_export,
            (_LIST, Arg("file", "path", True, "CSV file to write")),
            "export a list with each contact's latest result"),
    Command("dnc.add", dnc_add, (
        Arg("number", "str", help="phone number (E.164, or national in `region`)"),
        _CONTACT, _DNC_LIST,
        Arg("source", "str", help="where the request came from (default manual)"),
        Arg("expires", "str", help="duration (30d, 12h) or ISO-8601 time"),
        Arg("note", "str", help="free text kept with the entry"), _REGION,
        Arg("campaign", "str", help="the campaign the request came through (ledger)"),
    ), "add a number or a contact to a do-not-contact list"),
    Command("dnc.remove", dnc_remove, (
        Arg("number", "str", help="phone number"), _CONTACT, _DNC_LIST, _REGION,
    ), "remove a number or a contact from a list"),
    Command("dnc.check", dnc_check, (Arg("number", "str", help="phone number"), _CONTACT,
            _REGION), "every list that blocks a number or a contact, and why"),
    Command("dnc.lists", dnc_lists, (), "the do-not-contact lists"),
    Command("dnc.add_address", dnc_add_address, (
        Arg("address", "str", True, "email address"), Arg("list", "str", True, "list name"),
        Arg("source", "str", help="default manual"),
        Arg("expires", "str", help="duration (30d) or ISO-8601 time"), Arg("note", "str"),
    ), "add an email address to a do-not-contact list"),
    Command("dnc.remove_address", dnc_remove_address, (
        Arg("address", "str", True), Arg("list", "str", True),
    ), "remove an email address from a list"),
    Command("dnc.check_address", dnc_check_address, (Arg("address", "str", True),),
            "every list that blocks an email address"),
    Command("dnc.create", dnc_create, (
        Arg("list", "str", True, "list name"),
        Arg("kind", "str", True, "internal, optout, national or other"),
    ), "create a do-not-contact list"),
    Command("dnc.import", dnc_import, (
        Arg("file", "path", True, "CSV file"), _DNC_LIST,
        Arg("column", "str", help="column holding the numbers (default: the first)"),
        Arg("source", "str", help="source recorded (default import)"), _REGION,
        Arg("error_file", "path", help="where to write rejected rows (CSV)"),
    ), "import numbers (or contact ids) into a do-not-contact list"),
    Command("dnc.export", dnc_export, (
        Arg("list", "str", True, "list name"), Arg("file", "path", True, "CSV file to write"),
    ), "export a do-not-contact list as CSV"),
    Command("compliance.report", compliance_report, (
        Arg("campaign", "str", True),
        Arg("since", "str", help="from: ISO-8601 time or a duration back (30d)"),
        Arg("until", "str", help="to: ISO-8601 time or a duration back (default now)"),
    ), "abandon rate per legal window, hours, 72 h repeats, skips, opt-outs"),
    Command("compliance.amd_samples", amd.amd_samples, (
        Arg("campaign", "str", True), Arg("unmarked", "bool", help="only unmarked samples"),
        Arg("limit", "int", help="at most this many"),
    ), "a campaign's recorded AMD samples, unmarked first"),
    Command("compliance.amd_mark", amd.amd_mark, (
        Arg("attempt", "int", True, "the attempt id of the sample"),
        Arg("mark", "str", True, "person or machine"),
        Arg("by", "str", True, "the operator's name"),
    ), "mark an AMD sample person (a false positive) or machine"),
    Command("report.summary", report_summary, (Arg("campaign", "str", True),),
            "results summary of a campaign"),
    Command("report.attempts", report_attempts,
            (Arg("campaign", "str", True), Arg("limit", "int", help="at most this many")),
            "every attempt of a campaign"),
    Command("report.abandons", ac.report_abandons, (Arg("campaign", "str", True),),
            "the abandon ledger of a campaign"),
    Command("agent.login", ac.agent_login, (_AGENT, Arg("not_ready", "bool",
            help="log in not ready")), "call the agent's phone and keep the leg up"),
    Command("agent.logout", ac.agent_logout, (_AGENT,), "hang up the agent's leg"),
    Command("agent.add", ac.agent_add, (
        _AGENT, Arg("name", "str"), Arg("username", "str", help="digest user (default: id)"),
        Arg("password", "str", help="digest password of the phone"),
        Arg("uri", "str", help="static SIP URI of a phone that does not register"),
        Arg("campaigns", "str_list", help="campaigns the agent may work (default: any)"),
    ), "add an agent (stored)"),
    Command("agent.remove", ac.agent_remove, (_AGENT,), "remove an agent added by command"),
    Command("agent.ready", ac.agent_ready, (_AGENT,), "ready for calls"),
    Command("agent.not_ready", ac.agent_not_ready,
            (_AGENT, Arg("reason", "str", True, "reason code")), "not ready, with a reason"),
    Command("agent.hangup", ac.agent_hangup, (_AGENT,), "end the customer call"),
    Command("agent.wrapup", ac.agent_wrapup, (
        _AGENT, Arg("code", "str", help="wrap-up code"),
        Arg("callback", "str", help="ISO-8601 time or delay (2h) to call back"),
        Arg("mine", "bool", help="the callback is for this agent"),
        Arg("dnc", "bool", help="add the number to the do-not-contact list"),
    ), "enter the wrap-up code (or note a callback / DNC during the call)"),
    Command("agent.preview_accept", ac.agent_preview_accept, (_AGENT,),
            "dial the offered preview record"),
    Command("agent.preview_skip", ac.agent_preview_skip, (_AGENT,),
            "skip the offered preview record"),
    Command("agent.status", ac.agent_status, (Arg("agent", "str", help="agent id"),),
            "one agent or all"),
    Command("agent.history", ac.agent_history, (Arg("agent", "str", help="agent id"),
            Arg("limit", "int", help="at most this many (default 100)")),
            "stored agent state changes"),
    Command("callback.list", ac.callbacks_list, (Arg("campaign", "str", help="campaign"),),
            "scheduled callbacks"),
    Command("sms.send", sc.sms_send, (
        Arg("number", "str", True, "the phone number (E.164, or national in `region`)"),
        Arg("text", "str", help="the message (or a template)"),
        Arg("template", "str", help="one of sms.templates"),
        Arg("data", "str_map", help="the template's columns"),
        Arg("sender", "str", help="our sender (default sms.default_sender)"),
        Arg("account", "str", help="SMS account (default sms.default_account)"), _REGION,
    ), "send one SMS without a campaign"),
    Command("sms.preview", sc.sms_preview, (
        Arg("text", "str", True), Arg("smart", "bool", help="smart encoding"),
    ), "encoding, segment count, characters that force UCS-2, split URLs"),
    Command("sms.show", sc.sms_show, (Arg("id", "int", True, "message id"),),
            "one message with its history and thread"),
    Command("sms.list", sc.sms_list, (
        Arg("campaign", "str"), Arg("number", "str"),
        Arg("notifications", "bool", help="only messages sent without a campaign"),
        Arg("limit", "int", help="at most this many (default 100)"),
    ), "messages, newest first"),
    Command("email.send", ec.email_send, (
        Arg("address", "str", True, "the recipient's address"),
        Arg("template", "str", help="one of email.templates"),
        Arg("subject", "str"), Arg("text", "str", help="the text part"),
        Arg("html", "str", help="the HTML part"),
        Arg("data", "str_map", help="the template's columns"),
        Arg("sender", "str", help="From (default email.from)"),
        Arg("relay", "str", help="SMTP relay (default email.default_relay)"),
    ), "send one email without a campaign"),
    Command("email.list", ec.email_list, (
        Arg("campaign", "str"), Arg("address", "str"),
        Arg("notifications", "bool", help="only emails sent without a campaign"),
        Arg("limit", "int", help="at most this many (default 100)"),
    ), "emails, newest first"),
    Command("email.unsubscribe", ec.email_unsubscribe, (Arg("id", "int", True, "message id"),),
            "unsubscribe a message's address, as its one-click link does"),
    Command("sms.report", sc.sms_report, (Arg("campaign", "str", help="campaign (default: "
            "the notifications)"),), "message totals of a campaign or of the notifications"),
)  # fmt: skip
