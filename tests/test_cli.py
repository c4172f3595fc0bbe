from __future__ import annotations

import shutil

import polars as pl
import pytest
from click.testing import CliRunner

from detector.cli import main
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
