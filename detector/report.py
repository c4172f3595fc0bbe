"""The HTML report: one self-contained file an analyst can mail to a manager or open offline.

Summary, the findings ranked with their reasons, a timeline per finding and the evidence lines.
No script, no external URL (no CDN, no web font, no remote image): CSS is inline, timelines are
inline SVG drawn here, and a Content-Security-Policy forbids scripts even if something slipped
through. Every value that came from a log (entity ids, reasons, feature names, evidence locations,
raw lines, setting values) is attacker-controlled: each passes through :func:`_esc`, which makes
control and bidi characters visible and HTML-escapes the rest, quotes included.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import polars as pl

from detector.api import (
    CATEGORY_COLORS,
    CONTEXT,
    Findings,
    timeline_counts,
    entity_timeline,
    escape_html,
    events_at,
    evidence_locations,
    read_raw_lines,
)
from detector.errors import InputError
from detector.features import FEATURE_DESCRIPTIONS
from detector.findings import FINDINGS_SCHEMA, SEVERITIES, atomic_write, conform, rank
from detector.schema import CATEGORIES

__all__ = ["CSP", "render_report", "write_report"]

CSP: Final = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; "
              "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

_CSS: Final = """
:root{--fg:#1b1f24;--muted:#5b6470;--line:#d7dce2;--bg:#fff;--soft:#f5f7f9}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;max-width:1180px;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:0}
.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--soft);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.t{white-space:nowrap}
.facts td:first-child{color:var(--muted);width:180px}
.counts{display:flex;gap:12px;margin:12px 0}
.count{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:110px}
.count b{display:block;font-size:22px}
.sev{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;font-weight:600;color:#fff}
.sev-critical{background:#7f0000}.sev-high{background:#c62828}.sev-medium{background:#ef6c00}
.sev-low{background:#607d8b}.sev-unknown{background:#999}
.finding{border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin:16px 0;page-break-inside:avoid}
.finding header{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap}
.finding ul{margin:8px 0 10px 18px;padding:0}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre.raw{margin:0;white-space:pre-wrap;word-break:break-all;background:var(--soft);padding:4px 6px;border-radius:4px}
.legend{display:flex;flex-wrap:wrap;gap:10px;font-size:12px;color:var(--muted);margin:2px 0 8px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
details summary{cursor:pointer;color:var(--muted);margin:6px 0}
svg{display:block;max-width:100%;height:auto}
a{color:#0b57d0;text-decoration:none}
@media print{body{padding:0}a{color:inherit}}
"""


_esc = escape_html


def _anchor(finding_id: object) -> str:
    # Finding ids are hex digests, but a findings file may have been edited: keep the id safe.
    return "f-" + re.sub(r"[^0-9A-Za-z_-]", "_", str(finding_id))[:64]


def _sev(severity: object) -> str:
    name = str(severity)
    css = name if name in SEVERITIES else "unknown"
    return f'<span class="sev sev-{css}">{_esc(name)}</span>'


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def _num(value: Any, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


# ---- timeline SVG -----------------------------------------------------------------------------------


def timeline_svg(table: pl.DataFrame, *, width: int = 760, height: int = 150) -> str:
    """A stacked bar chart of an :func:`~detector.api.entity_timeline` table as inline SVG.

    Bars are hourly (or whatever the table's buckets are) event counts per category; buckets that
    overlap a finding window are shaded. Each bar has a ``<title>`` tooltip; no script.
    """
    if table.height == 0:
        return '<p class="muted">no events in this span</p>'
    left, right, top, bottom = 40, 8, 8, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    n = table.height
    step = plot_w / n
    peak = max(1, int(table.get_column("total").max() or 0))  # type: ignore[arg-type]
    cats = [c for c in CATEGORIES if c in table.columns]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="events per bucket">']
    for i, row in enumerate(table.iter_rows(named=True)):
        x = left + i * step
        if row["flagged"]:
            parts.append(f'<rect x="{x:.1f}" y="{top}" width="{step:.1f}" height="{plot_h}" fill="#d62728" '
                         f'fill-opacity="0.15"/><rect x="{x:.1f}" y="{top + plot_h + 1}" width="{step:.1f}" '
                         f'height="4" fill="#d62728"/>')
        y = top + plot_h
        tip = [f"{row['time']:%Y-%m-%d %H:%M} UTC: {row['total']} events"]
        for cat in cats:
            count = row[cat]
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(f'<rect x="{x + step * 0.1:.1f}" y="{y:.1f}" width="{max(step * 0.8, 0.5):.1f}" '
                         f'height="{h:.1f}" fill="{CATEGORY_COLORS[cat]}"/>')
            tip.append(f"{cat} {count}")
        parts.append(f'<rect x="{x:.1f}" y="{top}" width="{step:.1f}" height="{plot_h}" fill="transparent">'
                     f'<title>{html.escape(", ".join(tip))}</title></rect>')
    axis_y = top + plot_h
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" stroke="#888"/>')
    parts.append(f'<text x="{left - 4}" y="{top + 10}" font-size="10" text-anchor="end" fill="#555">{peak}</text>')
    parts.append(f'<text x="{left - 4}" y="{axis_y}" font-size="10" text-anchor="end" fill="#555">0</text>')
    times = table.get_column("time").to_list()
    for i in sorted({0, n // 2, n - 1}):
        anchor = "start" if i == 0 else ("end" if i == n - 1 else "middle")
        x = left + i * step + (step if i == n - 1 else 0)
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" font-size="10" text-anchor="{anchor}" fill="#555">'
                     f'{times[i]:%m-%d %H:%M}</text>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{CATEGORY_COLORS[c]}"></i>{c}</span>' for c in cats)
    return "".join(parts) + f'<div class="legend">{legend}<span><i style="background:#d62728;opacity:.3"></i>' \
                            f"finding window</span></div>"


# ---- the report --------------------------------------------------------------------------------------


def _evidence_rows(row: Mapping[str, Any], events: pl.DataFrame | None, raw: pl.DataFrame, limit: int) -> str:
    where = evidence_locations(row["evidence"] or [])
    shown = where.head(limit)
    lines = shown.join(raw, on=["raw_file", "raw_line"], how="left", maintain_order="left")
    if events is not None and events.height:
        cols = ["raw_file", "raw_line", "time", "source_format", "account", "src_ip", "action", "outcome",
                "target_id", "old_value", "new_value"]
        lines = lines.join(events.select(cols).unique(["raw_file", "raw_line"]), on=["raw_file", "raw_line"],
                           how="left", maintain_order="left")
    body = []
    for r in lines.iter_rows(named=True):
        change = ""
        if r.get("old_value") is not None or r.get("new_value") is not None:
            change = f"{_esc(r.get('old_value'))} &rarr; {_esc(r.get('new_value'))}"
        body.append(
            f"<tr><td class='t'>{_when(r.get('time'))}</td><td>{_esc(r.get('source_format'))}</td><td>{_esc(r.get('account'))}</td>"
            f"<td>{_esc(r.get('src_ip'))}</td><td>{_esc(r.get('action'))}</td><td>{_esc(r.get('outcome'))}</td>"
            f"<td>{_esc(r.get('target_id'))}</td><td>{change}</td>"
            f"<td><code>{_esc(r['raw_file'])}:{int(r['raw_line'])}</code></td></tr>")
        text = r.get("raw")
        raw_html = (_esc(text) + (" &hellip;" if r.get("truncated") else "")) if text is not None else \
            '<span class="muted">(raw line not available: the file has moved or changed)</span>'
        body.append(f'<tr><td colspan="9"><pre class="raw">{raw_html}</pre></td></tr>')
    more = where.height - shown.height
    tail = f'<p class="muted">&hellip; and {more} more evidence lines in findings.jsonl</p>' if more > 0 else ""
    return ("<table><tr><th>time (UTC)</th><th>format</th><th>account</th><th>source</th><th>action</th>"
            "<th>outcome</th><th>target</th><th>change</th><th>location</th></tr>" + "".join(body) + "</table>"
            + tail)


def _top_features(row: Mapping[str, Any]) -> str:
    items = row["top_features"] or []
    if not items:
        return ""
    body = "".join(
        f"<tr><td><code>{_esc(t.get('feature'))}</code></td><td>{_esc(FEATURE_DESCRIPTIONS.get(str(t.get('feature')), ''))}"
        f"</td><td class='num'>{_num(t.get('value'))}</td><td class='num'>{_num(t.get('baseline'))}</td>"
        f"<td class='num'>{_num(t.get('contribution'))}</td></tr>" for t in items)
    return ("<details><summary>model features</summary><table><tr><th>feature</th><th>meaning</th>"
            "<th class='num'>value</th><th class='num'>baseline</th><th class='num'>contribution</th></tr>"
            f"{body}</table></details>")


def _finding_section(rank_no: int, row: Mapping[str, Any], events: pl.DataFrame | None, counts: pl.DataFrame | None,
                     raw: pl.DataFrame, around: timedelta, evidence_limit: int) -> str:
    reasons = "".join(f"<li>{_esc(r)}</li>" for r in (row["reasons"] or []))
    timeline = ""
    if counts is not None:
        table = entity_timeline(counts, row["entity_kind"], row["entity_id"], row["window_start"] - around,
                                row["window_end"] + around, flagged=[(row["window_start"], row["window_end"])])
        timeline = f"<h4>activity of {_esc(row['entity_id'])}, {int(around.total_seconds() // 3600)} h either side " \
                   f"(UTC)</h4>{timeline_svg(table)}"
    return (
        f'<section class="finding" id="{_anchor(row["finding_id"])}"><header>'
        f"<h3>#{rank_no} {_esc(row['entity_kind'])} {_esc(row['entity_id'])}</h3>{_sev(row['severity'])}"
        f"<span>score {_num(row['score'], 4)}</span><span class='muted'>{_when(row['window_start'])} &ndash; "
        f"{_when(row['window_end'])} UTC &middot; {int(row['event_count'] or 0)} events &middot; "
        f"{_esc(row['detector'])} &middot; id <code>{_esc(row['finding_id'])}</code></span></header>"
        f"<ul>{reasons}</ul>{_top_features(row)}{timeline}"
        f"<h4>evidence</h4>{_evidence_rows(row, events, raw, evidence_limit)}"
        f'<p><a href="#top">&uarr; back to the list</a></p></section>')


def render_report(findings: pl.DataFrame | Findings, *, events: pl.DataFrame | pl.LazyFrame | None = None,
                  timelines: pl.DataFrame | None = None, title: str = "ami-detector findings", generated_at: datetime | None = None,
                  summary: Mapping[str, object] | None = None, detail_limit: int = 100, evidence_limit: int = 25,
                  table_limit: int = 2000, around: timedelta = CONTEXT) -> str:
    """The findings as one self-contained HTML page.

    Parameters
    ----------
    findings
        Findings in the contract schema, or a :class:`~detector.api.Findings` (whose events and
        timelines are then used unless given here).
    events
        Events to show beside the evidence and, without *timelines*, to draw timelines from: the
        scanned events, or the cited events of ``evidence.parquet``. A ``raw`` column, if present,
        supplies the raw lines; otherwise they are read from the log files by line number.
    timelines
        Hourly activity in :data:`~detector.api.TIMELINE_SCHEMA` (``timeline.parquet``). Without it
        or *events* there is no timeline.
    title
        The page title (escaped).
    generated_at
        Shown in the header; now (UTC) by default.
    summary
        Extra facts for the header (label -> value), in order; escaped.
    detail_limit
        Findings beyond this rank appear in the ranked table only.
    evidence_limit
        Evidence lines shown per finding (the rest are in ``findings.jsonl``).
    table_limit
        Rows of the ranked table (at least *detail_limit*); the findings beyond are counted in the
        header and are in ``findings.jsonl``. A scan of months of a large network can have hundreds
        of thousands of ``low`` findings: a page listing them all would help nobody and cost
        memory and megabytes.
    around
        How far either side of a finding's window its timeline reaches.

    Returns
    -------
    str
        HTML5 with inline CSS and SVG, no script and no external reference.
    """
    if isinstance(findings, Findings):
        events = findings.events if events is None else events
        timelines = findings.timelines if timelines is None else timelines
        summary = {**findings.summary(), **(summary or {})}
        findings = findings.df
    frame = rank(conform(findings))
    generated_at = generated_at or datetime.now(UTC)
    detailed = frame.head(max(detail_limit, 0))

    counts = None
    if detailed.height and (timelines is not None or events is not None):
        counts = timeline_counts(timelines if timelines is not None else events, detailed,  # type: ignore[arg-type]
                                 around=around)
    cited = evidence_locations(detailed.get_column("evidence").list.head(evidence_limit).explode().drop_nulls())
    behind = None
    if events is not None and cited.height:
        behind = events_at(events, cited)
    if behind is not None and "raw" in behind.columns:
        raw = cited.join(behind.select("raw_file", "raw_line", "raw").unique(["raw_file", "raw_line"]),
                         on=["raw_file", "raw_line"], how="left").with_columns(truncated=pl.lit(False))
        missing = raw.filter(pl.col("raw").is_null()).select("raw_file", "raw_line")
        if missing.height:
            raw = pl.concat([raw.filter(pl.col("raw").is_not_null()), read_raw_lines(missing)])
    else:
        raw = read_raw_lines(cited)

    by_severity = dict(frame.get_column("severity").cast(pl.String).value_counts().iter_rows())
    boxes = "".join(f'<div class="count">{_sev(s)}<b>{by_severity.get(s, 0)}</b></div>' for s in reversed(SEVERITIES))
    facts: dict[str, object] = {"generated": f"{generated_at:%Y-%m-%d %H:%M} UTC", "findings": f"{frame.height:,}"}
    if frame.height:
        facts["windows"] = (f"{_when(frame.get_column('window_start').min())} to "  # type: ignore[arg-type]
                            f"{_when(frame.get_column('window_end').max())} UTC")  # type: ignore[arg-type]
        facts["entities"] = f"{frame.select('entity_kind', 'entity_id').n_unique():,}"
        if not (summary and "model" in summary):
            facts["model"] = ", ".join(frame.get_column("model_id").drop_nulls().unique().sort().to_list()) or "?"
    facts.update(summary or {})
    fact_rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in facts.items())

    rows = []
    for i, r in enumerate(frame.head(max(table_limit, detail_limit, 0)).iter_rows(named=True), start=1):
        first = r["reasons"][0] if r["reasons"] else ""
        label = _esc(r["entity_id"])
        link = f'<a href="#{_anchor(r["finding_id"])}">{label}</a>' if i <= detailed.height else label
        rows.append(f"<tr><td class='num'>{i}</td><td>{_sev(r['severity'])}</td><td class='num'>{_num(r['score'], 4)}"
                    f"</td><td>{_esc(r['entity_kind'])}</td><td>{link}</td><td class='t'>{_when(r['window_start'])}</td>"
                    f"<td class='num'>{int(r['event_count'] or 0)}</td><td>{_esc(first)}</td></tr>")
    table = ("<table><tr><th class='num'>#</th><th>severity</th><th class='num'>score</th><th>kind</th>"
             "<th>entity</th><th>window (UTC)</th><th class='num'>events</th><th>reason</th></tr>"
             + "".join(rows) + "</table>") if rows else "<p>No findings.</p>"
    sections = "".join(_finding_section(i, r, behind, counts, raw, around, evidence_limit)
                       for i, r in enumerate(detailed.iter_rows(named=True), start=1))
    beyond = frame.height - detailed.height
    unlisted = frame.height - len(rows)
    beyond_note = (f'<p class="muted">Details are shown for the first {detailed.height} findings; the other '
                   f"{beyond:,} are " + ("in the table above and " if not unlisted else "")
                   + "in findings.jsonl.</p>") if beyond > 0 else ""
    if unlisted:
        table += (f'<p class="muted">The table lists the first {len(rows):,} findings by score; the other '
                  f"{unlisted:,} (lower scores) are in findings.jsonl and findings.parquet.</p>")
    about = ("Scores read as &ldquo;rarer than this share of the baseline&rsquo;s windows&rdquo;. Every finding "
             "leads back to raw log lines (file:line). All log content in this page is shown as text; "
             "this page runs no script and loads nothing from the network.")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1 id="top">{_esc(title)}</h1><p class="muted">{about}</p>'
        f'<div class="counts">{boxes}</div><table class="facts">{fact_rows}</table>'
        f"<h2>Findings, most anomalous first</h2>{table}"
        f"<h2>Details</h2>{sections or '<p>No findings.</p>'}{beyond_note}"
        "</body></html>\n")


def write_report(findings: str | Path | pl.DataFrame | Findings, out_path: str | Path, *,
                 events: pl.DataFrame | pl.LazyFrame | None = None, timelines: pl.DataFrame | None = None,
                 title: str | None = None,
                 generated_at: datetime | None = None, summary: Mapping[str, object] | None = None,
                 detail_limit: int = 100, evidence_limit: int = 25) -> Path:
    """Render the report of *findings* and write it to *out_path* atomically.

    Parameters
    ----------
    findings
        A findings directory (``findings.parquet``, with ``evidence.parquet`` and
        ``timeline.parquet`` when present), a ``findings.parquet`` file, a findings DataFrame, or a
        :class:`~detector.api.Findings`.
    out_path
        The HTML file to write; it appears only once complete.
    events, timelines, title, generated_at, summary, detail_limit, evidence_limit
        As for :func:`render_report`.

    Returns
    -------
    pathlib.Path
        *out_path*.

    Raises
    ------
    InputError
        When *findings* is a path that holds no readable findings table.
    """
    if isinstance(findings, (str, Path)):
        source = Path(findings)
        if not source.exists():
            raise InputError("no such findings directory or file", source=(str(source), None))
        findings = Findings.read(source)
        title = title or f"ami-detector findings: {source.resolve().name}"
    text = render_report(findings, events=events, timelines=timelines, title=title or "ami-detector findings", generated_at=generated_at,
                         summary=summary, detail_limit=detail_limit, evidence_limit=evidence_limit)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out
