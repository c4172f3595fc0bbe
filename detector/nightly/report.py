"""The dated report ``OUT/D/``: rebuilt from the findings ledger, swapped in whole, ``OUT/latest`` moved."""

from __future__ import annotations

import os
import shutil

import polars as pl

from detector.atomic import fsync_dir, fsync_file
from detector.config import Config
from detector.findings import (
    SEVERITIES,
    empty_findings,
    rank,
    severity_at_least,
    summary_lines,
    write_findings,
)
from detector.nightly.files import iso, json_bytes
from detector.nightly.state import Night
from detector.nightly.summary import waiting_notes
from detector.safe_text import for_terminal


def _day_findings(night: Night, day: str) -> pl.DataFrame:
    parts = sorted(night.layout.findings.glob(f"day={day}/part-*.parquet"))
    if not parts:
        return empty_findings()
    # The later job's finding wins: it saw the window with more of its events.
    merged = (pl.concat([pl.read_parquet(p).with_columns(_seq=pl.lit(i)) for i, p in enumerate(parts)])
              .sort("_seq").unique(subset="finding_id", keep="last", maintain_order=True).drop("_seq"))
    return rank(severity_at_least(merged, night.config.min_severity))

def write_day_report(night: Night, day: str) -> None:
    out = night.config.out
    out.mkdir(parents=True, exist_ok=True)
    for leftover in [*out.glob(".*.nightly-*"), *out.glob(".*.old-*")]:
        shutil.rmtree(leftover) if leftover.is_dir() and not leftover.is_symlink() else leftover.unlink()
    findings = _day_findings(night, day)
    tag = night.summary.run_id
    staging = out / f".{day}.nightly-{tag}"
    staging.mkdir()
    write_findings(findings, staging)
    alert = night.summary.alert_severity
    counts = dict(findings.get_column("severity").cast(pl.String).value_counts().iter_rows())
    by_severity = {s: int(counts.get(s, 0)) for s in SEVERITIES}
    alerts = severity_at_least(findings, alert).height
    report = {"date": day, "generated": iso(night.now), "run_id": tag, "model_id": night.summary.model_id,
              "findings": by_severity, "alert_severity": alert, "alerts": alerts,
              "run": night.summary.to_dict()}
    (staging / "summary.json").write_bytes(json_bytes(report))
    (staging / "report.txt").write_text(_report_text(night, day, findings, by_severity, alerts), encoding="utf-8")

    # The readable report, rendered into the staging folder so it is swapped in with the rest.
    from detector.report import write_report

    write_report(findings, staging / "report.html", title=f"ami-detector nightly report {day}",
                 generated_at=night.now, summary={"date": day, "model": night.summary.model_id or "-",
                                                 f"findings at {alert} or above": alerts},
                 display_tz=(night.config.detector or Config()).report.display_tz)

    for path in staging.iterdir():
        fsync_file(path)
    fsync_dir(staging)
    final = out / day
    old = out / f".{day}.old-{tag}"
    if final.exists():
        os.rename(final, old)
    night.hook("report")
    os.rename(staging, final)
    fsync_dir(out)
    if old.exists():
        shutil.rmtree(old)
    night.summary.report = str(final)
    night.hook("latest")
    link = out / f".latest.nightly-{tag}"
    link.unlink(missing_ok=True)
    os.symlink(day, link)
    os.replace(link, out / "latest")
    fsync_dir(out)

def _report_text(night: Night, day: str, findings: pl.DataFrame, by_severity: dict[str, int], alerts: int) -> str:
    s = night.summary
    lines = [
        f"ami-detector nightly report {day}",
        f"generated {iso(night.now)} by run {s.run_id}; model {s.model_id or '(none yet)'}",
        (f"this run: {s.files['new']} new files, {s.events:,} events, {s.rejects:,} rejects, "
         f"{s.windows_scored:,} windows scored"),
        f"findings of {day}: {findings.height} ("
        + ", ".join(f"{k} {v}" for k, v in reversed(by_severity.items())) + f"); "
        f"{alerts} at {s.alert_severity} or above need a human",
        "",
    ]
    if findings.height:
        lines += summary_lines(findings, limit=50) + [""]
    notes = list(s.notes)
    notes += waiting_notes(s)
    notes += [f"unreadable: {for_terminal(u['path'])}: {for_terminal(u['reason'])}" for u in s.unreadable]
    if notes:
        lines += ["notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"

