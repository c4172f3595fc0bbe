"""The ``ami-detector`` command line: a thin shell over :mod:`detector.api` and :mod:`detector.pipeline`.

Errors reach the user as one readable line on stderr and exit code 2; a traceback only with
``--verbose``. Anything derived from log content is escaped before it is printed. Progress goes to
stderr, and only when stderr is a terminal; ``--quiet`` silences everything but errors, and
``--json`` puts one machine-readable document on stdout instead of the human summary.
"""

from __future__ import annotations

import os

from detector.allocator import JEMALLOC_CONF, jemalloc_settings

# This process only (a notebook that imports detector keeps polars' own settings); see detector.allocator.
os.environ.setdefault(JEMALLOC_CONF, jemalloc_settings())

import io
import json
import shutil
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click
import polars as pl

from detector import api
from detector.atomic import atomic_write
from detector.cli_support import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    F,
    MainGroup,
    UtcTime,
    _fail,
    engine_of,
    engine_options,
    examples,
    global_options,
    handle_errors,
    parse_options,
)
from detector.config import Config, check_display_tz
from detector.findings import SEVERITIES, rank, severity_at_least
from detector.hunts.cli import hunt
from detector.model_store import save_model
from detector.nightly_cli import nightly
from detector.parsers import PARSERS
from detector.pipeline import FileReport, parse_to_parquet, write_model_card
from detector.population import Population, known_share, population_note
from detector.safe_text import for_terminal

# ---- progress on stderr ------------------------------------------------------------------------------


class Progress:
    """Progress on a terminal, drawn by ``rich``, fed by :data:`detector.api.ProgressCallback` calls.

    Stages with a known total (parsing, in bytes) get a bar with the megabytes done; stages of
    unknown length (training, scoring) a pulsing bar with the elapsed time, refreshed by rich's own
    thread so the operator can tell a long step from a hung one. The display is transient: it is
    cleared when the work ends, so that the summary that follows starts on a clean line.
    """

    def __init__(self, stream: IO[str], *, enabled: bool, refresh: float = 0.1) -> None:
        self.stream = stream
        self.enabled = enabled
        self.refresh = refresh
        self._live: Any = None
        self._task: Any = None
        self._stage: str | None = None

    def _start(self) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        console = Console(file=self.stream, force_terminal=True, highlight=False, markup=False, emoji=False)
        live = RichProgress(TextColumn("{task.description}", markup=False), BarColumn(bar_width=28),
                            TaskProgressColumn(), TextColumn("{task.fields[size]}", markup=False),
                            TimeElapsedColumn(), console=console, transient=True,
                            refresh_per_second=max(1.0, 1.0 / max(self.refresh, 0.01)))
        live.start()
        return live

    def __call__(self, stage: str, done: float, total: float | None) -> None:
        if not self.enabled:
            return
        if self._live is None:
            self._live = self._start()
        if stage != self._stage:
            if self._task is not None:
                self._live.remove_task(self._task)
            self._task = self._live.add_task(stage, total=total, size="")
            self._stage = stage
        size = f"{done / 1e6:,.1f} of {total / 1e6:,.1f} MB" if total and total > 1e5 else ""
        self._live.update(self._task, completed=done, total=total, size=size)
        if total is not None and done >= total:
            self._live.remove_task(self._task)
            self._task, self._stage = None, None
        if self.refresh == 0:
            self._live.refresh()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._task, self._stage = None, None


@contextmanager
def progress_for(quiet: bool, stream: IO[str] | None = None) -> Iterator[Progress]:
    """Progress on stderr when it is a terminal and --quiet was not given; always cleaned up."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    bar = Progress(stream, enabled=not quiet and bool(isatty and isatty()))
    try:
        yield bar
    finally:
        bar.close()


# ---- findings in the terminal and as JSON --------------------------------------------------------------

_SEVERITY_STYLES = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": ""}


def _render(table: Any, *, width: int, color: bool) -> list[str]:
    """A rich table as lines of text, with colour only for a terminal."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, color_system="standard" if color else None,
                      highlight=False, markup=False, emoji=False)
    console.print(table)
    return [line.rstrip() for line in buffer.getvalue().splitlines()]


def findings_table(findings: pl.DataFrame, *, limit: int = 20, width: int | None = None,
                   color: bool | None = None) -> list[str]:
    """The ranked findings as terminal lines (a ``rich`` table), escaped, fitted to *width*.

    Every cell holding log content is a plain ``rich.text.Text`` of the escaped value, so neither
    control characters nor rich markup in an account name or a reason are interpreted. Severities
    are coloured on a terminal only. The id column is a prefix of the finding id that
    ``Findings.explain`` accepts.
    """
    from rich.table import Table
    from rich.text import Text

    width = width or shutil.get_terminal_size((160, 24)).columns
    color = sys.stdout.isatty() if color is None else color
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="", expand=False)
    # Fixed widths for everything but the reason, which takes the rest of the line (and is cut).
    fixed = (("#", 3, "right"), ("severity", 8, "left"), ("score", 6, "right"), ("kind", 7, "left"),
             ("entity", 22, "left"), ("window (UTC)", 16, "left"), ("events", 6, "right"), ("id", 10, "left"))
    for name, size, justify in fixed:
        table.add_column(name, justify=justify, no_wrap=True, width=size, min_width=size,  # type: ignore[arg-type]
                         overflow="ellipsis")
    room = width - sum(size for _, size, _ in fixed) - 2 * len(fixed)  # two spaces between columns
    table.add_column("reason", no_wrap=True, overflow="ellipsis", width=max(room, 20))
    # On a terminal too narrow for the fixed columns, lines are longer than it (and wrap) rather
    # than have rich cut a severity or an id.
    width = max(width, sum(size for _, size, _ in fixed) + 2 * len(fixed) + 20)
    for i, row in enumerate(rank(findings).head(limit).iter_rows(named=True), start=1):
        sev = str(row["severity"])
        reason = row["reasons"][0] if row["reasons"] else ""
        table.add_row(str(i), Text(sev, style=_SEVERITY_STYLES.get(sev, "")), f"{row['score']:.4f}",
                      Text(str(row["entity_kind"])), Text(for_terminal(row["entity_id"])),
                      f"{row['window_start']:%Y-%m-%d %H:%M}", str(row["event_count"]), row["finding_id"][:10],
                      Text(for_terminal(reason)))
    lines = _render(table, width=width, color=color)
    if findings.height > limit:
        lines.append(f"... and {findings.height - limit} more in the output files")
    return lines


def incidents_table(incidents: pl.DataFrame, *, limit: int = 10, width: int | None = None,
                    color: bool | None = None) -> list[str]:
    """The incidents, most severe first, as terminal lines: what to look at first (escaped, fitted
    to *width* like :func:`findings_table`)."""
    from rich.table import Table
    from rich.text import Text

    width = width or shutil.get_terminal_size((160, 24)).columns
    color = sys.stdout.isatty() if color is None else color
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="", expand=False)
    fixed = (("#", 3, "right"), ("severity", 8, "left"), ("first seen (UTC)", 16, "left"), ("findings", 8, "right"))
    for name, size, justify in fixed:
        table.add_column(name, justify=justify, no_wrap=True, width=size, min_width=size,  # type: ignore[arg-type]
                         overflow="ellipsis")
    room = width - sum(size for _, size, _ in fixed) - 2 * len(fixed)
    table.add_column("incident", no_wrap=True, overflow="ellipsis", width=max(room, 20))
    width = max(width, sum(size for _, size, _ in fixed) + 2 * len(fixed) + 20)
    for i, row in enumerate(incidents.head(limit).iter_rows(named=True), start=1):
        sev = str(row["severity"])
        table.add_row(str(i), Text(sev, style=_SEVERITY_STYLES.get(sev, "")), f"{row['first_seen']:%Y-%m-%d %H:%M}",
                      str(len(row["finding_ids"])), Text(for_terminal(row["summary"])))
    lines = _render(table, width=width, color=color)
    if incidents.height > limit:
        lines.append(f"... and {incidents.height - limit} more incidents in incidents.parquet")
    return lines


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def findings_json(findings: pl.DataFrame) -> list[dict[str, Any]]:
    """The findings as JSON-ready dicts, ranked, with a fixed key order."""
    return [{
        "finding_id": row["finding_id"],
        "severity": str(row["severity"]),
        "score": round(float(row["score"]), 6),
        "entity_kind": row["entity_kind"],
        "entity_id": row["entity_id"],
        "window_start": _iso(row["window_start"]),
        "window_end": _iso(row["window_end"]),
        "event_count": int(row["event_count"]),
        "reasons": list(row["reasons"] or []),
    } for row in rank(findings).iter_rows(named=True)]


def _time_fields(reports: list[FileReport]) -> dict[str, dict[str, int]]:
    """Per format, how many events took their time from which field."""
    by_format: dict[str, dict[str, int]] = {}
    for r in reports:
        for name, n in r.time_fields.items():
            if name.startswith("_"):  # a parser's own working column, not a field of the export
                continue
            fields = by_format.setdefault(r.format or "?", {})
            fields[name] = fields.get(name, 0) + n
    return dict(sorted(by_format.items()))


def _files_json(reports: list[FileReport]) -> dict[str, Any]:
    return {"read": sum(1 for r in reports if not r.error), "failed": [{"path": r.path, "error": r.error}
                                                                      for r in reports if r.error],
            "time_fields": _time_fields(reports)}


def _emit_json(document: Mapping[str, Any]) -> None:
    # ensure_ascii: control and bidi characters from logs come out as \u escapes, never raw.
    click.echo(json.dumps(document, ensure_ascii=True, indent=2))


@click.group(cls=MainGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=examples("ami-detector scan sample_logs/ --model models/default --out out/",
                             "ami-detector train logs/ --model-dir model/ --baseline-until 2026-04-01T00:00:00Z",
                             "ami-detector scan --help"))
@global_options
@click.version_option(package_name="ami-detector")
def main(quiet: bool, as_json: bool) -> None:
    """Explainable anomaly detection for AMI head-end (HES) and DMS logs.

    Exit status of every command: 0 clean, 1 something needs a human (findings at or above the
    alert severity, a hunt call-out), 2 a usage or input error.
    """


@main.command(short_help="Normalize raw logs into one event table (Parquet).",
              epilog=examples("ami-detector parse sample_logs/ --out events.parquet --rejects rejects.parquet",
                              "ami-detector parse export.csv --mapping vendor.mapping.toml --tz America/Chicago "
                              "--out events.parquet"))
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file for the normalized events.")
@click.option("--rejects", "rejects_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file for the lines that could not be parsed.")
@parse_options
@global_options
@handle_errors
def parse(logs: tuple[str, ...], out: Path, rejects_out: Path | None, format_name: str | None,
          mappings: tuple[str, ...], tz: str | None, quiet: bool, as_json: bool) -> None:
    """Normalize raw LOGS (files or directories, any mix of formats) into one event table.

    Prints a per-format summary on stderr (with --json, a JSON summary on stdout). Exit status 2
    when a file could not be read.
    """
    with progress_for(quiet) as progress:
        run = api.plan(logs, format=format_name, mappings=mappings, tz=tz, progress=progress)
        if not run.files:
            raise click.UsageError("no log files found in the given paths")
        reports = parse_to_parquet(run, out, rejects_out)
    _print_summary(reports, quiet=quiet or as_json)
    if as_json:
        _emit_json({
            "command": "parse", "version": 1,
            "events": sum(r.events for r in reports), "rejects": sum(r.rejects for r in reports),
            "formats": [{"format": name, "files": files, "events": events, "rejects": rejects}
                        for name, (files, events, rejects) in _by_format(reports)],
            "files": _files_json(reports),
            "outputs": {"events": str(out), "rejects": str(rejects_out) if rejects_out else None},
            "exit_status": EXIT_ERROR if run.failed else EXIT_OK,
        })
    if run.failed:
        sys.exit(EXIT_ERROR)


def _by_format(reports: list[FileReport]) -> list[tuple[str, tuple[int, int, int]]]:
    by_format: dict[str, list[int]] = {}
    for r in reports:
        totals = by_format.setdefault(r.format or "(unreadable)", [0, 0, 0])
        totals[0] += 1
        totals[1] += r.events
        totals[2] += r.rejects
    return [(name, (t[0], t[1], t[2])) for name, t in sorted(by_format.items())]


def _print_summary(reports: list[FileReport], *, quiet: bool = False) -> None:
    """The per-format table on stderr (unless quiet), and every unreadable file (always)."""
    if not quiet:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, show_edge=False, header_style="")
        table.add_column("format", no_wrap=True)
        for name in ("files", "events", "rejects"):
            table.add_column(name, justify="right", no_wrap=True)
        for name, (files, events, rejects) in _by_format(reports):
            table.add_row(Text(for_terminal(name)), f"{files:,}", f"{events:,}", f"{rejects:,}")
        for line in _render(table, width=shutil.get_terminal_size((160, 24)).columns, color=False):
            click.echo(line, err=True)
        # Which field each format's times came from (an exporter's offset-bearing @timestamp, say).
        for name, fields in _time_fields(reports).items():
            parts = sorted(fields.items(), key=lambda kv: (-kv[1], kv[0]))
            click.echo(for_terminal(f"{name}: times from " + ", ".join(f"{f} ({n:,})" for f, n in parts)), err=True)
    for r in reports:
        if r.error:
            _fail(f"{r.path}: {r.error}")


def _utc(value: datetime | None) -> datetime | None:
    """--baseline-until, already an aware UTC time (see :class:`UtcTime`)."""
    return value


def model_options(command: F) -> F:
    for option in reversed([
        click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Configuration file (TOML); see models/config.toml for every setting."),
        click.option("--baseline-until", type=UtcTime(),
                     help="Events before this time are the baseline: ISO 8601, e.g. 2026-04-01 or "
                     "2026-04-01T00:00:00Z (without an offset: UTC)."),
    ]):
        command = option(command)
    return command


@main.command(short_help="Learn the baseline of logs and save a model.",
              epilog=examples("ami-detector train sample_logs/ --model-dir model/ --baseline-until 2026-03-23",
                              "ami-detector train logs/ --model-dir model/ --baseline-until 2026-04-01T00:00:00Z "
                              "--config models/config.toml"))
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--model-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the model to (replaced only once the new one is complete).")
@click.option("--train-sample", "sample", type=click.IntRange(min=1), metavar="N",
              help="Fit each scorer on at most N training windows, sampled reproducibly (seeded by [scoring] "
                   "random_state), for a baseline whose windows do not fit this machine's memory. Recorded in "
                   "the model. [default: all windows]")
@model_options
@parse_options
@engine_options
@global_options
@handle_errors
def train(logs: tuple[str, ...], model_dir: Path, sample: int | None, config_path: Path | None, baseline_until: Any,
          format_name: str | None, mappings: tuple[str, ...], tz: str | None, engine: str, master: str | None,
          spark_conf: tuple[str, ...], spill_dir: Path | None, quiet: bool, as_json: bool) -> None:
    """Learn the baseline of LOGS (before --baseline-until, if given) and save a model.

    The model id goes to stdout (with --json, a JSON document); the per-format summary to stderr.
    """
    config = Config.from_toml(config_path) if config_path else Config()
    with progress_for(quiet) as progress:
        # Parsed into a spill on disk and learned from a day at a time: memory follows a day of logs.
        reports: list[FileReport] = []
        with closing(engine_of(engine, master, spark_conf)) as runner:
            model = api.train(logs, config=config, baseline_until=_utc(baseline_until), progress=progress,
                              format=format_name, mappings=mappings, tz=tz, reports=reports, engine=runner,
                              spill_dir=spill_dir, sample=sample)
        model.metadata["training_files"] = len([r for r in reports if not r.error])
    save_model(model, model_dir)
    command = " ".join(["ami-detector", "train", *logs, "--model-dir", str(model_dir)]
                       + (["--config", str(config_path)] if config_path else [])
                       + ([f"--baseline-until {baseline_until:%Y-%m-%dT%H:%M:%SZ}"] if baseline_until else [])
                       + ([f"--train-sample {sample}"] if sample else []))
    write_model_card(model, model_dir, command)
    _print_summary(reports, quiet=quiet or as_json)
    failed = any(r.error for r in reports)
    if as_json:
        start, end = model.training_span
        _emit_json({
            "command": "train", "version": 1, "model_id": model.model_id, "model_dir": str(model_dir),
            "training_span": [_iso(start), _iso(end)],
            "training_events": model.metadata.get("training_events"),
            "scorers": {kind: {"training_windows": s.n_training_windows} for kind, s in sorted(model.scorers.items())},
            "training_sample": model.metadata.get("training_sample"),
            "files": _files_json(reports), "exit_status": EXIT_ERROR if failed else EXIT_OK,
        })
    elif not quiet:
        click.echo(f"model {model.model_id} written to {for_terminal(model_dir)}")
    if failed:
        sys.exit(EXIT_ERROR)


@main.command(short_help="Score logs and write ranked, explained findings.",
              epilog=examples("ami-detector scan sample_logs/ --model models/default --out out/",
                              "ami-detector scan logs/ --baseline-until 2026-04-01T00:00:00Z --out out/ --csv",
                              "ami-detector scan logs/ --model model/ --out out/ --json > scan.json"))
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A model from `ami-detector train`; without it the baseline is learned from LOGS.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for findings.parquet, findings.jsonl, evidence.parquet, timeline.parquet and "
                   "report.html.")
@click.option("--min-severity", type=click.Choice(SEVERITIES), default="low", show_default=True,
              help="Lowest severity written to the findings.")
@click.option("--csv", "with_csv", is_flag=True, help="Also write findings.csv (formula-safe cells).")
@click.option("--rejects", "rejects_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file for the lines that could not be parsed.")
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Findings listed in the terminal table (all are in the output files).")
@click.option("--display-tz", help="IANA time zone of the times in report.html (UTC beside them)  "
              "[default: [report] display_tz of --config, else UTC]")
@model_options
@parse_options
@engine_options
@global_options
@handle_errors
def scan(logs: tuple[str, ...], model_dir: Path | None, out: Path, min_severity: str, with_csv: bool,
         rejects_out: Path | None, top: int, display_tz: str | None, config_path: Path | None, baseline_until: Any,
         format_name: str | None, mappings: tuple[str, ...], tz: str | None, engine: str, master: str | None,
         spark_conf: tuple[str, ...], spill_dir: Path | None, quiet: bool, as_json: bool) -> None:
    """Score LOGS and write ranked, explained findings and an HTML report to --out.

    A ranked table of the findings goes to stdout (with --json, a JSON document instead); notes
    and unreadable files go to stderr. Exit status 1 when a finding reaches the alert severity
    (medium unless the configuration says otherwise), even if some files could not be read; 0 when
    none does; 2 on a usage error, or when no event could be scored because files could not be read.
    """
    config = Config.from_toml(config_path) if config_path else None
    display_tz = check_display_tz(display_tz) if display_tz else (config or Config()).report.display_tz
    population: Population | None = None
    with progress_for(quiet) as progress:
        with closing(engine_of(engine, master, spark_conf)) as runner:
            # The model is read while the logs are parsed (runner.scan): its errors still exit 2.
            found = api.scan(logs, model_dir, config=config, baseline_until=_utc(baseline_until),
                             min_severity=min_severity, format=format_name, mappings=mappings, tz=tz,
                             progress=progress, engine=runner, spill_dir=spill_dir)
        try:
            # Counting the known entities (polars, off the GIL) overlaps writing the outputs (mostly Python).
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ami-detector-population") as pool:
                counting = (pool.submit(known_share, found.events, found.model, since=found.scored_from)
                            if model_dir is not None and found.model is not None and found.events is not None
                            else None)
                written = found.write(out, csv=with_csv, progress=progress, display_tz=display_tz)
                population = counting.result() if counting is not None else None
        finally:
            found.close()
    if rejects_out is not None:
        atomic_write(rejects_out, found.rejects.write_parquet)
    _print_summary(found.reports, quiet=quiet or as_json)
    for note in getattr(found, "notes", []):
        click.echo(f"ami-detector: note: {for_terminal(note)}", err=True)
    # The scan's settings: --config, else the model's (its [alerts] too), else the defaults.
    alert = (found.settings or Config()).alert_severity
    alerts = severity_at_least(found.df, alert)
    failed = any(r.error for r in found.reports)
    # Alerts win over unreadable files (issue 16): the files are named on stderr and in the JSON.
    if alerts.height:
        status = EXIT_FINDINGS
    else:
        status = EXIT_ERROR if failed and not found.events_scored else EXIT_OK
    model_id = found.model.model_id if found.model is not None else ""
    note = population_note(population, logs) if population is not None else None
    if note and not quiet:
        click.echo(f"ami-detector: note: {for_terminal(note)}", err=True)
    if as_json:
        _emit_json({
            "command": "scan", "version": 1, "model_id": model_id or None,
            "events_scored": found.events_scored, "scored_from": _iso(found.scored_from),
            "files": _files_json(found.reports), "rejects": found.rejects.height,
            "alert_severity": alert, "alerts": alerts.height, "findings_total": len(found),
            "by_severity": found.severity_counts(),
            "population": None if population is None else {
                "entities": population.entities, "known": population.known, "share": round(population.share, 4),
                "accounts": population.accounts, "known_accounts": population.known_accounts,
                "devices": population.devices, "known_devices": population.known_devices},
            "outputs": {p.name: str(p) for p in written},
            "exit_status": status,
            "findings": findings_json(found.df),
        })
    elif not quiet:
        incidents = found.incidents
        serious = incidents.filter(pl.col("severity").cast(pl.String).is_in(SEVERITIES[SEVERITIES.index(alert):]))
        click.echo(f"{found.events_scored:,} events scored with model {model_id or '(learned from these logs)'}: "
                   f"{len(found)} findings in {incidents.height} incidents, {alerts.height} findings and "
                   f"{serious.height} incidents at {alert} or above")
        if serious.height:
            click.echo(f"incidents at {alert} or above, most severe first:")
            for line in incidents_table(serious, limit=max(top // 2, 1)):
                click.echo(line)
        if len(found):
            click.echo("findings:")
            for line in findings_table(found.df, limit=top):
                click.echo(line)
        click.echo(f"report: {for_terminal(out / 'report.html')}")
    sys.exit(status)


@main.command(short_help="Write the findings of a scan as one HTML file.",
              epilog=examples("ami-detector report out/",
                              "ami-detector report out/ --out week14.html --title 'Week 14' --details 30"))
@click.argument("findings_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write  [default: FINDINGS_DIR/report.html]")
@click.option("--title", help="Title of the report.")
@click.option("--details", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Most findings shown in detail (evidence, model features): every one at medium or above, "
                   "up to this many; the rest are listed compactly.")
@click.option("--display-tz", help="IANA time zone of the times in the report (UTC beside them)  "
              "[default: [report] display_tz of --config, else UTC]")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Configuration file (TOML): its [alerts] severity sets the exit status  [default: medium], "
                   "its [report] display_tz the time zone.")
@global_options
@handle_errors
def report(findings_dir: Path, out: Path | None, title: str | None, details: int, display_tz: str | None,
           config_path: Path | None, quiet: bool, as_json: bool) -> None:
    """Write the findings of FINDINGS_DIR (from `scan`) as one self-contained HTML file.

    The page works offline: no script, no external resource. Timelines and raw lines come from
    evidence.parquet and timeline.parquet beside the findings when present, so the report can be
    rebuilt after the logs have rotated away. Exit status 1 when the findings hold alerts (at or
    above the alert severity), as for `scan`.
    """
    from detector.report import write_report

    source = findings_dir / "findings.parquet" if findings_dir.is_dir() else findings_dir
    target = out or (source.parent / "report.html")
    found = api.Findings.read(source)
    config = Config.from_toml(config_path) if config_path else Config()
    display_tz = check_display_tz(display_tz) if display_tz else config.report.display_tz
    write_report(source, target, title=title or f"ami-detector findings: {source.parent.resolve().name}",
                 detail_limit=details, display_tz=display_tz)
    alert = config.alert_severity
    alerts = severity_at_least(found.df, alert).height
    status = EXIT_FINDINGS if alerts else EXIT_OK
    if as_json:
        _emit_json({"command": "report", "version": 1, "findings_total": len(found),
                    "by_severity": found.severity_counts(), "alert_severity": alert, "alerts": alerts,
                    "report": str(target), "exit_status": status})
    elif not quiet:
        click.echo(f"{len(found)} findings, {alerts} at {alert} or above, written to {for_terminal(target)}")
    sys.exit(status)


@main.command(short_help="Share findings: STIX 2.1 bundle, CEF lines, ECS JSON lines.",
              epilog=examples("ami-detector export out/ --stix bundle.json --identity 'Example Electric Coop' "
                              "--tlp amber",
                              "ami-detector export out/ --cef findings.cef --ecs findings.ecs.jsonl --min-severity low",
                              "ami-detector export out/ --stix isac.json --identity 'Example Water' --min-severity high"))
@click.argument("findings_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--stix", "stix_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a STIX 2.1 bundle (indicators and sightings) for an ISAC to this file.")
@click.option("--cef", "cef_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one CEF line per finding (for syslog forwarding to a SIEM) to this file.")
@click.option("--ecs", "ecs_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one Elastic Common Schema JSON document per finding to this file.")
@click.option("--identity", metavar="NAME", help="Your organisation's name, as the STIX identity sharing the bundle.")
@click.option("--tlp", type=click.Choice(["clear", "white", "green", "amber", "red"]), default="amber",
              show_default=True, help="Traffic Light Protocol marking of the STIX bundle.")
@click.option("--min-severity", type=click.Choice(SEVERITIES), default="medium", show_default=True,
              help="Lowest severity of the findings (and hunt call-outs) exported.")
@click.option("--internal-addresses", is_flag=True,
              help="Also share internal addresses (10/8, 172.16/12, 192.168/16, ...) in the STIX bundle.")
@global_options
@handle_errors
def export(findings_dir: Path, stix_out: Path | None, cef_out: Path | None, ecs_out: Path | None,
           identity: str | None, tlp: str, min_severity: str, internal_addresses: bool, quiet: bool,
           as_json: bool) -> None:
    """Export the findings of FINDINGS_DIR (from `scan`, with hunt call-outs merged) for sharing.

    --stix writes indicators (addresses, firmware image hashes, accounts) with a sighting each (event
    count, first and last seen) by --identity, TLP-marked and validated; --cef and --ecs write one
    record per finding for a SIEM. Files appear only when complete.
    """
    from detector.export import export_findings

    if not (stix_out or cef_out or ecs_out):
        raise click.UsageError("nothing to write: give --stix FILE, --cef FILE and/or --ecs FILE")
    result = export_findings(findings_dir, stix=stix_out, cef=cef_out, ecs=ecs_out, identity=identity, tlp=tlp,
                             min_severity=min_severity, internal_addresses=internal_addresses)
    if as_json:
        _emit_json({"command": "export", "version": 1, "findings": result.findings, "min_severity": min_severity,
                    "indicators": result.indicators, "outputs": result.outputs})
    elif not quiet:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(result.indicators.items())) or "no indicators"
        for name, path in result.outputs.items():
            what = f"{counts} with sightings, TLP:{tlp.upper()}" if name == "stix" else f"{result.findings} findings"
            click.echo(f"{name}: {what} -> {for_terminal(path)}")


@main.command(short_help="Write labelled logs of a simulated utility.",
              epilog=examples("ami-detector simulate --out sim/ --days 28 --seed 7",
                              "ami-detector simulate --out sim/ --days 90 --meters 200000 --gzip"))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory for the logs.")
@click.option("--days", type=click.IntRange(min=1), default=28, show_default=True, help="Days to simulate.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed; the same seed gives the same bytes.")
@click.option("--meters", type=click.IntRange(min=100), default=20_000, show_default=True, help="Electric meters.")
@click.option("--operators", type=click.IntRange(min=3), default=12, show_default=True,
              help="HES operators; admins and DMS staff scale with it.")
@click.option("--start", type=UtcTime(), metavar="DATE", default="2026-03-02", show_default=True,
              help="First local day, e.g. 2026-03-02.")
@click.option("--tz", default="America/Chicago", show_default=True, help="The utility's local time zone.")
@click.option("--baseline-days", type=click.IntRange(min=1), help="Incident-free days first [default: 3/4 of the run].")
@click.option("--gzip", "compress", is_flag=True, help="Write .gz files.")
@global_options
@handle_errors
def simulate(out: Path, days: int, seed: int, meters: int, operators: int, start: Any, tz: str,
             baseline_days: int | None, compress: bool, quiet: bool, as_json: bool) -> None:
    """Write DAYS of realistic, labelled HES, DMS, Windows and VPN logs of a simulated utility.

    One file per source per local day in the five reference formats, and labels.json naming the
    incidents planted after the incident-free baseline.
    """
    from detector.simulate import simulate as run_simulation

    summary = run_simulation(out, days=days, seed=seed, meters=meters, operators=operators, start=start.date(),
                             tz=tz, baseline_days=baseline_days, compress=compress)
    if as_json:
        _emit_json({"command": "simulate", "version": 1, "events": summary.total_events,
                    "events_by_format": dict(sorted(summary.events.items())), "files": len(summary.files),
                    "incidents": len(summary.incidents), "labels": str(summary.labels), "out": str(out)})
    elif not quiet:
        click.echo(f"wrote {summary.total_events:,} events in {len(summary.files)} files and "
                   f"{len(summary.incidents)} labelled incidents to {for_terminal(out)}")


@main.command(short_help="List the built-in log formats.",
              epilog=examples("ami-detector formats", "ami-detector formats --json"))
@global_options
@handle_errors
def formats(quiet: bool, as_json: bool) -> None:
    """List the built-in formats, one per line (name and description)."""
    if as_json:
        _emit_json({"command": "formats", "version": 1,
                    "formats": [{"name": name, "description": parser.description} for name, parser in PARSERS.items()]})
    elif not quiet:
        for name, parser in PARSERS.items():
            click.echo(f"{name:<20} {parser.description}")


main.add_command(nightly)
main.add_command(hunt)
