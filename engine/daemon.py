"""`outdial run`: the daemon in the foreground (systemd Type=simple).

Start order: store (migrations, then reconciliation of attempts a crash left in
flight), telephony (SIP socket, RTP ports, media clock), campaigns, control
socket, then campaigns that were running resume. SIGTERM or SIGINT: stop
placing calls, let calls in progress finish for `shutdown_grace` seconds, hang
up the rest, flush the store, exit 0. A second signal exits at once; the store
stays consistent because every write is a committed SQLite transaction.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time

import structlog

from engine.app import App
from engine.bus import EventBus
from engine.config import DaemonConfig
from engine.control import ControlServer
from engine.email.service import EmailService
from engine.sms.service import SmsService
from engine.store import Store
from engine.voice.agents import AgentPool, agent_locator, stored_agents
from engine.voice.campaigns import CampaignManager
from engine.voice.telephony import Telephony
from engine.web import WebServer

log = structlog.get_logger("outdial.daemon")

EXIT_OK, EXIT_FORCED = 0, 130


def _raise_fd_limit() -> None:
    """One RTP socket per call: 1,000 calls need more than the default 1,024 fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_daemon(config: DaemonConfig) -> int:
    _raise_fd_limit()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            log.info("shutdown requested", signal=signal.Signals(signum).name,
                     grace_s=config.shutdown_grace)  # fmt: skip
            stop.set()
        else:
            log.warning("second signal: exiting at once")
            os._exit(EXIT_FORCED)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    store = await Store.open(config.store_url)
    tel = await Telephony.open(config.sip_host, config.sip_port, config.rtp_ports, config.trunks)
    bus = EventBus()
    agents = AgentPool(await stored_agents(store, config), tel, store, bus, agent_locator(tel),
                       config.registrar)  # fmt: skip
    stale = await agents.log_out_stale()
    if stale:
        log.warning("agents left logged in by the last run are logged out", count=stale)
    manager = CampaignManager(store, bus, config, tel, agents)
    sms = SmsService(store, bus, config)
    email = EmailService(store, bus, config)
    app = App(store=store, campaigns=manager, bus=bus, config=config, started_at=time.time(),
              agents=agents, sms=sms, email=email)  # fmt: skip
    await manager.load_all()
    interrupted = await manager.reconcile()
    if interrupted:
        log.warning("reconciled attempts left in flight by a crash", count=interrupted)
    # Webhooks first: messages resumed below may get their callbacks at once.
    web = WebServer(app, config.http) if config.http is not None else None
    if web is not None:
        await web.start()
    # After the voice campaigns: a message campaign may not take their names.
    await sms.start(set(manager.runners))
    await email.start(set(manager.runners) | set(sms.runners))
    control = ControlServer(app, config.control_socket)
    await control.start()
    host, port = tel.sip.local_address
    log.info("outdial running", sip=f"{host}:{port}", control=str(config.control_socket),
             campaigns=len(manager.runners), store=config.store_url)  # fmt: skip
    await manager.resume_running()
    await sms.resume_running()
    await email.resume_running()
    await stop.wait()
    await control.stop()
    grace = config.shutdown_grace
    await asyncio.gather(manager.shutdown(grace), sms.shutdown(grace), email.shutdown(grace))
    if web is not None:
        await web.stop()
    await agents.logout_all()
    await tel.close()
    await store.close()
    log.info("outdial stopped")
    return EXIT_OK
