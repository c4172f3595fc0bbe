"""Train and scan end to end on the labelled sample month."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from detector.cli import main
from detector.detection import _with_detail, lean_windows, profiles_of, score, train
from detector.features import DETAIL_COLUMNS, build_features
from detector.findings import FINDINGS_SCHEMA
from detector.model_store import load_model

SAMPLE = Path(__file__).parent.parent / "sample_logs"
MODEL = SAMPLE.parent / "models" / "default"
LABELS = json.loads((SAMPLE / "labels.json").read_text())
UNTIL = datetime.fromisoformat(LABELS["generator"]["baseline_until"])


@pytest.fixture(scope="module")
def events(sample_logs) -> pl.DataFrame:
    return sample_logs[0]


@pytest.fixture(scope="module")
def model(sample_model):
    return sample_model  # train(events.filter(pl.col("time") < UNTIL)), shared with test_streamed_training


@pytest.fixture(scope="module")
def findings(events, model) -> pl.DataFrame:
    return score(events.filter(pl.col("time") >= UNTIL), model)


def _matches(finding: dict, incident: dict) -> bool:
    start = datetime.fromisoformat(incident["start"])
    end = datetime.fromisoformat(incident["end"])
    entities = set(incident["accounts"]) | set(incident["devices"])
    return finding["entity_id"] in entities and finding["window_start"] <= end and finding["window_end"] >= start


def test_flagged_lean_windows_regain_exactly_the_detail_of_full_windows(events, model) -> None:
    scanned = events.filter(pl.col("time") >= UNTIL)
    config = model.settings
    full = {kind: frame.collect() for kind, frame in build_features(scanned, profiles_of(model), config.features).items()}
    lean = lean_windows(scanned, model)
    for kind, windows in lean.items():
        assert not set(DETAIL_COLUMNS[kind]) & set(windows.columns)
        assert_frame_equal(windows, full[kind].drop(DETAIL_COLUMNS[kind]))
        # Every third window, out of order, as flagged windows are (most anomalous first).
        picked = list(range(windows.height - 1, -1, -3))
        regained = _with_detail(windows[picked], kind, scanned, profiles_of(model), config)
        assert_frame_equal(regained.select(full[kind].columns), full[kind][picked])


def test_malicious_incidents_are_found_at_medium_or_above(findings) -> None:
    serious = findings.filter(pl.col("severity").cast(pl.String).is_in(["medium", "high", "critical"])).to_dicts()
    malicious = [i for i in LABELS["incidents"] if not i["benign"]]
    missed = [i["kind"] for i in malicious if not any(_matches(f, i) for f in serious)]
    # benchmarks/README.md records per-kind recall over several simulated months.
    assert missed == []


def test_a_weakened_security_control_leads_its_finding(findings) -> None:
    change = next(i for i in LABELS["incidents"] if i["kind"] == "config_change")
    rows = [f for f in findings.to_dicts() if _matches(f, change)]
    assert rows and rows[0]["severity"] in ("medium", "high", "critical")
    assert rows[0]["top_features"][0]["feature"] == "weakened_setting_count"
    assert any("weakened a security control: Security.DisconnectApprovalRequired: true → false" in r
               for r in rows[0]["reasons"])


def test_most_serious_findings_belong_to_an_incident(findings) -> None:
    serious = findings.filter(pl.col("severity").cast(pl.String).is_in(["medium", "high", "critical"])).to_dicts()
    related = [f for f in serious if any(_matches(f, i) for i in LABELS["incidents"])]
    assert len(related) / len(serious) >= 0.75


def test_device_volume_oddities_stay_low(findings) -> None:
    # Devices rise above low only on a security signal; a meter's odd read volume is not one.
    serious_devices = findings.filter((pl.col("entity_kind") == "device")
                                      & pl.col("severity").cast(pl.String).is_in(["medium", "high", "critical"]))
    firsts = serious_devices.get_column("top_features").list.first().struct.field("feature").to_list()
    assert all(not f.startswith(("excess_ping", "excess_on_demand_read", "excess_issuers")) for f in firsts)


def test_findings_meet_the_contract_and_explain_themselves(findings) -> None:
    assert findings.schema == FINDINGS_SCHEMA
    assert findings.get_column("finding_id").n_unique() == findings.height
    assert findings.get_column("score").is_between(0, 1).all()
    # Ranked by severity, then score: a low never above a high.
    ranked = findings.select(pl.col("severity").to_physical(), "score").rows()
    assert ranked == sorted(ranked, reverse=True)
    for row in findings.head(20).iter_rows(named=True):
        assert row["reasons"] and row["reasons"][0].startswith(row["entity_id"] + ":")
        assert row["evidence"] and all(":" in e for e in row["evidence"])
        assert row["top_features"]


def test_reasons_name_the_novelty_and_its_baseline(findings) -> None:
    dormant = next(i for i in LABELS["incidents"] if i["kind"] == "dormant_account")
    rows = [f for f in findings.to_dicts() if _matches(f, dormant)]
    assert rows
    text = " ".join(" ".join(r["reasons"]) for r in rows)
    assert "never" in text and "baseline" in text


def test_same_input_same_findings(events, findings) -> None:
    again = score(events.filter(pl.col("time") >= UNTIL), train(events.filter(pl.col("time") < UNTIL)))
    assert again.get_column("finding_id").to_list() == findings.get_column("finding_id").to_list()
    assert again.get_column("score").to_list() == findings.get_column("score").to_list()


def test_cli_train_then_scan(tmp_path) -> None:
    runner = CliRunner()
    model_dir = tmp_path / "model"
    trained = runner.invoke(main, ["train", str(SAMPLE), "--model-dir", str(model_dir),
                                   "--baseline-until", UNTIL.strftime("%Y-%m-%dT%H:%M:%S")])
    assert trained.exit_code == 0, trained.stderr
    assert (model_dir / "MODEL_CARD.md").exists()
    load_model(model_dir)
    out = tmp_path / "out"
    scanned = runner.invoke(main, ["scan", str(SAMPLE), "--model", str(model_dir), "--out", str(out), "--csv",
                                   "--baseline-until", UNTIL.strftime("%Y-%m-%dT%H:%M:%S")])
    assert scanned.exit_code == 1, scanned.stderr  # planted incidents reach the alert severity
    assert {p.name for p in out.iterdir()} == {"findings.parquet", "findings.jsonl", "findings.csv",
                                               "incidents.parquet", "incidents.jsonl",
                                               "evidence.parquet", "timeline.parquet", "report.html"}
    assert "critical" in scanned.stdout or "high" in scanned.stdout
    assert pl.read_parquet(out / "findings.parquet").schema == FINDINGS_SCHEMA


def test_cli_scan_without_model_learns_from_the_logs(tmp_path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["scan", str(SAMPLE), "--out", str(out), "--min-severity", "high",
                                       "--baseline-until", UNTIL.strftime("%Y-%m-%d")])
    assert result.exit_code == 1, result.stderr
    found = pl.read_parquet(out / "findings.parquet")
    assert found.height > 0
    assert set(found.get_column("severity").cast(pl.String)) <= {"high", "critical"}


def test_scan_with_a_tampered_model_exits_2(tmp_path) -> None:
    runner = CliRunner()
    model_dir = tmp_path / "model"
    # A model `train` wrote (the bundled one): the check fires on loading it, before any log is read.
    shutil.copytree(MODEL, model_dir)
    load_model(model_dir)
    forest = next((model_dir / "forests").iterdir())
    data = bytearray(forest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    forest.write_bytes(bytes(data))
    result = runner.invoke(main, ["scan", str(SAMPLE), "--model", str(model_dir), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and forest.name in result.stderr


def test_only_windows_with_a_forest_level_a_signal_or_novelty_are_candidates() -> None:
    import numpy as np

    from detector.detection import _candidates

    starts = [datetime(2026, 3, 20, h) for h in range(6)]
    table = pl.DataFrame({"entity_id": ["a", "a", "b", "c", "d", "e"], "window_start": starts}).with_columns(
        pl.col("window_start").dt.replace_time_zone("UTC"))
    forest = np.array([0, 1, 0, 0, 0, 0], dtype=np.int8)
    # A signal of a window in the table, one of a window the table lacks, one of another hour of "a".
    signals = pl.DataFrame({"entity_id": ["c", "z", "a"], "window_start": [starts[3], starts[0], starts[5]]}
                           ).with_columns(pl.col("window_start").dt.replace_time_zone("UTC"))
    novelty = table.with_columns(_s_new_network=pl.Series([0, 0, 0, 0, 1, 0], dtype=pl.Int8),
                                 _s_dormant_account=pl.Series([0, 0, 0, 0, 0, 0], dtype=pl.Int8))
    np.testing.assert_array_equal(_candidates(table, forest, signals, novelty), [1, 3, 4])
    # Device windows have no novelty columns.
    np.testing.assert_array_equal(_candidates(table, forest, signals, table), [1, 3])
