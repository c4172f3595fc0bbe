from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.errors import InputError
from detector.parsers import ParseOptions
from detector.parsers.base import finalize
from detector.parsers.dms_syslog import DmsSyslog
from detector.schema import ACTION_CATEGORY
from tests.conftest import GOLDEN, assert_golden, parse_all

# Yearless RFC 3164 stamps take their year from the reference time, and naive ones need a zone:
# both fixed so the golden output does not depend on the file's mtime or the machine.
OPTIONS = ParseOptions(tz="America/Chicago", reference_time=datetime(2026, 4, 20, 12, 0))
GOLDEN_LOG = GOLDEN / "dms_syslog.log"

CLAIMED_ACTIONS = {
    "login_success", "login_failure", "logout", "lockout", "breaker_open", "breaker_close", "status_change",
    "setting_changed", "tag_placed", "tag_removed", "account_created", "account_deleted", "role_granted",
    "role_revoked", "password_changed", "account_modified", "other",
}


def _parse(tmp_path: Path, *lines: str, options: ParseOptions = OPTIONS) -> tuple[pl.DataFrame, pl.DataFrame]:
    path = tmp_path / "dms.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return parse_all(path, DmsSyslog, options)


def _one(tmp_path: Path, line: str, options: ParseOptions = OPTIONS) -> dict:
    events, rejects = _parse(tmp_path, line, options=options)
    assert rejects.height == 0, rejects.get_column("reason").to_list()
    assert events.height == 1
    return events.row(0, named=True)


def test_golden() -> None:
    assert_golden("dms_syslog.log", DmsSyslog, OPTIONS)


def test_every_claimed_action_and_target_type_is_reached() -> None:
    events, _ = parse_all(GOLDEN_LOG, DmsSyslog, OPTIONS)
    assert set(events.get_column("action").cast(pl.String)) == CLAIMED_ACTIONS
    assert {"breaker", "recloser", "capbank", "regulator", "setting", "account"} <= set(
        events.get_column("target_type").drop_nulls())
    assert {"success", "failure", "unknown"} <= set(events.get_column("outcome").cast(pl.String))


def test_golden_rejects_have_their_line_numbers_and_reasons() -> None:
    events, rejects = parse_all(GOLDEN_LOG, DmsSyslog, OPTIONS)
    reasons = dict(zip(rejects.get_column("raw_line"), rejects.get_column("reason"), strict=True))
    assert sorted(reasons) == [30, 31, 32, 33, 34, 35, 36, 38, 39, 50]
    for line, word in [(30, "octet count"), (31, "NILVALUE"), (32, "VERSION 2"), (33, "STRUCTURED-DATA"),
                       (34, "PRI 200"), (35, "--format cef"), (36, "not a syslog line"), (38, "incomplete"),
                       (39, "TIMESTAMP"), (50, "TAG")]:
        assert word in reasons[line], (line, reasons[line])
    # Line 37 is blank: neither an event nor a reject. Every other line is one or the other.
    total = GOLDEN_LOG.read_text().count("\n")
    assert set(events.get_column("raw_line")) | set(reasons) == set(range(1, total + 1)) - {37}
    assert not set(events.get_column("raw_line")) & set(reasons)


def test_reject_line_numbers_in_a_mixed_file(tmp_path: Path) -> None:
    good = '<86>1 2026-04-14T02:40:01Z h ADMS 1 AUTH [a@1 user="u" result="success"] ok'
    events, rejects = _parse(tmp_path, good, "garbage", "", "   ", good, "<86>1 - h a 1 AUTH -", good)
    assert events.get_column("raw_line").to_list() == [1, 5, 7]
    assert rejects.get_column("raw_line").to_list() == [2, 6]


def test_structured_data_escapes_and_pairs_inside_values(tmp_path: Path) -> None:
    # note's value holds ' user=\"evil\" src=' text: it must not be read as the user or src parameter.
    row = _one(tmp_path, r'<86>1 2026-04-14T02:40:01Z h ADMS 1 CONFIG [cfg@1 note="x user=\"evil\" src=" '
                         r'user="UTIL\\Ops1" setting="a\]b" old="q\"uote" new="C:\temp\\"] done')
    assert (row["account"], row["account_domain"]) == ("ops1", "UTIL")
    assert row["src_ip"] is None
    assert (row["target_id"], row["old_value"], row["new_value"]) == ("a]b", 'q"uote', "C:\\temp\\")


def test_several_sd_elements_origin_meta_and_bom(tmp_path: Path) -> None:
    row = _one(tmp_path, '<86>1 2026-04-14T02:40:01Z - - - AUTH [meta user="transport"][origin ip="10.1.2.3"]'
                         '[auth@1 user="jdoe" src="10.20.1.55"  result="OK" ] \ufeffOperator login')
    assert (row["host"], row["account"], row["src_ip"], row["action"]) == ("10.1.2.3", "jdoe", "10.20.1.55",
                                                                           "login_success")
    assert row["message"] == "Operator login"


def test_all_nilvalues_still_give_an_event(tmp_path: Path) -> None:
    row = _one(tmp_path, "<13>1 2026-04-14T02:40:01.5+02:00 - - - - -")
    assert str(row["time"]) == "2026-04-14 00:40:01.500000+00:00"
    assert (row["host"], row["action"], row["native_code"], row["message"]) == (None, "other", None, None)


def test_sbo_select_is_kept_but_not_counted_as_a_breaker_operation(tmp_path: Path) -> None:
    head = '<133>1 2026-04-14T02:44:10Z adms ADMS 1 SCADA_CTRL [c@1 user="jdoe" device="FDR-1203-CB" action="OPEN"'
    events, _ = _parse(tmp_path, head + ' sbo="SELECT" result="OK"]', head + ' sbo="CANCEL"]',
                       head + ' sbo="OPERATE" result="OK"]', head + "]")
    assert events.get_column("action").cast(pl.String).to_list() == ["other", "other", "breaker_open", "breaker_open"]
    assert events.get_column("category").cast(pl.String).unique().to_list() == ["device_command"]
    assert events.get_column("native_code").to_list()[:3] == [
        "SCADA_CTRL:OPEN:SELECT", "SCADA_CTRL:OPEN:CANCEL", "SCADA_CTRL:OPEN:OPERATE"]
    assert events.get_column("target_id").unique().to_list() == ["FDR-1203-CB"]


@pytest.mark.parametrize(("params", "target_type"), [
    ('device="FDR-1203-CB"', "breaker"),
    ('device="FEEDER-7"', "breaker"),  # SCADA_CTRL open/close defaults to breaker
    ('device="RCL-0711"', "recloser"),
    ('device="SUB12-CAP3"', "capbank"),
    ('device="X-9" devType="Voltage Regulator"', "regulator"),
    ('device="RECAP-1"', "breaker"),  # "CAP" inside a word is not a capbank token
])
def test_scada_target_type_is_conservative(tmp_path: Path, params: str, target_type: str) -> None:
    row = _one(tmp_path, f'<133>1 2026-04-14T02:44:10Z adms ADMS 1 SCADA_CTRL [c@1 {params} action="CLOSE"]')
    assert (row["action"], row["target_type"]) == ("breaker_close", target_type)


@pytest.mark.parametrize(("params", "action"), [
    ('op="create" target="t1"', "account_created"),
    ('op="UserDeleted" target="t1"', "account_deleted"),
    ('op="add" role="Admin" target="t1"', "role_granted"),
    ('op="add" target="t1"', "account_created"),
    ('op="revoke" role="Admin" target="t1"', "role_revoked"),
    ('op="Change-Password" target="t1"', "password_changed"),
    ('action="unlock" target="t1"', "account_modified"),
    ('op="audit" target="t1"', "other"),
])
def test_user_admin_ops(tmp_path: Path, params: str, action: str) -> None:
    row = _one(tmp_path, f'<85>1 2026-04-14T02:51:00Z adms ADMS 1 USER_ADMIN [u@1 user="admin1" {params}]')
    assert (row["action"], row["account"], row["target_id"], row["target_type"]) == (action, "admin1", "t1", "account")
    assert row["category"] == ("account_mgmt" if action == "other" else ACTION_CATEGORY[action])


@pytest.mark.parametrize(("params", "action", "outcome"), [
    ('result="success"', "login_success", "success"),
    ('result="OK"', "login_success", "success"),
    ('result="true"', "login_success", "success"),
    ('result="Denied"', "login_failure", "failure"),
    ('result="ERROR"', "login_failure", "failure"),
    ('result="fail"', "login_failure", "failure"),
    ('method="logout" result="success"', "logout", "success"),
    ('result="locked"', "lockout", "failure"),
    ('result="mystery"', "other", "unknown"),
    ("", "other", "unknown"),
])
def test_auth_results(tmp_path: Path, params: str, action: str, outcome: str) -> None:
    row = _one(tmp_path, f'<86>1 2026-04-14T02:40:01Z adms ADMS 1 AUTH [a@1 user="jdoe" {params}] x')
    assert (row["action"], row["outcome"], row["category"]) == (action, outcome, "authentication")


def test_unknown_msgid_is_kept_as_other(tmp_path: Path) -> None:
    row = _one(tmp_path, '<14>1 2026-04-14T02:40:01Z adms ADMS 1 HISTORIAN [h@1 user="svc" action="purge"] gone')
    assert (row["action"], row["category"], row["native_code"], row["account"]) == (
        "other", "system", "HISTORIAN:purge", "svc")


def test_rfc3164_msgid_sources(tmp_path: Path) -> None:
    events, rejects = _parse(
        tmp_path,
        '<86>Apr 14 02:40:01 adms ADMS[1]: AUTH user="jdoe" result="success" Operator login',
        '<86>Apr 14 02:40:02 adms ADMS[1]: Tag removed msgid="TAG" device="FDR-1" op="remove"',
        '<86>Apr 14 02:40:03 adms ADMS: type="USER_ADMIN" user=admin1 op=delete target=t9',
        '<86>Apr 14 02:40:04 adms ADMS: plain text, no pairs',
    )
    assert rejects.height == 0
    assert events.get_column("native_code").to_list() == ["AUTH", "TAG:remove", "USER_ADMIN:delete", None]
    assert events.get_column("action").cast(pl.String).to_list() == [
        "login_success", "tag_removed", "account_deleted", "other"]
    assert events.get_column("message").to_list() == [
        "Operator login", "Tag removed", None, "plain text, no pairs"]
    assert str(events.item(0, "time")) == "2026-04-14 07:40:01+00:00"  # America/Chicago, CDT


def test_rfc3164_needs_tz(tmp_path: Path) -> None:
    line = '<86>Apr 14 02:40:01 adms-app01 ADMS[4312]: AUTH user="jdoe" result="success" Operator login'
    with pytest.raises(InputError, match="--tz"):
        _parse(tmp_path, line, options=ParseOptions(reference_time=datetime(2026, 4, 20)))
    # RFC 5424 stamps carry their offset and need no zone.
    row = _one(tmp_path, '<86>1 2026-04-14T02:40:01-05:00 h A 1 AUTH - user="x" result="ok"', ParseOptions())
    assert str(row["time"]) == "2026-04-14 07:40:01+00:00"


def test_yearless_stamp_after_the_reference_belongs_to_the_previous_year(tmp_path: Path) -> None:
    options = ParseOptions(tz="UTC", reference_time=datetime(2026, 1, 2, 8, 0))
    events, _ = _parse(tmp_path, '<86>Dec 31 23:59:00 h A: AUTH user="x"', '<86>Jan  2 07:00:00 h A: AUTH user="x"',
                       options=options)
    assert [str(t) for t in events.get_column("time")] == ["2025-12-31 23:59:00+00:00", "2026-01-02 07:00:00+00:00"]


def test_octet_counting(tmp_path: Path) -> None:
    msg = '<86>1 2026-04-14T02:40:01Z h ADMS 1 AUTH [a@1 user="jd\u00f6e" result="success"] login'
    size = len(msg.encode())
    old = "<86>Apr 14 02:40:01 h A: AUTH user=x"
    events, rejects = _parse(tmp_path, f"{size} {msg}", f"{size + 1} {msg}", f"{size - 5} {msg}",
                             f"{len(old) - 3} {old}")
    assert events.get_column("raw_line").to_list() == [1, 2]
    assert events.get_column("account").to_list() == ["jdöe", "jdöe"]
    assert rejects.get_column("raw_line").to_list() == [3, 4]
    assert "octet count" in rejects.item(0, "reason")


def test_sniff() -> None:
    r5424 = '<86>1 2026-04-14T02:40:01.230Z adms-app01 ADMS 4312 AUTH [auth@32473 user="jdoe"] Operator login'
    r3164 = '<86>Apr 14 02:40:01 adms-app01 ADMS[4312]: AUTH user="jdoe" result="success" Operator login'
    assert DmsSyslog.sniff([r5424, r5424])
    assert DmsSyslog.sniff([f"{len(r5424)} {r5424}"])
    assert DmsSyslog.sniff([r3164, "Apr 14 02:40:02 adms-app01 ADMS: TAG device=\"x\""])
    assert not DmsSyslog.sniff([r5424, "<134>1 2026-04-14T02:11:40Z vpn01 - - - - CEF:0|Acme|SSLVPN|9.1|x|y|3|a=b"])
    assert not DmsSyslog.sniff(["CEF:0|Acme|SSLVPN|9.1|vpn-login|VPN session established|3|rt=x"])
    assert not DmsSyslog.sniff(["<134>Apr 14 02:11:40 vpn01 CEF:0|Acme|SSLVPN|9.1|vpn-login|x|3|src=1.2.3.4"])
    assert not DmsSyslog.sniff(['{"ts":"2026-04-14T02:31:02.118Z","jobId":"J","command":"RemoteDisconnect"}'])
    assert not DmsSyslog.sniff(["<86>Apr 14 02:40:01 adms-app01 sshd[1]: Accepted password for root"])
    assert not DmsSyslog.sniff(["EventTimeUTC,AuditId,UserName", "2026-04-14T02:13:07.412Z,1,a"])
    assert not DmsSyslog.sniff([])


# ---- property: never raises, every line accounted for -------------------------------------------

_FRAGMENTS = [
    "<86>", "<999>", "1 ", "2 ", "2026-04-14T02:40:01Z ", "2026-04-14T02:40:01.5+02:00 ", "- ", "Apr 14 02:40:01 ",
    "Dec  1 23:00:00 ", "adms ", "ADMS[1]: ", "AUTH ", "SCADA_CTRL ", "TAG ", "[a@1 ", "[origin ", 'user="jdoe"',
    ' result="ok"', ' sbo="SELECT"', ' action="OPEN"', ' op="grant" role="r"', ' x="\\"\\]\\\\"', ' y="\\', "]", "] ",
    "[", '"', "\\", "=", " ", "\ufeff", "42 ", "CEF:0|", 'src="::1"', "msg", "\t",
]
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=80)
_LINE = st.one_of(_TEXT, st.lists(st.one_of(st.sampled_from(_FRAGMENTS), _TEXT.map(lambda t: t[:8])),
                                  max_size=14).map("".join))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINE, min_size=1, max_size=12))
def test_any_text_is_events_or_rejects(lines: list[str]) -> None:
    frame = pl.DataFrame({"raw_line": list(range(1, len(lines) + 1)), "raw": lines},
                         schema={"raw_line": pl.Int64, "raw": pl.String})
    parser = DmsSyslog("fuzz.log", ParseOptions(tz="UTC", reference_time=datetime(2026, 4, 20)))
    events, rejects = finalize(parser.parse_chunk(frame), source_format=DmsSyslog.name, raw_file="fuzz.log",
                               source_system=DmsSyslog.source_system)
    # Blank lines carry nothing (as in every parser); every other line is exactly one event or reject.
    expected = frame.filter(pl.col("raw").str.strip_chars() != "").get_column("raw_line").to_list()
    got = events.get_column("raw_line").to_list() + rejects.get_column("raw_line").to_list()
    assert sorted(got) == sorted(expected)
    assert rejects.get_column("reason").null_count() == 0
    assert events.get_column("time").null_count() == 0
