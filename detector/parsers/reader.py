"""Reading raw export files as numbered lines, in bounded chunks.

A file becomes a stream of polars frames ``(raw_line: Int64, raw: String)``; no line is ever held
as a Python object on the normal path. Gzip is recognised by its magic bytes, UTF-8 and UTF-16
byte-order marks are honoured (PowerShell writes UTF-16 by default), and lines that are not valid
text come back as rejects instead of failing the whole file.
"""

from __future__ import annotations

import codecs
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa

from detector.errors import InputError
from detector.schema import REJECT_RAW_BYTES

# Parsing a chunk takes several times its size in memory, and two chunks may be parsed at once;
# beyond this size, larger chunks are no faster.
CHUNK_BYTES = 16 << 20
SNIFF_BYTES = 64 << 10
_GZIP_MAGIC = b"\x1f\x8b"
# Share of undecodable lines in the first chunk above which the file is called the wrong encoding
# rather than a text file with a few damaged lines.
_MAX_BAD_LINE_SHARE = 0.1


@dataclass(frozen=True)
class LineChunk:
    """Numbered lines of one part of a file, and the lines of it that were not valid text."""

    lines: pl.DataFrame  # raw_line Int64, raw String
    bad_lines: pl.DataFrame  # raw_line Int64, reason String, raw String
    text: bytes | None = None  # the lines as read (UTF-8), when every one of them is valid text


def _open(path: Path) -> BinaryIO:
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror or exc}", source=(str(path), None)) from None
    if fh.read(2) == _GZIP_MAGIC:
        fh.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    fh.seek(0)
    return fh


def _read(fh: BinaryIO, size: int, path: Path) -> bytes:
    try:
        return fh.read(size)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"truncated or corrupt gzip data ({exc})", source=(str(path), None)) from None
    except OSError as exc:
        raise InputError(f"read error: {exc}", source=(str(path), None)) from None


def _looks_binary(sample: bytes) -> bool:
    if b"\x00" in sample:
        return True
    control = sum(1 for b in sample[:4096] if b < 9 or 13 < b < 32)
    return control > len(sample[:4096]) * 0.05


def _utf16_to_utf8(fh: BinaryIO, head: bytes, path: Path) -> Iterator[bytes]:
    encoding = "utf-16-le" if head.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    block = head[2:]
    try:
        while block:
            yield decoder.decode(block).encode("utf-8")
            block = _read(fh, CHUNK_BYTES, path)
        yield decoder.decode(b"", final=True).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"invalid {encoding.upper()} text ({exc.reason})", source=(str(path), None)) from None


def _blocks(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    """Yield the file's content as UTF-8 bytes (not yet validated), in blocks."""
    with _open(path) as fh:
        head = _read(fh, chunk_bytes, path)
        if not head.strip():
            raise InputError("empty file", source=(str(path), None))
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            yield from _utf16_to_utf8(fh, head, path)
            return
        if head.startswith(codecs.BOM_UTF8):
            head = head[3:]
        if _looks_binary(head[:SNIFF_BYTES]):
            raise InputError("binary data, not a text log export", source=(str(path), None))
        block = head
        while block:
            yield block
            block = _read(fh, chunk_bytes, path)


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
    for block in _blocks(path, chunk_bytes):
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            carry += block
            continue
        # Each chunk ends with its newline, so each of its lines is good or bad text, and numbered.
        # One copy of the block (joined through a view), not two: copies hold the GIL.
        data = b"".join((carry, memoryview(block)[:cut]))
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
        return LineChunk(lines, _NO_BAD_LINES, data)
    except pl.exceptions.ComputeError:
        lines, bad = _split_bad_text(data, first_line)
    if check_encoding and bad.height > max(1, (lines.height + bad.height) * _MAX_BAD_LINE_SHARE):
        raise InputError(
            f"not UTF-8 or UTF-16 text ({bad.height} of {lines.height + bad.height} lines undecodable); "
            "convert it with iconv first", source=(str(path), None))
    return LineChunk(lines, bad)


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
