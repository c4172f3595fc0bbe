from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from detector.errors import ConfigError
from detector.findings import FINDINGS_SCHEMA
from detector.hunts.log_tamper import hunt_log_tamper, to_findings
from tests.features.events import make_events

START = datetime(2026, 3, 1, tzinfo=UTC)
GAP_FROM, GAP_TO = datetime(2026, 3, 5, 10, 0, tzinfo=UTC), datetime(2026, 3, 5, 15, 0, tzinfo=UTC)


def events() -> pl.DataFrame:
    every_ten = [START + timedelta(minutes=10 * i) for i in range(10 * 144)]
    rows = [{"time": t, "action": "ping", "source_format": "hes_commands_jsonl"}
            for t in every_ten if not GAP_FROM < t < GAP_TO]
    # A second stream that stops six hours before the end of the logs.
    rows += [{"time": t, "action": "login_success", "source_system": "windows", "source_format": "winsec_jsonl",
              "host": "HES-DB01.util.local"} for t in every_ten if t <= every_ten[-1] - timedelta(hours=6)]
    # A sparse stream: too few events to know its normal silence.
    rows += [{"time": START + timedelta(days=d), "action": "vpn_connect", "source_system": "vpn", "source_format": "cef"}
             for d in (0, 9)]
    rows += [
        {"time": datetime(2026, 3, 5, 10, 5, tzinfo=UTC), "action": "log_cleared", "source_system": "windows",
         "source_format": "winsec_jsonl", "host": "HES-APP01.util.local", "account": "eprice", "native_code": "1102"},
        {"time": datetime(2026, 3, 6, 1, 0, tzinfo=UTC), "action": "other", "category": "log_tamper",
         "source_system": "windows", "source_format": "winsec_jsonl", "host": "HES-APP01.util.local",
         "native_code": "1100", "message": "The event logging service has shut down"},
        {"time": datetime(2026, 3, 7, 2, 0, tzinfo=UTC), "action": "setting_changed", "account": "bob",
         "src_ip": "10.1.2.3", "target_type": "setting", "target_id": "Audit.Enabled", "old_value": "true",
         "new_value": "false", "source_format": "hes_audit_csv"},
        {"time": datetime(2026, 3, 7, 2, 5, tzinfo=UTC), "action": "setting_changed", "account": "bob",
         "target_type": "setting", "target_id": "Catalog.Size", "source_format": "hes_audit_csv"},
    ]
    return make_events(rows)


def test_clears_tampering_silences_and_stops() -> None:
    table = hunt_log_tamper(events())
    assert table.select("kind", "stream", "host", "account", "first_seen", "last_seen").rows() == [
        ("gap", "hes_commands_jsonl hes", "hes", None, datetime(2026, 3, 5, 10, 0, tzinfo=UTC), GAP_TO),
        ("log_cleared", "winsec_jsonl HES-APP01", "HES-APP01", "eprice", datetime(2026, 3, 5, 10, 5, tzinfo=UTC),
         datetime(2026, 3, 5, 10, 5, tzinfo=UTC)),
        ("logging_tampered", "winsec_jsonl HES-APP01", "HES-APP01", None, datetime(2026, 3, 6, 1, 0, tzinfo=UTC),
         datetime(2026, 3, 6, 1, 0, tzinfo=UTC)),
        ("audit_setting_changed", "hes_audit_csv hes", "hes", "bob", datetime(2026, 3, 7, 2, 0, tzinfo=UTC),
         datetime(2026, 3, 7, 2, 0, tzinfo=UTC)),
        ("stream_stopped", "winsec_jsonl HES-DB01", "HES-DB01", None, datetime(2026, 3, 10, 17, 50, tzinfo=UTC),
         datetime(2026, 3, 10, 23, 50, tzinfo=UTC)),
    ]
    assert table["called_out"].all()
    rows = {row["kind"]: row for row in table.iter_rows(named=True)}
    gap = rows["gap"]
    assert (gap["silence_hours"], gap["normal_silence_hours"]) == (5.0, 0.17)
    assert gap["reasons"] == [("no events from hes_commands_jsonl hes for 5.0 hours (2026-03-05 10:00:00 to "
                               "2026-03-05 15:00:00 UTC), 30.0 times its usual longest silence of a day (10 minutes)")]
    assert len(gap["evidence"]) == 2 and gap["event_count"] == 2
    assert rows["log_cleared"]["description"] == "eprice cleared the audit log (1102) on HES-APP01 at 2026-03-05 10:05:00 UTC"
    assert rows["logging_tampered"]["detail"] == "The event logging service has shut down (1100)"
    assert rows["audit_setting_changed"]["detail"] == "Audit.Enabled: true -> false"
    assert rows["stream_stopped"]["silence_hours"] == 6.0


def test_period_and_thresholds() -> None:
    later = hunt_log_tamper(events(), since="2026-03-06")
    assert later["kind"].to_list() == ["logging_tampered", "audit_setting_changed", "stream_stopped"]
    tolerant = hunt_log_tamper(events(), min_gap=timedelta(hours=8))
    assert "gap" not in tolerant["kind"].to_list() and "stream_stopped" not in tolerant["kind"].to_list()
    assert "cef vpn" not in hunt_log_tamper(events(), min_events=2, min_gap=timedelta(0))["stream"].to_list()


def test_findings_name_who_or_where() -> None:
    findings = to_findings(hunt_log_tamper(events()), "critical")
    assert findings.schema == FINDINGS_SCHEMA
    assert findings.select("entity_kind", "entity_id").rows() == [
        ("device", "hes"), ("account", "eprice"), ("device", "HES-APP01"), ("account", "bob"), ("device", "HES-DB01")]


@pytest.mark.parametrize("options", [{"silence_quantile": 1.5}, {"silence_factor": 0.5}, {"min_events": 1}])
def test_bad_options(options: dict) -> None:
    with pytest.raises(ConfigError):
        hunt_log_tamper(events(), **options)


def test_sample_logs_audit_log_clearing(sample_events: pl.DataFrame, incidents: dict) -> None:
    planted = incidents["audit_log_cleared"]
    table = hunt_log_tamper(sample_events)
    # Both clears of the incident, and no silence in a month of ordinary logs.
    assert table.select("kind", "account", "host").rows() == [
        ("log_cleared", "eprice", "hes"), ("log_cleared", "eprice", "HES-APP01")]
    start, end = datetime.fromisoformat(planted["start"]), datetime.fromisoformat(planted["end"])
    assert all(start <= t <= end for t in table["first_seen"])
    assert table.row(0, named=True)["detail"] == "HES.Audit (AuditLogCleared): entries=5579104 -> entries=0"
    assert [e.rsplit("/", 1)[-1] for e in table["evidence"].explode()] == [
        "hes_audit_2026-03-28.csv:8", "winsec_2026-03-28.jsonl:51"]
