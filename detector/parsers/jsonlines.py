"""Decoding JSON-lines chunks with polars' native NDJSON reader, keeping every line accounted for.

Lines are read by shape: objects that name no nested field with the flat part of the schema (polars
decodes it several times faster), the others with the full schema, and lines that cannot be one
object (cut off before the closing brace) apart. Each group goes to :func:`polars.read_ndjson` in one
piece; when a group holds a line that is not a JSON object, it is split in halves until each bad
line is alone, so a few damaged lines cost a few extra reads, not a per-line Python loop. A chunk
whose lines all look like objects, under a flat schema, is read straight from the bytes it came from.
"""

from __future__ import annotations

import json
import re

import polars as pl


def _read_bytes(payload: bytes, schema: pl.Schema) -> pl.DataFrame | None:
    try:
        return pl.read_ndjson(payload, schema=schema)
    except (pl.exceptions.PolarsError, ValueError, OverflowError):
        return None


def _read(raw: pl.Series, schema: pl.Schema) -> pl.DataFrame | None:
    decoded = _read_bytes(raw.str.join("\n").cast(pl.Binary).item(), schema)
    return decoded if decoded is not None and decoded.height == raw.len() else None


def _all_objects(lines: pl.DataFrame) -> bool:
    """Whether every line starts with ``{`` and ends with ``}``: then none is blank, and a chunk with
    a blank, cut-off or foreign line goes the careful way at once, not after a failed read."""
    raw = pl.col("raw")
    return bool(lines.select((raw.str.starts_with("{") & raw.str.ends_with("}")).all()).item())


def _decode(lines: pl.DataFrame, schema: pl.Schema) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    decoded = _read(lines.get_column("raw"), schema)
    if decoded is not None:
        return [pl.concat([lines, decoded], how="horizontal")], []
    if lines.height > _SCREEN_FROM:
        # Many lines and at least one bad: find the lines that are not JSON objects at all in one
        # pass (the standard library's parser, line by line, on this damaged group only), then read
        # the rest in one piece. Halving alone would cost a read per damaged line and leave the
        # chunk in thousands of small frames (several GiB on a file with one line in ten damaged).
        raw = lines.get_column("raw").to_list()
        ok = pl.Series([_is_object(line) for line in raw], dtype=pl.Boolean)
        if not ok.all():
            good, bad = lines.filter(ok), lines.filter(~ok)
            good_parts, bad_parts = _decode(good, schema) if good.height else ([], [])
            return good_parts, [bad, *bad_parts]
    if lines.height == 1:
        return [], [lines]
    middle = lines.height // 2
    good_a, bad_a = _decode(lines.slice(0, middle), schema)
    good_b, bad_b = _decode(lines.slice(middle), schema)
    return good_a + good_b, bad_a + bad_b


_SCREEN_FROM = 64


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def decode_json_lines(lines: pl.DataFrame, schema: pl.Schema, text: bytes | None = None) -> pl.DataFrame:
    """Decode ``(raw_line, raw)`` into ``raw_line, raw, <schema fields>, _error``.

    Fields declared ``String`` take numbers and booleans as their text, so exporters that write
    ``"EventID": "4624"`` and ``"EventID": 4624`` read the same. Blank lines are dropped; lines that
    are not one JSON object of the expected shape get an ``_error``. Rows are not in line order
    (:func:`~detector.parsers.base.finalize` restores it). *text*, when given, is the same lines as
    the bytes they were read from: see :func:`decode_json_parts`.
    """
    return pl.concat(decode_json_parts(lines, schema, text), how="vertical")


def decode_json_parts(lines: pl.DataFrame, schema: pl.Schema, text: bytes | None = None) -> list[pl.DataFrame]:
    """:func:`decode_json_lines`, as frames of lines of one shape each (flat, nested, not decoded).

    Every frame has all the columns; within one, a column that only the other shapes use is null
    throughout, which polars skips at no cost. With *text* (the lines as the UTF-8 bytes they were
    read from, newline-separated), a flat schema and lines that all look like objects, the bytes
    are decoded in one piece, without sorting the lines by shape first.
    """
    nested = [name for name, dtype in schema.items() if isinstance(dtype, pl.Struct)]
    if text is not None and not nested and _all_objects(lines):
        decoded = _read_bytes(text, schema)
        # One row per line, so row i is line i: the reader skips blank lines and fails on a line
        # that is not exactly one object, and neither can hide behind the other here (no line is blank).
        if decoded is not None and decoded.height == lines.height:
            return [pl.concat([lines, decoded], how="horizontal").with_columns(_error=pl.lit(None, pl.String))
                    .rechunk()]
    stripped = pl.col("raw").str.strip_chars()
    # A line that names none of the nested (struct) fields reads the same without them, and polars
    # decodes a flat schema several times faster. A key may hide behind a \u escape: such lines take
    # the full schema.
    flat_schema = pl.Schema({name: dtype for name, dtype in schema.items() if name not in nested})
    mentions_nested = pl.col("raw").str.contains("|".join([f'"{re.escape(n)}"' for n in nested] + [r"\\u"]))
    shape = (
        pl.when(stripped == "").then(pl.lit("blank"))
        .when(~stripped.str.starts_with("{")).then(pl.lit("not_object"))
        # A line that does not end in "}" (cut off, most often) cannot be read; decoded apart from
        # the rest, such lines cost a few small reads instead of splitting the chunk over and over.
        .when(~stripped.str.ends_with("}")).then(pl.lit("suspect"))
        .when(mentions_nested if nested else pl.lit(True)).then(pl.lit("nested"))
        .otherwise(pl.lit("flat"))
    )
    by_shape = lines.with_columns(_shape=shape).partition_by("_shape", as_dict=True, include_key=False)
    good: list[pl.DataFrame] = []
    bad: list[pl.DataFrame] = []
    for kind, part_schema in (("flat", flat_schema), ("nested", schema), ("suspect", schema)):
        part = by_shape.get((kind,))
        if part is not None:
            part_good, part_bad = _decode(part, part_schema)
            good += part_good
            bad += part_bad
    not_objects = by_shape.get(("not_object",), lines.clear())
    parts = [g.with_columns(_error=pl.lit(None, pl.String)) for g in good]
    undecoded = [b.with_columns(_error=pl.lit("not a valid JSON object, or a field of an unexpected type"))
                 for b in bad]
    if not_objects.height:
        undecoded.append(not_objects.with_columns(_error=pl.lit("not a JSON object")))
    if undecoded:
        parts.append(pl.concat(undecoded))
    empty = pl.DataFrame(schema={"raw_line": pl.Int64, "raw": pl.String, **schema, "_error": pl.String})
    # In one piece each: the reader's many small pieces would cost every later expression a pass apiece.
    return [pl.concat([empty, part], how="diagonal_relaxed").rechunk() for part in parts] or [empty]
