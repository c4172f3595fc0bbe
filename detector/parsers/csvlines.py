"""Splitting CSV records (RFC 4180) out of numbered lines with polars string expressions.

Quoted fields may hold the separator, doubled quotes and line breaks. A record that spans lines is
recognised by quote parity (an odd number of quote characters before a line means it continues a
record) and keeps the number of the line it starts on. Lines without any quote character, the
common case, are split with ``splitn``; the rest go through one anchored regex per record.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import polars as pl

from detector.exprs import formatted

_QUOTE = '"'


# A line beginning with a date: when the time is the first column, such a line starts a record.
DATE_START = r'^\s*"?\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}'
MAX_RECORD_LINES = 50  # a quoted cell spanning more lines than this is a stray quote, not a cell


def join_multiline_records(lines: pl.DataFrame, starts_record: pl.Expr | None = None,
                           max_lines: int = MAX_RECORD_LINES) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Group physical lines into CSV records.

    Returns ``(records, pending)``: complete records ``(raw_line, raw)``, and the lines of a record
    still open at the end of *lines* (its closing quote may be in the next chunk).

    A stray quote must not swallow the lines after it, so a quoted record is bounded twice: a line
    matching *starts_record* (say, one that begins with a timestamp) always starts a new record, and a
    record still open after *max_lines* lines is given up: its first line comes back with ``_error``
    and the lines after it are read as records of their own.
    """
    quotes = pl.col("raw").str.count_matches(_QUOTE, literal=True)
    lines = lines.with_columns(_q=quotes)
    if not (lines.get_column("_q") % 2 == 1).any():
        return lines.drop("_q").with_columns(_error=pl.lit(None, pl.String)), lines.clear().drop("_q")
    segment = starts_record.cum_sum() if starts_record is not None else pl.lit(0)
    lines = lines.with_columns(_segment=segment).with_columns(
        _before=(pl.col("_q").cum_sum() - pl.col("_q")).over("_segment"))
    lines = lines.with_columns(_record=((pl.col("_before") % 2 == 0) | (pl.col("_segment").diff().fill_null(1) != 0))
                               .cum_sum())
    last = lines.get_column("_record").max()
    tail = lines.filter(pl.col("_record") == last)
    open_at_end = tail.get_column("_q").sum() % 2 == 1
    size = pl.len().over("_record")
    # A record open longer than max_lines (or still open at the end after as many) is a stray quote.
    runaway = (size > max_lines) & (pl.col("_record") != last) | (
        (pl.col("_record") == last) & pl.lit(open_at_end and tail.height > max_lines))
    lines = lines.with_columns(_runaway=runaway)
    if lines.get_column("_runaway").any():
        first = pl.col("_runaway") & pl.col("_record").is_first_distinct()
        lines = lines.with_columns(
            _error=pl.when(first).then(pl.lit(
                f"unbalanced quote: a quoted field that does not close within {max_lines} lines")),
            _record=pl.when(pl.col("_runaway")).then(-pl.col("raw_line") - 1).otherwise(pl.col("_record")))
        open_at_end = open_at_end and tail.height <= max_lines
    else:
        lines = lines.with_columns(_error=pl.lit(None, pl.String))
    pending = lines.filter(pl.col("_record") == last) if open_at_end else lines.clear()
    done = lines.filter(pl.col("_record") != last) if open_at_end else lines
    records = (
        done.group_by("_record", maintain_order=True)
        .agg(pl.col("raw_line").first(), pl.col("raw").str.join("\n"), pl.col("_error").first(),
             _lines=pl.col("raw_line"))
        .select("raw_line", "raw", "_error", "_lines")
    )
    return records, pending.select("raw_line", "raw")


def unterminated(pending: pl.DataFrame) -> pl.DataFrame:
    """The lines of a record still open when the file ends: its first line with an ``_error``, the
    lines after it as records of their own (a stray quote near the end loses nothing else)."""
    return pending.with_columns(_error=pl.when(pl.int_range(pl.len()) == 0).then(
        pl.lit("unterminated quoted field at end of file (truncated export, or a stray quote)")))


def split_fields(records: pl.DataFrame, names: list[str], separator: str = ",") -> pl.DataFrame:
    """Split ``raw`` of each record into one String column per name, plus ``_error``.

    A record with another number of fields, or with broken quoting, keeps null fields and gets an
    ``_error`` that says so. Records with quotes come after the others (finalize restores line order).
    """
    n = len(names)
    sep = re.escape(separator)
    field = rf'("(?:[^"]|"")*"|[^{sep}"]*)'
    pattern = "^" + sep.join([field] * n) + "$"
    by_quoting = records.with_columns(_quoted=pl.col("raw").str.contains(_QUOTE, literal=True)).partition_by(
        "_quoted", as_dict=True, include_key=False)
    plain = by_quoting.get((False,), records.clear())
    tricky = by_quoting.get((True,), records.clear())
    # One piece more than the names: a record has the right number of fields when the last name's
    # piece is there and the one after it is not (it would hold the rest of a longer record).
    more = "_more"
    while more in names:
        more += "_"
    plain = plain.with_columns(
        pl.col("raw").str.splitn(separator, n + 1).struct.rename_fields([*names, more]).alias("_f"))
    plain = plain.unnest("_f").with_columns(_ok=pl.col(names[-1]).is_not_null() & pl.col(more).is_null())
    tricky = tricky.with_columns(
        pl.col("raw").str.extract_groups(pattern).struct.rename_fields(names).alias("_f"))
    tricky = tricky.with_columns(_ok=pl.col("_f").struct.field(names[0]).is_not_null())
    unquote = [
        pl.when(pl.col(c).str.starts_with(_QUOTE) & pl.col(c).str.ends_with(_QUOTE) & (pl.col(c).str.len_chars() > 1))
        .then(pl.col(c).str.slice(1, pl.col(c).str.len_chars() - 2).str.replace_all('""', _QUOTE, literal=True))
        .otherwise(pl.col(c))
        .alias(c)
        for c in names
    ]
    tricky = tricky.unnest("_f").with_columns(unquote)
    both = pl.concat([plain.drop(more), tricky], how="vertical_relaxed")
    error = pl.lit(f"malformed CSV record: expected {n} fields separated by {separator!r} (or broken quoting)")
    if not both.get_column("_ok").all():  # skipped in the usual case: nothing to blank out
        both = both.with_columns([pl.when(pl.col("_ok")).then(pl.col(c)).alias(c) for c in names])
    given = pl.col("_error") if "_error" in both.columns else pl.lit(None, pl.String)
    both = both.with_columns(_error=pl.coalesce(given, pl.when(~pl.col("_ok")).then(error))).drop("_ok")
    return _one_reject_per_line(both)


def _one_reject_per_line(records: pl.DataFrame) -> pl.DataFrame:
    """A rejected record that spans lines becomes one reject per line: each line is accounted for,
    and a line that a stray quote pulled into a broken record is named, not hidden behind it."""
    if "_lines" not in records.columns:
        return records
    multi = pl.col("_error").is_not_null() & (pl.col("_lines").list.len() > 1)
    if not records.select(multi.any()).item():
        return records.drop("_lines")
    spread = (
        records.filter(multi).select("_lines", "_error", _first="raw_line", raw=pl.col("raw").str.split("\n"))
        .explode("_lines", "raw")
        .select(raw_line="_lines", raw="raw", _error=pl.when(pl.col("_lines") == pl.col("_first")).then("_error")
                .otherwise(formatted("part of a malformed CSV record that starts at line {}", "_first")))
    )
    return pl.concat([records.filter(~multi).drop("_lines"), spread], how="diagonal_relaxed")


def parse_header(line: str, separator: str = ",") -> list[str]:
    """Column names of a CSV header line (quotes removed, surrounding spaces trimmed)."""
    try:
        names = next(csv.reader([line], delimiter=separator))
    except csv.Error:  # a stray carriage return or NUL: fall back to a plain split
        names = line.split(separator)
    seen: dict[str, int] = {}
    unique = []
    for name in (n.strip().strip('"') for n in names):
        # A repeated name keeps its first column; later ones are renamed so fields stay distinct.
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique


def read_option_csv(path: Path, text: str, what: str) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """The header's line number, the header (lower-cased) and the rows of a small CSV given as an
    option (a firmware manifest, an indicator list), each row with the line number it starts on.

    The same RFC 4180 records as the log parsers: a quoted cell may hold commas, doubled quotes and
    line breaks (bounded like theirs). Blank records and records starting with ``#`` are skipped;
    values are stripped.

    Raises
    ------
    ConfigError
        When there is no header, or a record's quoting is broken, naming *what* the file is and the line.
    """
    from detector.errors import ConfigError

    lines = pl.DataFrame({"raw": text.splitlines()}, schema={"raw": pl.String}).with_row_index(
        "raw_line", offset=1).with_columns(pl.col("raw_line").cast(pl.Int64))
    records, pending = join_multiline_records(lines)
    records = records.select("raw_line", "raw", "_error")
    if pending.height:
        records = pl.concat([records, unterminated(pending).select(records.columns)])
    rows: list[tuple[int, list[str]]] = []
    for number, raw, error in records.sort("raw_line").iter_rows():  # a few hundred rows of an option file
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if error:
            raise ConfigError(f"the {what} has a broken record: {error}", source=(str(path), number))
        try:
            cells = next(csv.reader([raw], strict=True))
        except (csv.Error, StopIteration) as exc:
            raise ConfigError(f"the {what} has a malformed CSV record ({exc})", source=(str(path), number)) from None
        rows.append((number, [cell.strip() for cell in cells]))
    if not rows:
        raise ConfigError(f"the {what} is empty (expected a header line)", source=(str(path), None))
    return rows[0][0], [h.lower() for h in rows[0][1]], rows[1:]
