"""The one-click unsubscribe on the daemon's HTTP listener (RFC 8058).

- `POST /u/{token}`: what a mail client sends for one-click
  (`List-Unsubscribe=One-Click` in the body) and what the confirmation
  page's button sends: the address goes onto the campaign's opt-out list
  (source `unsubscribe`), and a plain page says so.
- `GET /u/{token}`: a plain page naming the address with that button. A GET
  never unsubscribes: link scanners and prefetchers follow every link in a
  mail, and RFC 8058 asks for the POST.

A token that is not genuine (or was made for bounces) gets 404 and changes
nothing.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from engine.email.service import EmailService

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em}}
button{{font:inherit;padding:.5em 1.2em}}</style></head>
<body><main><h1>{title}</h1>{body}</main></body></html>
"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = _PAGE.format(title=html.escape(title), body=body)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def add_email_routes(router: web.UrlDispatcher, service: EmailService) -> None:
    async def show(request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        row = await service.describe_token(token)
        if row is None:
            return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
        address = html.escape(str(row["address"]))
        form = (
            f"<p>Stop emails like this one to <strong>{address}</strong>?</p>"
            f'<form method="post" action="/u/{html.escape(token)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        return _page("Unsubscribe", form)

    async def unsubscribe(request: web.Request) -> web.StreamResponse:
        message_id = service.token_message(request.match_info["token"])
        if message_id is None:
            return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
        await request.read()  # List-Unsubscribe=One-Click (RFC 8058 3.2), or the form's
        result = await service.unsubscribe(message_id, "one-click")
        address = html.escape(str(result["address"]))
        return _page("Unsubscribed", f"<p><strong>{address}</strong> will get no more emails "
                                     "like this one.</p>")  # fmt: skip

    router.add_get("/u/{token}", show)
    router.add_post("/u/{token}", unsubscribe)
