"""The result of a scan: :class:`Findings`, ranked findings that explain themselves, with the events
they were scored from.

:class:`Findings` keeps the events it was scored from (a DataFrame or a LazyFrame, not a copy), so
``explain`` and ``timeline`` can go back to the events and raw lines behind a finding. Raw lines
are read from the log files by line number only when asked for, a chunk at a time, and only up to
the last line cited. Everything that came from a log is attacker-controlled: the HTML
representations here escape it, and :mod:`detector.report` does the same for the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from detector.atomic import atomic_write
from detector.config import Config
from detector.errors import DetectorError
from detector.evidence import (
    EVIDENCE_FILE,
    cited_events,
    events_at,
    evidence_locations,
    read_raw_lines,
    write_cited_events,
)
from detector.features import FEATURE_DESCRIPTIONS
from detector.findings import SEVERITIES, TOP_FEATURE, conform, rank, severity_at_least, write_findings
from detector.incidents import incidents_of
from detector.model_store import Model
from detector.pipeline import FileReport, ProgressCallback
from detector.safe_text import escape_html, for_terminal
from detector.saved import read_saved
from detector.schema import CATEGORIES, EVENT_SCHEMA, empty_rejects
from detector.spill import EventSpill
from detector.timelines import (
    CATEGORY_COLORS,
    CONTEXT,
    TIMELINE_FILE,
    TIMELINE_SCHEMA,
    bucket_days,
    entity_filter,
    entity_timeline,
    flagged_runs,
    timeline_counts,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

EntityKind = Literal["account", "device"]

_esc = escape_html


class FindingNotFound(DetectorError, KeyError):
    """No finding (or more than one) has the given id or id prefix."""

    def __str__(self) -> str:  # KeyError would quote the message
        return DetectorError.__str__(self)




@dataclass(frozen=True, repr=False)
class Explanation:
    """Why a finding was raised and what lies behind it.

    Attributes
    ----------
    finding
        The finding's row (the findings contract) as a dict.
    reasons
        The sentences a person reads.
    top_features
        ``feature``, ``description``, ``value``, ``baseline``, ``contribution``: the model's view.
    events
        The normalized events cited as evidence, in time order (empty when the findings were
        read without their events).
    raw_lines
        ``raw_file``, ``raw_line``, ``raw``, ``truncated``: the raw log lines cited as evidence.
        ``raw`` is null for a file that can no longer be read.
    """

    finding: dict[str, Any]
    reasons: list[str]
    top_features: pl.DataFrame
    events: pl.DataFrame
    raw_lines: pl.DataFrame

    @property
    def finding_id(self) -> str:
        return str(self.finding["finding_id"])

    def __repr__(self) -> str:
        return (f"<Explanation of finding {self.finding_id}: {len(self.reasons)} reasons, {self.events.height} events, "
                f"{self.raw_lines.height} raw lines; print() it to read>")

    def __str__(self) -> str:
        f = self.finding
        lines = [(f"{f['severity']} {f['score']:.4f}  {f['entity_kind']} {for_terminal(f['entity_id'])}  "
                  f"{f['window_start']:%Y-%m-%d %H:%M}-{f['window_end']:%H:%M} UTC  ({f['event_count']} events)")]
        lines += [f"  - {for_terminal(r)}" for r in self.reasons]
        lines.append("evidence:")
        for row in self.raw_lines.iter_rows(named=True):
            text = "(file not readable)" if row["raw"] is None else row["raw"]
            lines.append(f"  {for_terminal(row['raw_file'])}:{row['raw_line']}: {for_terminal(text)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        f = self.finding
        reasons = "".join(f"<li>{_esc(r)}</li>" for r in self.reasons)
        raw = "".join(f"<tr><td><code>{_esc(r['raw_file'])}:{r['raw_line']}</code></td>"
                      f"<td><pre style='margin:0;white-space:pre-wrap'>{_esc(r['raw'] or '(file not readable)')}"
                      f"</pre></td></tr>" for r in self.raw_lines.iter_rows(named=True))
        return (f"<div><b>{_esc(f['severity'])}</b> {f['score']:.4f} &middot; {_esc(f['entity_kind'])} "
                f"<b>{_esc(f['entity_id'])}</b> &middot; {f['window_start']:%Y-%m-%d %H:%M} UTC"
                f"<ul>{reasons}</ul><table>{raw}</table></div>")


class Findings:
    """Ranked, explained findings together with the events they were scored from.

    Parameters
    ----------
    frame
        Findings in the contract schema (:data:`detector.findings.FINDINGS_SCHEMA`).
    events
        The events the findings were scored from (DataFrame or LazyFrame; not copied), or, for
        saved findings, the events they cite (``evidence.parquet``, with a ``raw`` column). Without
        events, ``explain`` still gives reasons and raw lines (read from the files).
    timelines
        Hourly activity of the findings' entities (:data:`TIMELINE_SCHEMA`, ``timeline.parquet``);
        timelines are drawn from it instead of from *events* when given.
    model
        The model that scored them, if known.
    rejects, reports
        The lines that could not be parsed and a report per input file, when the findings come
        from a scan of files.
    events_scored
        How many events were scored.
    scored_from
        With a model and ``baseline_until``: the time scoring started from.
    settings
        The settings the findings were made with (a scan's configuration, else its model's),
        when known; their ``alert_severity`` decides what the command line calls an alert.
    """

    def __init__(self, frame: pl.DataFrame, *, events: pl.DataFrame | pl.LazyFrame | None = None,
                 timelines: pl.DataFrame | None = None, model: Model | None = None,
                 rejects: pl.DataFrame | None = None, reports: Sequence[FileReport] = (),
                 events_scored: int | None = None, scored_from: datetime | None = None,
                 spill: EventSpill | None = None, settings: Config | None = None) -> None:
        self.df = rank(conform(frame))
        self.events = events
        self._spill = spill  # the parsed events behind a LazyFrame *events*, kept while they are needed
        self.settings = settings
        self.timelines = timelines
        self.model = model
        self.rejects = rejects if rejects is not None else empty_rejects()
        self.reports = list(reports)
        self.events_scored = events_scored
        self.scored_from = scored_from
        # What the analyst must know about how these findings were made (a thin or overlapping
        # baseline, say); the command line prints them on stderr.
        self.notes: list[str] = []

    @property
    def incidents(self) -> pl.DataFrame:
        """The incidents of these findings, most severe first (:data:`detector.incidents.INCIDENTS_SCHEMA`)."""
        return incidents_of(self.df)

    def close(self) -> None:
        """Delete the parsed events a scan of files keeps on disk for ``explain`` and ``timeline``
        (otherwise deleted when Python exits); the findings themselves stay usable."""
        if self._spill is not None:
            self._spill.remove()
            self.events = None

    # -- the table ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.df.height

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.severity_counts().items() if n)
        return f"<Findings: {self.df.height} ({counts or 'none'}), model {self.model_id or '?'}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{_esc(r['severity'])}</td><td>{r['score']:.4f}</td><td>{_esc(r['entity_kind'])}</td>"
            f"<td>{_esc(r['entity_id'])}</td><td>{r['window_start']:%Y-%m-%d %H:%M}</td>"
            f"<td>{_esc(r['reasons'][0] if r['reasons'] else '')}</td><td><code>{_esc(r['finding_id'])}</code></td></tr>"
            for r in self.df.head(20).iter_rows(named=True))
        more = f"<p>... and {self.df.height - 20} more (<code>.df</code>)</p>" if self.df.height > 20 else ""
        return (f"<p>{_esc(repr(self))}</p><table><tr><th>severity</th><th>score</th><th>kind</th><th>entity</th>"
                f"<th>window (UTC)</th><th>reason</th><th>finding_id</th></tr>{rows}</table>{more}")

    @property
    def model_id(self) -> str:
        if self.model is not None and self.model.model_id:
            return self.model.model_id
        ids = self.df.get_column("model_id").drop_nulls().unique().sort().to_list()
        return ",".join(ids)

    def severity_counts(self) -> dict[str, int]:
        """Findings per severity, most severe first."""
        counts = dict(self.df.get_column("severity").cast(pl.String).value_counts().iter_rows())
        return {s: int(counts.get(s, 0)) for s in reversed(SEVERITIES)}

    def to_arrow(self, *, compat_level: pl.CompatLevel | None = None) -> pa.Table:
        """The findings as a :class:`pyarrow.Table`.

        By default strings are exported as Arrow string views, which shares polars' buffers instead
        of copying them; pass ``compat_level=polars.CompatLevel.oldest()`` for ``large_string``
        columns (a copy of the text) for consumers that do not read string views yet.
        """
        return self.df.to_arrow(compat_level=compat_level if compat_level is not None else pl.CompatLevel.newest())

    def filter(self, *predicates: pl.Expr | bool, **constraints: Any) -> Findings:
        """The findings that match (as :meth:`polars.DataFrame.filter`), with the same events."""
        return self._with(self.df.filter(*predicates, **constraints))

    def at_least(self, severity: str) -> Findings:
        """The findings at *severity* or above."""
        return self._with(severity_at_least(self.df, severity))

    def _with(self, frame: pl.DataFrame) -> Findings:
        return Findings(frame, events=self.events, timelines=self.timelines, model=self.model, rejects=self.rejects,
                        reports=self.reports, events_scored=self.events_scored, scored_from=self.scored_from,
                        spill=self._spill, settings=self.settings)

    def finding(self, finding_id: str) -> dict[str, Any]:
        """The row of one finding, by its id or a unique prefix of it."""
        match = self.df.filter(pl.col("finding_id").str.starts_with(finding_id))
        if match.height != 1:
            raise FindingNotFound(f"{'no' if match.height == 0 else 'more than one'} finding with id "
                                  f"{for_terminal(finding_id)!r}" + (" (use a longer prefix)" if match.height else ""))
        return match.row(0, named=True)

    # -- explanation ----------------------------------------------------------------------------------

    def explain(self, finding_id: str) -> Explanation:
        """Reasons, model features, and the events and raw lines behind one finding.

        Parameters
        ----------
        finding_id
            The finding's id, or a unique prefix of it (as the terminal table shows).

        Returns
        -------
        Explanation
            Displays as text (``print``) and as HTML in a notebook, escaped.

        Raises
        ------
        FindingNotFound
            When no finding, or more than one, has that id (prefix).
        """
        row = self.finding(finding_id)
        top = pl.DataFrame(row["top_features"] or [], schema=TOP_FEATURE.to_schema()
                           ).with_columns(description=pl.col("feature").replace_strict(
                               FEATURE_DESCRIPTIONS, default=None, return_dtype=pl.String)).select(
            "feature", "description", "value", "baseline", "contribution")
        where = evidence_locations(row["evidence"] or [])
        if self.events is not None:
            behind = events_at(self.events, where)
        else:
            behind = pl.DataFrame(schema=EVENT_SCHEMA)
        if "raw" in behind.columns:  # saved evidence carries its raw lines
            raw = where.join(behind.select("raw_file", "raw_line", "raw").unique(["raw_file", "raw_line"]),
                             on=["raw_file", "raw_line"], how="left", maintain_order="left").with_columns(
                truncated=pl.lit(False))
            if raw.get_column("raw").null_count():
                raw = read_raw_lines(where)
            behind = behind.drop("raw")
        else:
            raw = read_raw_lines(where)
        return Explanation(finding=row, reasons=list(row["reasons"] or []), top_features=top, events=behind,
                           raw_lines=raw)

    # -- timelines ------------------------------------------------------------------------------------

    def _span(self, entity_id: str, kind: str | None, finding_id: str | None, around: timedelta,
              start: datetime | None, end: datetime | None
              ) -> tuple[str | None, str, datetime, datetime, list[tuple[datetime, datetime]]]:
        if finding_id is not None:
            rows = [self.finding(finding_id)]
            entity_id = rows[0]["entity_id"]
        else:
            mine = self.df.filter(pl.col("entity_id") == entity_id)
            if kind is not None:
                mine = mine.filter(pl.col("entity_kind") == kind)
            rows = mine.to_dicts()
        if kind is None and rows:
            kind = rows[0]["entity_kind"]
        windows = [(r["window_start"], r["window_end"]) for r in rows]
        if start is None or end is None:
            if windows:
                lo, hi = min(w[0] for w in windows) - around, max(w[1] for w in windows) + around
            elif self.events is not None and self.timelines is None:
                lo, hi = (self.events.lazy().filter(entity_filter(kind, entity_id))
                          .select(pl.col("time").min(), pl.col("time").max() + pl.duration(microseconds=1))
                          .collect().row(0))
                if lo is None:
                    raise FindingNotFound(f"no events of {for_terminal(entity_id)!r}")
            else:
                raise FindingNotFound(f"no finding for {for_terminal(entity_id)!r}; give start and end")
            start, end = start or lo, end or hi
        return kind, entity_id, start, end, windows

    def timeline(self, entity_id: str, *, kind: EntityKind | None = None, finding_id: str | None = None,
                 around: timedelta = CONTEXT, start: datetime | None = None, end: datetime | None = None,
                 every: str = "1h") -> pl.DataFrame:
        """An entity's activity around its findings, per time bucket and event category.

        Parameters
        ----------
        entity_id
            An account name or device id (ignored when *finding_id* is given).
        kind
            ``"account"`` or ``"device"``; by default the kind of the entity's findings.
        finding_id
            Centre on this one finding (id or unique prefix) instead of all of the entity's.
        around
            How far before the first and after the last finding window to reach.
        start, end
            An explicit span instead (UTC if naive).
        every
            Bucket length (a polars duration string: ``"1h"``, ``"15m"``, ``"1d"``).

        Returns
        -------
        polars.DataFrame
            ``time``, a count column per event category, ``total`` and ``flagged`` (the bucket
            overlaps one of the entity's finding windows).
        """
        return self._timeline(entity_id, kind, finding_id, around, start, end, every)[2]

    def _timeline(self, entity_id: str, kind: str | None, finding_id: str | None, around: timedelta,
                  start: datetime | None, end: datetime | None, every: str) -> tuple[str | None, str, pl.DataFrame]:
        source = self.timelines if self.timelines is not None else self.events
        if source is None:
            raise DetectorError("these findings carry no events; scan again, or read them with their "
                                f"{TIMELINE_FILE}")
        kind, entity_id, lo, hi, windows = self._span(entity_id, kind, finding_id, around, start, end)
        return kind, entity_id, entity_timeline(source, kind, entity_id, lo, hi, every=every, flagged=windows)

    def plot_timeline(self, entity_id: str, *, kind: EntityKind | None = None, finding_id: str | None = None,
                      around: timedelta = CONTEXT, start: datetime | None = None, end: datetime | None = None,
                      every: str = "1h", ax: Axes | None = None) -> Figure:
        """:meth:`timeline` as a stacked bar chart (matplotlib), finding windows shaded.

        Needs matplotlib (``pip install 'ami-detector[notebook]'``). Returns the Figure, which a
        notebook displays; pass *ax* to draw into an existing one.
        """
        try:
            import matplotlib.dates as mdates
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            raise DetectorError("plotting needs matplotlib: pip install 'ami-detector[notebook]'") from None
        found_kind, entity_id, table = self._timeline(entity_id, kind, finding_id, around, start, end, every)
        if ax is None:
            fig = Figure(figsize=(10, 3.2), layout="constrained")
            ax = fig.add_subplot()
        else:
            fig = ax.get_figure()  # type: ignore[assignment]
        times = table.get_column("time").dt.replace_time_zone(None).to_list()
        width = bucket_days(every)
        bottom = [0] * table.height
        for category in [c for c in CATEGORIES if c in table.columns]:
            values = table.get_column(category).to_list()
            ax.bar(times, values, width=width * 0.9, bottom=bottom, align="edge", color=CATEGORY_COLORS[category],
                   label=category, linewidth=0, zorder=2)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        for flagged_at, length in flagged_runs(table):
            lo = float(mdates.date2num(flagged_at))
            ax.axvspan(lo, lo + width * length, color="#d62728", alpha=0.15, lw=0, zorder=1)
            ax.axvspan(lo, lo + width * length, ymax=0.03, color="#d62728", lw=0, zorder=3)
        # Log content must not be read as mathtext (a "$" in an account name would be).
        ax.set_title(f"{found_kind or 'entity'} {entity_id}: events per {every} (UTC), finding windows shaded",
                     loc="left", fontsize=10, parse_math=False)
        ax.set_ylabel("events")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        if table.height and len(ax.get_legend_handles_labels()[0]):
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        return fig

    # -- files ----------------------------------------------------------------------------------------

    def write(self, out_dir: str | Path, *, csv: bool = False, report: bool = True, evidence: bool = True,
              title: str | None = None, summary: Mapping[str, object] | None = None,
              progress: ProgressCallback | None = None, display_tz: str = "UTC") -> list[Path]:
        """Write the findings, what explains them, and the HTML report into *out_dir*.

        - ``findings.parquet``, ``findings.jsonl`` (and ``findings.csv``): the findings contract,
          as :func:`detector.findings.write_findings` writes it;
        - ``evidence.parquet``: the events the findings cite, with their raw lines (``raw``);
        - ``timeline.parquet``: hourly activity of each finding's entity, 12 h either side of its
          window (:data:`TIMELINE_SCHEMA`);
        - ``report.html``: :func:`detector.report.render_report`, times shown in *display_tz*.

        The two evidence files are small (bounded by the findings, not the logs) and let
        :meth:`read`, ``explain`` and ``ami-detector report`` work after the logs have rotated
        away. Every file appears complete or not at all.
        """
        out = Path(out_dir)
        _tick(progress, "report", 0.0, None)
        # The report details only the first findings and draws what it shows of them from these.
        events, timelines = self.events, self.timelines
        out.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ami-detector-write") as pool:
            # Counting and writing the findings (polars, mostly without the GIL) overlap reading the
            # cited lines back (mostly Python, on one core).
            counting = (pool.submit(self.timeline_counts)
                        if evidence and (self.timelines is not None or self.events is not None) else None)
            findings_written = pool.submit(write_findings, self.df, out, csv=csv)
            cited = self.events if evidence else None  # the events whose lines the evidence holds
            if cited is not None:
                write_cited_events(cited, self.df, out / EVIDENCE_FILE)
            written = findings_written.result()
            if cited is not None:
                written.append(out / EVIDENCE_FILE)
                events = pl.scan_parquet(out / EVIDENCE_FILE)
            if counting is not None:
                timelines = counting.result()
                atomic_write(out / TIMELINE_FILE, timelines.write_parquet)
                written.append(out / TIMELINE_FILE)
        if report:
            from detector.report import write_report

            path = out / "report.html"
            write_report(self.df, path, events=events, timelines=timelines,
                         incidents=getattr(self, "incidents", None), title=title, summary=summary or self.summary(),
                         display_tz=display_tz)
            written.append(path)
        _tick(progress, "report", 1.0, 1.0)
        return written

    def evidence_events(self) -> pl.DataFrame:
        """The events the findings cite, with a ``raw`` column (see :func:`cited_events`)."""
        if self.events is None:
            return pl.DataFrame(schema={**EVENT_SCHEMA, "raw": pl.String})
        return cited_events(self.events, self.df)

    def timeline_counts(self, *, around: timedelta = CONTEXT) -> pl.DataFrame:
        """Hourly activity around every finding (see :func:`timeline_counts`)."""
        source = self.timelines if self.timelines is not None else self.events
        if source is None:
            return pl.DataFrame(schema=TIMELINE_SCHEMA)
        return timeline_counts(source, self.df, around=around)

    def summary(self) -> dict[str, object]:
        """Facts about the run for the report header, in display order."""
        facts: dict[str, object] = {}
        if self.events_scored is not None:
            facts["events scored"] = f"{self.events_scored:,}"
        if self.scored_from is not None:
            facts["scored from"] = f"{self.scored_from:%Y-%m-%d %H:%M} UTC"
        if self.reports:
            facts["files read"] = f"{sum(1 for r in self.reports if not r.error):,} of {len(self.reports):,}"
            facts["lines rejected"] = f"{self.rejects.height:,}"
        if self.model is not None:
            start, end = self.model.training_span
            facts["model"] = self.model.model_id or "(learned from these logs)"
            facts["baseline"] = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
        return facts

    @classmethod
    def read(cls, directory: str | Path) -> Findings:
        """Findings written by ``scan`` / :meth:`write`, with their evidence and timelines when present.

        Parameters
        ----------
        directory
            The output directory of a scan, or its ``findings.parquet``.

        Raises
        ------
        InputError
            When there is no readable findings table.
        """
        saved = read_saved(directory, incidents=False)  # Findings.incidents derives them from the findings
        return cls(saved.findings, events=saved.evidence, timelines=saved.timelines)


def _tick(progress: ProgressCallback | None, stage: str, done: float, total: float | None) -> None:
    if progress is not None:
        progress(stage, done, total)
