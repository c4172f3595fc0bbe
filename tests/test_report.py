"""The HTML report: self-contained, no script, every piece of log content escaped."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from detector.api import EVIDENCE_FILE, TIMELINE_FILE, Findings, entity_timeline
from detector.findings import FINDINGS_SCHEMA, write_findings
from detector.report import CSP, render_report, timeline_svg, write_report
from detector.schema import EVENT_SCHEMA

SCRIPT = "<script>alert(1)</script>"
FORMULA = "=cmd|' /C calc'!A0"
IMG = '<img src=x onerror="alert(2)">'
ESCAPE = "\x1b[2J\u202egnp.exe"  # clears a terminal; reverses text
START = datetime(2026, 4, 14, 2, tzinfo=UTC)
ACTIVITY = "activity of its entities"
HEADER = ("EventTimeUTC,AuditId,UserName,Role,ClientIP,Workstation,Category,Action,ObjectType,ObjectId,OldValue,"
          "NewValue,Result")


class _Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture
def hostile(tmp_path) -> tuple[pl.DataFrame, pl.DataFrame, Path]:
    """A finding for an account named like a script, whose evidence sets a formula as a value."""
    log = tmp_path / "hes_audit.csv"
    lines = [
        HEADER,
        f'2026-04-14T02:10:00Z,1,"{SCRIPT}",Administrator,203.0.113.9,EVIL01,Security,UserLogin,User,x,,,Success',
        (f'2026-04-14T02:12:00Z,2,"{SCRIPT}",Administrator,203.0.113.9,EVIL01,Configuration,SettingChanged,'
         f'GlobalSetting,Firmware.Max,500,"{FORMULA.replace(chr(34), chr(34) * 2)}",Success'),
        f"2026-04-14T02:13:00Z,3,{ESCAPE},Administrator,203.0.113.9,EVIL01,Security,UserLogin,User,x,,,Success",
    ]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = [
        {"time": START + timedelta(minutes=10), "account": SCRIPT, "category": "authentication",
         "action": "login_success", "new_value": None, "raw_line": 2},
        {"time": START + timedelta(minutes=12), "account": SCRIPT, "category": "config_change",
         "action": "setting_changed", "new_value": FORMULA, "raw_line": 3},
        {"time": START - timedelta(hours=3), "account": SCRIPT, "category": "authentication",
         "action": "login_success", "new_value": None, "raw_line": 4},
    ]
    events = pl.DataFrame([{**r, "source_system": "hes", "source_format": "hes_audit_csv", "outcome": "success",
                            "src_ip": "203.0.113.9", "target_type": "setting", "target_id": IMG,
                            "old_value": "500", "raw_file": str(log)} for r in rows]).select(
        [pl.col(c).cast(t) if c in ("time", "account", "category", "action", "new_value", "raw_line", "source_system",
                                    "source_format", "outcome", "src_ip", "target_type", "target_id", "old_value",
                                    "raw_file") else pl.lit(None, t).alias(c) for c, t in EVENT_SCHEMA.items()])
    findings = pl.DataFrame([{
        "finding_id": '"><script>x</script>', "entity_kind": "account", "entity_id": SCRIPT,
        "window_start": START, "window_end": START + timedelta(hours=1), "score": 0.9995, "severity": "high",
        "detector": "iforest", "reasons": [f"{SCRIPT}: first time doing setting_changed", f"set to {FORMULA}",
                                           f"from {ESCAPE}"],
        "top_features": [{"feature": IMG, "value": 1.0, "baseline": 0.0, "contribution": 0.7}],
        "event_count": 2, "evidence": [f"{log}:2", f"{log}:3"], "model_id": SCRIPT,
    }], schema=FINDINGS_SCHEMA)
    return findings, events, log


def _assert_safe(page: str) -> None:
    lower = page.lower()
    assert "<script" not in lower and "<img" not in lower and "onerror=" not in lower.replace("onerror=&quot;", "")
    assert FORMULA not in page and html.escape(FORMULA, quote=True) in page
    assert "\x1b" not in page and "\u202e" not in page and "\\x1b" in page and "\\u202e" in page
    parser = _Tags()
    parser.feed(page)
    tags = {tag for tag, _ in parser.tags}
    assert not tags & {"script", "img", "iframe", "object", "embed", "link", "base", "form", "input"}
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), href  # in-page links only
        assert "src" not in attrs, tag
    assert not re.search(r"url\(|@import|https?://(?!www\.w3\.org/2000/svg)", page)


def test_report_escapes_every_piece_of_log_content(hostile) -> None:
    findings, events, _ = hostile
    page = render_report(findings, events=events, title=f"scan of {SCRIPT}", generated_at=START)
    _assert_safe(page)
    assert html.escape(SCRIPT) in page  # the account is shown, as text
    assert f'content="{CSP}"' in page and "script-src 'none'" in CSP and "default-src 'none'" in CSP
    assert ACTIVITY in page  # the timeline
    assert page.count("<pre class=\"raw\">") == 2  # both evidence lines, read from the file
    assert "2026-04-14 02:00 UTC" in page


def test_report_without_events_still_shows_the_raw_lines(hostile) -> None:
    findings, _, log = hostile
    page = render_report(findings, generated_at=START)
    _assert_safe(page)
    assert ACTIVITY not in page  # no timeline without events or saved timelines
    assert html.escape(log.read_text().splitlines()[2], quote=True) in page


def test_raw_lines_of_moved_files_are_marked_not_invented(hostile, tmp_path) -> None:
    findings, events, log = hostile
    log.unlink()
    page = render_report(findings, events=events, generated_at=START)
    assert page.count("raw line not available") == 2


def test_write_report_from_a_findings_directory(hostile, tmp_path) -> None:
    findings, events, _ = hostile
    out = tmp_path / "out"
    write_findings(findings, out)
    Findings(findings, events=events).evidence_events().write_parquet(out / EVIDENCE_FILE)
    Findings(findings, events=events).timeline_counts().write_parquet(out / TIMELINE_FILE)
    target = write_report(out, tmp_path / "r" / "report.html", generated_at=START)
    page = target.read_text(encoding="utf-8")
    _assert_safe(page)
    assert ACTIVITY in page and "findings: out" in page
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]  # written atomically


def test_findings_html_reprs_escape_too(hostile) -> None:
    findings, events, _ = hostile
    found = Findings(findings, events=events)
    for page in (found._repr_html_(), found.explain(findings["finding_id"][0][:5])._repr_html_()):
        assert "<script" not in page.lower() and html.escape(SCRIPT) in page and "\x1b" not in page


def test_findings_are_ranked_severity_first_and_details_are_limited(hostile) -> None:
    findings, events, _ = hostile
    severity = findings["severity"].dtype
    many = pl.concat([findings.with_columns(finding_id=pl.lit(f"id{i:03d}"), entity_id=pl.lit(f"acct{i:03d}"),
                                            score=pl.lit(0.99 + i / 10_000),
                                            severity=pl.lit("high" if i < 10 else "low").cast(severity),
                                            window_start=pl.lit(START + timedelta(hours=i)))
                      for i in range(30)])
    page = render_report(many, events=events, generated_at=START, detail_limit=5)
    assert len(re.findall(r'<(?:details|div) class="finding"', page)) == 5
    # A high finding with a lower score comes before every low one, and within a severity the score ranks.
    assert page.index("acct009") < page.index("acct008") < page.index("acct029")
    assert "5 more incidents at medium or above are in the table only" in page
    assert "20 low-severity incidents, listed compactly" in page
    # The tables stop too, naming how many they leave to the findings files.
    short = render_report(many, events=events, generated_at=START, detail_limit=5, table_limit=12)
    assert short.count("<tr><td class='num'>") == 12
    assert "list the first 12 incidents; the other 18" in short


def test_empty_findings_render() -> None:
    page = render_report(pl.DataFrame(schema=FINDINGS_SCHEMA), generated_at=START)
    assert "No findings." in page and "<html" in page


def test_timeline_svg_draws_a_bar_per_category_and_marks_the_window(hostile) -> None:
    _, events, _ = hostile
    table = entity_timeline(events, "account", SCRIPT, START - timedelta(hours=4), START + timedelta(hours=2),
                            flagged=[(START, START + timedelta(hours=1))])
    assert table.height == 6 and table.get_column("total").sum() == 3
    svg = timeline_svg(table)
    assert svg.startswith("<svg") and svg.count("<title>") == 6 and "02:00 UTC: 2 events" in svg
    assert "config_change 1" in svg and 'fill="#d62728"' in svg
