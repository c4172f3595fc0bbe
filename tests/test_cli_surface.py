"""The command surface is the same everywhere: global options, one-line errors, times, help, exit statuses."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import click
import polars as pl
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.cli_support import UtcTime
from detector.detection import profiles_of
from detector.model_store import load_model
from detector.population import known_share, population_note
from tests.features.events import make_events

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "sample_logs"
MODEL = ROOT / "models" / "default"
GOLDEN_CSV = Path(__file__).parent / "data" / "golden" / "hes_audit.csv"


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


COMMANDS = _commands(main)


def test_every_command_is_listed() -> None:
    assert {"parse", "train", "scan", "report", "nightly", "hunt", "simulate", "formats", "export"} <= {
        c[0] for c in COMMANDS}
    assert ("hunt", "vendor-access") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_ends_with_real_examples_and_speaks_plainly(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    tail = lines[lines.index("Examples:") + 1:]
    assert 2 <= len(tail) <= 3 and all(line.startswith(f"ami-detector {' '.join(command)}") for line in tail)
    assert not re.search(r"iforest|sniff|%[YmdHMS]", result.output, re.IGNORECASE)
    assert "--quiet" in result.output and "--json" in result.output and "--verbose" in result.output


def test_top_level_list_is_not_cut_mid_sentence() -> None:
    result = CliRunner().invoke(main, ["--help"], terminal_width=80)
    listed = result.output.split("Commands:")[1].split("Examples:")[0]
    assert "..." not in listed and len(listed.strip().splitlines()) == len(main.commands)


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_before_or_after_the_subcommand(where: str, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["parse", str(GOLDEN_CSV), "--out", str(tmp_path / "e.parquet")]
    flags = ["--json", "--verbose"]
    result = runner.invoke(main, [*flags, *args] if where == "before" else [*args, *flags])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["command"] == "parse"
    quiet = runner.invoke(main, ["-q", *args] if where == "before" else [*args, "-q"])
    assert quiet.exit_code == 0 and quiet.stdout == quiet.stderr == ""
    hunt = runner.invoke(main, ["--json", "hunt", "log-tamper", str(GOLDEN_CSV)] if where == "before"
                         else ["hunt", "log-tamper", str(GOLDEN_CSV), "--json"])
    assert json.loads(hunt.stdout)["hunt"] == "log-tamper" and hunt.exit_code in (0, 1)


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["scan", str(GOLDEN_CSV)], ["scan", str(GOLDEN_CSV), "--out", str(tmp_path), "--bogus"],
                 ["hunt", "firmware"], ["nosuch"], ["train", str(GOLDEN_CSV), "--model-dir", str(tmp_path / "m"),
                                                    "--baseline-until", "yesterday"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, args
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("ami-detector: error: ") and "--help" in result.stderr
    assert "ISO 8601" in result.stderr


@pytest.mark.parametrize("text", ["2026-04-01", "2026-04-01T00:00:00Z", "2026-04-01T00:00:00+00:00",
                                  "2026-04-01 02:00:00+02:00", "2026-03-31T19:00:00-05:00", "2026-04-01T00:00"])
def test_times_take_z_and_offsets(text: str) -> None:
    assert UtcTime().convert(text, None, None) == datetime(2026, 4, 1, tzinfo=UTC)


def test_scan_takes_a_baseline_until_with_z(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for path in sorted(SAMPLE.glob("*2026-03-27*")):
        shutil.copy(path, logs)
    result = CliRunner().invoke(main, ["scan", str(logs), "--model", str(MODEL), "--out", str(tmp_path / "out"),
                                       "--baseline-until", "2026-03-27T12:00:00Z", "--json"])
    assert result.exit_code in (0, 1), result.stderr
    doc = json.loads(result.stdout)
    assert doc["scored_from"] == "2026-03-27T12:00:00Z"


def test_train_prints_its_model_id_on_stdout(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for path in sorted(SAMPLE.glob("*2026-03-0[2-4]*")):
        shutil.copy(path, logs)
    result = CliRunner().invoke(main, ["train", str(logs), "--model-dir", str(tmp_path / "model"),
                                       "--baseline-until", "2026-03-04T00:00:00Z"])
    assert result.exit_code == 0, result.stderr
    model_id = json.loads((tmp_path / "model" / "model.json").read_text())["model_id"]
    assert result.stdout.strip() == f"model {model_id} written to {tmp_path / 'model'}"
    assert "2026-03-04T00:00:00Z" in (tmp_path / "model" / "MODEL_CARD.md").read_text()


def test_train_without_a_baseline_end_learns_from_every_event(tmp_path: Path) -> None:
    from detector.pipeline import read_logs

    files = sorted(SAMPLE.glob("*2026-03-0[2-4]*"))
    result = CliRunner().invoke(main, ["train", *map(str, files), "--model-dir", str(tmp_path / "model")])
    assert result.exit_code == 0, result.stderr
    assert load_model(tmp_path / "model").metadata["training_events"] == read_logs(files)[0].height


# ---- population check ----------------------------------------------------------------------------------


def test_population_counts_known_and_unknown_entities() -> None:
    model = load_model(MODEL)
    profiles = profiles_of(model)
    accounts = profiles.account_activity.get_column("account").sort().head(3).to_list()
    device = profiles.device_activity.get_column("device_id").sort().head(1).item()
    known = make_events([{"time": "2026-04-01 10:00", "account": a, "action": "login_success"} for a in accounts]
                        + [{"time": "2026-04-01 10:05", "account": accounts[0], "action": "remote_disconnect",
                            "target_type": "meter", "target_id": device}])
    population = known_share(known, model)
    assert (population.entities, population.known, population.devices) == (4, 4, 1)
    assert population_note(population, ["logs/"]) is None
    strangers = make_events([{"time": "2026-04-01 11:00", "account": f"other_{i}", "action": "login_success"}
                             for i in range(5)])
    mixed = known_share(pl.concat([known, strangers]), model)
    assert (mixed.entities, mixed.known, mixed.share < 0.5) == (9, 4, True)
    note = population_note(mixed, ["theirs/"])
    assert note is not None and "4 of the 9" in note and "ami-detector train theirs/ --model-dir" in note
    # Events before --baseline-until are not scored, so they do not count.
    assert known_share(pl.concat([known, strangers]), model,
                       since=datetime(2026, 4, 1, 10, 30, tzinfo=UTC)).known == 0


def test_scan_warns_once_when_the_model_does_not_know_the_entities(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    rows = [f"2026-04-01T{h:02d}:00:00Z,{h},stranger{h},Operator,10.9.9.9,WS1,Security,UserLogin,User,stranger{h},,,"
            "Success" for h in range(6)]
    (logs / "audit.csv").write_text("EventTimeUTC,AuditId,UserName,Role,ClientIP,Workstation,Category,Action,"
                                    "ObjectType,ObjectId,OldValue,NewValue,Result\n" + "\n".join(rows) + "\n")
    result = CliRunner().invoke(main, ["scan", str(logs), "--model", str(MODEL), "--out", str(tmp_path / "out")])
    assert result.exit_code in (0, 1), result.stderr
    notes = [line for line in result.stderr.splitlines() if "the model knows only" in line]
    assert len(notes) == 1 and "0 of the 6" in notes[0] and f"ami-detector train {logs}" in notes[0]
    assert "the model knows only" not in result.stdout


def test_scan_alerts_win_over_unreadable_files(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for path in sorted(SAMPLE.glob("*2026-03-27*")):
        shutil.copy(path, logs)
    (logs / "mystery.log").write_bytes(b"\x00\x01 not a log\n")
    result = CliRunner().invoke(main, ["scan", str(logs), "--model", str(MODEL), "--out", str(tmp_path / "out"),
                                       "--json"])
    doc = json.loads(result.stdout)
    assert doc["alerts"] > 0 and result.exit_code == doc["exit_status"] == 1, result.stderr
    assert [f["path"] for f in doc["files"]["failed"]] == [str(logs / "mystery.log")]
    assert "mystery.log" in result.stderr
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    shutil.copy(logs / "mystery.log", only_bad)
    nothing = CliRunner().invoke(main, ["scan", str(only_bad), "--model", str(MODEL), "--out", str(tmp_path / "o2")])
    assert nothing.exit_code == 2 and "mystery.log" in nothing.stderr


def test_rich_markup_in_log_content_is_shown_as_text() -> None:
    from datetime import timedelta

    from detector.cli import findings_table
    from detector.findings import FINDINGS_SCHEMA

    start = datetime(2026, 4, 14, 2, tzinfo=UTC)
    markup = "[bold red]admin[/]"
    frame = pl.DataFrame([{"finding_id": "abcdef0123456789", "entity_kind": "account", "entity_id": markup,
                           "window_start": start, "window_end": start + timedelta(hours=1), "score": 0.9995,
                           "severity": "high", "detector": "iforest", "reasons": [f"{markup} did [link=x]y[/link]"],
                           "top_features": [], "event_count": 3, "evidence": [], "model_id": "m"}],
                         schema=FINDINGS_SCHEMA)
    lines = findings_table(frame, width=160, color=False)
    assert markup in lines[1] and "[link=x]y[/link]" in lines[1] and "\x1b" not in "".join(lines)


def test_a_closed_pipe_ends_quietly_as_sigpipe_would() -> None:
    import click
    from click.testing import CliRunner

    from detector.cli_support import EXIT_BROKEN_PIPE, handle_errors

    @click.command()
    @handle_errors
    def chatty() -> None:
        click.echo("first line")
        raise BrokenPipeError(32, "Broken pipe")

    result = CliRunner().invoke(chatty, [])
    assert result.exit_code == EXIT_BROKEN_PIPE == 141
    assert "error" not in result.stderr.lower()
