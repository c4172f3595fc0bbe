"""The notebook API (``import detector``) end to end on the sample month, parsed once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib
import polars as pl
import pyarrow as pa
import pytest

import detector
from detector import api, evidence, result
from detector.detection import score
from detector.features import feature_columns
from detector.findings import FINDINGS_SCHEMA
from detector.pipeline import read_logs
from detector.schema import EVENT_SCHEMA, UTC_US

matplotlib.use("Agg")

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "sample_logs"
MODEL = ROOT / "models" / "default"
LABELS = json.loads((SAMPLE / "labels.json").read_text())
UNTIL = datetime.fromisoformat(LABELS["generator"]["baseline_until"])


@pytest.fixture(scope="module")
def parsed(sample_logs) -> tuple[pl.DataFrame, pl.DataFrame]:
    assert detector.read_logs is read_logs  # what conftest's sample_logs parsed with
    return sample_logs


@pytest.fixture(scope="module")
def model():
    return detector.load_model(MODEL)


@pytest.fixture(scope="module")
def findings(parsed, model) -> detector.Findings:
    return detector.scan(parsed[0], model, baseline_until=UNTIL)


@pytest.fixture(scope="module")
def account_finding(findings) -> dict:
    return findings.filter(pl.col("entity_kind") == "account").df.row(0, named=True)


def test_importing_the_package_is_light() -> None:
    code = ("import sys, detector; print(json.dumps(['sklearn' in sys.modules, 'detector.pipeline' in sys.modules, "
            "sorted(detector.__all__)]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    heavy, pipeline, names = json.loads(out.stdout)
    assert not heavy and not pipeline
    assert {"read_logs", "build_features", "train", "load_model", "scan", "Findings", "write_report"} <= set(names)
    for name in names:
        assert getattr(detector, name) is not None
    with pytest.raises(AttributeError):
        detector.no_such_name  # noqa: B018


def test_read_logs_gives_polars_tables_that_convert_to_arrow(parsed) -> None:
    events, rejects = parsed
    assert isinstance(events, pl.DataFrame) and events.schema == EVENT_SCHEMA
    assert events.height > 30_000
    assert rejects.height == 4 and set(rejects.get_column("raw_file").str.contains("malformed")) == {True}
    table = events.to_arrow()
    assert isinstance(table, pa.Table) and table.num_rows == events.height


def test_scan_of_events_is_score_with_the_contract(parsed, model, findings) -> None:
    assert isinstance(findings, detector.Findings)
    assert findings.df.schema == FINDINGS_SCHEMA
    direct = score(parsed[0].filter(pl.col("time") >= UNTIL), model)
    assert findings.df.get_column("finding_id").to_list() == direct.get_column("finding_id").to_list()
    assert findings.events_scored == parsed[0].filter(pl.col("time") >= UNTIL).height
    assert sum(findings.severity_counts().values()) == len(findings) > 0
    assert set(findings.at_least("high").df.get_column("severity").cast(pl.String)) <= {"high", "critical"}
    assert "Findings:" in repr(findings) and "<table>" in findings._repr_html_()


def test_scan_of_paths_reports_files_and_progress(tmp_path, model) -> None:
    for path in sorted(SAMPLE.glob("*2026-03-27*")):
        shutil.copy(path, tmp_path)
    calls: list[tuple[str, float, float | None]] = []
    found = detector.scan([tmp_path], model, progress=lambda *call: calls.append(call))
    assert len(found.reports) == len(list(tmp_path.iterdir())) and not any(r.error for r in found.reports)
    # The parsed events wait on disk (a LazyFrame) until close() deletes them.
    assert found.events is not None and found.events_scored == found.events.lazy().collect().height
    found.close()
    assert found.events is None and len(found) == len(found.df)
    parsing = [c for c in calls if c[0] == "parsing"]
    assert parsing[0][1] == 0 and parsing[-1][1] == parsing[-1][2] > 0
    assert [c[1] for c in parsing] == sorted(c[1] for c in parsing)
    scoring = [c for c in calls if c[0] == "scoring"]  # events scored, slice by slice
    assert scoring[0][1] == 0 and scoring[-1][1] == scoring[-1][2] == found.events_scored > 0


def test_explain_gives_reasons_events_and_raw_lines(findings, account_finding) -> None:
    ex = findings.explain(account_finding["finding_id"][:10])  # a prefix, as the terminal shows it
    assert ex.finding_id == account_finding["finding_id"]
    assert ex.reasons == account_finding["reasons"] and ex.reasons[0].startswith(account_finding["entity_id"])
    assert ex.top_features.columns == ["feature", "description", "value", "baseline", "contribution"]
    assert ex.top_features.get_column("description").null_count() == 0
    cited = {tuple(e.rsplit(":", 1)) for e in account_finding["evidence"]}
    assert {(f, str(n)) for f, n in ex.events.select("raw_file", "raw_line").iter_rows()} == cited
    assert set(ex.events.get_column("account")) == {account_finding["entity_id"]}
    assert ex.raw_lines.height == len(cited) and ex.raw_lines.get_column("raw").null_count() == 0
    for row in ex.raw_lines.iter_rows(named=True):  # the lines really are those of the files
        lines = Path(row["raw_file"]).read_text(encoding="utf-8").splitlines()
        assert lines[row["raw_line"] - 1] == row["raw"]
    text = str(ex)
    assert account_finding["reasons"][0] in text and f":{ex.raw_lines['raw_line'][0]}: " in text


def test_explain_refuses_unknown_and_ambiguous_ids(findings) -> None:
    with pytest.raises(detector.FindingNotFound, match="no finding"):
        findings.explain("not-an-id")
    with pytest.raises(KeyError):  # FindingNotFound is a KeyError too
        findings.explain("")  # every id starts with "": ambiguous


def test_timeline_counts_the_entity_around_its_window(findings, account_finding) -> None:
    entity, start = account_finding["entity_id"], account_finding["window_start"]
    table = findings.timeline(entity, finding_id=account_finding["finding_id"], around=timedelta(hours=6))
    assert table.columns[0] == "time" and table.columns[-2:] == ["total", "flagged"]
    assert table.height == 13  # 6 h, the window, 6 h
    assert table.filter(pl.col("flagged")).get_column("time").to_list() == [start]
    assert table.filter(pl.col("time") == start).get_column("total").item() == account_finding["event_count"]
    categories = [c for c in table.columns if c not in ("time", "total", "flagged")]
    assert table.select(pl.sum_horizontal(categories)).to_series().to_list() == table["total"].to_list()
    everything = findings.timeline(entity)  # all of the entity's findings, 12 h either side
    assert everything.get_column("flagged").sum() == findings.df.filter(pl.col("entity_id") == entity).height


def test_plot_timeline_is_a_matplotlib_figure(findings, account_finding) -> None:
    from matplotlib.figure import Figure

    fig = findings.plot_timeline(account_finding["entity_id"], finding_id=account_finding["finding_id"])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert account_finding["entity_id"] in ax.get_title(loc="left")
    assert len(ax.patches) > 0


def test_plot_title_is_not_mathtext() -> None:
    # A "$" in a hostile account name must not be parsed as mathtext (which can raise).
    evil = "x$^{\\frac{1}{0}}$_{"
    when = datetime(2026, 4, 14, 2, 30, tzinfo=UTC)
    events = pl.DataFrame({"time": [when], "account": [evil], "category": ["authentication"],
                           "target_type": [None], "target_id": [None]},
                          schema_overrides={"time": UTC_US, "target_type": pl.String, "target_id": pl.String})
    found = detector.Findings(_finding(evil, when), events=events)
    fig = found.plot_timeline(evil)
    fig.canvas.draw()  # renders the title text
    assert evil in fig.axes[0].get_title(loc="left")


def _finding(entity: str, when: datetime) -> pl.DataFrame:
    start = when.replace(minute=0, second=0, microsecond=0)
    return pl.DataFrame([{"finding_id": "f0", "entity_kind": "account", "entity_id": entity, "window_start": start,
                          "window_end": start + timedelta(hours=1), "score": 0.999, "severity": "medium",
                          "detector": "iforest", "reasons": [f"{entity}: odd"], "top_features": [],
                          "event_count": 1, "evidence": [], "model_id": "m"}], schema=FINDINGS_SCHEMA)


def test_to_arrow_shares_buffers_as_string_views(findings) -> None:
    table = findings.to_arrow()
    assert table.num_rows == len(findings)
    assert table.schema.field("entity_id").type == pa.string_view()
    legacy = findings.to_arrow(compat_level=pl.CompatLevel.oldest())
    assert legacy.schema.field("entity_id").type == pa.large_string()


def test_written_findings_read_back_and_explain_without_the_logs(tmp_path, findings, account_finding,
                                                                 monkeypatch) -> None:
    written = findings.write(tmp_path)
    assert {p.name for p in written} == {"findings.parquet", "findings.jsonl", "incidents.parquet", "incidents.jsonl",
                                         "evidence.parquet", "timeline.parquet",
                                         "report.html"}
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in written}  # no temporary files left
    again = detector.Findings.read(tmp_path)
    assert again.df.equals(findings.df)
    before = findings.explain(account_finding["finding_id"])

    def no_files(*_args, **_kwargs):
        raise AssertionError("raw lines should come from evidence.parquet")

    monkeypatch.setattr(result, "read_raw_lines", no_files)
    after = again.explain(account_finding["finding_id"])
    assert after.raw_lines.select("raw_file", "raw_line", "raw").equals(before.raw_lines.select(
        "raw_file", "raw_line", "raw"))
    assert after.events.height == before.events.height
    assert again.timeline(account_finding["entity_id"], finding_id=account_finding["finding_id"]).equals(
        findings.timeline(account_finding["entity_id"], finding_id=account_finding["finding_id"]))


def test_evidence_file_holds_the_cited_events_written_one_log_file_at_a_time(tmp_path, findings) -> None:
    findings.write(tmp_path, report=False)
    written = pl.read_parquet(tmp_path / "evidence.parquet")
    expected = findings.evidence_events()
    assert written.schema == expected.schema
    assert written.height == expected.height > 0 and written.get_column("raw").null_count() == 0
    key = ["raw_file", "raw_line"]
    assert written.sort(key).equals(expected.sort(key))
    assert written.get_column("raw_file").rle().len() == written.get_column("raw_file").n_unique()  # grouped by file


def test_evidence_written_in_several_batches_is_the_same_file(tmp_path, findings, monkeypatch) -> None:
    findings.write(tmp_path / "one", report=False)
    monkeypatch.setattr(evidence, "BATCH_BYTES", 1)  # a batch per log file
    findings.write(tmp_path / "many", report=False)
    one, many = (pl.read_parquet(tmp_path / d / "evidence.parquet") for d in ("one", "many"))
    assert one.get_column("raw_file").n_unique() > 1
    assert many.equals(one)
    assert {p.name for p in (tmp_path / "many").iterdir()} == {p.name for p in (tmp_path / "one").iterdir()}


def test_read_raw_lines_is_bounded_and_handles_missing_files(tmp_path) -> None:
    log = tmp_path / "a.log"
    log.write_text("one\ntwo\n" + "x" * 5000 + "\nfour\n", encoding="utf-8")
    wanted = pl.DataFrame({"raw_file": [str(log), str(log), str(tmp_path / "gone.log")], "raw_line": [3, 1, 1]})
    got = api.read_raw_lines(wanted)
    assert got.get_column("raw_line").to_list() == [3, 1, 1]  # in the order asked for
    assert got.get_column("raw").to_list() == ["x" * 4096, "one", None]
    assert got.get_column("truncated").to_list() == [True, False, False]


def test_build_features_with_and_without_a_model(parsed, model) -> None:
    recent = parsed[0].filter(pl.col("time") >= UNTIL)
    frames = detector.build_features(recent, model)
    assert set(frames) == {"account", "device"} and all(isinstance(f, pl.LazyFrame) for f in frames.values())
    windows = frames["account"].collect()
    assert set(feature_columns("account")) <= set(windows.columns) and windows.height > 0
    own = detector.build_features(recent.head(3000))["device"].collect()
    assert set(feature_columns("device")) <= set(own.columns)


def test_train_learns_only_from_the_baseline(parsed) -> None:
    events = parsed[0]
    trained = detector.train(events, baseline_until=UNTIL)
    assert set(trained.scorers) == {"account", "device"}
    assert trained.training_span[1] < UNTIL
    assert trained.metadata["training_events"] == events.filter(pl.col("time") < UNTIL).height


def test_read_logs_strict_and_empty_inputs(tmp_path) -> None:
    malformed = next(SAMPLE.glob("hes_commands_malformed_*.jsonl"))
    with pytest.raises(detector.ParseError) as caught:
        detector.read_logs(malformed, strict=True)
    assert caught.value.source == (str(malformed), 2)
    with pytest.raises(detector.InputError, match="no log files"):
        detector.read_logs(tmp_path)
