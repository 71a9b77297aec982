"""The running daemon's shared context, handed to every command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.bus import EventBus

if TYPE_CHECKING:
    from engine.config import DaemonConfig
    from engine.email.service import EmailService
    from engine.sms.service import SmsService
    from engine.store import Store
    from engine.voice.agents import AgentPool
    from engine.voice.campaigns import CampaignManager


@dataclass
class App:
    store: Store
    campaigns: CampaignManager
    bus: EventBus
    config: DaemonConfig
    started_at: float
    agents: AgentPool | None = None
    sms: SmsService | None = None
    email: EmailService | None = None
