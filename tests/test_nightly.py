"""The nightly job: incremental, exactly once under failures, locked, and documented for systemd/cron."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from detector import runner
from detector.config import Config
from detector.detection import score, train
from detector.errors import ConfigError
from detector.model_store import load_model, save_model
from detector.nightly import (
    STAGES,
    LockedError,
    NightlyConfig,
    NightlyError,
    rollback_model,
    run_nightly,
    store_events,
)
from detector.nightly.lock import _process_start
from detector.nightly.scoring import window_keys
from detector.nightly_cli import nightly
from detector.pipeline import read_logs
from detector.simulate import simulate
from detector.slices import score_slices
from detector.spill import in_memory_slices, slice_length

ROOT = Path(__file__).parent.parent
# Lower thresholds than the defaults: a ten-day simulation has too few baseline windows to reach
# the default high (0.999), and retraining must see windows flagged at high.
SEVERITY = {"low": 0.97, "medium": 0.99, "high": 0.995, "critical": 0.999}
DETECTOR = Config.from_dict({"scoring": {"severity": SEVERITY}})
HOUR_AGO = time.time() - 3600


class Crash(Exception):
    """Stands for the process being killed at a stage."""


def crash_at(stage: str):
    def hook(name: str) -> None:
        if name == stage:
            raise Crash(stage)
    return hook


def drop(inbox: Path, files: list[Path], *, name: str | None = None, mtime: float = HOUR_AGO) -> list[Path]:
    """Copy exports into the inbox, written an hour ago (so complete by the quiet-period rule)."""
    inbox.mkdir(parents=True, exist_ok=True)
    placed = []
    for source in files:
        target = inbox / (name or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        os.utime(target, (mtime, mtime))
        placed.append(target)
    return placed


def settings(tmp: Path, inbox: Path, model: Path | None, **extra) -> NightlyConfig:
    return NightlyConfig(inbox=inbox, state=tmp / "state", out=tmp / "out", model=model, detector=DETECTOR, **extra)


def stored(state: Path) -> pl.DataFrame:
    return store_events(state).collect().sort(["raw_file", "raw_line"])


def report(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "latest" / "findings.parquet").sort("finding_id")


def state_json(state: Path) -> dict:
    return json.loads((state / "state.json").read_text())


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> list[list[Path]]:
    """Ten simulated days: one export file per source and local day (VPN and jump host not every day)."""
    root = tmp_path_factory.mktemp("sim")
    simulate(root, days=10, seed=11, meters=200, operators=3)
    by_day: dict[str, list[Path]] = {}
    for path in sorted(root.iterdir()):
        if path.name != "labels.json":
            by_day.setdefault(path.stem.rsplit("_", 1)[1], []).append(path)
    return [by_day[d] for d in sorted(by_day)]


@pytest.fixture(scope="module")
def model_dir(days, tmp_path_factory) -> Path:
    events, _ = read_logs([p for day in days[:6] for p in day])
    directory = tmp_path_factory.mktemp("model") / "initial"
    save_model(train(events, DETECTOR), directory)
    return directory


@pytest.fixture(scope="module")
def inbox(days, tmp_path_factory) -> Path:
    """Days 8 and 9: the inbox every exactly-once test runs against."""
    directory = tmp_path_factory.mktemp("inbox")
    drop(directory, days[7] + days[8])
    return directory


@pytest.fixture(scope="module")
def clean(inbox, model_dir, tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events and findings of one clean run over the inbox."""
    tmp = tmp_path_factory.mktemp("clean")
    summary = run_nightly(settings(tmp, inbox, model_dir))
    assert summary.events > 0 and summary.windows_scored > 0
    return stored(tmp / "state"), report(tmp / "out")


# ---- incremental ---------------------------------------------------------------------------------


def test_two_runs_over_the_same_inbox_the_second_processes_nothing(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    drop(inbox, days[6] + days[7])
    config = settings(tmp_path, inbox, model_dir)
    first = run_nightly(config)
    expected, _ = read_logs(inbox)
    assert first.files["new"] == len(days[6] + days[7]) and first.events == expected.height
    assert stored(config.state).height == expected.height
    before = state_json(config.state)

    second = run_nightly(config)
    assert second.files["new"] == 0 and second.files["already_processed"] == first.files["new"]
    assert second.events == 0 and second.batches == [] and second.windows_scored == 0
    assert second.exit_code == 0 and "nothing new" in second.notes
    assert state_json(config.state)["batches"] == before["batches"]
    assert stored(config.state).height == expected.height


def test_a_file_added_between_runs_is_the_only_one_processed(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    drop(inbox, days[6])
    config = settings(tmp_path, inbox, model_dir)
    run_nightly(config)
    [added] = drop(inbox, days[7][:1])
    summary = run_nightly(config)
    added_events, _ = read_logs(added)
    assert summary.files["new"] == 1 and summary.files["already_processed"] == len(days[6])
    assert summary.events == added_events.height
    # Every line of every file is in the store exactly once.
    everything, _ = read_logs(inbox)
    assert_frame_equal(stored(config.state), everything.sort(["raw_file", "raw_line"]))


def test_the_same_file_under_two_names_is_processed_once(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    source = days[7][0]
    drop(inbox, [source])
    drop(inbox, [source], name=f"again/copy-of-{source.name}")
    config = settings(tmp_path, inbox, model_dir)
    summary = run_nightly(config)
    assert summary.files["new"] == 1 and summary.files["duplicates"] == 1
    assert summary.events == read_logs(source)[0].height == stored(config.state).height
    again = run_nightly(config)
    assert again.files["new"] == 0 and again.files["duplicates"] == 1 and again.events == 0


def test_a_growing_file_is_taken_only_once_complete(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    content = next(p for p in days[7] if p.suffix == ".jsonl").read_bytes()
    growing = inbox / "commands.jsonl"
    growing.write_bytes(content[: len(content) // 2])  # cut in the middle of a line, written just now
    config = settings(tmp_path, inbox, model_dir)

    first = run_nightly(config)
    assert first.files["waiting"] == 1 and first.events == 0 and stored(config.state).height == 0
    growing.write_bytes(content)  # the writer finishes
    second = run_nightly(config)  # changed since the previous run saw it, and written just now
    assert second.files["waiting"] == 1 and second.events == 0
    third = run_nightly(config)  # unchanged since the previous run: complete
    expected, _ = read_logs(growing)
    assert third.files["new"] == 1 and third.events == expected.height
    assert_frame_equal(stored(config.state), expected.sort(["raw_file", "raw_line"]))


def test_a_quiet_file_is_taken_only_if_it_ends_with_a_line_break(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    content = next(p for p in days[7] if p.suffix == ".jsonl").read_bytes()
    half = inbox / "stalled.jsonl"
    half.write_bytes(content[: len(content) // 2].rstrip(b"\n") + b'{"ts":"2026-')
    os.utime(half, (HOUR_AGO, HOUR_AGO))
    (inbox / "being-copied.jsonl.part").write_bytes(content)
    summary = run_nightly(settings(tmp_path, inbox, model_dir))
    assert summary.files["waiting"] == 2 and summary.events == 0


def test_a_file_that_grows_after_processing_adds_only_its_new_lines(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    lines = next(p for p in days[7] if p.suffix == ".jsonl").read_bytes().splitlines(keepends=True)
    export = inbox / "commands.jsonl"
    export.write_bytes(b"".join(lines[:40]))
    os.utime(export, (HOUR_AGO, HOUR_AGO))
    config = settings(tmp_path, inbox, model_dir)
    assert run_nightly(config).events == 40
    export.write_bytes(b"".join(lines))
    os.utime(export, (HOUR_AGO + 60, HOUR_AGO + 60))
    summary = run_nightly(config)
    assert summary.files["continued"] == 1 and summary.events == len(lines) - 40
    expected, _ = read_logs(export)
    assert_frame_equal(stored(config.state), expected.sort(["raw_file", "raw_line"]))


# ---- exactly once --------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [s for s in STAGES if s != "retrain"])
def test_a_failure_at_any_stage_is_finished_by_the_next_run(stage, tmp_path, inbox, model_dir, clean) -> None:
    config = settings(tmp_path, inbox, model_dir)
    with pytest.raises(Crash):
        run_nightly(config, hook=crash_at(stage))
    committed = (config.state / "state.json").exists() and bool(state_json(config.state)["batches"])
    assert committed == (STAGES.index(stage) >= STAGES.index("commit"))
    assert "exit=2" in (config.state / "nightly.log").read_text().splitlines()[-1]

    rerun = run_nightly(config)
    events, findings = clean
    assert_frame_equal(stored(config.state), events)
    assert_frame_equal(report(config.out), findings)
    assert rerun.windows_scored > 0
    assert not list((config.state / "staging").iterdir()) and not list((config.state / "tmp").iterdir())
    assert state_json(config.state)["job"] is None

    after = run_nightly(config)
    assert after.events == 0 and after.windows_scored == 0
    assert_frame_equal(stored(config.state), events)


def test_a_crash_while_replacing_the_day_report_loses_none_of_its_findings(tmp_path, days, model_dir) -> None:
    def two_runs(tmp: Path, hook=None) -> tuple[pl.DataFrame, pl.DataFrame]:
        inbox = tmp / "inbox"
        drop(inbox, days[7])
        config = settings(tmp, inbox, model_dir)
        run_nightly(config)
        first = report(config.out)
        drop(inbox, days[8])
        if hook is not None:
            with pytest.raises(Crash):
                run_nightly(config, hook=hook)
            # Killed between moving the day's directory aside and renaming the new one in.
            assert not (config.out / os.readlink(config.out / "latest")).exists()
        run_nightly(config)
        return first, report(config.out)

    (first, clean_report), (_, crashed_report) = two_runs(tmp_path / "a"), two_runs(tmp_path / "b", crash_at("report"))
    assert first.height > 0 and set(first.get_column("finding_id")) <= set(crashed_report.get_column("finding_id"))
    # The inboxes differ in path only: evidence names the files, everything else is the same.
    assert_frame_equal(crashed_report.drop("evidence"), clean_report.drop("evidence"))


KILL = """
import os, sys
from detector.nightly import NightlyConfig, run_nightly
run_nightly(NightlyConfig.from_toml(sys.argv[1]), hook=lambda stage: os._exit(9) if stage == sys.argv[2] else None)
"""


def _toml(tmp: Path, inbox: Path, model: Path | None, **extra: str) -> Path:
    lines = ["[nightly]", f'inbox = "{inbox}"', 'state = "state"', 'out = "out"']
    lines += [f'model = "{model}"'] if model else []
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    lines += ["[scoring.severity]"] + [f"{k} = {v}" for k, v in SEVERITY.items()]
    path = tmp / "nightly.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("stage", ["append", "report"])
def test_a_killed_process_leaves_a_stale_lock_that_the_next_run_clears(stage, tmp_path, inbox, model_dir,
                                                                        clean) -> None:
    path = _toml(tmp_path, inbox, model_dir)
    killed = subprocess.run([sys.executable, "-c", KILL, str(path), stage], capture_output=True, text=True,
                            timeout=120, check=False)
    assert killed.returncode == 9, killed.stderr
    lock = json.loads((tmp_path / "state" / "lock").read_text())
    assert lock["host"] == socket.gethostname()

    summary = run_nightly(NightlyConfig.from_toml(path))
    assert any("stale lock" in note for note in summary.notes)
    assert_frame_equal(stored(tmp_path / "state"), clean[0])
    assert_frame_equal(report(tmp_path / "out"), clean[1])
    assert not (tmp_path / "state" / "lock").exists()


def test_a_concurrent_start_is_refused(tmp_path, inbox, model_dir) -> None:
    config = settings(tmp_path, inbox, model_dir)
    config.state.mkdir()
    lock = config.state / "lock"
    held = {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
            "started": "2026-03-10T02:30:00Z", "token": "other"}
    lock.write_text(json.dumps(held))
    with pytest.raises(LockedError, match="another nightly run holds"):
        run_nightly(config)
    assert json.loads(lock.read_text()) == held and not (config.state / "state.json").exists()
    assert "exit=2" in (config.state / "nightly.log").read_text()

    result = CliRunner().invoke(nightly, ["--inbox", str(inbox), "--state", str(config.state),
                                          "--out", str(config.out)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "another nightly run holds" in result.stderr


def test_a_lock_of_a_dead_or_reused_pid_is_stale(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    drop(inbox, days[8][:1])
    config = settings(tmp_path, inbox, model_dir)
    config.state.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (config.state / "lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert any("stale lock" in n for n in run_nightly(config).notes)
    # A live PID that started at another time than the lock's holder: the PID was reused.
    (config.state / "lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                   "start": "1"}))
    assert any("stale lock" in n for n in run_nightly(config).notes)
    assert not (config.state / "lock").exists()


# ---- scoring -------------------------------------------------------------------------------------

AUDIT_HEADER = ("EventTimeUTC,AuditId,UserName,Role,ClientIP,Workstation,Category,Action,ObjectType,ObjectId,"
                "OldValue,NewValue,Result\n")


def test_a_window_straddling_the_previous_run_is_scored_whole(tmp_path, model_dir) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first = inbox / "audit-1.csv"
    first.write_text(AUDIT_HEADER
                     + "2026-03-20T03:05:00Z,1,jroberts,Operator,203.0.113.50,KIOSK9,Security,UserLogin,User,"
                       "jroberts,,,Success\n"
                     + "2026-03-20T03:10:00Z,2,jroberts,Operator,203.0.113.50,KIOSK9,Configuration,SettingChanged,"
                       "GlobalSetting,Firmware.MaxConcurrentDownloads,500,20000,Success\n")
    os.utime(first, (HOUR_AGO, HOUR_AGO))
    config = settings(tmp_path, inbox, model_dir)
    run_nightly(config)

    second = inbox / "audit-2.csv"
    second.write_text(AUDIT_HEADER
                      + "2026-03-20T03:40:00Z,3,jroberts,Operator,203.0.113.50,KIOSK9,UserManagement,UserCreated,"
                        "User,ops_tmp9,,Role=Administrator,Success\n"
                      + "2026-03-20T03:45:00Z,4,jroberts,Operator,203.0.113.50,KIOSK9,Security,AuditLogCleared,"
                        "AuditLog,Security,,,Success\n")
    os.utime(second, (HOUR_AGO, HOUR_AGO))
    summary = run_nightly(config)
    assert summary.events == 2
    window = datetime(2026, 3, 20, 3, tzinfo=UTC)
    assert summary.scored is not None
    row = summary.scored.filter((pl.col("entity_id") == "jroberts") & (pl.col("window_start") == window))
    assert row.height == 1 and row.item(0, "event_count") == 4  # both halves, not only the new two
    assert sorted(row.item(0, "evidence")) == sorted(f"{p}:{n}" for p in (first, second) for n in (2, 3))
    # The day's report holds the window once, in its complete version.
    merged = report(config.out).filter(pl.col("finding_id") == row.item(0, "finding_id"))
    assert merged.height == 1 and merged.item(0, "event_count") == 4


def test_incremental_scoring_equals_scoring_the_whole_store(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    drop(inbox, days[6] + days[7])
    config = settings(tmp_path, inbox, model_dir)
    run_nightly(config)
    added = drop(inbox, days[8])
    summary = run_nightly(config)
    assert summary.scored is not None and summary.scored.height > 0

    model = load_model(model_dir)
    everything = stored(config.state).sort(["time", "raw_file", "raw_line"])
    new, _ = read_logs(added)
    touched = window_keys(new.lazy(), timedelta(hours=1)).select("entity_kind", "entity_id", "window_start")
    touched = touched.unique().collect()
    assert summary.windows_scored == touched.height
    full = score(everything, model).join(touched, on=["entity_kind", "entity_id", "window_start"], how="semi")
    # Incidents group what each run scored, so their ids follow the run; every finding has one.
    assert summary.scored.get_column("incident_id").null_count() == 0
    assert_frame_equal(summary.scored.sort("finding_id").drop("incident_id"), full.sort("finding_id").drop("incident_id"))


# ---- what a scan carries across slices, carried across nights -------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (HOUR_AGO, HOUR_AGO))
    return path


def _winsec(**fields: object) -> str:
    return json.dumps({"Computer": "PC-7.util.local", **fields}) + "\n"


# Night 1 (before 05:00 UTC on 2026-03-09, the end of simulated day 7): jroberts creates ops_tmp9,
# dkim logs on at PC-7 and uses a thumb drive. Night 2: ops_tmp9 acts, and PC-7 logs the thumb drive
# again in dkim's session opened the night before (no longer a first).
NIGHT_1 = {
    "audit-1.csv": AUDIT_HEADER + "2026-03-09T03:40:00Z,1,jroberts,Operator,203.0.113.50,KIOSK9,UserManagement,"
                                  "UserCreated,User,ops_tmp9,,Role=Administrator,Success\n",
    "win-1.jsonl": _winsec(TimeCreated="2026-03-09T03:30:00Z", EventID=4624, TargetUserName="dkim",
                           TargetDomainName="UTIL", TargetLogonId="0x51", LogonType=2)
                   + _winsec(TimeCreated="2026-03-09T03:45:00Z", EventID=6416, SubjectUserName="PC-7$",
                             SubjectDomainName="UTIL", SubjectLogonId="0x3e7", DeviceId="USBSTOR\\Disk&Ven_X\\1",
                             DeviceDescription="USB Disk", ClassName="DiskDrive"),
}
NIGHT_2 = {
    "audit-2.csv": AUDIT_HEADER + "2026-03-09T06:10:00Z,2,ops_tmp9,Administrator,203.0.113.50,KIOSK9,Security,"
                                  "UserLogin,User,ops_tmp9,,,Success\n"
                   + "2026-03-09T06:12:00Z,3,ops_tmp9,Administrator,203.0.113.50,KIOSK9,Configuration,"
                     "SettingChanged,GlobalSetting,Security.TLS,1.2,1.0,Success\n",
    "win-2.jsonl": _winsec(TimeCreated="2026-03-09T07:15:00Z", EventID=6416, SubjectUserName="PC-7$",
                           SubjectDomainName="UTIL", SubjectLogonId="0x3e7", DeviceId="USBSTOR\\Disk&Ven_X\\1",
                           DeviceDescription="USB Disk", ClassName="DiskDrive"),
}


def test_an_account_created_one_night_and_used_the_next_is_called_out(tmp_path, model_dir) -> None:
    inbox = tmp_path / "inbox"
    config = settings(tmp_path, inbox, model_dir)
    _write(inbox / "audit-1.csv", NIGHT_1["audit-1.csv"])
    run_nightly(config)
    carried = config.state / "carried" / state_json(config.state)["carried"]
    assert pl.read_parquet(carried / "signals_created.parquet").get_column("account").to_list() == ["ops_tmp9"]

    _write(inbox / "audit-2.csv", NIGHT_2["audit-2.csv"])
    summary = run_nightly(config)
    assert summary.scored is not None
    mine = summary.scored.filter(pl.col("entity_id") == "ops_tmp9")
    signals = {s["signal"] for row in mine.get_column("signals").to_list() for s in row}
    assert "created_account_used" in signals and "new_account_acting" not in signals
    assert any("created by jroberts" in s["detail"] for row in mine.get_column("signals").to_list() for s in row)
    # One snapshot is kept, the one the state names.
    assert [p.name for p in (config.state / "carried").iterdir()] == [state_json(config.state)["carried"]]


def test_a_crash_after_the_carried_state_is_written_scores_the_night_again_the_same(tmp_path, model_dir) -> None:
    inbox = tmp_path / "inbox"
    config = settings(tmp_path, inbox, model_dir)
    _write(inbox / "audit-1.csv", NIGHT_1["audit-1.csv"])
    run_nightly(config)
    before = state_json(config.state)["carried"]
    _write(inbox / "audit-2.csv", NIGHT_2["audit-2.csv"])
    with pytest.raises(Crash):
        run_nightly(config, hook=crash_at("done"))  # the new snapshot is written, the state still names the old
    assert state_json(config.state)["carried"] == before
    rerun = run_nightly(config)
    assert rerun.scored is not None
    signals = {s["signal"] for row in rerun.scored.filter(pl.col("entity_id") == "ops_tmp9")["signals"] for s in row}
    assert "created_account_used" in signals
    assert [p.name for p in (config.state / "carried").iterdir()] == [state_json(config.state)["carried"]] != [before]

    # A damaged snapshot is a clear error, not a traceback.
    for part in (config.state / "carried").glob("*/*.parquet"):
        part.write_bytes(b"not parquet")
    _write(inbox / "audit-3.csv", AUDIT_HEADER + "2026-03-09T08:00:00Z,4,jroberts,Operator,203.0.113.50,KIOSK9,"
                                                 "Security,UserLogin,User,jroberts,,,Success\n")
    result = CliRunner().invoke(nightly, ["--inbox", str(inbox), "--state", str(config.state),
                                          "--out", str(config.out)])
    assert result.exit_code == 2 and "cannot read the carried state" in result.stderr
    assert "Traceback" not in result.output


def test_two_nights_give_the_second_night_what_one_scan_over_both_gives(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    # A store searched back one minute only: dormancy must come from the carried last activity.
    config = settings(tmp_path, inbox, model_dir, history="1m")
    night_1 = drop(inbox, days[6]) + [_write(inbox / name, text) for name, text in NIGHT_1.items()]
    run_nightly(config)
    night_2 = drop(inbox, days[7]) + [_write(inbox / name, text) for name, text in NIGHT_2.items()]
    summary = run_nightly(config)
    assert summary.scored is not None

    model = load_model(model_dir)
    events, _ = read_logs(night_1 + night_2)
    single, _ = score_slices(in_memory_slices(events, slice_length(timedelta(hours=1))), model)
    second = single.filter(pl.col("window_start") >= datetime(2026, 3, 9, 5, tzinfo=UTC))
    assert second.height > 10
    # dkim's thumb drive (logged by PC-7$) is dkim's, from the session opened the night before; its
    # first use was the night before, so it is no `removable_media` first any more.
    dkim = summary.scored.filter(pl.col("entity_id") == "dkim")
    assert dkim.height == 1
    assert "removable_media" not in {s["signal"] for s in dkim.item(0, "signals")}
    assert "ops_tmp9" in summary.scored.get_column("entity_id").to_list()
    assert_frame_equal(summary.scored.sort("finding_id").drop("incident_id"),
                       second.sort("finding_id").drop("incident_id"))


def test_a_night_scores_its_windows_as_one_scan_over_the_store_does(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    config = settings(tmp_path, inbox, model_dir)
    half = len(days[7]) // 2
    # Night 3 completes day 8, whose first half night 2 stored: its windows straddle the two runs.
    for night in (days[6], days[7][:half]):
        drop(inbox, night)
        run_nightly(config)
    added = drop(inbox, days[7][half:])
    summary = run_nightly(config)
    assert summary.scored is not None

    everything = stored(config.state).sort(["time", "raw_file", "raw_line"])
    new, _ = read_logs(added)
    touched = window_keys(new.lazy(), timedelta(hours=1)).select("entity_kind", "entity_id", "window_start")
    touched = touched.unique().collect()
    assert summary.windows_scored == touched.height
    scan = runner.scan(everything, load_model(model_dir)).df
    same = scan.join(touched, on=["entity_kind", "entity_id", "window_start"], how="semi")
    files = [{str(inbox / p.name) for p in night} for night in (days[7][:half], days[7][half:])]
    straddling = [cited for cited in same.get_column("evidence").to_list()
                  if all({line.rsplit(":", 1)[0] for line in cited} & night for night in files)]
    assert same.height > 10 and straddling
    # Frame for frame; incidents group what each run scored, so their ids follow the run.
    assert_frame_equal(summary.scored.drop("incident_id"), same.drop("incident_id"))


# ---- model ---------------------------------------------------------------------------------------


def test_retraining_leaves_out_flagged_windows_and_can_be_rolled_back(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    start = datetime(2026, 3, 13, 6, tzinfo=UTC)  # the runs' clock: a day after the last export
    drop(inbox, [p for day in days[6:] for p in day], mtime=(start - timedelta(hours=1)).timestamp())
    config = settings(tmp_path, inbox, model_dir, retrain_every="7d")
    first = run_nightly(config, now=start)
    initial = first.model_id
    ledger = pl.read_parquet(config.state / "findings" / "*" / "*.parquet")
    flagged = ledger.filter(pl.col("severity").cast(pl.String).is_in(["high", "critical"]))
    assert flagged.height > 0, "the simulation should give at least one window at high"
    assert run_nightly(config, now=start + timedelta(days=6)).retrained is None  # not due yet

    with pytest.raises(Crash):  # killed after training, before the new model is made active
        run_nightly(config, now=start + timedelta(days=8), hook=crash_at("retrain"))
    assert state_json(config.state)["models"]["active"] == initial

    summary = run_nightly(config, now=start + timedelta(days=8))
    info = summary.retrained
    assert info is not None and info["model_id"] != initial
    assert info["excluded_windows"] == flagged.select("entity_kind", "entity_id", "window_start").unique().height
    # Every event of a flagged account window is out of the training set.
    account_windows = flagged.filter(pl.col("entity_kind") == "account")
    in_flagged = (stored(config.state).join(account_windows.select(account="entity_id", window_start="window_start",
                                                                   window_end="window_end"), on="account")
                  .filter(pl.col("time").is_between("window_start", "window_end", closed="left")))
    assert 0 < in_flagged.height <= info["excluded_events"]
    retrained = load_model(config.state / "models" / info["model_id"])
    expected = stored(config.state).height - info["excluded_events"]
    assert retrained.metadata["training_events"] == info["events"] == expected
    models = state_json(config.state)["models"]
    assert models["active"] == info["model_id"] and models["previous"] == initial

    assert rollback_model(config.state, now=start + timedelta(days=9)) == (initial, info["model_id"])
    assert state_json(config.state)["models"]["active"] == initial
    assert run_nightly(config, now=start + timedelta(days=10)).retrained is None  # the period restarted
    result = CliRunner().invoke(nightly, ["--state", str(config.state), "--rollback"])
    assert result.exit_code == 0 and info["model_id"] in result.output
    assert state_json(config.state)["models"]["active"] == info["model_id"]


def test_without_a_model_a_baseline_is_built_first(tmp_path, days) -> None:
    inbox = tmp_path / "inbox"
    drop(inbox, [p for day in days[:3] for p in day])
    config = settings(tmp_path, inbox, None, min_baseline="6d")
    building = run_nightly(config)
    assert building.exit_code == 0 and building.status == "baseline" and building.windows_scored == 0
    assert any("baseline building: not scoring yet" in n for n in building.notes)
    assert "baseline building" in (config.out / "latest" / "report.txt").read_text()

    drop(inbox, [p for day in days[3:7] for p in day])
    trained = run_nightly(config)
    assert trained.retrained is not None and trained.model_id and trained.windows_scored == 0
    drop(inbox, days[7])
    scoring = run_nightly(config)
    assert scoring.model_id == trained.model_id and scoring.windows_scored > 0


# ---- retention -----------------------------------------------------------------------------------


def test_retention_removes_only_old_partitions(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    drop(inbox, [p for day in days[5:] for p in day])
    config = settings(tmp_path, inbox, model_dir, keep="never")
    run_nightly(config)
    per_day = stored(config.state).group_by(pl.col("time").dt.date().alias("day")).len()
    newest = per_day.get_column("day").max()

    summary = run_nightly(NightlyConfig(**{**config.__dict__, "keep": "2d"}))
    cutoff = newest - timedelta(days=2)
    removed = sorted(d.isoformat() for d in per_day.get_column("day") if d < cutoff)
    assert removed and summary.retention["events"] == removed
    left = stored(config.state).group_by(pl.col("time").dt.date().alias("day")).len()
    assert_frame_equal(left.sort("day"), per_day.filter(pl.col("day") >= cutoff).sort("day"))
    assert sorted(p.name for p in (config.state / "events").iterdir()) == [
        f"day={d}" for d in sorted(left.get_column("day").to_list())]
    assert (config.state / "findings").glob("day=*")  # ledger of today's report date kept
    assert run_nightly(config).events == 0  # removed partitions are not taken for new files


# ---- command line, summary, configuration, documentation -----------------------------------------


def test_cli_exit_codes_summary_and_run_log(tmp_path, days, model_dir) -> None:
    inbox = tmp_path / "inbox"
    drop(inbox, days[8] + days[9])
    path = _toml(tmp_path, inbox, model_dir)
    runner = CliRunner()
    result = runner.invoke(nightly, ["--config", str(path)])
    assert result.exit_code == 1, result.output + result.stderr
    assert "report:" in result.output and "severity" in result.output
    latest = tmp_path / "out" / "latest"
    assert latest.is_symlink() and re.fullmatch(r"\d{4}-\d{2}-\d{2}", os.readlink(latest))
    assert {p.name for p in latest.iterdir()} >= {"findings.parquet", "findings.jsonl", "report.txt", "summary.json"}
    [run_file] = list((tmp_path / "state" / "runs").glob("*.json"))
    summary = json.loads(run_file.read_text())
    assert summary["exit_code"] == 1 and summary["events"] > 0 and summary["windows_scored"] > 0
    assert set(summary) >= {"files", "events", "rejects", "windows_scored", "findings", "durations"}
    assert set(summary["findings"]) == {"low", "medium", "high", "critical"} and summary["durations"]["total"] > 0
    # OUT/latest/summary.json holds the same record as the state: exit code, status, report, finish time.
    published = json.loads((latest / "summary.json").read_text())
    assert published["run"] == summary and published["run_id"] == summary["run_id"]
    assert published["run"]["status"] == "findings" and published["run"]["finished"]
    assert published["run"]["report"] == str(tmp_path / "out" / os.readlink(latest))

    (inbox / "firmware.log").write_bytes(bytes(range(256)) * 8)  # no final line break: taken once unchanged
    os.utime(inbox / "firmware.log", (HOUR_AGO, HOUR_AGO))
    waiting = runner.invoke(nightly, ["--config", str(path)])
    assert waiting.exit_code == 0
    [note] = [line for line in waiting.stderr.splitlines() if "waiting:" in line]
    assert "firmware.log" in note and "by the next run if it is unchanged" in note
    result = runner.invoke(nightly, ["--config", str(path)])
    assert result.exit_code == 2
    [error] = [line for line in result.stderr.splitlines() if line.startswith("ami-detector: error:")]
    assert "firmware.log" in error and "could not be read" in error
    last = (tmp_path / "state" / "nightly.log").read_text().splitlines()[-1]
    assert "exit=2" in last and "firmware.log" in last

    assert runner.invoke(nightly, ["--config", str(path)]).exit_code == 0  # reported once, not every night


def test_config_from_toml(tmp_path) -> None:
    path = tmp_path / "etc" / "nightly.toml"
    path.parent.mkdir()
    path.write_text('[nightly]\ninbox = "in"\nstate = "/var/lib/x"\nout = "out"\nretrain_every = "never"\n'
                    'keep = "30d"\nsettle = "0"\n[alerts]\nseverity = "high"\n')
    config = NightlyConfig.from_toml(path, keep="14d")
    assert config.inbox == path.parent / "in" and config.state == Path("/var/lib/x")
    assert config.retrain_every is None and config.keep == timedelta(days=14) and config.settle == timedelta()
    assert config.detector.alert_severity == "high"
    path.write_text('[nightly]\ninbox = "in"\nstate = "s"\nout = "o"\nretrain = "7d"\n')
    with pytest.raises(ConfigError, match="unknown"):
        NightlyConfig.from_toml(path)
    with pytest.raises(ConfigError, match="keep"):
        NightlyConfig(inbox=Path("i"), state=Path("s"), out=Path("o"), keep="ninety days")
    with pytest.raises(NightlyError):
        rollback_model(tmp_path / "nothing")


def _documentation() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def _unit(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            assert current is not None and key and value, line
            current[key.strip()] = value.strip()
    return sections


def _check_command(argv: list[str]) -> None:
    assert Path(argv[0]).name == "ami-detector" and argv[1] == "nightly"
    known = {opt for param in nightly.params for opt in param.opts}
    options = [a for a in argv[2:] if a.startswith("--")]
    assert options and set(options) <= known, set(options) - known
    assert "--config" in options or {"--inbox", "--state", "--out"} <= set(options)


def test_documented_systemd_units_and_crontab_line_are_valid() -> None:
    blocks = _blocks(_documentation())
    [service] = [_unit(b) for _, b in blocks if "[Service]" in b]
    [timer_text] = [b for _, b in blocks if "[Timer]" in b]
    timer = _unit(timer_text)
    assert service["Service"]["Type"] == "oneshot"
    _check_command(shlex.split(service["Service"]["ExecStart"]))
    assert service["Unit"]["Description"]
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "ami-detector-nightly.service"
    assert "ami-detector-nightly.service" in next(b for _, b in blocks if "[Service]" in b).splitlines()[0]
    assert timer["Install"]["WantedBy"] == "timers.target"

    [cron] = [b for lang, b in blocks if lang == "crontab"]
    [entry] = [line for line in cron.splitlines() if line and not line.startswith("#") and "=" not in line.split()[0]]
    fields = entry.split(None, 5)
    for value, (low, high) in zip(fields[:5], [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)], strict=True):
        assert value == "*" or all(low <= int(v) <= high for v in re.split(r"[,-/]", value) if v != "*"), value
    _check_command(shlex.split(fields[5].split(">")[0]))


def test_documented_configuration_file_is_valid(tmp_path) -> None:
    [toml] = [b for lang, b in _blocks(_documentation()) if lang == "toml" and "[nightly]" in b]
    path = tmp_path / "nightly.toml"
    path.write_text(toml)
    config = NightlyConfig.from_toml(path)
    assert config.retrain_every == timedelta(days=7) and config.keep == timedelta(days=90)
    assert config.inbox.is_absolute() and config.tz == "America/Chicago"
