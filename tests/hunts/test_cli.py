from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from detector.findings import FINDINGS_SCHEMA, write_findings
from detector.hunts import HUNTS
from detector.hunts.cli import hunt
from tests.features.events import make_events
from tests.hunts.conftest import SAMPLE

EVIL = "591f6199ea3a8281268aae39c628af59a9f3a160d7f464e463f2ab01859ac387"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_every_hunt_has_help(runner: CliRunner) -> None:
    assert sorted(hunt.commands) == sorted(HUNTS)
    result = runner.invoke(hunt, ["--help"])
    assert result.exit_code == 0 and all(name in result.output for name in HUNTS)
    for name in HUNTS:
        sub = runner.invoke(hunt, [name, "--help"])
        assert sub.exit_code == 0 and "Usage" in sub.output and "--since" in sub.output, name


def test_firmware_writes_tables_and_exits_1(runner: CliRunner, sample_parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "hunts"
    result = runner.invoke(hunt, ["firmware", str(sample_parquet), "--window", "Wed 00:00-04:00", "--local-tz",
                                  "America/Chicago", "--since", "2026-03-15", "--until", "2026-04-30",
                                  "--out", str(out), "--csv"])
    assert result.exit_code == 1, result.output + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "firmware: 3 images, 2 called out"
    assert lines[1].startswith("! nic_7.2.1.bin (version 7.2.1, sha256 591f6199ea3a8281): 1 download and 1 activation")
    assert "pushed by dlee, who had never pushed firmware before" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["firmware.csv", "firmware.jsonl", "firmware.parquet"]
    table = pl.read_parquet(out / "firmware.parquet")
    assert table.filter("called_out")["image_sha256"].to_list()[0] == EVIL
    first = json.loads((out / "firmware.jsonl").read_text().splitlines()[0])
    assert first["image_sha256"] == EVIL and first["first_seen"] == "2026-03-27T07:35:44.095Z"
    assert pl.read_csv(out / "firmware.csv").height == 3
    assert "38,721 events from 1 file (0 lines rejected)" in result.stderr


def test_nothing_called_out_exits_0(runner: CliRunner, sample_parquet: Path) -> None:
    result = runner.invoke(hunt, ["log-tamper", str(sample_parquet), "--until", "2026-03-20"])
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.splitlines() == ["log-tamper: 0 tampering events and silences, 0 called out"]


def test_merge_into_findings(runner: CliRunner, sample_parquet: Path, tmp_path: Path) -> None:
    scan = make_events([{"time": "2026-03-27 07:00", "account": "dlee"}])
    existing = pl.DataFrame([{
        "finding_id": "f" * 20, "entity_kind": "account", "entity_id": "dlee",
        "window_start": datetime(2026, 3, 27, 7, tzinfo=UTC), "window_end": datetime(2026, 3, 27, 8, tzinfo=UTC),
        "score": 0.9999, "severity": "critical", "detector": "iforest", "reasons": ["first firmware push"],
        "top_features": [], "event_count": scan.height, "evidence": ["test.log:1"], "model_id": "m1"}],
        schema=FINDINGS_SCHEMA)
    write_findings(existing, tmp_path, csv=True)
    args = ["ioc", str(sample_parquet), "--merge-into", str(tmp_path), "--severity", "critical",
            "--indicators", str(_indicators(tmp_path))]
    for _ in range(2):  # merging the same hunt twice adds nothing the second time
        result = runner.invoke(hunt, args)
        assert result.exit_code == 1, result.output + result.stderr
    merged = pl.read_parquet(tmp_path / "findings.parquet")
    assert merged.schema == FINDINGS_SCHEMA
    assert merged.select("detector", "entity_id", "severity").rows() == [
        ("ioc", "svc_vendor_support", "critical"), ("ioc", "dlee", "critical"), ("iforest", "dlee", "critical")]
    assert len((tmp_path / "findings.jsonl").read_text().splitlines()) == 3
    assert pl.read_csv(tmp_path / "findings.csv").height == 3  # kept in step with the Parquet file
    page = (tmp_path / "report.html").read_text(encoding="utf-8")  # rebuilt from the merged findings
    assert "svc_vendor_support" in page and "first firmware push" in page


def _indicators(directory: Path) -> Path:
    path = directory / "advisory.csv"
    path.write_text(f"type,value\nip,192.0.2.61\nhash,{EVIL}\nip,203.0.113.250\n")
    return path


def test_raw_logs_and_vendor_night_session(runner: CliRunner, tmp_path: Path) -> None:
    for name in ("vpn_2026-03-25.cef", "jumphost_2026-03-25.cef", "winsec_2026-03-25.jsonl", "hes_audit_2026-03-25.csv"):
        shutil.copy(SAMPLE / name, tmp_path)
    result = runner.invoke(hunt, ["vendor-access", str(tmp_path), "--account", "svc_vendor*", "--cidr",
                                  "203.0.113.0/24", "--local-tz", "America/Chicago", "--out", str(tmp_path / "o.parquet")])
    assert result.exit_code == 1, result.output + result.stderr
    assert result.stdout.splitlines()[0] == "vendor-access: 1 sessions, 1 called out"
    assert "connected over the VPN from 192.0.2.61, outside the vendor address ranges 203.0.113.0/24" in result.stdout
    assert (tmp_path / "o.parquet").exists() and (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("args, words", [
    (["vendor-access", "--cidr", "10.0.0.0/33"], "--cidr: '10.0.0.0/33' is not an IPv4/IPv6 address or CIDR block"),
    (["vendor-access"], "vendor-access needs the vendor's accounts (--account) or address ranges (--cidr)"),
    (["firmware", "--window", "Wed 0-4"], "weekly window 'Wed 0-4' is not like"),
    (["firmware", "--local-tz", "Central"], "unknown time zone 'Central'"),
    (["accounts", "--since", "yesterday"], "'yesterday' is not an ISO 8601 date or time"),
])
def test_bad_options_fail_before_reading_logs(runner: CliRunner, sample_parquet: Path, args: list[str],
                                              words: str) -> None:
    result = runner.invoke(hunt, [*args[:1], str(sample_parquet), *args[1:]])
    assert result.exit_code == 2
    assert words in result.stderr and "Traceback" not in result.stderr
    assert "events from" not in result.stderr  # the logs were not read


def test_merge_needs_an_existing_directory(runner: CliRunner, sample_parquet: Path, tmp_path: Path) -> None:
    result = runner.invoke(hunt, ["accounts", str(sample_parquet), "--merge-into", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_malformed_stix_and_manifest(runner: CliRunner, sample_parquet: Path, tmp_path: Path) -> None:
    stix = tmp_path / "advisory.json"
    stix.write_text('{"type": "bundle", "objects": [{"type": "indicator", "id": "indicator--1", '
                    '"pattern": "[ipv4-addr:value = ]", "pattern_type": "stix"}]}')
    result = runner.invoke(hunt, ["ioc", str(sample_parquet), "--indicators", str(stix)])
    assert result.exit_code == 2
    assert f"{stix}: indicator indicator--1: invalid STIX pattern" in result.stderr
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("sha256\nnot-a-hash\n")
    result = runner.invoke(hunt, ["firmware", str(sample_parquet), "--manifest", str(manifest)])
    assert result.exit_code == 2
    assert f"{manifest}:2: 'not-a-hash' is not a SHA-256 hash (64 hex digits)" in result.stderr


def test_unreadable_inputs(runner: CliRunner, tmp_path: Path) -> None:
    not_events = tmp_path / "other.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(not_events)
    result = runner.invoke(hunt, ["accounts", str(not_events)])
    assert result.exit_code == 2 and "not an event table" in result.stderr
    shutil.copy(SAMPLE / "vpn_2026-03-25.cef", tmp_path)
    (tmp_path / "mystery.log").write_text("hello\n")
    result = runner.invoke(hunt, ["ioc", str(tmp_path / "vpn_2026-03-25.cef"), str(tmp_path / "mystery.log"),
                                  "--indicators", str(_indicators(tmp_path))])
    # The readable file was hunted and something was called out: that wins (exit 1), and the
    # unreadable input is still named on stderr and in the JSON document.
    assert result.exit_code == 1
    assert "mystery.log" in result.stderr and "ip 192.0.2.61 in src_ip: 2 events" in result.stdout
    as_json = runner.invoke(hunt, ["ioc", str(tmp_path / "mystery.log"), str(tmp_path / "vpn_2026-03-25.cef"),
                                   "--indicators", str(_indicators(tmp_path)), "--json"])
    doc = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and doc["exit_status"] == 1 and doc["called_out"] >= 1
    assert [f["path"] for f in doc["files"]["failed"]] == [str(tmp_path / "mystery.log")]
    nothing = runner.invoke(hunt, ["ioc", str(tmp_path / "mystery.log"), "--indicators", str(_indicators(tmp_path))])
    assert nothing.exit_code == 2  # no event could be read at all


def test_log_content_is_escaped(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    make_events([{"time": "2026-03-28 09:14", "action": "log_cleared", "account": "evil\x1b[2Jadmin",
                  "source_system": "windows", "host": "HES-APP01"}]).write_parquet(path)
    result = runner.invoke(hunt, ["log-tamper", str(path)])
    assert result.exit_code == 1
    assert "\x1b" not in result.stdout and "evil\\x1b[2Jadmin cleared the audit log" in result.stdout
