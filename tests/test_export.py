"""ami-detector export: a STIX 2.1 bundle validated by stix2, CEF read back by our parser, ECS JSON lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import stix2
from click.testing import CliRunner

from detector.cli import main
from detector.export import cef_header, cef_value, export_findings, stix_pattern
from detector.findings import FINDINGS_SCHEMA, finding_ids, write_findings
from detector.parsers import PARSERS, parse_file

START = datetime(2026, 3, 27, 7, tzinfo=UTC)
HOSTILE = "o'brien|x=y"  # a backslash in an account is DOMAIN\\user to the parser: tested in a reason


def _folder(tmp_path: Path, *, incidents: bool = False) -> Path:
    rows = [
        {"entity_kind": "account", "entity_id": HOSTILE, "window_start": START, "window_end": START.replace(hour=8),
         "score": 0.9991, "severity": "critical", "detector": "iforest",
         "reasons": ["first login from 192.0.2.61\nnext line", "changed Firmware.Max=20000 in C:\\hes\\cfg"], "top_features": [],
         "event_count": 3, "evidence": ["vpn.cef:1", "vpn.cef:2", "audit.csv:7"], "model_id": "m1"},
        {"entity_kind": "device", "entity_id": "ALL_NORTH", "window_start": START, "window_end": START.replace(hour=9),
         "score": 1.0, "severity": "high", "detector": "firmware",
         "reasons": ["image hash " + "ab" * 32 + " of nic.bin was never seen before"], "top_features": [],
         "event_count": 2, "evidence": ["cmd.jsonl:4"], "model_id": None},
        {"entity_kind": "account", "entity_id": "quiet_user", "window_start": START, "window_end": START.replace(hour=8),
         "score": 0.7, "severity": "low", "detector": "iforest", "reasons": ["unusual hour"], "top_features": [],
         "event_count": 1, "evidence": ["audit.csv:9"], "model_id": "m1"},
    ]
    frame = pl.DataFrame(rows, schema={k: v for k, v in FINDINGS_SCHEMA.items() if k != "finding_id"})
    frame = frame.with_columns(finding_ids(frame)).select(list(FINDINGS_SCHEMA))
    out = tmp_path / "findings"
    write_findings(frame, out)
    pl.DataFrame({
        "raw_file": ["vpn.cef", "vpn.cef", "audit.csv", "cmd.jsonl", "audit.csv"],
        "raw_line": [1, 2, 7, 4, 9],
        "time": [START.replace(minute=5), START.replace(minute=40), START.replace(minute=50),
                 START.replace(minute=10), START.replace(minute=1)],
        "src_ip": ["192.0.2.61", "192.0.2.61", "10.40.8.21", None, "10.1.1.1"],
        "image_sha256": [None, None, None, "AB" * 32, None],
    }).write_parquet(out / "evidence.parquet")
    if incidents:
        ids = frame.get_column("finding_id").to_list()
        with_incident = pl.read_parquet(out / "findings.parquet").with_columns(
            incident_id=pl.when(pl.col("finding_id") == ids[0]).then(pl.lit("INC-1")))
        with_incident.write_parquet(out / "findings.parquet")
        pl.DataFrame({"incident_id": ["INC-1"], "severity": ["critical"], "lead_entity": [HOSTILE],
                      "summary": ["never-seen account acting | at night"]}).write_parquet(out / "incidents.parquet")
    return out


def test_stix_bundle_is_valid_and_carries_indicators_sightings_identity_and_tlp(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    target = tmp_path / "share" / "bundle.json"
    result = export_findings(folder, stix=target, identity="Example Electric Coop", tlp="amber",
                             min_severity="medium")
    bundle = stix2.parse(target.read_text(), allow_custom=False)  # raises on anything invalid
    by_type: dict[str, list] = {}
    for obj in bundle.objects:
        by_type.setdefault(obj.type, []).append(obj)
    [identity] = by_type["identity"]
    assert identity.name == "Example Electric Coop" and identity.identity_class == "organization"
    patterns = {i.pattern for i in by_type["indicator"]}
    # The account's quote and backslash are escaped inside the pattern; internal addresses are not shared.
    assert patterns == {stix_pattern("account", HOSTILE), "[ipv4-addr:value = '192.0.2.61']",
                        f"[file:hashes.'SHA-256' = '{'ab' * 32}']"}
    assert "[user-account:account_login = 'o\\'brien|x=y']" in patterns
    assert result.indicators == {"account": 1, "address": 1, "sha256": 1}
    sightings = {s.sighting_of_ref: s for s in by_type["sighting"]}
    address = next(i for i in by_type["indicator"] if "ipv4" in i.pattern)
    seen = sightings[address.id]
    assert seen.count == 2 and seen.first_seen == START.replace(minute=5) and seen.last_seen == START.replace(minute=40)
    assert seen.where_sighted_refs == [identity.id]
    assert all(obj.object_marking_refs == [stix2.TLP_AMBER.id] for obj in bundle.objects if obj.type != "marking-definition")
    assert "iforest" not in target.read_text()  # no jargon for the people it is shared with
    everything = export_findings(folder, stix=target, identity="X", internal_addresses=True, min_severity="low")
    assert everything.indicators == {"account": 2, "address": 3, "sha256": 1}


def test_cef_lines_read_back_with_our_parser(tmp_path: Path) -> None:
    folder = _folder(tmp_path, incidents=True)
    target = tmp_path / "findings.cef"
    export_findings(folder, cef=target, min_severity="high")
    lines = target.read_text().splitlines()
    assert len(lines) == 2  # the low finding is below --min-severity
    events = pl.concat([chunk.events for chunk in parse_file(target, PARSERS["cef"])])
    rejects = pl.concat([chunk.rejects for chunk in parse_file(target, PARSERS["cef"])])
    assert rejects.height == 0 and events.height == 2
    first = events.filter(pl.col("account").is_not_null()).row(0, named=True)
    assert first["account"] == HOSTILE.lower() and first["src_ip"] == "192.0.2.61"
    assert first["time"] == START.replace(hour=8)
    # The incident summary leads the message; the line break and the pipes survived the escaping.
    assert "never-seen account acting | at night; first login from 192.0.2.61\nnext line" in first["message"]
    assert "Firmware.Max=20000 in C:\\hes\\cfg" in first["message"]


def test_cef_escaping_rules() -> None:
    assert cef_header("a|b\\c\nd") == "a\\|b\\\\c d"
    assert cef_value("a=b\\c\nd\re|f") == "a\\=b\\\\c\\nd\\re|f"


def test_ecs_json_lines(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    target = tmp_path / "findings.ecs.jsonl"
    export_findings(folder, ecs=target, min_severity="low")
    documents = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(d["ami_detector"]["severity"] for d in documents) == ["critical", "high", "low"]
    first = next(d for d in documents if d["ami_detector"]["severity"] == "critical")
    assert first["event"]["kind"] == "alert" and first["user"]["name"] == HOSTILE
    assert first["source"]["ip"] == "192.0.2.61" and first["@timestamp"].startswith("2026-03-27T08:00:00")
    pushed = next(d for d in documents if d["ami_detector"]["severity"] == "high")
    assert pushed["file"]["hash"]["sha256"] == "ab" * 32 and "user" not in pushed


def test_export_cli_writes_nothing_on_a_bad_request(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    runner = CliRunner()
    nothing = runner.invoke(main, ["export", str(folder)])
    assert nothing.exit_code == 2 and len(nothing.stderr.splitlines()) == 1
    no_identity = runner.invoke(main, ["export", str(folder), "--stix", str(tmp_path / "b.json"),
                                       "--cef", str(tmp_path / "f.cef")])
    assert no_identity.exit_code == 2 and "--identity" in no_identity.stderr
    assert not (tmp_path / "b.json").exists() and not (tmp_path / "f.cef").exists()
    ok = runner.invoke(main, ["export", str(folder), "--stix", str(tmp_path / "b.json"), "--identity", "Coop",
                              "--tlp", "red", "--json"])
    assert ok.exit_code == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["outputs"] == {"stix": str(tmp_path / "b.json")} and doc["indicators"]["account"] == 1
    assert "TLP:RED" in (tmp_path / "b.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "findings"]  # no temporary file left


@pytest.mark.parametrize("level", ["clear", "green"])
def test_tlp_levels(tmp_path: Path, level: str) -> None:
    target = tmp_path / "b.json"
    export_findings(_folder(tmp_path), stix=target, identity="Coop", tlp=level)
    marking = {"clear": stix2.TLP_WHITE, "green": stix2.TLP_GREEN}[level]
    assert marking.id in target.read_text()
