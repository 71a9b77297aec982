"""The AMD sample behind Ofcom's false-positive estimate: the recorder (which
calls are sampled, what is kept, what is written), the media leg's tap, the
store's samples and marks (with their ledger rows), the estimate and its
Wilson interval, and the compliance report and `ctl` outputs that carry it."""

from __future__ import annotations

import argparse
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsp.wav import decode_wav
from engine.campaign_config import AmdConfig
from engine.compliance.amd_sample import AmdSampler, AudioSample
from engine.ctl_compliance import format_compliance, format_samples, show_compliance
from engine.errors import BadRequest, NotFound
from engine.store import AttemptIntent, Store
from engine.store.amdsampledb import MIN_MARKS, FalsePositiveEstimate, wilson_interval
from engine.voice.telephony import MediaLeg
from tests.unit.test_ctl import parse

T0 = datetime(2030, 1, 1, tzinfo=UTC)
AMD = AmdConfig(enabled=True, sample_share=1.0, sample_seconds=1.0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    await s.close()


def frames(n: int, start: int = 0) -> list[np.ndarray[Any, np.dtype[np.int16]]]:
    """n 20 ms frames whose samples count up from `start` (to see what was kept)."""
    return [np.arange(start + 160 * i, start + 160 * (i + 1), dtype=np.int16) for i in range(n)]


# ---------------------------------------------------------------- recorder


def test_a_sample_keeps_the_first_seconds_only() -> None:
    sample = AudioSample(1.0)  # 50 frames
    for frame in frames(80):
        sample.tap(frame)
        frame[:] = -1  # the caller reuses its buffer: what was kept is a copy
    assert sample.full and sample.seconds == 1.0
    assert np.array_equal(sample.audio(), np.arange(8000, dtype=np.int16))
    empty = AudioSample(0.5)
    assert empty.seconds == 0.0 and len(empty.audio()) == 0 and not empty.full


def test_the_media_leg_taps_each_frame_before_the_flow() -> None:
    heard: list[str] = []
    leg = MediaLeg(endpoint=None)  # type: ignore[arg-type]  # on_frame never touches it
    leg.tap = lambda f: heard.append(f"tap {f[0]}")
    leg.flow = lambda f: heard.append(f"flow {f[0]}")  # type: ignore[func-returns-value]
    for frame in frames(2):
        leg.on_frame(None, frame)  # type: ignore[arg-type]
    assert heard == ["tap 0", "flow 0", "tap 160", "flow 160"]


def test_the_share_is_chosen_at_the_answer_with_the_given_rng(store: Store) -> None:
    off = AmdSampler(store, rng=random.Random(1))
    assert off.at_answer(1, replace(AMD, sample_share=0.0)) is None
    assert off.at_answer(2, replace(AMD, enabled=False)) is None  # no AMD, no machine verdicts
    assert off.held == 0
    share = replace(AMD, sample_share=0.25)
    sampler = AmdSampler(store, rng=random.Random(7))
    chosen = [a for a in range(1000) if sampler.at_answer(a, share) is not None]
    draws = random.Random(7)
    assert chosen == [a for a in range(1000) if draws.random() < 0.25]  # the same seed, again
    assert 200 < len(chosen) < 300 and sampler.held == len(chosen)
    always = AmdSampler(store, rng=random.Random(3))
    assert all(always.at_answer(a, AMD) is not None for a in range(50))


async def _attempt(store: Store, campaign: str, number: str, amd: str | None = "machine") -> int:
    contact = await store.add_contact("l1", [number])
    attempt = await store.create_attempt(AttemptIntent(campaign, contact, number, "t", None, T0))
    store.update_attempt(attempt, invite_sent_at=T0, answered_at=T0, amd_result=amd)
    return attempt


async def test_a_machine_verdicts_audio_is_written_and_listed_others_dropped(
    store: Store, tmp_path: Path
) -> None:
    await store.upsert_campaign("c1", "l1", {})
    machine = await _attempt(store, "c1", "+12125550101")
    person = await _attempt(store, "c1", "+12125550102", "human")
    sampler = AmdSampler(store, tmp_path / "samples", random.Random(0))
    for attempt in (machine, person):
        tap = sampler.at_answer(attempt, AMD)
        assert tap is not None
        for frame in frames(75):  # 1.5 s heard, 1 s kept
            tap(frame)
    assert sampler.at_end("c1", person, "+12125550102", False, T0) is None
    kept = sampler.at_end("c1", machine, "+12125550101", True, T0)
    assert kept is not None and sampler.held == 0
    assert sampler.at_end("c1", machine, "+12125550101", True, T0) is None  # once only
    await sampler.drain()
    await store.flush()
    path = tmp_path / "samples" / "c1" / f"{machine}.wav"
    audio, info = decode_wav(path.read_bytes())
    assert (info.sample_rate, info.channels, info.frames) == (8000, 1, 8000)
    assert np.array_equal(audio.astype(np.int16), np.arange(8000, dtype=np.int16))
    assert not (tmp_path / "samples" / "c1" / f"{person}.wav").exists()
    assert [p.name for p in (tmp_path / "samples" / "c1").iterdir()] == [f"{machine}.wav"]
    (row,) = await store.amd_samples("c1")
    assert (row["attempt_id"], row["number"], row["path"]) == (machine, "+12125550101", str(path))
    assert row["mark"] is None and row["recorded_at"] == T0.isoformat()
    assert sampler.saved == 1


async def test_a_call_that_ends_before_any_audio_leaves_no_sample(
    store: Store, tmp_path: Path
) -> None:
    sampler = AmdSampler(store, tmp_path / "samples", random.Random(0))
    assert sampler.at_answer(5, AMD) is not None
    assert sampler.at_end("c1", 5, "+12125550101", True, T0) is None  # nothing heard
    assert sampler.at_end("c1", 6, "+12125550101", True, T0) is None  # never sampled
    await sampler.drain()
    assert not (tmp_path / "samples").exists()
    assert await store.amd_samples("c1") == []


# ------------------------------------------------------------ store, marks


async def _samples(store: Store, campaign: str, n: int, first: int = 0) -> list[int]:
    ids = []
    for i in range(n):
        number = f"+4420794{first + i:05d}"
        attempt = await _attempt(store, campaign, number)
        store.add_amd_sample(campaign=campaign, attempt_id=attempt, number=number,
                             path=f"/s/{attempt}.wav",
                             recorded_at=T0 + timedelta(minutes=first + i))  # fmt: skip
        ids.append(attempt)
    await store.flush()
    return ids


async def test_marks_are_listed_unmarked_first_and_each_is_a_ledger_row(store: Store) -> None:
    await store.upsert_campaign("uk1", "l1", {"dialing": {"jurisdiction": "uk"}})
    a, b, c = await _samples(store, "uk1", 3)
    assert await store.amd_mark_counts("uk1") == {"person": 0, "machine": 0, "unmarked": 3}
    marked = await store.mark_amd_sample(a, "Person ", "ann")
    assert (marked["mark"], marked["marked_by"], marked["previous"]) == ("person", "ann", None)
    await store.mark_amd_sample(b, "machine", "bob")
    assert [s["attempt_id"] for s in await store.amd_samples("uk1")] == [c, a, b]
    assert [s["attempt_id"] for s in await store.amd_samples("uk1", unmarked=True)] == [c]
    again = await store.mark_amd_sample(a, "machine", "cat")  # re-marked: allowed, recorded
    assert (again["mark"], again["previous"], again["marked_by"]) == ("machine", "person", "cat")
    assert await store.amd_mark_counts("uk1") == {"person": 0, "machine": 2, "unmarked": 1}
    rows = await store.ledger_rows("uk1", kinds=["amd_mark"])
    assert [(r["source"], r["detail"]["mark"], r["detail"]["previous"]) for r in rows] == [
        ("operator:ann", "person", None), ("operator:bob", "machine", None),
        ("operator:cat", "machine", "person"),
    ]  # fmt: skip
    assert rows[0]["detail"]["attempt_id"] == a and rows[0]["number"] == "+442079400000"
    assert rows[0]["rule"].startswith("Ofcom")


async def test_mark_errors_name_what_is_wrong(store: Store) -> None:
    await store.upsert_campaign("uk1", "l1", {})
    (sampled,) = await _samples(store, "uk1", 1)
    unsampled = await _attempt(store, "uk1", "+442079499999", "human")
    await store.flush()
    with pytest.raises(BadRequest, match="mark: expected person or machine, got 'fax'"):
        await store.mark_amd_sample(sampled, "fax", "ann")
    with pytest.raises(BadRequest, match="operator"):
        await store.mark_amd_sample(sampled, "person", "  ")
    with pytest.raises(NotFound, match="no attempt 999999"):
        await store.mark_amd_sample(999999, "person", "ann")
    with pytest.raises(NotFound, match=f"attempt {unsampled} has no AMD sample .AMD said human"):
        await store.mark_amd_sample(unsampled, "person", "ann")
    assert await store.ledger_rows("uk1", kinds=["amd_mark"]) == []  # nothing half-done


# --------------------------------------------------------------- estimate


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 20) or (1, 1)
    assert low == 0.0 and high == pytest.approx(0.16113, abs=1e-4)  # not [0, 0]
    assert wilson_interval(5, 20) == pytest.approx((0.11186, 0.46871), abs=1e-4)
    low, high = wilson_interval(20, 20) or (0, 0)
    assert high == 1.0 and low == pytest.approx(0.83887, abs=1e-4)


def test_the_estimate_needs_enough_marks() -> None:
    configured = Decimal("0.02")
    none = FalsePositiveEstimate(0, 0, 4, configured)
    assert (none.source, none.rate, none.sample_rate) == ("configured", configured, None)
    assert "no sample is marked yet; 4 unmarked" in none.note()
    few = FalsePositiveEstimate(3, MIN_MARKS - 4, 0, configured)  # 19 marks
    assert (few.source, few.rate) == ("configured", configured)
    assert "it has 19: 3 of 19 marked machine verdicts were people" in few.note()
    enough = FalsePositiveEstimate(5, 15, 2, configured)
    assert (enough.source, enough.rate) == ("sample", Decimal("0.25"))
    assert enough.note().startswith("AMD false-positive rate 25.00% from the operator-marked")
    assert "95% Wilson interval 11.19%-46.87%" in enough.note()
    assert "configured dialing.amd_false_positive_rate (2.00%) is not used" in enough.note()
    everyone = FalsePositiveEstimate(20, 0, 0, None)
    assert (everyone.source, everyone.rate) == ("sample", Decimal(1))
    assert everyone.as_dict()["interval_95"] == [pytest.approx(0.838875, abs=1e-6), 1.0]
    unset = FalsePositiveEstimate(1, 1, 0, None)
    assert (unset.source, unset.rate) == ("none", Decimal(0))
    assert unset.as_dict() == {
        "source": "none", "rate": 0.0, "configured_rate": None, "sample_rate": 0.5,
        "interval_95": unset.as_dict()["interval_95"], "marked": 2, "person": 1,
        "machine": 1, "unmarked": 0, "min_marks": MIN_MARKS,
    }  # fmt: skip


async def _uk_calls(store: Store, campaign: str) -> None:
    """19 live answers and 1 abandon in the first 24 h (the machine verdicts
    are the sampled calls)."""
    contact = await store.add_contact("l1", ["+442079460000"])
    for i in range(19):
        when = T0 + timedelta(hours=1, seconds=i)
        attempt = await store.create_attempt(
            AttemptIntent(campaign, contact, "+442079460000", "t", None, when)
        )
        store.update_attempt(attempt, invite_sent_at=when, answered_at=when)
        if i == 0:
            await store.record_abandon(
                campaign=campaign, attempt_id=attempt, contact_id=contact,
                number="+442079460000", answered_at=when, greeting_end_at=when,
                message_started_at=None, reason="no agent", at=when,
            )  # fmt: skip
    await store.flush()


async def test_the_report_uses_the_marks_from_20_on(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    uk = {"dialing": {"jurisdiction": "uk", "amd_false_positive_rate": "10%"}}
    await store.upsert_campaign("uk1", "l1", uk)
    await _uk_calls(store, "uk1")
    ids = await _samples(store, "uk1", 21)  # 21 machine verdicts, each sampled
    for attempt in ids[:19]:  # 19 marks: the configured 10 % stands
        await store.mark_amd_sample(attempt, "machine", "ann")
    report = await store.compliance_report("uk1", T0, T0 + timedelta(days=1))
    (window,) = report["windows"]
    assert report["amd_false_positive"]["source"] == "configured"
    assert window["machines"] == 21
    assert window["amd_false_positive_rate"] == 0.1
    assert window["amd_false_positive_estimate"] == pytest.approx(2.1)
    assert any("configured" in n and "it has 19: 0 of 19" in n for n in report["notes"])
    await store.mark_amd_sample(ids[19], "person", "ann")  # 20 marks: 1 person, 5 %
    report = await store.compliance_report("uk1", T0, T0 + timedelta(days=1))
    (window,) = report["windows"]
    fp = report["amd_false_positive"]
    assert (fp["source"], fp["rate"], fp["marked"], fp["person"], fp["unmarked"]) == (
        "sample", 0.05, 20, 1, 1)  # fmt: skip
    assert fp["applied"] is True and fp["configured_rate"] == 0.1
    # (1 abandon + 21 x 5 %) / (19 live + 1.05)
    assert window["amd_false_positive_estimate"] == pytest.approx(1.05)
    assert window["abandon_rate"] == round(2.05 / 20.05, 6)
    assert any(n.startswith("AMD false-positive rate 5.00% from the operator-marked sample: "
                            "1 of 20") for n in report["notes"])  # fmt: skip
    assert "AMD false-positive rate: 5.00% (sample); marked samples: 20 (1 person, 19 machine, " \
        "95% interval" in format_compliance(report)  # fmt: skip
    show_compliance(report, argparse.Namespace(format="csv"))
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert "amd_false_positive_rate" in header and "amd_false_positive_source" in header
    assert row.endswith(",sample")


async def test_a_us_report_shows_the_marks_but_applies_none(store: Store) -> None:
    await store.upsert_campaign("us1", "l1", {"dialing": {"jurisdiction": "us"}})
    for attempt in await _samples(store, "us1", 20):
        await store.mark_amd_sample(attempt, "person", "ann")
    report = await store.compliance_report("us1", T0, T0 + timedelta(days=1))
    fp = report["amd_false_positive"]
    assert (fp["source"], fp["rate"], fp["applied"]) == ("sample", 1.0, False)
    assert report["windows"][0]["amd_false_positive_rate"] == 0.0
    assert not any("AMD false-positive" in n for n in report["notes"])
    assert "(not applied: not a UK campaign)" in format_compliance(report)


# -------------------------------------------------------------------- ctl


def test_ctl_samples_and_mark_requests() -> None:
    args = parse(["ctl", "compliance", "samples", "uk1", "--unmarked", "--limit", "5"])
    request = args.ctl_build(args)
    assert (request.cmd, request.args) == (
        "compliance.amd_samples", {"campaign": "uk1", "unmarked": True, "limit": 5})  # fmt: skip
    args = parse(["ctl", "compliance", "mark", "42", "person", "--by", "ann"])
    request = args.ctl_build(args)
    assert (request.cmd, request.args) == (
        "compliance.amd_mark", {"attempt": 42, "mark": "person", "by": "ann"})  # fmt: skip
    text = format_samples({
        "campaign": "uk1", "min_marks": 20, "counts": {"person": 1, "machine": 2, "unmarked": 1},
        "samples": [{"attempt_id": 7, "number": "+442079400000", "recorded_at": "t",
                     "mark": None, "path": "/s/7.wav"}],
    })  # fmt: skip
    assert text.startswith("AMD samples of uk1: 1 unmarked, 3 marked (1 person, 2 machine)")
    assert "/s/7.wav" in text and "+442079400000" in text
