"""The order conftest.py has xdist hand out the test files in names files that exist."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SLOW_FILES

ROOT = Path(__file__).parent.parent


def test_the_slow_files_handed_out_first_exist() -> None:
    assert SLOW_FILES and len(set(SLOW_FILES)) == len(SLOW_FILES)
    missing = [name for name in SLOW_FILES if not (ROOT / name).is_file()]
    assert missing == [], "renamed or removed: update SLOW_FILES in tests/conftest.py"
