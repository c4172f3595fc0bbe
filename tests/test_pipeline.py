from __future__ import annotations

import gzip
import shutil
from datetime import timedelta

import polars as pl
import pytest

from detector import pipeline
from detector.errors import FormatError, ParseError
from detector.parsers import PARSERS, ParsedChunk
from detector.pipeline import FileReport, expand_paths, plan_parse, read_logs
from detector.schema import validate_events, validate_rejects
from detector.spill import EventSpill
from tests.conftest import DATA, GOLDEN


@pytest.fixture
def mixed_dir(tmp_path):
    """Every golden input of a registered format, one of them gzipped, plus a mapped export."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for path in sorted(GOLDEN.iterdir()):
        if path.name.endswith(".expected.json"):
            continue
        target = logs / f"{path.name}.gz"
        target.write_bytes(gzip.compress(path.read_bytes()))
    shutil.copy(DATA / "mapping" / "acme.mapping.toml", logs)
    shutil.copy(DATA / "mapping" / "acme_audit.csv", logs / "sub_acme.csv")
    (logs / "README.md").write_text("not a log")
    (logs / ".hidden.log").write_text("not a log either")
    return logs


def test_mixed_directory_is_sniffed_per_file(mixed_dir) -> None:
    run = plan_parse([mixed_dir], tz="UTC")
    chunks = list(run.chunks())
    events = validate_events(pl.concat([c.events for c in chunks]))
    validate_rejects(pl.concat([c.rejects for c in chunks]))
    formats = {r.format for r in run.reports}
    assert "acme_hes_audit" in formats
    assert {"hes_audit_csv", "hes_commands_jsonl"} <= formats
    assert not [r for r in run.reports if r.error and r.format != "unknown"]
    assert events.height == sum(r.events for r in run.reports)
    assert all("README" not in r.path and ".hidden" not in r.path for r in run.reports)


def test_expand_paths_finds_mappings_and_skips_docs(mixed_dir) -> None:
    files, mappings = expand_paths([mixed_dir])
    assert [m.name for m in mappings] == ["acme.mapping.toml"]
    assert all(f.suffix != ".md" for f in files)
    assert files == sorted(files)


def test_read_logs_returns_validated_tables() -> None:
    events, rejects = read_logs(GOLDEN / "hes_audit.csv")
    validate_events(events)
    assert rejects.height == 0
    assert events.height == 14


def test_strict_mode_raises_on_the_first_reject(tmp_path) -> None:
    path = tmp_path / "audit.csv"
    path.write_text((GOLDEN / "hes_audit.csv").read_text() + "2026-04-14T03:00:00Z,broken\n")
    _, rejects = read_logs(path)
    assert rejects.height == 1
    with pytest.raises(ParseError) as info:
        read_logs(path, strict=True)
    assert info.value.source == (str(path), 18)


def test_forced_format_and_unknown_format(tmp_path) -> None:
    with pytest.raises(FormatError, match="known formats"):
        plan_parse([GOLDEN / "hes_audit.csv"], format="nope")
    events, rejects = read_logs(GOLDEN / "hes_audit.csv", format="hes_commands_jsonl")
    assert events.height == 0 and rejects.height == 16  # every non-blank line is a reject, not lost


def test_unreadable_file_does_not_stop_the_others(tmp_path) -> None:
    (tmp_path / "bin.log").write_bytes(b"\x00\xff" * 100)
    shutil.copy(GOLDEN / "hes_commands.jsonl", tmp_path)
    run = plan_parse([tmp_path])
    chunks = list(run.chunks())
    assert [r.error is not None for r in run.reports] == [True, False]
    assert "binary" in run.reports[0].error
    rejects = pl.concat([c.rejects for c in chunks])
    assert rejects.filter(pl.col("raw_file").str.ends_with("bin.log")).height == 1
    assert sum(c.events.height for c in chunks) == 11


def test_registry_names_match_classes() -> None:
    assert all(name == parser.name for name, parser in PARSERS.items())
    assert all(parser.description for parser in PARSERS.values())


def test_small_files_two_at_a_time_give_what_one_at_a_time_gives(mixed_dir, monkeypatch) -> None:
    """Small files are parsed two at a time: the chunks, their order and the reports must be those of
    parsing every file alone, an unreadable file among them included."""
    (mixed_dir / "m_bin.log").write_bytes(b"\x00\xff" * 100)
    for path in sorted(GOLDEN.iterdir()):  # uncompressed too: parsed whole when one chunk holds them
        if not path.name.endswith(".expected.json"):
            shutil.copy(path, mixed_dir / f"plain_{path.name}")

    def parse(small_bytes: int) -> tuple[list[ParsedChunk], list[FileReport]]:
        monkeypatch.setattr(pipeline, "SMALL_FILE_BYTES", small_bytes)
        monkeypatch.setattr(pipeline, "ONE_CHUNK_BYTES", small_bytes)
        run = plan_parse([mixed_dir], tz="UTC")
        return list(run.chunks()), run.reports

    paired, paired_reports = parse(1 << 30)
    alone, alone_reports = parse(-1)
    assert paired_reports == alone_reports
    assert [r.path for r in paired_reports] == [str(p) for p in expand_paths([mixed_dir])[0]]
    assert any(r.error for r in paired_reports)
    assert len(paired) == len(alone)
    for a, b in zip(paired, alone, strict=True):
        assert a.events.equals(b.events) and a.rejects.equals(b.rejects)


def test_the_spill_holds_each_slices_events_in_the_order_chunk_by_chunk_writing_gives(mixed_dir, tmp_path,
                                                                                       monkeypatch) -> None:
    """parse_to_spill writes small chunks together (fewer part files): every slice must hold the
    events, in the order, of writing each chunk as it comes."""
    def slices(spill: EventSpill) -> list[tuple[object, int, pl.DataFrame]]:
        return [(start, n, frame.collect()) for start, n, frame in spill.slices()]

    run = plan_parse([mixed_dir], tz="UTC")
    with EventSpill(tmp_path / "by_chunk", timedelta(days=1)) as spill:
        chunks = list(run.chunks())
        for chunk in chunks:
            spill.add(chunk.events)
        by_chunk = slices(spill)
    monkeypatch.setattr(pipeline, "SPILL_ROWS", 40)  # a few golden files' events at a time
    with EventSpill(tmp_path / "together", timedelta(days=1)) as spill:
        rejects = pipeline.parse_to_spill(plan_parse([mixed_dir], tz="UTC"), spill)
        together = slices(spill)
        parts = len(list(spill.directory.glob("slice=*/*.parquet")))
    assert rejects.equals(pl.concat([c.rejects for c in chunks]))
    assert len(together) == len(by_chunk) > 1
    assert 1 < parts < sum(1 for c in chunks if c.events.height)
    for (start_a, n_a, a), (start_b, n_b, b) in zip(together, by_chunk, strict=True):
        assert (start_a, n_a) == (start_b, n_b) and a.equals(b)
