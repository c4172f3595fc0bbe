"""parse_file's chunks parsed side by side give what parsing them in order gives."""

from __future__ import annotations

from detector.parsers import ParseOptions, parse_file
from detector.parsers.dms_syslog import DmsSyslog

_DMS = '<86>1 {ts} adms-app01 ADMS 4312 AUTH [auth@32473 user="jdoe" src="10.20.1.55" result="success"] Operator login\n'


def test_a_short_last_chunk_waits_for_the_offsets_of_the_lines_before_it(tmp_path) -> None:
    """A last line without a newline is a chunk of its own; it starts among the first lines, which ask
    for --tz when no line before them showed an offset. The first line here shows one, so the naive
    stamps after it are rejected, every time, not the file refused when the last chunk ran first."""
    path = tmp_path / "dms.log"
    path.write_text(_DMS.format(ts="2026-04-14T02:40:01Z") + _DMS.format(ts="2026-04-14T02:40:02")
                    + _DMS.format(ts="2026-04-14T02:40:03").rstrip("\n"))
    for _ in range(20):
        chunks = list(parse_file(path, DmsSyslog, ParseOptions()))
        assert len(chunks) == 2
        assert sum(c.events.height for c in chunks) == 1
        rejects = [r for c in chunks for r in c.rejects.iter_rows(named=True)]
        assert [r["raw_line"] for r in rejects] == [2, 3]
        assert all("has no UTC offset while other lines of this file have one" in r["reason"] for r in rejects)
