"""``ami-detector nightly``: the click shell over :func:`detector.nightly.run_nightly`.

Registered on the main group with ``main.add_command(nightly)``; it also runs on its own (tests).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from detector.cli_support import EXIT_ERROR, examples, global_options, handle_errors
from detector.errors import ConfigError
from detector.findings import severity_at_least, summary_lines
from detector.nightly import NightlyConfig, rollback_model, run_nightly, waiting_notes
from detector.safe_text import for_terminal


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               short_help="Take new exports from a drop folder, score them, report.",
               epilog=examples("ami-detector nightly --inbox /srv/ami-exports/inbox --state /var/lib/ami-detector "
                               "--out /var/lib/ami-detector/reports --model models/default",
                               "ami-detector nightly --config /etc/ami-detector/nightly.toml --quiet",
                               "ami-detector nightly --config /etc/ami-detector/nightly.toml --rollback"))
@click.option("--inbox", type=click.Path(file_okay=False, path_type=Path),
              help="Drop folder of exports; new and complete files are taken, by content hash.")
@click.option("--state", "state_dir", type=click.Path(file_okay=False, path_type=Path),
              help="State directory: event store, rejects, findings ledger, models, lock, run log.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Report directory: OUT/YYYY-MM-DD/ per report date and the symlink OUT/latest.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Initial model, used when the state has none yet [default: build a baseline first].")
@click.option("--retrain-every", metavar="DURATION",
              help="Retrain on the recent baseline this often, e.g. 7d, or 'never'  [default: 7d].")
@click.option("--keep", metavar="DURATION",
              help="Remove event, reject and findings partitions older than this, or 'never'  [default: 90d].")
@click.option("--settle", metavar="DURATION",
              help="Take an unchanged file this long after its last write  [default: 5m].")
@click.option("--tz", metavar="ZONE", help="IANA time zone of timestamps written without a UTC offset.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML file with a [nightly] table (and [features], [scoring], [alerts]); options override it.")
@click.option("--rollback", is_flag=True,
              help="Make the previous model active again and exit (needs only --state or --config).")
@global_options
@handle_errors
def nightly(inbox: Path | None, state_dir: Path | None, out: Path | None, model_dir: Path | None,
            retrain_every: str | None, keep: str | None, settle: str | None, tz: str | None,
            config_path: Path | None, rollback: bool, quiet: bool, as_json: bool) -> None:
    """Process new export files from --inbox, score what they touch, write a dated report to --out.

    Meant for a nightly timer: crash-safe (a killed run is finished by the next one, with no event
    lost or stored twice), locked against concurrent runs, and quiet unless a human is needed.

    Exit status: 0 nothing at or above the alert severity, 1 findings need a human (see
    OUT/latest/report.txt), 2 an error or an inbox file that could not be read (one line on stderr
    and in STATE/nightly.log). Every run writes a JSON summary to STATE/runs/ (with --json, also
    on stdout).
    """
    options = {"inbox": inbox, "state": state_dir, "out": out, "model": model_dir, "retrain_every": retrain_every,
               "keep": keep, "settle": settle, "tz": tz}
    if rollback:
        state = state_dir
        if state is None and config_path is not None:
            state = NightlyConfig.from_toml(config_path, **options).state
        if state is None:
            raise ConfigError("--rollback needs --state (or state in the [nightly] table of --config)")
        active, previous = rollback_model(state)
        if as_json:
            click.echo(json.dumps({"command": "nightly", "version": 1, "rollback": {"active": active,
                                                                                     "previous": previous}}))
        elif not quiet:
            click.echo(f"active model is now {active} (was {previous})")
        return
    if config_path is not None:
        config = NightlyConfig.from_toml(config_path, **options)
    else:
        config = NightlyConfig.from_mapping(options)
    summary = run_nightly(config)
    if summary.exit_code == EXIT_ERROR:
        click.echo(f"ami-detector: error: {for_terminal(summary.reason or 'see the run log')}", err=True)
    if as_json:
        # The same record as STATE/runs/<run id>.json; ensure_ascii keeps log content escaped.
        click.echo(json.dumps({"command": "nightly", "version": 1, **summary.to_dict()}, ensure_ascii=True,
                              indent=1, default=str))
        sys.exit(summary.exit_code)
    if quiet:
        sys.exit(summary.exit_code)
    click.echo(f"nightly {summary.run_id}: {for_terminal(summary.line())}")
    if summary.report:
        click.echo(f"report: {for_terminal(summary.report)}")
    for note in summary.notes:
        click.echo(f"note: {for_terminal(note)}", err=True)
    for note in waiting_notes(summary):
        click.echo(f"note: {note}", err=True)  # already escaped
    if summary.scored is not None:
        alerts = severity_at_least(summary.scored, summary.alert_severity)
        if alerts.height:
            for line in summary_lines(alerts):
                click.echo(line)
    sys.exit(summary.exit_code)
