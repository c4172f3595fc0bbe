"""Shared test helpers: golden files for parser output, a private temporary directory per session, the
sample month parsed once per worker, and the order in which xdist hands out the test files."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from detector.parsers import ParseOptions, Parser, parse_file
from detector.pipeline import read_logs
from detector.schema import validate_events, validate_rejects
from detector.spill import EventSpill

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "sample_logs"
DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


@pytest.fixture(autouse=True, scope="session")
def _private_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point TMPDIR (and :mod:`tempfile`) at a folder under pytest's own temporary directory.

    Whatever the code under test (or a notebook kernel it starts) leaves in "the system temporary
    directory" then lands where pytest cleans up, never in the real /tmp; the check at the end
    fails the session if the detector's own temporary folders were not removed.
    """
    private = tmp_path_factory.mktemp("system-tmp")
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(private)
    tempfile.tempdir = str(private)
    try:
        yield private
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
    # The notebook's own output folder is the user's to keep; spills and findings parts are ours.
    leftovers = sorted(p.name for p in private.glob("ami-detector-*-*") if p.name.split("-")[2] in ("spill", "findings"))
    assert not leftovers, f"temporary folders left behind: {leftovers}"


@pytest.fixture(scope="session")
def sample_logs() -> tuple[pl.DataFrame, pl.DataFrame]:
    """The events and rejects of ``read_logs(sample_logs/)``, parsed once per worker (it takes seconds)
    for every module that reads the whole sample month. Shared: take a filtered copy, never change it."""
    return read_logs(SAMPLE)


@pytest.fixture(scope="session")
def sample_model(sample_logs):  # type: ignore[no-untyped-def]
    """The model ``train`` learns (default settings) from the sample month's incident-free baseline,
    trained once per worker for the modules that check it. Shared: never change it."""
    from detector.detection import train

    until = datetime.fromisoformat(json.loads((SAMPLE / "labels.json").read_text())["generator"]["baseline_until"])
    return train(sample_logs[0].filter(pl.col("time") < until))


def parse_all(path: Path, parser: type[Parser], options: ParseOptions | None = None
              ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse a whole file with one parser; both tables are schema-validated."""
    chunks = list(parse_file(path, parser, options))
    events = pl.concat([c.events for c in chunks])
    rejects = pl.concat([c.rejects for c in chunks])
    return validate_events(events), validate_rejects(rejects)


def _as_rows(frame: pl.DataFrame) -> list[dict]:
    # raw_file is the machine-specific path; the golden file records the file name only.
    frame = frame.with_columns(pl.col("raw_file").str.replace(r"^.*[/\\]", ""))
    rows = json.loads(frame.write_json())
    return rows


def assert_golden(input_name: str, parser: type[Parser], options: ParseOptions | None = None) -> None:
    """Compare the parse of ``tests/data/golden/<input_name>`` with ``<input_name>.expected.json``.

    Run with ``UPDATE_GOLDEN=1`` to (re)write the expected file, then review its diff by hand.
    """
    source = GOLDEN / input_name
    expected_path = GOLDEN / f"{input_name}.expected.json"
    events, rejects = parse_all(source, parser, options)
    got = {"events": _as_rows(events), "rejects": _as_rows(rejects)}
    if UPDATE or not expected_path.exists():
        expected_path.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
        if not UPDATE:
            pytest.fail(f"golden file {expected_path.name} was missing and has been written; review it")
    expected = json.loads(expected_path.read_text())
    assert got["rejects"] == expected["rejects"]
    assert len(got["events"]) == len(expected["events"])
    for got_row, want_row in zip(got["events"], expected["events"], strict=True):
        assert got_row == want_row, f"line {want_row['raw_line']}"


def recording_spills(patch: pytest.MonkeyPatch) -> list[EventSpill]:
    """Every spill made from now on through ``EventSpill.temporary`` (to see where it went)."""
    made: list[EventSpill] = []
    temporary = EventSpill.temporary.__func__  # type: ignore[attr-defined]

    def record(cls, length, parent=None):  # type: ignore[no-untyped-def]
        made.append(temporary(cls, length, parent))
        return made[-1]

    patch.setattr(EventSpill, "temporary", classmethod(record))
    return made


# ---- the order xdist hands out the test files -------------------------------------------------------------

# With `--dist loadfile` each worker takes a whole file, and the next one when it is nearly done. A
# slow file handed out late decides the suite's wall time (the other worker idles meanwhile), so the
# slowest files go first (about 100, 40, 20, 45, 12, 11, 9, 9, 9, 7 s of one worker); the rest follow
# in xdist's own order (most tests first) and fill the gaps. test_detection and test_streamed_training
# are next to each other so that one worker usually takes both and trains `sample_model` once.
# A stale entry here only costs balance, never a test.
SLOW_FILES = [
    "tests/test_spark.py",
    "tests/test_detection.py",
    "tests/test_streamed_training.py",
    "tests/test_nightly.py",
    "tests/test_readme.py",
    "tests/test_runner.py",
    "tests/test_notebook.py",
    "tests/test_captures.py",
    "tests/test_spill.py",
    "tests/test_slices.py",
]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SlowFilesFirst(LoadFileScheduling):
        ordered = False

        def _assign_work_unit(self, node) -> None:  # type: ignore[no-untyped-def]
            # The queue is full by the first hand-out: reorder it once (an xdist whose queue is
            # no longer an OrderedDict keeps its own order).
            if not self.ordered and hasattr(self.workqueue, "move_to_end"):
                for scope in reversed(SLOW_FILES):
                    if scope in self.workqueue:
                        self.workqueue.move_to_end(scope, last=False)
                self.ordered = True
            super()._assign_work_unit(node)

    return SlowFilesFirst(config, log)

