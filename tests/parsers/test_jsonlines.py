"""Decoding a chunk's bytes in one piece gives what decoding it line by line gives."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.parsers.jsonlines import decode_json_lines

SCHEMA = pl.Schema({"ts": pl.String, "user": pl.String, "n": pl.String})

OBJECTS = ['{"ts":"2026-04-14T02:33:47Z","user":"a","n":3}', '{"user":"b","n":"x"}', "{}", '{"n":{"k":1}}',
           '{"user":"c\\u0041"}']
# What a damaged or unusual export holds: blanks, garbage, cut-off objects, two objects on a line,
# values that are not objects, CRLF line ends, padding.
ODD = ["", "   ", "not json", '{"ts":"2026', '{"a":1}{"a":2}', '{"a":1} {"a":2}', "[1]", "5", "null",
       '{"user":"d"}\r', ' {"user":"e"}', '{"user":"f"} ', "}", "{", '{"user":"g",}']
line = st.one_of(st.sampled_from(OBJECTS), st.sampled_from(ODD))


def _lines_and_text(rows: list[str], final_newline: bool) -> tuple[pl.DataFrame, bytes]:
    text = ("\n".join(rows) + ("\n" if final_newline else "")).encode()
    lines = pl.DataFrame({"raw_line": range(1, len(rows) + 1), "raw": [r.removesuffix("\r") for r in rows]},
                         schema={"raw_line": pl.Int64, "raw": pl.String})
    return lines, text


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(line, min_size=1, max_size=10), final_newline=st.booleans())
def test_bytes_decode_as_the_lines_do(rows: list[str], final_newline: bool) -> None:
    lines, text = _lines_and_text(rows, final_newline)
    from_bytes = decode_json_lines(lines, SCHEMA, text).sort("raw_line")
    from_lines = decode_json_lines(lines, SCHEMA).sort("raw_line")
    assert from_bytes.equals(from_lines)
    # Every line is accounted for: decoded, or given a reason (blank lines are dropped).
    assert set(from_bytes.get_column("raw_line")) == {
        n for n, r in zip(lines.get_column("raw_line"), rows, strict=True) if r.strip()}


def test_clean_chunk_keeps_line_order_and_text() -> None:
    rows = [OBJECTS[0], OBJECTS[1], '{"user":"d"}\r']
    lines, text = _lines_and_text(rows, final_newline=True)
    decoded = decode_json_lines(lines, SCHEMA, text)
    assert decoded.get_column("raw_line").to_list() == [1, 2, 3]
    assert decoded.get_column("user").to_list() == ["a", "b", "d"]
    assert decoded.get_column("n").to_list() == ["3", "x", None]
    assert decoded.get_column("raw").to_list() == [OBJECTS[0], OBJECTS[1], '{"user":"d"}']
    assert decoded.get_column("_error").null_count() == 3
