"""Security signals, their impact and routine, window severity, incidents and attribution."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from detector.attribution import attribute
from detector.config import Config
from detector.detection import score, signals_only, train
from detector.exprs import formatted
from detector.features import Profiles, build_profiles
from detector.incidents import assign_incidents, incidents_of
from detector.scoring import ScoringConfig
from detector.signals import (
    ACTOR_COLUMNS,
    CATALOG,
    HIGH,
    LOW,
    MEDIUM,
    SignalState,
    actor,
    combine,
    event_signals,
    sensitive_windows,
)
from tests.features.events import make_events

CONFIG = Config()


def _baseline(days: int = 14) -> list[dict]:
    """Two weeks of an operator and an administrator at work, and a field technician's PC."""
    rows: list[dict] = []
    for d in range(1, days + 1):
        day = f"2026-03-{d:02d}"
        for h in (8, 10, 13, 15):
            rows.append({"time": f"{day} {h:02d}:05", "account": "op1", "src_ip": "10.20.1.5", "host": "hes-app01"})
            rows.append({"time": f"{day} {h:02d}:20", "account": "op1", "action": "on_demand_read",
                         "target_type": "meter", "target_id": f"M{d * 10 + h}"})
        rows.append({"time": f"{day} 09:00", "account": "admin1", "src_ip": "10.20.1.9", "host": "dc01"})
        rows.append({"time": f"{day} 09:10", "account": "admin1", "action": "account_created",
                     "target_type": "account", "target_id": f"hire{d}"})
        rows.append({"time": f"{day} 09:30", "account": "ftech", "host": "pc-7",
                     "message": "An account was successfully logged on (LogonType 2, Interactive)"})
    return rows


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    return build_profiles(make_events(_baseline()), CONFIG.features)


def _signals(rows: list[dict], profiles: Profiles, state: SignalState | None = None) -> pl.DataFrame:
    return event_signals(make_events(rows), profiles, "1h", state)


def _levels(frame: pl.DataFrame) -> dict[tuple[str, str], int]:
    return {(r["entity_id"], r["signal"]): r["level"] for r in frame.iter_rows(named=True)}


def test_catalog_names_what_each_signal_means() -> None:
    assert all(kind.meaning and kind.impact in ("low", "medium", "high") for kind in CATALOG.values())


def test_a_log_clear_is_high_and_routine_lowers_it_but_not_below_medium(profiles: Profiles) -> None:
    rows = [{"time": "2026-03-20 02:00", "account": "op1", "action": "log_cleared", "host": "hes-app01"}]
    assert _levels(_signals(rows, profiles))[("op1", "log_cleared")] == HIGH
    routine = build_profiles(make_events(_baseline() + [
        {"time": "2026-03-02 02:00", "account": "op1", "action": "log_cleared", "host": "hes-app01"}]), CONFIG.features)
    assert _levels(_signals(rows, routine))[("op1", "log_cleared")] == MEDIUM


def test_account_creation_by_a_routine_creator_is_low_by_anyone_else_medium(profiles: Profiles) -> None:
    rows = [{"time": "2026-03-20 09:00", "account": "admin1", "action": "account_created", "target_id": "new1",
             "target_type": "account"},
            {"time": "2026-03-20 10:00", "account": "op1", "action": "account_created", "target_id": "new2",
             "target_type": "account"}]
    levels = _levels(_signals(rows, profiles))
    assert levels[("admin1", "account_created")] == LOW
    assert levels[("op1", "account_created")] == MEDIUM


def test_a_never_seen_account_sending_disconnects_is_high_logging_on_medium(profiles: Profiles) -> None:
    rows = [{"time": "2026-03-20 23:10", "account": "ghost", "src_ip": "10.9.9.9", "host": "hes-app01",
             "message": "An account was successfully logged on (LogonType 10, RemoteInteractive)"},
            {"time": "2026-03-20 23:15", "account": "ghost", "action": "remote_disconnect", "target_type": "meter",
             "target_id": "M1"}]
    frame = _signals(rows, profiles)
    by_action = {r["detail"].split(" did ")[1].split(" ")[0]: r["level"]
                 for r in frame.filter(pl.col("signal") == "new_account_acting").iter_rows(named=True)}
    assert by_action == {"login_success": MEDIUM, "remote_disconnect": HIGH}


def test_admin_group_grant_is_high_other_groups_medium(profiles: Profiles) -> None:
    rows = [{"time": "2026-03-20 11:00", "account": "op1", "action": "group_member_added", "target_id": "x",
             "target_type": "account", "new_value": "HES Administrators"},
            {"time": "2026-03-20 12:00", "account": "op1", "action": "group_member_added", "target_id": "y",
             "target_type": "account", "new_value": "HES Readers"}]
    frame = _signals(rows, profiles).sort("time")
    assert frame.get_column("level").to_list() == [HIGH, MEDIUM]
    assert frame.get_column("detail").to_list()[0] == "added x to HES Administrators"


def test_opening_an_access_rule_to_any_address_and_cutting_retention_weaken_controls(profiles: Profiles) -> None:
    rows = [{"time": "2026-03-20 11:00", "account": "op1", "action": "setting_changed", "target_type": "setting",
             "target_id": "Network.AdminAllowList", "old_value": "10.40.0.0/16", "new_value": "0.0.0.0/0"},
            {"time": "2026-03-20 11:05", "account": "op1", "action": "setting_changed", "target_type": "setting",
             "target_id": "Audit.RetentionDays", "old_value": "365", "new_value": "1"},
            {"time": "2026-03-20 11:09", "account": "op1", "action": "setting_changed", "target_type": "setting",
             "target_id": "Poll.IntervalSeconds", "old_value": "300", "new_value": "900"}]
    frame = _signals(rows, profiles).filter(pl.col("signal") == "control_weakened")
    assert frame.height == 2 and set(frame.get_column("level")) == {HIGH}


def test_created_account_used_carries_across_slices(profiles: Profiles) -> None:
    state = SignalState.empty()
    _signals([{"time": "2026-03-20 23:00", "account": "op1", "action": "account_created", "target_id": "ops_tmp7",
               "target_type": "account"}], profiles, state)
    assert state.created.get_column("account").to_list() == ["ops_tmp7"]
    later = _signals([{"time": "2026-03-21 01:30", "account": "ops_tmp7", "action": "setting_changed",
                       "target_type": "setting", "target_id": "Security.TLS", "old_value": "1.2", "new_value": "1.3"}],
                     profiles, state)
    used = later.filter(pl.col("signal") == "created_account_used").row(0, named=True)
    assert used["level"] == HIGH and used["detail"].startswith("created by op1 150 minutes earlier")


def test_a_first_time_signal_is_raised_in_the_first_window_only_within_and_across_slices(profiles: Profiles) -> None:
    def first_times(rows: list[dict], state: SignalState) -> list[tuple[str, str]]:
        frame = _signals(rows, profiles, state).filter(
            pl.col("signal").is_in(["first_control_command", "new_logon_host"])).sort("time")
        return [(r["signal"], f"{r['window_start']:%d %H}") for r in frame.iter_rows(named=True)]

    day_one = [{"time": "2026-03-20 10:30", "account": "op1", "action": "remote_disconnect", "target_type": "meter",
                "target_id": "M1"},
               {"time": "2026-03-20 14:30", "account": "op1", "action": "remote_disconnect", "target_type": "meter",
                "target_id": "M2"},
               {"time": "2026-03-20 11:00", "account": "op1", "host": "ENG-WS-9"},
               {"time": "2026-03-20 16:00", "account": "op1", "host": "eng-ws-9"}]
    state = SignalState.empty()
    # The second disconnect and the second logon to the new host are no longer firsts.
    assert first_times(day_one, state) == [("first_control_command", "20 10"), ("new_logon_host", "20 11")]
    # Nor the next day (a later slice of the same scan), while a host new to op1 still is.
    day_two = [{"time": "2026-03-21 09:30", "account": "op1", "action": "remote_disconnect", "target_type": "meter",
                "target_id": "M3"},
               {"time": "2026-03-21 09:40", "account": "op1", "host": "eng-ws-9"},
               {"time": "2026-03-21 09:50", "account": "op1", "host": "eng-ws-10"}]
    assert first_times(day_two, state) == [("new_logon_host", "21 09")]
    # Without the state of the earlier slice, day two's disconnect would be a first again.
    assert ("first_control_command", "21 09") in first_times(day_two, SignalState.empty())


def test_a_short_capture_with_a_log_clear_and_a_backdoor_gives_findings_without_a_forest() -> None:
    capture = make_events([
        {"time": "2026-03-20 02:00", "account": "wardog", "host": "ws5", "source_system": "windows"},
        {"time": "2026-03-20 02:05", "account": "wardog", "action": "account_created", "target_id": "backdoor",
         "target_type": "account", "host": "ws5", "source_system": "windows"},
        {"time": "2026-03-20 02:06", "account": "wardog", "action": "group_member_added", "target_id": "backdoor",
         "target_type": "account", "new_value": "Administrators", "host": "ws5", "source_system": "windows"},
        {"time": "2026-03-20 02:30", "account": "wardog", "action": "log_cleared", "host": "ws5",
         "source_system": "windows"},
    ])
    model = signals_only(capture[:0], CONFIG, reason="test")
    found = score(capture, model, CONFIG)
    assert found.height == 1
    row = found.row(0, named=True)
    # A high grant and a high log clear together: critical.
    assert row["severity"] == "critical" and row["detector"] == "signals"
    assert row["reasons"][0].startswith("wardog: ")
    assert {s["signal"] for s in row["signals"]} == {"privilege_granted", "log_cleared", "account_created"}
    assert row["incident_id"] is not None


def test_combine() -> None:
    assert combine([]) == 0
    assert combine([LOW]) == LOW
    assert combine([LOW, LOW, LOW]) == MEDIUM
    assert combine([MEDIUM, MEDIUM]) == HIGH
    assert combine([HIGH, MEDIUM]) == 4
    assert combine([HIGH, HIGH, HIGH]) == 4


def test_severity_comes_before_score_in_the_ranking() -> None:
    from detector.findings import rank

    frame = _findings([
        {"finding_id": "low-but-rare", "entity_kind": "device", "entity_id": "M1", "hour": 1, "severity": "low",
         "signals": [], "links": []},
        {"finding_id": "high", "entity_kind": "account", "entity_id": "op1", "hour": 2, "severity": "high",
         "signals": [], "links": []},
    ]).with_columns(score=pl.Series([1.0, 0.2]))
    assert rank(frame).get_column("finding_id").to_list() == ["high", "low-but-rare"]


def test_a_scan_with_a_model_flags_the_log_clear_above_everything_else() -> None:
    events = make_events(_baseline() + [
        {"time": "2026-03-20 02:00", "account": "op1", "action": "log_cleared", "host": "hes-app01"}])
    config = Config(scoring=ScoringConfig(min_training_windows=20))
    model = train(events.filter(pl.col("time") < pl.datetime(2026, 3, 15, time_zone="UTC")), config)
    found = score(events.filter(pl.col("time") >= pl.datetime(2026, 3, 15, time_zone="UTC")), model, config)
    top = found.row(0, named=True)
    assert (top["entity_id"], top["severity"]) == ("op1", "high")
    assert top["reasons"][0] == "op1: cleared the audit log on hes-app01"


def _findings(rows: list[dict]) -> pl.DataFrame:
    from datetime import UTC, datetime, timedelta

    from detector.findings import FINDINGS_SCHEMA
    frame = pl.DataFrame([{
        "finding_id": r["finding_id"], "entity_kind": r["entity_kind"], "entity_id": r["entity_id"],
        "window_start": datetime(2026, 3, 20, tzinfo=UTC) + timedelta(hours=r["hour"]),
        "window_end": datetime(2026, 3, 20, tzinfo=UTC) + timedelta(hours=r["hour"] + 1),
        "score": 0.5, "severity": r["severity"], "detector": "signals", "reasons": [f"{r['entity_id']}: x"],
        "signals": r["signals"], "top_features": [], "event_count": 1, "evidence": [], "model_id": "m",
        "incident_id": None, "_links": r["links"]} for r in rows],
        schema={**FINDINGS_SCHEMA, "_links": pl.List(pl.String)})
    return frame


def test_incidents_group_an_account_its_creations_and_the_devices_it_commanded() -> None:
    grant = [{"signal": "account_created", "impact": "medium", "detail": "created account ops_tmp7"}]
    frame = _findings([
        {"finding_id": "a", "entity_kind": "account", "entity_id": "svc_vendor", "hour": 2, "severity": "high",
         "signals": grant, "links": []},
        {"finding_id": "b", "entity_kind": "account", "entity_id": "ops_tmp7", "hour": 3, "severity": "high",
         "signals": [], "links": []},
        {"finding_id": "c", "entity_kind": "device", "entity_id": "M1", "hour": 3, "severity": "low",
         "signals": [], "links": ["ops_tmp7"]},
        # The same operator the next day, far outside the gap: another story.
        {"finding_id": "d", "entity_kind": "account", "entity_id": "svc_vendor", "hour": 30, "severity": "low",
         "signals": [], "links": []},
        {"finding_id": "e", "entity_kind": "account", "entity_id": "someone", "hour": 2, "severity": "low",
         "signals": [], "links": []},
    ])
    out = assign_incidents(frame)
    assert "_links" not in out.columns
    ids = dict(zip(out["finding_id"], out["incident_id"], strict=True))
    assert ids["a"] == ids["b"] == ids["c"]
    assert len({ids["a"], ids["d"], ids["e"]}) == 3
    # The same findings give the same incident ids; grouping read back keeps them.
    assert assign_incidents(frame).equals(out)
    assert assign_incidents(out.with_columns()).get_column("incident_id").to_list() == out["incident_id"].to_list()
    incidents = incidents_of(out)
    lead = incidents.row(0, named=True)
    assert lead["severity"] == "high" and set(lead["entities"]) == {"svc_vendor", "ops_tmp7", "M1"}
    assert lead["summary"] == "svc_vendor: created account ops_tmp7 (and 2 more findings)"


def test_attribution_by_logon_id_and_by_open_session() -> None:
    rows = [
        {"time": "2026-03-20 08:00", "account": "alice", "host": "pc-1", "source_system": "windows",
         "message": "An account was successfully logged on (LogonType 2, Interactive)",
         "details": [{"key": "target_logon_id", "value": "0xABC"}]},
        {"time": "2026-03-20 08:30", "account": "bob", "host": "pc-1", "source_system": "windows",
         "message": "An account was successfully logged on (LogonType 10, RemoteInteractive)",
         "details": [{"key": "target_logon_id", "value": "0xDEF"}]},
        # Logged by the machine, in alice's session (by logon id) although bob logged on later.
        {"time": "2026-03-20 09:00", "account": "pc-1$", "action": "removable_media", "host": "pc-1",
         "source_system": "windows", "details": [{"key": "logon_id", "value": "0xabc"}]},
        # No logon id: the latest interactive logon on the host.
        {"time": "2026-03-20 09:05", "account": "pc-1$", "action": "removable_media", "host": "pc-1",
         "source_system": "windows"},
        # Another host with nobody logged on, and a person's own event: untouched.
        {"time": "2026-03-20 09:06", "account": "pc-2$", "action": "removable_media", "host": "pc-2",
         "source_system": "windows"},
        {"time": "2026-03-20 09:07", "account": "carol", "action": "process_created", "host": "pc-1",
         "source_system": "windows"},
    ]
    events, sessions = attribute(make_events(rows))
    assert events.get_column("attributed_account").to_list() == [None, None, "alice", "bob", None, None]
    assert events.get_column("account").to_list()[2] == "pc-1$"
    # The sessions carry to the next slice of a scan.
    later, _ = attribute(make_events([{"time": "2026-03-20 11:00", "account": "pc-1$", "action": "removable_media",
                                       "host": "pc-1", "source_system": "windows"}]), sessions)
    assert later.get_column("attributed_account").to_list() == ["bob"]


def test_the_readme_lists_every_signal_as_the_catalog_says() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for kind in CATALOG.values():
        assert f"| `{kind.name}` | {kind.impact} | {kind.meaning} | {kind.adjusted or '—'} |" in readme, kind.name


def test_an_operator_reading_three_times_their_meters_among_strangers_is_new_territory(profiles: Profiles) -> None:
    # op1 reads 4 meters an hour in the baseline (M<d*10+h>); here 15, all never touched by op1.
    rows = [{"time": "2026-03-20 10:30", "account": "op1", "action": "on_demand_read", "target_type": "meter",
             "target_id": f"X{k}"} for k in range(15)]
    frame = _signals(rows, profiles).filter(pl.col("signal") == "new_territory")
    assert frame.height == 1 and frame.item(0, "level") == MEDIUM
    assert frame.item(0, "detail").startswith("acted on 15 devices it never touched before")
    # The same volume on meters it knows is no new territory.
    known = [{"time": "2026-03-20 10:30", "account": "op1", "action": "on_demand_read", "target_type": "meter",
              "target_id": f"M{d * 10 + h}"} for d in range(1, 5) for h in (8, 10, 13, 15)]
    assert _signals(known, profiles).filter(pl.col("signal") == "new_territory").height == 0


def test_new_territory_counts_the_new_devices_of_a_busy_window_not_all_of_them(profiles: Profiles) -> None:
    # Windows reaching enough devices at all are looked up in the baseline device by device; among
    # 15 devices, 9 strangers are not enough and 10 are.
    def window(strangers: int) -> list[dict]:
        return [{"time": f"2026-03-20 10:{k:02d}", "account": "op1", "action": "on_demand_read", "target_type": "meter",
                 "target_id": f"X{k}" if k < strangers else f"M{d * 10 + 8}"}
                for k, d in zip(range(15), [*range(1, 15), 1], strict=True)]
    assert _signals(window(9), profiles).filter(pl.col("signal") == "new_territory").height == 0
    frame = _signals(window(10), profiles).filter(pl.col("signal") == "new_territory")
    assert frame.height == 1
    assert frame.item(0, "detail").startswith("acted on 10 devices it never touched before (15 in all")


def test_scanning_a_short_capture_without_a_model_finds_the_clear_and_says_the_baseline_is_thin(tmp_path) -> None:
    import json

    from click.testing import CliRunner

    from detector.cli import main

    lines = [
        {"TimeCreated": "2026-03-20T02:00:00Z", "EventID": 4624, "Computer": "WS5.corp.local", "TargetUserName": "wardog",
         "LogonType": 10, "IpAddress": "10.0.0.9"},
        {"TimeCreated": "2026-03-20T02:05:00Z", "EventID": 4720, "Computer": "WS5.corp.local",
         "SubjectUserName": "wardog", "TargetUserName": "backdoor"},
        {"TimeCreated": "2026-03-20T02:06:00Z", "EventID": 4732, "Computer": "WS5.corp.local",
         "SubjectUserName": "wardog", "MemberName": "backdoor", "TargetUserName": "Administrators"},
        {"TimeCreated": "2026-03-20T02:30:00Z", "EventID": 1102, "Computer": "WS5.corp.local",
         "SubjectUserName": "wardog"},
    ]
    capture = tmp_path / "capture.jsonl"
    capture.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = CliRunner().invoke(main, ["scan", str(capture), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "learned from the same logs that were scored" in result.stderr
    assert "findings come from security signals alone" in result.stderr
    incidents = pl.read_parquet(tmp_path / "out" / "incidents.parquet")
    lead = incidents.row(0, named=True)
    assert lead["severity"] == "critical" and lead["lead_entity"] == "wardog"
    assert "backdoor" in lead["summary"] or "cleared" in lead["summary"]


def test_new_territory_cites_the_first_line_of_a_new_device_in_time_order(profiles: Profiles) -> None:
    # Known meters come first and last; the new ones are listed out of time order.
    known = [{"time": "2026-03-20 10:01", "account": "op1", "action": "on_demand_read", "target_type": "meter",
              "target_id": "M18"}]
    strangers = [{"time": f"2026-03-20 10:{50 - k:02d}", "account": "op1", "action": "on_demand_read",
                  "target_type": "meter", "target_id": f"X{k}"} for k in range(15)]
    events = make_events([*known, *strangers])
    frame = event_signals(events, profiles, "1h").filter(pl.col("signal") == "new_territory")
    first_new = events.filter(pl.col("target_id") == "X14").select(
        formatted("{}:{}", "raw_file", "raw_line")).item()
    assert frame.height == 1 and frame.item(0, "evidence") == first_new
    assert frame.item(0, "time") == events.get_column("time").min()  # the window's first device event


def test_a_control_burst_names_its_actions_in_time_order_whatever_the_rows_order(profiles: Profiles) -> None:
    actions = ["tag_placed", "breaker_open", "breaker_close", "remote_disconnect"]
    rows = [{"time": f"2026-03-20 10:{10 + k:02d}", "account": "op1", "action": actions[k % 4], "target_type": "meter",
             "target_id": f"M{k}"} for k in range(12)]
    events = make_events(rows)
    details = {event_signals(order, profiles, "1h").filter(pl.col("signal") == "control_burst").item(0, "detail")
               for order in (events, *[events.sample(fraction=1.0, shuffle=True, seed=s) for s in (3, 4, 5)])}
    assert details == {("sent tag_placed, breaker_open, breaker_close to 12 devices in the window (usually 1 when it "
                        "sends any)")}


def test_sensitive_windows_read_the_columns_the_actor_needs_from_a_frame_of_many_chunks() -> None:
    # sensitive_windows reads ACTOR_COLUMNS (and the action) before filtering: they must be all actor() reads.
    assert set(actor().meta.root_names()) <= {*ACTOR_COLUMNS, "action"}
    events = make_events([
        {"time": "2026-03-20 09:05", "account": "adm1", "action": "account_created", "target_id": "x"},
        {"time": "2026-03-20 09:10", "account": "op1", "action": "login_success"},
        {"time": "2026-03-20 10:10", "account": None, "host": "PC-7", "action": "service_installed"},
        {"time": "2026-03-20 11:10", "account": "op2", "action": "vpn_connect"},
    ])
    chunked = pl.concat([events.slice(i, 1) for i in range(events.height)], rechunk=False)
    assert chunked.n_chunks() == events.height
    found = sensitive_windows(chunked, "1h").sort("entity_id")
    assert found.rows() == [("adm1", datetime(2026, 3, 20, 9, tzinfo=UTC), True),
                            ("op2", datetime(2026, 3, 20, 11, tzinfo=UTC), True),
                            ("pc-7$", datetime(2026, 3, 20, 10, tzinfo=UTC), True)]
    assert found.equals(sensitive_windows(events, "1h").sort("entity_id"))
