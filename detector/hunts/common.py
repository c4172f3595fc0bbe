"""What the hunts share: time windows, weekly windows, address and name matching, evidence, output.

Hunts run polars expressions over the events. Where Python has to look at values (CIDR membership
with :mod:`ipaddress`, glob patterns), it looks at the *distinct* values of a column only and the
answer is joined back onto the events.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from detector.atomic import atomic_write
from detector.errors import ConfigError, InputError
from detector.findings import (
    FINDINGS_SCHEMA,
    REQUIRED_COLUMNS,
    SEVERITIES,
    TOP_FEATURE,
    conform,
    defuse_formula,
    empty_findings,
    finding_ids,
    write_findings,
)
from detector.schema import EVENT_SCHEMA

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Evidence lines kept per row; ``event_count`` always counts every event.
EVIDENCE_CAP: Final = 500

#: Columns every hunt table ends with, in this order.
COMMON_TAIL: Final = ("called_out", "reasons", "description", "event_count", "evidence")

_DAYS: Final = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WINDOW_RE: Final = re.compile(
    r"^\s*(?P<days>[A-Za-z*][A-Za-z,\-*\s]*?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


# ---- events in -----------------------------------------------------------------------------------

def as_lazy(events: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """The events as a LazyFrame, after checking that they have the normalized schema's columns.

    Raises
    ------
    ConfigError
        When a column of the normalized event schema is missing.
    """
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    names = lf.collect_schema().names()
    missing = [c for c in EVENT_SCHEMA.names() if c not in names]
    if missing:
        raise ConfigError(f"the events lack column(s) {missing} of the normalized event schema")
    return lf


def as_utc(value: datetime | date | str | None, *, end_of_day: bool = False) -> datetime | None:
    """A time option as an aware UTC datetime.

    A naive datetime is UTC; a date (or ``YYYY-MM-DD`` text) is its UTC midnight, or with
    *end_of_day* the following midnight, so that ``until=2026-04-30`` includes the 30th.

    Raises
    ------
    ConfigError
        For text that is not an ISO 8601 date or time.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"{value!r} is not an ISO 8601 date or time (e.g. 2026-03-15 or "
                              "2026-03-15T06:00:00Z)") from None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0), tzinfo=UTC) + (timedelta(days=1) if end_of_day else timedelta(0))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class TimeWindow:
    """The hunt's period: ``since`` inclusive, ``until`` exclusive, both UTC; either may be open."""

    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def of(cls, since: datetime | date | str | None, until: datetime | date | str | None) -> TimeWindow:
        """Build a window from option values (see :func:`as_utc`).

        Raises
        ------
        ConfigError
            When a value is not a time, or ``since`` is not before ``until``.
        """
        window = cls(as_utc(since), as_utc(until, end_of_day=True))
        if window.since and window.until and window.since >= window.until:
            raise ConfigError(f"--since ({window.since:%Y-%m-%d %H:%M:%S}) must be before --until "
                              f"({window.until:%Y-%m-%d %H:%M:%S})")
        return window

    def contains(self, column: str | pl.Expr = "time") -> pl.Expr:
        """True for times inside the window."""
        expr = pl.col(column) if isinstance(column, str) else column
        cond = pl.lit(True)
        if self.since is not None:
            cond = cond & (expr >= self.since)
        if self.until is not None:
            cond = cond & (expr < self.until)
        return cond

    def overlaps(self, start: str | pl.Expr, end: str | pl.Expr) -> pl.Expr:
        """True for intervals [start, end] that share a moment with the window."""
        s = pl.col(start) if isinstance(start, str) else start
        e = pl.col(end) if isinstance(end, str) else end
        cond = pl.lit(True)
        if self.since is not None:
            cond = cond & (e >= self.since)
        if self.until is not None:
            cond = cond & (s < self.until)
        return cond

    def describe(self) -> str:
        since = f"{self.since:%Y-%m-%d %H:%M}" if self.since else "the first event"
        until = f"{self.until:%Y-%m-%d %H:%M}" if self.until else "the last event"
        return f"from {since} to {until} (UTC)"


# ---- weekly windows (maintenance windows, business hours) ----------------------------------------

def check_zone(tz: str) -> str:
    """*tz* if it is a known IANA time zone.

    Raises
    ------
    ConfigError
        For an unknown zone.
    """
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {tz!r}; use an IANA name such as America/Chicago or UTC") from None
    return tz


@dataclass(frozen=True)
class WeeklyWindow:
    """A window that repeats every week in local time, such as ``Wed 00:00-04:00``.

    ``days`` are ISO weekdays (Monday = 1) on which the window *starts*; ``start`` and ``end`` are
    minutes after local midnight. An ``end`` at or before ``start`` runs past midnight into the next
    day (``Sat 22:00-02:00`` ends on Sunday at 02:00); ``24:00`` is the end of the day.
    """

    text: str
    days: frozenset[int]
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> WeeklyWindow:
        """Parse ``"DAYS HH:MM-HH:MM"``.

        DAYS is a day (``Wed``, ``wednesday``), a range (``Mon-Fri``, ``Fri-Mon``), a comma list
        (``Sat,Sun``) or ``daily`` / ``*``.

        Raises
        ------
        ConfigError
            Naming what is wrong with *text*.
        """
        m = _WINDOW_RE.match(text)
        if not m:
            raise ConfigError(f"weekly window {text!r} is not like \"Wed 00:00-04:00\" or \"Mon-Fri 07:00-18:00\"")
        days = _parse_days(m["days"], text)
        start, end = _minutes(m["start"], text), _minutes(m["end"], text)
        if start == 1440:
            raise ConfigError(f"weekly window {text!r}: a window cannot start at 24:00")
        if start == end:
            raise ConfigError(f"weekly window {text!r} is empty (starts and ends at the same time); "
                              "use 00:00-24:00 for a whole day")
        return cls(text.strip(), frozenset(days), start, end)

    def pieces(self) -> list[tuple[frozenset[int], int, int]]:
        """(weekdays, start minute, end minute) pieces that each stay within one local day."""
        if self.end > self.start:
            return [(self.days, self.start, self.end)]
        following = frozenset(d % 7 + 1 for d in self.days)
        out = [(self.days, self.start, 1440)]
        if self.end > 0:
            out.append((following, 0, self.end))
        return out

    def __str__(self) -> str:
        return self.text


def _parse_days(spec: str, text: str) -> set[int]:
    spec = spec.strip().lower()
    if spec in ("*", "daily", "every day", "all"):
        return set(range(1, 8))
    days: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        bounds = [b.strip() for b in part.split("-")]
        if len(bounds) > 2 or not all(bounds):
            raise ConfigError(f"weekly window {text!r}: cannot read the days {part!r}")
        nums = [_day(b, text) for b in bounds]
        if len(nums) == 1:
            days.add(nums[0])
        else:
            first, last = nums
            span = (last - first) % 7
            days.update((first - 1 + i) % 7 + 1 for i in range(span + 1))
    return days


def _day(name: str, text: str) -> int:
    key = name[:3]
    full = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    if len(name) < 3 or not any(day.startswith(name) for day in full):
        raise ConfigError(f"weekly window {text!r}: {name!r} is not a day of the week (Mon, Tue, ... Sun)")
    return _DAYS[key]


def _minutes(hhmm: str, text: str) -> int:
    hours, minutes = (int(x) for x in hhmm.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ConfigError(f"weekly window {text!r}: {hhmm} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def parse_windows(values: Iterable[str | WeeklyWindow]) -> list[WeeklyWindow]:
    """Weekly windows from text (or already parsed); see :meth:`WeeklyWindow.parse`."""
    return [v if isinstance(v, WeeklyWindow) else WeeklyWindow.parse(v) for v in values]


def describe_windows(windows: Sequence[WeeklyWindow], tz: str) -> str:
    return ", ".join(str(w) for w in windows) + f" ({tz})"


def in_weekly_windows(column: str | pl.Expr, windows: Sequence[WeeklyWindow], tz: str) -> pl.Expr:
    """True where the UTC time in *column* falls inside one of *windows*, read in local zone *tz*.

    The expression is built from the (few) windows; it runs over the events in polars. Daylight
    saving is handled by the zone conversion: ``Wed 00:00-04:00`` is always local wall-clock time.
    """
    expr = pl.col(column) if isinstance(column, str) else column
    local = expr.dt.convert_time_zone(tz)
    weekday = local.dt.weekday()
    minute = local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute().cast(pl.Int32)
    cond = pl.lit(False)
    for window in windows:
        for days, start, end in window.pieces():
            cond = cond | (weekday.is_in(sorted(days)) & (minute >= start) & (minute < end))
    return cond


# ---- addresses and names ----------------------------------------------------------------------

def parse_networks(values: Iterable[str], *, what: str = "--cidr") -> list[IpNetwork]:
    """IPv4/IPv6 addresses and CIDR blocks as networks (an address is a /32 or /128).

    Host bits are allowed (``10.1.2.3/8`` is 10.0.0.0/8), as advisories often write them.

    Raises
    ------
    ConfigError
        Naming the value and the option it came from.
    """
    out: list[IpNetwork] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"{what}: {value!r} is not an IPv4/IPv6 address or CIDR block ({exc})") from None
    return out


def match_networks(addresses: Iterable[str | None], networks: Sequence[IpNetwork]) -> pl.DataFrame:
    """Which of the (distinct) *addresses* lie in which of *networks*.

    Returns
    -------
    polars.DataFrame
        ``address`` (the text as given) and ``network`` (its CIDR text), one row per match; text that
        is not an address matches nothing.
    """
    by_prefix: dict[tuple[int, int], set[IpNetwork]] = {}
    for net in networks:
        by_prefix.setdefault((net.version, net.prefixlen), set()).add(net)
    rows: list[tuple[str, str]] = []
    # One look-up per distinct address and prefix length, not per event or per network.
    for text in set(addresses):
        if text is None:
            continue
        try:
            addr = ipaddress.ip_address(text.strip())
        except ValueError:
            continue
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        for (version, prefix), members in by_prefix.items():
            if version != addr.version:
                continue
            candidate = ipaddress.ip_network((addr, prefix), strict=False)
            if candidate in members:
                rows.append((text, str(candidate)))
    return pl.DataFrame(rows, schema={"address": pl.String, "network": pl.String}, orient="row").sort(
        "address", "network")


def match_patterns(names: Iterable[str | None], patterns: Sequence[str]) -> pl.DataFrame:
    """Which of the (distinct) *names* match which glob *patterns* (``svc_vendor*``), case-insensitively.

    Returns
    -------
    polars.DataFrame
        ``name`` and ``pattern``, one row per match.
    """
    lowered = [p.strip().lower() for p in patterns if p.strip()]
    rows = [(n, p) for n in set(names) if n is not None for p in lowered if fnmatch.fnmatchcase(n.lower(), p)]
    return pl.DataFrame(rows, schema={"name": pl.String, "pattern": pl.String}, orient="row").sort("name", "pattern")


def normalized_account(column: str | pl.Expr) -> pl.Expr:
    """An account name as the event schema stores actors: lower case, without ``DOMAIN\\`` or ``@domain``."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.str.strip_chars().str.to_lowercase().str.replace(r"^.*\\", "").str.replace(r"@.*$", "")


def short_host(column: str | pl.Expr) -> pl.Expr:
    """``HES-APP01.util.local`` -> ``HES-APP01``; addresses stay as they are."""
    expr = pl.col(column) if isinstance(column, str) else column
    is_address = expr.str.contains(r"^\d{1,3}(\.\d{1,3}){3}$") | expr.str.contains(":")
    return pl.when(is_address).then(expr).otherwise(expr.str.extract(r"^([^.]+)").str.to_uppercase())


# ---- rows out ----------------------------------------------------------------------------------

def evidence_line() -> pl.Expr:
    """``raw_file:raw_line`` of each event (concat_str: see detector.features.common on pl.format)."""
    return pl.concat_str([pl.col("raw_file"), pl.lit(":"), pl.col("raw_line").cast(pl.String)])


def evidence_agg(column: str = "_evidence", cap: int = EVIDENCE_CAP) -> pl.Expr:
    """Evidence lines of a group in the order of the (time-sorted) input, without repeats, capped."""
    expr = pl.col(column).unique(maintain_order=True)
    return (expr.head(cap) if cap > 0 else expr).alias("evidence")


def distinct(column: str | pl.Expr) -> pl.Expr:
    """Distinct non-null values of a group, in order of first appearance."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.drop_nulls().unique(maintain_order=True)


def sentences(*parts: pl.Expr) -> pl.Expr:
    """A list of the non-null sentences among *parts* (each a string expression, null when not said)."""
    return pl.concat_list([p.cast(pl.String) for p in parts]).list.drop_nulls()


def utc_text(column: str | pl.Expr, fmt: str = "%Y-%m-%d %H:%M:%S") -> pl.Expr:
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.dt.to_string(fmt)


def local_text(column: str | pl.Expr, tz: str, fmt: str = "%a %Y-%m-%d %H:%M %Z") -> pl.Expr:
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.dt.convert_time_zone(tz).dt.to_string(fmt)


def clusters(frame: pl.LazyFrame, by: Sequence[str], gap: timedelta, *, start: str = "time",
             end: str | None = None, name: str = "_cluster") -> pl.LazyFrame:
    """Number runs of rows per *by*: a row more than *gap* after everything before it starts a new run.

    With *end*, a row covers [start, end] (a VPN session from connect to disconnect) and the next
    row continues the run if it starts within *gap* of the latest end so far.
    """
    finish = pl.col(end if end else start)
    reach = finish.cum_max().shift(1).over(by, order_by=[start])
    new = reach.is_null() | (pl.col(start) > reach + gap)
    return frame.sort([*by, start]).with_columns(new.cast(pl.Int32).cum_sum().over(by, order_by=[start]).alias(name))


def finish_table(frame: pl.DataFrame, columns: Sequence[str], sort: Sequence[str]) -> pl.DataFrame:
    """The hunt's table: *columns* then :data:`COMMON_TAIL`, called-out rows first."""
    ordered = frame.select([*columns, *COMMON_TAIL])
    return ordered.sort(["called_out", *sort], descending=[True, *([False] * len(sort))], nulls_last=True)


# ---- findings -----------------------------------------------------------------------------------

def hunt_findings(table: pl.DataFrame, *, detector: str, severity: str, entity_kind: pl.Expr, entity_id: pl.Expr,
                  key: pl.Expr, called_out_only: bool = True) -> pl.DataFrame:
    """Rows of a hunt table as findings (the :data:`detector.findings.FINDINGS_SCHEMA` contract).

    Score 1.0 (a hunt answers, it does not rank), the given *severity*, ``detector`` = the hunt's
    name, ``reasons`` = the row's call-outs and its description, no ``top_features``, ``model_id``
    null (no model scored it). ``finding_id`` comes from :func:`detector.findings.finding_ids` with
    the row's own *key* in place of the model id, so that two rows never share an id and the same
    input always gives the same ids.

    Raises
    ------
    ConfigError
        For an unknown severity.
    """
    if severity not in SEVERITIES:
        raise ConfigError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    rows = table.filter(pl.col("called_out")) if called_out_only else table
    if rows.height == 0:
        return empty_findings()
    frame = rows.select(
        entity_kind.cast(pl.String).alias("entity_kind"),
        entity_id.cast(pl.String).alias("entity_id"),
        pl.col("first_seen").alias("window_start"),
        pl.col("last_seen").fill_null(pl.col("first_seen")).alias("window_end"),
        pl.lit(1.0).alias("score"),
        pl.lit(severity).cast(FINDINGS_SCHEMA["severity"]).alias("severity"),
        pl.lit(detector).alias("detector"),
        pl.concat_list([pl.col("reasons"), pl.concat_list(pl.col("description"))]).list.drop_nulls()
        .list.unique(maintain_order=True).alias("reasons"),
        pl.lit([], dtype=pl.List(TOP_FEATURE)).alias("top_features"),
        pl.col("event_count").cast(pl.Int64),
        pl.col("evidence"),
        pl.concat_str([pl.lit(f"hunt:{detector}:"), key.cast(pl.String).fill_null("")]).alias("model_id"),
    )
    ids = finding_ids(frame)
    frame = frame.with_columns(ids, pl.lit(None, dtype=pl.String).alias("model_id"))
    return conform(frame)


def merge_findings(findings_dir: str | Path, new: pl.DataFrame) -> list[Path]:
    """Add *new* findings to ``findings.parquet`` / ``findings.jsonl`` in *findings_dir*.

    Rows are deduplicated by ``finding_id`` (the newer row wins), ranked, and written atomically;
    ``findings.csv`` is rewritten too when the directory has one. A directory without findings yet
    gets new files.

    Raises
    ------
    InputError
        When the directory does not exist or its findings.parquet is not a findings table.
    """
    directory = Path(findings_dir)
    if not directory.is_dir():
        raise InputError(f"findings directory {directory} does not exist (run `ami-detector scan --out` first)")
    path = directory / "findings.parquet"
    old = empty_findings()
    if path.exists():
        try:
            old = pl.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - any reader failure means the same to the user
            raise InputError(f"cannot read {path}: {exc}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in old.columns]
        if missing:
            raise InputError(f"{path} is not a findings table (missing {missing})")
        old = conform(old)
    merged = pl.concat([old, conform(new)])
    merged = merged.unique(subset="finding_id", keep="last", maintain_order=True)
    return write_findings(merged, directory, csv=(directory / "findings.csv").exists())


# ---- writing hunt tables -------------------------------------------------------------------------

def output_paths(out: str | Path, name: str, *, csv: bool = False) -> list[Path]:
    """Where a hunt table goes: ``DIR/NAME.parquet`` and ``.jsonl`` (``.csv``), or, for an ``--out``
    ending in .parquet / .jsonl / .csv, that path's stem with each suffix."""
    path = Path(out)
    base = path.with_suffix("") if path.suffix.lower() in (".parquet", ".jsonl", ".csv") else path / name
    suffixes = [".parquet", ".jsonl"] + ([".csv"] if csv else [])
    return [base.with_name(base.name + s) for s in suffixes]


def json_frame(table: pl.DataFrame) -> pl.DataFrame:
    """Times as ISO 8601 UTC text (like findings.jsonl), enums as text."""
    return table.with_columns(
        [pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ") for c, t in table.schema.items() if isinstance(t, pl.Datetime)]
        + [pl.col(c).cast(pl.String) for c, t in table.schema.items() if isinstance(t, (pl.Enum, pl.Categorical))])


def csv_frame(table: pl.DataFrame) -> pl.DataFrame:
    """A hunt table flattened for a spreadsheet: lists joined, times as text, every text cell defused."""
    exprs: list[pl.Expr] = []
    for column, dtype in table.schema.items():
        col = pl.col(column)
        if isinstance(dtype, pl.List):
            inner = col if dtype.inner == pl.String else col.list.eval(pl.element().cast(pl.String))
            exprs.append(inner.list.join(" " if column == "evidence" else " | "))
        elif isinstance(dtype, pl.Datetime):
            exprs.append(col.dt.to_string("%Y-%m-%dT%H:%M:%SZ"))
        elif isinstance(dtype, pl.Struct):
            exprs.append(col.struct.json_encode())
        elif isinstance(dtype, (pl.Enum, pl.Categorical)):
            exprs.append(col.cast(pl.String))
        else:
            exprs.append(col)
    flat = table.select(exprs)
    # The same rule as findings.csv (OWASP CSV injection), from the one place it is written.
    return flat.with_columns([defuse_formula(pl.col(c)).alias(c) for c, t in flat.schema.items() if t == pl.String])


def write_table(table: pl.DataFrame, out: str | Path, name: str, *, csv: bool = False) -> list[Path]:
    """Write a hunt table as Parquet and JSON lines (and formula-safe CSV), each file atomically."""
    paths = output_paths(out, name, csv=csv)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    atomic_write(paths[0], table.write_parquet)
    atomic_write(paths[1], json_frame(table).write_ndjson)
    if csv:
        atomic_write(paths[2], csv_frame(table).write_csv)
    return paths




# ---- the readable summary -----------------------------------------------------------------------

def summary_lines(name: str, table: pl.DataFrame, *, noun: str, limit: int = 40, width: int = 240) -> list[str]:
    """A hunt's table for the terminal: a count line, then each row's description and call-outs.

    Called-out rows come first and are marked ``!``. Log content is escaped (see
    :func:`detector.safe_text.for_terminal`).
    """
    from detector.safe_text import for_terminal

    def clip(text: str) -> str:
        text = for_terminal(text)
        return text if len(text) <= width else text[: width - 1] + "…"

    called = int(table.get_column("called_out").sum()) if table.height else 0
    lines = [f"{name}: {table.height} {noun}, {called} called out"]
    # Rendering a few result rows, not a loop over events.
    for row in table.head(limit).iter_rows(named=True):
        lines.append(f"{'!' if row['called_out'] else '-'} {clip(row['description'] or '')}")
        lines.extend(f"    {clip(reason)}" for reason in row["reasons"] or [] if reason != row["description"])
    if table.height > limit:
        lines.append(f"... and {table.height - limit} more in the output files")
    return lines


def counted(count: str | pl.Expr, singular: str, plural: str | None = None) -> pl.Expr:
    """``"1 download"`` / ``"3 downloads"`` from a count expression."""
    expr = pl.col(count) if isinstance(count, str) else count
    return pl.concat_str([expr.cast(pl.String), pl.lit(" "),
                          pl.when(expr == 1).then(pl.lit(singular)).otherwise(pl.lit(plural or singular + "s"))])


def elapsed(duration: pl.Expr) -> pl.Expr:
    """A duration as ``"8 seconds"``, ``"12 minutes"``, ``"5.5 hours"`` or ``"27.3 days"``."""
    seconds = duration.dt.total_milliseconds() / 1000
    return (pl.when(seconds < 90).then(counted(seconds.round(0).cast(pl.Int64), "second"))
            .when(seconds < 2 * 3600).then(counted((seconds / 60).round(0).cast(pl.Int64), "minute"))
            .when(seconds < 3 * 86400)
            .then(pl.concat_str([(seconds / 3600).round(1).cast(pl.String), pl.lit(" hours")]))
            .otherwise(pl.concat_str([(seconds / 86400).round(1).cast(pl.String), pl.lit(" days")])))


__all__ = ["EVIDENCE_CAP", "TimeWindow", "WeeklyWindow", "as_lazy", "as_utc", "check_zone", "counted", "csv_frame",
           "elapsed", "hunt_findings", "in_weekly_windows", "match_networks", "match_patterns", "merge_findings",
           "parse_networks", "parse_windows", "summary_lines", "write_table"]
