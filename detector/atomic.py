"""Files that appear complete or not at all: written under a temporary name, then renamed.

Every output of the package goes through here (findings, incidents, evidence, reports, hunt tables,
parsed events, nightly state). A reader never sees a half-written file, and a failed write leaves
nothing behind. *durable* writes are also fsynced, file and directory, for state that must survive
a power cut (the nightly job's); outputs a rerun would regenerate skip that cost.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Self

import polars as pl
import pyarrow.parquet as pq


def temporary_name(path: Path, tmp_dir: Path | None = None) -> Path:
    """A hidden name beside *path* (or in *tmp_dir*, which must be on the same file system), unique
    to this process and call."""
    return (tmp_dir or path.parent) / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def atomic_write(path: Path, write: Callable[[Path], object], *, tmp_dir: Path | None = None,
                 durable: bool = False) -> None:
    """Call ``write(tmp)`` to write a temporary file, then rename it to *path*.

    Parameters
    ----------
    path
        The file to (re)place.
    write
        Writes the whole content to the path it is given (``frame.write_parquet`` will do).
    tmp_dir
        Where the temporary file goes instead of beside *path* (same file system).
    durable
        fsync the file before the rename and its directory after.
    """
    tmp = temporary_name(path, tmp_dir)
    try:
        write(tmp)
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync_dir(path.parent)


def atomic_bytes(path: Path, data: bytes, *, tmp_dir: Path | None = None, durable: bool = False) -> None:
    """:func:`atomic_write` of *data*."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data), tmp_dir=tmp_dir, durable=durable)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class AtomicParquet:
    """A Parquet file written a table at a time, which appears at *path* only once it is closed
    without an error (a None *path* writes nothing)."""

    def __init__(self, path: Path | None, schema: pl.Schema) -> None:
        self.path = path
        self.schema = schema
        self._writer: pq.ParquetWriter | None = None
        self._tmp = temporary_name(path) if path else None

    def __enter__(self) -> Self:
        if self._tmp is not None:
            self._tmp.parent.mkdir(parents=True, exist_ok=True)
            arrow_schema = pl.DataFrame(schema=self.schema).to_arrow().schema
            self._writer = pq.ParquetWriter(self._tmp, arrow_schema, compression="zstd")
        return self

    def write(self, frame: pl.DataFrame) -> None:
        if self._writer is not None and frame.height:
            self._writer.write_table(frame.to_arrow())

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._writer is None or self._tmp is None or self.path is None:
            return
        self._writer.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)
