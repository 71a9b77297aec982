"""A simulated compliance audit: 30 days of a predictive campaign over US time zones.

`run_audit` drives the pacing simulator (`engine.voice.simulate.CampaignSim`,
one run per daily shift, the real `pacing.decide` asking how many to dial)
over a contact list spread over the US zones and states, and puts every
call it wants to place through the checks the dial loop makes, at the
simulated time: the campaign's attempt limits (`AttemptLimits` on
`rule_context`), then the calling hours of the law and the campaign
(`CallingHours.verdict` on `Locator.locate`) and a state's "N calls per
24 h" (`CallingHours.call_limit`; FL, OK, MD; counted by
`hours.within_call_limit`, as the dial loop counts). A contact that fails one is
deferred to when it may be called, as `CampaignRunner._callable_now` does.
After a call the campaign's after_call rules (`RuleSet.after_call`) and its
retry table say when the contact is due again.

Everything lands in a real store (`Store.open`, SQLite in a temporary
directory unless `store_url` is given), with the simulated times: contacts
imported from CSV, attempt rows, contact states, the ledger's call_placed
and deferral rows, and abandons through `Store.record_abandon` (which writes
the ledger's abandon row). The result is `Store.compliance_report` over the
simulated span, plus the audit's own counters.

Where the dial loop reads the store (`attempt_history`, `calls_since`) the
audit reads its own record of the calls it has placed: the simulator is
synchronous and asks for calls between its events, so it cannot await the
store. Those records are what the store holds once written (the test reads
the store back to check the counts).
"""

from __future__ import annotations

import asyncio
import csv
import heapq
import random
import tempfile
import time as clock
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import yaml

from engine.compliance.campaign import HoursConfig, calling_hours, parse_hours_config
from engine.compliance.hours import CallingHours, within_call_limit
from engine.compliance.locate import Locale, Locator, zone
from engine.compliance.rules import (
    AttemptLimits,
    RuleContext,
    RuleSet,
    after_context,
    parse_limits,
    parse_rules,
    rule_context,
)
from engine.config import _Node
from engine.store import Store
from engine.store.types import AttemptIntent
from engine.voice.pacing import DialMode, PacingConfig
from engine.voice.simulate import CampaignSim, DialRecords, Outcome, PacerPolicy, Scenario

__all__ = ["CAMPAIGN_YAML", "START", "AuditPlan", "audit", "run_audit"]

CAMPAIGN = "audit"
LIST = "audit-contacts"
TRUNK = "sim"
START = date(2026, 10, 19)  # a Monday; the span crosses the end of US DST (1 November)
SHIFT_START = time(12, 0)  # UTC: 08:00 EDT / 07:00 EST ... 05:00 PDT, 02:00 HST
SHIFT_HOURS = 14.0
LAST_DIAL_S = 120.0  # no new call this close to the shift's end: every call ends in it
AMD_S = 3.0  # answer to a machine verdict and hang-up
SAFE_HARBOR_S = 8.0  # the abandon message, 47 CFR 64.1200(a)(7)(i)
LOOP_PASS = timedelta(seconds=1)  # a deferral to "now" is looked at on the loop's next pass

CAMPAIGN_YAML = """\
name: audit
channel: voice
mode: predictive
dialing: {jurisdiction: us, abandon_target: 0.03}
calling_hours:          # the law applies as well; these only narrow it
  every_day: 08:00-21:00
  sunday: 10:00-19:00
limits:
  per_contact: {per_day: 4}
rules:
  - when: after_call
    if: "result == 'abandoned'"
    then: {retry_in: 72h}     # no repeat call within 72 h of an abandon
# The retry table and the agents' default wrap-up (a recall in 4 days: a
# collections cadence, so the list lasts the 30 days).
retry: {no_answer: 2h, machine: 4h}
wrapup_codes: [{code: follow_up, final: false, retry: 4d}]
"""
PACING = PacingConfig(DialMode.PREDICTIVE, window_s=1800.0)  # as `outdial simulate`'s
RETRY_S = {"no_answer": 2 * 3600.0, "machine": 4 * 3600.0, "answered": 4 * 86400.0}

# Area codes by zone (prefix 208 2xx: America/Boise and America/Los_Angeles;
# 907: Anchorage and Adak; 850: Florida on Central time).
AREA_CODES = (
    "212", "305", "404", "410", "617", "215", "401", "860",  # Eastern
    "312", "214", "405", "205", "504", "601", "850",  # Central
    "303", "801", "602", "208",  # Mountain (602: no DST)
    "213", "206", "509",  # Pacific
    "907", "808",  # Alaska, Hawaii
)  # fmt: skip
# States with rules of their own in data/us_rules.yaml, for the ZIP codes.
ZIP_STATES = ("FL", "TX", "OK", "MD", "AL", "PA", "LA", "RI", "UT", "WA", "MA", "CT", "MS")


@dataclass(frozen=True, slots=True)
class AuditPlan:
    """What to simulate: `scenario` gives the agents and the call model (its
    `hours` and `seed` are set per shift)."""

    days: int = 30
    contacts: int = 10_000
    seed: int = 1
    scenario: Scenario = field(default_factory=Scenario)
    pacing: PacingConfig = PACING
    start: date = START
    shift_start: time = SHIFT_START
    shift_hours: float = SHIFT_HOURS
    legal: bool = True  # False: CallingHours(None), no law and no campaign hours


@dataclass(slots=True)
class Contact:
    """One contact as the dial loop sees it, with the calls made to it."""

    id: int
    number: str
    attributes: dict[str, str]
    locale: Locale
    tz: ZoneInfo | None
    history: list[tuple[datetime, str, str | None, int]] = field(default_factory=list)
    invites: list[datetime] = field(default_factory=list)
    # Its campaign state, written to the store at the end of each shift.
    state: str = "pending"
    due: datetime | None = None
    why: str | None = None
    unwritten: int = 0  # calls since the last write


@dataclass(slots=True)
class Call:
    """One placed call and what became of it."""

    contact: Contact
    placed_at: datetime
    local: datetime | None
    allowed_by: str
    ctx: RuleContext
    answered_at: datetime | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    result: str | None = None
    amd: str | None = None
    agent: str | None = None
    talk_s: float = 0.0
    abandon_at: datetime | None = None
    due: datetime | None = None


@dataclass(frozen=True, slots=True)
class Deferral:
    at: datetime
    contact: Contact
    rule: str
    reason: str
    until: datetime


class DialGate:
    """The dial loop's checks before a call, in its order (see the module doc)."""

    def __init__(self, hours: CallingHours, limits: AttemptLimits, campaign_id: int) -> None:
        self.hours, self.limits, self.campaign_id = hours, limits, campaign_id

    def check(self, c: Contact, now: datetime) -> RuleContext | Deferral:
        local_now = now.astimezone(c.tz) if c.tz is not None else now
        ctx = rule_context(local_now, c.attributes, c.history, c.number)
        reason = self.limits.check(ctx)
        if reason is not None:
            when = self.limits.next_allowed(ctx)  # no totals here: a per-day limit
            until = (when or now + timedelta(days=1)).astimezone(UTC)
            return Deferral(now, c, "limits", reason, until)
        verdict = self.hours.verdict(c.locale, now)
        if verdict.callable:
            limit = self.hours.call_limit(c.locale)
            if limit is not None:
                verdict = within_call_limit(c.invites, limit, now)
        if not verdict.callable:
            until = verdict.until if verdict.until > now else now + LOOP_PASS
            return Deferral(now, c, verdict.reason, f"{c.number}: {verdict.reason}", until)
        return ctx

    def allowed_by(self, c: Contact) -> str:
        """The rules that let a call through, as the dial loop's ledger row names them."""
        rules = " + ".join(f"{r.label}: {r.source}" for r in self.hours.rules_for(c.locale))
        if self.hours.legal is None:
            rules = "lab (legal hours off)" + (f"; {rules}" if rules else "")
        return rules or "no hours rule"


class ContactQueue:
    """Contacts by the time they are due, then list order (the store's dial order)."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, int, Contact]] = []
        self._seq = 0

    def push(self, due: datetime, c: Contact) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, c.id, self._seq, c))

    def due(self, now: datetime) -> bool:
        return bool(self._heap) and self._heap[0][0] <= now

    def pop(self) -> Contact:
        return heapq.heappop(self._heap)[3]


class AuditPolicy:
    """The real pacer says how many; the gate says which contacts may be called."""

    def __init__(self, audit: Audit, shift_at: datetime, horizon_s: float) -> None:
        self.audit, self.shift_at = audit, shift_at
        self.pacer = PacerPolicy("predictive", audit.plan.pacing)
        self.name, self.needs_tick = self.pacer.name, self.pacer.needs_tick
        self.last_dial_s = horizon_s - LAST_DIAL_S
        self.calls: dict[int, Call] = {}

    def dials(self, sim: CampaignSim, now: float) -> int:
        at = self.shift_at + timedelta(seconds=now)
        queue = self.audit.queue
        if now > self.last_dial_s or not queue.due(at):
            return 0  # decide() is pure: not asking it when there is no one to call changes nothing
        wanted = self.pacer.dials(sim, now)
        placed = 0
        while placed < wanted and queue.due(at):
            c = queue.pop()
            checked = self.audit.gate.check(c, at)
            if isinstance(checked, Deferral):
                self.audit.defer(checked)
                continue
            self.calls[sim.result.dials + placed] = self.audit.place(c, at, checked)
            placed += 1
        return placed


class AuditSim(CampaignSim):
    """The simulator with hooks that tell the audit what became of each call."""

    def __init__(self, scenario: Scenario, policy: AuditPolicy) -> None:
        super().__init__(scenario, DialRecords(scenario), policy)
        self.audit = policy.audit
        self.book = policy.calls
        self.shift_at = policy.shift_at

    def _at(self, now: float) -> datetime:
        return self.shift_at + timedelta(seconds=now)

    def _resolve(self, now: float, index: int) -> None:
        super()._resolve(now, index)
        call, rec, at = self.book[index], self.records[index], self._at(now)
        if index in self.waiting_set:
            call.answered_at = at  # a person (or machine) waiting for an agent
        elif rec.reaches_agent(self.scenario.machines_to_agents):
            pass  # connected at once: _connect has seen it
        elif rec.outcome is Outcome.NO_ANSWER:
            self.audit.finish(call, "no_answer", at)
        else:  # a machine, or a person AMD took for one: hung up on
            call.answered_at, call.amd = at, "machine"
            self.audit.finish(call, "machine", at + timedelta(seconds=AMD_S))

    def _connect(self, now: float, index: int, agent: int) -> None:
        super()._connect(now, index, agent)
        call, rec, at = self.book[index], self.records[index], self._at(now)
        call.answered_at = call.answered_at or at
        call.bridged_at, call.agent, call.talk_s = at, f"agent{agent + 1}", rec.talk_s
        result = "answered"
        if rec.outcome is Outcome.MACHINE:  # --machines-to-agents: not a person all the same
            call.amd = result = "machine"
        self.audit.finish(call, result, at + timedelta(seconds=rec.talk_s), rec.wrap_s)

    def _give_up(self, now: float, index: int) -> None:
        waiting = index in self.waiting_set
        super()._give_up(now, index)
        if not waiting:
            return
        call, at = self.book[index], self._at(now)
        if self.records[index].outcome is Outcome.HUMAN:
            call.abandon_at = at
            self.audit.finish(call, "abandoned", at + timedelta(seconds=SAFE_HARBOR_S))
        else:
            call.amd = "machine"
            self.audit.finish(call, "machine", at)


class Audit:
    """The campaign's state across the shifts: contacts, checks, what to write."""

    def __init__(self, plan: AuditPlan, hours: CallingHours, limits: AttemptLimits,
                 rules: RuleSet, campaign_id: int) -> None:  # fmt: skip
        self.plan, self.rules = plan, rules
        self.gate = DialGate(hours, limits, campaign_id)
        self.queue = ContactQueue()
        self.calls: list[Call] = []
        self.deferrals: list[Deferral] = []
        self.counts: Counter[str] = Counter()
        self.touched: dict[int, Contact] = {}

    def defer(self, d: Deferral) -> None:
        self.deferrals.append(d)
        self.counts["deferrals"] += 1
        self.counts["deferrals_limits" if d.rule == "limits" else
                    "deferrals_call_limit" if "calls in the last 24 h" in d.rule else
                    "deferrals_hours"] += 1  # fmt: skip
        c = d.contact
        c.state, c.due = "deferred", d.until
        c.why = f"not callable now: {d.reason}; callable from {d.until.isoformat()}"
        self.touched[c.id] = c
        self.queue.push(d.until, c)

    def place(self, c: Contact, at: datetime, ctx: RuleContext) -> Call:
        local = at.astimezone(c.tz) if c.tz is not None else None
        call = Call(c, at, local, self.gate.allowed_by(c), ctx)
        c.history.append((at, c.number, None, self.gate.campaign_id))
        c.invites.append(at)
        c.state, c.unwritten, self.touched[c.id] = "in_flight", c.unwritten + 1, c
        self.calls.append(call)
        self.counts["calls_placed"] += 1
        return call

    def finish(self, call: Call, result: str, ended: datetime, wrap_s: float = 0.0) -> None:
        """The call's end: its result, and when the contact is due again."""
        call.result, call.ended_at = result, ended
        c = call.contact
        c.history[-1] = (call.placed_at, c.number, result, self.gate.campaign_id)
        decision = self.rules.after_call(after_context(call.ctx, result, ended))
        if decision.retry_in_s is not None:
            retry = decision.retry_in_s
        else:
            retry = RETRY_S[result] if result in RETRY_S else RETRY_S["no_answer"]
            retry += wrap_s  # the wrap-up code's recall counts from the wrap-up's end
        call.due = ended + timedelta(seconds=retry)
        self.counts[f"result_{result}"] += 1
        c.state, c.due, c.why = "retry", call.due, None
        self.queue.push(call.due, c)

    def run_shift(self, day: int) -> None:
        p = self.plan
        shift_at = datetime.combine(p.start + timedelta(days=day), p.shift_start, tzinfo=UTC)
        scenario = replace(p.scenario, hours=p.shift_hours, seed=p.seed * 1000 + day)
        policy = AuditPolicy(self, shift_at, scenario.horizon_s)
        AuditSim(scenario, policy).run()
        unfinished = [c for c in policy.calls.values() if c.result is None]
        assert not unfinished, f"{len(unfinished)} calls did not end in the shift"


# ------------------------------------------------------------------ campaign, contacts


def campaign_settings(legal: bool) -> tuple[dict[str, Any], HoursConfig, CallingHours,
                                            AttemptLimits, RuleSet]:  # fmt: skip
    """The campaign of CAMPAIGN_YAML, read with the campaign loader's own parsers."""
    root = yaml.compose(CAMPAIGN_YAML)
    assert isinstance(root, yaml.MappingNode)
    node = _Node("audit.yaml", root, "")
    hours_cfg = parse_hours_config(node)
    hours = calling_hours(hours_cfg, "audit.yaml") if legal else CallingHours(None)
    definition = yaml.safe_load(CAMPAIGN_YAML)
    return definition, hours_cfg, hours, parse_limits(node), parse_rules(node)


def contact_rows(n: int, rng: random.Random) -> list[dict[str, str]]:
    """`n` contacts with real numbers of AREA_CODES; half with a ZIP code of a
    state with its own rules (the `zipcodes` data), so state law applies."""
    import zipcodes

    zips: dict[str, list[str]] = {}
    for state in ZIP_STATES:
        found = zipcodes.filter_by(state=state)  # type: ignore[no-untyped-call]
        zips[state] = [z["zip_code"] for z in found if z.get("timezone")]
    seen: set[str] = set()
    rows: list[dict[str, str]] = []
    while len(rows) < n:
        area = rng.choice(AREA_CODES)
        number = f"+1{area}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        if number in seen or not phonenumbers.is_valid_number(phonenumbers.parse(number)):
            continue
        seen.add(number)
        row = {"name": f"contact {len(rows) + 1}", "phone": number, "zip": ""}
        if rng.random() < 0.5:
            row["zip"] = rng.choice(zips[rng.choice(ZIP_STATES)])
        rows.append(row)
    return rows


async def _load_contacts(store: Store, plan: AuditPlan, workdir: Path, locator: Locator,
                         hours: CallingHours) -> list[Contact]:  # fmt: skip
    path = workdir / "audit-contacts.csv"
    rows = contact_rows(plan.contacts, random.Random(plan.seed))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "phone", "zip"])
        writer.writeheader()
        writer.writerows(rows)
    await store.import_contacts(LIST, path, phone_columns=["phone"])
    await store.sync_campaign_contacts(CAMPAIGN)
    start = datetime.combine(plan.start, time(0), tzinfo=UTC)
    out = []
    for cand in await store.due_contacts(CAMPAIGN, start, plan.contacts + 1):
        locale = locator.locate(cand.attributes, cand.phones[0])
        zones = locale.zones or ((hours.default_zone,) if hours.default_zone else ())
        tz = zone(zones[0]) if zones else None
        out.append(Contact(cand.contact_id, cand.phones[0], dict(cand.attributes), locale, tz))
    return out


# ------------------------------------------------------------------ the store


async def _write(store: Store, audit: Audit) -> None:
    """The shift's calls and deferrals, with their simulated times."""
    calls, audit.calls = audit.calls, []
    deferrals, audit.deferrals = audit.deferrals, []
    intents = [AttemptIntent(CAMPAIGN, c.contact.id, c.contact.number, TRUNK, None, c.placed_at)
               for c in calls]  # fmt: skip
    ids = await asyncio.gather(*(store.create_attempt(i) for i in intents))
    abandons = []
    for call, attempt_id in zip(calls, ids, strict=True):
        c = call.contact
        fields: dict[str, Any] = {
            "invite_sent_at": call.placed_at, "local_time": call.local, "result": call.result,
            "ended_at": call.ended_at, "answered_at": call.answered_at,
            "bridged_at": call.bridged_at, "agent": call.agent, "amd_result": call.amd,
        }  # fmt: skip
        if call.bridged_at is not None:
            fields["duration_ms"] = round(call.talk_s * 1000)
        store.update_attempt(attempt_id, **{k: v for k, v in fields.items() if v is not None})
        store.ledger("call_placed", at=call.placed_at, source="dialer", campaign=CAMPAIGN,
                     contact_id=c.id, number=c.number, local_time=call.local,
                     rule=call.allowed_by, detail={"attempt_id": attempt_id})  # fmt: skip
        if call.abandon_at is not None and call.answered_at is not None:
            abandons.append(store.record_abandon(
                campaign=CAMPAIGN, attempt_id=attempt_id, contact_id=c.id, number=c.number,
                answered_at=call.answered_at, greeting_end_at=call.answered_at,
                message_started_at=call.abandon_at, reason="no agent free within 2 s",
                at=call.abandon_at,
            ))  # fmt: skip
    await asyncio.gather(*abandons)
    touched, audit.touched = audit.touched, {}
    for c in touched.values():
        store.set_contact_state(CAMPAIGN, c.id, state=c.state, next_attempt_at=c.due,
                                last_result=c.history[-1][2] if c.history else None,
                                skip_reason=c.why, attempts_delta=c.unwritten)  # fmt: skip
        c.unwritten = 0
    for d in deferrals:
        store.ledger("deferral", at=d.at, source="dialer", campaign=CAMPAIGN,
                     contact_id=d.contact.id, rule=d.rule,
                     detail={"until": d.until.isoformat(), "reason": d.reason})  # fmt: skip
    await store.flush()


@contextmanager
def _workdir(store_url: str | None) -> Iterator[tuple[Path, str]]:
    with tempfile.TemporaryDirectory(prefix="outdial-audit-") as tmp:
        yield Path(tmp), store_url or f"sqlite:///{tmp}/audit.db"


async def audit(plan: AuditPlan, store_url: str | None = None) -> dict[str, Any]:
    """Run the audit (see the module doc); {"report", "audit"}."""
    definition, hours_cfg, hours, limits, rules = campaign_settings(plan.legal)
    began = clock.perf_counter()
    with _workdir(store_url) as (workdir, url):
        store = await Store.open(url)
        try:
            cid = await store.upsert_campaign(CAMPAIGN, LIST, definition)
            contacts = await _load_contacts(store, plan, workdir, hours_cfg.locator(), hours)
            run = Audit(plan, hours, limits, rules, cid)
            start = datetime.combine(plan.start, time(0), tzinfo=UTC)
            for c in contacts:
                run.queue.push(start, c)
            sim_s = 0.0
            for day in range(plan.days):
                t = clock.perf_counter()
                run.run_shift(day)
                sim_s += clock.perf_counter() - t
                await _write(store, run)
            # The span of the shifts (within one 30-day window for 30 days).
            last = datetime.combine(plan.start + timedelta(days=plan.days - 1), plan.shift_start,
                                    tzinfo=UTC)  # fmt: skip
            until = last + timedelta(hours=plan.shift_hours)
            first = datetime.combine(plan.start, plan.shift_start, tzinfo=UTC)
            report = await store.compliance_report(CAMPAIGN, first, until)
        finally:
            await store.close()
    counts: dict[str, Any] = dict(sorted(run.counts.items()))
    counts.update(contacts=len(contacts), days=plan.days, agents=plan.scenario.agents,
                  legal=plan.legal, seed=plan.seed, simulate_s=round(sim_s, 1),
                  total_s=round(clock.perf_counter() - began, 1),
                  contacts_by_rule_state=_by_state(contacts))  # fmt: skip
    return {"report": report, "audit": counts}


def _by_state(contacts: list[Contact]) -> dict[str, int]:
    found: Counter[str] = Counter()
    for c in contacts:
        found.update(s for s in c.locale.states if s in ("FL", "OK", "MD"))
    return dict(sorted(found.items()))


def run_audit(
    days: int = 30,
    agents: int = 20,
    contacts: int | None = None,
    seed: int = 1,
    store_url: str | None = None,
    *,
    scenario: Scenario | None = None,
    legal: bool = True,
    pacing: PacingConfig | None = None,
) -> dict[str, Any]:
    """The audit, from synchronous code: {"report": the compliance report,
    "audit": the audit's counters}. `contacts` defaults to 250 per agent."""
    base = scenario or Scenario()
    plan = AuditPlan(
        days=days, contacts=contacts or 250 * agents, seed=seed,
        scenario=replace(base, agents=agents), legal=legal,
        pacing=pacing or PACING,
    )  # fmt: skip
    return asyncio.run(audit(plan, store_url))
