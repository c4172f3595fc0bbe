"""What every ``ami-detector`` command shares: exit codes, error handling, the log-reading options.

Kept apart from :mod:`detector.cli` so that commands defined in their own modules (``nightly``,
``hunt``) can use it while :mod:`detector.cli` imports them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from detector.engines import Engine, engine_named
from detector.errors import DetectorError
from detector.safe_text import for_terminal

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    click.echo(f"ami-detector: error: {for_terminal(message)}", err=True)


def flag(name: str) -> bool:
    """Whether the flag *name* (``verbose``, ``quiet``, ``as_json``) was given to this command or a parent.

    Global options are accepted before and after the subcommand: ``ami-detector --json scan ...``
    and ``ami-detector scan ... --json`` mean the same.
    """
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get(name):
            return True
        ctx = ctx.parent
    return False


def global_options(command: F) -> F:
    """``--verbose``, ``--quiet`` and ``--json``, on the main group, the hunt group and every command.

    A command receives ``quiet`` and ``as_json`` already combined with its parents'; ``verbose`` is
    read by :func:`handle_errors`.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("verbose", None)
        kwargs["quiet"] = bool(kwargs.get("quiet")) or flag("quiet")
        kwargs["as_json"] = bool(kwargs.get("as_json")) or flag("as_json")
        return command(*args, **kwargs)

    for option in reversed([
        click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (no summary, no progress)."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print one JSON document on stdout instead of the human summary (for scripts)."),
        click.option("--verbose", is_flag=True, help="Show the full traceback of an error."),
    ]):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a process its pipe's reader closed


def handle_errors(command: F) -> F:
    """Turn expected errors into one line and exit 2; unexpected ones too, unless --verbose."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = flag("verbose")
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise  # usage errors: click prints them itself and exits 2
        except BrokenPipeError:
            # The reader closed the pipe (`scan ... | head`): it took what it wanted. Exit as a
            # process killed by SIGPIPE does, without an error message (and without Python's own
            # complaint when it flushes stdout at exit).
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_BROKEN_PIPE)
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
        click.option("--format", "format_name", metavar="NAME", help="Read every file in this format instead "
                     "of recognising each file's format from its first lines (see `ami-detector formats`)."),
        click.option("--mapping", "mappings", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="Mapping file (TOML) describing another CSV / JSON-lines export. Repeatable."),
        click.option("--tz", metavar="ZONE", help="IANA time zone of timestamps written without a UTC offset."),
    ]):
        command = option(command)
    return command


def engine_options(command: F) -> F:
    """``--engine``, ``--master``, ``--spark-conf`` and ``--spill-dir``: where the heavy stages run."""
    for option in reversed([
        click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
                     help="Where parsing (or reading an event store), scoring and training run: this process, "
                          "or Apache Spark (needs the ami-detector[spark] extra and Java 17+). The results are "
                          "the same."),
        click.option("--master", metavar="URL", help="Spark master URL (local[*], yarn, spark://HOST:7077, "
                     "k8s://...)  [default: local[*], or what spark-submit gives]"),
        click.option("--spark-conf", "spark_conf", multiple=True, metavar="KEY=VALUE",
                     help="A Spark setting, e.g. spark.executor.memory=8g. Repeatable."),
        click.option("--spill-dir", "spill_dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Where the parsed events are spilled while they are used: a new subdirectory of "
                          "DIR, removed after (DIR and its other files are left alone). With --engine spark "
                          "on a cluster, storage the driver and every executor see.  "
                          "[default: the system's temporary directory]"),
    ]):
        command = option(command)
    return command


def engine_of(name: str, master: str | None, spark_conf: Sequence[str]) -> Engine:
    """The engine the options name (the caller closes it)."""
    if name == "local":
        if master or spark_conf:
            raise click.UsageError("--master and --spark-conf need --engine spark")
        return engine_named("local")
    conf: dict[str, str] = {}
    for item in spark_conf:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--spark-conf")
        conf[key.strip()] = value.strip()
    # Under spark-submit the session's master comes from spark-submit.
    return engine_named("spark", master=master or ("local[*]" if "SPARK_ENV_LOADED" not in os.environ else None),
                        conf=conf)


def examples(*lines: str) -> str:
    """A help epilog of real examples, kept as written (click does not rewrap it)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


class UtcTime(click.ParamType):
    """A time in ISO 8601: a date, or a date and time with ``Z``, an offset, or none (then UTC).

    ``2026-04-01``, ``2026-04-01T00:00:00Z``, ``2026-04-01 06:00:00+02:00`` and
    ``2026-04-01T00:00`` are all accepted; the value is an aware UTC :class:`datetime`.
    """

    name = "time"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            moment = value
        else:
            text = str(value).strip()
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                self.fail(f"{text!r} is not an ISO 8601 time (e.g. 2026-04-01, 2026-04-01T00:00:00Z or "
                          "2026-04-01T06:00:00+02:00)", param, ctx)
        if isinstance(moment, date) and not isinstance(moment, datetime):  # pragma: no cover - fromisoformat
            moment = datetime(moment.year, moment.month, moment.day)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def one_line_usage_error(exc: click.ClickException, prog: str = "ami-detector") -> str:
    """A click error as the one line the README promises, with where to look for help."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else prog
    message = " ".join(exc.format_message().split())
    hint = f" (see '{where} --help')" if isinstance(exc, click.UsageError) else ""
    return f"{prog}: error: {for_terminal(message)}{hint}"


class OneLineErrors:
    """Mixin for the top-level group: usage errors as one line on stderr, exit status 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)  # type: ignore[misc]
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)  # type: ignore[misc]
        except click.ClickException as exc:
            click.echo(one_line_usage_error(exc), err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("ami-detector: aborted", err=True)
            sys.exit(EXIT_ERROR)
        sys.exit(result if isinstance(result, int) else EXIT_OK)


class MainGroup(OneLineErrors, click.Group):
    """The ``ami-detector`` group."""
