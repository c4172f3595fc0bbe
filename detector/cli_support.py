"""What every ``ami-detector`` command shares: exit codes, error handling, the log-reading options.

Kept apart from :mod:`detector.cli` so that commands defined in their own modules (``nightly``,
``hunt``) can use it while :mod:`detector.cli` imports them.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click

from detector.errors import DetectorError
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
        except click.ClickException:
            raise  # usage errors: click prints them itself and exits 2
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
