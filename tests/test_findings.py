from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

import polars as pl
from polars.testing import assert_frame_equal

from detector.findings import FINDINGS_SCHEMA, finding_ids, rank, read_ranked, summary_lines, write_findings


def _findings(entity: str = "ops_tmp7", setting: str = "=cmd|' /C calc'!A0") -> pl.DataFrame:
    start = datetime(2026, 4, 14, 2, tzinfo=UTC)
    rows = [
        {"entity_kind": "account", "entity_id": entity, "window_start": start,
         "window_end": start.replace(hour=3), "score": 0.9991, "severity": "high", "detector": "iforest",
         "reasons": [f"changed {setting}"], "top_features": [{"feature": "new_action_count", "value": 3.0,
                                                             "baseline": 0.0, "contribution": 0.6}],
         "event_count": 4, "evidence": ["hes_audit.csv:10", "hes_audit.csv:11"], "model_id": "m1"},
        {"entity_kind": "device", "entity_id": "4A1B22C3", "window_start": start, "window_end": start.replace(hour=3),
         "score": 0.9999, "severity": "critical", "detector": "iforest", "reasons": ["burst"], "top_features": [],
         "event_count": 1, "evidence": ["cmd.jsonl:1"], "model_id": "m1"},
    ]
    frame = pl.DataFrame(rows, schema={k: v for k, v in FINDINGS_SCHEMA.items() if k != "finding_id"})
    return frame.with_columns(finding_ids(frame)).select(list(FINDINGS_SCHEMA))


def test_ids_are_stable_and_distinct() -> None:
    a, b = _findings(), _findings()
    assert a.get_column("finding_id").to_list() == b.get_column("finding_id").to_list()
    assert a.get_column("finding_id").n_unique() == 2
    other = _findings(entity="someone_else")
    assert other.item(0, "finding_id") != a.item(0, "finding_id")


def test_rank_puts_the_most_anomalous_first() -> None:
    assert rank(_findings()).get_column("entity_id").to_list() == ["4A1B22C3", "ops_tmp7"]


def test_findings_read_from_files_come_ranked_as_their_concatenation(tmp_path) -> None:
    parts = [_findings(entity=f"op{i}").with_columns(pl.col("score") - i / 100) for i in range(3)]
    paths = []
    for i, part in enumerate(parts):
        paths.append(tmp_path / f"{i}.parquet")
        part.write_parquet(paths[-1])
    ranked = read_ranked(paths)
    assert_frame_equal(ranked, rank(pl.concat(parts)))
    # Most severe first, then most anomalous.
    assert ranked.get_column("severity").to_physical().is_sorted(descending=True)
    assert_frame_equal(read_ranked([]), pl.DataFrame(schema=FINDINGS_SCHEMA))


def test_written_files_round_trip_and_csv_is_defused(tmp_path) -> None:
    written = write_findings(_findings(), tmp_path, csv=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["findings.csv", "findings.jsonl", "findings.parquet",
                                                          "incidents.jsonl", "incidents.parquet"]
    assert pl.read_parquet(written[0]).schema == FINDINGS_SCHEMA
    first = json.loads(written[1].read_text().splitlines()[0])
    assert first["entity_id"] == "4A1B22C3" and first["window_start"].endswith("Z")
    with written[2].open(newline="") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
    assert "'changed =cmd|' /C calc'!A0" not in cells  # the reason does not start with '=' so it is kept
    assert any("=cmd|" in cell for cell in cells)


def test_csv_cell_that_starts_with_a_formula_is_prefixed(tmp_path) -> None:
    written = write_findings(_findings(entity="=HYPERLINK(\"http://x\")"), tmp_path, csv=True)
    text = written[2].read_text()
    assert "'=HYPERLINK" in text


def test_summary_escapes_terminal_control_characters() -> None:
    lines = summary_lines(_findings(entity="evil\x1b[2J"))
    assert all("\x1b" not in line for line in lines)
    assert any("\\x1b" in line for line in lines)
