from __future__ import annotations

import html
import io
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from detector.cli import Progress, main, progress_for
from detector.parsers import PARSERS
from detector.schema import validate_events, validate_rejects
from tests.conftest import GOLDEN


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_every_command_has_help(runner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in main.commands:
        sub = runner.invoke(main, [name, "--help"])
        assert sub.exit_code == 0, name
        assert "Usage" in sub.output


def test_formats_lists_one_line_each(runner) -> None:
    result = runner.invoke(main, ["formats"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(PARSERS)


def test_parse_writes_events_and_rejects(runner, tmp_path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(GOLDEN / "hes_audit.csv", logs)
    (logs / "cmds.jsonl").write_text((GOLDEN / "hes_commands.jsonl").read_text() + "{oops\n")
    out, rejects = tmp_path / "out" / "e.parquet", tmp_path / "out" / "r.parquet"
    result = runner.invoke(main, ["parse", str(logs), "--out", str(out), "--rejects", str(rejects)])
    assert result.exit_code == 0, result.output
    events = validate_events(pl.read_parquet(out))
    bad = validate_rejects(pl.read_parquet(rejects))
    assert events.height == 14 + 11
    assert bad.select("raw_line", "source_format").rows() == [(12, "hes_commands_jsonl")]
    assert "hes_commands_jsonl" in result.stderr and "rejects" in result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["e.parquet", "r.parquet"]  # no temp files left


def test_parse_reports_unreadable_files_and_exits_2(runner, tmp_path) -> None:
    shutil.copy(GOLDEN / "hes_audit.csv", tmp_path)
    (tmp_path / "mystery.log").write_text("hello world\n")
    out = tmp_path / "e.parquet"
    result = runner.invoke(main, ["parse", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 2
    assert "mystery.log" in result.stderr and "unknown format" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert pl.read_parquet(out).height == 14  # the readable file still parsed


def test_naive_timestamps_without_tz_exit_2_with_advice(runner, tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"ts":"2026-04-14 02:33:47","jobId":"J1","user":"a","command":"TimeSync"}\n')
    result = runner.invoke(main, ["parse", str(path), "--out", str(tmp_path / "e.parquet")])
    assert result.exit_code == 2
    assert "--tz" in result.stderr
    ok = runner.invoke(main, ["parse", str(path), "--out", str(tmp_path / "e.parquet"), "--tz", "UTC"])
    assert ok.exit_code == 0


def test_usage_errors_exit_2(runner, tmp_path) -> None:
    assert runner.invoke(main, ["parse", str(GOLDEN / "hes_audit.csv")]).exit_code == 2  # no --out
    bad_tz = runner.invoke(main, ["parse", str(GOLDEN / "hes_audit.csv"), "--out", str(tmp_path / "e.parquet"),
                                  "--tz", "Nowhere/Special"])
    assert bad_tz.exit_code == 2 and "time zone" in bad_tz.stderr
    bad_format = runner.invoke(main, ["parse", str(GOLDEN / "hes_audit.csv"), "--out", str(tmp_path / "e.parquet"),
                                      "--format", "nope"])
    assert bad_format.exit_code == 2 and "known formats" in bad_format.stderr
    assert not (tmp_path / "e.parquet").exists()


def test_terminal_output_escapes_control_characters(runner, tmp_path) -> None:
    evil = tmp_path / "evil\x1b[31m.log"
    evil.write_text("\x1b]0;pwned\x07 nothing known\n")
    result = runner.invoke(main, ["parse", str(evil), "--out", str(tmp_path / "e.parquet")])
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr
    assert "\\x1b" in result.stderr


def test_simulate_writes_logs_that_parse(runner, tmp_path) -> None:
    out = tmp_path / "sim"
    result = runner.invoke(main, ["simulate", "--out", str(out), "--days", "2", "--seed", "3", "--meters", "200",
                                  "--operators", "3", "--baseline-days", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "labels.json").exists()
    parsed = runner.invoke(main, ["parse", str(out), "--out", str(tmp_path / "e.parquet"),
                                  "--rejects", str(tmp_path / "r.parquet")])
    assert parsed.exit_code == 0, parsed.stderr
    assert pl.read_parquet(tmp_path / "r.parquet").height == 0
    assert pl.read_parquet(tmp_path / "e.parquet").height > 100


def test_simulate_rejects_bad_arguments(runner, tmp_path) -> None:
    result = runner.invoke(main, ["simulate", "--out", str(tmp_path), "--days", "0"])
    assert result.exit_code == 2
    bad_tz = runner.invoke(main, ["simulate", "--out", str(tmp_path), "--days", "1", "--tz", "Nowhere/Else"])
    assert bad_tz.exit_code == 2 and "Traceback" not in bad_tz.output


# ---- scan output: --json, --quiet, the ranked table, the report, progress ------------------------------

SAMPLE = Path(__file__).parent.parent / "sample_logs"
MODEL = Path(__file__).parent.parent / "models" / "default"
SCRIPT = "<script>alert(1)</script>"
FORMULA = "=cmd|' /C calc'!A0"
SCAN_KEYS = ["command", "version", "model_id", "events_scored", "scored_from", "files", "rejects", "alert_severity",
             "alerts", "findings_total", "by_severity", "population", "outputs", "exit_status", "findings"]
FINDING_KEYS = ["finding_id", "severity", "score", "entity_kind", "entity_id", "window_start", "window_end",
                "event_count", "reasons"]


@pytest.fixture(scope="module")
def hostile_logs(tmp_path_factory) -> Path:
    """One day of the sample month, and an intruder whose name is a script and who sets a formula."""
    logs = tmp_path_factory.mktemp("logs")
    for path in sorted(SAMPLE.glob("*2026-03-27*")):
        shutil.copy(path, logs)
    rows = [
        f'2026-03-27T03:10:07Z,99000001,"{SCRIPT}",Administrator,203.0.113.250,EVIL01,Security,UserLogin,User,x,,,Success',
        (f'2026-03-27T03:12:07Z,99000002,"{SCRIPT}",Administrator,203.0.113.250,EVIL01,Configuration,SettingChanged,'
         f'GlobalSetting,Firmware.MaxConcurrentDownloads,500,"{FORMULA}",Success'),
        (f'2026-03-27T03:13:07Z,99000003,"{SCRIPT}",Administrator,203.0.113.250,EVIL01,Configuration,SettingChanged,'
         f'GlobalSetting,Security.AuditLevel,Full,"{FORMULA}",Success'),
    ]
    header = (GOLDEN / "hes_audit.csv").read_text().splitlines()[0]
    (logs / "hes_audit_intruder.csv").write_text("\n".join([header, *rows]) + "\n")
    return logs


@pytest.fixture(scope="module")
def json_scan(hostile_logs, tmp_path_factory):
    out = tmp_path_factory.mktemp("scan") / "out"
    result = CliRunner().invoke(main, ["scan", str(hostile_logs), "--model", str(MODEL), "--out", str(out), "--json"])
    return result, out


def test_scan_json_parses_is_complete_and_stable(json_scan, hostile_logs, tmp_path) -> None:
    result, _ = json_scan
    assert result.exit_code == 1, result.stderr  # the intruder reaches the alert severity
    doc = json.loads(result.stdout)  # stdout is the JSON document and nothing else
    assert list(doc) == SCAN_KEYS and doc["command"] == "scan" and doc["exit_status"] == 1
    assert doc["findings_total"] == len(doc["findings"]) == sum(doc["by_severity"].values()) > 0
    assert list(doc["by_severity"]) == ["critical", "high", "medium", "low"]
    assert all(list(f) == FINDING_KEYS for f in doc["findings"])
    order = {"critical": 4, "high": 3, "medium": 2, "low": 1}
    ranked = [(order[f["severity"]], f["score"]) for f in doc["findings"]]
    assert ranked == sorted(ranked, reverse=True)  # severity first, then score
    assert set(doc["outputs"]) == {"findings.parquet", "findings.jsonl", "incidents.parquet", "incidents.jsonl",
                                   "evidence.parquet", "timeline.parquet",
                                   "report.html"}
    intruder = [f for f in doc["findings"] if f["entity_id"] == SCRIPT]
    assert intruder and intruder[0]["severity"] in ("medium", "high", "critical")
    assert result.stderr == ""  # no human summary, and no progress off a terminal
    again = CliRunner().invoke(main, ["scan", str(hostile_logs), "--model", str(MODEL), "--out", str(tmp_path / "o"),
                                      "--json"])
    second = json.loads(again.stdout)
    assert {k: v for k, v in second.items() if k != "outputs"} == {k: v for k, v in doc.items() if k != "outputs"}


def test_scan_report_is_written_and_escaped(json_scan) -> None:
    _, out = json_scan
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert FORMULA not in page and "=cmd|&#x27; /C calc&#x27;!A0" in page
    assert "Content-Security-Policy" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_scan_prints_a_ranked_table(hostile_logs, tmp_path) -> None:
    result = CliRunner().invoke(main, ["scan", str(hostile_logs), "--model", str(MODEL), "--out", str(tmp_path),
                                       "--top", "5"])
    assert result.exit_code == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "events scored with model" in lines[0] and "incidents at medium or above" in lines[0]
    # What to look at first: the incidents, then the findings.
    assert lines[1] == "incidents at medium or above, most severe first:"
    table = lines.index("findings:") + 1
    assert lines[table].split()[:3] == ["#", "severity", "score"]
    assert [line.split()[0] for line in lines[table + 1:table + 6]] == ["1", "2", "3", "4", "5"]
    assert lines[table + 6].startswith("... and ") and lines[-1] == f"report: {tmp_path / 'report.html'}"
    assert "\x1b[" not in result.stdout  # no colour when stdout is not a terminal
    assert "hes_audit_csv" in result.stderr  # the per-format summary


def test_scan_quiet_prints_nothing_but_keeps_the_exit_status(hostile_logs, tmp_path) -> None:
    result = CliRunner().invoke(main, ["scan", str(hostile_logs), "--model", str(MODEL), "--out", str(tmp_path),
                                       "--quiet"])
    assert result.exit_code == 1
    assert result.stdout == "" and result.stderr == ""
    assert (tmp_path / "findings.parquet").exists() and (tmp_path / "report.html").exists()


def test_report_command_rebuilds_the_report(json_scan, tmp_path) -> None:
    _, out = json_scan
    target = tmp_path / "again.html"
    result = CliRunner().invoke(main, ["report", str(out), "--out", str(target), "--title", SCRIPT, "--json"])
    assert result.exit_code == 1, result.stderr  # the findings hold alerts, as the scan said
    doc = json.loads(result.stdout)
    assert list(doc) == ["command", "version", "findings_total", "by_severity", "alert_severity", "alerts", "report",
                         "exit_status"]
    assert doc["alerts"] > 0 and doc["exit_status"] == 1
    page = target.read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<svg" in page  # timelines from evidence.parquet
    assert f"<title>{html.escape(SCRIPT)}</title>" in page
    default = CliRunner().invoke(main, ["report", str(out), "--quiet"])
    assert default.exit_code == 1 and default.stdout == default.stderr == ""


def test_report_command_errors_exit_2(tmp_path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "cannot read findings" in result.stderr and "Traceback" not in result.stderr
    missing = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2


def test_parse_json_summary(runner, tmp_path) -> None:
    result = runner.invoke(main, ["parse", str(GOLDEN / "hes_audit.csv"), "--out", str(tmp_path / "e.parquet"),
                                  "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert list(doc) == ["command", "version", "events", "rejects", "formats", "files", "outputs", "exit_status"]
    assert doc["events"] == 14 and doc["formats"] == [{"format": "hes_audit_csv", "files": 1, "events": 14,
                                                       "rejects": 0}]
    assert result.stderr == ""
    quiet = runner.invoke(main, ["parse", str(GOLDEN / "hes_audit.csv"), "--out", str(tmp_path / "e.parquet"), "-q"])
    assert quiet.exit_code == 0 and quiet.stdout == quiet.stderr == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_a_terminal_only() -> None:
    pipe = io.StringIO()
    with progress_for(False, pipe) as bar:
        bar("parsing", 0, 100)
        bar("parsing", 100, 100)
    assert pipe.getvalue() == ""
    quiet = _Terminal()
    with progress_for(True, quiet) as bar:
        bar("parsing", 50, 100)
    assert quiet.getvalue() == ""
    tty = _Terminal()
    bar = Progress(tty, enabled=True, refresh=0)
    bar("parsing", 0, 2e6)
    bar("parsing", 1e6, 2e6)
    bar("scoring", 0, None)  # a spinner until the stage ends
    bar("scoring", 1, 1)
    bar.close()
    shown = tty.getvalue()
    assert "parsing" in shown and "50%" in shown and "1.0 of 2.0 MB" in shown and "scoring" in shown
    assert shown.rstrip("\r").endswith("\r\x1b[2K\x1b[?25h")  # cleared (and the cursor back) for the summary


def test_findings_table_and_json_escape_log_content() -> None:
    from datetime import UTC, datetime, timedelta

    import click

    from detector.cli import findings_json, findings_table
    from detector.findings import FINDINGS_SCHEMA

    evil = "\x1b]0;pwned\x07ops\u202etxt.exe"
    start = datetime(2026, 4, 14, 2, tzinfo=UTC)
    frame = pl.DataFrame([{"finding_id": "abcdef0123456789", "entity_kind": "account", "entity_id": evil,
                           "window_start": start, "window_end": start + timedelta(hours=1), "score": 0.9995,
                           "severity": "high", "detector": "iforest", "reasons": [f"{evil}: " + "x" * 300],
                           "top_features": [], "event_count": 3, "evidence": [], "model_id": "m"}],
                         schema=FINDINGS_SCHEMA)
    lines = [click.unstyle(line) for line in findings_table(frame, width=120, color=True)]
    assert all(len(line) <= 120 for line in lines)
    assert "\x1b" not in "".join(lines) and "\u202e" not in "".join(lines) and "\\x1b]0;pwned" in lines[1]
    assert lines[1].split()[:3] == ["1", "high", "0.9995"] and "abcdef0123" in lines[1]
    text = json.dumps(findings_json(frame), ensure_ascii=True)
    assert "\x1b" not in text and "\\u001b" in text and "\\u202e" in text
    assert json.loads(text)[0]["entity_id"] == evil  # escaped, not altered


def test_scan_with_a_model_alone_keeps_the_models_alert_severity(hostile_logs, tmp_path) -> None:
    # A model trained with [alerts] severity = "critical" keeps it; `scan --model` without --config uses it.
    from detector.model_store import load_model, save_model

    model = load_model(MODEL)
    model.config = {**model.config, "alerts": {"severity": "critical"}}
    assert model.settings.alert_severity == "critical"
    save_model(model, tmp_path / "model")
    result = CliRunner().invoke(main, ["scan", str(hostile_logs), "--model", str(tmp_path / "model"),
                                       "--out", str(tmp_path / "out"), "--json"])
    doc = json.loads(result.stdout)
    assert doc["alert_severity"] == "critical"
    assert result.exit_code == (1 if doc["by_severity"]["critical"] else 0), result.stderr
    config = tmp_path / "config.toml"
    config.write_text('[alerts]\nseverity = "low"\n')
    given = CliRunner().invoke(main, ["scan", str(hostile_logs), "--model", str(tmp_path / "model"), "--config",
                                      str(config), "--out", str(tmp_path / "out2"), "--json"])
    assert json.loads(given.stdout)["alert_severity"] == "low" and given.exit_code == 1  # --config wins
