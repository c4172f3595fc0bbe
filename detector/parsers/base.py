"""The parser contract and the normalization every parser shares.

A parser turns numbered raw lines into a *staged* frame: ``raw_line``, ``raw``, an optional
``_error`` (why a line is rejected), and whichever schema columns it knows, as plain strings
(``time`` already a UTC datetime). :func:`finalize` does everything that is the same for all
formats: splitting off rejects, account and address normalization, enum casting, column order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from detector.errors import ConfigError, InputError
from detector.schema import (
    ACTION_CATEGORY,
    ACTIONS,
    CATEGORIES,
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

    def __init__(self, path: str, options: ParseOptions) -> None:
        self.path = path
        self.options = options

    @classmethod
    @abstractmethod
    def sniff(cls, head: list[str]) -> bool:
        """Whether the first non-blank lines of a file look like this format."""

    @abstractmethod
    def parse_chunk(self, lines: pl.DataFrame) -> pl.DataFrame:
        """Stage the lines ``(raw_line, raw)`` of one chunk; see the module docstring."""

    def finish(self) -> pl.DataFrame | None:
        """Stage whatever is still held when the file ends (an unterminated record, say)."""
        return None

    # -- helpers for subclasses ---------------------------------------------------------------

    def with_time(self, staged: pl.DataFrame, column: str) -> pl.DataFrame:
        """Add ``time`` parsed from the text column *column* (see :func:`parse_times`).

        Raises :class:`InputError` when timestamps have no offset and no ``--tz`` was given.
        """
        aware, naive = parse_times(staged.get_column(column), year=self._year())
        tz = self.options.tz
        if tz is None:
            naive_rows = staged.select("raw_line", column).filter((aware.is_null() & naive.is_not_null()))
            if naive_rows.height:
                line, value = naive_rows.row(0)
                raise InputError(
                    f"timestamp {value!r} has no UTC offset; pass --tz ZONE (e.g. --tz UTC) to say "
                    "which time zone the export was written in", source=(self.path, int(line)))
            return staged.with_columns(time=aware)
        local = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC")
        return staged.with_columns(time=aware.fill_null(local))

    def _year(self) -> int:
        ref = self.options.reference_time
        return (ref or datetime.now()).year


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
    through every form :func:`time_exprs` knows.
    """
    frame = pl.DataFrame({"_i": pl.arange(0, text.len(), eager=True), "_t": text.cast(pl.String).str.strip_chars()})
    remaining = frame.filter(pl.col("_t").is_not_null())
    parts: dict[str, list[pl.DataFrame]] = {"aware": [], "naive": []}
    for kind, fmt in _FAST_PATHS:
        if remaining.height == 0:
            break
        dtype = UTC_US if kind == "aware" else pl.Datetime("us")
        parsed = remaining.with_columns(_v=pl.col("_t").str.strptime(dtype, fmt, strict=False))
        parts[kind].append(parsed.filter(pl.col("_v").is_not_null()).select("_i", "_v"))
        remaining = parsed.filter(pl.col("_v").is_null()).drop("_v")
    if remaining.height:
        aware, naive = time_exprs(pl.col("_t"), year=year)
        rest = remaining.with_columns(_a=aware, _n=naive)
        parts["aware"].append(rest.select("_i", _v=pl.col("_a")))
        parts["naive"].append(rest.select("_i", _v=pl.col("_n")))

    def assemble(kind: str, dtype: pl.DataType) -> pl.Series:
        found = pl.concat([pl.DataFrame(schema={"_i": pl.Int64, "_v": dtype}),
                           *[p.cast({"_i": pl.Int64, "_v": dtype}) for p in parts[kind]]])
        return frame.select(pl.col("_i").cast(pl.Int64)).join(found, on="_i", how="left", maintain_order="left") \
            .get_column("_v").alias(kind)

    return assemble("aware", UTC_US), assemble("naive", pl.Datetime("us"))


def time_exprs(text: pl.Expr, *, year: int) -> tuple[pl.Expr, pl.Expr]:
    """Expressions for a timestamp string: ``(aware, naive)``.

    ``aware`` is a UTC datetime for ISO 8601 / RFC 3339 stamps with an offset, stamps ending in
    a UTC/GMT zone name, and epoch seconds or milliseconds; ``naive`` is a zone-less datetime for
    stamps without an offset, to be placed in the user's zone. Yearless stamps (``Apr 14
    02:11:40``) get *year*.
    """
    squeezed = text.str.replace_all(r"\s+", " ")
    yearless = squeezed.str.contains(r"^[A-Za-z]{3} \d{1,2} \d{1,2}:\d{2}:\d{2}")
    full = pl.when(yearless).then(pl.lit(f"{year} ") + squeezed).otherwise(squeezed)
    is_utc = full.str.contains(_UTC_SUFFIX)
    bare = full.str.replace(_UTC_SUFFIX, "")
    naive = pl.coalesce([bare.str.strptime(pl.Datetime("us"), f, strict=False) for f in _NAIVE_FORMATS])
    digits = pl.when(text.str.contains(r"^\d{9,14}(?:\.\d+)?$")).then(text.cast(pl.Float64, strict=False))
    epoch = (
        pl.when(digits >= 1e11).then(digits * 1_000)  # milliseconds
        .otherwise(digits * 1_000_000)
        .cast(pl.Int64, strict=False)
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
    )
    aware = pl.coalesce(
        [full.str.strptime(UTC_US, f, strict=False) for f in _AWARE_FORMATS]
        + [pl.when(is_utc).then(naive.dt.replace_time_zone("UTC")), epoch]
    )
    return aware, pl.when(~is_utc).then(naive)


# ---- accounts and addresses ---------------------------------------------------------------------

_NO_VALUE = ("", "-", "n/a", "na", "null", "none", "(null)")


def clean(expr: pl.Expr) -> pl.Expr:
    """Trimmed text, with the usual placeholders for 'nothing' turned into null."""
    stripped = expr.cast(pl.String).str.strip_chars()
    return pl.when(stripped.str.to_lowercase().is_in(_NO_VALUE)).then(None).otherwise(stripped)


def account_expr(expr: pl.Expr) -> pl.Expr:
    """The account without its domain, lower-cased: ``UTIL\\JDoe`` and ``jdoe@util.local`` are ``jdoe``."""
    value = clean(expr)
    return clean(value.str.replace(r"^[^\\]*\\", "").str.replace(r"@[^@]*$", "").str.to_lowercase())


def domain_expr(expr: pl.Expr) -> pl.Expr:
    """The domain part of an account written ``DOMAIN\\user`` or ``user@domain``, if any."""
    value = clean(expr)
    return clean(pl.coalesce(value.str.extract(r"^([^\\]*)\\", 1), value.str.extract(r"@([^@]*)$", 1)))


_IPV4 = r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
_IPV6 = r"^[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?::(?:\d{1,3}\.){3}\d{1,3})?$"


def ip_expr(expr: pl.Expr) -> pl.Expr:
    """A validated textual IPv4 or IPv6 address, or null. IPv4-mapped IPv6 becomes IPv4."""
    value = clean(expr).str.to_lowercase()
    # Ports are only unambiguous as "[v6]:port" and "a.b.c.d:port"; a bare IPv6 address ends in digits too.
    value = (
        pl.when(value.str.starts_with("[")).then(value.str.extract(r"^\[([^\]]*)\]", 1))
        .when(value.str.contains(r"^\d{1,3}(?:\.\d{1,3}){3}:\d+$")).then(value.str.replace(r":\d+$", ""))
        .otherwise(value)
        .str.replace(r"%.*$", "")
    )
    value = pl.when(value.str.contains(r"^::ffff:\d")).then(value.str.slice(7)).otherwise(value)
    v6_ok = value.str.contains(_IPV6) & (value.str.count_matches("::") <= 1) & (
        (value.str.count_matches(":") == 7) | value.str.contains("::"))
    return pl.when(value.str.contains(_IPV4) | v6_ok).then(value)


# ---- finalize -------------------------------------------------------------------------------------

_STRING_COLUMNS = [c for c, t in EVENT_SCHEMA.items() if t == pl.String]


def finalize(staged: pl.DataFrame, *, source_format: str, raw_file: str,
             source_system: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a staged frame into normalized events and rejects (see the module docstring)."""
    missing = {c: pl.lit(None, pl.String) for c in [*EVENT_SCHEMA, "_error"] if c not in staged.columns}
    staged = staged.with_columns(**missing)
    staged = staged.with_columns(
        _error=pl.coalesce(
            pl.col("_error"),
            pl.when(pl.col("time").is_null()).then(pl.lit("missing or unparseable timestamp")),
        )
    )
    rejects = staged.filter(pl.col("_error").is_not_null()).select(
        raw_file=pl.lit(raw_file),
        raw_line=pl.col("raw_line").cast(pl.Int64),
        source_format=pl.lit(source_format),
        reason=pl.col("_error"),
        raw=pl.col("raw").str.head(REJECT_RAW_BYTES),
    )
    ok = staged.filter(pl.col("_error").is_null())
    action = clean(pl.col("action")).replace_strict(
        {a: a for a in ACTIONS}, default="other", return_dtype=Action)
    events = ok.with_columns(
        [clean(pl.col(c)).alias(c) for c in _STRING_COLUMNS if c != "raw_file"]
    ).with_columns(
        time=pl.col("time").cast(UTC_US),
        source_system=pl.coalesce(pl.col("source_system"), pl.lit(source_system)).replace_strict(
            {s: s for s in SOURCE_SYSTEMS}, default="other", return_dtype=SourceSystem),
        source_format=pl.lit(source_format),
        account=account_expr(pl.col("account")),
        account_domain=pl.coalesce(clean(pl.col("account_domain")), domain_expr(pl.col("account"))),
        src_ip=ip_expr(pl.col("src_ip")),
        action=action,
        category=pl.coalesce(
            clean(pl.col("category")).replace_strict({c: c for c in CATEGORIES}, default=None),
            action.cast(pl.String).replace_strict(ACTION_CATEGORY, default="system"),
        ).cast(Category),
        outcome=clean(pl.col("outcome")).replace_strict(
            {o: o for o in OUTCOMES}, default="unknown", return_dtype=Outcome),
        target_count=pl.coalesce(
            pl.col("target_count").cast(pl.String).str.strip_chars().cast(pl.Int32, strict=False),
            pl.when(clean(pl.col("target_id")).is_not_null()).then(pl.lit(1, pl.Int32)),
        ),
        raw_file=pl.lit(raw_file),
        raw_line=pl.col("raw_line").cast(pl.Int64),
    ).select(list(EVENT_SCHEMA))
    return events.cast(dict(EVENT_SCHEMA)), rejects.cast(dict(REJECT_SCHEMA))


def reject_long_lines(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Lines over :data:`MAX_LINE_BYTES` are rejected before any parser sees them."""
    too_long = pl.col("raw").str.len_bytes() > MAX_LINE_BYTES
    long = lines.filter(too_long).select(
        "raw_line", reason=pl.lit(f"line longer than {MAX_LINE_BYTES} bytes"), raw=pl.col("raw").str.head(REJECT_RAW_BYTES))
    return lines.filter(~too_long), long
