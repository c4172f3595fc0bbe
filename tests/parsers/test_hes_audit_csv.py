from __future__ import annotations

from pathlib import Path

import polars as pl

from detector.parsers.hes_audit_csv import ACTIONS, HesAuditCsv
from tests.conftest import GOLDEN, assert_golden, parse_all

HEADER = "EventTimeUTC,AuditId,UserName,Role,ClientIP,Workstation,Category,Action,ObjectType,ObjectId,OldValue,NewValue,Result"


def test_golden() -> None:
    assert_golden("hes_audit.csv", HesAuditCsv)


def test_every_action_is_reachable() -> None:
    events, rejects = parse_all(GOLDEN / "hes_audit.csv", HesAuditCsv)
    assert rejects.height == 0
    wanted = set(ACTIONS.values()) - {"lockout", "account_modified"}
    assert wanted <= set(events.get_column("action").cast(pl.String))


def test_multiline_quoted_value_keeps_its_first_line_number() -> None:
    events, _ = parse_all(GOLDEN / "hes_audit.csv", HesAuditCsv)
    banner = events.filter(pl.col("target_id") == "Banner.Text").row(0, named=True)
    assert banner["raw_line"] == 11
    assert banner["new_value"] == 'He said "hi"\nand left'
    assert banner["old_value"] == "Welcome, operator"
    assert events.filter(pl.col("native_code") == "UserLogout").item(0, "raw_line") == 15


def test_failed_userlogin_is_a_login_failure() -> None:
    events, _ = parse_all(GOLDEN / "hes_audit.csv", HesAuditCsv)
    jdoe = events.filter(pl.col("account") == "jdoe").row(0, named=True)
    assert (jdoe["action"], jdoe["outcome"]) == ("login_failure", "failure")


def test_reordered_columns_and_ragged_rows(tmp_path) -> None:
    path = tmp_path / "audit.csv"
    path.write_text("Action,UserName,EventTimeUTC,AuditId,Extra\n"
                    "UserLogin,alice,2026-04-14T02:13:07Z,1,x\n"
                    "UserLogin,bob,2026-04-14T02:13:08Z\n"
                    'UserLogin,"carol, jr",2026-04-14T02:13:09Z,3,"y"\n')
    events, rejects = parse_all(path, HesAuditCsv)
    assert events.get_column("account").to_list() == ["alice", "carol, jr"]
    assert rejects.get_column("raw_line").to_list() == [3]
    assert "expected 5 fields" in rejects.item(0, "reason")


def test_unterminated_quote_at_end_is_rejected(tmp_path) -> None:
    path = tmp_path / "audit.csv"
    path.write_text(HEADER + "\n2026-04-14T02:13:07Z,1,a,R,,,Security,UserLogin,User,a,,,Success\n"
                    '2026-04-14T02:13:08Z,2,b,R,,,Security,UserLogin,User,b,"open,\nstill open\n')
    events, rejects = parse_all(path, HesAuditCsv)
    assert events.height == 1
    # The open record's first line says why; the line after it is read (and rejected) on its own.
    assert rejects.get_column("raw_line").to_list() == [3, 4]
    assert "unterminated" in rejects.item(0, "reason")


def test_sniff() -> None:
    assert HesAuditCsv.sniff([HEADER])
    assert not HesAuditCsv.sniff(['{"ts": 1}'])
    assert not HesAuditCsv.sniff([])


def test_a_stray_quote_swallows_nothing_after_its_record(tmp_path: Path) -> None:
    header = "EventTimeUTC,AuditId,UserName,Role,ClientIP,Workstation,Category,Action,ObjectType,ObjectId,OldValue,NewValue,Result"
    rows = [f"2026-04-14T02:{i // 60:02d}:{i % 60:02d}Z,{i},jdoe,Operator,10.0.0.1,WS1,Security,UserLogin,User,jdoe,,,Success"
            for i in range(220)]
    rows[99] = rows[99].replace("jdoe,Operator", 'jd"oe,Operator')  # one extra quote at line 101
    path = tmp_path / "audit.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    events, rejects = parse_all(path, HesAuditCsv)
    assert (events.height, rejects.get_column("raw_line").to_list()) == (219, [101])


def test_a_stray_quote_without_record_starts_is_bounded(tmp_path: Path) -> None:
    from detector.parsers.csvlines import MAX_RECORD_LINES, join_multiline_records

    lines = pl.DataFrame({"raw_line": list(range(1, 201)), "raw": ['a,"b'] + [f"x,{i}" for i in range(199)]})
    records, pending = join_multiline_records(lines)
    assert pending.height == 0 and records.height == 200
    assert records.filter(pl.col("_error").is_not_null()).get_column("raw_line").to_list() == [1]
    assert MAX_RECORD_LINES < 200
    # A real multi-line cell still reads as one record.
    ok = pl.DataFrame({"raw_line": [1, 2, 3], "raw": ['a,"line one', 'line two",c', "d,e"]})
    records, _ = join_multiline_records(ok)
    assert records.get_column("raw").to_list() == ['a,"line one\nline two",c', "d,e"]


def test_option_csvs_read_multiline_cells_and_name_bad_records(tmp_path: Path) -> None:
    import pytest

    from detector.errors import ConfigError
    from detector.hunts.firmware import load_manifest
    from detector.hunts.ioc import load_indicators

    sha = "ab" * 32
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f'sha256,image,version\n# approved\n{sha},"nic_7.2.1.bin","7.2.1\nrelease notes, line 2"\n'
                        f"{'cd' * 32},nic_7.2.2.bin,7.2.2\n")
    table = load_manifest(manifest)
    assert table.get_column("version").to_list() == ["7.2.1\nrelease notes, line 2", "7.2.2"]
    iocs = tmp_path / "iocs.csv"
    iocs.write_text('type,value,description\nip,203.0.113.9,"C2 server\nseen twice"\naccount,ops_tmp7,x\n')
    indicators, _ = load_indicators(iocs)
    assert indicators.height == 2
    iocs.write_text('type,value,description\nip,203.0.113.9,"open\n' + "x\n" * 60)
    with pytest.raises(ConfigError) as caught:
        load_indicators(iocs)
    assert caught.value.source == (str(iocs), 2)
