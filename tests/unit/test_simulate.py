"""The pacing simulator: the model, common random numbers, the bound, the metrics, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main as outdial_main
from engine.voice.pacing import DialMode, PacingConfig
from engine.voice.simulate import (
    CampaignSim,
    DialRecords,
    Exponential,
    LogNormal,
    Outcome,
    PacerPolicy,
    Scenario,
)
from engine.voice.simulate_cli import simulate_main
from engine.voice.simulate_metrics import compare, worst_window

SCENARIO = Scenario(
    agents=20, answer_rate=0.3, machines=0.3, talk=Exponential(60.0),
    wrap=LogNormal(30.0, 10.0), hours=2.0, seed=3,
)  # fmt: skip


@pytest.fixture(scope="module")
def comparison() -> dict[str, object]:
    return compare(SCENARIO, PacingConfig(DialMode.PREDICTIVE))


def test_ours_holds_the_target_on_every_30_minute_window(comparison: dict) -> None:
    ours = comparison["algorithms"]["predictive"]
    assert ours["live_answers"] > 1000
    assert ours["worst_30min_abandon_rate"] <= 0.03
    for period in ours["abandon_rate_per_30min"]:
        assert period["rate"] is not None and period["rate"] <= 0.03
    # ...and it is not progressive in disguise: agents are much busier.
    assert ours["occupancy"] > comparison["algorithms"]["progressive"]["occupancy"] + 0.1


def test_the_oracle_bounds_every_algorithm(comparison: dict) -> None:
    algos = comparison["algorithms"]
    bound = algos["oracle"]["occupancy"]
    assert bound > 0.99
    assert algos["oracle"]["abandons"] == 0
    for name, figures in algos.items():
        assert figures["occupancy"] <= bound, name
    assert comparison["ours_vs_oracle_occupancy"] == pytest.approx(
        algos["predictive"]["occupancy"] / bound, abs=1e-3
    )


def test_records_are_common_to_every_algorithm() -> None:
    lazy = DialRecords(SCENARIO)
    late = lazy[700]
    fresh = DialRecords(SCENARIO)
    assert [fresh[i] for i in range(701)][-1] == late
    assert [lazy[i] for i in range(50)] == [fresh[i] for i in range(50)]
    humans = sum(fresh[i].outcome is Outcome.HUMAN for i in range(5000)) / 5000
    assert humans == pytest.approx(0.3 * 0.98, abs=0.03)  # some ring past the timeout
    short = Scenario(agents=5, answer_rate=0.3, talk=Exponential(60.0), hours=0.5, seed=9)
    records = DialRecords(short)
    runs = [
        CampaignSim(short, records, PacerPolicy(name, PacingConfig(mode, ratio=ratio))).run()
        for name, mode, ratio in (("a", DialMode.PROGRESSIVE, 1.0), ("b", DialMode.POWER, 3.0))
    ]
    for run in runs:
        # The people an algorithm reached are exactly the people among the
        # records it dialled (less those still ringing or waiting at the end).
        people = sum(records[i].reaches_agent(False) for i in range(run.dials))
        assert 0 <= people - len(run.live_times) <= 3.0 * short.agents
    assert runs[1].dials > runs[0].dials


def test_worst_window_slides() -> None:
    live = np.arange(0.0, 7200.0, 10.0)  # 180 answers per 30 min
    abandons = np.asarray([3000.0, 3100.0, 3200.0, 3300.0, 3400.0, 3500.0, 6000.0])
    rate, start = worst_window(live, abandons, 7200.0)
    assert rate == pytest.approx(6 / 180, abs=1e-3)
    assert start is not None and 1700.0 <= start <= 3000.0


def test_cli_writes_json_with_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sim.json"
    argv = ["--agents", "5", "--answer-rate", "0.3", "--talk", "60s", "--wrap", "20s±5s",
            "--ring", "8s±4s", "--hours", "0.5", "--seed", "2", "--json", str(out)]  # fmt: skip
    assert simulate_main(argv) == 0
    printed = capsys.readouterr().out
    assert "ours/oracle occupancy" in printed
    doc = json.loads(out.read_text())
    assert doc["scenario"]["ring"] == "8s±4s"
    assert set(doc["algorithms"]) == {
        "predictive", "progressive", "power", "vicidial_adapt_tapered", "oracle"
    }  # fmt: skip
    for figures in doc["algorithms"].values():
        for key in ("dials", "live_answers", "abandons", "abandon_rate", "abandon_rate_per_30min",
                    "worst_30min_abandon_rate", "occupancy", "idle_wait_median_s",
                    "idle_wait_p95_s", "calls_per_agent_hour", "ofcom_abandon_rate"):  # fmt: skip
            assert key in figures
        assert 0.0 <= figures["occupancy"] <= 1.0
    assert len(doc["series"]["predictive"]["t_min"]) == 30


def test_bad_arguments_exit_2_naming_the_flag(capsys: pytest.CaptureFixture) -> None:
    assert outdial_main(["simulate", "--ring", "10s±x"]) == 2
    assert "--ring" in capsys.readouterr().err
    assert simulate_main(["--answer-rate", "0.8", "--machines", "0.4"]) == 2
    assert "--answer-rate + --machines" in capsys.readouterr().err
    assert simulate_main(["--algorithm", "magic"]) == 2
    assert "--algorithm" in capsys.readouterr().err


def test_campaign_file_sets_the_mode(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = tmp_path / "c.yaml"
    good.write_text("name: c\ndialing:\n  mode: power\n  ratio: 2.5\n  abandon_target: 2%\n")
    out = tmp_path / "c.json"
    argv = ["--campaign", str(good), "--agents", "3", "--hours", "0.1",
            "--algorithm", "predictive", "--json", str(out)]  # fmt: skip
    assert simulate_main(argv) == 0
    config = json.loads(out.read_text())["config"]
    assert config == {**config, "mode": "power", "ratio": 2.5, "abandon_target": 0.02}
    bad = tmp_path / "bad.yaml"
    bad.write_text("dialing:\n  mode: turbo\n")
    assert simulate_main(["--campaign", str(bad)]) == 2
    assert "dialing.mode" in capsys.readouterr().err


def test_attempts_csv_gives_rates_and_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = ["result,amd_result,created_at,answered_at,ended_at,duration_ms"]
    for i in range(40):
        answered = f"2026-01-01T10:00:{10 + i % 5:02d}+00:00"
        rows.append(f"answered,human,2026-01-01T10:00:00+00:00,{answered},,{30000 + 1000 * i}")
        rows.append(f"machine,machine,2026-01-01T10:00:00+00:00,{answered},,5000")
        rows.append("no_answer,,2026-01-01T10:00:00+00:00,,2026-01-01T10:00:25+00:00,")
    csv_file = tmp_path / "attempts.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    out = tmp_path / "a.json"
    argv = ["--attempts", str(csv_file), "--agents", "3", "--hours", "0.1",
            "--algorithm", "progressive", "--json", str(out)]  # fmt: skip
    assert simulate_main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["scenario"]["answer_rate"] == pytest.approx(1 / 3)
    assert doc["scenario"]["machines"] == pytest.approx(1 / 3)
    assert doc["scenario"]["talk"].startswith("empirical(n=40")
    err = capsys.readouterr().err
    assert "wrap-up times are not in attempts" in err
    assert "not invite_sent_at" in err
