"""``ami-detector hunt NAME LOGS...``: the advisory hunts on the command line.

A click group with one subcommand per hunt (``firmware``, ``vendor-access``, ``accounts``,
``log-tamper``, ``ioc``). Each parses its options (bad ones fail before any log is read), reads
the logs (raw exports, or Parquet event tables written by ``ami-detector parse``), runs the hunt,
writes the table, optionally merges its findings into a scan's (and rebuilds that folder's
report.html), and prints a summary on stdout (with ``--json``, one JSON document). Exit status: 0
nothing called out, 1 something called out (even when some files could not be read: they are
named on stderr), 2 usage or input error, or no event could be read at all.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
import polars as pl

from detector.cli_support import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    examples,
    global_options,
    handle_errors,
    parse_options,
)
from detector.errors import ConfigError, InputError
from detector.findings import SEVERITIES
from detector.hunts import HUNTS
from detector.hunts.common import (
    TimeWindow,
    check_zone,
    json_frame,
    merge_findings,
    parse_networks,
    parse_windows,
    write_table,
)
from detector.hunts.firmware import load_manifest
from detector.hunts.ioc import load_indicators
from detector.hunts.vendor_access import DEFAULT_BUSINESS_HOURS
from detector.pipeline import plan_parse
from detector.safe_text import for_terminal
from detector.schema import empty_events, validate_events

F = TypeVar("F", bound=Callable[..., Any])


def hunt_options(command: F) -> F:
    """LOGS, the period, the outputs and merging: what every hunt takes."""
    for option in reversed([
        click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True)),
        click.option("--since", metavar="TIME",
                     help="Start of the period, ISO 8601: 2026-03-15, 2026-03-15T06:00:00Z or with an offset "
                     "(+02:00); without one, UTC."),
        click.option("--until", metavar="TIME", help="End of the period, as --since (exclusive; a date includes "
                     "that whole day)."),
        click.option("--out", type=click.Path(path_type=Path), help="Directory for NAME.parquet and NAME.jsonl, "
                     "or a file path whose stem they take."),
        click.option("--csv", "with_csv", is_flag=True, help="Also write NAME.csv (formula-safe cells)."),
        click.option("--merge-into", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     metavar="FINDINGS_DIR",
                     help="Add the called-out rows as findings to FINDINGS_DIR/findings.parquet and .jsonl, "
                     "and rebuild its report.html."),
        click.option("--severity", type=click.Choice(SEVERITIES), default="high", show_default=True,
                     help="Severity of the merged findings."),
        click.option("--merge-all", is_flag=True, help="Merge every row, not only the called-out ones."),
    ]):
        command = option(command)
    return command


def local_tz_option(command: F) -> F:
    return click.option("--local-tz", default="UTC", show_default=True, metavar="ZONE",
                        help="IANA zone in which the weekly windows are written, e.g. America/Chicago "
                        "(--tz is the zone of timestamps in the logs).")(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             short_help="Advisory hunts: exact answers with evidence, not scores.",
             epilog=examples("ami-detector hunt firmware logs/ --window 'Wed 00:00-04:00' --local-tz America/Chicago",
                             "ami-detector hunt vendor-access logs/ --account 'svc_vendor*' --cidr 203.0.113.0/24",
                             "ami-detector hunt ioc logs/ --indicators advisory.json --merge-into out/"))
@global_options
def hunt(quiet: bool, as_json: bool) -> None:
    """Advisory hunts: exact answers with evidence, not scores.

    \b
    firmware       firmware pushed in a period, by image, checked
    vendor-access  the vendor's sessions: VPN -> jump host -> HES
    accounts       accounts created, privileges granted, dormant accounts waking
    log-tamper     audit logs cleared, logging stopped, unusual silences
    ioc            published indicators matched against every event

    Exit status: 0 nothing called out, 1 something called out, 2 error.
    """


def load_events(logs: Sequence[str], *, format_name: str | None, mappings: Sequence[str],
                tz: str | None, quiet: bool = False) -> tuple[pl.DataFrame, list[dict[str, str]]]:
    """Events of raw exports and of Parquet event tables, and the files that could not be read.

    A summary (events, rejected lines) goes to stderr unless *quiet*; unreadable files always do.
    """
    tables = [p for p in logs if Path(p).is_file() and p.lower().endswith(".parquet")]
    raw = [p for p in logs if p not in tables]
    frames = [empty_events()]
    for path in tables:
        try:
            frames.append(validate_events(pl.read_parquet(path)))
        except Exception as exc:  # noqa: BLE001 - unreadable or not an event table: the same to the user
            raise InputError(f"{path}: not an event table from `ami-detector parse` ({exc})") from None
    rejects, files, failed = 0, len(tables), list[dict[str, str]]()
    if raw:
        run = plan_parse(raw, format=format_name, mappings=mappings, tz=tz)
        if not run.files and not tables:
            raise InputError("no log files found in the given paths")
        for chunk in run.chunks():
            frames.append(chunk.events)
            rejects += chunk.rejects.height
        files += len(run.files)
        for report in run.failed:
            click.echo(f"ami-detector: error: {for_terminal(report.path)}: {for_terminal(report.error)}", err=True)
            failed.append({"path": str(report.path), "error": str(report.error)})
    events = pl.concat(frames).rechunk()
    if not quiet:
        click.echo(f"{events.height:,} events from {files} file{'' if files == 1 else 's'} "
                   f"({rejects:,} lines rejected)", err=True)
    return events, failed


def finish(name: str, table: pl.DataFrame, *, out: Path | None, with_csv: bool, merge_into: Path | None,
           severity: str, merge_all: bool, failed: list[dict[str, str]], events: int = 0, quiet: bool = False,
           as_json: bool = False) -> None:
    """Write, merge (and rebuild the report), print the summary and exit with the hunt's status.

    Called-out rows win over unreadable files (exit 1, the files named on stderr); exit 2 only
    when files failed and no event was read at all.
    """
    hunt_ = HUNTS[name]
    paths: list[Path] = []
    merged: int | None = None
    if out is not None:
        paths = write_table(table, out, name, csv=with_csv)
        if not quiet and not as_json:
            click.echo("wrote " + ", ".join(for_terminal(p) for p in paths), err=True)
    if merge_into is not None:
        findings = hunt_.to_findings(table, severity, called_out_only=not merge_all)
        written = merge_findings(merge_into, findings)
        merged = findings.height
        paths += written
        paths.append(rebuild_report(merge_into))
        if not quiet and not as_json:
            click.echo(f"merged {findings.height} {name} findings into {for_terminal(written[0])}; "
                       f"report rebuilt: {for_terminal(merge_into / 'report.html')}", err=True)
    called_out = int(table.get_column("called_out").sum()) if table.height else 0
    if called_out:
        status = EXIT_FINDINGS
    else:
        status = EXIT_ERROR if failed and not events else EXIT_OK
    if as_json:
        click.echo(json.dumps({
            "command": "hunt", "hunt": name, "version": 1, "events": events,
            "files": {"failed": failed}, "rows": table.height, "called_out": called_out,
            "outputs": [str(p) for p in paths], "merged": merged, "exit_status": status,
            "answers": json.loads(json_frame(table).write_json()),
        }, ensure_ascii=True, indent=2))
    elif not quiet:
        for line in hunt_.summary(table):
            click.echo(line)
    sys.exit(status)


def rebuild_report(findings_dir: Path) -> Path:
    """Rewrite FINDINGS_DIR/report.html from the (merged) findings, so that it is never stale."""
    from detector.report import write_report

    target = findings_dir / "report.html"
    write_report(findings_dir, target, title=f"ami-detector findings: {findings_dir.resolve().name}")
    return target


@hunt.command("firmware", short_help="Firmware pushed in a period, by image, checked.",
              epilog=examples("ami-detector hunt firmware sample_logs/ --window 'Wed 00:00-04:00' "
                              "--local-tz America/Chicago",
                              "ami-detector hunt firmware events.parquet --manifest known_good.csv --since 2026-03-15 "
                              "--until 2026-04-30 --out hunts/"))
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of known-good images with a sha256 column (optional image, version).")
@click.option("--window", "windows", multiple=True, metavar='"DAYS HH:MM-HH:MM"',
              help='Weekly maintenance window, e.g. "Wed 00:00-04:00" or "Sat,Sun 22:00-02:00". Repeatable.')
@local_tz_option
@hunt_options
@parse_options
@global_options
@handle_errors
def firmware_command(manifest: Path | None, windows: tuple[str, ...], local_tz: str, logs: tuple[str, ...],
                     since: str | None, until: str | None, out: Path | None, with_csv: bool, merge_into: Path | None,
                     severity: str, merge_all: bool, format_name: str | None, mappings: tuple[str, ...],
                     tz: str | None, quiet: bool, as_json: bool) -> None:
    """Every firmware download and activation in the period, by image hash and version.

    Lists devices reached, accounts, addresses and times. Calls out hashes not in --manifest
    (without one: hashes never seen before), pushes outside the --window maintenance windows
    and pushes by accounts that never pushed firmware before.
    """
    known = load_manifest(manifest) if manifest else None
    parsed = parse_windows(windows)
    check_zone(local_tz)
    TimeWindow.of(since, until)
    events, failed = load_events(logs, format_name=format_name, mappings=mappings, tz=tz, quiet=quiet or as_json)
    table = HUNTS["firmware"].run(events, since=since, until=until, manifest=known, windows=parsed, tz=local_tz)
    finish("firmware", table, out=out, with_csv=with_csv, merge_into=merge_into, severity=severity,
           merge_all=merge_all, failed=failed, events=events.height, quiet=quiet,
           as_json=as_json)


@hunt.command("vendor-access", short_help="The vendor's sessions: VPN, jump host, HES.",
              epilog=examples("ami-detector hunt vendor-access sample_logs/ --account 'svc_vendor*' "
                              "--cidr 203.0.113.0/24 --local-tz America/Chicago",
                              "ami-detector hunt vendor-access events.parquet --cidr 203.0.113.0/24 "
                              "--business-hours 'Mon-Fri 07:00-18:00' --out hunts/"))
@click.option("--account", "accounts", multiple=True, metavar="NAME",
              help="Vendor account name or glob pattern (svc_vendor*). Repeatable.")
@click.option("--cidr", "cidrs", multiple=True, metavar="CIDR",
              help="Vendor address range (IPv4/IPv6 CIDR or address). Repeatable.")
@click.option("--business-hours", multiple=True, metavar='"DAYS HH:MM-HH:MM"',
              help="Weekly business hours; the rest is off hours. Repeatable. "
              f'[default: "{DEFAULT_BUSINESS_HOURS[0]}"]')
@local_tz_option
@click.option("--gap", type=click.IntRange(min=1), default=30, show_default=True, metavar="MINUTES",
              help="Silence that ends a session.")
@click.option("--max-session", type=click.FloatRange(min=0.1), default=12.0, show_default=True, metavar="HOURS",
              help="Longest a VPN connection or logon is followed to its disconnect or logoff.")
@click.option("--off-hours-threshold", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Share of a session off hours from which it is called out.")
@hunt_options
@parse_options
@global_options
@handle_errors
def vendor_access_command(accounts: tuple[str, ...], cidrs: tuple[str, ...], business_hours: tuple[str, ...],
                          local_tz: str, gap: int, max_session: float, off_hours_threshold: float,
                          logs: tuple[str, ...], since: str | None, until: str | None, out: Path | None,
                          with_csv: bool, merge_into: Path | None, severity: str, merge_all: bool,
                          format_name: str | None, mappings: tuple[str, ...], tz: str | None,
        quiet: bool, as_json: bool) -> None:
    """Every session of vendor accounts (--account) or from vendor ranges (--cidr).

    VPN, jump host, Windows and HES events are stitched into sessions with first and last seen,
    duration, path, hosts, actions, devices and the share off hours. Calls out sessions mostly
    off hours and VPN connections of vendor accounts from outside the vendor ranges.
    """
    if not accounts and not cidrs:
        raise ConfigError("vendor-access needs the vendor's accounts (--account) or address ranges (--cidr)")
    parse_networks(cidrs, what="--cidr")
    hours = parse_windows(business_hours or DEFAULT_BUSINESS_HOURS)
    check_zone(local_tz)
    TimeWindow.of(since, until)
    events, failed = load_events(logs, format_name=format_name, mappings=mappings, tz=tz, quiet=quiet or as_json)
    table = HUNTS["vendor-access"].run(events, accounts=accounts, cidrs=cidrs, since=since, until=until,
                                       business_hours=hours, tz=local_tz, gap=timedelta(minutes=gap),
                                       max_session=timedelta(hours=max_session),
                                       off_hours_threshold=off_hours_threshold)
    finish("vendor-access", table, out=out, with_csv=with_csv, merge_into=merge_into, severity=severity,
           merge_all=merge_all, failed=failed, events=events.height, quiet=quiet,
           as_json=as_json)


@hunt.command("accounts", short_help="Accounts created or granted and used; dormant ones waking.",
              epilog=examples("ami-detector hunt accounts sample_logs/ --since 2026-03-23",
                              "ami-detector hunt accounts events.parquet --since 2026-03-23T00:00:00Z "
                              "--use-within 24 --dormant-days 14 --merge-into out/"))
@click.option("--use-within", type=click.FloatRange(min=0.1), default=24.0, show_default=True, metavar="HOURS",
              help="Use this soon after a creation or grant is called out.")
@click.option("--dormant-days", type=click.FloatRange(min=0.1), default=14.0, show_default=True, metavar="DAYS",
              help="Silence after which an account's next activity is a wake-up.")
@hunt_options
@parse_options
@global_options
@handle_errors
def accounts_command(use_within: float, dormant_days: float, logs: tuple[str, ...], since: str | None,
                     until: str | None, out: Path | None, with_csv: bool, merge_into: Path | None, severity: str,
                     merge_all: bool, format_name: str | None, mappings: tuple[str, ...], tz: str | None,
        quiet: bool, as_json: bool) -> None:
    """Accounts created and privileges granted, and their use soon after; dormant accounts waking up.

    Calls out creations and grants used within --use-within hours, and every dormant account
    that woke up. With --since, accounts first seen in the period without a logged creation are
    listed too.
    """
    TimeWindow.of(since, until)
    events, failed = load_events(logs, format_name=format_name, mappings=mappings, tz=tz, quiet=quiet or as_json)
    table = HUNTS["accounts"].run(events, since=since, until=until, use_within=timedelta(hours=use_within),
                                  dormant_after=timedelta(days=dormant_days))
    finish("accounts", table, out=out, with_csv=with_csv, merge_into=merge_into, severity=severity,
           merge_all=merge_all, failed=failed, events=events.height, quiet=quiet,
           as_json=as_json)


@hunt.command("log-tamper", short_help="Audit logs cleared, logging stopped, silences.",
              epilog=examples("ami-detector hunt log-tamper sample_logs/ --since 2026-03-15",
                              "ami-detector hunt log-tamper events.parquet --min-gap 120 --out hunts/ --csv"))
@click.option("--silence-factor", type=click.FloatRange(min=1.0), default=3.0, show_default=True,
              help="A silence this many times a stream's normal longest silence is reported.")
@click.option("--silence-quantile", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Quantile of a stream's daily longest silences taken as its normal (0.5: the median day).")
@click.option("--min-gap", type=click.FloatRange(min=0.0), default=60.0, show_default=True, metavar="MINUTES",
              help="Silences shorter than this are never reported.")
@click.option("--min-events", type=click.IntRange(min=2), default=50, show_default=True,
              help="Streams with fewer events are not assessed for silences.")
@hunt_options
@parse_options
@global_options
@handle_errors
def log_tamper_command(silence_factor: float, silence_quantile: float, min_gap: float, min_events: int,
                       logs: tuple[str, ...], since: str | None, until: str | None, out: Path | None,
                       with_csv: bool, merge_into: Path | None, severity: str, merge_all: bool,
                       format_name: str | None, mappings: tuple[str, ...], tz: str | None,
        quiet: bool, as_json: bool) -> None:
    """Audit logs cleared, logging tampered with, and silences longer than a source's normal.

    A stream is one source format on one host; its normal is its longest silence of a typical
    day, learned from the days before --since when there are a week of them, else from all days.
    """
    TimeWindow.of(since, until)
    events, failed = load_events(logs, format_name=format_name, mappings=mappings, tz=tz, quiet=quiet or as_json)
    table = HUNTS["log-tamper"].run(events, since=since, until=until, silence_quantile=silence_quantile,
                                    silence_factor=silence_factor, min_gap=timedelta(minutes=min_gap),
                                    min_events=min_events)
    finish("log-tamper", table, out=out, with_csv=with_csv, merge_into=merge_into, severity=severity,
           merge_all=merge_all, failed=failed, events=events.height, quiet=quiet,
           as_json=as_json)


@hunt.command("ioc", short_help="Published indicators matched against every event.",
              epilog=examples("ami-detector hunt ioc sample_logs/ --indicators advisory.json",
                              "ami-detector hunt ioc events.parquet --indicators iocs.csv --merge-into out/ "
                              "--severity critical"))
@click.option("--indicators", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV (type,value[,description]) or STIX 2.1 bundle (JSON) of indicators.")
@hunt_options
@parse_options
@global_options
@handle_errors
def ioc_command(indicators: Path, logs: tuple[str, ...], since: str | None, until: str | None, out: Path | None,
                with_csv: bool, merge_into: Path | None, severity: str, merge_all: bool, format_name: str | None,
                mappings: tuple[str, ...], tz: str | None,
        quiet: bool, as_json: bool) -> None:
    """Indicators (addresses, CIDRs, accounts, file hashes, host names) matched against all events.

    Every indicator gets a row: one per event column it matched, or one saying it matched nothing.
    """
    table_of_indicators, notes = load_indicators(indicators)
    for note in notes if not quiet else []:
        click.echo(f"ami-detector: note: {for_terminal(note)}", err=True)
    TimeWindow.of(since, until)
    events, failed = load_events(logs, format_name=format_name, mappings=mappings, tz=tz, quiet=quiet or as_json)
    table = HUNTS["ioc"].run(events, table_of_indicators, since=since, until=until)
    finish("ioc", table, out=out, with_csv=with_csv, merge_into=merge_into, severity=severity,
           merge_all=merge_all, failed=failed, events=events.height, quiet=quiet,
           as_json=as_json)
