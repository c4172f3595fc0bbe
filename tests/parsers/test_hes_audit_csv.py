from __future__ import annotations

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
    assert rejects.get_column("raw_line").to_list() == [3]
    assert "unterminated" in rejects.item(0, "reason")


def test_sniff() -> None:
    assert HesAuditCsv.sniff([HEADER])
    assert not HesAuditCsv.sniff(['{"ts": 1}'])
    assert not HesAuditCsv.sniff([])
