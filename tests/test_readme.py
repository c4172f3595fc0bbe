"""The README's example outputs are what the documented commands print, so they cannot drift.

Every fenced block in README.md preceded by ``<!-- output: NAME -->`` is compared with the output
of the command that :data:`COMMANDS` runs for NAME (through ``CliRunner``), after normalizing what
legitimately varies (the checkout's path, the temporary output folder). When a change alters the
output on purpose (a detection change, a new column), rewrite the blocks from real output and
review the diff:

    UPDATE_README=1 python -m pytest -q tests/test_readme.py
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.cli import main

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
UPDATE = os.environ.get("UPDATE_README") == "1"
MARKER = re.compile(r"<!-- output: (?P<name>[\w-]+) -->\n```(?P<lang>\w*)\n(?P<body>.*?)```", re.DOTALL)
JSON_FINDINGS_SHOWN = 1


def _run(args: list[str], tmp: Path, *, stream: str = "stdout") -> str:
    """Run ``ami-detector ARGS`` from the checkout's root, as the README's reader does."""
    runner = CliRunner(env={"COLUMNS": "150"})
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        result = runner.invoke(main, args)
    finally:
        os.chdir(cwd)
    assert result.exit_code in (0, 1), result.stderr
    text = result.stdout if stream == "stdout" else result.stderr
    return text.replace(str(tmp) + "/", "").replace(str(tmp), ".").replace(str(ROOT) + "/", "")


def quickstart_scan(tmp: Path) -> str:
    return _run(["scan", "sample_logs/", "--model", "models/default", "--out", str(tmp / "out")], tmp)


def scan_json(tmp: Path) -> str:
    # One day of the sample (the shell expands sample_logs/*2026-03-28*): as telling, and quick.
    day = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "sample_logs").glob("*2026-03-28*"))]
    doc = json.loads(_run(["scan", *day, "--model", "models/default", "--out", str(tmp / "out"), "--json"], tmp))
    doc["findings"] = doc["findings"][:JSON_FINDINGS_SHOWN]  # the README shows the first; the rest are alike
    return json.dumps(doc, indent=2) + "\n"


def parse_summary(tmp: Path) -> str:
    return _run(["parse", "sample_logs/", "--out", str(tmp / "events.parquet")], tmp, stream="stderr")


def hunt_firmware(tmp: Path) -> str:
    return _run(["hunt", "firmware", "sample_logs/", "--window", "Wed 00:00-04:00", "--local-tz", "America/Chicago",
                 "--since", "2026-03-15", "--until", "2026-04-30"], tmp)


COMMANDS: dict[str, Callable[[Path], str]] = {
    "quickstart-scan": quickstart_scan,
    "scan-json": scan_json,
    "parse-summary": parse_summary,
    "hunt-firmware": hunt_firmware,
}


def _blocks(text: str) -> dict[str, re.Match[str]]:
    return {m.group("name"): m for m in MARKER.finditer(text)}


def test_every_marked_block_has_a_command() -> None:
    names = set(_blocks(README.read_text(encoding="utf-8")))
    assert names == set(COMMANDS), "README output markers and tests/test_readme.py COMMANDS differ"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_readme_output_is_what_the_command_prints(name: str, tmp_path: Path) -> None:
    got = COMMANDS[name](tmp_path)
    text = README.read_text(encoding="utf-8")
    block = _blocks(text)[name]
    if UPDATE and block.group("body") != got:
        start, end = block.span("body")
        README.write_text(text[:start] + got + text[end:], encoding="utf-8")
        return
    assert block.group("body") == got, (
        f"README block '{name}' differs from what the command prints; if the change is intended, run "
        "UPDATE_README=1 python -m pytest -q tests/test_readme.py and review the diff")
