"""The parser contract and the normalization every parser shares.

A parser turns numbered raw lines into a *staged* frame: ``raw_line``, ``raw``, an optional
``_error`` (why a line is rejected), and whichever schema columns it knows, as plain strings
(``time`` already a UTC datetime), in any row order. :func:`finalize` does everything that is the same
for all formats: splitting off rejects, account and address normalization, enum casting, line order.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from detector.errors import ConfigError, InputError
from detector.exprs import formatted
from detector.parsers.reader import detached
from detector.schema import (
    ACTION_CATEGORY,
    ACTIONS,
    CATEGORIES,
    DETAILS,
    EVENT_SCHEMA,
    OUTCOMES,
    REJECT_RAW_BYTES,
    REJECT_SCHEMA,
    SOURCE_SYSTEMS,
    UTC_US,
    Action,
    Category,
    Outcome,
    SourceSystem,
)

MAX_LINE_BYTES = 1 << 20  # longer lines are rejected: no real audit record is a megabyte


@dataclass(frozen=True)
class ParseOptions:
    """What a parser needs beyond the lines: the zone of naive timestamps and a reference time
    for formats whose timestamps carry no year (RFC 3164 syslog, some CEF ``rt`` values)."""

    tz: str | None = None
    reference_time: datetime | None = None

    def __post_init__(self) -> None:
        if self.tz is not None:
            check_timezone(self.tz)


def check_timezone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {tz!r}; use an IANA name such as UTC or America/Chicago") from None
    return tz


class Parser(ABC):
    """One raw format. Subclasses set the class metadata and implement :meth:`parse_chunk`.

    An instance reads one file: chunks arrive in order, so a parser may keep state between them
    (a CSV header, say).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    source_system: ClassVar[str] = "other"
    # Whether parse_chunk keeps nothing from one chunk to the next, so that chunks may be parsed
    # side by side (a CSV parser holds the header and a record still open, so it may not).
    independent_chunks: ClassVar[bool] = False
    # Text read per chunk: a parser whose staged frame is wide (dozens of columns per line) reads less
    # at a time, so that two chunks in flight stay well under a gigabyte.
    chunk_bytes: ClassVar[int] = 16 << 20
    # Whether the lines of several small files may be parsed as one chunk (:mod:`.together`): the
    # parser keeps no state from line to line (no CSV header) and raises :class:`FilesApart` where
    # its output would depend on which file a line came from.
    together: ClassVar[bool] = False
    # Event columns the parser stages already cleaned (:func:`clean`): finalize leaves them as they are.
    cleaned: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, path: str, options: ParseOptions) -> None:
        self.path = path
        self.options = options
        self._seen_offset = False  # whether any timestamp of the file so far had an offset
        # Set when the lines come from several files at once (see ``together``).
        self.files_together = False

    @classmethod
    @abstractmethod
    def sniff(cls, head: list[str]) -> bool:
        """Whether the first non-blank lines of a file look like this format."""

    @abstractmethod
    def parse_chunk(self, lines: pl.DataFrame, text: bytes | None = None) -> pl.DataFrame:
        """Stage the lines ``(raw_line, raw)`` of one chunk; see the module docstring.

        *text*, when the reader has it, is the same lines as the UTF-8 bytes they were read from
        (newline-separated), for a parser that can decode them in one piece.
        """

    def finish(self) -> pl.DataFrame | None:
        """Stage whatever is still held when the file ends (an unterminated record, say)."""
        return None

    # -- helpers for subclasses ---------------------------------------------------------------

    def with_time(self, staged: pl.DataFrame, column: str) -> pl.DataFrame:
        """Add ``time`` parsed from the text column *column* (see :meth:`with_times`)."""
        return self.with_times(staged, [column])

    def with_times(self, staged: pl.DataFrame, columns: Sequence[str],
                   labels: Sequence[str] | None = None) -> pl.DataFrame:
        """Add ``time`` from the first of *columns* that holds a stamp with an offset, else from the
        first that holds any stamp, placed in the ``--tz`` zone; and ``_time_field``, the label (from
        *labels*, else the column name) of the field each row's time came from.

        An offset-bearing field wins over a naive one in the same record, whatever their order: an
        NXLog record's UTC ``@timestamp`` beats its local ``EventTime``.

        Without ``--tz``, a row whose only stamps are naive is rejected on its own (the lines around
        it still parse), unless nothing in the file so far carried an offset: then the file was
        written in a zone only the user knows, and :class:`InputError` asks for it.
        """
        labels = list(labels or columns)
        year = self._year()
        parsed = [parse_times(staged.get_column(c), year=year) for c in columns]
        frame = staged.with_columns(
            _aware=pl.coalesce([a.alias(f"_a{i}") for i, (a, _) in enumerate(parsed)]),
            _naive=pl.coalesce([n.alias(f"_n{i}") for i, (_, n) in enumerate(parsed)]),
            _aware_from=pl.coalesce([pl.when(a.is_not_null()).then(pl.lit(lab)) for (a, _), lab in zip(parsed, labels)]),
            _naive_from=pl.coalesce([pl.when(n.is_not_null()).then(pl.lit(lab)) for (_, n), lab in zip(parsed, labels)]),
        )
        tz = self.options.tz
        naive_only = pl.col("_aware").is_null() & pl.col("_naive").is_not_null()
        if tz is None and self.files_together and frame.select(naive_only.any()).item():
            raise FilesApart("a naive timestamp without --tz: its reading depends on the rest of its file")
        if tz is None:
            has_aware = frame.get_column("_aware").null_count() < frame.height
            self._seen_offset = self._seen_offset or has_aware
            # Only the first chunk asks: a later one may be parsed beside it, before its offsets are seen.
            at_start = bool(frame.height) and int(frame.get_column("raw_line").min()) <= START_LINES  # type: ignore[arg-type]
            if not self._seen_offset and at_start:
                naive_rows = frame.select("raw_line", "_naive_from", naive_only.alias("_n")).filter("_n")
                if naive_rows.height:
                    line, field = naive_rows.sort("raw_line").row(0)[:2]
                    value = frame.filter(pl.col("raw_line") == line).get_column(
                        columns[labels.index(field)]).item(0)
                    raise InputError(_zone_question(value, field), source=(self.path, int(line)))
            error = pl.when(naive_only).then(formatted(
                "timestamp {} has no UTC offset while other lines of this file have one; pass --tz ZONE "
                "with the zone of the machine that wrote it to read it", pl.col("_naive_from")))
            frame = frame.with_columns(
                time=pl.col("_aware"), _time_field=pl.col("_aware_from"),
                _error=pl.coalesce(pl.col("_error"), error) if "_error" in frame.columns else error)
        else:
            local = pl.col("_naive").dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null") \
                .dt.convert_time_zone("UTC")
            frame = frame.with_columns(
                time=pl.coalesce("_aware", local),
                _time_field=pl.coalesce("_aware_from", formatted("{} (--tz {})", pl.col("_naive_from"), pl.lit(tz))))
        return frame.drop("_aware", "_naive", "_aware_from", "_naive_from")

    def _year(self) -> int:
        ref = self.options.reference_time
        return (ref or datetime.now()).year


START_LINES = 100


# Lines of files read together are numbered ``file index << FILE_SHIFT | line`` (see ``together``); a
# file's line numbers stay below 2**32: files read together are a few MiB each.
FILE_SHIFT = 32
FILE_OF_LINE = (pl.col("raw_line") // (1 << FILE_SHIFT)).alias("_file")


class FilesApart(Exception):
    """Lines of several files parsed as one met something whose reading depends on the rest of its
    own file (a naive timestamp, a yearless one near the file's date): parse the files one by one."""


def late_yearless(frame: pl.DataFrame, parser: Parser, yearless: pl.Expr) -> pl.Expr:
    """Whether a yearless stamp's time is after the reference time (two days of slack absorb any zone
    difference between the stamp and the reference): then it belongs to the year before (December logs
    read in January). Several files read as one share the earliest of their reference times, which
    decides the same for every line unless a yearless stamp is late for it: then :class:`FilesApart`."""
    ref = parser.options.reference_time or datetime.now()
    if ref.tzinfo is not None:
        ref = ref.astimezone(UTC).replace(tzinfo=None)
    late = yearless & (pl.col("time") > pl.lit(ref + timedelta(days=2)).cast(pl.Datetime("us"))
                       .dt.replace_time_zone("UTC"))
    if parser.files_together and frame.select(late.any()).item():
        raise FilesApart("a yearless timestamp after the earliest file's date")
    return late


def _zone_question(value: object, field: str) -> str:
    return (f"timestamp {value!r} ({field}) has no UTC offset, and no line before it carried one: in which "
            "time zone was the export written? Pass --tz with that zone (an IANA name such as "
            "America/Chicago; the zone of the machine or collector that wrote the file, which is "
            "often not UTC)")


# Type coercion and checks, no optimizer passes: a chunk's query already reads a frame in memory, in the
# order it is written, and planning it (common subexpressions, pushdowns, clustering) cost a fifth of the
# time of a small file's queries while saving nothing measurable on a 16 MiB chunk.
_CHUNK_QUERY = pl.QueryOptFlags.none()


def collect(query: pl.LazyFrame) -> pl.DataFrame:
    """Run a query over one chunk with polars' in-memory engine and few optimizer passes.

    A chunk is already in memory: the streaming engine's split into morsels costs more than it saves
    here (about twice the time), and would run :func:`per_distinct` once per morsel.
    """
    return query.collect(engine="in-memory", optimizations=_CHUNK_QUERY)


def spread(long: pl.DataFrame, height: int, names: Sequence[str],
           keep: Literal["first", "last"] = "first") -> dict[str, pl.Series]:
    """Wide columns from rows ``(_row, _name, _value)`` of *long*: for each of *names*, *height*
    values holding, at each ``_row``, the first (or last) ``_value`` given for that name, in *long*'s
    order; null where none is.

    A pivot would do, at twice the cost: each name's values go straight to their row positions.
    """
    row = pl.col("_row")
    kept = (row.is_first_distinct() if keep == "first" else row.is_last_distinct()).over("_name")
    # Every step below is a query of its own: on a chunk of a few lines their fixed cost is the whole
    # cost, so the kept values are found once for all names, and a name that is never given shares
    # one column of nulls.
    by_name = long.filter(kept).partition_by("_name", as_dict=True, include_key=False, maintain_order=True)
    nothing = pl.repeat(None, height, dtype=pl.String, eager=True)
    columns = {}
    for name in names:
        if (name,) in by_name:
            given = by_name[(name,)]
            column = pl.repeat(None, height, dtype=pl.String, eager=True).alias(name)
            column.scatter(given.get_column("_row"), given.get_column("_value"))
        else:
            column = nothing.alias(name)
        columns[name] = column
    return columns


# ---- timestamps -------------------------------------------------------------------------------

_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_NAIVE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M:%S%.f",
    "%b %d %Y %H:%M:%S%.f",
    "%d %b %Y %H:%M:%S%.f",
    "%m/%d/%Y %H:%M:%S%.f",
    "%m/%d/%Y %I:%M:%S %p",  # PowerShell Export-Csv in the en-US culture
    "%Y %b %d %H:%M:%S%.f",  # yearless syslog / CEF stamps, after the year is put in front
)
_UTC_SUFFIX = r"(?i)\s*(?:UTC|GMT|Z)$"

# Tried first, each only on the rows still unparsed: almost every export uses one of these, so a
# chunk usually costs a single strptime instead of every format in turn.
_FAST_PATHS: tuple[tuple[str, str], ...] = (
    ("aware", "%Y-%m-%dT%H:%M:%S%.f%#z"),
    ("naive", "%Y-%m-%dT%H:%M:%S%.f"),
    ("aware", "%Y-%m-%d %H:%M:%S%.f%#z"),
    ("naive", "%Y-%m-%d %H:%M:%S%.f"),
)


def parse_times(text: pl.Series, *, year: int) -> tuple[pl.Series, pl.Series]:
    """Parse timestamp strings into ``(aware UTC, naive)`` series aligned with *text*.

    The common ISO forms are tried one at a time on the rows still unparsed; whatever remains goes
    through every form :func:`parse_any_time` knows.
    """
    stripped = text.cast(pl.String).str.strip_chars()
    aware = pl.repeat(None, stripped.len(), dtype=UTC_US, eager=True).alias("aware")
    naive = pl.repeat(None, stripped.len(), dtype=pl.Datetime("us"), eager=True).alias("naive")
    todo = stripped.to_frame("_t").with_row_index("_pos").filter(pl.col("_t").is_not_null())
    if todo.height:
        values = _utc_iso(todo.get_column("_t"))
        if todo.height == stripped.len() and not values.null_count():
            # Every row a stamp of the common form (a whole command log, say): nothing to place.
            return values.cast(UTC_US).alias("aware"), naive
        found = values.is_not_null()
        aware.scatter(todo.get_column("_pos").filter(found), values.filter(found))
        todo = todo.filter(~found)
    for kind, fmt in _FAST_PATHS:
        if todo.height == 0:
            break
        target, dtype = (aware, UTC_US) if kind == "aware" else (naive, pl.Datetime("us"))
        values = todo.get_column("_t").str.strptime(dtype, fmt, strict=False)
        found = values.is_not_null()
        target.scatter(todo.get_column("_pos").filter(found), values.filter(found))
        todo = todo.filter(~found)
    if todo.height:
        rest_aware, rest_naive = parse_any_time(todo.get_column("_t"), year=year)
        aware.scatter(todo.get_column("_pos"), rest_aware)
        naive.scatter(todo.get_column("_pos"), rest_naive)
    return aware, naive


_UTC_ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$"


def _utc_iso(text: pl.Series) -> pl.Series:
    """``2026-04-14T02:13:07.412Z``, the most common stamp of all, read by position; null otherwise.

    Gives what the first fast path would, several times faster: a fixed-width format is parsed by
    polars' own fast reader rather than the general one, and the fraction (truncated to
    microseconds, as the general reader does) is added. An invalid date or time stays null.
    """
    t = pl.col("_t")
    # The fraction's first six digits (of 0-9, between "." and "Z"), scaled to microseconds.
    digits = (t.str.len_chars() - 21).clip(0, 6)
    fraction = (t.str.slice(20, digits).cast(pl.Int64, strict=False).fill_null(0)
                * pl.lit(10, pl.Int64).pow(6 - digits))
    return text.to_frame("_t").select(
        pl.when(t.str.contains(_UTC_ISO))
        .then(t.str.slice(0, 19).str.strptime(pl.Datetime("us"), "%Y-%m-%dT%H:%M:%S", strict=False)
              + pl.duration(microseconds=fraction))
        .dt.replace_time_zone("UTC")
    ).to_series()


def parse_any_time(text: pl.Series, *, year: int) -> tuple[pl.Series, pl.Series]:
    """Parse timestamp strings in any form the parsers know into ``(aware, naive)``.

    ``aware`` is a UTC datetime for ISO 8601 / RFC 3339 stamps with an offset, stamps ending in
    a UTC/GMT zone name, and epoch seconds or milliseconds; ``naive`` is a zone-less datetime for
    stamps without an offset, to be placed in the user's zone. Yearless stamps (``Apr 14
    02:11:40``) get *year*.
    """
    if text.null_count() == text.len():  # no stamp at all (a field that no line of the chunk has)
        return (pl.repeat(None, text.len(), dtype=UTC_US, eager=True),
                pl.repeat(None, text.len(), dtype=pl.Datetime("us"), eager=True))
    t = pl.col("_t")
    squeezed, full = pl.col("_squeezed"), pl.col("_full")
    frame = collect(
        text.cast(pl.String).to_frame("_t").lazy()
        .with_columns(_squeezed=t.str.replace_all(r"\s+", " "))
        .with_columns(_full=pl.when(squeezed.str.contains(r"^[A-Za-z]{3} \d{1,2} \d{1,2}:\d{2}:\d{2}"))
                      .then(pl.lit(f"{year} ") + squeezed).otherwise(squeezed))
        .with_columns(_utc=full.str.contains(_UTC_SUFFIX), _bare=full.str.replace(_UTC_SUFFIX, ""))
    )
    naive = first_non_null(
        frame, [pl.col("_bare").str.strptime(pl.Datetime("us"), f, strict=False) for f in _NAIVE_FORMATS],
        pl.Datetime("us"))
    frame = frame.with_columns(_naive=naive)
    digits = pl.when(t.str.contains(r"^\d{9,14}(?:\.\d+)?$")).then(t.cast(pl.Float64, strict=False))
    epoch = (
        pl.when(digits >= 1e11).then(digits * 1_000)  # milliseconds
        .otherwise(digits * 1_000_000)
        .cast(pl.Int64, strict=False)
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
    )
    aware = first_non_null(
        frame,
        [full.str.strptime(UTC_US, f, strict=False) for f in _AWARE_FORMATS]
        + [pl.when(pl.col("_utc")).then(pl.col("_naive").dt.replace_time_zone("UTC")), epoch],
        UTC_US)
    return aware, frame.select(pl.when(~pl.col("_utc")).then(pl.col("_naive"))).to_series()


def first_non_null(frame: pl.DataFrame, candidates: Sequence[pl.Expr], dtype: pl.DataType) -> pl.Series:
    """``pl.coalesce(candidates)`` over *frame*, each candidate evaluated only on the rows that the
    ones before it left null.

    ``coalesce`` evaluates every candidate on every row; when the first candidate settles most
    rows, as the usual timestamp format does, this costs little more than that one.
    """
    result = pl.repeat(None, frame.height, dtype=dtype, eager=True)
    todo = frame.with_row_index("_pos")
    for candidate in candidates:
        if todo.height == 0:
            break
        values = todo.select(candidate.cast(dtype)).to_series()
        found = values.is_not_null()
        if found.any():
            result.scatter(todo.get_column("_pos").filter(found), values.filter(found))
            todo = todo.filter(~found)
    return result


# ---- accounts and addresses ---------------------------------------------------------------------

_NO_VALUE = ("", "-", "n/a", "na", "null", "none", "(null)")
# Every upper/lower-case spelling of the placeholders, so that spotting them needs no lower-cased copy
# of the column. Only ASCII letters lower-case to these ASCII strings (the one other character that
# lower-cases to ASCII is the Kelvin sign, to "k", which no placeholder holds).
_NO_VALUE_ANY_CASE = tuple(sorted(
    {"".join(chars) for word in _NO_VALUE for chars in itertools.product(*({c, c.upper()} for c in word))}))


def first_present(*exprs: pl.Expr | None) -> pl.Expr:
    """The first non-null of *exprs*, leaving out the None ones (sources a chunk does not have: a pass
    over a column of nulls still costs one); a null String when none is left."""
    return pl.coalesce([e for e in exprs if e is not None] or [pl.lit(None, pl.String)])


def clean(expr: pl.Expr) -> pl.Expr:
    """Trimmed text, with the usual placeholders for 'nothing' turned into null."""
    return expr.cast(pl.String).str.strip_chars().replace(_NO_VALUE_ANY_CASE, None)


_STRING = pl.String()


def per_distinct(expr: pl.Expr, fn: Callable[[pl.LazyFrame], pl.LazyFrame],
                 dtype: pl.DataType = _STRING) -> pl.Expr:
    """*fn* applied once per distinct value of *expr* instead of once per row.

    Accounts, addresses, host names and the exporters' own action and status words repeat thousands
    of times in a chunk, while normalizing one is a chain of string operations; mapping the distinct
    results back costs one hash lookup a row. *fn* turns a frame of one String column ``v`` (its
    distinct values, null included) into a frame of one column of *dtype*, row for row.
    """
    def apply(values: pl.Series) -> pl.Series:
        distinct = values.unique()
        mapped = collect(fn(distinct.to_frame("v").lazy())).to_series()
        known = distinct.is_not_null()
        of_null = mapped.filter(~known)
        default = of_null.item() if of_null.len() else None
        # Mapping every row back costs a hash lookup a row; two common outcomes need none: every value
        # its own result (addresses and account names already in their normal form), or none a result.
        if default is None and mapped.null_count() == mapped.len():
            return pl.repeat(None, values.len(), dtype=dtype, eager=True).alias(values.name)
        if default is None and dtype == _STRING and mapped.filter(known).equals(distinct.filter(known)):
            return values
        return values.replace_strict(distinct.filter(known), mapped.filter(known), default=default, return_dtype=dtype)

    # Not declared elementwise: polars would then call it once per piece of a many-piece column.
    return expr.cast(pl.String).map_batches(apply, return_dtype=dtype)


_V = pl.col("v")


def account_expr(expr: pl.Expr) -> pl.Expr:
    """The account without its domain, lower-cased: ``UTIL\\JDoe`` and ``jdoe@util.local`` are ``jdoe``."""
    return per_distinct(expr, lambda frame: frame.select(
        clean(clean(_V).str.replace(r"^[^\\]*\\", "").str.replace(r"@[^@]*$", "").str.to_lowercase())))


def domain_expr(expr: pl.Expr) -> pl.Expr:
    """The domain part of an account written ``DOMAIN\\user`` or ``user@domain``, if any."""
    return per_distinct(expr, lambda frame: frame.with_columns(v=clean(_V)).select(
        clean(pl.coalesce(_V.str.extract(r"^([^\\]*)\\", 1), _V.str.extract(r"@([^@]*)$", 1)))))


_IPV4 = r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
_IPV6 = r"^[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?::(?:\d{1,3}\.){3}\d{1,3})?$"


def ip_expr(expr: pl.Expr) -> pl.Expr:
    """A validated textual IPv4 or IPv6 address, or null. IPv4-mapped IPv6 becomes IPv4."""
    return per_distinct(expr, _ip)


def _ip(frame: pl.LazyFrame) -> pl.LazyFrame:
    # One step per rewrite: nested in one expression, each step would repeat all the steps before it.
    v6_ok = _V.str.contains(_IPV6) & (_V.str.count_matches("::") <= 1) & (
        (_V.str.count_matches(":") == 7) | _V.str.contains("::"))
    return (
        frame.with_columns(v=clean(_V).str.to_lowercase())
        # Ports are only unambiguous as "[v6]:port" and "a.b.c.d:port"; a bare IPv6 address ends in digits too.
        .with_columns(
            v=pl.when(_V.str.starts_with("[")).then(_V.str.extract(r"^\[([^\]]*)\]", 1))
            .when(_V.str.contains(r"^\d{1,3}(?:\.\d{1,3}){3}:\d+$")).then(_V.str.replace(r":\d+$", ""))
            .otherwise(_V)
            .str.replace(r"%.*$", ""))
        .with_columns(v=pl.when(_V.str.contains(r"^::ffff:\d")).then(_V.str.slice(7)).otherwise(_V))
        .select(pl.when(_V.str.contains(_IPV4) | v6_ok).then(_V))
    )


def short_host_expr(expr: pl.Expr) -> pl.Expr:
    """One spelling per machine: ``WORKSTATION5.theshire.local``, ``\\\\Workstation5`` and ``workstation5``
    are all ``workstation5``; an IP address stays as it is."""
    return per_distinct(expr, lambda frame: frame.with_columns(v=clean(_V).str.strip_prefix("\\\\")).select(
        pl.when(_V.str.contains(r"^\d{1,3}(?:\.\d{1,3}){3}$") | _V.str.contains(":")).then(_V)
        .otherwise(clean(_V.str.extract(r"^([^.]*)", 1).str.to_lowercase()))))


# ---- finalize -------------------------------------------------------------------------------------

_STRING_COLUMNS = [c for c, t in EVENT_SCHEMA.items() if t == pl.String]
_AS_WRITTEN = ("old_value", "new_value")
_CLEANED_LATER = ("host", "host_as_written", "account", "src_ip")


def _as_written(expr: pl.Expr) -> pl.Expr:
    text = expr.cast(pl.String).str.strip_chars()
    return pl.when(~text.is_in(["", "-"])).then(text)


_NO_REJECTS = pl.DataFrame(schema=REJECT_SCHEMA)


def finalize(staged: pl.DataFrame, *, source_format: str, raw_file: str,
             source_system: str, cleaned: Collection[str] = ()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a staged frame into normalized events and rejects (see the module docstring); the
    *cleaned* columns are taken as already cleaned."""
    error: pl.Expr = pl.when(pl.col("time").is_null()).then(pl.lit("missing or unparseable timestamp"))
    if "_error" in staged.columns:
        error = pl.coalesce(pl.col("_error"), error)
    errors = staged.select(error.alias("_error")).to_series()
    # Only the columns an event or a reject is made of go on: the query runs without projection pushdown,
    # so every other staged column would be carried through each step.
    used = [c for c in staged.columns if c in EVENT_SCHEMA or c in ("raw_line", "raw")]
    missing = {c: pl.lit(None, pl.String) for c in EVENT_SCHEMA if c not in staged.columns}
    if "details" in missing:
        missing["details"] = pl.lit(None, DETAILS)
    lazy = staged.select(used).lazy().with_columns(**missing)
    if errors.null_count() == errors.len():  # the usual chunk: no reject, so no filter (a copy of every column)
        rejects = _NO_REJECTS
        kept = lazy
    else:
        lazy = lazy.with_columns(errors)
        rejects = collect(lazy.filter(pl.col("_error").is_not_null()).select(
            raw_file=pl.lit(raw_file),
            raw_line=pl.col("raw_line").cast(pl.Int64),
            source_format=pl.lit(source_format),
            reason=pl.col("_error"),
            raw=pl.col("raw").str.head(REJECT_RAW_BYTES),
        ).sort("raw_line", maintain_order=True))
        kept = lazy.filter(pl.col("_error").is_null())
    action = pl.col("action")
    # A column with no value needs no work at all (a pass over a column of nulls still costs one), nor
    # cleaning one the parser cleaned; those the steps below clean themselves (once per distinct value,
    # or in a coalesce) are not cleaned first.
    nothing = set(missing) | {c for c in staged.columns if staged.get_column(c).null_count() == staged.height}
    as_they_are = nothing | set(cleaned)

    def cleaned_column(c: str) -> pl.Expr:
        if c in nothing:
            return pl.lit(None, pl.String)
        return pl.col(c).cast(pl.String) if c in as_they_are else clean(pl.col(c))

    def present(c: str, expr: pl.Expr) -> pl.Expr | None:
        """*expr* of column *c*, or None when *c* holds nothing (see :func:`first_present`)."""
        return None if c in nothing else expr

    def unless_nothing(c: str, expr: pl.Expr) -> pl.Expr:
        """*expr*, a String that is null where column *c* is null."""
        return pl.lit(None, pl.String) if c in nothing else expr

    def known_word(c: str, words: Sequence[str], default: str | None, dtype: pl.Enum) -> pl.Expr:
        """Column *c* as one of *words* (*default* for any other value or none); a parser may stage it
        already in *dtype*, whose words are all known."""
        if staged.schema.get(c) == dtype:
            return pl.col(c).fill_null(default) if default is not None else pl.col(c)
        return cleaned_column(c).replace_strict({w: w for w in words}, default=default, return_dtype=dtype)

    category_of_action = action.replace_strict(ACTION_CATEGORY, default="system", return_dtype=Category)
    # One lazy query, not eager steps: polars then computes the independent columns in parallel.
    events = collect(kept.with_columns(
        [cleaned_column(c).alias(c) for c in _STRING_COLUMNS if c not in ("raw_file", *_AS_WRITTEN, *_CLEANED_LATER)]
        # Values are kept as written: a group may be called "None" (every local user's primary group),
        # a setting may be set to "null"; only an empty value or Windows' "-" means there is none.
        + [unless_nothing(c, _as_written(pl.col(c))).alias(c) for c in _AS_WRITTEN],
        # Computed once: the query runs without common-subexpression elimination.
        action=known_word("action", ACTIONS, "other", Action),
    ).with_columns(
        time=pl.col("time").cast(UTC_US),
        source_system=pl.coalesce(pl.col("source_system"), pl.lit(source_system)).replace_strict(
            {s: s for s in SOURCE_SYSTEMS}, default="other", return_dtype=SourceSystem),
        source_format=pl.lit(source_format),
        host=unless_nothing("host", short_host_expr(pl.col("host"))),
        host_as_written=first_present(*[present(c, clean(pl.col(c))) for c in ("host_as_written", "host")]),
        account=unless_nothing("account", account_expr(pl.col("account"))),
        account_domain=first_present(present("account_domain", clean(pl.col("account_domain"))),
                                     present("account", domain_expr(pl.col("account")))),
        src_ip=unless_nothing("src_ip", ip_expr(pl.col("src_ip"))),
        action=action,
        # Every action has its category: the parser's own category, when it names one of the known, wins.
        category=category_of_action if "category" in nothing else pl.coalesce(
            known_word("category", CATEGORIES, None, Category),
            category_of_action,
        ),
        outcome=known_word("outcome", OUTCOMES, "unknown", Outcome),
        target_count=first_present(
            present("target_count", pl.col("target_count").cast(pl.String).str.strip_chars().cast(pl.Int32, strict=False)),
            pl.when(pl.col("target_id").is_not_null()).then(pl.lit(1, pl.Int32))),
        raw_file=pl.lit(raw_file),
        raw_line=pl.col("raw_line").cast(pl.Int64),
    ).select(list(EVENT_SCHEMA)).cast(EVENT_SCHEMA))
    # A parser may stage lines out of order (decoded apart by their shape); events leave in line order.
    if not events.get_column("raw_line").is_sorted():
        events = events.sort("raw_line", maintain_order=True)
    return events, rejects.cast(REJECT_SCHEMA)


def time_field_counts(staged: pl.DataFrame, *keys: pl.Expr) -> pl.DataFrame | None:
    """How many kept events took their time from which field (``*keys, _time_field, len``; what
    ``ParsedChunk.time_fields`` holds), or None for a parser with a single time field."""
    if "_time_field" not in staged.columns:
        return None
    kept = pl.col("time").is_not_null() & pl.col("_time_field").is_not_null()
    if "_error" in staged.columns:
        kept &= pl.col("_error").is_null()
    return staged.lazy().filter(kept).group_by(*keys, "_time_field", maintain_order=True).len().collect()


def settled_rejects(rejects: pl.DataFrame) -> pl.DataFrame:
    """A file's rejects in line order, their raw text in buffers of its own (not the chunk's)."""
    if not rejects.height:
        return rejects
    rejects = rejects.sort("raw_line")
    return rejects.with_columns(detached(rejects.get_column("raw")))


def reject_long_lines(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Lines over :data:`MAX_LINE_BYTES` are rejected before any parser sees them."""
    too_long = pl.col("raw").str.len_bytes() > MAX_LINE_BYTES
    if not lines.select(too_long.any()).item():  # the usual case: nothing to take out
        return lines, lines.clear().select("raw_line", reason=pl.lit(None, pl.String), raw="raw")
    long = lines.filter(too_long).select(
        "raw_line", reason=pl.lit(f"line longer than {MAX_LINE_BYTES} bytes"), raw=pl.col("raw").str.head(REJECT_RAW_BYTES))
    return lines.filter(~too_long), long
