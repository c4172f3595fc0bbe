"""Small files of one format parsed as one chunk must give exactly what each gives alone."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from detector import pipeline
from detector.parsers import ParseOptions, parse_file
from detector.parsers.cef import Cef
from detector.parsers.dms_syslog import DmsSyslog
from detector.parsers.hes_audit_csv import HesAuditCsv
from detector.parsers.hes_commands_jsonl import HesCommandsJsonl
from detector.parsers.together import parse_together
from detector.parsers.winsec_jsonl import WinsecJsonl
from detector.pipeline import plan_parse
from tests.conftest import GOLDEN

_DMS = ('<86>1 {ts} adms-app01 ADMS 4312 AUTH [auth@32473 user="jdoe" src="10.20.1.55" result="success"] '
        'Operator login\n')
_WINSEC = '{{"TimeCreated":"{ts}","EventID":4624,"Computer":"HES-APP01","TargetUserName":"jdoe"}}\n'


def _logs(tmp_path: Path) -> Path:
    """Several files of each format that takes part: the golden inputs (naive, yearless, zoned and
    damaged records among them) and their halves (the first without a final newline), and clean files,
    one without a final newline."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("cef.log", "dms_syslog.log", "hes_audit.csv", "hes_commands.jsonl", "winsec_attacker.jsonl", "winsec_ecs.jsonl",
                 "winsec_flat.jsonl", "winsec_nxlog.jsonl"):
        text = (GOLDEN / name).read_text()
        lines = text.splitlines(keepends=True)
        stem = name.split(".")[0].split("_")[0]
        shutil.copy(GOLDEN / name, logs / f"{stem}_1_{name}")
        (logs / f"{stem}_2_{name}").write_text("".join(lines[len(lines) // 2:]))
        (logs / f"{stem}_3_{name}").write_text("".join(lines[: len(lines) // 2]).rstrip("\n"))
        if name.endswith(".csv"):  # the second half, under the header again
            (logs / f"{stem}_2_{name}").write_text("".join(lines[:1] + lines[len(lines) // 2:]))
    for day in range(3):  # clean files, which are read together without --tz too; one without a final newline
        end = "" if day == 1 else "\n"
        (logs / f"dms_clean_{day}.log").write_text((_DMS.format(ts=f"2026-04-1{day}T02:40:01.230Z") * 3)[:-1] + end)
        (logs / f"winsec_clean_{day}.jsonl").write_text((_WINSEC.format(ts=f"2026-04-1{day}T02:40:01Z") * 3)[:-1] + end)
        (logs / f"hes_clean_{day}.csv").write_text(
            "EventTimeUTC,AuditId,UserName,Role,ClientIP,Workstation,Category,Action,ObjectType,ObjectId,"
            "OldValue,NewValue,Result\n" + f"2026-04-1{day}T02:13:07.412Z,884,jdoe,Operator,10.40.8.21,WS1,Security,"
            "UserLogin,User,jdoe,,,Success\n" * 2 + ("\n" if day == 2 else ""))
    return logs


@pytest.mark.parametrize("tz", [None, "America/Chicago"])
def test_files_read_together_give_what_each_gives_alone(tmp_path, monkeypatch, tz) -> None:
    logs = _logs(tmp_path)
    together = []

    def counted(*args, **kwargs):
        parsed = parse_together(*args, **kwargs)
        together.append(parsed is not None)
        return parsed

    def parse(read_together: bool):
        monkeypatch.setattr(pipeline, "parse_together", counted if read_together else lambda *a, **k: None)
        run = plan_parse([logs], tz=tz)
        return list(run.chunks()), run.reports

    batched, batched_reports = parse(True)
    alone, alone_reports = parse(False)
    assert any(together), "no files were read together"
    if tz is None:
        assert not all(together), "the naive stamps of the golden files must part them"
    assert batched_reports == alone_reports
    assert sum(r.events for r in alone_reports) > 250 and sum(r.rejects for r in alone_reports) > 10
    # A file without a final newline is two chunks alone, one when read with others: the rows are the same.
    assert_frame_equal(pl.concat([c.events for c in batched]), pl.concat([c.events for c in alone]), check_exact=True)
    assert_frame_equal(pl.concat([c.rejects for c in batched]), pl.concat([c.rejects for c in alone]),
                       check_exact=True)


def _alone(paths: list[Path], parser, options: ParseOptions):
    out = []
    for path in paths:
        chunks = list(parse_file(path, parser, options))
        assert len(chunks) == 1
        out.append((chunks[0].events, chunks[0].rejects, chunks[0].time_fields))
    return out


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_naive_stamp_without_a_zone_parts_the_files(tmp_path) -> None:
    aware = _write(tmp_path, "a.log", _DMS.format(ts="2026-04-14T02:40:01Z"))
    naive = _write(tmp_path, "b.log", _DMS.format(ts="2026-04-14T02:40:01"))
    assert parse_together([aware, naive], DmsSyslog, ParseOptions()) is None
    # With the zone given, the naive stamp reads the same in any file.
    options = ParseOptions(tz="America/Chicago")
    parsed = parse_together([aware, naive], DmsSyslog, options)
    assert parsed is not None
    for (events, rejects, fields), (e, r, f) in zip(parsed, _alone([aware, naive], DmsSyslog, options), strict=True):
        assert events.equals(e) and rejects.equals(r) and fields == f
    flat = _write(tmp_path, "c.jsonl", _WINSEC.format(ts="2026-04-14T02:40:01"))
    assert parse_together([flat, flat], WinsecJsonl, ParseOptions()) is None


def test_a_yearless_stamp_late_for_its_reference_parts_the_files(tmp_path) -> None:
    record = "CEF:0|Acme|SSLVPN|9.1|vpn-login|VPN login|3|rt={rt} suser=jdoe src=203.0.113.7\n"
    early = _write(tmp_path, "a.cef", record.format(rt="Jan 02 10:00:00 UTC"))
    late = _write(tmp_path, "b.cef", record.format(rt="Dec 30 10:00:00 UTC"))
    options = ParseOptions(reference_time=datetime(2027, 1, 5))
    assert parse_together([early, late], Cef, options) is None
    parsed = parse_together([early, early], Cef, options)
    assert parsed is not None
    assert parsed[0][0].get_column("time").dt.year().to_list() == [2027]
    # Alone, the late one belongs to the year before.
    assert _alone([late], Cef, options)[0][0].get_column("time").dt.year().to_list() == [2026]


def test_a_damaged_file_parts_the_files(tmp_path) -> None:
    good = (GOLDEN / "hes_commands.jsonl").read_text()
    good += '{"ts":"2026-04-14T02:31:02Z","jobId":"J-1"}\nnot json\n'  # rejects, not damage
    nul = _write(tmp_path, "b.jsonl", good + '{"ts":"2026-04-14T02:31:02Z","jobId":"J\x00"}\n')
    clean = _write(tmp_path, "a.jsonl", good)
    assert parse_together([clean, nul], HesCommandsJsonl, ParseOptions()) is None
    assert parse_together([clean, tmp_path / "missing.jsonl"], HesCommandsJsonl, ParseOptions()) is None
    parsed = parse_together([clean, clean], HesCommandsJsonl, ParseOptions())
    assert parsed is not None
    alone = _alone([clean], HesCommandsJsonl, ParseOptions())[0]
    assert parsed[1][0].equals(alone[0]) and parsed[1][1].equals(alone[1])
    assert parsed[1][1].height > 0  # the golden file's own bad records, numbered in their own file
    assert parsed[1][1].get_column("raw_line").max() <= len(good.splitlines())


def test_csv_files_read_together_share_one_header_and_no_record_spans_lines(tmp_path) -> None:
    header = (GOLDEN / "hes_audit.csv").read_text().splitlines()[0]
    row = "2026-04-14T02:13:07.412Z,88412031,jdoe,Operator,10.40.8.21,WS1,Security,UserLogin,User,jdoe,,,Success"
    a = _write(tmp_path, "a.csv", f"{header}\n{row}\n{row}\n")
    b = _write(tmp_path, "b.csv", f"\n{header}\n{row}\n")
    parsed = parse_together([a, b], HesAuditCsv, ParseOptions())
    assert parsed is not None
    for (events, rejects, fields), (e, r, f) in zip(parsed, _alone([a, b], HesAuditCsv, ParseOptions()), strict=True):
        assert events.equals(e) and rejects.equals(r) and fields == f
    assert parsed[1][0].get_column("raw_line").to_list() == [3]
    reordered = _write(tmp_path, "c.csv", ",".join(reversed(header.split(","))) + "\n")
    assert parse_together([a, reordered], HesAuditCsv, ParseOptions()) is None
    quoted = _write(tmp_path, "d.csv", f'{header}\n{row[:-7]}"a\nb",Success\n')
    assert parse_together([a, quoted], HesAuditCsv, ParseOptions()) is None


_GOLDEN_OF = {Cef: ["cef.log"], DmsSyslog: ["dms_syslog.log"], HesAuditCsv: ["hes_audit.csv"],
              HesCommandsJsonl: ["hes_commands.jsonl"], WinsecJsonl: ["winsec_flat.jsonl", "winsec_nxlog.jsonl"]}
# Real lines of each format, cut and mixed with fragments that parsers find hard.
_NOISE = ["", " ", "{", "}", '"', "|", "=", "\\", "CEF:0|", "<86>1 ", "Apr 14 02:11:40 ", "2026-04-14T02:13:07",
          "Z", "+02:00", "\t", "\r", "-", "null"]


def _line_of(parser) -> st.SearchStrategy[str]:
    real = [line for name in _GOLDEN_OF[parser] for line in (GOLDEN / name).read_text().splitlines()[1:]]
    whole = st.sampled_from(real)
    cut = st.tuples(st.sampled_from(real), st.integers(0, 400), st.sampled_from(_NOISE)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:])
    return st.one_of(whole, whole, cut, st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"),
                                                  max_size=30))


@pytest.mark.parametrize("parser", list(_GOLDEN_OF), ids=lambda p: p.name)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), tz=st.sampled_from([None, "UTC"]))
def test_any_files_read_together_give_what_each_gives_alone(tmp_path_factory, parser, data, tz) -> None:
    tmp = tmp_path_factory.mktemp("together")
    header = (GOLDEN / _GOLDEN_OF[parser][0]).read_text().splitlines()[0]
    paths = []
    for index in range(data.draw(st.integers(2, 3))):
        lines = data.draw(st.lists(_line_of(parser), min_size=1, max_size=8))
        end = data.draw(st.sampled_from(["\n", ""]))
        path = tmp / f"{index}.log"
        path.write_text("\n".join([header, *lines]) + end, encoding="utf-8")
        paths.append(path)
    options = ParseOptions(tz=tz, reference_time=datetime(2026, 4, 20))
    parsed = parse_together(paths, parser, options)
    if parsed is None:
        return
    for path, (events, rejects, fields) in zip(paths, parsed, strict=True):
        alone = list(parse_file(path, parser, options))
        assert_frame_equal(events, pl.concat([c.events for c in alone]), check_exact=True)
        assert_frame_equal(rejects, pl.concat([c.rejects for c in alone]), check_exact=True)
        counted: dict[str, int] = {}
        for c in alone:
            for name, n in c.time_fields.items():
                counted[name] = counted.get(name, 0) + n
        assert fields == counted
