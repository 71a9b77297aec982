"""benchmarks/sms_load at a tiny size, so that it cannot rot: every case runs
(SMPP against the node SMSC at two windows, HTTP against the fake Twilio API;
notifications and a campaign; 1- and 2-segment texts) and the store agrees
with what the benchmark counted. Figures are not checked: benchmarks are not
tests."""

from __future__ import annotations

import pytest

from benchmarks import sms_load

pytestmark = pytest.mark.smsc


async def test_every_case_runs_and_the_store_agrees() -> None:
    args = sms_load.parser().parse_args(
        ["--messages", "40", "--windows", "1,10", "--warmup", "5", "--clients", "8"]
    )
    lines: list[str] = []
    results = await sms_load.run(args, emit=lines.append)
    assert [(r.adapter, r.path, r.window, r.segments_each) for r in results] == [
        (adapter, path, window, segments)
        for adapter, windows in (("smpp", ("1", "10")), ("http", ("-",)))
        for path in ("notify", "campaign")
        for segments in (1, 2)
        for window in windows
    ]
    for r in results:
        assert r.messages == 40 and r.failed == 0 and r.accepted == 40, r
        assert r.seconds > 0 and r.p50 <= r.p99 and r.cpu > 0, r
        if r.adapter == "smpp":  # the SMSC receipts every segment
            assert r.receipts == 40 * r.segments_each and r.unknown == 0, r
            assert r.delivered == 40, r
    assert lines[1] == sms_load.HEADER and len(lines) == 2 + len(results)
