"""The command layer's email functions (`email.*`): the control socket and the
HTTP API call these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import BadRequest, InvalidState

if TYPE_CHECKING:
    from engine.app import App
    from engine.email.service import EmailService


def service(app: App) -> EmailService:
    if app.email is None or not app.email.enabled:
        raise InvalidState(f"email is not configured: add an `email:` section to {app.config.path}")
    return app.email


async def email_send(
    app: App,
    address: str,
    template: str | None = None,
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
    data: dict[str, str] | None = None,
    sender: str | None = None,
    relay: str | None = None,
) -> dict[str, Any]:
    """Send one email without a campaign; returns its id (stored before this answers)."""
    return await service(app).send(
        address, template=template, subject=subject, text=text, html=html, data=data,
        sender=sender, relay=relay,
    )  # fmt: skip


async def email_list(
    app: App,
    campaign: str | None = None,
    address: str | None = None,
    notifications: bool = False,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Emails, newest first (a campaign's, an address's, or the notifications)."""
    if limit < 1:
        raise BadRequest(f"limit: must be at least 1, got {limit}")
    return await app.store.messages(
        campaign=campaign, address=address.strip().lower() if address else None,
        channel="email", notifications=notifications, limit=limit,
    )  # fmt: skip


async def email_unsubscribe(app: App, id: int) -> dict[str, Any]:
    """Unsubscribe the address of message `id` (as its one-click link would)."""
    return await service(app).unsubscribe(id, "command")
