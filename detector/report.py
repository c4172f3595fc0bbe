"""The HTML report: one self-contained file an analyst can mail to a manager or open offline.

It leads with incidents (related findings grouped, severity first, then score), each with a one-line
summary, its security signals, an activity timeline of its entities, the hunts' call-outs that touch
it, and for every finding at medium or above its reasons, model features (in counts and days, not
the model's log scale) and evidence lines. Lower findings are listed compactly. A small chart shows
the findings over time. Every time is shown in a display zone (``--display-tz``), with UTC in its
tooltip. The page fits a 1,280 px screen: wide evidence scrolls inside its card.

No script, no external URL (no CDN, no web font, no remote image): CSS is inline, charts are
inline SVG drawn here, and a Content-Security-Policy forbids scripts even if something slipped
through. Every value that came from a log (entity ids, reasons, signals, feature names, evidence
locations, raw lines, setting values) is attacker-controlled: each passes through :func:`_esc`,
which makes control and bidi characters visible and HTML-escapes the rest, quotes included.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

import polars as pl

from detector.atomic import atomic_write
from detector.errors import InputError
from detector.evidence import events_at, evidence_location_columns, evidence_locations, read_raw_lines
from detector.features import FEATURE_DESCRIPTIONS
from detector.findings import FINDINGS_SCHEMA, SEVERITIES
from detector.report_data import CHART_BUCKETS, DisplayZone, activity_tables, bucket_for, feature_view, prepare
from detector.safe_text import escape_html
from detector.saved import INCIDENTS_FILE, read_saved
from detector.schema import CATEGORIES, UTC_US
from detector.timelines import CATEGORY_COLORS, CONTEXT, timeline_counts

__all__ = ["CSP", "INCIDENTS_FILE", "findings_chart_svg", "render_report", "timeline_svg", "write_report"]


CSP: Final = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; "
              "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

SEVERITY_COLORS: Final = {"critical": "#7f0000", "high": "#c62828", "medium": "#ef6c00", "low": "#607d8b"}

_CSS: Final = """
:root{--fg:#1b1f24;--muted:#5b6470;--line:#d7dce2;--bg:#fff;--soft:#f5f7f9}
*{box-sizing:border-box}
html{overflow-x:hidden}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;max-width:1200px;padding:20px 24px;overflow-wrap:anywhere}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:26px 0 8px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:0;overflow-wrap:anywhere}h4{font-size:13px;margin:12px 0 4px;color:var(--muted);
text-transform:uppercase;letter-spacing:.03em}
.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}
th{background:var(--soft);font-weight:600;overflow-wrap:normal}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.t,th.t{white-space:nowrap;overflow-wrap:normal}
.facts{width:auto}.facts td:first-child{color:var(--muted);width:170px}
.top{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
.counts{display:flex;gap:10px;margin:12px 0;flex-wrap:wrap}
.count{border:1px solid var(--line);border-radius:6px;padding:6px 12px;min-width:104px}
.count b{display:block;font-size:22px}.count small{color:var(--muted)}
.sev{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;font-weight:600;color:#fff;white-space:nowrap}
.sev-critical{background:#7f0000}.sev-high{background:#c62828}.sev-medium{background:#ef6c00}
.sev-low{background:#607d8b}.sev-unknown{background:#999}
.incident{border:1px solid var(--line);border-left:6px solid #607d8b;border-radius:8px;padding:12px 16px;
margin:16px 0;min-width:0}
.incident.critical{border-left-color:#7f0000}.incident.high{border-left-color:#c62828}
.incident.medium{border-left-color:#ef6c00}
.incident>header{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap}
.incident>header>*,details.finding>summary>*{min-width:0;max-width:100%}
.top>*{min-width:0}
.summary{font-size:15px;margin:6px 0 2px;overflow-wrap:anywhere}
ul{margin:4px 0 8px 18px;padding:0}li{overflow-wrap:anywhere}
ul.signals{list-style:none;margin-left:0}ul.signals li{margin:2px 0}
details.finding{border-top:1px solid var(--line);padding:6px 0}
details.finding>summary{cursor:pointer;display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}
details.finding>summary::before{content:"\\25B8";color:var(--muted)}
details.finding[open]>summary::before{content:"\\25BE"}
details.finding>summary::-webkit-details-marker{display:none}
.callout{background:#fff8e1;border:1px solid #f3d27a;border-radius:6px;padding:6px 10px;margin:6px 0}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
pre.raw{margin:0;white-space:pre-wrap;word-break:break-all;background:var(--soft);padding:4px 6px;border-radius:4px}
.scroll{overflow:auto;max-height:380px;max-width:100%;border:1px solid var(--line);border-radius:4px}
.scroll table{font-size:13px}
table.evidence{table-layout:fixed;min-width:880px}.scroll.tall{max-height:none}
td.lead{min-width:170px}
details.low>summary,details.model>summary{cursor:pointer;color:var(--muted);margin:6px 0}
.legend{display:flex;flex-wrap:wrap;gap:10px;font-size:12px;color:var(--muted);margin:2px 0 8px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg{display:block;max-width:100%;height:auto}
time[title]{text-decoration:underline dotted #aab}
a{color:#0b57d0;text-decoration:none}
@media print{body{padding:0}a{color:inherit}.scroll{max-height:none;overflow:visible}}
"""


_esc = escape_html


def _anchor(prefix: str, key: object) -> str:
    # Ids are hex digests, but a findings file may have been edited: keep the id safe.
    return prefix + re.sub(r"[^0-9A-Za-z_-]", "_", str(key))[:64]


def _sev(severity: object) -> str:
    name = str(severity)
    css = name if name in SEVERITIES else "unknown"
    return f'<span class="sev sev-{css}">{_esc(name)}</span>'


def _num(value: Any, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _t(moment: datetime | None, zone: DisplayZone, *, seconds: bool = False) -> str:
    """A time in the display zone, UTC in its tooltip (``<time>``, no script)."""
    if moment is None:
        return ""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # naive times are UTC, never local
    utc = DisplayZone.utc(moment, seconds=seconds)
    iso = f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"
    if zone.is_utc:
        return f'<time datetime="{iso}">{utc}</time>'
    return f'<time datetime="{iso}" title="{utc}">{_esc(zone.text(moment, seconds=seconds))}</time>'


def _span(lo: datetime | None, hi: datetime | None, zone: DisplayZone) -> str:
    return f"{_t(lo, zone)} &ndash; {_t(hi, zone)}"


def _clip(value: object, most: int = 120) -> str:
    """Escaped text cut to *most* characters where a line must stay short (the full text is in the details)."""
    text = "" if value is None else str(value)
    if len(text) <= most:
        return _esc(text)
    return f"{_esc(text[:most])}&hellip; <span class='muted'>({len(text) - most:,} more characters)</span>"


def _few(values: Sequence[object], limit: int = 12) -> str:
    shown = ", ".join(_esc(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit:,} more" if len(values) > limit else "")


# ---- charts (inline SVG) ------------------------------------------------------------------------------


def _tick_label(every: timedelta) -> Callable[[datetime], str]:
    """How an axis labels a bucket start of buckets *every* long."""
    return (lambda t: f"{t:%m-%d}") if every >= timedelta(days=1) else (lambda t: f"{t:%m-%d %H:%M}")


def _stacked_column(parts: list[str], tip: list[str], x: float, step: float, top: int, plot_h: int, peak: int,
                    stacks: list[tuple[str, int, str]]) -> None:
    """One column of a stacked bar chart: a segment per ``(label, count, colour)`` from the baseline up,
    each named in the column's tooltip *tip*, then a transparent cover the width of the column that
    carries the tooltip."""
    y = float(top + plot_h)
    for label, count, colour in stacks:
        if not count:
            continue
        h = plot_h * count / peak
        y -= h
        parts.append(f'<rect x="{x + step * 0.1:.1f}" y="{y:.1f}" width="{max(step * 0.8, 0.5):.1f}" '
                     f'height="{h:.1f}" fill="{colour}"/>')
        tip.append(f"{label} {count}")
    parts.append(f'<rect x="{x:.1f}" y="{top}" width="{step:.1f}" height="{plot_h}" fill="transparent">'
                 f'<title>{_esc(", ".join(tip))}</title></rect>')


def _axis(parts: list[str], n: int, label: Callable[[int], str], left: float, step: float, height: int, peak: int,
          top: int, axis_y: float, right_x: float) -> None:
    """The axes of a chart of *n* buckets, the few buckets it marks named by ``label(i)`` (a time zone
    conversion and a format each, so only for those: a report draws thousands of buckets)."""
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{right_x}" y2="{axis_y}" stroke="#888"/>')
    parts.append(f'<text x="{left - 4}" y="{top + 10}" font-size="10" text-anchor="end" fill="#555">{peak}</text>')
    parts.append(f'<text x="{left - 4}" y="{axis_y}" font-size="10" text-anchor="end" fill="#555">0</text>')
    for i in sorted({0, n // 4, n // 2, 3 * n // 4, n - 1} if n > 8 else {0, n - 1}):
        anchor = "start" if i == 0 else ("end" if i == n - 1 else "middle")
        x = left + i * step + (step if i == n - 1 and i > 0 else 0)
        parts.append(f'<text x="{x:.1f}" y="{height - 6}" font-size="10" text-anchor="{anchor}" fill="#555">'
                     f"{_esc(label(i))}</text>")


def timeline_svg(table: pl.DataFrame, *, zone: DisplayZone | None = None, width: int = 1000,
                 height: int = 150) -> str:
    """A stacked bar chart of an :func:`~detector.timelines.entity_timeline` table as inline SVG.

    Bars are event counts per bucket and category; buckets that overlap a finding window are
    shaded, and buckets outside the recorded context (a ``covered`` column that is false) are
    greyed. Each bar has a ``<title>`` tooltip (display zone and UTC); no script.
    """
    zone = zone or DisplayZone()
    if table.height == 0:
        return '<p class="muted">no events in this span</p>'
    left, right, top, bottom = 40, 8, 8, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    n = table.height
    step = plot_w / n
    times = table.get_column("time").to_list()
    every = (times[1] - times[0]) if n > 1 else timedelta(hours=1)
    peak = max(1, int(table.get_column("total").max() or 0))  # type: ignore[arg-type]
    cats = [c for c in CATEGORIES if c in table.columns]
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="events per bucket">')]
    has_cover = "covered" in table.columns
    for i, row in enumerate(table.iter_rows(named=True)):
        x = left + i * step
        if has_cover and not row["covered"]:
            parts.append(f'<rect x="{x:.1f}" y="{top}" width="{step:.1f}" height="{plot_h}" fill="#eceff1"/>')
        if row["flagged"]:
            parts.append(f'<rect x="{x:.1f}" y="{top}" width="{step:.1f}" height="{plot_h}" fill="#d62728" '
                         f'fill-opacity="0.15"/><rect x="{x:.1f}" y="{top + plot_h + 1}" width="{step:.1f}" '
                         f'height="4" fill="#d62728"/>')
        when = row["time"]
        tip = [f"{zone.text(when)}" + ("" if zone.is_utc else f" ({DisplayZone.utc(when)})")
               + f": {row['total']} events"]
        if has_cover and not row["covered"]:
            tip.append("not recorded this far from a finding")
        _stacked_column(parts, tip, x, step, top, plot_h, peak,
                        [(cat, row[cat], CATEGORY_COLORS[cat]) for cat in cats])
    written = _tick_label(every)
    _axis(parts, n, lambda i: written(zone.local(times[i])), left, step, height, peak, top, top + plot_h,
          width - right)
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{CATEGORY_COLORS[c]}"></i>{c}</span>' for c in cats)
    grey = ('<span><i style="background:#eceff1;border:1px solid #ccc"></i>not recorded (over '
            f'{int(CONTEXT.total_seconds() // 3600)} h from a finding)</span>'
            if has_cover and not all(table.get_column("covered")) else "")
    return "".join(parts) + f'<div class="legend">{legend}<span><i style="background:#d62728;opacity:.3"></i>' \
                            f"finding window</span>{grey}</div>"


def findings_chart_svg(findings: pl.DataFrame, *, zone: DisplayZone | None = None, width: int = 1000,
                       height: int = 130) -> str:
    """Findings per day (or hour, week...) by severity, in the display zone, as inline SVG."""
    zone = zone or DisplayZone()
    if findings.height == 0:
        return ""
    lo, hi = findings.select(lo=pl.col("window_start").min(), hi=pl.col("window_start").max()).row(0)
    every, length = bucket_for(hi - lo + timedelta(hours=1), 120, CHART_BUCKETS)
    # Buckets of wall-clock time in the display zone (a day is a local day, also across DST).
    local = pl.col("window_start").dt.convert_time_zone(zone.name).dt.replace_time_zone(None).dt.truncate(every)
    counts = (findings.group_by(bucket=local, severity=pl.col("severity").cast(pl.String)).agg(n=pl.len())
              .pivot("severity", index="bucket", values="n"))
    start, end = counts.select(start=pl.col("bucket").min(), end=pl.col("bucket").max()).row(0)
    buckets = pl.DataFrame({"bucket": pl.datetime_range(start, end, every, eager=True, time_unit="us")})
    present = [s for s in SEVERITIES if s in counts.columns]
    table = buckets.join(counts, on="bucket", how="left").with_columns(
        [pl.col(s).fill_null(0) for s in present]).sort("bucket")
    table = table.with_columns(total=pl.sum_horizontal(present))
    left, right, top, bottom = 40, 8, 8, 24
    n = table.height
    # At most 40 px a bucket: a scan of one day does not draw one bar across the page.
    width = min(width, left + right + 40 * n + 80)
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / n
    peak = max(1, int(table.get_column("total").max() or 0))  # type: ignore[arg-type]
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img" aria-label="findings per {every} by severity">')]
    for i, row in enumerate(table.iter_rows(named=True)):
        x = left + i * step
        tip = [(f"{row['bucket']:%Y-%m-%d %H:%M} {'UTC' if zone.is_utc else zone.name}, {every}: "
               f"{row['total']} findings")]
        _stacked_column(parts, tip, x, step, top, plot_h, peak,
                        [(sev, row[sev], SEVERITY_COLORS[sev]) for sev in present])
    starts, written = table.get_column("bucket").to_list(), _tick_label(length)
    _axis(parts, len(starts), lambda i: written(starts[i]), left, step, height, peak, top,
          top + plot_h, width - right)
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{SEVERITY_COLORS[s]}"></i>{s}</span>' for s in reversed(present))
    zone_note = "UTC" if zone.is_utc else _esc(zone.name)
    return "".join(parts) + f'<div class="legend">{legend}<span>findings per {every} ({zone_note}), ' \
                            f"by the start of their window</span></div>"


# ---- one finding ----------------------------------------------------------------------------------------

_EVENT_COLUMNS: Final = ("raw_file", "raw_line", "time", "source_format", "account", "src_ip", "action", "outcome",
                         "target_id", "old_value", "new_value")


# Fixed column widths: a long value (a raw line, an attacker's 4 KiB account name) wraps inside its
# cell instead of stretching its column or the page.
_EVIDENCE_COLS: Final = "<colgroup>" + "".join(
    f'<col style="width:{w}%">' for w in (16, 10, 11, 10, 10, 8, 10, 10, 15)) + "</colgroup>"


def _cited_lines(events: pl.DataFrame | None, raw: pl.DataFrame) -> pl.DataFrame:
    """Every cited line's raw text (*raw*) and, when *events* are at hand, its event's columns: joined
    once for the report; each finding's evidence table looks its own lines up in it."""
    if events is None or not events.height:
        return raw
    cols = [c for c in _EVENT_COLUMNS if c in events.columns]
    return raw.join(events.select(cols).unique(["raw_file", "raw_line"]), on=["raw_file", "raw_line"], how="left",
                    maintain_order="left")


@dataclass(frozen=True)
class _Evidence:
    """The evidence lines each detailed finding shows (its first *limit* distinct locations, each with its
    raw text and event) and how many it has, found for every finding at once."""

    shown: dict[str, pl.DataFrame]
    totals: dict[str, int]
    empty: pl.DataFrame

    @classmethod
    def of(cls, findings: pl.DataFrame, cited: pl.DataFrame, limit: int) -> _Evidence:
        located = (findings.select("finding_id", "evidence").unique("finding_id", maintain_order=True)
                   .explode("evidence")
                   .select("finding_id", **evidence_location_columns(pl.col("evidence").cast(pl.String)))
                   .drop_nulls().unique(maintain_order=True))
        lines = (located.filter(pl.int_range(pl.len()).over("finding_id") < limit)
                 .join(cited, on=["raw_file", "raw_line"], how="left", maintain_order="left"))
        totals = dict(located.group_by("finding_id").len().iter_rows())
        shown = {key: part for (key,), part in
                 lines.partition_by("finding_id", as_dict=True, include_key=False, maintain_order=True).items()}
        return cls(shown, totals, lines.drop("finding_id").clear())

    def lines(self, finding_id: str) -> tuple[pl.DataFrame, int]:
        """The lines shown of a finding, and how many it cites."""
        return self.shown.get(finding_id, self.empty), self.totals.get(finding_id, 0)


def _evidence_rows(row: Mapping[str, Any], evidence: _Evidence, zone: DisplayZone) -> str:
    lines, total = evidence.lines(row["finding_id"])
    if total == 0:
        return '<p class="muted">no evidence lines</p>'
    body = []
    for r in lines.iter_rows(named=True):
        change = ""
        if r.get("old_value") is not None or r.get("new_value") is not None:
            change = f"{_esc(r.get('old_value'))} &rarr; {_esc(r.get('new_value'))}"
        body.append(
            f"<tr><td>{_t(r.get('time'), zone, seconds=True)}</td><td>{_esc(r.get('source_format'))}</td>"
            f"<td>{_esc(r.get('account'))}</td><td>{_esc(r.get('src_ip'))}</td><td>{_esc(r.get('action'))}</td>"
            f"<td>{_esc(r.get('outcome'))}</td><td>{_esc(r.get('target_id'))}</td><td>{change}</td>"
            f"<td><code>{_esc(r['raw_file'])}:{int(r['raw_line'])}</code></td></tr>")
        text = r.get("raw")
        raw_html = (_esc(text) + (" &hellip;" if r.get("truncated") else "")) if text is not None else \
            '<span class="muted">(raw line not available: the file has moved or changed)</span>'
        body.append(f'<tr><td colspan="9"><pre class="raw">{raw_html}</pre></td></tr>')
    more = total - lines.height
    tail = f'<p class="muted">&hellip; and {more:,} more evidence lines in findings.jsonl</p>' if more > 0 else ""
    return ('<div class="scroll"><table class="evidence">' + _EVIDENCE_COLS
            + '<tr><th>time</th><th>format</th><th>account</th>'
            "<th>source</th><th>action</th><th>outcome</th><th>target</th><th>change</th><th>location</th></tr>"
            + "".join(body) + "</table></div>" + tail)


def _top_features(row: Mapping[str, Any]) -> str:
    items = row["top_features"] or []
    if not items:
        return ""
    reasons = list(row["reasons"] or [])
    body = []
    for item in items:
        view = feature_view(item, reasons)
        scale = f"<br><small class='muted'>{_esc(view.scale)}</small>" if view.scale else ""
        body.append(f"<tr><td><code>{_esc(view.feature)}</code></td>"
                    f"<td>{_esc(FEATURE_DESCRIPTIONS.get(view.feature, ''))}</td>"
                    f"<td>{_esc(view.window)}{scale}</td><td>{_esc(view.baseline)}</td>"
                    f"<td class='num'>{_num(view.contribution, 2)}</td></tr>")
    return (f"<details class='model'><summary>what the model weighed ({len(items)} feature{'s' * (len(items) != 1)}, "
            "in counts and days)</summary><div class='scroll'><table><tr><th>feature</th><th>meaning</th>"
            "<th>this window</th><th>compared with</th><th class='num'>weight</th></tr>"
            f"{''.join(body)}</table></div></details>")


def _signals(items: Sequence[Mapping[str, Any]]) -> str:
    """Security signals, each (signal, detail) once at its highest impact, highest first."""
    seen: dict[tuple[str, str], tuple[int, str]] = {}
    for s in items:
        key = (str(s.get("signal") or ""), str(s.get("detail") or ""))
        impact = str(s.get("impact") or "")
        rank = SEVERITIES.index(impact) if impact in SEVERITIES else -1
        if key[0] and rank >= seen.get(key, (-2, ""))[0]:
            seen[key] = (rank, impact)
    if not seen:
        return ""
    order = sorted(seen.items(), key=lambda kv: -kv[1][0])
    rows = "".join(f"<li>{_sev(impact)} <b>{_esc(signal)}</b>{': ' + _esc(detail) if detail else ''}</li>"
                   for (signal, detail), (_, impact) in order)
    return f'<h4>signals</h4><ul class="signals">{rows}</ul>'


def _finding_head(row: Mapping[str, Any], zone: DisplayZone) -> str:
    first = (row["reasons"] or [""])[0]
    return (f"{_sev(row['severity'])}<span class='num'>{_num(row['score'], 4)}</span>"
            f"<b>{_esc(row['entity_kind'])} {_clip(row['entity_id'])}</b>"
            f"<span class='muted'>{_span(row['window_start'], row['window_end'], zone)}</span>"
            f"<span>{_clip(first, 300)}</span>")


def _finding_block(row: Mapping[str, Any], evidence: _Evidence, zone: DisplayZone, *,
                   open_: bool, alone: bool = False) -> str:
    """A finding in detail; *alone* (the incident's only finding) without a header of its own,
    since the incident's says it all."""
    reasons = "".join(f"<li>{_esc(r)}</li>" for r in (row["reasons"] or []))
    n = int(row["event_count"] or 0)
    facts = (f"<p class='muted'>{n:,} event{'s' * (n != 1)} &middot; {_esc(row['detector'])} &middot; "
             f"finding <code>{_esc(row['finding_id'])}</code></p>")
    body = (f"{facts}<ul>{reasons}</ul>{'' if alone else _signals(row.get('signals') or [])}{_top_features(row)}"
            f"<h4>evidence</h4>{_evidence_rows(row, evidence, zone)}")
    anchor = _anchor("f-", row["finding_id"])
    if alone:
        return f'<div class="finding" id="{anchor}">{body}</div>'
    return (f'<details class="finding" id="{anchor}"{" open" if open_ else ""}>'
            f"<summary>{_finding_head(row, zone)}</summary>{body}</details>")


def _callout_block(row: Mapping[str, Any], evidence: _Evidence, zone: DisplayZone) -> str:
    reasons = "".join(f"<li>{_esc(r)}</li>" for r in (row["reasons"] or []))
    n = int(row["event_count"] or 0)
    return (f'<div class="callout" id="{_anchor("f-", row["finding_id"])}">{_sev(row["severity"])} '
            f"<b>hunt {_esc(row['detector'])}</b> &middot; {_esc(row['entity_kind'])} <b>{_clip(row['entity_id'])}</b>"
            f" &middot; <span class='muted'>{_span(row['window_start'], row['window_end'], zone)}</span>"
            f"<ul>{reasons}</ul><details><summary class='muted'>{n:,} event{'s' * (n != 1)} behind "
            f"it</summary>{_evidence_rows(row, evidence, zone)}</details></div>")


def _compact(rows: pl.DataFrame, zone: DisplayZone, *, link: bool = False) -> str:
    body = []
    for r in rows.iter_rows(named=True):
        label = _esc(r["entity_id"])
        body.append(f"<tr><td>{_sev(r['severity'])}</td><td class='num'>{_num(r['score'], 4)}</td>"
                    f"<td>{_esc(r['entity_kind'])} {label}</td><td class='t'>{_t(r['window_start'], zone)}</td>"
                    f"<td class='num'>{int(r['event_count'] or 0):,}</td>"
                    f"<td>{_clip((r['reasons'] or [''])[0], 300)}</td></tr>")
    return ("<div class='scroll'><table><tr><th>severity</th><th class='num'>score</th><th>entity</th>"
            "<th class='t'>window</th><th class='num'>events</th><th>first reason</th></tr>"
            + "".join(body) + "</table></div>")


# ---- one incident ----------------------------------------------------------------------------------------


def _at_least(severity: str) -> pl.Expr:
    return pl.col("severity").cast(pl.String).is_in(SEVERITIES[SEVERITIES.index(severity):])


def _incident_section(rank_no: int, inc: Mapping[str, Any], members: pl.DataFrame, detailed: pl.DataFrame,
                      rest: pl.DataFrame, callouts: pl.DataFrame, activity: Mapping[str, pl.DataFrame] | None,
                      evidence: _Evidence, around: timedelta, zone: DisplayZone) -> str:
    severity = str(inc["severity"])
    entities = list(inc["entities"] or [])
    facts = [_span(inc["first_seen"], inc["last_seen"], zone),
             f"{members.height:,} finding{'s' * (members.height != 1)}"]
    if len(entities) > 1:
        facts.append(f"{len(entities):,} entities")
    facts.append(f"incident <code>{_esc(inc['incident_id'])}</code>")
    parts = [(f'<section class="incident {severity if severity in SEVERITIES else ""}" '
             f'id="{_anchor("i-", inc["incident_id"])}"><header><h3>#{rank_no} {_esc(inc["lead_kind"])} '
             f'{_clip(inc["lead_entity"])}</h3>{_sev(severity)}<span>score {_num(inc["score"], 4)}</span>'
             f"<span class='muted'>{' &middot; '.join(facts)}</span></header>"
             f'<p class="summary">{_esc(inc["summary"])}</p>')]
    if str(inc["own_severity"]) != severity:
        parts.append(f"<p class='muted'>raised from {_sev(inc['own_severity'])} by a hunt call-out below</p>")
    if len(entities) > 1:
        parts.append(f"<p><span class='muted'>entities:</span> {_few(entities)}</p>")
    parts.append(_signals([s for group in members.get_column("signals").to_list() for s in (group or [])]))
    if activity is not None and members.height:
        table = activity[inc["incident_id"]]
        parts.append(f"<h4>activity of its entities, {int(around.total_seconds() // 3600)} h either side</h4>"
                     f"{timeline_svg(table, zone=zone)}")
    if callouts.height:
        parts.append(f"<h4>hunt call-outs that touch it ({callouts.height})</h4>")
        parts.extend(_callout_block(r, evidence, zone) for r in callouts.iter_rows(named=True))
    if detailed.height == 1 and members.height == 1:
        parts.append(_finding_block(detailed.row(0, named=True), evidence, zone, open_=True,
                                    alone=True))
    elif detailed.height:
        parts.append(f"<h4>findings at medium or above ({detailed.height})</h4>")
        parts.extend(_finding_block(r, evidence, zone, open_=i == 0)
                     for i, r in enumerate(detailed.iter_rows(named=True)))
    if rest.height:
        shown = rest.head(50)
        more = (f'<p class="muted">&hellip; and {rest.height - shown.height:,} more in findings.jsonl</p>'
                if rest.height > shown.height else "")
        parts.append(f"<h4>other findings of this incident ({rest.height:,}, listed compactly)</h4>"
                     f"{_compact(shown, zone)}{more}")
    parts.append('<p><a href="#top">&uarr; back to the list</a></p></section>')
    return "".join(parts)


def _plan(frame: pl.DataFrame, serious: pl.DataFrame, detail_limit: int
          ) -> tuple[list[tuple[dict[str, Any], pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]], pl.DataFrame,
                     pl.DataFrame]:
    """The incidents that get a section, in order, each with its members (its findings, and the hunt
    findings it lists), the members detailed (at medium or above, within *detail_limit* over all
    sections), the other members and the hunt call-outs that touch it; then every member of a section, and every finding
    detailed or called out. Worked out for all incidents at once, each section taking its partitions."""
    wanted = serious.head(detail_limit).get_column("incident_id")
    listed = (serious.head(detail_limit).select("incident_id", finding_id=pl.col("finding_ids")).explode("finding_id")
              .drop_nulls().unique().with_columns(_listed=pl.lit(True)))
    members = (frame.filter(pl.col("incident_id").is_in(wanted.implode()))
               .join(listed, on=["incident_id", "finding_id"], how="left", maintain_order="left")
               .filter(~pl.col("is_hunt") | pl.col("_listed").fill_null(False)).drop("_listed")
               .with_columns(_medium=_at_least("medium")))
    mediums = dict(members.group_by("incident_id").agg(pl.col("_medium").sum()).iter_rows())
    incidents, takes = [], {}
    budget = detail_limit
    for inc in serious.iter_rows(named=True):
        if budget <= 0:
            break
        takes[inc["incident_id"]] = take = min(budget, mediums.get(inc["incident_id"], 0))
        budget -= take
        incidents.append(inc)
    members = (members.filter(pl.col("incident_id").is_in(list(takes)))
               .join(pl.DataFrame({"incident_id": list(takes), "_take": list(takes.values())},
                                  schema={"incident_id": pl.String, "_take": pl.Int64}), on="incident_id",
                     how="left", maintain_order="left")
               .with_columns(_detailed=pl.col("_medium")
                             & (pl.col("_medium").cum_sum().over("incident_id") <= pl.col("_take")))
               .drop("_medium", "_take"))
    by_incident = members.drop("_detailed").partition_by("incident_id", as_dict=True, maintain_order=True,
                                                         include_key=False)
    split = members.partition_by("incident_id", "_detailed", as_dict=True, maintain_order=True, include_key=False)
    callout_ids = serious.get_column("callouts").explode().drop_nulls()
    callout_rows = frame.filter(pl.col("finding_id").is_in(callout_ids.implode()))
    empty = frame.clear().drop("incident_id")
    plan = []
    for inc in incidents:
        key = inc["incident_id"]
        callouts = (callout_rows.filter(pl.col("finding_id").is_in(inc["callouts"])) if inc["callouts"]
                    else callout_rows.clear())
        plan.append((inc, by_incident.get((key,), empty), split.get((key, True), empty), split.get((key, False), empty),
                     callouts))
    in_sections = members.drop("_detailed")
    shown_details = pl.concat([frame.clear(), members.filter(pl.col("_detailed")).drop("_detailed"),
                               *(c for *_, c in plan)])
    return plan, in_sections, shown_details


# ---- the report --------------------------------------------------------------------------------------


def _raw_lines(events: pl.DataFrame | pl.LazyFrame | None, cited: pl.DataFrame) -> tuple[pl.DataFrame | None,
                                                                                         pl.DataFrame]:
    """The events at the cited locations (if any) and their raw lines (from a ``raw`` column, else the files)."""
    behind = events_at(events, cited) if events is not None and cited.height else None
    if behind is not None and "raw" in behind.columns:
        raw = cited.join(behind.select("raw_file", "raw_line", "raw").unique(["raw_file", "raw_line"]),
                         on=["raw_file", "raw_line"], how="left").with_columns(truncated=pl.lit(False))
        missing = raw.filter(pl.col("raw").is_null()).select("raw_file", "raw_line")
        if missing.height:
            raw = pl.concat([raw.filter(pl.col("raw").is_not_null()), read_raw_lines(missing)])
    else:
        raw = read_raw_lines(cited)
    return behind, raw


class ScanResult(Protocol):
    """What the report reads of a scan's result (:class:`detector.result.Findings`)."""

    df: pl.DataFrame
    events: pl.DataFrame | pl.LazyFrame | None
    timelines: pl.DataFrame | None

    @property
    def incidents(self) -> pl.DataFrame: ...

    def summary(self) -> dict[str, object]: ...


def render_report(findings: pl.DataFrame | ScanResult, *, events: pl.DataFrame | pl.LazyFrame | None = None,
                  timelines: pl.DataFrame | None = None, incidents: pl.DataFrame | None = None,
                  title: str = "ami-detector findings", generated_at: datetime | None = None,
                  summary: Mapping[str, object] | None = None, detail_limit: int = 1000, evidence_limit: int = 25,
                  table_limit: int = 2000, around: timedelta = CONTEXT, display_tz: str = "UTC") -> str:
    """The findings as one self-contained HTML page, incidents first.

    Parameters
    ----------
    findings
        Findings in the contract schema (with ``incident_id`` and ``signals`` when the scan gives
        them), or a :class:`~detector.result.Findings` (whose events, timelines and ``incidents`` are
        then used unless given here).
    events
        Events to show beside the evidence and, without *timelines*, to draw timelines from: the
        scanned events, or the cited events of ``evidence.parquet``. A ``raw`` column, if present,
        supplies the raw lines; otherwise they are read from the log files by line number.
    timelines
        Hourly activity in :data:`~detector.timelines.TIMELINE_SCHEMA` (``timeline.parquet``). Without it
        or *events* there is no timeline.
    incidents
        The incidents table (``incidents.parquet``). Without it, findings are grouped by their
        ``incident_id``, and findings without one are each their own incident.
    title
        The page title (escaped).
    generated_at
        Shown in the header; now by default.
    summary
        Extra facts for the header (label -> value), in order; escaped.
    detail_limit
        At most this many findings are shown in detail (reasons, model features, evidence). Every
        finding at medium or above is, up to this limit, in the order of the incidents; the rest
        are listed compactly.
    evidence_limit
        Evidence lines shown per finding (the rest are in ``findings.jsonl``).
    table_limit
        Rows of the incidents table; the incidents beyond are counted and are in the findings
        files. A scan of months of a large network can have hundreds of thousands of ``low``
        findings: a page listing them all would help nobody and cost megabytes.
    around
        How far either side of an incident its timeline reaches (and how far a hunt call-out may be
        from it to touch it).
    display_tz
        IANA zone every time is shown in (UTC is in each time's tooltip).

    Returns
    -------
    str
        HTML5 with inline CSS and SVG, no script and no external reference.

    Raises
    ------
    ConfigError
        For an unknown *display_tz*.
    """
    zone = DisplayZone(display_tz)
    if not isinstance(findings, pl.DataFrame):  # a scan's result (detector.result.Findings)
        events = findings.events if events is None else events
        timelines = findings.timelines if timelines is None else timelines
        incidents = getattr(findings, "incidents", None) if incidents is None else incidents
        summary = {**findings.summary(), **(summary or {})}
        findings = findings.df
    data = prepare(findings, incidents, around=around)
    frame, ranked = data.findings, data.incidents
    generated_at = generated_at or datetime.now(UTC)

    # Which incidents get a section and which of their findings are detailed, within detail_limit.
    serious = ranked.filter(_at_least("medium"))
    plan, in_sections, shown_details = _plan(frame, serious, max(detail_limit, 0))

    activity: dict[str, pl.DataFrame] | None = None
    if in_sections.height and (timelines is not None or events is not None):
        hourly = timeline_counts(timelines if timelines is not None else events,  # type: ignore[arg-type]
                                 in_sections.select(list(FINDINGS_SCHEMA)), around=around)
        activity = activity_tables(hourly, in_sections, pl.DataFrame(
            [{"incident_id": inc["incident_id"], "first_seen": inc["first_seen"], "last_seen": inc["last_seen"]}
             for inc, *_ in plan], schema={"incident_id": pl.String, "first_seen": UTC_US, "last_seen": UTC_US}),
            around)
    locations = evidence_locations(shown_details.get_column("evidence").list.head(evidence_limit).explode()
                                   .drop_nulls())
    evidence = _Evidence.of(shown_details, _cited_lines(*_raw_lines(events, locations)), evidence_limit)

    sections = "".join(_incident_section(i, inc, members, detailed, rest, callouts, activity, evidence, around, zone)
                       for i, (inc, members, detailed, rest, callouts) in enumerate(plan, start=1))
    sectioned = {inc["incident_id"] for inc, *_ in plan}

    # Header: counts, facts, the chart.
    inc_sev = dict(ranked.get_column("severity").cast(pl.String).value_counts().iter_rows())
    find_sev = dict(frame.get_column("severity").cast(pl.String).value_counts().iter_rows())
    boxes = "".join(f'<div class="count">{_sev(s)}<b>{inc_sev.get(s, 0):,}</b><small>incident'
                    f'{"s" * (inc_sev.get(s, 0) != 1)}<br>{find_sev.get(s, 0):,} finding'
                    f'{"s" * (find_sev.get(s, 0) != 1)}</small></div>' for s in reversed(SEVERITIES))
    facts: dict[str, str] = {"generated": _t(generated_at, zone),
                             "times shown in": "UTC" if zone.is_utc else
                             f"{_esc(zone.name)} (UTC in each time&rsquo;s tooltip)",
                             "incidents": f"{ranked.height:,}", "findings": f"{frame.height:,}"}
    if frame.height:
        facts["windows"] = (f"{_t(frame.get_column('window_start').min(), zone)} to "  # type: ignore[arg-type]
                            f"{_t(frame.get_column('window_end').max(), zone)}")  # type: ignore[arg-type]
        facts["entities"] = f"{frame.select('entity_kind', 'entity_id').n_unique():,}"
        if not (summary and "model" in summary):
            facts["model"] = _esc(", ".join(frame.get_column("model_id").drop_nulls().unique().sort().to_list()) or "?")
    facts.update({_esc(k): _esc(v) for k, v in (summary or {}).items()})
    fact_rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in facts.items())
    chart = findings_chart_svg(frame, zone=zone)

    listed = ranked.head(max(table_limit, 0))
    top_rows = listed.filter(_at_least("medium"))
    table = (_incident_table(top_rows, 1, sectioned, zone) if top_rows.height else
             "<p>No findings.</p>" if ranked.height == 0 else "<p>No incident at medium or above.</p>")
    low_rows = listed.slice(top_rows.height)
    if low_rows.height:
        table += (f"<details class='low'><summary>{low_rows.height:,} low-severity incident"
                  f"{'s' * (low_rows.height != 1)}, listed compactly</summary>"
                  f"{_incident_table(low_rows, top_rows.height + 1, sectioned, zone)}</details>")
    unlisted = ranked.height - listed.height
    if unlisted > 0:
        table += (f'<p class="muted">The tables list the first {listed.height:,} incidents; the other {unlisted:,} '
                  "(lower in severity and score) are in findings.jsonl and findings.parquet.</p>")
    notes = []
    left_out = serious.height - len(plan)
    if left_out > 0:
        notes.append(f"{left_out:,} more incidents at medium or above are in the table only: details are "
                     f"limited to {detail_limit:,} findings (<code>--details</code>).")
    notes_html = "".join(f'<p class="muted">{n}</p>' for n in notes)
    nothing = "<p>No findings.</p>" if ranked.height == 0 else "<p>No incident at medium or above.</p>"
    about = ("Incidents group related findings (the same account or session, the devices an account&rsquo;s "
             "burst reached), most severe first, then by score: &ldquo;rarer than this share of the "
             "baseline&rsquo;s windows&rdquo;. Every finding leads back to raw log lines (file:line). All log "
             "content in this page is shown as text; this page runs no script and loads nothing from the network.")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1 id="top">{_esc(title)}</h1><p class="muted">{about}</p>'
        f'<div class="top"><div class="counts">{boxes}</div><table class="facts">{fact_rows}</table></div>'
        + (f"<h2>Findings over time</h2>{chart}" if chart else "")
        + f"<h2>Incidents, most severe first</h2>{table}"
        f"<h2>Details</h2>{sections or nothing}{notes_html}"
        "</body></html>\n")


def _unprefixed(incident: Mapping[str, Any]) -> str:
    """The summary without the lead entity's name in front (the table shows it beside)."""
    summary, lead = str(incident["summary"] or ""), f"{incident['lead_entity']}: "
    return summary[len(lead):] if summary.startswith(lead) and len(summary) > len(lead) else summary


def _incident_table(rows: pl.DataFrame, first: int, sectioned: set[str], zone: DisplayZone) -> str:
    body = []
    for i, r in enumerate(rows.iter_rows(named=True), start=first):
        label = f"{_esc(r['lead_kind'])} {_clip(r['lead_entity'])}"
        if r["incident_id"] in sectioned:
            label = f'<a href="#{_anchor("i-", r["incident_id"])}">{label}</a>'
        n_findings = len(r["finding_ids"] or [])
        hunts = f" + {len(r['callouts'])} hunt" if r["callouts"] else ""
        body.append(f"<tr><td class='num'>{i}</td><td>{_sev(r['severity'])}</td><td class='num'>"
                    f"{_num(r['score'], 4)}</td><td class='lead'>{label}</td><td>{_clip(_unprefixed(r), 300)}</td>"
                    f"<td class='t'>{_t(r['first_seen'], zone)}</td><td class='num'>{n_findings:,}{hunts}</td></tr>")
    return ("<div class='scroll tall'><table class='incidents'><tr><th class='num'>#</th><th>severity</th>"
            "<th class='num'>score</th><th>lead</th><th>summary</th><th class='t'>first seen</th>"
            "<th class='num'>findings</th></tr>" + "".join(body) + "</table></div>")


def write_report(findings: str | Path | pl.DataFrame | ScanResult, out_path: str | Path, *,
                 events: pl.DataFrame | pl.LazyFrame | None = None, timelines: pl.DataFrame | None = None,
                 incidents: pl.DataFrame | None = None, title: str | None = None,
                 generated_at: datetime | None = None, summary: Mapping[str, object] | None = None,
                 detail_limit: int = 1000, evidence_limit: int = 25, display_tz: str = "UTC") -> Path:
    """Render the report of *findings* and write it to *out_path* atomically.

    Parameters
    ----------
    findings
        A findings directory (``findings.parquet``, with ``evidence.parquet``,
        ``timeline.parquet`` and ``incidents.parquet`` when present), a ``findings.parquet``
        file, a findings DataFrame, or a :class:`~detector.result.Findings`.
    out_path
        The HTML file to write; it appears only once complete.
    events, timelines, incidents, title, generated_at, summary, detail_limit, evidence_limit, display_tz
        As for :func:`render_report`.

    Returns
    -------
    pathlib.Path
        *out_path*.

    Raises
    ------
    InputError
        When *findings* is a path that holds no readable findings table.
    ConfigError
        For an unknown *display_tz*.
    """
    DisplayZone(display_tz)  # a bad zone fails before anything is read
    if isinstance(findings, (str, Path)):
        source = Path(findings)
        if not source.exists():
            raise InputError("no such findings directory or file", source=(str(source), None))
        saved = read_saved(source)
        events = saved.evidence if events is None else events
        timelines = saved.timelines if timelines is None else timelines
        incidents = saved.incidents if incidents is None else incidents
        findings = saved.findings
        title = title or f"ami-detector findings: {(source if source.is_dir() else source.parent).resolve().name}"
    text = render_report(findings, events=events, timelines=timelines, incidents=incidents,
                         title=title or "ami-detector findings", generated_at=generated_at, summary=summary,
                         detail_limit=detail_limit, evidence_limit=evidence_limit, display_tz=display_tz)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out
