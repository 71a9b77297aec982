"""SIPp playing an agent's phone: it registers with outdial (or not, for a
static-uri agent), answers outdial's login call and streams its own tone.

    phone = start_agent_phone("agent1", "secret", outdial_port, 1300.0, workdir=tmp)
    ...                            # outdial sees Registered, calls phone.uri
    assert phone.wait() == 0       # after outdial's BYE

Ten agents are ten phones (ten SIPp processes, each `-m 1` on its own ports,
each with its own tone): see the comment at the top of agent_phone.xml.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.integration.sipp import SCENARIOS, Sipp, make_tone

REGISTERING = "agent_phone.xml"
ANSWERING = "agent_phone_answer.xml"


@dataclass
class AgentPhone:
    """One running SIPp agent phone."""

    username: str
    tone_hz: float
    sipp: Sipp

    @property
    def port(self) -> int:
        """The phone's SIP port on 127.0.0.1 (where its Contact points)."""
        return self.sipp.port

    @property
    def media_port(self) -> int:
        """Where the phone receives RTP, and the port it streams its tone from."""
        return self.sipp.media_port

    @property
    def uri(self) -> str:
        """The phone's address, for an agent configured with a static `uri`."""
        return f"sip:{self.username}@127.0.0.1:{self.port}"

    @property
    def returncode(self) -> int | None:
        """SIPp's exit code once it has exited (0: the scenario ran to its end)."""
        return self.sipp.proc.poll() if self.sipp.proc is not None else None

    def wait(self, timeout: float = 30) -> int:
        return self.sipp.wait(timeout)

    def stop(self) -> None:
        self.sipp.stop()

    def errors(self) -> str:
        return self.sipp.errors()

    def stats(self) -> dict[str, str]:
        """The last row of SIPp's statistics file (SuccessfulCall(C), FailedCall(C)...),
        written when SIPp exits; {} before that."""
        assert self.sipp.workdir is not None
        path = self.sipp.workdir / "sipp_stats.csv"
        if not path.exists():
            return {}
        rows = list(csv.DictReader(path.read_text(errors="replace").splitlines(), delimiter=";"))
        return {k.strip(): (v or "").strip() for k, v in rows[-1].items() if k} if rows else {}


def start_agent_phone(
    username: str,
    password: str | None,
    registrar_port: int | None,
    tone_hz: float,
    *,
    workdir: Path | None = None,
    expires: int = 3600,
    reregister: float = 86400.0,
    ring_ms: int = 100,
    registrar_host: str = "127.0.0.1",
) -> AgentPhone:
    """Start SIPp as `username`'s phone on a free loopback port.

    With `registrar_port`, the phone REGISTERs at registrar_host:registrar_port
    (digest user `username`, `password`; Expires `expires`; again every
    `reregister` seconds) and answers the INVITE that follows; with None it
    only answers (a static-uri agent). It rings for `ring_ms`, then streams
    a `tone_hz` sine rendered by sox (8 kHz mono mu-law, headerless, looped)
    until outdial hangs up.
    """
    work = workdir or Path(tempfile.mkdtemp(prefix=f"agent-{username}-"))
    work.mkdir(parents=True, exist_ok=True)
    tone = make_tone(work / f"{username}-{tone_hz:g}hz.ul", tone_hz, 1.0)
    keys = {"audio": f"{tone},-1,0", "username": username, "expires": str(expires)}
    if registrar_port is None:
        sipp = Sipp(ANSWERING, keys=keys, duration_ms=ring_ms, calls=1)
        return AgentPhone(username, tone_hz, sipp.start(work))
    extra = [
        "-oocsf", str(SCENARIOS / ANSWERING),
        "-au", username, "-ap", password or "",
        "-set", "reregister", f"{reregister:g}",
        "-default_behaviors", "all,-bye",  # no BYE for a refused REGISTER
        f"{registrar_host}:{registrar_port}",
    ]  # fmt: skip
    sipp = Sipp(REGISTERING, keys=keys, duration_ms=ring_ms, calls=1, extra=extra)
    return AgentPhone(username, tone_hz, sipp.start(work))
