"""One way to write a file: complete at its path, or not there at all."""

from __future__ import annotations

import polars as pl
import pytest

from detector.atomic import AtomicParquet, atomic_bytes, atomic_write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")

    def half(tmp) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, half)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_durable_write_replaces_the_file(tmp_path) -> None:
    target, scratch = tmp_path / "state.json", tmp_path / "tmp"
    scratch.mkdir()
    atomic_bytes(target, b"{}", tmp_dir=scratch, durable=True)
    atomic_bytes(target, b'{"a": 1}', tmp_dir=scratch, durable=True)
    assert target.read_bytes() == b'{"a": 1}'
    assert list(scratch.iterdir()) == []


def test_a_streamed_parquet_appears_only_when_complete(tmp_path) -> None:
    schema = pl.Schema({"x": pl.Int64})
    target = tmp_path / "events.parquet"
    with AtomicParquet(target, schema) as out:
        out.write(pl.DataFrame({"x": [1, 2]}))
        assert not target.exists()
    assert pl.read_parquet(target)["x"].to_list() == [1, 2]
    with pytest.raises(ValueError), AtomicParquet(tmp_path / "broken.parquet", schema) as out:
        out.write(pl.DataFrame({"x": [3]}))
        raise ValueError("parser failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.parquet"]
