"""The logon fleet: determinism, attribution of removable media to the logged-on user, exact labels."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from detector.errors import ConfigError
from detector.simulate.fleet import FLEET_BENIGN_KINDS, FLEET_KINDS, FleetSettings, simulate_fleet

SMALL = FleetSettings(employees=150, admins=3, baseline_days=8, scored_days=7)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet")
    simulate_fleet(out, seed=4, settings=SMALL)
    return out


@pytest.fixture(scope="module")
def labels(fleet: Path) -> dict:
    return json.loads((fleet / "labels.json").read_text())


@pytest.fixture(scope="module")
def events(fleet: Path) -> pl.DataFrame:
    """The raw records, read as JSON without the project's parsers."""
    frames = [pl.read_ndjson(path, infer_schema_length=None) for path in sorted(fleet.glob("winsec_*.jsonl"))]
    raw = pl.concat(frames, how="diagonal_relaxed")
    return raw.with_columns(time=pl.col("TimeCreated").str.to_datetime("%Y-%m-%dT%H:%M:%S%.3f%:z")
                            .dt.convert_time_zone("UTC"))


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _logons(events: pl.DataFrame) -> pl.DataFrame:
    """Sessions: logon id, computer, user, from the 4624 to its 4634."""
    on = events.filter(pl.col("EventID") == 4624).select("Computer", "TargetUserName", "TargetLogonId",
                                                         pl.col("time").alias("t0"))
    off = events.filter(pl.col("EventID") == 4634).select("Computer", "TargetLogonId", pl.col("time").alias("t1"))
    return on.join(off, on=["Computer", "TargetLogonId"], how="left")


def test_same_seed_same_bytes_other_seed_other_world(fleet: Path, tmp_path: Path) -> None:
    simulate_fleet(tmp_path / "again", seed=4, settings=SMALL)
    simulate_fleet(tmp_path / "other", seed=5, settings=SMALL)
    for path in fleet.iterdir():
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes()
    assert (tmp_path / "other" / "labels.json").read_bytes() != (fleet / "labels.json").read_bytes()
    assert FleetSettings.random(3) == FleetSettings.random(3) != FleetSettings.random(4)


def test_too_small_a_fleet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        simulate_fleet(tmp_path, seed=1, settings=FleetSettings(employees=10))


def test_logon_ids_are_unique_and_every_logon_ends(events: pl.DataFrame) -> None:
    sessions = _logons(events)
    assert sessions.get_column("TargetLogonId").n_unique() == sessions.height
    assert sessions.get_column("t1").null_count() == 0
    assert (sessions.get_column("t1") >= sessions.get_column("t0")).all()


def test_every_removable_device_event_belongs_to_a_session_on_that_pc(events: pl.DataFrame) -> None:
    usb = events.filter(pl.col("EventID") == 6416)
    assert usb.height > 50
    assert usb.get_column("SubjectUserName").str.ends_with("$").all()
    pc = usb.get_column("Computer").str.split(".").list.first() + "$"
    assert (pc == usb.get_column("SubjectUserName")).all()
    joined = usb.select("time", "Computer", "SubjectLogonId").join(
        _logons(events), left_on=["Computer", "SubjectLogonId"], right_on=["Computer", "TargetLogonId"], how="left")
    assert joined.get_column("TargetUserName").null_count() == 0
    inside = joined.filter((pl.col("time") >= pl.col("t0")) & (pl.col("time") <= pl.col("t1")))
    assert inside.height == usb.height


def test_privileged_logons_carry_the_logon_id_of_their_4624(events: pl.DataFrame) -> None:
    special = events.filter(pl.col("EventID") == 4672)
    joined = special.select("Computer", "SubjectLogonId", "SubjectUserName").join(
        _logons(events), left_on=["Computer", "SubjectLogonId"],
                          right_on=["Computer", "TargetLogonId"], how="left")
    assert special.height > 20
    assert (joined.get_column("TargetUserName") == joined.get_column("SubjectUserName")).all()


def test_labels_cover_every_kind_after_the_baseline(labels: dict) -> None:
    incidents = labels["incidents"]
    kinds = [i["kind"] for i in incidents if not i["benign"]]
    assert sorted(kinds) == sorted(FLEET_KINDS * SMALL.incidents_per_kind)
    assert sorted(i["kind"] for i in incidents if i["benign"]) == sorted(FLEET_BENIGN_KINDS)
    until = _utc(labels["generator"]["baseline_until"])
    for incident in incidents:
        assert until <= _utc(incident["start"]) <= _utc(incident["end"])
        assert incident["benign"] == (incident["kind"] in FLEET_BENIGN_KINDS)
        assert incident["accounts"] and incident["hosts"]


def test_removable_media_of_an_incident_is_attributable_to_its_user(events: pl.DataFrame, labels: dict) -> None:
    sessions = _logons(events)
    for incident in labels["incidents"]:
        if not incident["devices"]:
            continue
        span = events.filter(pl.col("time").is_between(_utc(incident["start"]), _utc(incident["end"]))
                             & (pl.col("EventID") == 6416)).select("Computer", "SubjectLogonId", "DeviceId")
        owners = span.join(sessions, left_on=["Computer", "SubjectLogonId"], right_on=["Computer", "TargetLogonId"])
        theirs = owners.filter(pl.col("TargetUserName").str.to_lowercase().is_in(incident["accounts"]))
        assert theirs.height >= 1
        assert set(theirs.get_column("DeviceId")) == set(incident["devices"])
        assert set(theirs.get_column("Computer").str.split(".").list.first()) <= set(incident["hosts"])
        # The drive is never seen outside the incident.
        assert events.filter(pl.col("DeviceId").is_in(incident["devices"])).height == theirs.height


def test_the_insiders_were_strict_in_the_baseline(events: pl.DataFrame, labels: dict) -> None:
    tz = labels["generator"]["tz"]
    until = _utc(labels["generator"]["baseline_until"])
    baseline = events.filter(pl.col("time") < until)
    logons = baseline.filter(pl.col("EventID") == 4624).with_columns(local=pl.col("time").dt.convert_time_zone(tz))
    sessions = _logons(baseline)
    for incident in labels["incidents"]:
        if incident["kind"] not in ("after_hours_usb", "first_offhours_logon", "foreign_pc_usb", "team_overtime"):
            continue
        user = incident["accounts"][0]
        mine = logons.filter(pl.col("TargetUserName").str.to_lowercase() == user)
        assert mine.height > 0
        hours = mine.get_column("local").dt.hour()
        assert (hours >= 6).all() and (hours < 20).all(), (incident["kind"], user)
        assert (mine.get_column("local").dt.weekday() <= 5).all()
        if incident["kind"] == "foreign_pc_usb":
            assert not set(mine.get_column("Computer").str.split(".").list.first()) & set(incident["hosts"])
        ids = set(sessions.filter(pl.col("TargetUserName").str.to_lowercase() == user).get_column("TargetLogonId"))
        assert not ids & set(baseline.filter(pl.col("EventID") == 6416).get_column("SubjectLogonId"))


def test_supervisor_logs_on_minutes_after_the_admin(events: pl.DataFrame, labels: dict) -> None:
    sessions = _logons(events).with_columns(user=pl.col("TargetUserName").str.to_lowercase(),
                                            pc=pl.col("Computer").str.split(".").list.first())
    for incident in (i for i in labels["incidents"] if i["kind"] == "supervisor_after_admin"):
        supervisor, admin = incident["accounts"]
        inside = sessions.filter(pl.col("t0").is_between(_utc(incident["start"]), _utc(incident["end"]))
                                 & (pl.col("pc") == incident["hosts"][0])).sort("t0")
        assert inside.get_column("user").to_list() == [admin, supervisor]
        gap = inside.get_column("t0")[1] - inside.get_column("t1")[0]
        assert 0 < gap.total_seconds() < 20 * 60


def test_every_line_parses(fleet: Path) -> None:
    from detector.pipeline import read_logs

    parsed, rejects = read_logs(fleet)
    assert rejects.height == 0
    assert set(parsed.get_column("action").cast(pl.String)) == {"login_success", "logout", "privileged_logon",
                                                               "removable_media"}


def test_windows_style_usb_events_carry_systems_logon_id_and_a_session_covers_each(tmp_path: Path) -> None:
    simulate_fleet(tmp_path, seed=4, settings=FleetSettings(employees=150, admins=3, baseline_days=8,
                                                            usb_logon_id="system"))
    raw = pl.concat([pl.read_ndjson(p, infer_schema_length=None) for p in sorted(tmp_path.glob("winsec_*.jsonl"))],
                    how="diagonal_relaxed").with_columns(
        time=pl.col("TimeCreated").str.to_datetime("%Y-%m-%dT%H:%M:%S%.3f%:z").dt.convert_time_zone("UTC"))
    usb = raw.filter(pl.col("EventID") == 6416).select("time", "Computer", "SubjectLogonId").with_row_index("k")
    assert usb.height > 50 and (usb.get_column("SubjectLogonId") == "0x3e7").all()
    interactive = _logons(raw)  # every logon here is interactive: at the PC (2) or over RDP (10)
    covering = usb.join(interactive, on="Computer").filter((pl.col("time") >= pl.col("t0"))
                                                           & (pl.col("time") <= pl.col("t1")))
    per_event = covering.group_by("k").len()
    assert per_event.height == usb.height  # every drive was plugged in while someone was logged on there
