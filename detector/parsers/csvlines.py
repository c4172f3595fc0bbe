"""Splitting CSV records (RFC 4180) out of numbered lines with polars string expressions.

Quoted fields may hold the separator, doubled quotes and line breaks. A record that spans lines is
recognised by quote parity (an odd number of quote characters before a line means it continues a
record) and keeps the number of the line it starts on. Lines without any quote character, the
common case, are split with ``splitn``; the rest go through one anchored regex per record.
"""

from __future__ import annotations

import csv
import re

import polars as pl

_QUOTE = '"'


def join_multiline_records(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Group physical lines into CSV records.

    Returns ``(records, pending)``: complete records ``(raw_line, raw)``, and the lines of a record
    still open at the end of *lines* (its closing quote may be in the next chunk).
    """
    quotes = pl.col("raw").str.count_matches(_QUOTE, literal=True)
    lines = lines.with_columns(_q=quotes)
    if not (lines.get_column("_q") % 2 == 1).any():
        return lines.drop("_q"), lines.clear().drop("_q")
    before = pl.col("_q").cum_sum() - pl.col("_q")
    lines = lines.with_columns(_record=(before % 2 == 0).cum_sum())
    open_at_end = lines.get_column("_q").sum() % 2 == 1
    last = lines.get_column("_record").max()
    pending = lines.filter(pl.col("_record") == last) if open_at_end else lines.clear()
    done = lines.filter(pl.col("_record") != last) if open_at_end else lines
    records = (
        done.group_by("_record", maintain_order=True)
        .agg(pl.col("raw_line").first(), pl.col("raw").str.join("\n"))
        .select("raw_line", "raw")
    )
    return records, pending.select("raw_line", "raw")


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
    return both.with_columns(_error=pl.when(~pl.col("_ok")).then(error)).drop("_ok")


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
