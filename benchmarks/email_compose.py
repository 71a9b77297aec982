"""Composing one email: our direct writer against the `email` package, same
message, same run (the bench reminder of benchmarks/email_load: a
multipart/alternative of ~3.8 KB with the one-click List-Unsubscribe pair).

    python -m benchmarks.email_compose [--n 3000]

Both writers make the same bytes (the MIME boundary aside); the run checks
that before it times them.
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import UTC, datetime

from benchmarks.email_load import HTML, SUBJECT, TEXT
from engine.email import compose
from engine.email.config import EmailTemplate

_BOUNDARY = re.compile(rb"={15}\d{19}==")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--n", type=int, default=3000, help="messages per writer")
    args = p.parse_args(argv)
    template = compose.compile_email_template(EmailTemplate(SUBJECT, TEXT, HTML))
    subject, text, html = template.render({"first_name": "Pat1", "date": "Monday 3 pm"})
    fields = compose._header_fields(
        "Example Clinic <reminders@example.com>", "pat1@example.org", subject,
        "<0f1e2d3c4b5a@mail.example.com>", datetime(2026, 12, 4, 12, 0, tzinfo=UTC), None,
        ("https://mail.example.com/u/aaaaaaaaaaaa", None),
    )  # fmt: skip
    mailboxes = ("Example Clinic <reminders@example.com>", "pat1@example.org", None)
    direct = compose._direct(fields, mailboxes, "<0f1e2d3c4b5a@mail.example.com>", text, html)
    package = compose._with_package(fields, text, html)
    assert direct is not None, "the bench message must be one the direct writer takes"
    assert _BOUNDARY.sub(b"B", direct) == _BOUNDARY.sub(b"B", package)
    print(f"{len(direct):,} bytes a message, {args.n:,} messages a writer")
    message_id = "<0f1e2d3c4b5a@mail.example.com>"

    def write_direct() -> object:
        return compose._direct(fields, mailboxes, message_id, text, html)

    def write_package() -> object:
        return compose._with_package(fields, text, html)

    rates = {}
    for name, write in (("direct", write_direct), ("package", write_package)):
        start = time.perf_counter()
        for _ in range(args.n):
            write()
        seconds = time.perf_counter() - start
        rates[name] = args.n / seconds
        print(f"{name:8} {1e6 * seconds / args.n:8.1f} us/msg {rates[name]:9,.0f} msgs/s")
    print(f"direct is {rates['direct'] / rates['package']:.1f}x the package")


if __name__ == "__main__":
    main()
