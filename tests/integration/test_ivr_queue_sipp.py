"""IVR callers transferred to an agent queue, through the daemon, against
SIPp as the people called and SIPp as the agent's phone.

An agentless reminder campaign greets the contact (text-to-speech) and sends
them to the `sales` campaign's agents; an agent-mode campaign runs its own
IVR first and transfers to its own agents. The agent's phone must hear the
customer's tone and the customer the agent's; the agent's wrap-up code
decides the contact's next step in the campaign that dialled it; with no
agent free the caller holds for `queue_wait`, then hears the flow's
`on_fail` step.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests.integration.agent_phone import start_agent_phone
from tests.integration.daemon import Daemon
from tests.integration.rtp_sniff import RtpSniffer, dominant
from tests.integration.sipp import Sipp, make_tone
from tests.integration.test_agents_sipp import (
    AGENT_HZ,
    CUSTOMER_HZ,
    agents_config,
    wait_for,
    write_prompts,
)

pytestmark = pytest.mark.sipp

SALES = """\
name: sales
channel: voice
mode: {mode}
contact_list: sales-list
trunk: carrier
lines: 5
max_attempts: 3
ring_timeout: 15
max_duration: 60
prompt: prompt.wav
safe_harbor: safe.wav
dialing:
  connect_wait: 0.5s
  wrapup_timeout: 30s
  queue_wait: {queue_wait}
  wrapup_codes:
    - code: sale
    - code: call_again
      retry: 1h
{ivr}"""


def queue_flow(queue: str, greeting: str) -> str:
    """An IVR that greets the contact, then sends them to `queue`'s agents."""
    return f"""\
ivr:
  start: greet
  steps:
    greet: {{play: {{tts: "Hello {{contact.first_name}}, {greeting}"}}, next: agent}}
    agent: {{transfer: {{queue: {queue}}}, on_fail: sorry}}
    sorry: {{play: {{tts: "Sorry, nobody is free. Goodbye."}}, next: bye}}
    bye: {{hangup: {{}}}}
"""


REMIND = """\
name: remind
channel: voice
mode: agentless
contact_list: remind-list
trunk: carrier
lines: 5
max_attempts: 2
ring_timeout: 15
max_duration: 60
""" + queue_flow("sales", "connecting you to an agent.")

OWN_IVR = queue_flow("this", "please hold for an agent.")


def rig(tmp: Path, campaign: str, sales: str | None = None, hangup_ms: int = 6000):  # type: ignore[no-untyped-def]  # fmt: skip
    """The daemon running `campaign` (and the `sales` agent campaign beside it,
    if given), agent a1 on a SIPp phone, and a SIPp carrier that hangs up
    after `hangup_ms`."""
    prompt = write_prompts(tmp)
    phone = start_agent_phone("a1", None, None, AGENT_HZ, workdir=tmp / "a1")
    tone = make_tone(tmp / "customer.ul", CUSTOMER_HZ, 1.0)
    (tmp / "carrier").mkdir()
    carrier = Sipp("hangup.xml", keys={"audio": f"{tone},-1,0"}, duration_ms=hangup_ms,
                   calls=0).start(tmp / "carrier")  # fmt: skip
    daemon = Daemon(tmp, carrier.port, campaign, prompt, agents_config({"a1": phone.port}))
    if sales is not None:
        (tmp / "campaigns" / "sales.yaml").write_text(sales)
    return daemon, phone, carrier


def contacts_csv(tmp: Path, rows: list[str]) -> Path:
    path = tmp / "contacts.csv"
    path.write_text("id,phone,first_name\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.timeout(180)
def test_an_agentless_ivr_sends_the_caller_to_another_campaigns_agent(tmp_path: Path) -> None:
    daemon, phone, carrier = rig(
        tmp_path, REMIND, sales=SALES.format(mode="progressive", queue_wait="30s", ivr="")
    )
    try:
        daemon.start()
        with RtpSniffer(phone.media_port) as at_agent, RtpSniffer(carrier.media_port) as at_cust:
            assert daemon("agent.login", agent="a1")["state"] == "ready"
            csv = contacts_csv(tmp_path, ["r1,+12125554001,Erin"])
            daemon("contacts.import", list="remind-list", file=str(csv))
            daemon("campaign.start", name="remind")
            status = wait_for(
                lambda: (s := daemon("agent.status", agent="a1"))["state"] == "wrap_up" and s,
                40, "agent in wrap-up after the transferred call",
            )  # fmt: skip
        assert status["call"]["number"] == "+12125554001"
        done = daemon("agent.wrapup", agent="a1", code="call_again")
        assert done["campaign"] == "remind" and done["contact_state"] == "retry", done
        (attempt,) = daemon("report.attempts", campaign="remind")
        assert daemon("agent.status", agent="a1")["state"] == "ready"
        daemon("agent.logout", agent="a1")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        phone.stop()
        carrier.stop()
    path = json.loads(attempt["ivr_path"])
    assert path["end"] == "transferred", path
    assert path["transfer"].startswith("agent a1 (sales) after "), path
    assert "greet > agent" in attempt["ivr_summary"], attempt["ivr_summary"]
    assert attempt["agent"] == "a1" and attempt["bridged_at"] is not None
    assert attempt["wrapup_code"] == "call_again" and attempt["result"] == "answered"
    assert contact_state(tmp_path, "remind") == [("retry", "call_again", 1)]
    # The agent's phone heard the customer's tone; the customer heard the
    # greeting (speech), then the agent's tone.
    to_agent = max(at_agent.flows.values(), key=lambda f: len(f.packets)).audio()
    assert len(to_agent[np.abs(to_agent) > 1000]) > 8000, "the agent heard under 1 s of the caller"
    assert abs(dominant(to_agent) - CUSTOMER_HZ) < 20
    caller = max(at_cust.flows.values(), key=lambda f: len(f.packets))
    tail = caller.audio(since=caller.packets[-1][0] - 2.0)
    assert abs(dominant(tail) - AGENT_HZ) < 20, dominant(tail)
    head = caller.audio(until=caller.packets[0][0] + 1.5)
    assert np.abs(head).max() > 1000 and abs(dominant(head) - AGENT_HZ) > 50


@pytest.mark.timeout(180)
def test_an_agent_campaigns_own_ivr_holds_then_plays_on_fail_then_bridges(tmp_path: Path) -> None:
    """The agent is logged in but not ready: the first caller holds for
    queue_wait (2 s) and hears `sorry`; once the agent is ready the second
    caller reaches them."""
    campaign = SALES.format(mode="progressive", queue_wait="2s", ivr=OWN_IVR)
    daemon, phone, carrier = rig(tmp_path, campaign, hangup_ms=9000)
    try:
        daemon.start()
        daemon("agent.login", agent="a1", not_ready=True)
        csv = contacts_csv(tmp_path, ["s1,+12125554101,Finn", "s2,+12125554102,Gail"])
        daemon("contacts.import", list="sales-list", file=str(csv))
        # Progressive dials for ready agents only: mark ready, then not
        # ready as soon as the call is placed, so the caller finds none.
        daemon("agent.ready", agent="a1")
        daemon("campaign.start", name="sales")
        wait_for(lambda: daemon("campaign.show", name="sales")["in_flight"] == 1, 20, "a call")
        daemon("agent.not_ready", agent="a1", reason="break")
        first = wait_for(
            lambda: [a for a in daemon("report.attempts", campaign="sales") if a["ended_at"]],
            40, "the first call ended",
        )  # fmt: skip
        daemon("agent.ready", agent="a1")
        wait_for(lambda: daemon("agent.status", agent="a1")["state"] == "wrap_up", 40,
                 "the second caller bridged, then wrap-up")  # fmt: skip
        daemon("agent.wrapup", agent="a1", code="sale")
        attempts = {a["number"]: a for a in daemon("report.attempts", campaign="sales")}
        daemon("agent.logout", agent="a1")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
        phone.stop()
        carrier.stop()
    (held,) = first
    path = json.loads(held["ivr_path"])
    assert path["transfer"] == "no agent of sales free within 2s", path
    assert "greet > agent (transfer failed) > sorry > bye" == held["ivr_summary"], held[
        "ivr_summary"
    ]
    assert held["agent"] is None and held["wrapup_code"] is None
    second = attempts["+12125554102"]
    assert json.loads(second["ivr_path"])["end"] == "transferred"
    assert second["agent"] == "a1" and second["wrapup_code"] == "sale"
    # IVR callers are not in the abandon ledger: their call began with the
    # IVR's own message, and the one who held chose to.
    assert query(tmp_path, "select count(*) from abandons") == [(0,)]


def query(tmp: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp / "outdial.db") as db:
        return list(db.execute(sql, args))


def contact_state(tmp: Path, campaign: str) -> list[tuple[object, ...]]:
    return query(tmp, "select cc.state, cc.last_result, cc.attempts from campaign_contacts cc "
                      "join campaigns c on c.id = cc.campaign_id where c.name = ?", campaign)  # fmt: skip
