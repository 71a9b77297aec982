"""benchmarks/email_load at a tiny size, so that it cannot rot: every case runs
(unsigned, rsa-2048 and ed25519 with our signer and with dkimpy; notifications
and a campaign) against Postfix's smtp-sink, and the sink took each message
once. Figures are not checked: benchmarks are not tests."""

from __future__ import annotations

import pytest

from benchmarks import email_load

pytestmark = pytest.mark.smtp


async def test_every_case_runs_and_the_sink_took_each_message() -> None:
    args = email_load.parser().parse_args(
        ["--messages", "30", "--warmup", "5", "--clients", "8", "--connections", "2"]
    )
    lines: list[str] = []
    results = await email_load.run(args, emit=lines.append)
    keys = (("none", ("-",)), ("rsa-2048", ("ours", "dkimpy")), ("ed25519", ("ours", "dkimpy")))
    assert [(r.case.key, r.case.signer, r.case.path) for r in results] == [
        (key, signer, path)
        for path in ("notify", "campaign")
        for key, signers in keys
        for signer in signers
    ]
    for r in results:
        assert r.messages == 30 and r.failed == 0 and r.sink_took == 30, r
        assert r.seconds > 0 and r.p50 <= r.p99 and r.cpu > 0, r
    assert lines[1] == email_load.HEADER
    assert len(lines) == 2 + len(results) + 4  # and a ratio line per signed key and path
