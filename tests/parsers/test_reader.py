from __future__ import annotations

import codecs
import gzip
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector.errors import InputError
from detector.parsers.reader import _blank, read_head, read_line_chunks


def _lines(path, **kwargs) -> tuple[list[tuple[int, str]], list[int]]:
    chunks = list(read_line_chunks(path, **kwargs))
    good = pl.concat([c.lines for c in chunks])
    bad = pl.concat([c.bad_lines for c in chunks])
    return good.rows(), bad.get_column("raw_line").to_list()


def test_line_numbers_survive_small_chunks(tmp_path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"one\r\ntwo\n\nfour\nfive")
    for size in (1, 3, 7, 1 << 20):
        good, bad = _lines(path, chunk_bytes=size)
        assert good == [(1, "one"), (2, "two"), (3, ""), (4, "four"), (5, "five")]
        assert bad == []


def test_invalid_utf8_line_is_rejected_alone(tmp_path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(20)) + b"caf\xe9\n" + b"last\n")
    good, bad = _lines(path)
    assert bad == [21]
    assert good[-1] == (22, "last") and len(good) == 21


def test_mostly_undecodable_file_is_an_input_error(tmp_path) -> None:
    path = tmp_path / "latin1.log"
    path.write_bytes("café\nnaïve\nrésumé\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        _lines(path)


def test_utf16_with_bom_is_read(tmp_path) -> None:
    path = tmp_path / "ps.log"
    path.write_bytes(codecs.BOM_UTF16_LE + "é one\r\ntwo\r\n".encode("utf-16-le"))
    good, _ = _lines(path)
    assert good == [(1, "é one"), (2, "two")]


def test_utf8_bom_is_dropped(tmp_path) -> None:
    path = tmp_path / "bom.log"
    path.write_bytes(codecs.BOM_UTF8 + b"first\n")
    assert read_head(path) == ["first"]


def test_gzip_is_read_by_content_not_name(tmp_path) -> None:
    path = tmp_path / "export.log"  # no .gz suffix on purpose
    path.write_bytes(gzip.compress(b"a\nb\n"))
    good, _ = _lines(path)
    assert good == [(1, "a"), (2, "b")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"  \n\n", "empty"),
        (b"\x00\x01\x02binary\x00" * 50, "binary"),
    ],
)
def test_unreadable_files(tmp_path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.log"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        _lines(path)
    assert info.value.source == (str(path), None)


def test_truncated_gzip(tmp_path) -> None:
    data = gzip.compress(b"".join(b"%032x\n" % (i * 7919) for i in range(50_000)))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        _lines(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(InputError, match="cannot open"):
        _lines(tmp_path / "nope.log")


# ---- damage stays local -------------------------------------------------------------------------------

def test_truncated_gzip_gives_every_complete_line_before_the_damage(tmp_path: Path) -> None:
    import gzip as gz

    from detector.errors import InputError

    text = b"".join(b"line %d with some text to compress\n" % i for i in range(1, 20001))
    whole = gz.compress(text)
    path = tmp_path / "cut.log.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    got: list[pl.DataFrame] = []
    with pytest.raises(InputError, match="truncated gzip") as caught:
        for chunk in read_line_chunks(path, chunk_bytes=64 << 10):
            got.append(chunk.lines)
    lines = pl.concat(got)
    assert lines.height > 10_000
    assert lines.get_column("raw_line").to_list() == list(range(1, lines.height + 1))
    assert lines.get_column("raw").to_list()[-1] == f"line {lines.height} with some text to compress"
    assert caught.value.source == (str(path), lines.height + 1)


def test_nul_line_is_one_reject_and_binary_needs_most_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nul.log"
    path.write_bytes(b"good 1\nbad \x00\x00 line\ngood 3\n")
    chunk = next(read_line_chunks(path))
    assert chunk.lines.get_column("raw_line").to_list() == [1, 3]
    assert chunk.bad_lines.get_column("raw_line").to_list() == [2]
    assert "binary" in chunk.bad_lines.item(0, "reason")
    path.write_bytes(bytes(range(256)) * 200)
    with pytest.raises(InputError, match="binary"):
        list(read_line_chunks(path))


@pytest.mark.parametrize("byte", range(0x20))
def test_each_control_byte_rejects_its_line_and_text_controls_do_not(tmp_path: Path, byte: int) -> None:
    """The block is screened for control bytes before its lines are: both must agree on every byte.
    Tab, line ends, vertical tab, form feed and ESC (terminal colours) are text; the other C0 bytes are not."""
    path = tmp_path / "one.log"
    path.write_bytes(b"good 1\nline " + bytes([byte]) + b" two\ngood 3\n")
    chunk = next(read_line_chunks(path))
    text = byte in (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B)
    assert chunk.bad_lines.get_column("raw_line").to_list() == ([] if text else [2])
    assert (chunk.text is not None) == text


@pytest.mark.parametrize("offset", [0, (1 << 20) - 1, 1 << 20, (3 << 20) + 5])
def test_a_control_byte_anywhere_in_a_large_block_is_found(tmp_path: Path, offset: int) -> None:
    """The block's bytes below 0x20 are counted a megabyte at a time: one at either side of a step and
    deep in the block is seen, and its line alone is rejected."""
    line = b"x" * 99 + b"\n"
    data = bytearray(line * ((4 << 20) // len(line)))
    offset -= offset % len(line) == len(line) - 1  # not on a newline
    data[offset] = 0x01
    path = tmp_path / "large.log"
    path.write_bytes(bytes(data))
    chunk = next(read_line_chunks(path))
    assert chunk.bad_lines.get_column("raw_line").to_list() == [offset // len(line) + 1]
    assert chunk.lines.height == len(data) // len(line) - 1


def test_a_utf8_file_with_some_damaged_lines_is_read(tmp_path: Path) -> None:
    path = tmp_path / "some_bad.log"
    path.write_bytes(b"".join(b"ok %d\n" % i if i % 5 else b"bad \xff\xfe %d\n" % i for i in range(1, 101)))
    chunk = next(read_line_chunks(path))
    assert (chunk.lines.height, chunk.bad_lines.height) == (80, 20)


def test_a_scan_of_a_truncated_gzip_keeps_the_events_before_the_damage(tmp_path: Path) -> None:
    import gzip as gz

    from detector.pipeline import collect_run, plan_parse

    lines = [f'{{"ts":"2026-04-14T02:{i // 60 % 60:02d}:{i % 60:02d}Z","jobId":"J{i}","user":"ops","command":"Ping",'
             f'"targetId":"M{i}","status":"Succeeded","pad":"{i * 7919 % 104729:06d}"}}' for i in range(3000)]
    whole = gz.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "commands.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    run = plan_parse([path])
    events, rejects = collect_run(run)
    assert events.height > 100
    assert rejects.height == 1
    assert rejects.item(0, "raw_line") == events.height + 1
    assert "truncated gzip" in rejects.item(0, "reason")


@given(st.binary(max_size=40) | st.lists(st.sampled_from([b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c", b"\x1c",
                                                         b"\x85", b"\xa0", b"\x00", b"x"])).map(b"".join))
def test_a_blank_head_is_what_stripping_leaves_empty(data: bytes) -> None:
    assert _blank(data) == (not data.strip())


@pytest.mark.parametrize("content", [b"", b" \n\t\r\n", b"\x0b\x0c\n"])
def test_a_file_of_whitespace_is_empty(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "blank.log"
    path.write_bytes(content)
    with pytest.raises(InputError, match="empty file"):
        list(read_line_chunks(path))
