from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from detector.errors import ConfigError
from detector.findings import FINDINGS_SCHEMA
from detector.hunts.firmware import hunt_firmware, load_manifest, summary, to_findings
from tests.features.events import make_events

A, B = "a" * 64, "b" * 64
WED = ["Wed 00:00-04:00"]
CHICAGO = "America/Chicago"


def pushes() -> pl.DataFrame:
    fw = {"target_type": "group", "source_system": "hes"}
    return make_events([
        # Wednesday 01:00-03:05 CST, inside the window: alice's routine campaign.
        {**fw, "time": "2026-03-04 07:00", "account": "alice", "action": "fw_download", "target_id": "ALL_NORTH",
         "target_count": 100, "image_sha256": A.upper(), "new_value": "nic_7.1.4.bin", "src_ip": "10.0.0.1",
         "outcome": "pending"},
        {**fw, "time": "2026-03-04 08:00", "account": "alice", "action": "fw_activate", "target_id": "ALL_NORTH",
         "target_count": 100, "image_sha256": A, "new_value": "nic_7.1.4.bin", "src_ip": "10.0.0.1"},
        {"time": "2026-03-04 08:05", "account": "alice", "action": "fw_download", "target_type": "meter",
         "target_id": "4A1B22C3", "image_sha256": A, "new_value": "nic_7.1.4.bin", "src_ip": "10.0.0.1"},
        # Thursday 22:00 CDT: bob, who never pushed firmware, with a new image.
        {**fw, "time": "2026-03-20 03:00", "account": "bob", "action": "fw_download", "target_id": "ALL_SOUTH",
         "target_count": 50, "image_sha256": B, "new_value": "nic_7.2.1.bin", "src_ip": "192.0.2.61"},
        {**fw, "time": "2026-03-20 03:10", "account": "bob", "action": "fw_activate", "target_id": "ALL_SOUTH",
         "target_count": 50, "image_sha256": B, "new_value": "nic_7.2.1.bin", "src_ip": "192.0.2.61",
         "outcome": "failure"},
        {"time": "2026-03-20 02:55", "account": "bob", "action": "login_success"},
        # Wednesday 02:30 CDT, inside the window, but no hash logged.
        {**fw, "time": "2026-03-25 07:30", "account": "alice", "action": "fw_download", "target_id": "FW_PILOT",
         "target_count": 3, "new_value": "meter_fw.bin"},
    ])


def by_image(table: pl.DataFrame) -> dict[str | None, dict]:
    return {row["image"]: row for row in table.iter_rows(named=True)}


def test_groups_by_image_and_calls_out_the_new_push() -> None:
    # From 2026-03-10 on: alice's pushes of 2026-03-04 are the history the period is judged against.
    table = hunt_firmware(pushes(), windows=WED, tz=CHICAGO, since="2026-03-10")
    assert table["image"].to_list() == ["nic_7.2.1.bin", "meter_fw.bin"]  # called out first
    assert not any("no history" in line for line in summary(table))
    table = pl.concat([hunt_firmware(pushes(), windows=WED, tz=CHICAGO, until="2026-03-10"), table])
    rows = by_image(table)
    routine = rows["nic_7.1.4.bin"]
    assert (routine["image_sha256"], routine["version"], routine["downloads"], routine["activations"]) == (A, "7.1.4", 2, 1)
    assert routine["devices_reached"] == 101  # ALL_NORTH counted once for download and activation, plus one meter
    assert routine["targets"] == ["ALL_NORTH", "4A1B22C3"] and routine["accounts"] == ["alice"]
    # The first image in the logs has no history to be judged against: it is new, and called out.
    assert (routine["outside_window"], routine["new_hash"], routine["new_pushers"]) == (0, True, [])
    assert routine["in_manifest"] is None and routine["called_out"] is True and routine["no_history"] is True
    assert routine["reasons"] == [f"image hash {A} of nic_7.1.4.bin was never seen before 2026-03-04 07:00:00 UTC"]
    assert routine["evidence"] == ["test.log:1", "test.log:2", "test.log:3"] and routine["event_count"] == 3

    new = rows["nic_7.2.1.bin"]
    assert (new["downloads"], new["activations"], new["failed"], new["devices_reached"]) == (1, 1, 1, 50)
    assert (new["outside_window"], new["new_hash"], new["new_pushers"], new["src_ips"]) == (2, True, ["bob"], ["192.0.2.61"])
    assert new["first_seen"] == datetime(2026, 3, 20, 3, 0, tzinfo=UTC)
    assert new["reasons"] == [
        f"image hash {B} of nic_7.2.1.bin was never seen before 2026-03-20 03:00:00 UTC",
        ("2 of 2 pushes were outside the maintenance windows Wed 00:00-04:00 (America/Chicago), "
         "the first on Thu 2026-03-19 22:00 CDT"),
        "pushed by bob, who had never pushed firmware before",
    ]
    assert new["timeline"] == [
        "2026-03-20 03:00:00 fw_download ALL_SOUTH (50 devices) by bob from 192.0.2.61 [success]",
        "2026-03-20 03:10:00 fw_activate ALL_SOUTH (50 devices) by bob from 192.0.2.61 [failure]"]
    assert new["evidence"] == ["test.log:4", "test.log:5"]

    unhashed = rows["meter_fw.bin"]
    assert unhashed["image_sha256"] is None and unhashed["called_out"] is False  # nothing to check it against


def test_manifest_calls_out_unknown_and_unhashed_images() -> None:
    table = hunt_firmware(pushes(), manifest=[A], windows=WED, tz=CHICAGO)
    rows = by_image(table)
    assert rows["nic_7.1.4.bin"]["in_manifest"] is True and rows["nic_7.1.4.bin"]["called_out"] is False
    assert rows["nic_7.2.1.bin"]["in_manifest"] is False
    assert rows["nic_7.2.1.bin"]["reasons"][0] == f"image hash {B} of nic_7.2.1.bin is not in the manifest of known-good hashes"
    assert rows["meter_fw.bin"]["reasons"] == [
        "no image hash was logged for meter_fw.bin, so it cannot be checked against the manifest"]


def test_without_windows_nothing_is_out_of_window() -> None:
    rows = by_image(hunt_firmware(pushes()))
    assert rows["nic_7.2.1.bin"]["outside_window"] is None
    assert len(rows["nic_7.2.1.bin"]["reasons"]) == 2


def test_period_keeps_history_for_judging() -> None:
    table = hunt_firmware(pushes().lazy(), since="2026-03-10", until="2026-03-20", windows=WED, tz=CHICAGO)
    assert table["image"].to_list() == ["nic_7.2.1.bin"]  # until is a date: the 20th is included
    assert table.row(0, named=True)["new_pushers"] == ["bob"]
    empty = hunt_firmware(pushes(), since="2026-04-01")
    assert empty.height == 0 and "evidence" in empty.columns


def test_findings_name_the_devices() -> None:
    findings = to_findings(hunt_firmware(pushes(), windows=WED, tz=CHICAGO, since="2026-03-10"), "critical")
    assert findings.schema == FINDINGS_SCHEMA
    assert findings.select("entity_kind", "entity_id", "detector", "severity", "event_count").rows() == [
        ("device", "ALL_SOUTH", "firmware", "critical", 2)]


def test_a_push_to_several_groups_is_one_finding_named_by_one_group() -> None:
    # The first push reached ALL_NORTH and a single meter: one finding, one device as its entity.
    findings = to_findings(hunt_firmware(pushes(), windows=WED, tz=CHICAGO), "high", called_out_only=False)
    first = findings.filter(pl.col("window_start") < datetime(2026, 3, 5, tzinfo=UTC))
    assert first.height == 1
    assert first.item(0, "entity_id") in ("ALL_NORTH", "4A1B22C3") and "," not in first.item(0, "entity_id")
    assert any("4A1B22C3" in r and "ALL_NORTH" in r for r in first.item(0, "reasons"))


def test_without_history_every_image_is_new_and_said_once() -> None:
    table = hunt_firmware(pushes(), windows=WED, tz=CHICAGO)
    rows = by_image(table)
    assert rows["nic_7.1.4.bin"]["called_out"] and rows["nic_7.2.1.bin"]["called_out"]
    lines = summary(table)
    assert sum("no history: every image is new" in line for line in lines) == 1
    assert lines[1].strip().startswith("no history")
    with_manifest = hunt_firmware(pushes(), manifest=[A], windows=WED, tz=CHICAGO)
    assert not any("no history" in line for line in summary(with_manifest))


def test_manifest_file(tmp_path) -> None:
    path = tmp_path / "manifest.csv"
    path.write_text(f"# approved images\nImage,SHA-256,Version\nnic_7.1.4.bin,{A.upper()},7.1.4\n\n,{B},\n")
    manifest = load_manifest(path)
    assert manifest.rows() == [(A, "nic_7.1.4.bin", "7.1.4"), (B, "", "")]
    rows = by_image(hunt_firmware(pushes(), manifest=path))
    assert rows["nic_7.2.1.bin"]["in_manifest"] is True


@pytest.mark.parametrize("text, words, line", [
    ("image,version\nx.bin,1\n", "no hash column", 1),
    (f"sha256\n{A}\nnot-a-hash\n", "'not-a-hash' is not a SHA-256 hash", 3),
    (f"sha256\n{A[:-1]}\n", "is not a SHA-256 hash", 2),
    ("", "empty", None),
    ("sha256\n", "lists no hashes", None),
])
def test_malformed_manifest_is_a_clear_error(tmp_path, text: str, words: str, line: int | None) -> None:
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words) as info:
        load_manifest(path)
    assert info.value.source == (str(path), line)


def test_bad_options_are_errors() -> None:
    with pytest.raises(ConfigError, match="not a SHA-256"):
        hunt_firmware(pushes(), manifest=["abc"])
    with pytest.raises(ConfigError, match="not like"):
        hunt_firmware(pushes(), windows=["Wednesday night"])
    with pytest.raises(ConfigError, match="time zone"):
        hunt_firmware(pushes(), windows=WED, tz="Central")


def test_sample_logs_firmware_incident(sample_events: pl.DataFrame, incidents: dict) -> None:
    planted = incidents["firmware_outside_window"]
    evil_hash = next(o for o in planted["objects"] if len(o) == 64)
    approved = incidents["approved_campaign_outside_window"]
    table = hunt_firmware(sample_events, windows=WED, tz=CHICAGO, since="2026-03-15", until="2026-04-30")
    called = table.filter("called_out")
    assert set(called["image_sha256"]) == {evil_hash, next(o for o in approved["objects"] if len(o) == 64)}
    row = table.filter(pl.col("image_sha256") == evil_hash).row(0, named=True)
    assert (row["image"], row["accounts"], row["targets"], row["new_pushers"]) == (
        "nic_7.2.1.bin", planted["accounts"], planted["devices"], planted["accounts"])
    assert row["new_hash"] is True and row["outside_window"] == row["event_count"] == 2
    assert row["first_seen"] >= datetime.fromisoformat(planted["start"])
    assert all(e.split(":")[0].endswith("hes_commands_2026-03-27.jsonl") for e in row["evidence"])
    # The routine campaign of week 3 (inside the window, a known hash, the usual administrator) is not called out.
    routine = table.filter(~pl.col("called_out")).row(0, named=True)
    assert (routine["image"], routine["outside_window"], routine["new_pushers"]) == ("nic_7.1.4.bin", 0, [])

    # With a manifest of the genuine images, the planted one is the only unknown hash.
    genuine = table.filter(pl.col("image_sha256") != evil_hash)["image_sha256"].to_list()
    checked = hunt_firmware(sample_events, manifest=genuine)
    assert checked.filter(pl.col("in_manifest").not_())["image_sha256"].to_list() == [evil_hash]
