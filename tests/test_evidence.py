"""Raw lines read back by line number: plain UTF-8 files by counting newlines, other files through the
parsers' reader, both numbering and refusing lines the same way."""

from __future__ import annotations

import codecs
import gzip
import itertools
from pathlib import Path

import polars as pl
import pytest

from detector.evidence import _decoded_lines, _plain_lines, events_at, read_raw_lines
from tests.features.events import make_events

LINES = [b"", b"abc", b"x" * 5000, b"caf\xc3\xa9", b"bad\xff\xfe", b"ctl\x01x", b"tab\tok", b"cr\r", b"\r",
         b"a\rb", b"\xe2\x80\xae"]


def _contents() -> list[bytes]:
    """Files mixing empty, long, CRLF, undecodable and control-byte lines, with and without a final newline
    and a UTF-8 byte-order mark."""
    out = []
    for i, order in enumerate(itertools.permutations(LINES[1:6], 5)):
        lines = [LINES[0], *order, *LINES[6:]] if i % 2 else [*LINES[6:], *order]
        body = b"\n".join(lines) + (b"\n" if i % 3 else b"")
        out.append(codecs.BOM_UTF8 + body if i % 5 == 0 else body)
        if len(out) == 12:
            return out
    return out


@pytest.mark.parametrize("content", _contents())
def test_plain_files_give_the_lines_the_reader_gives(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(content)
    numbers = pl.Series([1, 2, 3, 5, 8, 9, 12, 13, 14, 40], dtype=pl.Int64)
    expected = _decoded_lines(str(path), numbers, 4096)
    assert expected.height >= 5
    for block in (1, 7, 64, 1 << 20):  # lines cut across blocks, and whole
        got = _plain_lines(str(path), numbers, 4096, block_bytes=block)
        assert got is not None and got.equals(expected)


def test_gzip_and_utf16_files_are_read_as_the_parsers_read_them(tmp_path: Path) -> None:
    text = "first\nsecond \u00e9\r\nthird\n"
    gz, utf16 = tmp_path / "a.log.gz", tmp_path / "b.log"
    gz.write_bytes(gzip.compress(text.encode()))
    utf16.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert _plain_lines(str(gz), pl.Series([1], dtype=pl.Int64), 10) is None
    wanted = pl.DataFrame({"raw_file": [str(gz), str(utf16), str(utf16)], "raw_line": [2, 3, 1]})
    got = read_raw_lines(wanted)
    assert got.get_column("raw").to_list() == ["second \u00e9", "third", "first"]


def test_cited_events_are_found_by_file_and_line_together(tmp_path: Path) -> None:
    """A location names one event: the same line number in another file, or another line of the same
    file, is not it (lines are looked up first, then the file with them)."""
    rows = [{"time": f"2026-04-01 10:0{i}", "account": f"a{i}"} for i in range(4)]
    events = pl.concat([make_events(rows, raw_file="a.log"), make_events(rows, raw_file="b.log")])
    wanted = pl.DataFrame({"raw_file": ["a.log", "b.log", "c.log", "a.log"], "raw_line": [2, 3, 1, 9]})
    for source in (events, events.lazy(), _spilled(tmp_path, events)):
        found = events_at(source, wanted)
        assert found.select("raw_file", "raw_line").rows() == [("a.log", 2), ("b.log", 3)]
        assert found.get_column("account").to_list() == ["a1", "a2"]


def _spilled(tmp_path: Path, events: pl.DataFrame) -> pl.LazyFrame:
    events.write_parquet(tmp_path / "events.parquet")
    return pl.scan_parquet(tmp_path / "events.parquet")
