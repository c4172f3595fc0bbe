"""The report's incident-first layout, display time zone, model features and hunt call-outs."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.config import Config
from detector.errors import ConfigError
from detector.findings import FINDINGS_SCHEMA, write_findings
from detector.report import INCIDENTS_FILE, findings_chart_svg, render_report, write_report
from detector.report_data import INCIDENT_SCHEMA, DisplayZone, feature_view, prepare

T0 = datetime(2026, 3, 28, 8, tzinfo=UTC)  # 03:00 CDT
HOSTILE = '<script>alert("x")</script>\x1b[31m\u202e'
SIGNAL = {"signal": "log cleared", "impact": "critical", "detail": f"Security log cleared by {HOSTILE}"}


def finding(fid: str, entity: str, *, severity: str, score: float, hours: int = 0, kind: str = "account",
            detector: str = "iforest", reasons: list[str] | None = None, top: list[dict] | None = None,
            incident: str | None = None, signals: list[dict] | None = None) -> dict:
    start = T0 + timedelta(hours=hours)
    return {"finding_id": fid, "entity_kind": kind, "entity_id": entity, "window_start": start,
            "window_end": start + timedelta(hours=1), "score": score, "severity": severity, "detector": detector,
            "reasons": reasons or [f"{entity}: reason of {fid}"], "top_features": top or [], "event_count": 3,
            "evidence": [], "model_id": "m1", "incident_id": incident, "signals": signals or []}


SCHEMA = {**FINDINGS_SCHEMA, "incident_id": pl.String,
          "signals": pl.List(pl.Struct({"signal": pl.String, "impact": pl.String, "detail": pl.String}))}


def frame(rows: list[dict], *, with_incidents: bool = True) -> pl.DataFrame:
    df = pl.DataFrame(rows, schema=SCHEMA)
    return df if with_incidents else df.drop("incident_id", "signals")


@pytest.fixture
def scan() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Incident A: an account (high) and two devices its burst reached (medium, low); incident B: one
    medium window; and a low meter ranked first by score, as the issue saw it."""
    rows = [
        finding("f-meter", "4A1B22C3", kind="device", severity="low", score=0.99999),
        finding("f-a1", HOSTILE, severity="high", score=0.9991, incident="inc-A", signals=[SIGNAL]),
        finding("f-a2", "DEV-1", kind="device", severity="medium", score=0.9960, hours=1, incident="inc-A",
                signals=[{"signal": "control burst", "impact": "medium", "detail": "412 devices"}]),
        finding("f-a3", "DEV-2", kind="device", severity="low", score=0.9950, hours=2, incident="inc-A"),
        finding("f-b1", "jdoe", severity="medium", score=0.9999, hours=30, incident="inc-B"),
    ]
    incidents = pl.DataFrame([
        {"incident_id": "inc-A", "severity": "high", "score": 0.9991, "lead_kind": "account", "lead_entity": HOSTILE,
         "summary": f"audit log cleared by {HOSTILE}", "first_seen": T0, "last_seen": T0 + timedelta(hours=3),
         "entities": [HOSTILE, "DEV-1", "DEV-2"], "finding_ids": ["f-a1", "f-a2", "f-a3"]},
        {"incident_id": "inc-B", "severity": "medium", "score": 0.9999, "lead_kind": "account", "lead_entity": "jdoe",
         "summary": "jdoe: never-seen network", "first_seen": T0 + timedelta(hours=30),
         "last_seen": T0 + timedelta(hours=31), "entities": ["jdoe"], "finding_ids": ["f-b1"]},
    ], schema=INCIDENT_SCHEMA)
    return frame(rows), incidents


def _detailed(page: str) -> list[str]:
    """Ids of the findings shown in detail (a lone finding of an incident has no <details> of its own)."""
    return re.findall(r'<(?:details|div) class="finding" id="f-([^"]+)"', page)


def _sections(page: str) -> list[str]:
    return re.findall(r'<section class="incident[^"]*" id="([^"]+)"', page)


def test_incidents_lead_severity_first_with_their_summary_signals_and_findings(scan) -> None:
    findings, incidents = scan
    page = render_report(findings, incidents=incidents, generated_at=T0)
    assert _sections(page) == ["i-inc-A", "i-inc-B"]  # the low meter gets no section; high before medium
    table = page[page.index("Incidents, most severe first"):page.index("<h2>Details")]
    assert table.index("inc-A") < table.index("inc-B") < table.index("4A1B22C3")  # the low meter ranks last
    a = page[page.index('id="i-inc-A"'):page.index('id="i-inc-B"')]
    assert html.escape(f"audit log cleared by {HOSTILE}".replace("\x1b", "\\x1b").replace("\u202e", "\\u202e")) in a
    assert "log cleared" in a and a.index("log cleared") < a.index("control burst")  # critical signal first
    # Every finding at medium or above in detail, the low one listed compactly.
    assert a.count('<details class="finding"') == 2 and 'id="f-f-a1" open' in a and 'id="f-f-a2">' in a
    assert "other findings of this incident (1, listed compactly)" in a and "DEV-2" in a
    assert "3 entities" in a
    assert "<script" not in page.lower() and "\x1b" not in page and "\u202e" not in page


def test_findings_with_incident_ids_but_no_incidents_table_are_grouped(scan) -> None:
    findings, _ = scan
    data = prepare(findings, None, hunts=frozenset())
    assert data.incidents.get_column("incident_id").to_list() == ["inc-A", "inc-B", "f-meter"]
    a = data.incidents.row(0, named=True)
    assert a["severity"] == "high" and a["finding_ids"] == ["f-a1", "f-a2", "f-a3"]
    assert a["summary"] == SIGNAL["signal"] + ": " + SIGNAL["detail"]  # the most important signal names it
    assert a["first_seen"] == T0 and a["last_seen"] == T0 + timedelta(hours=3)


def test_old_findings_without_incident_columns_are_each_their_own_incident(scan, tmp_path) -> None:
    findings, _ = scan
    old = findings.drop("incident_id", "signals")
    data = prepare(old, None, hunts=frozenset())
    assert data.incidents.height == 5 and data.incidents.get_column("incident_id").to_list()[:2] == ["f-a1", "f-b1"]
    assert data.incidents.get_column("summary")[1] == "jdoe: reason of f-b1"  # its first reason
    # An old findings directory (the contract's columns only) still renders, every medium+ finding detailed.
    write_findings(old, tmp_path)
    page = write_report(tmp_path, tmp_path / "report.html", generated_at=T0).read_text(encoding="utf-8")
    assert len(_sections(page)) == 3 and len(_detailed(page)) == 3


def test_a_findings_directory_with_incidents_parquet_is_read_with_its_incident_columns(scan, tmp_path) -> None:
    findings, incidents = scan
    findings.write_parquet(tmp_path / "findings.parquet")  # as the wave-2 scan writes it: extra columns kept
    incidents.write_parquet(tmp_path / INCIDENTS_FILE)
    page = write_report(tmp_path, tmp_path / "report.html", generated_at=T0).read_text(encoding="utf-8")
    assert _sections(page) == ["i-inc-A", "i-inc-B"] and "jdoe: never-seen network" in page


def test_a_finding_far_down_the_score_ranking_still_gets_its_details() -> None:
    # The issue: an audit-log clear ranked 149th by score had no evidence or timeline.
    rows = [finding(f"low{i:03d}", f"M{i:03d}", kind="device", severity="low", score=0.99999 - i * 1e-7, hours=i)
            for i in range(160)]
    rows.append(finding("clear", "ops_tmp7", severity="medium", score=0.99, reasons=["ops_tmp7: audit log cleared"]))
    page = render_report(frame(rows, with_incidents=False), generated_at=T0)
    assert _sections(page) == ["i-clear"] and _detailed(page) == ["clear"]
    assert "160 low-severity incidents, listed compactly" in page


def test_hunt_callouts_attach_to_the_incidents_they_touch(scan) -> None:
    findings, incidents = scan
    touching = finding("h1", HOSTILE.upper(), severity="critical", score=1.0, hours=5, detector="log-tamper",
                       reasons=[f"audit log cleared on HES-APP01 by {HOSTILE}"])
    elsewhere = finding("h2", "nobody", severity="high", score=1.0, hours=100, detector="vendor-access")
    merged = pl.concat([findings, frame([touching, elsewhere])])
    page = render_report(merged, incidents=incidents, generated_at=T0)
    a = page[page.index('id="i-inc-A"'):page.index('</section>', page.index('id="i-inc-A"'))]
    assert "hunt call-outs that touch it (1)" in a and "hunt log-tamper" in a
    assert "raised from" in a and 'class="incident critical"' in page  # the call-out's severity lifts it
    assert _sections(page) == ["i-inc-A", "i-h2", "i-inc-B"]  # the untouched call-out is its own incident
    assert "<script" not in page.lower()


def test_times_are_shown_in_the_display_zone_with_utc_in_the_tooltip(scan) -> None:
    findings, incidents = scan
    page = render_report(findings, incidents=incidents, generated_at=T0, display_tz="America/Chicago")
    assert '<time datetime="2026-03-28T08:00:00Z" title="2026-03-28 08:00 UTC">2026-03-28 03:00 CDT</time>' in page
    assert "America/Chicago (UTC in each time" in page
    assert not re.search(r">\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? UTC<", page)  # no time left in UTC only
    utc = render_report(findings, incidents=incidents, generated_at=T0)
    assert '<time datetime="2026-03-28T08:00:00Z">2026-03-28 08:00 UTC</time>' in utc
    with pytest.raises(ConfigError, match="unknown time zone"):
        render_report(findings, display_tz="Mars/Olympus_Mons")
    assert DisplayZone("America/Chicago").text(datetime(2026, 1, 5, 12, tzinfo=UTC)) == "2026-01-05 06:00 CST"


def test_the_findings_chart_counts_local_days_across_a_dst_change() -> None:
    # Two findings each local day for 35 days from Mar 1 (DST starts Mar 8 in Chicago): 35 bars of two.
    rows = [finding(f"d{d}-{h}", "a", severity=s, score=0.99, hours=24 * (d - 27) + h)
            for d in range(35) for h, s in ((0, "low"), (6, "high"))]
    svg = findings_chart_svg(frame(rows), zone=DisplayZone("America/Chicago"))
    assert svg.count("<title>") == 35 and svg.count(": 2 findings, low 1, high 1</title>") == 35
    assert svg.count('fill="#c62828"') == 35  # a high bar every day
    assert "findings per 1d (America/Chicago)" in svg and "2026-03-08 00:00 America/Chicago" in svg


def test_model_features_are_shown_as_counts_and_days_not_log_values() -> None:
    reasons = ["eprice: 12 remote disconnects in the window (usually 2 when it does any)", "rarer than 99.99%"]
    excess = feature_view({"feature": "excess_remote_disconnect", "value": 1.466, "baseline": 0.0,
                           "contribution": 0.4}, reasons)
    assert (excess.window, excess.baseline) == ("12 remote disconnects", "usually 2 when it does any")
    assert "log-ratio 1.47" in excess.scale
    days = feature_view({"feature": "dormancy_days", "value": 3.4340, "baseline": 0.0, "contribution": 0.1}, [])
    assert days.window == "30 days" and "log1p = 3.43" in days.scale
    new_ips = feature_view({"feature": "new_src_ip_events", "value": 1.0986, "baseline": 0.0, "contribution": 0.1}, [])
    assert new_ips.window == "2" and new_ips.baseline == "median window 0"
    quiet = feature_view({"feature": "excess_ping", "value": 0.0, "baseline": 0.0, "contribution": 0.0}, [])
    assert quiet.window == "not more than usual"
    row = finding("x", "eprice", severity="high", score=0.999, reasons=reasons,
                  top=[{"feature": "excess_remote_disconnect", "value": 1.466, "baseline": 0.0, "contribution": 0.4}])
    page = render_report(frame([row]), generated_at=T0)
    assert "12 remote disconnects" in page and "1.466" not in page


def test_evidence_tables_wrap_inside_their_card() -> None:
    long = "A" * 3000
    row = finding("x", long, severity="high", score=0.999, reasons=[long])
    page = render_report(frame([row]), generated_at=T0)
    assert "table.evidence{table-layout:fixed" in page and "overflow-wrap:anywhere" in page
    assert "html{overflow-x:hidden}" in page
    for table in re.finditer(r"<table class=\"evidence\">", page):
        assert page[:table.start()].endswith('<div class="scroll">')


def test_report_config_table(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[report]\ndisplay_tz = "Europe/Berlin"\n')
    config = Config.from_toml(path)
    assert config.report.display_tz == "Europe/Berlin" and "report" not in config.to_dict()  # not in the model
    path.write_text('[report]\ndisplay_tz = "Nowhere/Else"\n')
    with pytest.raises(ConfigError, match="unknown time zone"):
        Config.from_toml(path)
    path.write_text('[report]\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="unknown \\[report\\] setting"):
        Config.from_toml(path)


def test_report_command_takes_a_display_zone(scan, tmp_path) -> None:
    findings, incidents = scan
    findings.write_parquet(tmp_path / "findings.parquet")
    incidents.write_parquet(tmp_path / INCIDENTS_FILE)
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--display-tz", "America/Chicago", "--quiet"])
    assert result.exit_code == 1, result.output  # the findings hold alerts, as for scan
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "2026-03-28 03:00 CDT" in page and _sections(page) == ["i-inc-A", "i-inc-B"]
    bad = CliRunner().invoke(main, ["report", str(tmp_path), "--display-tz", "Nowhere/Else"])
    assert bad.exit_code == 2 and "unknown time zone" in bad.stderr


def test_hostile_incident_ids_signals_and_summaries_stay_text(scan) -> None:
    findings, incidents = scan
    evil = '"><script>alert(3)</script>'
    findings = findings.with_columns(incident_id=pl.when(pl.col("incident_id") == "inc-A").then(pl.lit(evil))
                                     .otherwise(pl.col("incident_id")),
                                     signals=pl.lit([{"signal": HOSTILE, "impact": "<u>", "detail": evil}],
                                                    dtype=SCHEMA["signals"]))
    incidents = incidents.with_columns(incident_id=pl.when(pl.col("incident_id") == "inc-A").then(pl.lit(evil))
                                       .otherwise(pl.col("incident_id")))
    page = render_report(findings, incidents=incidents, generated_at=T0)
    assert "<script" not in page.lower() and "<u>" not in page and "\\x1b" in page
    assert 'id="i-___script_alert_3___script_"' in page and html.escape(evil, quote=True) in page
    assert 'class="sev sev-unknown">&lt;u&gt;</span>' in page  # an impact outside the four is shown, escaped


def test_scan_writes_its_report_in_the_configured_zone_unless_told_otherwise(tmp_path) -> None:
    import shutil
    from pathlib import Path

    root = Path(__file__).parent.parent
    logs = tmp_path / "logs"
    logs.mkdir()
    for path in sorted((root / "sample_logs").glob("*2026-03-27*")):
        shutil.copy(path, logs)
    config = tmp_path / "c.toml"
    config.write_text('[report]\ndisplay_tz = "America/Chicago"\n')
    base = ["scan", str(logs), "--model", str(root / "models" / "default"), "--quiet", "--config", str(config)]
    first = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "a")])
    assert first.exit_code in (0, 1), first.stderr
    page = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    assert "America/Chicago (UTC in each time" in page and " CDT</time>" in page
    second = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "b"), "--display-tz", "Europe/Berlin"])
    assert second.exit_code == first.exit_code
    assert " CET</time>" in (tmp_path / "b" / "report.html").read_text(encoding="utf-8")
    bad = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "c"), "--display-tz", "Nowhere/Else"])
    assert bad.exit_code == 2 and "unknown time zone" in bad.stderr and not (tmp_path / "c").exists()


def test_an_incident_timeline_adds_up_its_entities_and_greys_what_was_not_recorded() -> None:
    rows = [finding("a1", "ops", severity="high", score=0.999, incident="inc"),
            finding("a2", "DEV-9", kind="device", severity="medium", score=0.99, hours=40, incident="inc")]
    counts = pl.DataFrame([
        {"entity_kind": "account", "entity_id": "ops", "time": T0, "category": "authentication", "events": 2},
        {"entity_kind": "device", "entity_id": "DEV-9", "time": T0, "category": "device_command", "events": 5},
        {"entity_kind": "account", "entity_id": "someone_else", "time": T0, "category": "authentication", "events": 7},
    ], schema={"entity_kind": pl.String, "entity_id": pl.String, "time": pl.Datetime("us", "UTC"),
               "category": pl.String, "events": pl.Int64})
    page = render_report(frame(rows), timelines=counts, generated_at=T0)
    assert "2026-03-28 08:00 UTC: 7 events, authentication 2, device_command 5</title>" in page  # not someone_else
    # 12 h either side of each window is recorded; the 15 hours between are not, and say so.
    assert page.count("not recorded this far from a finding") == 15


def test_findings_write_passes_its_incidents_and_zone_to_the_report(scan, tmp_path) -> None:
    from detector.api import Findings

    findings, incidents = scan
    found = Findings(findings)  # its incidents follow from the findings' incident_id
    assert found.incidents.get_column("incident_id").to_list() == incidents.get_column("incident_id").to_list()
    found.write(tmp_path, evidence=False, display_tz="America/Chicago")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert _sections(page) == ["i-inc-A", "i-inc-B"] and "2026-03-28 03:00 CDT" in page


def test_activity_tables_of_all_incidents_at_once_equal_each_incident_on_its_own() -> None:
    from detector.report_data import activity_tables
    from detector.timelines import overlapping, wide_timeline

    around = timedelta(hours=12)
    members = frame([finding("s1", "ops", severity="high", score=0.9, incident="short"),
                     finding("s2", "DEV-9", kind="device", severity="medium", score=0.8, hours=5, incident="short"),
                     finding("w1", "ops", severity="medium", score=0.7, hours=300, incident="weeks"),  # 6 h bars
                     finding("w2", "jdoe", severity="medium", score=0.7, hours=30, incident="weeks"),
                     finding("m1", "root", severity="medium", score=0.6, incident="months"),  # 1 d bars
                     finding("m2", "root", severity="medium", score=0.6, hours=24 * 70, incident="months"),
                     finding("q1", "quiet", severity="medium", score=0.5, incident="quiet")])  # no activity at all
    hourly = pl.DataFrame([
        {"entity_kind": kind, "entity_id": who, "time": T0 + timedelta(hours=h), "category": cat, "events": n}
        for kind, who, h, cat, n in [("account", "ops", -3, "authentication", 2), ("account", "ops", 4, "admin", 1),
                                     ("device", "DEV-9", 5, "device_command", 7), ("account", "ops", 299, "admin", 3),
                                     ("account", "jdoe", 31, "authentication", 4), ("account", "root", 900, "admin", 9),
                                     ("account", "root", -13, "admin", 5), ("account", "nobody", 1, "admin", 6)]],
        schema={"entity_kind": pl.String, "entity_id": pl.String, "time": pl.Datetime("us", "UTC"),
                "category": pl.String, "events": pl.Int64})
    spans = members.group_by("incident_id", maintain_order=True).agg(
        first_seen=pl.col("window_start").min(), last_seen=pl.col("window_end").max())
    tables = activity_tables(hourly, members, spans, around)
    assert set(tables) == {"short", "weeks", "months", "quiet"}
    for incident, first, last in spans.iter_rows():
        mine = members.filter(pl.col("incident_id") == incident)
        start, end = first - around, last + around
        every = "1h" if end - start <= timedelta(hours=240) else "6h" if end - start <= timedelta(hours=1440) else "1d"
        counts = hourly.join(mine.select("entity_kind", "entity_id").unique(), on=["entity_kind", "entity_id"]).filter(
            pl.col("time").is_between(start, end, closed="left"))
        windows = list(mine.select("window_start", "window_end").unique().iter_rows())
        expected = wide_timeline(counts.select("time", "category", "events"), start, end, every, windows)
        expected = expected.with_columns(covered=overlapping(expected.get_column("time"), every, windows, around))
        assert tables[incident].equals(expected), incident
    assert tables["weeks"].get_column("time").diff().drop_nulls().unique().to_list() == [timedelta(hours=6)]
    assert tables["months"].get_column("time").diff().drop_nulls().unique().to_list() == [timedelta(days=1)]
    assert tables["quiet"].columns == ["time", "total", "flagged", "covered"]
