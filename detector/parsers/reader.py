"""Reading raw export files as numbered lines, in bounded chunks.

A file becomes a stream of polars frames ``(raw_line: Int64, raw: String)``; no line is ever held
as a Python object on the normal path. Gzip is recognised by its magic bytes, UTF-8 and UTF-16
byte-order marks are honoured (PowerShell writes UTF-16 by default), and lines that are not valid
text come back as rejects instead of failing the whole file.
"""

from __future__ import annotations

import codecs
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa

from detector.errors import InputError
from detector.schema import REJECT_RAW_BYTES

# Parsing a chunk takes several times its size in memory, and two chunks may be parsed at once;
# beyond this size, larger chunks are no faster.
CHUNK_BYTES = 16 << 20
SNIFF_BYTES = 64 << 10
GZIP_MAGIC = b"\x1f\x8b"
# Share of undecodable lines in the first chunk above which the file is called the wrong encoding
# rather than a text file with a few damaged lines.
_MAX_BAD_LINE_SHARE = 0.5


@dataclass(frozen=True)
class LineChunk:
    """Numbered lines of one part of a file, and the lines of it that were not valid text."""

    lines: pl.DataFrame  # raw_line Int64, raw String
    bad_lines: pl.DataFrame  # raw_line Int64, reason String, raw String
    text: bytes | None = None  # the lines as read (UTF-8), when every one of them is valid text


class _Damaged(Exception):
    """Reading stopped at damaged data; everything before it was given."""


def _open(path: Path) -> tuple[BinaryIO, bool]:
    """The file, and whether it is gzip-compressed (by its magic bytes)."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror or exc}", source=(str(path), None)) from None
    gz = fh.read(2) == GZIP_MAGIC
    fh.seek(0)
    return fh, gz


def _read(fh: BinaryIO, size: int, path: Path) -> bytes:
    try:
        return fh.read(size)
    except OSError as exc:
        raise InputError(f"read error: {exc}", source=(str(path), None)) from None


def _gunzip(fh: BinaryIO, size: int, path: Path) -> Iterator[bytes]:
    """The decompressed content of a gzip file (every member), in blocks of about *size*.

    Decompressed by hand rather than through :mod:`gzip`, whose ``read`` loses what it decompressed
    in a call that then meets the damage: here every byte before a truncation or corruption comes out,
    and then :class:`_Damaged` says why reading stopped.
    """
    decoder = zlib.decompressobj(wbits=31)
    while True:
        raw = _read(fh, min(size, 1 << 20), path)
        if not raw:
            if not decoder.eof:
                raise _Damaged("truncated gzip data (the file ends inside a compressed member)")
            return
        while raw:
            try:
                out = decoder.decompress(raw, size)
            except zlib.error as exc:
                raise _Damaged(f"corrupt gzip data ({exc})") from None
            if out:
                yield out
            if decoder.eof:
                raw = decoder.unused_data
                if raw.strip(b"\x00"):  # another member follows (concatenated gzip); NUL padding ends it
                    decoder = zlib.decompressobj(wbits=31)
                else:
                    raw = b""
            else:
                raw = decoder.unconsumed_tail


def _looks_binary(sample: bytes) -> bool:
    """Whether most of *sample* is lines holding NUL or other control bytes: a file is binary when
    most of it is, not when one damaged line is (that line becomes a reject)."""
    if not _has_control(sample):
        return False
    bad = sum(len(line) + 1 for line in sample.split(b"\n") if _CONTROL.search(line))
    return bad > len(sample) // 2


# NUL and the other C0 controls that no text line holds (tab, line ends, form feed and the ESC of
# terminal colour codes are text): one set, as a pattern for text and bytes and as a deletion table.
CONTROL_TEXT = r"[\x00-\x08\x0e-\x1a\x1c-\x1f]"
_CONTROL = re.compile(CONTROL_TEXT.encode())
_CONTROL_BYTES = bytes([*range(0x09), *range(0x0e, 0x1b), *range(0x1c, 0x20)])


def _utf16_to_utf8(head: bytes, rest: Iterator[bytes], path: Path) -> Iterator[bytes]:
    encoding = "utf-16-le" if head.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        yield decoder.decode(head[2:]).encode("utf-8")
        for block in rest:
            yield decoder.decode(block).encode("utf-8")
        yield decoder.decode(b"", final=True).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"invalid {encoding.upper()} text ({exc.reason})", source=(str(path), None)) from None


def _blocks(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    """Yield the file's content as UTF-8 bytes (not yet validated), in blocks.

    Raises :class:`_Damaged` after the last good block of a damaged gzip file.
    """
    fh, gz = _open(path)
    with fh:
        blocks = _gunzip(fh, chunk_bytes, path) if gz else iter(lambda: _read(fh, chunk_bytes, path), b"")
        head = b""
        try:  # the head is one block's worth, however the decompressor cuts it
            while len(head) < chunk_bytes and (block := next(blocks, b"")):
                head += block
        except _Damaged:
            if _blank(head):
                raise
            yield from _text_blocks(head, iter(()), path)
            raise
        yield from _text_blocks(head, blocks, path)


def _blank(data: bytes) -> bool:
    """Whether *data* holds nothing but ASCII whitespace (what ``not data.strip()`` says, without
    copying a block of many megabytes to say it)."""
    return not data or data.isspace()


def _text_blocks(head: bytes, rest: Iterator[bytes], path: Path) -> Iterator[bytes]:
    """The content as UTF-8 bytes: UTF-16 converted, a UTF-8 byte-order mark dropped."""
    if _blank(head):
        raise InputError("empty file", source=(str(path), None))
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        yield from _utf16_to_utf8(head, rest, path)
        return
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    if _looks_binary(head[:SNIFF_BYTES]):
        raise InputError("binary data, not a text log export", source=(str(path), None))
    yield head
    yield from rest


def _split_bad_text(data: bytes, first_line: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Slow path for a block that is not valid UTF-8: find the damaged lines one by one."""
    good_no: list[int] = []
    good: list[str] = []
    bad_no: list[int] = []
    bad: list[str] = []
    reasons: list[str] = []
    pieces = data.split(b"\n")
    if data.endswith(b"\n"):
        pieces.pop()
    for offset, raw in enumerate(pieces):
        raw = raw.removesuffix(b"\r")
        try:
            good.append(raw.decode("utf-8"))
            good_no.append(first_line + offset)
        except UnicodeDecodeError as exc:
            bad_no.append(first_line + offset)
            bad.append(raw[:REJECT_RAW_BYTES].decode("utf-8", errors="replace"))
            reasons.append(f"not valid UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
    lines = pl.DataFrame({"raw_line": good_no, "raw": good}, schema={"raw_line": pl.Int64, "raw": pl.String})
    bad_lines = pl.DataFrame({"raw_line": bad_no, "reason": reasons, "raw": bad},
                             schema={"raw_line": pl.Int64, "reason": pl.String, "raw": pl.String})
    return lines, bad_lines


_NO_BAD_LINES = pl.DataFrame(schema={"raw_line": pl.Int64, "reason": pl.String, "raw": pl.String})


def read_line_chunks(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[LineChunk]:
    """Yield the lines of *path* as numbered frames, about *chunk_bytes* of text at a time.

    Raises
    ------
    InputError
        When the file cannot be read as text at all: missing, empty, binary, truncated gzip, or in
        an encoding that is not UTF-8 / UTF-16.
    """
    path = Path(path)
    carry = b""
    next_line = 1
    checked_encoding = False
    blocks = _blocks(path, chunk_bytes)
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            break
        except _Damaged as exc:
            # Every complete line before the damage has been given; a line cut off by it has not.
            raise InputError(f"{exc}; reading stopped at this line, every complete line before it was read",
                             source=(str(path), next_line)) from None
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            carry += block
            continue
        # Each chunk ends with its newline, so each of its lines is good or bad text, and numbered.
        # One copy of the block (joined through a view), not two: copies hold the GIL. A block of whole
        # lines with nothing carried into it (a file read in one block, most often) is not copied at all.
        data = block if not carry and cut == len(block) else b"".join((carry, memoryview(block)[:cut]))
        carry = block[cut:]
        chunk = _chunk(data, next_line, path, check_encoding=not checked_encoding)
        checked_encoding = True
        next_line += chunk.lines.height + chunk.bad_lines.height
        yield chunk
    if carry:
        yield _chunk(carry, next_line, path, check_encoding=not checked_encoding)


def _chunk(data: bytes, first_line: int, path: Path, *, check_encoding: bool) -> LineChunk:
    try:
        lines = pl.read_lines(data, name="raw", row_index_name="raw_line", row_index_offset=first_line)
        raw = pl.col("raw").str.strip_suffix("\r") if b"\r" in data else pl.col("raw")  # CRLF exports only
        lines = lines.select(pl.col("raw_line").cast(pl.Int64), raw)
        if not _holds_control(data, lines.height):
            return LineChunk(lines, _NO_BAD_LINES, data)
        return _binary_lines_apart(lines)
    except pl.exceptions.ComputeError:
        lines, bad = _split_bad_text(data, first_line)
    if lines.select(pl.col("raw").str.contains(CONTROL_TEXT).any()).item():
        chunk = _binary_lines_apart(lines)
        lines, bad = chunk.lines, pl.concat([bad, chunk.bad_lines]).sort("raw_line")
    if check_encoding and bad.height > max(1, (lines.height + bad.height) * _MAX_BAD_LINE_SHARE):
        raise InputError(
            f"not UTF-8 or UTF-16 text ({bad.height} of {lines.height + bad.height} lines undecodable); "
            "convert it with iconv first", source=(str(path), None))
    return LineChunk(lines, bad)


def _holds_control(data: bytes, lines: int) -> bool:
    """Whether the block of *lines* lines holds a control byte (see :data:`CONTROL_TEXT`).

    Counting the bytes below 0x20 takes one vectorized pass: when they are exactly the line ends,
    there is none (the usual block, a few times faster than the exact test); otherwise the exact test
    (:func:`_has_control`) says. The lines are looked at only when the block holds one.
    """
    newlines = lines - (not data.endswith(b"\n"))
    if _count_below_space(data) == newlines:
        return False
    return _has_control(data)


_COUNT_STEP = 1 << 20


def _count_below_space(data: bytes) -> int:
    """How many bytes of *data* are below 0x20, a megabyte at a time: one comparison of a whole 16 MiB
    block would allocate (and fault in) a 16 MiB temporary each time, twice the CPU of reusing a small one."""
    values = np.frombuffer(data, np.uint8)
    return sum(int(np.count_nonzero(values[start:start + _COUNT_STEP] < 0x20))
               for start in range(0, len(values), _COUNT_STEP))


def _has_control(data: bytes) -> bool:
    """Whether *data* holds a control byte: deleting them and comparing lengths is a few times faster
    than a regex over every line."""
    return len(data.translate(None, _CONTROL_BYTES)) != len(data)


def _binary_lines_apart(lines: pl.DataFrame) -> LineChunk:
    """Lines holding NUL or other control bytes (a tab, form feed or carriage return is text) are
    rejected one by one; the lines around them are text as usual."""
    binary = pl.col("raw").str.contains(CONTROL_TEXT)
    bad = lines.filter(binary).select(
        "raw_line", reason=pl.lit("binary data in a text line (NUL or control bytes)"),
        raw=pl.col("raw").str.replace_all(CONTROL_TEXT, "\ufffd").str.head(REJECT_RAW_BYTES))
    return LineChunk(lines.filter(~binary), bad)


def read_head(path: str | Path, max_lines: int = 20) -> list[str]:
    """The first non-blank lines of *path*, for format sniffing."""
    for chunk in read_line_chunks(path, chunk_bytes=SNIFF_BYTES):
        head = chunk.lines.filter(pl.col("raw").str.strip_chars() != "").head(max_lines)
        if head.height:
            return head.get_column("raw").to_list()
    return []


def detached(text: pl.Series) -> pl.Series:
    """*text* in buffers of its own.

    A string column filtered from a chunk's lines still points into the buffers of the whole chunk:
    keeping a few lines (rejects, cited raw lines) would keep every chunk they came from alive.
    """
    return pl.Series(text.name, text.to_arrow().cast(pa.large_string()), dtype=pl.String)


def detached_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """*frame* with every column in buffers of its own (:func:`detached` for whole frames).

    For rows kept from a larger frame across a long loop: the last-seen keys carried from slice to
    slice would otherwise keep each slice's text alive to the end.
    """
    return pl.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))  # type: ignore[return-value]
