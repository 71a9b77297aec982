"""The command layer's SMS functions (`sms.*`), and the SMS side of the
`campaign.*` commands: the control socket and the HTTP API call these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import BadRequest, InvalidState

if TYPE_CHECKING:
    from engine.app import App
    from engine.messaging import MessageCampaignRunner
    from engine.sms.service import SmsService


def service(app: App) -> SmsService:
    if app.sms is None or not app.sms.enabled:
        where = app.config.path
        raise InvalidState(f"SMS is not configured: add an `sms:` section to {where}")
    return app.sms


def is_sms_campaign(app: App, name: str) -> bool:
    return app.sms is not None and name in app.sms.runners


def message_runner(app: App, name: str) -> MessageCampaignRunner | None:
    """The SMS or email campaign called `name` (None: not one, maybe a voice one)."""
    for service_ in (app.sms, app.email):
        if service_ is not None and name in service_.runners:
            runner: MessageCampaignRunner = service_.runners[name]
            return runner
    return None


async def sms_send(
    app: App,
    number: str,
    text: str | None = None,
    template: str | None = None,
    data: dict[str, str] | None = None,
    sender: str | None = None,
    account: str | None = None,
    region: str = "US",
) -> dict[str, Any]:
    """Send one SMS without a campaign; returns its id (stored before this answers)."""
    return await service(app).send(
        number, text, template=template, data=data, sender=sender, account=account,
        region=region,
    )  # fmt: skip


async def sms_preview(app: App, text: str, smart: bool = False) -> dict[str, Any]:
    """Encoding, segments, what forced UCS-2, split URLs."""
    del app
    from engine.sms.service import SmsService

    return SmsService.preview(text, smart)


async def sms_show(app: App, id: int) -> dict[str, Any]:
    """One message: its fields, status history and thread."""
    return await app.store.message(id)


async def sms_list(
    app: App,
    campaign: str | None = None,
    number: str | None = None,
    notifications: bool = False,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Messages, newest first (a campaign's, a number's, or the notifications)."""
    if limit < 1:
        raise BadRequest(f"limit: must be at least 1, got {limit}")
    address = None
    if number is not None:
        from engine.store.phones import InvalidNumber, PhoneNormalizer

        try:
            address = PhoneNormalizer("US").normalize(number)
        except InvalidNumber:
            address = number.strip()
    return await app.store.messages(
        campaign=campaign, address=address, channel="sms", notifications=notifications,
        limit=limit,
    )  # fmt: skip


async def sms_report(app: App, campaign: str | None = None) -> dict[str, Any]:
    """A campaign's totals (or, without one, the notifications'): contacts,
    processed, accepted, rejected, delivered, failed, opted out, segments."""
    report = await app.store.message_report(campaign)
    return {"campaign": campaign, **report}
