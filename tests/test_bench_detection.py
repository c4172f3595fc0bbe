"""The detection benchmark's matching and metrics, on tiny hand-made frames."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

PATH = Path(__file__).parent.parent / "benchmarks" / "bench_detection.py"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_detection", PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_detection"] = module
    spec.loader.exec_module(module)
    return module


T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


LABELS = {"generator": {}, "incidents": [
    # malicious: an account at 02:10-02:40, hosts written as FQDN
    {"id": "A", "kind": "night", "benign": False, "start": "2026-05-01T02:10:00Z", "end": "2026-05-01T02:40:00Z",
     "accounts": ["jdoe"], "devices": [], "hosts": ["HES-APP01.util.local"]},
    # malicious: a device burst at 10:05-10:20
    {"id": "B", "kind": "burst", "benign": False, "start": "2026-05-01T10:05:00Z", "end": "2026-05-01T10:20:00Z",
     "accounts": ["op1"], "devices": ["4A1B22C3"], "hosts": []},
    # malicious and never found
    {"id": "C", "kind": "missed", "benign": False, "start": "2026-05-01T15:00:00Z", "end": "2026-05-01T15:10:00Z",
     "accounts": ["ghost"], "devices": [], "hosts": []},
    # benign
    {"id": "D", "kind": "storm", "benign": True, "start": "2026-05-01T18:00:00Z", "end": "2026-05-01T20:00:00Z",
     "accounts": ["svc_oms"], "devices": [], "hosts": []},
]}


def _findings(rows: list[tuple[str, float, float, str, float]]) -> pl.DataFrame:
    """(entity, window start h, window end h, severity, score) in rank order."""
    return pl.DataFrame({
        "entity_id": [r[0] for r in rows],
        "window_start": [_h(r[1]) for r in rows], "window_end": [_h(r[2]) for r in rows],
        "severity": [r[3] for r in rows], "score": [r[4] for r in rows],
        "reasons": [[f"reason {k}"] for k in range(len(rows))],
    }, schema_overrides={"window_start": pl.Datetime("us", "UTC"), "window_end": pl.Datetime("us", "UTC")})


FINDINGS = _findings([
    ("jdoe", 2, 3, "high", 0.9999),        # matches A
    ("hes-app01", 2, 3, "medium", 0.999),  # matches A through the host's short name
    ("4a1b22c3", 10, 11, "medium", 0.998),  # matches B (case-insensitive device)
    ("jdoe", 5, 6, "medium", 0.997),       # right entity, wrong time: false positive
    ("svc_oms", 19, 20, "high", 0.996),    # matches the benign D
    ("op1", 9, 10, "low", 0.995),          # ends at 10:00, B starts 10:05: no match
    ("op1", 10, 11, "low", 0.991),         # matches B, at low
])


def test_match_needs_entity_and_overlapping_window(bench) -> None:  # type: ignore[no-untyped-def]
    units = bench.ours_units(FINDINGS)
    pairs = bench.match(units, bench.scenarios_of(LABELS))
    assert pairs.rows() == [(0, "A"), (1, "A"), (2, "B"), (4, "D"), (6, "B")]


def test_metrics_on_a_hand_made_world(bench) -> None:  # type: ignore[no-untyped-def]
    scenarios = bench.scenarios_of(LABELS)
    units = bench.ours_units(FINDINGS)
    x = bench.evaluate(units, bench.match(units, scenarios), scenarios, scored_events=2_000)
    assert x["recall"] == pytest.approx(2 / 3)  # A and B at medium+, C missed
    assert x["any_share"] == pytest.approx(2 / 3)
    assert x["n_medium"] == 5
    assert x["precision_any"] == pytest.approx(4 / 5)  # all but the 05:00 jdoe window
    assert x["precision_mal"] == pytest.approx(3 / 5)
    assert x["p20_any"] == pytest.approx(5 / 20)
    assert x["per_10k"] == pytest.approx(25.0)
    assert x["benign_max"] == {"storm": "high"} and x["benign_over_medium"] == 1
    assert [u["entity_id"] for u in x["unmatched_medium"]] == ["jdoe"]
    assert [s["found"] for s in x["per_scenario"]] == [True, True, False]


def test_rank_order_is_the_findings_order_not_the_score(bench) -> None:  # type: ignore[no-untyped-def]
    # 21 unmatched findings first (rank order), then a matching one with a higher score: P@20 is 0.
    rows = [("nobody", 1, 2, "medium", 0.99)] * 21 + [("jdoe", 2, 3, "critical", 1.0)]
    units = bench.ours_units(_findings(rows))
    scenarios = bench.scenarios_of(LABELS)
    x = bench.evaluate(units, bench.match(units, scenarios), scenarios, scored_events=100)
    assert x["p20_any"] == 0.0 and x["recall"] == pytest.approx(1 / 3)


def test_any_finding_counts_low_findings(bench) -> None:  # type: ignore[no-untyped-def]
    units = bench.ours_units(_findings([("ghost", 15, 16, "low", 0.991)]))
    scenarios = bench.scenarios_of(LABELS)
    x = bench.evaluate(units, bench.match(units, scenarios), scenarios, scored_events=100)
    assert x["recall"] == 0.0 and x["any_share"] == pytest.approx(1 / 3)
    assert x["n_medium"] == 0 and x["precision_any"] != x["precision_any"]  # nan: nothing at medium+


def test_incidents_group_findings(bench) -> None:  # type: ignore[no-untyped-def]
    findings = FINDINGS.with_columns(incident_id=pl.Series(["i1", "i1", "i2", "i3", "i4", None, "i2"]))
    units = bench.ours_units(findings)
    scenarios = bench.scenarios_of(LABELS)
    incidents, pairs = bench.incident_units(units, bench.match(units, scenarios))
    assert incidents.height == 5  # i1, i2, i3, i4 and the finding without an incident
    assert incidents.get_column("rank").to_list() == [0, 2, 3, 4, 5]
    assert sorted(pairs.rows()) == [(0, "A"), (2, "B"), (4, "D")]
    x = bench.evaluate(incidents, pairs, scenarios, scored_events=2_000)
    assert x["n_medium"] == 4 and x["precision_any"] == pytest.approx(3 / 4)
    assert x["recall"] == pytest.approx(2 / 3)


def test_baseline_rows_rank_by_score(bench) -> None:  # type: ignore[no-untyped-def]
    frame = pl.DataFrame({"entity_id": ["a", "jdoe"], "window_start": [_h(0), _h(2)], "window_end": [_h(1), _h(3)],
                          "score": [0.5, 0.999], "raw": [0.1, 0.9], "top_action": ["x", "y"]},
                         schema_overrides={"window_start": pl.Datetime("us", "UTC"),
                                           "window_end": pl.Datetime("us", "UTC")})
    units = bench.baseline_units(frame)
    assert units.get_column("entity_id").to_list() == ["jdoe", "a"]
    assert units.get_column("medium").to_list() == [True, False]
    assert units.get_column("flagged").to_list() == [True, False]


def test_a_finding_also_matching_a_malicious_scenario_is_not_held_against_a_benign_one(  # type: ignore[no-untyped-def]
        bench) -> None:
    rounds = {"id": "E", "kind": "rounds", "benign": True, "start": "2026-05-01T02:00:00Z",
              "end": "2026-05-01T02:50:00Z", "accounts": ["jdoe"], "devices": [], "hosts": []}
    scenarios = bench.scenarios_of({"incidents": [*LABELS["incidents"], rounds]})
    units = bench.ours_units(FINDINGS)
    x = bench.evaluate(units, bench.match(units, scenarios), scenarios, scored_events=2_000)
    assert x["benign_max"] == {"storm": "high", "rounds": "none"}
    alone = bench.ours_units(_findings([("jdoe", 2, 3, "medium", 0.999)]))
    y = bench.evaluate(alone, bench.match(alone, scenarios.filter(pl.col("scenario") != "A")),
                       scenarios.filter(pl.col("scenario") != "A"), scored_events=2_000)
    assert y["benign_max"]["rounds"] == "medium"
