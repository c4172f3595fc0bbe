"""The ``ami-detector`` command line: a thin shell over :mod:`detector.pipeline`.

Errors reach the user as one readable line on stderr and exit code 2; a traceback only with
``--verbose``. Anything derived from log content is escaped before it is printed.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from detector.config import Config
from detector.errors import DetectorError
from detector.findings import SEVERITIES, atomic_write, severity_at_least, summary_lines, write_findings
from detector.model_store import load_model, save_model
from detector.parsers import PARSERS
from detector.pipeline import FileReport, parse_to_parquet, plan_parse, scan_logs, train_model, write_model_card
from detector.safe_text import for_terminal

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    click.echo(f"ami-detector: error: {for_terminal(message)}", err=True)


def handle_errors(command: F) -> F:
    """Turn expected errors into one line and exit 2; unexpected ones too, unless --verbose."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = click.get_current_context().find_root().params.get("verbose", False)
        try:
            return command(*args, **kwargs)
        except DetectorError as exc:
            if verbose:
                traceback.print_exc()
            _fail(str(exc))
        except (OSError, MemoryError) as exc:
            if verbose:
                traceback.print_exc()
            _fail(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the last line of defence for users
            if verbose:
                traceback.print_exc()
            _fail(f"internal error ({type(exc).__name__}: {exc}); rerun with --verbose and report it")
        sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def parse_options(command: F) -> F:
    """Options shared by every command that reads raw logs."""
    for option in reversed([
        click.option("--format", "format_name", metavar="NAME", help="Force this format for every file "
                     "instead of sniffing (see `ami-detector formats`)."),
        click.option("--mapping", "mappings", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="Mapping file (TOML) describing another CSV / JSON-lines export. Repeatable."),
        click.option("--tz", metavar="ZONE", help="IANA time zone of timestamps written without a UTC offset."),
    ]):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="ami-detector")
def main(verbose: bool) -> None:
    """Explainable anomaly detection for AMI head-end (HES) and DMS logs."""


@main.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file for the normalized events.")
@click.option("--rejects", "rejects_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file for the lines that could not be parsed.")
@parse_options
@handle_errors
def parse(logs: tuple[str, ...], out: Path, rejects_out: Path | None, format_name: str | None,
          mappings: tuple[str, ...], tz: str | None) -> None:
    """Normalize raw LOGS (files or directories, any mix of formats) into one event table.

    Prints a per-format summary on stderr. Exit status 2 when a file could not be read.
    """
    run = plan_parse(logs, format=format_name, mappings=mappings, tz=tz)
    if not run.files:
        raise click.UsageError("no log files found in the given paths")
    reports = parse_to_parquet(run, out, rejects_out)
    _print_summary(reports)
    if run.failed:
        sys.exit(EXIT_ERROR)


def _print_summary(reports: list[FileReport]) -> None:
    by_format: dict[str, list[int]] = {}
    for r in reports:
        totals = by_format.setdefault(r.format or "(unreadable)", [0, 0, 0])
        totals[0] += 1
        totals[1] += r.events
        totals[2] += r.rejects
    width = max([len(f) for f in by_format] + [6])
    click.echo(f"{'format':<{width}}  {'files':>6}  {'events':>10}  {'rejects':>8}", err=True)
    for name, (files, events, rejects) in sorted(by_format.items()):
        click.echo(f"{for_terminal(name):<{width}}  {files:>6}  {events:>10}  {rejects:>8}", err=True)
    for r in reports:
        if r.error:
            _fail(f"{r.path}: {r.error}")


def _utc(value: Any) -> Any:
    """A naive --baseline-until is UTC, like every time the tool prints."""
    from datetime import timezone

    return None if value is None else (value if value.tzinfo else value.replace(tzinfo=timezone.utc))


def model_options(command: F) -> F:
    for option in reversed([
        click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Configuration file (TOML); see models/config.toml for every setting."),
        click.option("--baseline-until", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
                     help="UTC time: events before it are the baseline."),
    ]):
        command = option(command)
    return command


@main.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--model-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the model to (replaced only once the new one is complete).")
@model_options
@parse_options
@handle_errors
def train(logs: tuple[str, ...], model_dir: Path, config_path: Path | None, baseline_until: Any,
          format_name: str | None, mappings: tuple[str, ...], tz: str | None) -> None:
    """Learn the baseline of LOGS (before --baseline-until, if given) and save a model."""
    config = Config.from_toml(config_path) if config_path else Config()
    model, reports = train_model(logs, config=config, baseline_until=_utc(baseline_until), format=format_name,
                                 mappings=mappings, tz=tz)
    save_model(model, model_dir)
    command = " ".join(["ami-detector", "train", *logs, "--model-dir", str(model_dir)]
                       + (["--config", str(config_path)] if config_path else [])
                       + ([f"--baseline-until {baseline_until:%Y-%m-%dT%H:%M:%S}"] if baseline_until else []))
    write_model_card(model, model_dir, command)
    _print_summary(reports)
    click.echo(f"model {model.model_id} written to {for_terminal(model_dir)}", err=True)
    if any(r.error for r in reports):
        sys.exit(EXIT_ERROR)


@main.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A model from `ami-detector train`; without it the baseline is learned from LOGS.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for findings.parquet and findings.jsonl.")
@click.option("--min-severity", type=click.Choice(SEVERITIES), default="low", show_default=True,
              help="Lowest severity written to the findings.")
@click.option("--csv", "with_csv", is_flag=True, help="Also write findings.csv (formula-safe cells).")
@click.option("--rejects", "rejects_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file for the lines that could not be parsed.")
@model_options
@parse_options
@handle_errors
def scan(logs: tuple[str, ...], model_dir: Path | None, out: Path, min_severity: str, with_csv: bool,
         rejects_out: Path | None, config_path: Path | None, baseline_until: Any, format_name: str | None,
         mappings: tuple[str, ...], tz: str | None) -> None:
    """Score LOGS and write ranked, explained findings to --out; a short summary goes to stdout.

    Exit status 1 when a finding reaches the alert severity (medium unless the configuration says
    otherwise), 0 when none does, 2 on a usage or input error.
    """
    config = Config.from_toml(config_path) if config_path else None
    model = load_model(model_dir) if model_dir else None
    result = scan_logs(logs, model=model, config=config, baseline_until=_utc(baseline_until),
                       min_severity=min_severity, format=format_name, mappings=mappings, tz=tz)
    write_findings(result.findings, out, csv=with_csv)
    if rejects_out is not None:
        atomic_write(rejects_out, result.rejects.write_parquet)
    _print_summary(result.reports)
    alert = (config or Config()).alert_severity
    alerts = severity_at_least(result.findings, alert)
    click.echo(f"{result.events:,} events scored with model {result.model.model_id or '(learned from these logs)'}: "
               f"{result.findings.height} findings, {alerts.height} at {alert} or above")
    for line in summary_lines(result.findings):
        click.echo(line)
    if any(r.error for r in result.reports):
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_FINDINGS if alerts.height else EXIT_OK)


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory for the logs.")
@click.option("--days", type=click.IntRange(min=1), default=28, show_default=True, help="Days to simulate.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed; the same seed gives the same bytes.")
@click.option("--meters", type=click.IntRange(min=100), default=20_000, show_default=True, help="Electric meters.")
@click.option("--operators", type=click.IntRange(min=3), default=12, show_default=True,
              help="HES operators; admins and DMS staff scale with it.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default="2026-03-02", show_default=True,
              help="First local day.")
@click.option("--tz", default="America/Chicago", show_default=True, help="The utility's local time zone.")
@click.option("--baseline-days", type=click.IntRange(min=1), help="Incident-free days first [default: 3/4 of the run].")
@click.option("--gzip", "compress", is_flag=True, help="Write .gz files.")
@handle_errors
def simulate(out: Path, days: int, seed: int, meters: int, operators: int, start: Any, tz: str,
             baseline_days: int | None, compress: bool) -> None:
    """Write DAYS of realistic, labelled HES, DMS, Windows and VPN logs of a simulated utility.

    One file per source per local day in the five reference formats, and labels.json naming the
    incidents planted after the incident-free baseline.
    """
    from detector.simulate import simulate as run_simulation

    summary = run_simulation(out, days=days, seed=seed, meters=meters, operators=operators, start=start.date(),
                             tz=tz, baseline_days=baseline_days, compress=compress)
    click.echo(f"wrote {summary.total_events:,} events in {len(summary.files)} files and "
               f"{len(summary.incidents)} labelled incidents to {for_terminal(out)}", err=True)


@main.command()
def formats() -> None:
    """List the built-in formats, one per line."""
    for name, parser in PARSERS.items():
        click.echo(f"{name:<20} {parser.description}")
