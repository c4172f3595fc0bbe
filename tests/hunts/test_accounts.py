from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from detector.errors import ConfigError
from detector.findings import FINDINGS_SCHEMA
from detector.hunts.accounts import hunt_accounts, to_findings
from tests.features.events import make_events


def events() -> pl.DataFrame:
    account = {"target_type": "account"}
    return make_events([
        {"time": "2026-03-01 08:00", "account": "carol", "action": "login_success"},                   # 1
        {"time": "2026-03-05 10:05", "account": "bob", "action": "login_success"},                     # 2
        {"time": "2026-03-05 10:06", "account": "bob", "action": "on_demand_read"},                    # 3
        {**account, "time": "2026-03-10 12:00", "account": "admin", "action": "account_created",        # 4
         "target_id": "UTIL\\NewGuy", "new_value": "Role=Operator"},
        {**account, "time": "2026-03-10 12:01", "account": "admin", "action": "account_created",        # 5
         "target_id": "newguy", "source_system": "windows"},
        {"time": "2026-03-10 12:30", "account": "newguy", "action": "login_success"},                  # 6
        {"time": "2026-03-10 12:40", "account": "newguy", "action": "setting_changed"},                # 7
        {"time": "2026-03-10 12:45", "account": "newguy", "action": "login_failure", "outcome": "failure"},  # 8
        {**account, "time": "2026-03-12 09:00", "account": "admin", "action": "account_created",        # 9
         "target_id": "unused"},
        {"time": "2026-03-13 10:00", "account": "unused", "action": "login_success"},                  # 10: 25 h later
        {**account, "time": "2026-03-15 08:00", "account": "admin", "action": "role_granted",           # 11
         "target_id": "bob", "new_value": "Role=Administrator"},
        {"time": "2026-03-15 09:00", "account": "bob", "action": "on_demand_read"},                    # 12
        {"time": "2026-03-15 09:05", "account": "bob", "action": "setting_changed"},                   # 13
        {**account, "time": "2026-03-20 07:00", "account": "admin", "action": "group_member_added",     # 14
         "target_id": "alice", "outcome": "failure"},
        {"time": "2026-03-20 08:00", "account": "carol", "action": "login_success", "src_ip": "192.0.2.144"},  # 15
        {"time": "2026-03-20 08:10", "account": "carol", "action": "on_demand_read", "src_ip": "192.0.2.144"},  # 16
        {"time": "2026-03-18 11:00", "account": "mallory", "action": "login_success"},                 # 17
    ])


def rows_by(table: pl.DataFrame) -> dict[tuple[str, str], dict]:
    return {(row["kind"], row["account"]): row for row in table.iter_rows(named=True)}


def test_creations_grants_and_wake_ups() -> None:
    table = hunt_accounts(events())
    assert table.select("kind", "account", "called_out").rows() == [
        ("account_created", "newguy", True),
        ("privilege_granted", "bob", True),
        ("dormant_woke", "carol", True),
        ("account_created", "unused", False),
    ]
    rows = rows_by(table)
    new = rows[("account_created", "newguy")]
    assert (new["first_seen"], new["last_seen"]) == (datetime(2026, 3, 10, 12, 0, tzinfo=UTC),
                                                     datetime(2026, 3, 10, 12, 1, tzinfo=UTC))
    assert (new["actors"], new["details"], new["systems"]) == (["admin"], ["Role=Operator"], ["hes", "windows"])
    assert (new["used_within"], new["first_use"], new["uses"]) == (True, datetime(2026, 3, 10, 12, 30, tzinfo=UTC), 2)
    assert new["actions_after"] == ["login_success (1)", "setting_changed (1)"]
    assert new["new_actions"] == ["login_success", "setting_changed"]
    assert new["evidence"] == ["test.log:4", "test.log:5", "test.log:6", "test.log:7"] and new["event_count"] == 4
    assert new["reasons"] == [
        ("newguy was created (Role=Operator) at 2026-03-10 12:00:00 UTC by admin; used 30 minutes later "
         "(2 events within 24 h: login_success (1), setting_changed (1)), including actions it had never done "
         "before: login_success, setting_changed")]

    grant = rows[("privilege_granted", "bob")]
    assert (grant["uses"], grant["new_actions"]) == (2, ["setting_changed"])  # reads were routine for bob

    woke = rows[("dormant_woke", "carol")]
    assert (woke["dormant_days"], woke["last_seen_before"]) == (19.0, datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    assert (woke["first_seen"], woke["last_seen"]) == (datetime(2026, 3, 20, 8, 0, tzinfo=UTC),
                                                       datetime(2026, 3, 20, 8, 10, tzinfo=UTC))
    assert (woke["uses"], woke["src_ips_after"], woke["event_count"]) == (2, ["192.0.2.144"], 3)
    assert woke["evidence"] == ["test.log:1", "test.log:15", "test.log:16"]

    unused = rows[("account_created", "unused")]
    assert (unused["used_within"], unused["uses"], unused["first_use"]) == (False, 0, None)
    assert unused["description"].endswith("not used within 24 h")


def test_thresholds_are_options() -> None:
    longer = rows_by(hunt_accounts(events(), use_within=timedelta(hours=26)))
    assert longer[("account_created", "unused")]["called_out"] is True
    assert ("dormant_woke", "carol") not in rows_by(hunt_accounts(events(), dormant_after=timedelta(days=20)))
    assert ("dormant_woke", "bob") in rows_by(hunt_accounts(events(), dormant_after=timedelta(days=5)))


def test_period_and_accounts_first_seen_in_it() -> None:
    table = hunt_accounts(events(), since="2026-03-11", until="2026-03-31")
    assert table.select("kind", "account", "called_out").rows() == [
        ("privilege_granted", "bob", True),
        ("dormant_woke", "carol", True),
        ("account_created", "unused", False),
        ("first_seen", "mallory", False),  # never created in these logs
    ]


def test_findings_are_per_account() -> None:
    findings = to_findings(hunt_accounts(events()), "medium")
    assert findings.schema == FINDINGS_SCHEMA
    assert findings.select("entity_kind", "entity_id", "severity").rows() == [
        ("account", "newguy", "medium"), ("account", "bob", "medium"), ("account", "carol", "medium")]


def test_bad_durations() -> None:
    with pytest.raises(ConfigError, match="positive"):
        hunt_accounts(events(), use_within=timedelta(0))


def test_sample_logs_new_account_grant_and_dormant(sample_events: pl.DataFrame, incidents: dict) -> None:
    table = hunt_accounts(sample_events, since="2026-03-23")
    called = {(row["kind"], row["account"]) for row in table.filter("called_out").iter_rows(named=True)}
    assert called == {("account_created", "svc_reporting"), ("privilege_granted", "svc_reporting"),
                      ("privilege_granted", "jallen"), ("dormant_woke", "rjenkins")}
    rows = rows_by(table)
    created = rows[("account_created", "svc_reporting")]
    planted = incidents["new_account_used"]
    assert created["actors"] == ["eprice"] and set(created["systems"]) == {"hes", "windows"}
    assert created["first_use"] - created["first_seen"] < timedelta(hours=24)
    assert datetime.fromisoformat(planted["start"]) <= created["first_seen"] <= datetime.fromisoformat(planted["end"])
    assert "setting_changed" in created["new_actions"]
    dormant = rows[("dormant_woke", "rjenkins")]
    assert dormant["dormant_days"] > 14 and "192.0.2.144" in dormant["src_ips_after"]
    assert dormant["first_seen"] == datetime.fromisoformat(incidents["dormant_account"]["start"]).replace(microsecond=0)
    # The new hire of 2026-03-10, first used three days later, is listed without being called out.
    hire = rows_by(hunt_accounts(sample_events, until="2026-03-11"))[("account_created", "khayes")]
    assert hire["called_out"] is False and hire["used_within"] is False


def test_sids_resolve_where_an_event_names_both_and_display_names_are_never_accounts(tmp_path) -> None:
    import json as _json

    from detector.hunts.cli import load_events

    sid, stranger = "S-1-5-21-1004336348-1177238915-682003330-1107", "S-1-5-21-1004336348-1177238915-682003330-9999"
    base = {"Computer": "DC01.util.local", "SubjectUserName": "EPrice", "SubjectDomainName": "UTIL",
            "SubjectUserSid": "S-1-5-21-1004336348-1177238915-682003330-1001"}
    records = [
        {**base, "TimeCreated": "2026-03-10T14:00:00Z", "EventID": 4720, "TargetUserName": "KHayes",
         "TargetDomainName": "UTIL", "TargetSid": sid},
        {**base, "TimeCreated": "2026-03-10T14:00:05Z", "EventID": 4728, "TargetUserName": "HES Operators",
         "MemberName": "CN=Kevin Hayes,OU=Operations,DC=util,DC=local", "MemberSid": sid},
        {**base, "TimeCreated": "2026-03-10T14:01:00Z", "EventID": 4732, "TargetUserName": "Administrators",
         "MemberName": "-", "MemberSid": stranger},
        {**base, "TimeCreated": "2026-03-10T14:02:00Z", "EventID": 4728, "TargetUserName": "HES FieldTech",
         "MemberName": "CN=Laura Edwards,OU=Operations,DC=util,DC=local"},
        {"TimeCreated": "2026-03-10T15:00:00Z", "EventID": 4624, "Computer": "HES-APP01.util.local",
         "TargetUserName": "KHayes", "TargetDomainName": "UTIL", "LogonType": 3, "IpAddress": "10.20.1.14"},
    ]
    path = tmp_path / "winsec_2026-03-10.jsonl"
    path.write_text("".join(_json.dumps(r) + "\n" for r in records))
    events, failed = load_events([str(path)], format_name=None, mappings=(), tz=None, quiet=True)
    assert not failed
    table = hunt_accounts(events)
    grants = table.filter(pl.col("kind") == "privilege_granted")
    assert set(grants.get_column("account").drop_nulls()) == {"khayes"}  # the SID and "Kevin Hayes" resolved
    assert sorted(grants.get_column("logged_as").drop_nulls()) == ["laura edwards", stranger.lower()]
    resolved = grants.filter(pl.col("account") == "khayes").row(0, named=True)
    assert resolved["used_within"] and resolved["called_out"] and resolved["details"] == ["HES Operators"]
    for row in grants.filter(pl.col("account").is_null()).iter_rows(named=True):
        assert row["used_within"] is None and not row["called_out"] and "not used within" not in row["description"]
    assert "laura edwards" not in table.get_column("account").drop_nulls().to_list()
