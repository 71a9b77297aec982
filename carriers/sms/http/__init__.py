"""SMS over HTTP aggregators: a Twilio-shaped Messages API adapter and a Kannel adapter.

`twilio.py` and `kannel.py` are sans-IO: they build `HttpRequest` values and
parse status codes, bodies and form or query parameters, with no socket and
no clock. `client.py` is the thin aiohttp layer: senders that perform the
requests, and webhook handlers for the daemon's HTTP listener.
"""
